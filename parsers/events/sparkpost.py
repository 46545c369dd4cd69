"""SparkPost webhook events (``{"msys": {"message_event": {...}}}`` in batches) and the same
records as the Events API returns them (the inner object alone).

Formats: https://developers.sparkpost.com/api/webhooks/ and
https://developers.sparkpost.com/api/events/ (message events injection | delivery | bounce |
delay | policy_rejection | out_of_band | spam_complaint | generation_failure |
generation_rejection; unsubscribe events list_unsubscribe | link_unsubscribe; track events).
``bounce_class`` codes: https://support.sparkpost.com/docs/deliverability/bounce-classification-codes
``raw_reason`` is the remote reply, ``error_code`` its reply code, ``fbtype`` a complaint's
feedback type. Samples: tests/test_events.py.
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
    reply_code,
    reply_parts,
    text,
    when,
)
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "sparkpost"

_KINDS: Final = {
    "bounce": EventKind.BOUNCE,
    "out_of_band": EventKind.BOUNCE,  # accepted first, reported undelivered later
    "delay": EventKind.DELAYED,
    "delivery": EventKind.DELIVERED,
    "spam_complaint": EventKind.COMPLAINT,
    "policy_rejection": EventKind.REJECTED,
    "generation_failure": EventKind.REJECTED,
    "generation_rejection": EventKind.REJECTED,
    "list_unsubscribe": EventKind.UNSUBSCRIBE,
    "link_unsubscribe": EventKind.UNSUBSCRIBE,
}
_IGNORED: Final = frozenset({
    "injection", "open", "initial_open", "click", "amp_open", "amp_initial_open", "amp_click",
    "sms_status", "relay_injection", "relay_rejection", "relay_delivery", "relay_tempfail",
    "relay_permfail", "ab_test_completed", "ab_test_cancelled", "ingest_success", "ingest_error",
})  # fmt: skip
# The bounce classes (bounce-classification-codes) that are not delivery failures of the
# recipient: 25 Admin Failure is SparkPost's own policy (its suppression list among them);
# auto-replies, subscribe requests and challenge-responses are not failures; 90 unsubscribes.
_ADMIN_FAILURE: Final = "25"
_NOT_FAILURES: Final = frozenset({"60", "80", "100"})
_UNSUBSCRIBE_CLASS: Final = "90"
_CLASS_NAMES: Final = {
    "1": "Undetermined", "10": "Invalid Recipient", "20": "Soft Bounce", "21": "DNS Failure",
    "22": "Mailbox Full", "23": "Too Large", "24": "Timeout", "25": "Admin Failure",
    "30": "Generic Bounce: No RCPT", "40": "Generic Bounce",
    "50": "Mail Block", "51": "Spam Block", "52": "Spam Content", "53": "Prohibited Attachment",
    "54": "Relaying Denied", "60": "Auto-Reply", "70": "Transient Failure", "80": "Subscribe",
    "90": "Unsubscribe", "100": "Challenge-Response",
}  # fmt: skip
_CONTAINERS: Final = ("message_event", "unsubscribe_event", "track_event", "gen_event",
                      "relay_event", "ab_test_event", "ingest_event")  # fmt: skip


def sniff(event: Mapping[str, Any]) -> bool:
    if isinstance(event.get("msys"), dict):
        return True
    return (
        isinstance(event.get("type"), str)
        and "event_id" in event
        and ("rcpt_to" in event or "raw_rcpt_to" in event)
    )


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    if "msys" in event:
        msys = obj(event["msys"], "msys")
        inner = next((msys[k] for k in _CONTAINERS if k in msys), None)
        if inner is None:
            if not msys:  # SparkPost's test POST when a webhook is created is [{"msys": {}}]
                return Ignored(provider=NAME, rule=f"{NAME}:empty")
            raise ParseError("unknown-event", f"{NAME}: msys holds {sorted(msys)[:4]}")
        event = obj(inner, "msys event")
    name = need(event, "type")
    if name in _IGNORED:
        return Ignored(provider=NAME, rule=f"{NAME}:{name}")
    kind = _KINDS.get(name)
    if kind is None:
        raise ParseError("unknown-event", f"{NAME}: event type {name[:64]!r}")
    klass = text(event, "bounce_class")
    if kind is EventKind.BOUNCE and klass in _NOT_FAILURES:
        return Ignored(provider=NAME, rule=f"{NAME}:{name}:class-{klass}")
    if kind is EventKind.BOUNCE and klass == _UNSUBSCRIBE_CLASS:
        kind = EventKind.UNSUBSCRIBE
    elif klass == _ADMIN_FAILURE and kind in (EventKind.BOUNCE, EventKind.REJECTED):
        kind = EventKind.SUPPRESSED
    diag = text(event, "raw_reason") or text(event, "reason")
    code, st = reply_parts(diag)
    category = f"{klass} {_CLASS_NAMES[klass]}" if klass in _CLASS_NAMES else klass
    if kind is EventKind.COMPLAINT:
        category = text(event, "fbtype")
    rcpt = EventRecipient(
        address=address(event.get("rcpt_to") or event.get("raw_rcpt_to"), "rcpt_to"),
        status=st,
        reply_code=reply_code(text(event, "error_code")) or code,
        diagnostic=diag,
        remote_mta=text(event, "ip_address") if kind is not EventKind.COMPLAINT else None,
        provider_category=category,
    )
    ident = text(event, "event_id")
    return ProviderEvent(
        provider=NAME,
        event_id=ident
        or derived_id(NAME, name, text(event, "message_id"), event.get("timestamp"), rcpt.address),
        event_type=name,
        kind=kind,
        occurred_at=when(event.get("timestamp"), "timestamp"),
        recipients=(rcpt,),
        message_id=text(event, "message_id"),
        sender=text(event, "msg_from"),
        subject=text(event, "subject"),
        feedback_type=text(event, "fbtype") if kind is EventKind.COMPLAINT else None,
        user_agent=text(event, "user_agent") if kind is EventKind.COMPLAINT else None,
    )
