"""SendGrid Event Webhook events (and the same records as archived: an array per POST).

Format: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
(delivery events bounce | deferred | delivered | dropped | processed, engagement events open |
click | spamreport | unsubscribe | group_unsubscribe | group_resubscribe). A bounce carries
``type`` bounce or blocked and ``bounce_classification`` (Invalid Address, Technical, Content,
Reputation, Frequency or Volume, Mailbox Unavailable, Unclassified); ``reason`` is the remote
server's reply and ``status`` its enhanced code; deferred and delivered give ``response``.
Samples: tests/test_events.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.events.fields import (
    address,
    derived_id,
    need,
    reply_parts,
    status_code,
    text,
    when,
)
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "sendgrid"

_KINDS: Final = {
    "bounce": EventKind.BOUNCE,
    "blocked": EventKind.BOUNCE,  # older payloads name a blocked bounce as its own event
    "deferred": EventKind.DELAYED,
    "delivered": EventKind.DELIVERED,
    "dropped": EventKind.REJECTED,
    "spamreport": EventKind.COMPLAINT,
    "unsubscribe": EventKind.UNSUBSCRIBE,
    "group_unsubscribe": EventKind.UNSUBSCRIBE,
}
_IGNORED: Final = frozenset({"processed", "open", "click", "group_resubscribe"})
# dropped reasons that mean "on one of your suppression lists" (the event reference's list of
# drop reasons): the bounce, unsubscribe or spam report behind it was its own event.
_SUPPRESSION_REASONS: Final = frozenset(
    {"bounced address", "unsubscribed address", "spam reporting address"}
)


def sniff(event: Mapping[str, Any]) -> bool:
    """An ``event`` string and an ``email`` at the top, and one of SendGrid's message ids."""
    return (
        isinstance(event.get("event"), str)
        and "email" in event
        and ("sg_event_id" in event or "sg_message_id" in event or "smtp-id" in event)
    )


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    name = need(event, "event")
    if name in _IGNORED:
        return Ignored(provider=NAME, rule=f"{NAME}:{name}")
    kind = _KINDS.get(name)
    if kind is None:
        raise ParseError("unknown-event", f"{NAME}: event {name[:64]!r}")
    reason = text(event, "reason")
    if kind is EventKind.REJECTED and reason and reason.lower() in _SUPPRESSION_REASONS:
        kind = EventKind.SUPPRESSED
    diag = reason if kind in (EventKind.BOUNCE, EventKind.REJECTED, EventKind.SUPPRESSED) else None
    diag = diag or text(event, "response")
    code, st = reply_parts(diag)
    btype = text(event, "type") or ("blocked" if name == "blocked" else None)
    klass = text(event, "bounce_classification")
    category = "/".join(p for p in (btype, klass) if p) or (
        reason if kind is not EventKind.BOUNCE else None
    )
    rcpt = EventRecipient(
        address=address(event.get("email"), "email"),
        status=status_code(text(event, "status")) or st,
        reply_code=code,
        diagnostic=diag,
        provider_category=category,
    )
    sg_message = text(event, "sg_message_id")
    return ProviderEvent(
        provider=NAME,
        event_id=text(event, "sg_event_id")
        or derived_id(NAME, name, sg_message, event.get("timestamp"), rcpt.address),
        event_type=name,
        kind=kind,
        occurred_at=when(event.get("timestamp"), "timestamp"),
        recipients=(rcpt,),
        message_id=sg_message,
        original_message_id=text(event, "smtp-id"),
        feedback_type="abuse" if kind is EventKind.COMPLAINT else None,
    )
