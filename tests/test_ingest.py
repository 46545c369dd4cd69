"""Ingest end to end on the sample logs: outcomes, links, accounting, idempotence, rotation."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.ingest import IngestError, LogIngestor, expand_paths
from pipeline.store import Store

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
