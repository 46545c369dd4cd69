"""`mtalens ingest` of Exim main logs: the format is detected per source (or forced with
--log-format), the lines go through the pure parser (the C scanner reads Postfix only) and the
one correlator, and recipient_outcomes holds each recipient's final status, codes and delay.

The facts checked come from what tests/lab/exim_sample.py made the real Exim 4.96 do (see
tests/lab/fake_mx.py for the replies by recipient) and are visible in
sample_logs/exim/real-exim-4.96.log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app
from mtalens.pipeline.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
REAL = SAMPLES / "exim" / "real-exim-4.96.log"
runner = CliRunner()


def _ingest(db: Path, *args: str, code: int = 0) -> dict[str, Any]:
    r = runner.invoke(app, ["ingest", "--db", str(db), "--timezone", "UTC", "--format", "json",
                            *args])  # fmt: skip
    assert r.exit_code == code, r.output
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _outcomes(db: Path) -> dict[tuple[str, str], dict[str, Any]]:
    with Store.open(db, read_only=True) as s:
        cur = s.con.execute(
            "SELECT recipient, status, dsn, reply_code, smtp_stage, delay, queue_id, reason"
            " FROM recipient_outcomes"
        )
        names = [d[0] for d in cur.description or []]
        return {(r[6], r[0]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def test_real_exim_log_final_status_codes_and_delays(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    stats = _ingest(db, str(REAL))
    assert stats["lines_read"] == len(REAL.read_bytes().splitlines())
    assert stats["lines_quarantined"] == 0
    assert stats["lines_read"] == (
        stats["lines_stored"] + stats["lines_ignored"] + stats["lines_quarantined"]
    )
    got = _outcomes(db)
    first = "1xZIN1-0002xK-2s"
    want = {
        # recipient: (status, dsn, reply code, stage, delay in seconds)
        "ok1@remote.test": ("sent", "2.0.0", 250, None, 0.0),
        "ok2@remote.test": ("sent", "2.0.0", 250, None, 0.0),  # the "->" line
        "unknown1@remote.test": ("bounced", "5.1.1", 550, "RCPT TO", 0.0),
        "full1@remote.test": ("bounced", "5.2.2", 552, "RCPT TO", 0.0),
        # deferred three times (450 4.2.0), then given up after the retry rule's 1 minute:
        # the expiry line has no reply, the outcome keeps the last deferral's codes
        # (migration 0019, as Postfix's expired outcomes); the delay is the message's age
        # then (no QT= on ** lines: from the message id)
        "defer1@remote.test": ("expired", "4.2.0", 450, "RCPT TO", 71.0),
        "alice@example.test": ("sent", None, None, None, 0.0),  # local delivery
    }
    for rcpt, (status, dsn, code, stage, delay) in want.items():
        row = got[(first, rcpt)]
        assert (row["status"], row["dsn"], row["reply_code"], row["smtp_stage"], row["delay"]) == (
            status, dsn, code, stage, delay), rcpt  # fmt: skip
    assert got[(first, "unknown1@remote.test")]["reason"] not in (None, "delivered")
    # the local submission, and the two bounces Exim delivered to bob locally
    assert got[("1xZIN1-0002xS-32", "alice@example.test")]["status"] == "sent"
    assert got[("1xZIN1-0002xO-2x", "bob@example.test")]["status"] == "sent"
    assert len(got) == 9
    with Store.open(db, read_only=True) as s:
        # the deferrals before the expiry, with their codes
        defers = s.con.execute(
            "SELECT dsn, reply_code, delay FROM deliveries WHERE recipient = 'defer1@remote.test'"
            " AND status = 'deferred' ORDER BY logged_at"
        ).fetchall()
        assert defers == [("4.2.0", 450, 0.0), ("4.2.0", 450, 20.0), ("4.2.0", 450, 71.0)]
        msg = s.con.execute(
            "SELECT sender, size, nrcpt, client_ip, message_id, origin, removed_at IS NOT NULL"
            " FROM message_log WHERE queue_id = ?",
            [first],
        ).fetchone()
        assert msg == ("bob@example.test", 275, 6, "192.0.2.10", "lab1@client.example",
                       "smtpd", True)  # fmt: skip
        # Exim's two bounces (R=<id>) link to the message they are about
        bounces = s.con.execute(
            "SELECT m.queue_id, o.queue_id FROM message_log m JOIN message_log o"
            " ON m.bounce_of_key = o.message_key ORDER BY m.first_seen"
        ).fetchall()
        assert bounces == [("1xZIN1-0002xO-2x", first), ("1xZIOA-0004DJ-09", first)]
        rejects = s.con.execute(
            "SELECT client_ip, stage, sender, recipient, reason FROM rejection_log ORDER BY 1"
        ).fetchall()
        assert rejects == [
            ("192.0.2.10", "RCPT", "bob@example.test", "someone@elsewhere.test",
             "relay not permitted"),
            ("192.0.2.11", "RCPT", "", "nobody@elsewhere.test", "relay not permitted"),
        ]  # fmt: skip


def test_handwritten_4_97_sample(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    stats = _ingest(db, str(SAMPLES / "exim" / "handwritten-4.97.log"))
    assert stats["quarantined_by_reason"] == {"exim-bad-arrival": 1, "exim-no-timestamp": 1}
    got = {rcpt: row for (_qid, rcpt), row in _outcomes(db).items()}
    assert got["carol@dest.example"]["status"] == "sent"
    assert got["carol@dest.example"]["delay"] == 1.2  # QT=1.200s
    # DT=0.950s times the whole attempt (connection and transmission): the transmission stage,
    # the rest of QT= the queue; Exim logs neither the time before the queue nor the connection
    with Store.open(db, read_only=True) as s:
        stages = s.con.execute(
            "SELECT delay_before_queue, delay_in_queue, delay_connect, delay_transmit"
            " FROM recipient_outcomes WHERE recipient = 'carol@dest.example'"
        ).fetchone()
    assert stages is not None
    assert (stages[0], stages[2], stages[3]) == (None, None, 0.95)
    assert stages[1] == pytest.approx(1.2 - 0.95)
    assert (got["dave@dest.example"]["status"], got["dave@dest.example"]["dsn"],
            got["dave@dest.example"]["reply_code"]) == ("bounced", "5.7.1", 554)  # fmt: skip
    assert got["dave@dest.example"]["reason"] not in (None, "delivered")
    assert (got["erin@dest.example"]["status"], got["erin@dest.example"]["reply_code"]) == (
        "deferred",
        452,
    )
    with Store.open(db, read_only=True) as s:
        auth = s.con.execute("SELECT client_ip, mechanism, sasl_username FROM auth_failure_log"
                             ).fetchall()  # fmt: skip
        assert auth == [("198.51.100.7", "plain", "guess")]


def test_mixed_directory_postfix_fast_path_and_exim(tmp_path: Path) -> None:
    """A Postfix log and an Exim log in one run: each is read with its own format (the
    Postfix one still by the fast path when built) and neither's rows change."""
    both = tmp_path / "logs"
    both.mkdir()
    pf_log = SAMPLES / "postfix" / "real-postfix-3.7.log"
    shutil.copy(pf_log, both / "a-postfix.log")
    shutil.copy(REAL, both / "b-exim.log")
    mixed, alone = tmp_path / "m.duckdb", tmp_path / "e.duckdb"
    only_pf = tmp_path / "p.duckdb"
    _ingest(mixed, "--year", "2026", str(both))
    _ingest(alone, str(REAL))
    _ingest(only_pf, "--year", "2026", str(pf_log))

    def rows(db: Path, where: str) -> list[Any]:
        with Store.open(db, read_only=True) as s:
            return s.con.execute(
                "SELECT queue_id, recipient, status, dsn, reply_code, delay FROM"
                f" recipient_outcomes WHERE {where} ORDER BY ALL"
            ).fetchall()

    exim_rows = "queue_id LIKE '%-%-%'"
    assert rows(mixed, exim_rows) == rows(alone, exim_rows) != []
    assert rows(mixed, f"NOT ({exim_rows})") == rows(only_pf, "true") != []


def test_log_format_option_overrides_detection(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    stats = _ingest(db, "--log-format", "postfix", str(REAL), code=2)
    # read as Postfix (what ingest did before the registry): no line of it is a Postfix line,
    # every one quarantined, nothing usable done (exit 2)
    assert stats["lines_stored"] == 0
    assert stats["lines_quarantined"] == stats["lines_read"] > 0
    assert stats["not_logs"] == [{"path": str(REAL), "lines": stats["lines_read"]}]


# An Exim 4.96 bounce for the sample's defer1 as the lab's real Exim writes them
# (tests/test_e2e_exim.py): multipart/report, Status 5.0.0 and the last reply in Diagnostic-Code.
EXIM_DSN = """\
Return-path: <>
X-Failed-Recipients: defer1@remote.test
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@example.test>
To: bob@example.test
Content-Type: multipart/report; report-type=delivery-status; boundary=b1
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1xZIOA-0004DJ-09@mx1.example.test>
Date: Fri, 04 Dec 2026 01:47:06 +0000

--b1
Content-type: text/plain; charset=us-ascii

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  defer1@remote.test
    host 127.0.0.1 [127.0.0.1]
    SMTP error from remote mail server after RCPT TO:<defer1@remote.test>:
    450 4.2.0 temporarily deferred: retry timeout exceeded

--b1
Content-type: message/delivery-status

Reporting-MTA: dns; mx1.example.test

Action: failed
Final-Recipient: rfc822;defer1@remote.test
Status: 5.0.0
Remote-MTA: dns; 127.0.0.1
Diagnostic-Code: smtp; 450 4.2.0 temporarily deferred: retry timeout exceeded

--b1
Content-type: message/rfc822

From: bob@example.test
Subject: lab 1
Message-ID: <lab1@client.example>

hello

--b1--
"""


def test_bounce_of_an_expired_address_has_one_last_attempt(tmp_path: Path) -> None:
    """Exim logs the last deferral and "** a@b: retry timeout exceeded" in the same second: the
    one read last (the expiry) is the last attempt, not both (migration 0019)."""
    db = tmp_path / "s.duckdb"
    _ingest(db, str(REAL))
    dsn = tmp_path / "bounce.eml"
    dsn.write_text(EXIM_DSN)
    r = runner.invoke(app, ["bounces", "ingest", "--db", str(db), str(dsn)])
    assert r.exit_code == 0, r.output
    with Store.open(db, read_only=True) as s:
        rows = s.con.execute(
            "SELECT delivery_status, delivery_dsn, delivery_logged_at, is_last_attempt, link_method"
            " FROM bounce_deliveries WHERE recipient = 'defer1@remote.test'"
            " ORDER BY delivery_line_offset"
        ).fetchall()
    assert [row[0] for row in rows] == ["deferred"] * 3 + ["expired"]
    assert rows[-1][2] == rows[-2][2]  # the same second
    assert [row[3] for row in rows] == [False, False, False, True]
    assert {row[4] for row in rows} == {"message_id"}


def test_main_and_reject_logs_together_store_each_rejection_once(tmp_path: Path) -> None:
    # /var/log/exim4/ holds mainlog and rejectlog: the reject log repeats the main log's lines
    # (spec chapter "Log files") and adds headers; ingesting the directory stores each once
    reject = SAMPLES / "exim-rejectlog" / "handwritten-4.96.log"
    copies = [x for x in reject.read_text().splitlines() if x[:4].isdigit()]
    logs = tmp_path / "exim4"
    logs.mkdir()
    (logs / "mainlog").write_text("\n".join(copies) + "\n")
    shutil.copy(reject, logs / "rejectlog")
    stats = _ingest(tmp_path / "s.duckdb", str(logs))
    assert stats["lines_read"] == len(copies) + len(reject.read_text().splitlines())
    with Store.open(tmp_path / "s.duckdb", read_only=True) as s:
        got = s.con.execute("SELECT stage, client_ip FROM rejections ORDER BY logged_at").fetchall()
        fmt = s.con.execute("SELECT path, log_format FROM checkpoints ORDER BY path").fetchall()
    assert [ip for _, ip in got] == ["192.0.2.10", "198.51.100.66", "203.0.113.5"]
    assert [f for _, f in fmt] == ["exim", "exim-rejectlog"]


def _split_entry(pid: int, parts: list[str]) -> list[str]:
    return [
        f"Dec  4 01:46:01 mx1 exim[{pid}]: [{i}/{len(parts)}] {p}" for i, p in enumerate(parts, 1)
    ]


def test_split_syslog_entries_are_joined_across_reads(tmp_path: Path) -> None:
    # spec chapter "Log files", "Logging to syslog": an entry over 870 characters goes out as
    # [n/m] parts; another process's line may come between them, and a read may end between
    # them (the daemon tails a growing file): the entry is stored once, whole, either way
    reason = "relay not permitted " + "x" * 900
    whole = (
        "2026-12-04 01:46:01 H=(client.example) [192.0.2.10] F=<spam@example.org> "
        f"rejected RCPT <a@example.test>: {reason}"
    )
    parts = _split_entry(10114, [whole[:870], whole[870:]])
    other = "Dec  4 01:46:01 mx1 exim[10115]: 2026-12-04 01:46:01 SMTP connection from [192.0.2.11]"
    orphan = _split_entry(10116, ["2026-12-04 01:46:02 first part", "second part"])[1]
    log = tmp_path / "mail.log"
    log.write_text("\n".join([parts[0], other]) + "\n")
    db = tmp_path / "s.duckdb"
    from mtalens.pipeline.watch import Watcher
    from mtalens.pipeline.watch_config import WatchConfig

    w = Watcher(WatchConfig(db=str(db), logs=(str(log),), timezone="UTC", year=2026,
                            log_format="exim"))  # fmt: skip
    try:
        w.window()  # ends between the parts: nothing of the open entry (nor after it) stored
        with Store.open(db, read_only=True) as s:
            assert s.con.execute("SELECT count(*) FROM rejections").fetchone() == (0,)
        with log.open("a") as fh:
            fh.write(parts[1] + "\n" + orphan + "\n")
        w.window()
    finally:
        w.close()
    with Store.open(db, read_only=True) as s:
        got = s.con.execute("SELECT reason FROM rejections").fetchall()
        events = s.con.execute("SELECT count(*) FROM events WHERE kind = 'connect'").fetchone()
        acct = dict(
            s.con.execute(
                "SELECT outcome || ':' || rule, sum(lines) FROM line_accounting_log GROUP BY 1"
            ).fetchall()
        )
    assert got == [(reason,)]
    assert events == (1,)  # the line between the parts, once
    assert acct["ignored:exim-syslog-part"] == 1
    assert acct["quarantined:exim-syslog-split"] == 1  # the orphan part, kept as it is
    assert sum(acct.values()) == 4
