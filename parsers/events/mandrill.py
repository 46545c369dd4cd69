"""Mandrill (Mailchimp Transactional) message-event webhooks.

Format: https://mailchimp.com/developer/transactional/docs/webhooks/ (POSTed as
``mandrill_events``, a JSON array of up to 1,000 events, which ``framing.py`` unpacks; events
send | deferral | hard_bounce | soft_bounce | delivered | open | click | spam | unsub | reject).
Each event has ``event``, ``ts``, ``_id`` (the message's id) and ``msg``: ``email``, ``sender``,
``subject``, ``state``, ``bounce_description``, ``diag`` (the remote reply) and ``smtp_events``
(each attempt: ``ts``, ``type``, ``diag``, ``destination_ip``). Samples: tests/test_events.py.
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
    reply_parts,
    seq,
    text,
    when,
)
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "mandrill"

_KINDS: Final = {
    "hard_bounce": EventKind.BOUNCE,
    "soft_bounce": EventKind.BOUNCE,  # Mandrill stopped trying; the classifier says soft
    "deferral": EventKind.DELAYED,
    "delivered": EventKind.DELIVERED,
    "spam": EventKind.COMPLAINT,
    "unsub": EventKind.UNSUBSCRIBE,
    # "message was rejected": the address is on the rejection denylist (an earlier bounce,
    # complaint or unsubscribe) or a rule of the account's
    "reject": EventKind.SUPPRESSED,
}
_IGNORED: Final = frozenset({"send", "open", "click"})


def sniff(event: Mapping[str, Any]) -> bool:
    return (
        isinstance(event.get("event"), str) and isinstance(event.get("msg"), dict) and "ts" in event
    )


def _last_attempt(msg: Mapping[str, Any]) -> Mapping[str, Any]:
    events = msg.get("smtp_events")
    if not events:
        return {}
    attempts = seq(events, "msg.smtp_events")
    return obj(attempts[-1], "msg.smtp_events[-1]")


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    name = need(event, "event")
    if name in _IGNORED:
        return Ignored(provider=NAME, rule=f"{NAME}:{name}")
    kind = _KINDS.get(name)
    if kind is None:
        raise ParseError("unknown-event", f"{NAME}: event {name[:64]!r}")
    msg = obj(event.get("msg"), "msg")
    attempt = _last_attempt(msg)
    diag = text(msg, "diag") or text(attempt, "diag")
    code, st = reply_parts(diag)
    category = text(msg, "bounce_description")
    if kind is EventKind.SUPPRESSED:
        category = category or text(msg, "state")
    rcpt = EventRecipient(
        address=address(msg.get("email"), "msg.email"),
        status=st,
        reply_code=code,
        diagnostic=diag,
        remote_mta=text(attempt, "destination_ip"),
        provider_category=category,
    )
    message_id = text(event, "_id") or text(msg, "_id")
    return ProviderEvent(
        provider=NAME,
        # _id is the message's; a message has many events (deferrals, then a bounce)
        event_id=derived_id(NAME, name, message_id, event.get("ts"), rcpt.address),
        event_type=name,
        kind=kind,
        occurred_at=when(event.get("ts"), "ts"),
        recipients=(rcpt,),
        message_id=message_id,
        sender=text(msg, "sender"),
        subject=text(msg, "subject"),
        feedback_type="abuse" if kind is EventKind.COMPLAINT else None,
    )
