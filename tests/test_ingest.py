"""Ingest end to end on the sample logs: outcomes, links, accounting, idempotence, rotation."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mtalens.pipeline.ingest import IngestError, LogIngestor, expand_paths
from mtalens.pipeline.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
FIXED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def ingest(store: Store, *paths: Path, year: int = 2026, **kw: object) -> object:
    return LogIngestor(store, tz=UTC, year=year, clock=lambda: FIXED, **kw).run(paths)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "t.duckdb")


def outcomes(store: Store) -> dict[str, tuple[object, ...]]:
    rows = store.con.execute(
        "SELECT recipient, status, dsn, reply_code, smtp_stage, reason, hard FROM recipient_outcomes"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_final_status_per_recipient(store: Store) -> None:
    stats = ingest(store, SAMPLES / "mx1-rfc3164.log")
    got = outcomes(store)
    assert got["nobody@outlook.example"] == (
        "bounced",
        "5.1.10",
        550,
        "RCPT TO",
        "userunknown",
        True,
    )
    # deferred (greylisted) first, delivered five minutes later: final is sent
    assert got["dave@slow.example"][:2] == ("sent", "2.0.0")
    # deferred twice, then qmgr gave the message up: expired
    assert got["erin@gone.example"][0] == "expired"
    assert got["frank@yahoo.example"][0] == "expired"
    assert got["carol@gmail.example"] == ("sent", "2.0.0", 250, None, "delivered", None)
    assert stats.read == 74 and stats.balanced  # type: ignore[attr-defined]


def test_delays_and_stages(store: Store) -> None:
    ingest(store, SAMPLES / "mx1-rfc3164.log")
    row = store.con.execute(
        "SELECT delay, delay_before_queue, delay_in_queue, delay_connect, delay_transmit, relay_host,"
        " relay_ip, relay_port FROM deliveries WHERE recipient = 'dave@slow.example' AND status = 'sent'"
    ).fetchone()
    assert row == (309.0, 306.0, 0.02, 1.5, 1.48, "mx.slow.example", "203.0.113.80", 25)


def test_message_fields_and_links(store: Store) -> None:
    ingest(store, SAMPLES / "mx1-rfc3164.log")
    con = store.con
    m = con.execute(
        "SELECT sender, size, nrcpt, message_id, client_ip, sasl_method, sasl_username, origin"
        " FROM messages WHERE queue_id = '7D3E51E0C2'"
    ).fetchone()
    assert m == ("bob@example.net", 18234, 3, "a1b2c3d4-5e6f@example.net", "198.51.100.23",
                 "PLAIN", "bob@example.net", "smtpd")  # fmt: skip
    # the bounce notification links back to the message that caused it
    n = con.execute(
        "SELECT b.queue_id, b.notification_kind, o.queue_id FROM messages b"
        " JOIN messages o ON b.bounce_of_key = o.message_key WHERE b.origin = 'bounce'"
        " ORDER BY b.queue_id"
    ).fetchall()
    assert n == [("0A0B0C1E13", "non-delivery", "B21C31E0E3"),
                 ("9F00A1E0D1", "non-delivery", "7D3E51E0C2")]  # fmt: skip
    # content filter re-injection links to the original
    f = con.execute(
        "SELECT o.queue_id FROM messages r JOIN messages o ON r.orig_message_key = o.message_key"
        " WHERE r.queue_id = 'D00D1E1E10'"
    ).fetchone()
    assert f == ("C0FFEE1E0F",)
    held = con.execute("SELECT queue_id FROM messages WHERE held").fetchall()
    assert held == [("F2F3F41E12",)]


def test_rejections_and_auth_failures(store: Store) -> None:
    ingest(store, SAMPLES / "mx1-rfc3164.log")
    rej = store.con.execute(
        "SELECT service, stage, reply_code, dsn, client_ip, recipient FROM rejections"
        " WHERE action = 'reject' ORDER BY logged_at, reply_code"
    ).fetchall()
    assert ("postscreen", "RCPT", 550, "5.7.1", "192.0.2.200", "alice@example.net") in rej
    assert ("smtpd", "RCPT", 554, "5.7.1", "198.51.100.90", "victim@elsewhere.example") in rej
    auth = store.con.execute(
        "SELECT client_ip, mechanism, sasl_username FROM auth_failures ORDER BY logged_at"
    ).fetchall()
    assert auth == [("198.51.100.77", "LOGIN", "admin@example.net"),
                    ("198.51.100.77", "LOGIN", "info@example.net"),
                    ("198.51.100.77", "PLAIN", None)]  # fmt: skip


def test_reingest_adds_nothing(store: Store) -> None:
    ingest(store, SAMPLES)
    before = store.con.execute(
        "SELECT (SELECT count(*) FROM delivery_log), (SELECT count(*) FROM message_log),"
        " (SELECT count(*) FROM rejection_log), (SELECT count(*) FROM quarantine),"
        " (SELECT sum(lines) FROM line_accounting_log)"
    ).fetchone()
    stats = ingest(store, SAMPLES)
    after = store.con.execute(
        "SELECT (SELECT count(*) FROM delivery_log), (SELECT count(*) FROM message_log),"
        " (SELECT count(*) FROM rejection_log), (SELECT count(*) FROM quarantine),"
        " (SELECT sum(lines) FROM line_accounting_log)"
    ).fetchone()
    assert after == before
    assert stats.read == 0  # type: ignore[attr-defined]


def test_rotated_and_compressed_copies_are_recognised(store: Store, tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    src = (SAMPLES / "mx1-rfc3164.log").read_bytes()
    half = src.index(b"\n", len(src) // 2) + 1
    (logdir / "mail.log").write_bytes(src[:half])
    ingest(store, logdir / "mail.log")
    # rotation: mail.log becomes mail.log.1 (then grows no more), is compressed, a new one starts
    with gzip.open(logdir / "mail.log.1.gz", "wb") as fh:
        fh.write(src)
    (logdir / "mail.log").write_bytes(b"")
    (logdir / "mail.log").unlink()
    stats = ingest(store, logdir)
    # only the second half is new
    assert stats.read == src[half:].count(b"\n")  # type: ignore[attr-defined]
    total = store.con.execute("SELECT sum(lines) FROM line_accounting_log").fetchone()
    assert total == (src.count(b"\n"),)
    fresh = Store.open(tmp_path / "fresh.duckdb")
    ingest(fresh, SAMPLES / "mx1-rfc3164.log")
    assert outcomes(fresh) == outcomes(store)


def test_rotation_order(tmp_path: Path) -> None:
    for name in ["mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.10.gz", "x.expected.jsonl"]:
        (tmp_path / name).write_bytes(b"x\n")
    assert [p.name for p in expand_paths([tmp_path])] == [
        "mail.log.10.gz", "mail.log.2.gz", "mail.log.1", "mail.log",
    ]  # fmt: skip


def test_year_rollover(store: Store) -> None:
    ingest(store, SAMPLES / "year-rollover.log", year=2026)
    got = store.con.execute(
        "SELECT first_seen, removed_at FROM messages WHERE queue_id = '8A8B8C8D8E'"
    ).fetchone()
    assert got == (
        datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 2, tzinfo=UTC),
    )


def test_year_from_mtime_when_file_starts_last_year(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "mail.log"
    shutil.copy(SAMPLES / "year-rollover.log", p)
    jan2 = datetime(2027, 1, 2, tzinfo=UTC).timestamp()
    import os

    os.utime(p, (jan2, jan2))
    LogIngestor(store, tz=UTC, clock=lambda: FIXED).run([p])
    got = store.con.execute("SELECT min(first_seen) FROM messages").fetchone()
    assert got == (datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC),)


def test_every_timestamp_style(store: Store) -> None:
    ingest(
        store,
        SAMPLES / "rsyslog-rfc3339.log",
        SAMPLES / "journal-short-iso.log",
        SAMPLES / "rfc5424.log",
    )
    got = dict(
        store.con.execute("SELECT host, min(logged_at) FROM deliveries GROUP BY host").fetchall()
    )
    assert got == {
        "mx2": datetime(2026, 11, 28, 13, 52, 14, 412345, tzinfo=UTC),
        "relay1": datetime(2026, 11, 28, 22, 10, 31, tzinfo=UTC),
        "mx3": datetime(2026, 11, 28, 8, 0, 1, tzinfo=UTC),
    }
    inst = store.con.execute(
        "SELECT DISTINCT instance FROM deliveries WHERE host = 'relay1'"
    ).fetchall()
    assert inst == [("postfix-out",)]


def test_bad_input_is_accounted_for(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "bad.log"
    long_line = (
        b"Nov 28 11:00:00 mx1 postfix/smtpd[1]: connect from " + b"a" * 70_000 + b"[192.0.2.9]\n"
    )
    p.write_bytes((SAMPLES / "bad-input.log").read_bytes() + b"\n" + long_line)
    stats = ingest(store, p)
    assert stats.balanced  # type: ignore[attr-defined]
    q = dict(store.con.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1").fetchall())
    assert q["invalid-utf8"] == 2 and q["nul-byte"] == 1 and q["line-too-long"] == 1
    raw = store.con.execute("SELECT raw FROM quarantine WHERE reason = 'nul-byte'").fetchone()
    assert raw is not None and b"nul\x00byte" in raw[0]
    acct = dict(
        store.con.execute("SELECT outcome, sum(lines) FROM line_accounting GROUP BY 1").fetchall()
    )
    assert sum(acct.values()) == stats.read  # type: ignore[attr-defined]
    assert stats.read == p.read_bytes().count(b"\n")  # type: ignore[attr-defined]


def test_missing_path_is_an_error_before_anything_is_written(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        LogIngestor(store, tz=UTC, year=2026).run(
            [SAMPLES / "mx1-rfc3164.log", tmp_path / "nope.log"]
        )
    assert store.con.execute("SELECT count(*) FROM delivery_log").fetchone() == (0,)


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_batch_size_does_not_change_the_result(tmp_path: Path, batch: int) -> None:
    ref = Store.open(tmp_path / "ref.duckdb")
    ingest(ref, SAMPLES / "mx1-rfc3164.log")
    s = Store.open(tmp_path / f"b{batch}.duckdb")
    ingest(s, SAMPLES / "mx1-rfc3164.log", batch_lines=batch)
    q = "SELECT * EXCLUDE (message_key) FROM deliveries ORDER BY line_offset"
    assert s.con.execute(q).fetchall() == ref.con.execute(q).fetchall()
    qm = "SELECT * FROM messages ORDER BY message_key"
    assert s.con.execute(qm).fetchall() == ref.con.execute(qm).fetchall()


def test_numbers_too_big_for_their_columns_are_quarantined(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "big.log"
    p.write_bytes(
        b"Nov 28 11:00:00 mx1 postfix/qmgr[3]: 1A2B3C4D5E: from=<a@example.com>, size=99999999999999999999, nrcpt=1 (queue active)\n"
        b"Nov 28 11:00:01 mx1 postfix/smtp[4]: 1A2B3C4D5E: to=<b@example.com>, relay=mx.example.com[192.0.2.1]:99999999999, delay=1, delays=0.1/0.1/0.4/0.4, dsn=2.0.0, status=sent (250 ok)\n"
        b"Nov 28 11:00:02 mx1 postfix/smtp[4]: 1A2B3C4D5E: to=<c@example.com>, relay=mx.example.com[192.0.2.1]:25, conn_use=9999999999, delay=1, delays=0.1/0.1/0.4/0.4, dsn=2.0.0, status=sent (250 ok)\n"
        b"Nov 28 11:00:03 mx1 postfix/qmgr[3]: 1A2B3C4D5E: removed\n"
    )
    stats = ingest(store, p)
    assert stats.quarantined == 3 and stats.stored == 1 and stats.balanced  # type: ignore[attr-defined]
    reasons = sorted(r[0] for r in store.con.execute("SELECT reason FROM quarantine").fetchall())
    assert reasons == ["bad-delivery", "bad-port", "bad-qmgr"]


@pytest.mark.parametrize("fast", [False, None], ids=["pure", "auto"])
def test_a_message_rejected_at_end_of_data_is_closed(
    store: Store, tmp_path: Path, fast: bool | None
) -> None:
    p = tmp_path / "rej.log"
    p.write_bytes(
        b"Nov 28 11:00:00 mx1 postfix/smtpd[1]: 1A2B3C4D5E: client=a.example[192.0.2.1]\n"
        b"Nov 28 11:00:01 mx1 postfix/cleanup[2]: 1A2B3C4D5E: milter-reject: END-OF-MESSAGE from a.example[192.0.2.1]: 5.7.1 Spam; from=<x@a.example> to=<y@example.net> proto=ESMTP helo=<a.example>\n"
        b"Nov 28 11:05:00 mx1 postfix/smtpd[1]: 1A2B3C4D5E: client=b.example[192.0.2.2]\n"
        b"Nov 28 11:05:01 mx1 postfix/smtpd[1]: 1A2B3C4D5E: reject: RCPT from b.example[192.0.2.2]: 550 5.1.1 <z@example.net>: Recipient address rejected: User unknown; from=<x@b.example> to=<z@example.net> proto=ESMTP helo=<b.example>\n"
        b"Nov 28 11:05:02 mx1 postfix/qmgr[3]: 1A2B3C4D5E: from=<x@b.example>, size=100, nrcpt=1 (queue active)\n"
    )
    LogIngestor(store, tz=UTC, year=2026, clock=lambda: FIXED, fast=fast).run([p])
    rows = store.con.execute(
        "SELECT client_ip, rejected, sender FROM messages ORDER BY first_seen"
    ).fetchall()
    # the rejected message is closed; the queue ID's next use is a new message, and a reject at
    # RCPT (one recipient refused) does not end it
    assert rows == [("192.0.2.1", True, None), ("192.0.2.2", True, "x@b.example")]


def test_instance_column_added_to_a_populated_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0011 on a store written before it: old rows keep NULL, new rows get the
    instance, and the public views show the column."""
    from mtalens.pipeline import store as store_mod

    every = store_mod.load_migrations()
    assert any(m.name == "0011_instance_everywhere.sql" for m in every)
    monkeypatch.setattr(store_mod, "load_migrations", lambda: [m for m in every if m.version < 11])
    path = tmp_path / "old.duckdb"
    old = Store.open(path)
    at = "TIMESTAMPTZ '2026-03-01 00:00:00+00'"
    old.con.execute(f"INSERT INTO rejection_log (logged_at, host, service, action) VALUES"
                    f" ({at}, 'gw1', 'smtpd', 'reject')")  # fmt: skip
    old.con.execute(f"INSERT INTO auth_failure_log (logged_at, host, service) VALUES"
                    f" ({at}, 'gw1', 'smtpd')")  # fmt: skip
    old.con.execute(f"INSERT INTO event_log (logged_at, host, service, kind) VALUES"
                    f" ({at}, 'gw1', 'smtpd', 'connect')")  # fmt: skip
    old.close()
    monkeypatch.undo()

    s = Store.open(path)
    ingest(s, SAMPLES / "multi-instance.log")
    for view in ("rejections", "auth_failures", "events"):
        cols = [d[0] for d in s.con.execute(f"SELECT * FROM {view} LIMIT 0").description or []]
        assert "instance" in cols, view
        nulls = s.con.execute(f"SELECT count(*) FROM {view} WHERE instance IS NULL").fetchone()
        assert nulls == (1,), view  # the row written before 0011
        names = {r[0] for r in s.con.execute(f"SELECT DISTINCT instance FROM {view}").fetchall()}
        assert names - {None} and names - {None} <= {"postfix", "postfix-in", "postfix-out",
                                                     "postfix-out/submission"}, view  # fmt: skip
    assert s.con.execute(
        "SELECT instance, service FROM rejections WHERE instance IS NOT NULL ORDER BY logged_at"
    ).fetchall() == [("postfix-in", "postscreen"), ("postfix-in", "smtpd"),
                     ("postfix-in", "cleanup")]  # fmt: skip


def test_diagnose_and_report_name_the_instance(store: Store) -> None:
    """The examples of `mtalens diagnose` rebuild the syslog tag with the instance, and the
    report's rejects section has an instance column."""
    from mtalens.pipeline.diagnose import Context, diagnose
    from mtalens.pipeline.reports import report
    from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE

    ingest(store, SAMPLES / "multi-instance.log")
    found = {m.id: m for f in diagnose(Context(store=store, since=EPOCH, until=FAR_FUTURE,
                                               clock=lambda: FIXED)) for m in f.flat()}  # fmt: skip
    relay = found["relay-denied-inbound:inbound"].evidence.examples
    assert relay[0].startswith("2026-03-03 10:06:01 postfix-in/smtpd: reject: RCPT from unknown[")
    clear = found["auth-without-tls:203.0.113.66"].evidence.examples
    assert clear[0].startswith("2026-03-03 10:07:04 postfix-out/submission/smtpd: disconnect")
    (rejects,) = report(store, since=EPOCH, until=FAR_FUTURE, sections=("rejects",))
    rows = rejects.records()
    assert {(r["instance"], r["service"]) for r in rows} == {
        ("postfix-in", "postscreen"),
        ("postfix-in", "smtpd"),
        ("postfix-in", "cleanup"),
    }


# A message Postfix retries for 9 days (maximal_queue_lifetime raised to 10d): deferred on
# Mar 1, delivered on Mar 10. Another message's line comes first on Mar 10, so the ingest's
# clock has moved 9 days on when the forgotten message is logged again.
LONG_LIVED = (
    b"Mar  1 10:00:00 mx1 postfix/smtpd[1]: 1A2B3C4D5E: client=a.example[192.0.2.1]\n"
    b"Mar  1 10:00:01 mx1 postfix/qmgr[3]: 1A2B3C4D5E: from=<x@a.example>, size=100, nrcpt=1 (queue active)\n"
    b"Mar  1 10:00:02 mx1 postfix/smtp[4]: 1A2B3C4D5E: to=<y@b.example>, relay=none, delay=1, delays=0.1/0/0.9/0, dsn=4.4.1, status=deferred (connect to mx.b.example[192.0.2.9]:25: Connection refused)\n"
    b"Mar 10 10:00:00 mx1 postfix/pickup[5]: 2B3C4D5E6F: uid=0 from=<root>\n"
    b"Mar 10 10:00:01 mx1 postfix/smtp[4]: 1A2B3C4D5E: to=<y@b.example>, relay=mx.b.example[192.0.2.9]:25, delay=777601, delays=777600/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n"
    b"Mar 10 10:00:01 mx1 postfix/qmgr[3]: 1A2B3C4D5E: removed\n"
)  # fmt: skip


def _instances_of_long_lived(store: Store) -> list[tuple[object, ...]]:
    return store.con.execute(
        "SELECT m.client_ip, m.sender, m.removed_at IS NOT NULL, list(d.status ORDER BY d.logged_at)"
        " FROM messages m LEFT JOIN deliveries d USING (message_key)"
        " WHERE m.queue_id = '1A2B3C4D5E' GROUP BY ALL ORDER BY min(m.first_seen)"
    ).fetchall()


@pytest.mark.parametrize("fast", [False, None], ids=["pure", "auto"])
def test_queue_lifetime_keeps_a_long_lived_message_whole(
    store: Store, tmp_path: Path, fast: bool | None
) -> None:
    from datetime import timedelta

    p = tmp_path / "long.log"
    p.write_bytes(LONG_LIVED)
    # one commit per line: the correlator forgets stale messages at each commit
    ingest(store, p, batch_lines=1, fast=fast, queue_lifetime=timedelta(days=10))
    assert _instances_of_long_lived(store) == [
        ("192.0.2.1", "x@a.example", True, ["deferred", "sent"])
    ]
    # Postfix's default 5d (horizon 8 days): the same log splits the message in two
    other = Store.open(tmp_path / "default.duckdb")
    ingest(other, p, batch_lines=1, fast=fast)
    assert _instances_of_long_lived(other) == [
        ("192.0.2.1", "x@a.example", False, ["deferred"]),
        (None, None, True, ["sent"]),
    ]


@pytest.mark.parametrize("lifetime", ["10d", None], ids=["10d", "default"])
def test_queue_lifetime_across_a_restart(tmp_path: Path, lifetime: str | None) -> None:
    """The open messages reloaded from the store are those the horizon still holds."""
    from mtalens.pipeline.config import queue_lifetime

    first, second = tmp_path / "part1.log", tmp_path / "part2.log"
    lines = LONG_LIVED.split(b"\n")
    first.write_bytes(b"\n".join(lines[:4]) + b"\n")
    second.write_bytes(b"\n".join(lines[4:]))
    path = tmp_path / "r.duckdb"
    for part in (first, second):
        with Store.open(path) as s:
            ingest(s, part, queue_lifetime=queue_lifetime(lifetime))
    with Store.open(path, read_only=True) as s:
        got = _instances_of_long_lived(s)
    assert len(got) == (1 if lifetime == "10d" else 2)
    assert got[-1][2:] == (True, ["deferred", "sent"] if lifetime == "10d" else ["sent"])


def test_queue_lifetime_option_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mtalens.pipeline.cli import app

    monkeypatch.chdir(tmp_path)  # no ./mtalens.toml but the test's own
    monkeypatch.delenv("MTALENS_CONFIG", raising=False)
    log = tmp_path / "long.log"
    log.write_bytes(LONG_LIVED)
    first, second = tmp_path / "part1.log", tmp_path / "part2.log"
    lines = LONG_LIVED.split(b"\n")
    first.write_bytes(b"\n".join(lines[:4]) + b"\n")
    second.write_bytes(b"\n".join(lines[4:]))
    runner = CliRunner()

    def messages(db: Path, *extra: str) -> int:
        # two runs: the second reloads the messages the horizon still holds
        for part in (first, second):
            r = runner.invoke(app, ["ingest", str(part), "--db", str(db), "--year", "2026",
                                    "--timezone", "UTC", "--no-progress", *extra])  # fmt: skip
            assert r.exit_code == 0, r.output
        with Store.open(db, read_only=True) as s:
            row = s.con.execute(
                "SELECT count(*) FROM messages WHERE queue_id = '1A2B3C4D5E'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    assert messages(tmp_path / "a.duckdb", "--queue-lifetime", "10d") == 1
    assert messages(tmp_path / "d.duckdb") == 2  # 5d: 9 days of silence end the message
    bad = runner.invoke(app, ["ingest", str(log), "--db", str(tmp_path / "b.duckdb"),
                              "--queue-lifetime", "10 days"])  # fmt: skip
    assert bad.exit_code == 2 and "--queue-lifetime: '10 days'" in bad.output
    (tmp_path / "mtalens.toml").write_text('[postfix]\nmaximal_queue_lifetime = "2w"\n'
                                           '[watch]\nlogs = ["/var/log/mail.log"]\n')  # fmt: skip
    assert messages(tmp_path / "e.duckdb") == 1  # ./mtalens.toml: 2w
    from mtalens.pipeline.config import queue_lifetime

    assert queue_lifetime(None).days == 14  # its [watch] section is left to `mtalens watch`
    assert queue_lifetime("36h").total_seconds() == 36 * 3600  # the option wins
    (tmp_path / "mtalens.toml").write_text('[postfix]\nmaximal_queue_lifetime = "5x"\n')
    bad = runner.invoke(app, ["ingest", str(log), "--db", str(tmp_path / "c.duckdb")])
    assert bad.exit_code == 2 and "[postfix] maximal_queue_lifetime: '5x'" in bad.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5d", 5 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("3600s", 3600), ("2w", 14 * 86400),
     ("7", 7 * 86400), ("0", 0), (" 10d ", 10 * 86400)],
)  # fmt: skip
def test_postfix_time_values(text: str, seconds: int) -> None:
    from mtalens.parsers.postfix import parse_time_value

    assert parse_time_value(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "d", "5x", "-1d", "1.5d", "5 d", "5D", "10dd", "9999999w"])
def test_postfix_time_values_refused(text: str) -> None:
    from mtalens.parsers.errors import ParseError
    from mtalens.parsers.postfix import parse_time_value

    with pytest.raises(ParseError, match="bad-time-value"):
        parse_time_value(text)


@pytest.mark.parametrize("fast", [False, True], ids=["pure", "fast"])
def test_a_newer_hosts_file_read_first_does_not_split_an_older_files_messages(
    tmp_path: Path, fast: bool
) -> None:
    """Stale messages are forgotten by their own host's clock: an archive of two hosts (or
    months) read in one run, the newer file first, with commits inside the older file."""
    new = tmp_path / "a-new.log"
    new.write_text(
        "Nov 20 10:00:00 mx9 postfix/qmgr[1]: AAA111: from=<a@x.example>, size=10, nrcpt=1"
        " (queue active)\n"  # never removed: open, and months newer than the other file
    )
    old = tmp_path / "b-old.log"
    old.write_text(
        "Mar  3 10:15:00 gw1 postfix/pickup[2]: BBB222: uid=0 from=<root>\n"
        "Mar  3 10:15:00 gw1 postfix/qmgr[3]: BBB222: from=<root@gw1.example>, size=610,"
        " nrcpt=1 (queue active)\n"
        "Mar  3 10:15:01 gw1 postfix/smtp[4]: BBB222: to=<admin@example.net>, relay=none,"
        " delay=1, delays=0.01/0/1/0, dsn=4.4.1, status=deferred (connect to"
        " relay.example.net[192.0.2.50]:25: Connection refused)\n"
        "Mar  3 10:15:02 gw1 postfix/qmgr[3]: BBB222: removed\n"
    )
    with Store.memory() as s:
        LogIngestor(s, year=2026, tz=UTC, batch_lines=2, commit_lines=2, fast=fast).run([new, old])
        rows = s.con.execute(
            "SELECT origin, sender, removed_at IS NOT NULL FROM messages WHERE host = 'gw1'"
        ).fetchall()
    assert rows == [("pickup", "root@gw1.example", True)]
