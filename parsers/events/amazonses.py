"""Amazon SES: bounce, complaint and delivery notifications, and event-publishing records.

Formats (field names and values as documented):
- notifications, ``notificationType`` Bounce | Complaint | Delivery:
  https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html
- event publishing, ``eventType`` Bounce | Complaint | Delivery | Send | Reject | Open | Click |
  Rendering Failure | DeliveryDelay | Subscription:
  https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
  (the same records, one per line, through Firehose:
  https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-firehose-contents.html)
Both usually arrive inside an SNS envelope, which ``framing.py`` removes.
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
    reply_parts,
    seq,
    status_code,
    text,
    when,
)
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent

NAME: Final = "amazonses"

# bounceSubType values meaning SES did not try: the address is on its global suppression list
# or the account's (notification-contents.html, "Bounce types").
_SUPPRESSED_SUBTYPES: Final = frozenset({"Suppressed", "OnAccountSuppressionList"})
_IGNORED: Final = frozenset({"Send", "Open", "Click", "Rendering Failure", "Subscription"})


def sniff(event: Mapping[str, Any]) -> bool:
    """A ``mail`` object and a notificationType or eventType string."""
    return isinstance(event.get("mail"), dict) and (
        isinstance(event.get("notificationType"), str) or isinstance(event.get("eventType"), str)
    )


def parse(event: Mapping[str, Any]) -> ProviderEvent | Ignored:
    kind = text(event, "eventType") or text(event, "notificationType")
    if kind is None:
        raise ParseError("missing-field", "notificationType / eventType")
    if kind in _IGNORED:
        return Ignored(provider=NAME, rule=f"{NAME}:{kind}")
    mail = obj(event.get("mail"), "mail")
    headers = opt_obj(mail, "commonHeaders")
    common: dict[str, Any] = {
        "provider": NAME,
        "event_type": kind,
        "message_id": text(mail, "messageId"),
        "original_message_id": text(headers, "messageId"),
        "sender": text(mail, "source"),
        "subject": text(headers, "subject"),
    }
    if kind == "Bounce":
        return _bounce(opt_obj(event, "bounce"), mail, common)
    if kind == "Complaint":
        return _complaint(opt_obj(event, "complaint"), mail, common)
    if kind == "Delivery":
        return _delivery(opt_obj(event, "delivery"), mail, common)
    if kind == "DeliveryDelay":
        return _delay(opt_obj(event, "deliveryDelay"), mail, common)
    if kind == "Reject":
        return _reject(opt_obj(event, "reject"), mail, common)
    raise ParseError("unknown-event", f"{NAME}: event type {kind[:64]!r}")


def _bounce(b: Mapping[str, Any], mail: Mapping[str, Any], common: dict[str, Any]) -> ProviderEvent:
    # bounceType: Undetermined | Permanent | Transient; a Transient bounce is sent once SES has
    # given up retrying, so every Bounce is a final failure; bounceSubType refines it.
    btype = need(b, "bounceType")
    subtype = text(b, "bounceSubType")
    category = f"{btype}/{subtype}" if subtype else btype
    rcpts = []
    for i, r in enumerate(seq(b.get("bouncedRecipients"), "bounce.bouncedRecipients")):
        r = obj(r, f"bouncedRecipients[{i}]")
        diag = text(r, "diagnosticCode")
        code, st = reply_parts(diag)
        rcpts.append(EventRecipient(
            address=address(r.get("emailAddress"), "emailAddress"),
            status=status_code(text(r, "status")) or st, reply_code=code, diagnostic=diag,
            remote_mta=text(b, "remoteMtaIp"), provider_category=category,
        ))  # fmt: skip
    if not rcpts:
        raise ParseError("no-recipients", "bounce.bouncedRecipients is empty")
    feedback = text(b, "feedbackId")
    return ProviderEvent(
        **common,
        event_id=feedback or derived_id(NAME, common["message_id"], "Bounce", b.get("timestamp")),
        kind=EventKind.SUPPRESSED if subtype in _SUPPRESSED_SUBTYPES else EventKind.BOUNCE,
        occurred_at=when(b.get("timestamp"), "bounce.timestamp"),
        recipients=tuple(rcpts),
        reporting_mta=text(b, "reportingMTA"),
    )


def _complaint(
    c: Mapping[str, Any], mail: Mapping[str, Any], common: dict[str, Any]
) -> ProviderEvent:
    feedback_type = text(
        c, "complaintFeedbackType"
    )  # RFC 5965 feedback type, when the ISP gave one
    subtype = text(c, "complaintSubType")  # null, or OnAccountSuppressionList: SES did not send
    category = subtype or feedback_type
    rcpts = tuple(
        EventRecipient(
            address=address(obj(r, "complainedRecipients[]").get("emailAddress"), "emailAddress"),
            provider_category=category,
        )
        for r in seq(c.get("complainedRecipients"), "complaint.complainedRecipients")
    )
    if not rcpts:
        raise ParseError("no-recipients", "complaint.complainedRecipients is empty")
    feedback = text(c, "feedbackId")
    return ProviderEvent(
        **common,
        event_id=feedback
        or derived_id(NAME, common["message_id"], "Complaint", c.get("timestamp")),
        kind=EventKind.SUPPRESSED if subtype == "OnAccountSuppressionList" else EventKind.COMPLAINT,
        occurred_at=when(c.get("timestamp"), "complaint.timestamp"),
        recipients=rcpts,
        feedback_type=feedback_type,
        user_agent=text(c, "userAgent"),
    )


def _delivery(
    d: Mapping[str, Any], mail: Mapping[str, Any], common: dict[str, Any]
) -> ProviderEvent:
    smtp = text(d, "smtpResponse")
    code, st = reply_parts(smtp)
    addrs = [
        address(a, "delivery.recipients[]") for a in seq(d.get("recipients"), "delivery.recipients")
    ]
    if not addrs:
        raise ParseError("no-recipients", "delivery.recipients is empty")
    return ProviderEvent(
        **common,
        event_id=derived_id(NAME, common["message_id"], "Delivery", d.get("timestamp"), addrs),
        kind=EventKind.DELIVERED,
        occurred_at=when(d.get("timestamp"), "delivery.timestamp"),
        recipients=tuple(
            EventRecipient(
                address=a,
                status=st,
                reply_code=code,
                diagnostic=smtp,
                remote_mta=text(d, "remoteMtaIp"),
            )
            for a in addrs
        ),
        reporting_mta=text(d, "reportingMTA"),
    )


def _delay(d: Mapping[str, Any], mail: Mapping[str, Any], common: dict[str, Any]) -> ProviderEvent:
    # delayType: InternalFailure | General | MailboxFull | SpamDetected | RecipientServerError |
    # IPFailure | TransientCommunicationFailure | BYOIPHostNameLookupUnavailable | Undetermined |
    # SendingDeferral (event-publishing-retrieving-sns-contents.html, "DeliveryDelay object")
    category = text(d, "delayType")
    rcpts = []
    for i, r in enumerate(seq(d.get("delayedRecipients"), "deliveryDelay.delayedRecipients")):
        r = obj(r, f"delayedRecipients[{i}]")
        diag = text(r, "diagnosticCode")
        code, st = reply_parts(diag)
        rcpts.append(EventRecipient(
            address=address(r.get("emailAddress"), "emailAddress"),
            status=status_code(text(r, "status")) or st, reply_code=code, diagnostic=diag,
            provider_category=category,
        ))  # fmt: skip
    if not rcpts:
        raise ParseError("no-recipients", "deliveryDelay.delayedRecipients is empty")
    return ProviderEvent(
        **common,
        event_id=derived_id(NAME, common["message_id"], "DeliveryDelay", d.get("timestamp"),
                            [r.address for r in rcpts]),
        kind=EventKind.DELAYED,
        occurred_at=when(d.get("timestamp"), "deliveryDelay.timestamp"),
        recipients=tuple(rcpts),
        reporting_mta=text(d, "reportingMTA"),
    )  # fmt: skip


def _reject(r: Mapping[str, Any], mail: Mapping[str, Any], common: dict[str, Any]) -> ProviderEvent:
    # "SES accepted the email, but determined that it contained a virus and didn't attempt to
    # deliver it"; reject.reason is "Bad content". The recipients are the mail's destination.
    reason = text(r, "reason")
    addrs = [
        address(a, "mail.destination[]") for a in seq(mail.get("destination"), "mail.destination")
    ]
    if not addrs:
        raise ParseError("no-recipients", "mail.destination is empty")
    return ProviderEvent(
        **common,
        event_id=derived_id(NAME, common["message_id"], "Reject", mail.get("timestamp")),
        kind=EventKind.REJECTED,
        occurred_at=when(mail.get("timestamp"), "mail.timestamp"),
        recipients=tuple(EventRecipient(address=a, diagnostic=reason, provider_category=reason)
                         for a in addrs),
    )  # fmt: skip
