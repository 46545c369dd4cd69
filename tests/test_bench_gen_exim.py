"""The benchmark's Exim log generator (bench/gen_exim_logs.py): deterministic, every line has a
shape Exim 4 writes, per message the lines agree, and `mtalens ingest` of the log quarantines
nothing and stores exactly what the generator says it wrote.

The line regexes here are written independently of the generator, from the Exim specification's
chapter "Log files" (sections "Log line flags", "Logging message reception", "Logging
deliveries", "Deferred deliveries", "Delivery failures", "Summary of Fields in Log Lines")."""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mtalens.parsers.eximlog import id_time, parse_duration
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
from tests.benchload import load_bench

gen = load_bench("gen_exim_logs")

B62 = "[0-9A-Za-z]"
MID16 = rf"{B62}{{6}}-{B62}{{6}}-{B62}{{2}}"
MID23 = rf"{B62}{{6}}-{B62}{{11}}-{B62}{{4}}"
MID = rf"(?:{MID16}|{MID23})"
IP = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
# H=name (helo) [ip]:port, either of name and (helo) may be missing; I= the local interface
HOST = rf"(?:[\w.-]+ )?(?:\([^)\s]+\) )?\[{IP}\]:\d+ I=\[{IP}\]:(?:25|587)"
TIME = r"(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?\d+(?:\.\d{3})?s"
LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?P<ms>\.\d{3})? (?:\[(?P<pid>\d+)\] )?"
    rf"(?:(?P<mid>{MID}) )?(?P<body>.*)$"
)
WITH_ID: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("arrival", re.compile(
        rf"^<= \S+@\S+ (?:H={HOST} P=esmtps?a? X=\S+ CV=no(?: A=\w+:\S+)?|U=[\w-]+ P=local) "
        r"S=\d+ id=\S+@\S+ for \S+@\S+(?: \S+@\S+)*$")),
    ("bounce-arrival", re.compile(
        rf"^<= <> R=(?P<about>{MID}) U=Debian-exim P=local S=\d+ for \S+@\S+$")),
    ("sent", re.compile(
        rf"^(?:=>|->) \S+(?: <\S+@\S+>)? R=\w+ T=\w+(?: H=[\w.-]+ \[{IP}\](?: X=\S+ CV=yes)?"
        rf' C="[^"]*")? QT=(?P<qt>{TIME}) DT={TIME}$')),
    ("deferred", re.compile(
        r"^== \S+(?: <\S+@\S+>)? R=\w+ T=\w+ defer \(-?\d+\)"
        rf"(?:: .+| H=[\w.-]+ \[{IP}\](?: X=\S+ CV=yes)? DT={TIME}: SMTP error from remote mail "
        r"server after (?:RCPT TO:<\S+>|MAIL FROM:<\S*> SIZE=\d+|end of data): [45]\d\d.*)$")),
    ("bounced", re.compile(
        rf"^\*\* \S+(?: <\S+@\S+>)? R=\w+ T=\w+(?: H=[\w.-]+ \[{IP}\](?: X=\S+ CV=yes)?: SMTP "
        rf"error from remote mail server after RCPT TO:<\S+>: 5\d\d.* DT={TIME}|: retry time not"
        r" reached for any host after a long failure period)$")),
    ("expired", re.compile(r"^\*\* \S+@\S+: retry timeout exceeded$")),
    ("completed", re.compile(r"^Completed$")),
    ("frozen", re.compile(r"^Frozen \(delivery error message\)$")),
    ("reject-data", re.compile(rf"^H={HOST} F=<\S*> rejected after DATA: .+$")),
)  # fmt: skip
WITHOUT_ID: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("connect", re.compile(
        rf"^SMTP connection from \[{IP}\]:\d+ I=\[{IP}\]:\d+ \(TCP/IP connection count = \d+\)$")),
    ("disconnect", re.compile(rf"^SMTP connection from {HOST} closed by QUIT$")),
    ("reject", re.compile(
        rf"^H={HOST} (?:F=<\S*> rejected RCPT <\S+@\S+>: .+|rejected EHLO or HELO \S+: .+)$")),
    ("tempreject", re.compile(rf"^H={HOST} F=<\S*> temporarily rejected RCPT <\S+@\S+>: .+$")),
    ("auth-fail", re.compile(
        rf"^\w+ authenticator failed for {HOST}: 535 Incorrect authentication data "
        r"\(set_id=\S+\)$")),
    ("lost", re.compile(
        rf"^(?:unexpected disconnection while reading SMTP command from|SMTP command timeout "
        rf"on connection from) {HOST} D=\w+$")),
    ("no-mail", re.compile(rf"^no MAIL in SMTP connection from {HOST} D=\d+s C=[A-Z,]+$")),
    ("ignored:exim-queue-run", re.compile(r"^(?:Start|End) queue run: pid=\d+$")),
    ("ignored:exim-daemon", re.compile(r"^exim 4\.\d+ daemon started: pid=\d+, .+$")),
    ("tls-error", re.compile(rf"^TLS error on connection from {HOST} \(SSL_accept\): .+$")),
    ("ignored:exim-other", re.compile(
        rf"^(?:H={HOST} sender verify fail for <\S+>: .+|SMTP protocol synchronization error .+"
        rf' rejected connection from H={HOST} input=".*")$')),
)  # fmt: skip

SMALL = gen.GenConfig(lines=40_000, seed=5, ids=gen.IdForm.BOTH, pid=True, millisec=True,
                      sessions_per_second=2.0, queue_run_interval=300.0, retry_interval=120.0,
                      retry_timeout=1800.0)  # fmt: skip


def _text(cfg: Any) -> tuple[str, dict[str, int]]:
    out = io.BytesIO()
    stats = gen.write_log(cfg, out)
    data = out.getvalue().decode()
    assert stats.lines == cfg.lines == data.count("\n") == sum(stats.counts.values())
    return data, stats.counts


@pytest.fixture(scope="module")
def small() -> tuple[str, dict[str, int]]:
    return _text(SMALL)


def _kind(m: re.Match[str]) -> str | None:
    table = WITH_ID if m["mid"] else WITHOUT_ID
    return next((k for k, rx in table if rx.match(m["body"])), None)


def test_deterministic_for_a_seed() -> None:
    cfg = gen.GenConfig(lines=3000, seed=3)
    assert _text(cfg) == _text(cfg)
    assert _text(cfg)[0] != _text(replace(cfg, seed=4))[0]


def test_every_line_has_a_known_shape_and_is_counted_as_it(
    small: tuple[str, dict[str, int]],
) -> None:
    data, counts = small
    got: Counter[str] = Counter()
    for line in data.splitlines():
        m = LINE.match(line)
        assert m and m["ms"] and m["pid"], line
        kind = _kind(m)
        assert kind is not None, f"unknown shape: {line!r}"
        got[kind] += 1
    assert dict(got) == counts
    # a realistic mix: every kind is there, deliveries and arrivals lead
    assert set(counts) >= {k for k, _ in WITH_ID + WITHOUT_ID} - {"frozen"}  # rare: ~4 in 100k
    assert counts["sent"] > counts["arrival"] > counts["deferred"] > counts["bounced"]


def test_both_id_forms_the_long_one_from_the_middle(small: tuple[str, dict[str, int]]) -> None:
    """As after an upgrade to 4.97: the messages that arrive from some time on have long ids."""
    arrivals = [
        (i, m["ts"] + m["ms"], m["mid"])
        for i, x in enumerate(small[0].splitlines())
        if (m := LINE.match(x)) and m["mid"] and m["body"].startswith("<= ")
    ]
    short = [(i, ts) for i, ts, mid in arrivals if re.fullmatch(MID16, mid)]
    long = [(i, ts) for i, ts, mid in arrivals if re.fullmatch(MID23, mid)]
    assert len(short) + len(long) == len(arrivals)
    assert short and long and max(ts for _, ts in short) <= min(ts for _, ts in long)
    assert 0.3 < min(i for i, _ in long) / SMALL.lines < 0.7


def test_per_message_consistency(small: tuple[str, dict[str, int]]) -> None:
    by_id: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for line in small[0].splitlines():
        m = LINE.match(line)
        assert m
        if m["mid"]:
            at = datetime.fromisoformat(m["ts"] + m["ms"]).replace(tzinfo=UTC)
            by_id[m["mid"]].append((at, m["body"]))
    arrived = 0
    for mid, entries in by_id.items():
        times = [at for at, _ in entries]
        assert times == sorted(times), mid
        bodies = [b for _, b in entries]
        if bodies[0].startswith("<="):
            arrived += 1
            # the id encodes when the message began to arrive (DATA): seconds before "<="
            assert 0 <= times[0].timestamp() - id_time(mid) < 4, mid
            assert all(not b.startswith("<=") for b in bodies[1:]), mid
        else:  # the log began after its arrival, or it was refused after DATA
            assert all(not b.startswith("<=") for b in bodies), mid
        if "Completed" in bodies:
            assert bodies[-1] == "Completed" and bodies.count("Completed") == 1, mid
        qts = [parse_duration(q) for b in bodies if (q := _qt(b)) is not None]
        assert qts == sorted(qts), mid
    assert arrived > 1000


def _qt(body: str) -> str | None:
    m = re.search(r" QT=(\S+)", body)
    return m[1] if m else None


def test_bounces_name_a_message_with_a_failure(small: tuple[str, dict[str, int]]) -> None:
    failed: set[str] = set()
    bounced_about: list[str] = []
    for line in small[0].splitlines():
        m = LINE.match(line)
        assert m
        if m["mid"] and m["body"].startswith("** "):
            failed.add(m["mid"])
        elif mb := re.match(rf"^<= <> R=({MID}) ", m["body"]):
            assert mb[1] in failed  # its "**" came first
            bounced_about.append(mb[1])
    assert len(bounced_about) > 100


def test_ingest_quarantines_nothing_and_stores_what_was_written(
    small: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    data, counts = small
    log = tmp_path / "mainlog"
    log.write_text(data)
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = LogIngestor(store, tz=UTC, year=2026).run([log])
        q = store.con.execute

        def one(sql: str) -> int:
            row = q(sql).fetchone()
            assert row is not None
            return int(row[0])

        by_status = dict(q("SELECT status, count(*) FROM delivery_log GROUP BY 1").fetchall())
        by_action = dict(q("SELECT action, count(*) FROM rejection_log GROUP BY 1").fetchall())
        events = dict(q("SELECT kind, count(*) FROM event_log GROUP BY 1").fetchall())
        got = {
            "messages": one("SELECT count(*) FROM message_log"),
            "arrived": one("SELECT count(*) FROM message_log WHERE arrived_at IS NOT NULL"),
            "removed": one("SELECT count(*) FROM message_log WHERE removed_at IS NOT NULL"),
            "bounces": one("SELECT count(*) FROM message_log WHERE bounce_of_key IS NOT NULL"),
            "rejected": one("SELECT count(*) FROM message_log WHERE rejected"),
            "auth": one("SELECT count(*) FROM auth_failure_log"),
        }
    c = Counter(counts)
    assert stats.quarantined == 0
    assert stats.read == SMALL.lines == stats.stored + stats.ignored
    ignored = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("ignored:")}
    assert dict(stats.ignored_by_rule) == ignored
    assert by_status == {s: c[s] for s in ("sent", "deferred", "bounced", "expired")}
    assert by_action == {"reject": c["reject"] + c["reject-data"], "defer": c["tempreject"]}
    want_events = {
        "connect": c["connect"],
        "disconnect": c["disconnect"],
        "lost-connection": c["lost"],
        "no-mail": c["no-mail"],
        "frozen": c["frozen"],
        "tls-error": c["tls-error"],
        "notification-non-delivery": c["bounce-arrival"],
        # the TLS session of each arrival that logged one (X=; CV=yes a verified client)
        "tls-anonymous": sum(
            1 for x in data.splitlines() if " <= " in x and " X=" in x and " CV=yes" not in x
        ),
        "tls-verified": sum(1 for x in data.splitlines() if " <= " in x and " CV=yes" in x),
    }
    assert events == {k: v for k, v in want_events.items() if v}
    assert got == {
        "messages": c["arrival"] + c["bounce-arrival"] + c["reject-data"],
        "arrived": c["arrival"] + c["bounce-arrival"],
        "removed": c["completed"],
        "bounces": c["bounce-arrival"],
        "rejected": c["reject-data"],
        "auth": c["auth-fail"],
    }
