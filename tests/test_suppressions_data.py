"""Building evidence for suppression tests directly in a store (no log parsing involved)."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

from mtalens.pipeline.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def log(
    store: Store,
    recipient: str,
    when: datetime,
    *,
    status: str = "bounced",
    reason: str | None = "userunknown",
    dsn: str | None = "5.1.1",
    reply_code: int | None = 550,
    diagnostic: str | None = None,
    expired: bool = False,
) -> str:
    """One Postfix delivery attempt (its own message); returns the event id."""
    n = next(_seq)
    key = f"mx|Q{n}|{n}"
    if status == "sent":
        reason, dsn, reply_code = "delivered", "2.0.0", 250
    store.con.execute(
        "INSERT INTO message_log (message_key, host, queue_id, message_id, first_seen, last_seen,"
        " expired_at) VALUES (?, 'mx', ?, ?, ?, ?, ?)",
        [key, f"Q{n}", f"<m{n}@test>", when, when, when if expired else None],
    )
    store.con.execute(
        "INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,"
        " status, dsn, reply_code, diagnostic, reason, category, hard, rule_id, line_offset)"
        " VALUES (?, 'mx', ?, ?, 'smtp', ?, ?, ?, ?, ?, ?, 'c', NULL, ?, ?)",
        [key, f"Q{n}", when, recipient, status, dsn, reply_code, diagnostic, reason,
         f"rule-{reason}", n * 100],
    )  # fmt: skip
    return f"log:{key}:{n * 100}"


def dsn(
    store: Store,
    recipient: str,
    when: datetime,
    *,
    reason: str = "userunknown",
    status: str = "5.1.1",
    action: str = "failed",
    message_id: str | None = None,
) -> str:
    """One decoded DSN with one recipient; returns the event id."""
    n = next(_seq)
    h = hashlib.sha256(f"dsn{n}".encode()).hexdigest()
    store.con.execute(
        'INSERT INTO bounce_reports (report_hash, source, message_index, "offset", kind, agent,'
        " report_date, original_message_id, ingested_at) VALUES (?, 't', 1, 0, ?, 'rfc3464', ?, ?, ?)",
        [h, "delivered" if action == "delivered" else "bounce", when, message_id, when],
    )
    store.con.execute(
        "INSERT INTO bounce_recipients (report_hash, position, recipient, action, status, reason,"
        " category, rule_id) VALUES (?, 1, ?, ?, ?, ?, 'c', ?)",
        [h, recipient, action, status, reason, f"rule-{reason}"],
    )
    return f"dsn:{h}:1"


def complaint(store: Store, recipient: str, when: datetime, *, feedback: str = "abuse") -> str:
    n = next(_seq)
    h = hashlib.sha256(f"arf{n}".encode()).hexdigest()
    store.con.execute(
        'INSERT INTO bounce_reports (report_hash, source, message_index, "offset", kind, agent,'
        " report_date, ingested_at) VALUES (?, 't', 1, 0, 'complaint', 'arf', ?, ?)",
        [h, when, when],
    )
    store.con.execute(
        "INSERT INTO complaint_reports (report_hash, feedback_type, original_rcpt_to,"
        " arrival_date) VALUES (?, ?, [?], ?)",
        [h, feedback, recipient, when],
    )
    return f"arf:{h}"
