"""Postal (postalserver.io) webhooks.

Format: https://docs.postalserver.io/developer/webhooks. A request is
``{"event": NAME, "timestamp": ..., "payload": {...}, "uuid": ...}``; the documentation shows
the payloads. Message status events MessageSent | MessageDelayed | MessageDeliveryFailed |
MessageHeld carry ``status`` (Sent, SoftFail, HardFail, Held), ``details``, ``output`` (the
remote server's reply), ``timestamp`` and ``message`` (``id``, ``token``, ``message_id``,
``to``, ``from``, ``subject``); MessageBounced carries ``original_message`` and ``bounce``.
A payload archived without its wrapper is read by its shape. Samples: tests/test_events.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.events.fields import address, derived_id, obj, opt_obj, reply_parts, text, when
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "postal"

_BY_STATUS: Final = {
    "Sent": ("MessageSent", EventKind.DELIVERED),
    "SoftFail": ("MessageDelayed", EventKind.DELAYED),
    "HardFail": ("MessageDeliveryFailed", EventKind.BOUNCE),
}
_BY_EVENT: Final = {name: kind for name, kind in _BY_STATUS.values()}
_IGNORED: Final = frozenset({"MessageHeld", "MessageLinkClicked", "MessageLoaded",
                             "DomainDNSError", "SendLimitApproaching", "SendLimitExceeded"})  # fmt: skip


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and "token" in value and "direction" in value


def sniff(event: Mapping[str, Any]) -> bool:
    if isinstance(event.get("event"), str) and isinstance(event.get("payload"), dict):
        return True
    if _is_message(event.get("original_message")) and isinstance(event.get("bounce"), dict):
        return True
    return isinstance(event.get("status"), str) and _is_message(event.get("message"))


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    if "payload" in event:
        name = text(event, "event")
        payload = obj(event["payload"], "payload")
    else:
        name, payload = None, event
    if name in _IGNORED:
        return Ignored(provider=NAME, rule=f"{NAME}:{name}")
    if name == "MessageBounced" or (name is None and "original_message" in payload):
        return _bounced(event, payload)
    status = text(payload, "status")
    if name is None:
        if status == "Held":
            return Ignored(provider=NAME, rule=f"{NAME}:MessageHeld")
        if status not in _BY_STATUS:
            raise ParseError("unknown-event", f"{NAME}: status {str(status)[:64]!r}")
        name, kind = _BY_STATUS[status]
    elif name in _BY_EVENT:
        kind = _BY_EVENT[name]
    else:
        raise ParseError("unknown-event", f"{NAME}: event {name[:64]!r}")
    message = obj(payload.get("message"), "payload.message")
    diag = text(payload, "output") or text(payload, "details")
    code, st = reply_parts(diag)
    rcpt = EventRecipient(
        address=address(message.get("to"), "message.to"),
        status=st, reply_code=code, diagnostic=diag, provider_category=status,
    )  # fmt: skip
    return ProviderEvent(
        provider=NAME,
        event_id=text(event, "uuid")
        or derived_id(
            NAME, name, message.get("token") or message.get("id"), payload.get("timestamp")
        ),
        event_type=name,
        kind=kind,
        occurred_at=when(payload.get("timestamp") or event.get("timestamp"), "timestamp"),
        recipients=(rcpt,),
        message_id=text(message, "token") or text(message, "id"),
        original_message_id=text(message, "message_id"),
        sender=text(message, "from"),
        subject=text(message, "subject"),
    )


def _bounced(event: Mapping[str, Any], payload: Mapping[str, Any]) -> ProviderEvent:
    # Postal received a bounce message about a message it had sent; the payload names both
    # messages, not the remote reply.
    original = obj(payload.get("original_message"), "original_message")
    bounce = opt_obj(payload, "bounce")
    rcpt = EventRecipient(address=address(original.get("to"), "original_message.to"),
                          diagnostic=text(bounce, "subject"))  # fmt: skip
    return ProviderEvent(
        provider=NAME,
        event_id=text(event, "uuid")
        or derived_id(NAME, "MessageBounced", original.get("token"), bounce.get("token")),
        event_type="MessageBounced",
        kind=EventKind.BOUNCE,
        occurred_at=when(bounce.get("timestamp") or event.get("timestamp"), "bounce.timestamp"),
        recipients=(rcpt,),
        message_id=text(original, "token") or text(original, "id"),
        original_message_id=text(original, "message_id"),
        sender=text(original, "from"),
        subject=text(original, "subject"),
    )
