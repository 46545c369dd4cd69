"""Mailgun events: webhook payloads (``{"signature": ..., "event-data": {...}}``) and the
Events API's records (the ``event-data`` object alone).

Formats: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads
and the event types https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types
("failed": severity=permanent when Mailgun stopped trying, including addresses it had
suppressed, severity=temporary when an ESP rejected it for now). ``delivery-status`` holds the
remote reply: ``code``, ``message``, ``description``, ``mx-host``. ``reason`` names Mailgun's
finding (bounce, generic, suppress-bounce, suppress-unsubscribe, suppress-complaint, ...).
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
    obj,
    opt_obj,
    reply_code,
    reply_parts,
    status_code,
    text,
    when,
)
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "mailgun"

_KINDS: Final = {
    "delivered": EventKind.DELIVERED,
    "complained": EventKind.COMPLAINT,
    "unsubscribed": EventKind.UNSUBSCRIBE,
    "rejected": EventKind.REJECTED,
}
_IGNORED: Final = frozenset({"accepted", "opened", "clicked", "stored", "list_member_uploaded"})


def sniff(event: Mapping[str, Any]) -> bool:
    if "event-data" in event:  # the webhook's wrapper (of any type: a wrong one is Mailgun's error)
        return True
    return (
        isinstance(event.get("event"), str)
        and isinstance(event.get("recipient"), str)
        and ("log-level" in event or "delivery-status" in event or "recipient-domain" in event)
    )


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    data = obj(event["event-data"], "event-data") if "event-data" in event else event
    name = need(data, "event")
    if name in _IGNORED:
        return Ignored(provider=NAME, rule=f"{NAME}:{name}")
    severity = text(data, "severity")
    reason = text(data, "reason")
    if name == "failed":
        if severity == "temporary":
            kind = EventKind.DELAYED
        elif reason and reason.startswith("suppress-"):
            kind = EventKind.SUPPRESSED
        else:
            kind = EventKind.BOUNCE
    elif name in _KINDS:
        kind = _KINDS[name]
    else:
        raise ParseError("unknown-event", f"{NAME}: event {name[:64]!r}")
    status = opt_obj(data, "delivery-status")
    diag = text(status, "message") or text(status, "description")
    if kind is EventKind.REJECTED:
        diag = diag or text(opt_obj(data, "reject"), "reason")
    code, st = reply_parts(diag)
    headers = opt_obj(opt_obj(data, "message"), "headers")
    category = "/".join(p for p in (severity, reason) if p) or None
    rcpt = EventRecipient(
        address=address(data.get("recipient"), "recipient"),
        status=status_code(text(status, "enhanced-code")) or st,
        reply_code=reply_code(text(status, "code")) or code,
        diagnostic=diag,
        remote_mta=text(status, "mx-host"),
        provider_category=category,
    )
    # Mailgun's event id is unique within a day only: with the timestamp it is unique
    ident = text(data, "id")
    stamp = data.get("timestamp")
    return ProviderEvent(
        provider=NAME,
        event_id=f"{ident}@{stamp}" if ident else derived_id(NAME, name, stamp, rcpt.address),
        event_type=name,
        kind=kind,
        occurred_at=when(stamp, "timestamp"),
        recipients=(rcpt,),
        message_id=text(headers, "message-id"),
        original_message_id=text(headers, "message-id"),
        sender=text(opt_obj(data, "envelope"), "sender"),
        subject=text(headers, "subject"),
        feedback_type="abuse" if kind is EventKind.COMPLAINT else None,
    )
