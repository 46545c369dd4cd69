"""Postmark webhooks: Bounce, Delivery, SpamComplaint, SubscriptionChange (Open and Click are
counted and not stored).

Formats: https://postmarkapp.com/developer/webhooks/bounce-webhook,
https://postmarkapp.com/developer/webhooks/delivery-webhook,
https://postmarkapp.com/developer/webhooks/spam-complaint-webhook,
https://postmarkapp.com/developer/webhooks/subscription-change-webhook; bounce ``Type`` values
https://postmarkapp.com/developer/api/bounce-api#bounce-types. Older bounce webhooks carry no
``RecordType``; they are read by ``TypeCode`` and ``BouncedAt``.
Samples: tests/test_events.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.events.fields import address, derived_id, need, reply_parts, text, when
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "postmark"

_RECORD_TYPES: Final = frozenset(
    {"Bounce", "Delivery", "SpamComplaint", "SubscriptionChange", "Open", "Click"}
)
# Bounce Type -> kind where it is not a failed delivery (bounce-api#bounce-types): Transient is
# "delayed, will retry"; ManuallyDeactivated is Postmark's own suppression; template and API
# errors never reached a server; auto-replies, subscribe requests and the like are not failures.
_BOUNCE_KINDS: Final[Mapping[str, EventKind | None]] = {
    "Transient": EventKind.DELAYED,
    "SpamComplaint": EventKind.COMPLAINT,
    "Unsubscribe": EventKind.UNSUBSCRIBE,
    "ManuallyDeactivated": EventKind.SUPPRESSED,
    "TemplateRenderingFailed": EventKind.REJECTED,
    "SMTPApiError": EventKind.REJECTED,
    "Subscribe": None,
    "AutoResponder": None,
    "AddressChange": None,
    "OpenRelayTest": None,
    "ChallengeVerification": None,
}


def sniff(event: Mapping[str, Any]) -> bool:
    record = event.get("RecordType")
    if isinstance(record, str):
        return record in _RECORD_TYPES and "MessageID" in event
    return "TypeCode" in event and "BouncedAt" in event and "Email" in event


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    record = text(event, "RecordType") or "Bounce"
    if record in ("Open", "Click"):
        return Ignored(provider=NAME, rule=f"{NAME}:{record}")
    message_id = text(event, "MessageID")
    common: dict[str, Any] = {"provider": NAME, "message_id": message_id,
                              "subject": text(event, "Subject"), "sender": text(event, "From")}  # fmt: skip
    if record in ("Bounce", "SpamComplaint"):
        btype = need(event, "Type")
        kind: EventKind | None = EventKind.COMPLAINT if record == "SpamComplaint" else (
            _BOUNCE_KINDS.get(btype, EventKind.BOUNCE)
        )  # fmt: skip
        if kind is None:
            return Ignored(provider=NAME, rule=f"{NAME}:Bounce:{btype}")
        diag = text(event, "Details") or text(event, "Description")
        code, st = reply_parts(diag)
        return ProviderEvent(
            **common,
            event_id=need(event, "ID"),
            event_type=record if record == "SpamComplaint" else f"Bounce:{btype}",
            kind=kind,
            occurred_at=when(event.get("BouncedAt"), "BouncedAt"),
            recipients=(EventRecipient(
                address=address(event.get("Email"), "Email"), status=st, reply_code=code,
                diagnostic=diag, provider_category=btype,
            ),),
            feedback_type="abuse" if kind is EventKind.COMPLAINT else None,
        )  # fmt: skip
    if record == "Delivery":
        rcpt = address(event.get("Recipient"), "Recipient")
        diag = text(event, "Details")
        code, st = reply_parts(diag)
        return ProviderEvent(
            **common,
            event_id=derived_id(NAME, record, message_id, rcpt, event.get("DeliveredAt")),
            event_type=record,
            kind=EventKind.DELIVERED,
            occurred_at=when(event.get("DeliveredAt"), "DeliveredAt"),
            recipients=(EventRecipient(address=rcpt, status=st, reply_code=code, diagnostic=diag),),
        )
    if record == "SubscriptionChange":
        rcpt = address(event.get("Recipient"), "Recipient")
        suppress = event.get("SuppressSending")
        if not isinstance(suppress, bool):
            raise ParseError("bad-field", "SuppressSending: expected true or false")
        reason = text(event, "SuppressionReason")  # HardBounce | SpamComplaint | ManualSuppression
        if not suppress:
            return Ignored(provider=NAME, rule=f"{NAME}:SubscriptionChange:reactivated")
        return ProviderEvent(
            **common,
            event_id=derived_id(NAME, record, message_id, rcpt, event.get("ChangedAt")),
            event_type=f"{record}:{reason}" if reason else record,
            # a hard bounce or spam complaint suppression follows the Bounce or SpamComplaint
            # event already stored: recorded, not counted again
            kind=EventKind.UNSUBSCRIBE if reason == "ManualSuppression" else EventKind.SUPPRESSED,
            occurred_at=when(event.get("ChangedAt"), "ChangedAt"),
            recipients=(EventRecipient(address=rcpt, provider_category=reason),),
        )
    raise ParseError("unknown-event", f"{NAME}: RecordType {record[:64]!r}")
