"""Records of sending-platform events: what every provider module returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EventKind(StrEnum):
    """What happened, in mtalens' words (stored as ``bounce_reports.kind``)."""

    BOUNCE = "bounce"  # delivery failed for good (the provider stopped trying)
    DELAYED = "delayed"  # a temporary failure: the provider will try again
    DELIVERED = "delivered"  # the receiving server accepted the message
    COMPLAINT = "complaint"  # the recipient reported it as spam (a feedback loop)
    UNSUBSCRIBE = "unsubscribe"  # the recipient unsubscribed
    SUPPRESSED = "suppressed"  # not sent: the address is on the provider's suppression list
    REJECTED = "rejected"  # not sent for another reason of the provider's (virus, policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecipient:
    """One recipient of an event, with the SMTP facts the provider gives about it."""

    address: str
    status: str | None = None  # RFC 3463 enhanced status code
    reply_code: str | None = None  # RFC 5321 basic reply code
    diagnostic: str | None = None  # the remote server's reply, or the provider's text
    remote_mta: str | None = None
    provider_category: str | None = None  # the provider's own classification, verbatim


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderEvent:
    """One provider event, about one or more recipients of one message."""

    provider: str
    event_id: str  # the provider's id of the event, or one derived from its fields
    event_type: str  # the provider's name of the event ("Bounce", "hard_bounce", ...)
    kind: EventKind
    occurred_at: datetime | None
    recipients: tuple[EventRecipient, ...]
    message_id: str | None = None  # the provider's id of the message
    original_message_id: str | None = None  # the message's Message-ID header
    sender: str | None = None
    subject: str | None = None
    reporting_mta: str | None = None
    feedback_type: str | None = None  # complaints: RFC 5965 feedback type, when given
    user_agent: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """An event of a provider's that is not about delivery (opens, clicks, sends...): counted
    under ``rule`` and not stored."""

    provider: str
    rule: str
