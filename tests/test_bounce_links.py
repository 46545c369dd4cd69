"""`bounce_deliveries` (pipeline/sql/0005_bounce_links.sql): bounces tied to the logged message
and its delivery rows; with real DSNs from a real Postfix and the log of the same run."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mtalens.parsers.bounces import Action, ReportKind, decode
from mtalens.pipeline.bounces import ingest as ingest_bounces
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
REAL_DSNS = ROOT / "sample_logs" / "bounces" / "postfix-real"
REAL_LOG = ROOT / "sample_logs" / "postfix" / "real-postfix-3.7.log"
NOW = datetime(2026, 3, 5, tzinfo=UTC)
MTALENS = Path(sys.executable).parent / "mtalens"


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# -- real Postfix 3.7 (Debian) DSNs and the log of the same run -------------------------------

# (recipient, action) -> (status, hint), as Postfix's bounce(8) wrote them for the fake MX's
# answers (file names of the samples are not relied on: the lab may renumber them)
REAL = {
    ("full@example.com", Action.FAILED): ("5.2.2", None),
    ("bigdata@example.org", Action.FAILED): ("5.3.4", None),
    ("unknown@example.com", Action.FAILED): ("5.1.1", None),
    ("unknown2@example.org", Action.FAILED): ("5.1.1", None),
    ("listed@example.org", Action.FAILED): ("5.7.1", None),
    ("busy@example.org", Action.DELAYED): ("4.7.0", None),
    ("defer@example.com", Action.DELAYED): ("4.2.0", None),
    # expired in the queue: "failed" with the last temporary status (postconf(5)
    # maximal_queue_lifetime, bounce(8))
    ("defer@example.com", Action.FAILED): ("4.2.0", "expired"),
    ("busy@example.org", Action.FAILED): ("4.7.0", "expired"),
}


def _real_files() -> list[Path]:
    files = sorted(REAL_DSNS.glob("*.eml")) if REAL_DSNS.is_dir() else []
    if not files or not REAL_LOG.is_file():
        pytest.fail(f"real Postfix samples missing: {REAL_DSNS}/*.eml and {REAL_LOG}")
    return files


def test_real_postfix_dsns_decode() -> None:
    seen = {}
    for path in _real_files():
        r = decode(path.read_bytes())
        assert r.agent == "rfc3464", path.name
        assert r.reporting_mta == "mx1.example.net"
        assert r.postfix_queue_id and r.postfix_sender == "sender@example.net"
        assert r.arrival_date is not None and r.arrival_date.tzinfo is not None
        assert r.original is not None and r.original.message_id and r.original.subject
        (rc,) = r.recipients
        seen[(rc.recipient, rc.action)] = (rc.status, rc.hint)
        want_kind = ReportKind.DELAYED if rc.action is Action.DELAYED else ReportKind.BOUNCE
        assert r.kind is want_kind, path.name
    assert seen == REAL


def test_real_postfix_bounces_link_to_logged_deliveries(tmp_path: Path) -> None:
    """The CLI path: `mtalens ingest` the log, `mtalens bounces ingest` the DSNs, then query."""
    _real_files()
    db = tmp_path / "store.duckdb"
    for args in (
        ["ingest", "--year", "2026", "--timezone", "UTC", "--db", str(db), str(REAL_LOG)],
        ["bounces", "ingest", "--db", str(db), str(REAL_DSNS)],
    ):
        done = subprocess.run(
            [str(MTALENS), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(db), read_only=True)
    got = rows(con, "SELECT * FROM bounce_deliveries WHERE is_last_attempt ORDER BY recipient")
    failed = {k[0]: v for k, v in REAL.items() if k[1] is Action.FAILED}
    assert sorted(r["recipient"] for r in got) == sorted(failed)
    for r in got:
        status, hint = failed[r["recipient"]]
        assert r["link_method"] == "queue_id"
        assert r["host"] == "mx1"
        assert r["queue_id"] == r["postfix_queue_id"]
        assert r["message_id"] == r["original_message_id"].strip("<>")
        # the log's last attempt for that recipient says the same as the DSN
        assert r["delivery_dsn"] == status
        assert r["delivery_status"] == ("deferred" if hint == "expired" else "bounced")
    # every attempt is there: the expired ones were tried several times before the give-up
    attempts = dict(
        con.execute(
            "SELECT recipient, count(*) FROM bounce_deliveries GROUP BY recipient"
        ).fetchall()
    )
    assert attempts["defer@example.com"] > 1 and attempts["full@example.com"] == 1
    # every bounce is linked; delay notices are not failures and are not in the view
    assert con.execute(
        "SELECT count(*) FROM bounce_deliveries WHERE message_key IS NULL"
    ).fetchone() == (0,)
    con.close()


# -- synthetic: Message-ID fallback, queue-ID reuse, no match ----------------------------------

LOG = """\
Mar  4 10:00:00 mx1 postfix/smtpd[100]: 1A2B3C4D5E: client=app.example.org[192.0.2.5]
Mar  4 10:00:00 mx1 postfix/cleanup[101]: 1A2B3C4D5E: message-id=<first@example.org>
Mar  4 10:00:00 mx1 postfix/qmgr[102]: 1A2B3C4D5E: from=<news@example.org>, size=100, nrcpt=1 (queue active)
Mar  4 10:00:01 mx1 postfix/smtp[103]: 1A2B3C4D5E: to=<ann@example.net>, relay=mx.example.net[192.0.2.9]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.1.1, status=bounced (host mx.example.net[192.0.2.9] said: 550 5.1.1 no such user (in reply to RCPT TO command))
Mar  4 10:00:01 mx1 postfix/qmgr[102]: 1A2B3C4D5E: removed
Mar  4 18:00:00 mx1 postfix/smtpd[100]: 1A2B3C4D5E: client=app.example.org[192.0.2.5]
Mar  4 18:00:00 mx1 postfix/cleanup[101]: 1A2B3C4D5E: message-id=<second@example.org>
Mar  4 18:00:00 mx1 postfix/qmgr[102]: 1A2B3C4D5E: from=<news@example.org>, size=100, nrcpt=1 (queue active)
Mar  4 18:00:01 mx1 postfix/smtp[103]: 1A2B3C4D5E: to=<bob@example.net>, relay=mx.example.net[192.0.2.9]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.2.2, status=bounced (host mx.example.net[192.0.2.9] said: 552 5.2.2 mailbox full (in reply to RCPT TO command))
Mar  4 18:00:01 mx1 postfix/qmgr[102]: 1A2B3C4D5E: removed
"""


def dsn(*, recipient: str, status: str, mid: str, extra: str = "", mta: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@{mta}\nTo: news@example.org\nSubject: Undelivered Mail\n"
        f"Message-ID: <dsn-{recipient}@{mta}>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        f"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; {mta}\n{extra}\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: {status}\n\n"
        f"--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: {mid}\nTo: {recipient}\n\n--b--\n"
    ).encode()


def test_links_by_queue_id_within_lifetime_then_message_id(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text(LOG)
    mail = tmp_path / "bounces"
    mail.mkdir()
    # queue ID 1A2B3C4D5E was used twice; the Arrival-Date picks the second message
    (mail / "a.eml").write_bytes(
        dsn(recipient="bob@example.net", status="5.2.2", mid="<unknown@x>", mta="mx1.example.org",
            extra="X-Postfix-Queue-ID: 1A2B3C4D5E\n"
                  "Arrival-Date: Wed, 4 Mar 2026 18:00:00 +0000 (UTC)\n")
    )  # fmt: skip
    # a remote MTA's DSN: no queue ID of ours, only the returned Message-ID
    (mail / "b.eml").write_bytes(
        dsn(recipient="ann@example.net", status="5.1.1", mid="<first@example.org>",
            mta="mx.example.net")
    )  # fmt: skip
    # the same queue ID but a time outside both lifetimes, and an unknown Message-ID
    (mail / "c.eml").write_bytes(
        dsn(recipient="cy@example.net", status="5.1.1", mid="<nope@example.org>",
            mta="mx1.example.org",
            extra="X-Postfix-Queue-ID: 1A2B3C4D5E\n"
                  "Arrival-Date: Thu, 5 Mar 2026 03:00:00 +0000 (UTC)\n")
    )  # fmt: skip
    store = Store.memory()
    LogIngestor(store, tz=UTC, year=2026, clock=lambda: NOW).run([log])
    ingest_bounces(store, [mail], now=lambda: NOW)
    got = {
        r["recipient"]: r
        for r in rows(store.con, "SELECT * FROM bounce_deliveries ORDER BY recipient")
    }
    assert set(got) == {"ann@example.net", "bob@example.net", "cy@example.net"}
    bob, ann, cy = got["bob@example.net"], got["ann@example.net"], got["cy@example.net"]
    # the log keeps Message-IDs without angle brackets; the link compares them without
    assert (bob["link_method"], bob["message_id"]) == ("queue_id", "second@example.org")
    assert (bob["delivery_status"], bob["delivery_dsn"]) == ("bounced", "5.2.2")
    assert (ann["link_method"], ann["message_id"]) == ("message_id", "first@example.org")
    assert ann["delivery_reply_code"] == 550 and ann["is_last_attempt"] is True
    assert cy["link_method"] is None and cy["message_key"] is None
    assert cy["delivery_status"] is None and cy["is_last_attempt"] is False
