"""Outcomes follow the log, not the clock (issue 12 item 5, migration 0017): an attempt logged
after another is later, whatever its timestamp says (an NTP step back, or the hour repeated when
daylight saving time ends with local RFC 3164 times); both ingest paths; the outcome view, the
suppression policy and a store written before the migration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mtalens.pipeline import store as store_module
from mtalens.pipeline import suppressions as S
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
from tests.suppression_reference import reference_decisions_frame

NOW = datetime(2026, 3, 20, tzinfo=UTC)
HEAD = "mx1 postfix/{}[{}]: 4BC0{:06X}: "


def message(n: int, attempts: list[tuple[str, str, str]], rcpt: str) -> list[str]:
    """One message to ``rcpt`` whose delivery attempts are (timestamp, dsn, status), in the
    order the lines appear in the log."""
    out = [
        f"{attempts[0][0]} " + HEAD.format("qmgr", 42, n)
        + "from=<news@sender.example>, size=900, nrcpt=1 (queue active)"
    ]  # fmt: skip
    for stamp, dsn, status in attempts:
        reply = "250 2.0.0 Ok: queued" if status == "sent" else "450 4.2.0 Mailbox busy, try later"
        out.append(
            f"{stamp} " + HEAD.format("smtp", 43, n) + f"to=<{rcpt}>, relay=mx.dest.example"
            f"[192.0.2.7]:25, delay=1, delays=0.1/0/0.4/0.5, dsn={dsn}, status={status} "
            f"(host mx.dest.example[192.0.2.7] said: {reply} (in reply to RCPT TO command))"
        )  # fmt: skip
    if attempts[-1][2] == "sent":
        out.append(f"{attempts[-1][0]} " + HEAD.format("qmgr", 42, n) + "removed")
    return out


# the clock stepped back 10 s between the deferral and the delivery that followed it
STEPPED = message(1, [("2026-03-02T10:00:05.000000+00:00", "4.2.0", "deferred"),
                      ("2026-03-02T09:59:58.000000+00:00", "2.0.0", "sent")], "ann@dest.example")  # fmt: skip
# three failing days, the last attempt each day logged later but stamped earlier than a
# success: with the clock, every day's final word was the failure; with the log, success
FLIPPED = [
    line
    for day in (2, 3, 4)
    for line in message(
        10 + day,
        [
            (f"2026-03-0{day}T12:00:00.000000+00:00", "4.2.0", "deferred"),
            (f"2026-03-0{day}T11:59:00.000000+00:00", "2.0.0", "sent"),
        ],
        "bob@dest.example",
    )
]


def ingest(tmp: Path, lines: list[str], *, fast: bool) -> Path:
    log, db = tmp / f"mail-{fast}.log", tmp / f"s-{fast}.duckdb"
    log.write_text("\n".join(lines) + "\n")
    with Store.open(db) as s:
        LogIngestor(s, tz=UTC, year=2026, fast=fast).run([log])
    return db


@pytest.mark.parametrize("fast", [False, True], ids=["pure", "fast"])
def test_the_attempt_logged_last_is_the_final_word(tmp_path: Path, fast: bool) -> None:
    db = ingest(tmp_path, STEPPED + FLIPPED, fast=fast)
    with Store.open(db, read_only=True) as s:
        final = dict(s.con.execute("SELECT recipient, status FROM recipient_outcomes "
                                   "WHERE recipient = 'ann@dest.example'").fetchall())  # fmt: skip
        attempts = s.con.execute(
            "SELECT status FROM deliveries WHERE recipient = 'ann@dest.example' ORDER BY seq"
        ).fetchall()
        flipped = s.con.execute("SELECT DISTINCT status FROM recipient_outcomes "
                                "WHERE recipient = 'bob@dest.example'").fetchall()  # fmt: skip
    assert final == {"ann@dest.example": "sent"}  # was "deferred": its timestamp is the latest
    assert attempts == [("deferred",), ("sent",)]  # seq is the log's order
    assert flipped == [("sent",)]


def test_the_suppression_policy_reads_the_log_order(tmp_path: Path) -> None:
    policy = SuppressionsConfig(soft_threshold=3)
    db = ingest(tmp_path, FLIPPED, fast=True)
    with Store.open(db) as s:
        S.refresh_suppression_summary(s, policy)
        listed = {x.address for x in S.list_suppressions(s, policy, now=NOW)}
        staged = S.decisions_frame(s, policy, now=NOW)
        ref = reference_decisions_frame(s, policy, now=NOW, suppressed_only=False)
    # three days whose last attempt (by the log) delivered: nothing to suppress
    assert "bob@dest.example" not in listed
    assert staged.filter(staged["address"] == "bob@dest.example")["suppressed"].to_list() in (
        [], [False]
    )  # fmt: skip
    assert ref.filter(ref["address"] == "bob@dest.example")["suppressed"].to_list() in ([], [False])


def test_a_store_from_before_keeps_its_outcomes_and_continues_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = store_module.load_migrations()
    monkeypatch.setattr(store_module, "load_migrations",
                        lambda: [m for m in every if m.version < 17])  # fmt: skip
    db = tmp_path / "s.duckdb"
    row = ("INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,"
           " status, dsn, source_key, line_offset) VALUES (?, 'mx1', 'Q1', ?, 'smtp', ?, ?, ?,"
           " 'src', ?)")  # fmt: skip
    t = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with Store.open(db) as s:  # rows as the code before 0017 wrote them: no seq
        s.con.execute(row, ["k1", t, "old@dest.example", "deferred", "4.2.0", 100])
        s.con.execute(row, ["k1", t.replace(minute=5), "old@dest.example", "sent", "2.0.0", 50])
        s.con.execute(row, ["k2", t, "new@dest.example", "deferred", "4.2.0", 300])
    monkeypatch.undo()
    with Store.open(db) as s:  # migrates: the old rows are numbered in their old order
        old = s.con.execute(
            "SELECT recipient, status FROM recipient_outcomes ORDER BY 1"
        ).fetchall()
        assert old == [("new@dest.example", "deferred"), ("old@dest.example", "sent")]
        # a row written now, stamped earlier than the deferral it follows (no seq given: the
        # column's default draws it, after every old one)
        s.con.execute(row, ["k2", t.replace(hour=9), "new@dest.example", "sent", "2.0.0", 10])
        seqs = s.con.execute("SELECT status, seq FROM delivery_log WHERE message_key = 'k2' "
                             "ORDER BY seq").fetchall()  # fmt: skip
        final = s.con.execute("SELECT status FROM recipient_outcomes "
                              "WHERE recipient = 'new@dest.example'").fetchall()  # fmt: skip
    assert [status for status, _ in seqs] == ["deferred", "sent"] and seqs[1][1] >= 1 << 40
    assert final == [("sent",)]
