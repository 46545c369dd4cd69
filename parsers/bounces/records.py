"""Typed records produced by the bounce decoders (``mtalens.parsers.bounces``).

One ``BounceReport`` per message; it holds zero or more ``BounceRecipient`` rows (RFC 3464
section 2.3 per-recipient fields), an optional ``Complaint`` (RFC 5965 section 3.1) and the
headers of the returned message (RFC 3462 / RFC 6522 ``text/rfc822-headers`` or ``message/rfc822``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

# the message is mine but malformed: the one ParseError of the parsers, re-exported here
from mtalens.parsers.errors import ParseError as ParseError

# A report naming more recipients than one message can have had is not decoded (decode() raises
# ParseError("too_many_recipients")): RFC 5321 section 4.5.3.1.8 asks servers to accept at least
# 100 recipients per message, Postfix's smtpd_recipient_limit is 1000 by default (postconf(5)).
# Decoders stop collecting after MAX_RECIPIENTS + 1, so the work per message stays bounded, and
# a hostile text full of addresses cannot suppress thousands of them.
MAX_RECIPIENTS: Final = 1000


class ReportKind(StrEnum):
    BOUNCE = "bounce"  # at least one permanent or final failure
    DELAYED = "delayed"  # RFC 3464 Action: delayed only (warning, not a failure)
    DELIVERED = "delivered"  # Action: delivered / relayed / expanded only (success DSN)
    COMPLAINT = "complaint"  # RFC 5965 ARF feedback report
    AUTOREPLY = "autoreply"  # RFC 3834 automatic response (vacation, out of office)
    NOT_BOUNCE = "not_bounce"


class SmtpCommand(StrEnum):
    """The SMTP command a failure reply answered (RFC 5321 section 4.1), or the connection."""

    CONNECT = "CONNECT"  # the greeting (RFC 5321 section 3.1) or the TCP connection itself
    HELO = "HELO"  # EHLO/HELO/LHLO, STARTTLS and AUTH: the session set-up
    MAIL = "MAIL"  # MAIL FROM: the sender was refused
    RCPT = "RCPT"  # RCPT TO: this recipient was refused
    DATA = "DATA"  # DATA or the end of data (".", RFC 5321 section 4.1.1.4): the content


class Action(StrEnum):
    """RFC 3464 section 2.3.3 action values."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True, kw_only=True)
class BounceRecipient:
    recipient: str  # Final-Recipient address, lower-cased domain kept as sent
    original_recipient: str | None = None  # Original-Recipient (RFC 3464 section 2.3.1)
    action: Action = Action.FAILED
    status: str | None = None  # enhanced status code, RFC 3463
    reply_code: str | None = None  # SMTP reply code, RFC 5321 section 4.2
    diagnostic_type: str | None = None  # "smtp", "x-unix", ... (RFC 3464 section 2.3.6)
    diagnostic: str | None = None  # unfolded text without the type
    remote_mta: str | None = None
    last_attempt_date: datetime | None = None
    will_retry_until: datetime | None = None
    hint: str | None = None  # decoder's finding, e.g. "expired" (Postfix: failed + 4.x.x)
    command: SmtpCommand | None = None  # the command the failure answered, when the text says


@dataclass(frozen=True, slots=True, kw_only=True)
class Complaint:
    feedback_type: str  # RFC 5965 section 3.1 / IANA feedback types ("abuse", "fraud", ...)
    user_agent: str | None = None
    version: str | None = None
    original_mail_from: str | None = None
    original_rcpt_to: tuple[str, ...] = ()
    source_ip: str | None = None
    reporting_mta: str | None = None
    reported_domain: tuple[str, ...] = ()
    arrival_date: datetime | None = None
    incidents: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginalMessage:
    """Headers of the message that bounced, as returned inside the report."""

    message_id: str | None = None
    sender: str | None = None  # From:
    to: str | None = None
    subject: str | None = None
    date: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BounceReport:
    kind: ReportKind
    agent: str  # decoder name: "rfc3464", "exim", "qmail", ... ("none" for not_bounce)
    message_id: str | None = None  # the report's own Message-ID
    subject: str | None = None
    sender: str | None = None  # the report's From:
    to: str | None = None  # the report's To: / envelope recipient (a VERP address, maybe)
    date: datetime | None = None
    reporting_mta: str | None = None
    received_from_mta: str | None = None
    arrival_date: datetime | None = None
    envelope_id: str | None = None  # Original-Envelope-Id, RFC 3464 section 2.2.1
    postfix_queue_id: str | None = None  # X-Postfix-Queue-ID (Postfix bounce(8) only)
    # The reporting MTA's queue id of the returned message: X-Postfix-Queue-ID, else the "id"
    # of the returned message's topmost Received: by the Reporting-MTA (received.py; Exim's
    # and Sendmail's DSNs name it there only)
    mta_queue_id: str | None = None
    postfix_sender: str | None = None
    recipients: tuple[BounceRecipient, ...] = ()
    complaint: Complaint | None = None
    original: OriginalMessage | None = None
