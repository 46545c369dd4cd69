"""The benchmark's Sendmail log generator (bench/gen_sendmail_logs.py): deterministic, every line
has a shape Sendmail 8.17 writes, per message the lines agree, and `mtalens ingest` of the log
quarantines nothing and stores exactly what the generator says it wrote.

The line regexes here are written independently of the generator, from the lines of
sample_logs/sendmail/real-sendmail-8.17.log (a real Sendmail 8.17) and the equates of
parsers/sendmaillog.py's docstring."""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mtalens.parsers.sendmaillog import is_queue_id, parse_delay
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
from tests.benchload import load_bench

REAL = Path(__file__).resolve().parents[1] / "sample_logs/sendmail/real-sendmail-8.17.log"


gen = load_bench("gen_sendmail_logs")

QID = r"[0-9A-Za-x]{8}\d{6,}"
IP = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
RELAY = rf"(?:[\w.-]+ )?\[{IP}\](?: \(may be forged\))?"
ADDR = r"[\w.+-]+@[\w.-]+"
DELAY = r"(?:\d+\+)?\d\d:\d\d:\d\d"
LINE = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) mx1 (?P<tag>sm-mta|sm-msp-queue|sendmail)"
    rf"\[(?P<pid>\d+)\]: (?:(?P<qid>{QID}): )?(?P<body>.*)$"
)
TO_TAIL = (
    rf"(?:, ctladdr=(?:<{ADDR}>|[\w-]+) \(\d+/\d+\))?, delay=(?P<delay>{DELAY}), "
    rf"xdelay={DELAY}, mailer=(?P<mailer>esmtp|local|relay), pri=(?P<pri>\d+)"
    rf"(?:, relay=(?:[\w.-]+\.(?: \[{IP}\])?|\[127\.0\.0\.1\] \[127\.0\.0\.1\]))?, "
    r"dsn=(?P<dsn>[245]\.\d\.\d{1,3})(?:, reply=[45]\d\d [45]\.\d\.\d{1,3} .+)?, "
    r"stat=(?P<stat>.+)$"
)
WITH_QID: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("from", re.compile(
        rf"^from=(?:<(?:{ADDR})?>|[\w-]+), size=\d+, class=0, nrcpts=(?P<n>\d+)"
        r"(?:, msgid=<[^<>\s]+@[\w.-]+>)?(?:, bodytype=8BITMIME)?"
        rf"(?:, proto=ESMTP(?:S|SA)?, daemon=(?:MTA|MSP)-v4, relay=(?:{RELAY}|localhost "
        rf"\[127\.0\.0\.1\])|, relay=[\w-]+@localhost)$")),
    ("to", re.compile(rf"^to=(?P<to>(?:<{ADDR}>|{ADDR})(?:,(?:<{ADDR}>|{ADDR}))*){TO_TAIL}")),
    ("done", re.compile(rf"^done; delay=(?P<delay>{DELAY}), ntries=(?P<n>\d+)$")),
    ("dsn-notice", re.compile(
        rf"^(?P<new>{QID}): (?:DSN: .+|sender notify: (?:Warning: could not send message for "
        r"past \d+ \w+|Cannot send message for \d+ \w+))$")),
    ("reject-unknown", re.compile(rf"^<{ADDR}>\.\.\. User unknown$")),
    ("reject-rcpt", re.compile(
        rf"^ruleset=check_rcpt, arg1=<{ADDR}>, relay={RELAY}, reject=550 5\.7\.1 <{ADDR}>\.\.\. "
        r"Relaying denied.*$")),
    ("reject-mail", re.compile(
        rf"^ruleset=check_mail, arg1=<{ADDR}>, relay={RELAY}, reject=553 5\.1\.8 <{ADDR}>\.\.\. "
        r"Domain of sender address \S+ does not exist$")),
    ("auth-fail", re.compile(
        rf"^AUTH failure \((?:PLAIN|LOGIN)\): authentication failure \(-13\) SASL\(-13\): .+, "
        rf"user=[\w.]+, relay={RELAY}$")),
    ("no-mail", re.compile(
        rf"^{RELAY} did not issue MAIL/EXPN/VRFY/ETRN during connection to M[TS][AP]-v4$")),
    ("lost", re.compile(rf"^lost input channel from {RELAY} to MTA-v4 after \w+$")),
)  # fmt: skip
WITHOUT_QID: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("connect", re.compile(
        rf"^NOQUEUE: connect from (?:{RELAY}|localhost \[127\.0\.0\.1\]|[\w-]+@localhost)$")),
    ("tls-features", re.compile(
        rf"^tls_(?:srv|clt)_features=(?:\(null\)|empty, stat=0), relay={RELAY}$")),
    ("starttls-server", re.compile(
        rf"^STARTTLS=server, relay={RELAY}, version=TLSv1\.3, verify=NO, cipher=TLS_\w+, "
        r"bits=256/256$")),
    ("starttls-client", re.compile(
        rf"^STARTTLS=client, relay=(?:[\w.-]+|\[{IP}\]), version=TLSv1\.3, verify=(?:OK|FAIL), "
        r"cipher=TLS_\w+, bits=256/256$")),
    ("auth-server", re.compile(
        rf"^AUTH=server, relay={RELAY}, authid={ADDR}, mech=(?:PLAIN|LOGIN), bits=0$")),
    ("reject-relay", re.compile(
        rf"^ruleset=check_relay, arg1=\[{IP}\], arg2={IP}, relay=\[{IP}\], reject=554 5\.7\.1 "
        rf"Rejected {IP} found in [\w.]+$")),
    ("daemon", re.compile(r"^starting daemon \(8\.17\.\d+\.\d+\): (?:SMTP\+)?queueing@[\d:]+$")),
)  # fmt: skip

SMALL = gen.GenConfig(lines=40_000, seed=5, sessions_per_second=2.0, queue_interval=120.0,
                      min_queue_age=100.0, queue_warning=600.0, queue_return=1800.0)  # fmt: skip


def _text(cfg: Any) -> tuple[str, dict[str, int]]:
    out = io.BytesIO()
    stats = gen.write_log(cfg, out)
    data = out.getvalue().decode()
    lines = sum(v for k, v in stats.counts.items() if k.startswith("line:"))
    assert stats.lines == cfg.lines == data.count("\n") == lines
    return data, stats.counts


@pytest.fixture(scope="module")
def small() -> tuple[str, dict[str, int]]:
    return _text(SMALL)


def _kind(m: re.Match[str]) -> str | None:
    table = WITH_QID if m["qid"] else WITHOUT_QID
    return next((k for k, rx in table if rx.match(m["body"])), None)


def test_deterministic_for_a_seed() -> None:
    cfg = gen.GenConfig(lines=3000, seed=3)
    assert _text(cfg) == _text(cfg)
    assert _text(cfg)[0] != _text(replace(cfg, seed=4))[0]


def test_the_patterns_read_the_real_sendmail() -> None:
    """The shapes above are those of the real 8.17's log (with its lab's names and addresses
    put in the generated host's terms): each kind the generator writes matches a real line."""
    seen = set()
    for line in REAL.read_text().splitlines():
        line = re.sub(r"^Dec  4 (\S+) mx1 ", r"Mar  2 \1 mx1 ", line)
        line = re.sub(r" to MTA\b(?!-)", " to MTA-v4", line).replace("=MTA,", "=MTA-v4,")
        m = LINE.match(line)
        if m is not None and (kind := _kind(m)) is not None:
            seen.add(kind)
    assert seen >= {"from", "to", "done", "dsn-notice", "reject-unknown", "reject-rcpt",
                    "auth-fail", "no-mail", "lost", "connect", "tls-features",
                    "starttls-server", "starttls-client"}  # fmt: skip


def test_every_line_has_a_known_shape_and_is_counted_as_it(
    small: tuple[str, dict[str, int]],
) -> None:
    data, counts = small
    got: Counter[str] = Counter()
    for line in data.splitlines():
        m = LINE.match(line)
        assert m, line
        kind = _kind(m)
        assert kind is not None, f"unknown shape: {line!r}"
        got["line:" + kind] += 1
    assert dict(got) == {k: v for k, v in counts.items() if k.startswith("line:")}
    # a realistic mix: every kind is there, deliveries and envelopes lead
    assert {k for k, _ in WITH_QID + WITHOUT_QID} == {k[5:] for k in got}
    assert counts["rcpt:sent"] > counts["line:from"] > counts["rcpt:deferred"]
    assert counts["rcpt:deferred"] > counts["rcpt:bounced"] > 0
    assert counts["expired"] > 0 and counts["event:notification-delay"] > 0


def _qid_time(qid: str) -> tuple[int, int, int, int, int]:
    """(month, day, hour, minute, second) from a queue id's first characters."""
    b60 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"
    return tuple(b60.index(c) for c in qid[1:6])  # type: ignore[return-value]


def test_queue_ids_encode_when_and_which_process_made_them(
    small: tuple[str, dict[str, int]],
) -> None:
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    made: dict[str, tuple[str, str]] = {}  # qid -> (pid, time) of the line that made it
    for line in small[0].splitlines():
        m = LINE.match(line)
        assert m
        new = None
        if m["qid"] and (m["body"].startswith("from=") or "did not issue" in m["body"]):
            new = m["qid"]
        elif mn := re.match(rf"^({QID}): ", m["body"]):
            new = mn[1]  # a notification: made by the process that logs it
        if new is not None and new not in made:
            made[new] = (m["pid"], m["ts"])
    assert len(made) > 3000
    for qid, (pid, ts) in made.items():
        assert is_queue_id(qid) and int(qid[8:]) == int(pid), qid
        assert qid[0] == "6"  # (2026 - 1900) % 60
        mon, day, hh, mi, ss = _qid_time(qid)
        at = datetime(2026, months.index(ts[:3]) + 1, int(ts[4:6]), int(ts[7:9]), int(ts[10:12]),
                      int(ts[13:15]), tzinfo=UTC)  # fmt: skip
        # the process' first id: at or before the line that shows it
        assert datetime(2026, mon + 1, day, hh, mi, ss, tzinfo=UTC) <= at, qid


def test_per_message_consistency(small: tuple[str, dict[str, int]]) -> None:
    """Per queue id: one envelope; each attempt's pri= is 90000 more and its delay= no less
    than the last; done; comes last with the number of attempts; every recipient of a message
    that is done got a final status, or the message expired."""
    by_qid: dict[str, list[str]] = defaultdict(list)
    for line in small[0].splitlines():
        m = LINE.match(line)
        assert m
        if m["qid"]:
            by_qid[m["qid"]].append(m["body"])
    done = 0
    to_rx = dict(WITH_QID)["to"]
    for qid, bodies in by_qid.items():
        assert sum(b.startswith("from=") for b in bodies) <= 1, qid
        dones = [b for b in bodies if b.startswith("done;")]
        assert len(dones) <= 1 and (not dones or bodies[-1] == dones[0]), qid
        tos = [m for b in bodies if (m := to_rx.match(b))]
        delays = [parse_delay(m["delay"]) for m in tos]
        assert delays == sorted(delays), qid
        pris = sorted({int(m["pri"]) for m in tos if m["mailer"] != "relay"})
        assert all(b - a == 90000 for a, b in itertools.pairwise(pris)), (qid, pris)
        envelope = next((b for b in bodies if b.startswith("from=")), None)
        if not dones or envelope is None:
            continue
        done += 1
        final: set[str] = set()
        for m in tos:
            if not m["stat"].startswith("Deferred"):
                final.update(a.strip("<>") for a in m["to"].split(","))
        want = int(re.search(r"nrcpts=(\d+)", envelope)[1])  # type: ignore[index]
        expired = any("Cannot send message for" in b for b in bodies)
        assert len(final) == want or expired, qid
        # each attempt has a pri= of its own and logs a to= line
        assert int(dones[0].rsplit("=", 1)[1]) == len({m["pri"] for m in tos}), qid
    assert done > 3000


def test_ingest_quarantines_nothing_and_stores_what_was_written(
    small: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    data, counts = small
    log = tmp_path / "maillog"
    log.write_text(data)
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = LogIngestor(store, tz=UTC, year=2026).run([log])
        q = store.con.execute

        def one(sql: str) -> int:
            row = q(sql).fetchone()
            assert row is not None
            return int(row[0])

        by_status = dict(q("SELECT status, count(*) FROM delivery_log GROUP BY 1").fetchall())
        events = dict(q("SELECT kind, count(*) FROM event_log GROUP BY 1").fetchall())
        got = {
            "message": one("SELECT count(*) FROM message_log"),
            "arrived": one("SELECT count(*) FROM message_log WHERE arrived_at IS NOT NULL"),
            "closed": one("SELECT count(*) FROM message_log WHERE removed_at IS NOT NULL"),
            "bounce": one("SELECT count(*) FROM message_log WHERE bounce_of_key IS NOT NULL"),
            "rejected-message": one("SELECT count(*) FROM message_log WHERE rejected"),
            "expired": one("SELECT count(*) FROM message_log WHERE expired_at IS NOT NULL"),
            "reject": one("SELECT count(*) FROM rejection_log"),
            "auth-fail": one("SELECT count(*) FROM auth_failure_log"),
        }
    c = Counter(counts)
    assert stats.quarantined == 0
    assert stats.read == SMALL.lines == stats.stored + stats.ignored
    ignored = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("ignored:")}
    assert dict(stats.ignored_by_rule) == ignored
    assert by_status == {k[5:]: v for k, v in c.items() if k.startswith("rcpt:")}
    assert events == {k[6:]: v for k, v in c.items() if k.startswith("event:")}
    assert got == {k: c[k] for k in got}
    assert min(got.values()) > 0
