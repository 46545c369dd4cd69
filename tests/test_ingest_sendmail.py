"""Sendmail logs through `mtalens ingest`: the registry row (parsers/sendmaillog.py) and its
lifecycle rules in the one correlator (a message ends when every recipient has a final status;
a queue id names one message)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from mtalens.parsers import sendmaillog as sm
from mtalens.parsers.lines import Malformed, Parsed
from mtalens.parsers.syslog import SyslogClock
from mtalens.pipeline.cli import app
from mtalens.pipeline.store import Store

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs/sendmail/handwritten-8.15.log"


runner = CliRunner()


def _ingest(db: Path, *paths: Path) -> None:
    args = ["ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC"]
    r = runner.invoke(app, [*args, *map(str, paths)])
    assert r.exit_code == 0, r.output


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with Store.open(db, read_only=True) as s:
        return s.con.execute(sql).fetchall()


def test_sample_outcomes_per_recipient(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    _ingest(db, SAMPLE)
    got = {
        r[0]: r[1:]
        for r in _rows(
            db,
            "SELECT recipient, status, dsn, reply_code, delay, mta FROM recipient_outcomes",
        )
    }
    # one line's two recipients (one SMTP transaction), each a row of its own
    assert got["bob@dest.example"] == ("sent", "2.0.0", 250, 2.0, "sendmail")
    assert got["carol@dest.example"] == ("sent", "2.0.0", 250, 2.0, "sendmail")
    # deferred (451 in stat=Deferred:) then sent ten minutes later: the last attempt counts
    assert got["dave@slow.example"][:4] == ("sent", "2.0.0", 250, 603.0)
    # the reply= equate gives the code; without it the dsn= does
    assert got["full@quota.example"][:3] == ("bounced", "5.2.2", 552)
    assert got["gone@dest.example"][:3] == ("bounced", "5.1.1", None)
    # deferred until the queue timeout: the "Cannot send message for" DSN expires it
    assert got["ops@down.example"][0] == "expired"
    assert got["ops@down.example"][3] == 4 * 86400 + 5


def test_messages_end_without_a_removal_line(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    _ingest(db, SAMPLE)
    rows = {
        r[0]: r[1:]
        for r in _rows(
            db,
            "SELECT queue_id, strftime(removed_at, '%H:%M:%S'), origin, nrcpt FROM messages",
        )
    }
    # closed at the line that gave its last recipient a final status
    assert rows["wB1902aQ004123"] == ("09:10:06", "smtpd", 3)
    assert rows["wB19B0kT004300"][0] == "09:11:03"
    assert rows["wB19D0Rr004500"][:2] == ("09:13:00", "pickup")
    # the notification (no from= line) ends at its one delivery
    assert rows["wB19B1kT004301"][:2] == ("09:11:02", "bounce")
    # one message per queue id: the recipient refused before the from= line stays with it
    assert _rows(db, "SELECT count(*) FROM messages WHERE queue_id = 'wB1902aQ004123'") == [(1,)]
    linked = _rows(
        db,
        "SELECT b.queue_id, o.queue_id FROM messages b JOIN messages o "
        "ON b.bounce_of_key = o.message_key ORDER BY 1",
    )
    assert linked == [("wB19B1kT004301", "wB19B0kT004300"), ("wB59E5ww004700", "wB19E0xw004601")]


def test_a_message_open_across_runs_still_ends(tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines(keepends=True)
    # the first run stops after dave's deferral (line 7): the message has 2 of 3 final
    log = tmp_path / "maillog"
    log.write_text("".join(lines[:7]))
    db = tmp_path / "s.duckdb"
    _ingest(db, log)
    assert _rows(db, "SELECT removed_at FROM messages WHERE queue_id = 'wB1902aQ004123'") == [
        (None,)
    ]
    with log.open("a") as fh:
        fh.write("".join(lines[7:8]))
    _ingest(db, log)
    assert _rows(
        db,
        "SELECT strftime(removed_at, '%H:%M:%S') FROM messages WHERE queue_id = 'wB1902aQ004123'",
    ) == [("09:10:06",)]


def test_format_is_detected_without_an_option(tmp_path: Path) -> None:
    src = tmp_path / "mail.log"
    shutil.copy(SAMPLE, src)
    db = tmp_path / "s.duckdb"
    _ingest(db, src)
    assert _rows(db, "SELECT DISTINCT mta FROM deliveries") == [("sendmail",)]


def _parse(text: str) -> Parsed | Malformed:
    out = sm.parse_line(f"Dec  1 10:00:00 h sm-mta[1]: {text}".encode(), SyslogClock(year=2026))
    assert not isinstance(out, sm.Skipped)
    return out


def test_an_address_cannot_forge_equates() -> None:
    # the sender writes the addresses: a ", stat=" inside <> or quotes is part of it
    p = _parse(
        'wB1A000a000001: to=<"x, stat=Sent"@a.example>,<b@b.example>, delay=00:00:01, '
        "mailer=esmtp, pri=1, relay=mx.a.example. [192.0.2.1], dsn=5.1.1, stat=User unknown"
    )
    assert isinstance(p, Parsed)
    recs = (p.record, *p.extra)
    assert [r.recipient for r in recs] == ['"x, stat=Sent"@a.example', "b@b.example"]
    assert {r.status for r in recs} == {"bounced"}


def test_bad_numbers_are_quarantined_with_a_reason() -> None:
    for text, code in (
        ("wB1A000a000001: to=<a@b>, delay=1:2, mailer=esmtp, stat=Sent", "sendmail-bad-delay"),
        (
            "wB1A000a000001: from=<a@b>, size=big, nrcpts=1, relay=x [192.0.2.1]",
            "sendmail-bad-from",
        ),
        (f"wB1A000a000001: from=<a@b>, size={2**70}, relay=x [192.0.2.1]", "sendmail-bad-from"),
        ("wB1A000a000001: to=<a@b>, delay=00:00:01, dsn=9.9.9, stat=Sent", "sendmail-bad-dsn"),
    ):
        out = _parse(text)
        assert isinstance(out, Malformed) and out.code == code, text


def test_queue_ids() -> None:
    assert sm.is_queue_id("v8Q7t1BT012663")
    assert sm.is_queue_id("n6BKbwgB0091561")  # a seven-digit process id
    assert not sm.is_queue_id("3F2A41C0B7")  # Postfix
    assert not sm.is_queue_id("4VXq6Q0Lrqz9tB1")  # Postfix long id: "z" is not base 60
    assert not sm.is_queue_id("1xZIN1-0002xK-2s")  # Exim


REAL = SAMPLE.parent / "real-sendmail-8.17.log"


def test_real_sendmail_log_final_status_codes_and_delays(tmp_path: Path) -> None:
    # the log tests/lab/sendmail_sample.py recorded from a real Sendmail 8.17 sending to
    # tests/lab/fake_mx.py, which answers by the recipient's local part (its docstring's table)
    db = tmp_path / "s.duckdb"
    _ingest(db, REAL)
    got = {
        r[0]: r[1:]
        for r in _rows(
            db,
            "SELECT recipient, status, dsn, reply_code, delay FROM recipient_outcomes "
            "WHERE queue_id = '6B4Ins5Z019422' OR queue_id LIKE '6B4Ins5_019422'",
        )
    }
    assert got == {
        "ok1@example.com": ("sent", "2.0.0", 250, 0.0),
        "ok2@example.org": ("sent", "2.0.0", 250, 0.0),
        "unknown1@example.com": ("bounced", "5.1.1", 550, 0.0),
        "full1@example.com": ("bounced", "5.2.2", 552, 0.0),
        # the server's 5.7.1, not dsn=5.0.0 (Sendmail's own mapping of 554)
        "listed1@example.com": ("bounced", "5.7.1", 554, 0.0),
        # refused after the data: 552 5.3.4, not Sendmail's dsn=5.2.2
        "bigdata1@example.com": ("bounced", "5.3.4", 552, 0.0),
        # deferred until Timeout.queuereturn (40 s in the lab): "Cannot send message for"
        "defer1@example.com": ("expired", "4.2.0", 450, 40.0),
        "busy1@example.com": ("expired", "4.7.0", 421, 40.0),
        "refused1@down.example.com": ("expired", "4.4.1", None, 40.0),
    }
    rows = _rows(
        db,
        "SELECT queue_id, origin, strftime(removed_at, '%H:%M:%S'), notification_kind, "
        "(SELECT o.queue_id FROM messages o WHERE o.message_key = m.bounce_of_key) "
        "FROM messages m ORDER BY first_seen, queue_id",
    )
    # every message ends (its "done" line, or refused before its envelope), none twice
    assert [r for r in rows if r[2] is None] == []
    assert len({r[0] for r in rows}) == len(rows)
    notes = {(r[4], r[3]) for r in rows if r[1] == "bounce"}
    assert notes == {
        ("6B4Ins5Z019422", "non-delivery"),
        ("6B4Ins5a019422", "non-delivery"),
        ("6B4Ins5Z019422", "delay"),
        ("6B4Ins5b019422", "delay"),
        ("6B4Ins5b019422", "non-delivery"),  # "Cannot send message for 40 seconds"
    }
    refused = _rows(db, "SELECT stage, recipient, reason FROM rejections ORDER BY stage")
    assert ("RCPT", "nosuch@example.net", "User unknown") in refused
    # refused before the session's from= line: the client comes from it, the code is
    # Sendmail's fixed reply to an unknown local user
    assert _rows(
        db,
        "SELECT client_ip, reply_code, dsn FROM rejections WHERE recipient = 'nosuch@example.net'",
    ) == [("127.0.0.1", 550, "5.1.1")]
    assert ("DATA", None, "Bare linefeed (LF) not allowed") in refused
    assert _rows(db, "SELECT count(*) FROM auth_failures") == [(4,)]
