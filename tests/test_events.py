"""Sending-platform events: each provider's documented shapes (values our own), detection,
framing (JSON, arrays, JSON lines, gzip, SNS envelopes, Mandrill's mandrill_events), the store
(bounces / complaints / provider_deliveries views, idempotence), the suppression policy, and
hostile input ending as quarantine rows."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mtalens.parsers.errors import ParseError
from mtalens.parsers.events import (
    BY_NAME,
    PROVIDERS,
    EventKind,
    Ignored,
    ProviderEvent,
    decode,
    detect,
)
from mtalens.parsers.events.framing import gunzip, split_events
from mtalens.pipeline import events as E
from mtalens.pipeline.cli import run
from mtalens.pipeline.exitcodes import ExitCode
from mtalens.pipeline.store import Store

# --- Amazon SES (notification-contents.html, event-publishing-retrieving-sns-contents.html) ---
SES_MAIL = {
    "timestamp": "2026-03-02T10:00:00.000Z",
    "messageId": "0100018e-aaaa-bbbb-cccc-000000000001-000000",
    "source": "news@sender.example",
    "destination": ["ann@dest.example", "bob@dest.example"],
    "commonHeaders": {"messageId": "<campaign-7@sender.example>", "subject": "March news"},
}
SES_BOUNCE = {
    "notificationType": "Bounce",
    "mail": SES_MAIL,
    "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "ann@dest.example", "action": "failed",
                               "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        "timestamp": "2026-03-02T10:00:05.000Z", "feedbackId": "fb-ses-bounce-1",
        "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
    },
}  # fmt: skip
SES_SUPPRESSED = {
    "eventType": "Bounce",
    "mail": SES_MAIL,
    "bounce": {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList",
               "bouncedRecipients": [{"emailAddress": "bob@dest.example"}],
               "timestamp": "2026-03-02T10:00:06.000Z", "feedbackId": "fb-ses-bounce-2"},
}  # fmt: skip
SES_COMPLAINT = {
    "notificationType": "Complaint",
    "mail": SES_MAIL,
    "complaint": {"complainedRecipients": [{"emailAddress": "bob@dest.example"}],
                  "timestamp": "2026-03-03T08:00:00.000Z", "feedbackId": "fb-ses-complaint-1",
                  "userAgent": "ExampleISP FBL", "complaintFeedbackType": "abuse"},
}  # fmt: skip
SES_DELIVERY = {
    "notificationType": "Delivery",
    "mail": SES_MAIL,
    "delivery": {"timestamp": "2026-03-02T10:00:01.000Z", "processingTimeMillis": 900,
                 "recipients": ["bob@dest.example"], "smtpResponse": "250 2.6.0 Message received",
                 "reportingMTA": "a8-70.smtp-out.amazonses.com"},
}  # fmt: skip
SES_DELAY = {
    "eventType": "DeliveryDelay",
    "mail": SES_MAIL,
    "deliveryDelay": {"timestamp": "2026-03-02T11:00:00.000Z", "delayType": "MailboxFull",
                      "expirationTime": "2026-03-03T10:00:00.000Z",
                      "delayedRecipients": [{"emailAddress": "cat@dest.example", "status": "4.2.2",
                                             "diagnosticCode": "smtp; 452 4.2.2 Mailbox full"}]},
}  # fmt: skip
SES_REJECT = {"eventType": "Reject", "mail": SES_MAIL, "reject": {"reason": "Bad content"}}
SES_OPEN = {"eventType": "Open", "mail": SES_MAIL, "open": {"timestamp": "2026-03-02T12:00:00Z"}}

# --- SendGrid (twilio.com/docs/sendgrid/for-developers/tracking-events/event) ---
SG = {"timestamp": 1772445600, "smtp-id": "<sg-1@sender.example>", "sg_message_id": "sgm-1"}
SG_EVENTS = [
    {**SG, "email": "dan@dest.example", "event": "bounce", "sg_event_id": "sg-e1", "type": "bounce",
     "status": "5.1.1", "reason": "550 5.1.1 The email account does not exist",
     "bounce_classification": "Invalid Address"},
    {**SG, "email": "eve@dest.example", "event": "bounce", "sg_event_id": "sg-e2", "type": "blocked",
     "status": "5.7.1", "reason": "554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
     "bounce_classification": "Reputation"},
    {**SG, "email": "fay@dest.example", "event": "deferred", "sg_event_id": "sg-e3",
     "response": "451 4.7.1 try again later", "attempt": "2"},
    {**SG, "email": "fay@dest.example", "event": "delivered", "sg_event_id": "sg-e4",
     "response": "250 OK"},
    {**SG, "email": "gus@dest.example", "event": "dropped", "sg_event_id": "sg-e5",
     "reason": "Bounced Address"},
    {**SG, "email": "hal@dest.example", "event": "spamreport", "sg_event_id": "sg-e6"},
    {**SG, "email": "ivy@dest.example", "event": "unsubscribe", "sg_event_id": "sg-e7"},
    {**SG, "email": "ivy@dest.example", "event": "open", "sg_event_id": "sg-e8",
     "useragent": "Mozilla/5.0", "ip": "192.0.2.9"},
]  # fmt: skip


# --- Mailgun (documentation.mailgun.com ... webhooks/webhook-payloads) ---
def mailgun(event: str, rcpt: str, ident: str, **extra: Any) -> dict[str, Any]:
    return {
        "signature": {"timestamp": "1772445600", "token": "t" * 50, "signature": "0" * 64},
        "event-data": {
            "event": event, "id": ident, "timestamp": 1772445600.25, "log-level": "error",
            "recipient": rcpt, "recipient-domain": rcpt.split("@")[1],
            "envelope": {"sender": "bounce@mg.sender.example", "targets": rcpt},
            "message": {"headers": {"message-id": "mg-1@mg.sender.example", "subject": "Hi"}},
            **extra,
        },
    }  # fmt: skip


MG_EVENTS = [
    mailgun("failed", "jon@dest.example", "mg-e1", severity="permanent", reason="bounce",
            **{"delivery-status": {"code": 550, "message": "5.1.1 No such user here",
                                   "description": "", "mx-host": "mx.dest.example"}}),
    mailgun("failed", "kim@dest.example", "mg-e2", severity="temporary", reason="generic",
            **{"delivery-status": {"code": 452, "message": "4.2.2 Mailbox full",
                                   "mx-host": "mx.dest.example"}}),
    mailgun("failed", "lee@dest.example", "mg-e3", severity="permanent", reason="suppress-bounce",
            **{"delivery-status": {"code": 605, "message": "",
                                   "description": "Not delivering to previously bounced address"}}),
    mailgun("delivered", "kim@dest.example", "mg-e4",
            **{"delivery-status": {"code": 250, "message": "OK"}}),
    mailgun("complained", "max@dest.example", "mg-e5"),
    mailgun("unsubscribed", "ned@dest.example", "mg-e6"),
]  # fmt: skip

# --- Postmark (postmarkapp.com/developer/webhooks/*) ---
PM_EVENTS = [
    {"RecordType": "Bounce", "ID": 4242, "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce",
     "MessageID": "pm-m1", "Description": "The server was unable to deliver your message",
     "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
     "Email": "oli@dest.example", "From": "app@sender.example",
     "BouncedAt": "2026-03-02T10:00:00.1234567-05:00", "Inactive": True, "Subject": "Welcome"},
    {"RecordType": "Bounce", "ID": 4243, "Type": "Transient", "TypeCode": 2,
     "MessageID": "pm-m2", "Details": "421 4.4.2 connection timed out",
     "Email": "pia@dest.example", "BouncedAt": "2026-03-02T10:05:00Z"},
    {"RecordType": "Delivery", "ServerID": 23, "MessageID": "pm-m3", "Recipient": "pia@dest.example",
     "Tag": "welcome", "DeliveredAt": "2026-03-02T11:00:00Z", "Details": "Test delivery webhook details"},
    {"RecordType": "SpamComplaint", "ID": 4244, "Type": "SpamComplaint", "TypeCode": 512,
     "MessageID": "pm-m4", "Email": "quinn@dest.example", "BouncedAt": "2026-03-03T09:00:00Z"},
    {"RecordType": "SubscriptionChange", "MessageID": "pm-m5", "ServerID": 23,
     "ChangedAt": "2026-03-04T09:00:00Z", "Recipient": "ray@dest.example", "Origin": "Recipient",
     "SuppressSending": True, "SuppressionReason": "ManualSuppression"},
    {"RecordType": "SubscriptionChange", "MessageID": "pm-m1", "ServerID": 23,
     "ChangedAt": "2026-03-02T10:00:01Z", "Recipient": "oli@dest.example", "Origin": "Recipient",
     "SuppressSending": True, "SuppressionReason": "HardBounce"},
]  # fmt: skip


# --- SparkPost (developers.sparkpost.com/api/webhooks/) ---
def sparkpost(kind: str, rcpt: str, ident: str, **extra: Any) -> dict[str, Any]:
    return {"msys": {"message_event": {
        "type": kind, "event_id": ident, "timestamp": "1772445600", "message_id": "sp-m1",
        "rcpt_to": rcpt, "raw_rcpt_to": rcpt, "msg_from": "bounces@sp.sender.example", **extra,
    }}}  # fmt: skip


SP_EVENTS = [
    sparkpost("bounce", "sal@dest.example", "sp-e1", bounce_class="10", error_code="550",
              raw_reason="550 5.1.1 <sal@dest.example>: Recipient address rejected: User unknown",
              reason="550 5.1.1 <...>: Recipient address rejected: User unknown"),
    sparkpost("out_of_band", "tom@dest.example", "sp-e2", bounce_class="22",
              raw_reason="552 5.2.2 mailbox over quota", error_code="552"),
    sparkpost("spam_complaint", "uma@dest.example", "sp-e3", fbtype="abuse", report_by="isp.example"),
    sparkpost("policy_rejection", "vic@dest.example", "sp-e4", bounce_class="25", error_code="554",
              raw_reason="554 5.7.1 recipient address suppressed due to customer policy"),
    sparkpost("delay", "wes@dest.example", "sp-e5", bounce_class="21", error_code="451",
              raw_reason="451 4.4.4 DNS lookup failed", num_retries="1"),
    sparkpost("delivery", "wes@dest.example", "sp-e6"),
    {"msys": {"track_event": {"type": "click", "event_id": "sp-e7", "rcpt_to": "wes@dest.example"}}},
]  # fmt: skip


# --- Mandrill (mailchimp.com/developer/transactional/docs/webhooks/) ---
def mandrill(kind: str, rcpt: str, mid: str, ts: int, **msg: Any) -> dict[str, Any]:
    return {"event": kind, "_id": mid, "ts": ts, "msg": {
        "ts": 1772440000, "_id": mid, "email": rcpt, "sender": "app@sender.example",
        "subject": "Receipt", "tags": [], "metadata": {}, **msg}}  # fmt: skip


MD_EVENTS = [
    mandrill("hard_bounce", "xia@dest.example", "md-1", 1772445600, state="bounced",
             bounce_description="bad_mailbox", bgtools_code=10,
             diag="smtp;550 5.1.1 The email account that you tried to reach does not exist."),
    mandrill("soft_bounce", "yan@dest.example", "md-2", 1772445601, state="soft-bounced",
             bounce_description="mailbox_full", diag="smtp;552 5.2.2 Over quota"),
    mandrill("deferral", "zed@dest.example", "md-3", 1772445602, state="deferred",
             smtp_events=[{"ts": 1772445602, "type": "deferred", "diag": "451 4.3.5 Temporarily unavailable, try again later.",
                           "source_ip": "192.0.2.1", "destination_ip": "198.51.100.7", "size": 0}]),
    mandrill("spam", "abe@dest.example", "md-4", 1772445603, state="sent"),
    mandrill("reject", "bea@dest.example", "md-5", 1772445604, state="rejected"),
    mandrill("send", "abe@dest.example", "md-4", 1772445500, state="sent"),
]  # fmt: skip

# --- Postal (docs.postalserver.io/developer/webhooks) ---
POSTAL_MESSAGE = {"id": 12345, "token": "tok123", "direction": "outgoing",
                  "message_id": "postal-1@sender.example", "to": "cal@dest.example",
                  "from": "sales@sender.example", "subject": "Welcome", "timestamp": 1772445600.5,
                  "spam_status": "NotSpam", "tag": "welcome"}  # fmt: skip
PO_EVENTS = [
    {"event": "MessageDeliveryFailed", "timestamp": 1772445601.0, "uuid": "po-u1",
     "payload": {"status": "HardFail", "details": "Permanent SMTP delivery error",
                 "output": "550 5.1.1 No such user", "time": 0.2, "sent_with_ssl": True,
                 "timestamp": 1772445601.0, "message": POSTAL_MESSAGE}},
    {"event": "MessageDelayed", "timestamp": 1772445602.0, "uuid": "po-u2",
     "payload": {"status": "SoftFail", "details": "Temporary SMTP delivery error",
                 "output": "421 4.7.0 Try again later", "timestamp": 1772445602.0,
                 "message": {**POSTAL_MESSAGE, "to": "dee@dest.example", "token": "tok124"}}},
    {"event": "MessageSent", "timestamp": 1772445603.0, "uuid": "po-u3",
     "payload": {"status": "Sent", "details": "Message sent by SMTP to mx.dest.example",
                 "output": "250 2.0.0 OK", "timestamp": 1772445603.0,
                 "message": {**POSTAL_MESSAGE, "to": "dee@dest.example", "token": "tok125"}}},
    {"event": "MessageBounced", "timestamp": 1772445604.0, "uuid": "po-u4",
     "payload": {"original_message": {**POSTAL_MESSAGE, "to": "eli@dest.example", "token": "tok126"},
                 "bounce": {**POSTAL_MESSAGE, "direction": "incoming", "token": "tok127",
                            "subject": "Mail delivery failed: returning message to sender"}}},
    # a bare payload, archived without its wrapper: read by its shape
    {"status": "HardFail", "details": "Permanent SMTP delivery error", "output": "550 5.1.1 gone",
     "timestamp": 1772445605.0, "message": {**POSTAL_MESSAGE, "to": "fin@dest.example", "token": "tok128"}},
]  # fmt: skip

ALL = {
    "amazonses": [SES_BOUNCE, SES_SUPPRESSED, SES_COMPLAINT, SES_DELIVERY, SES_DELAY, SES_REJECT, SES_OPEN],
    "sendgrid": SG_EVENTS, "mailgun": MG_EVENTS, "postmark": PM_EVENTS, "sparkpost": SP_EVENTS,
    "mandrill": MD_EVENTS, "postal": PO_EVENTS,
}  # fmt: skip


def one(event: dict[str, Any]) -> ProviderEvent:
    out = decode(event)
    assert isinstance(out, ProviderEvent), out
    return out


def test_every_provider_has_samples_and_detection_names_it() -> None:
    assert set(ALL) == set(BY_NAME) == {p.NAME for p in PROVIDERS}
    for name, events in ALL.items():
        for ev in events:
            p = detect(ev)
            assert p is not None and name == p.NAME, (name, ev)


def test_amazonses() -> None:
    b = one(SES_BOUNCE)
    assert (b.kind, b.event_id, b.original_message_id) == (
        EventKind.BOUNCE,
        "fb-ses-bounce-1",
        "<campaign-7@sender.example>",
    )
    r = b.recipients[0]
    assert (r.address, r.status, r.reply_code, r.provider_category) == (
        "ann@dest.example",
        "5.1.1",
        "550",
        "Permanent/General",
    )
    assert b.occurred_at == datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)
    assert one(SES_SUPPRESSED).kind is EventKind.SUPPRESSED
    c = one(SES_COMPLAINT)
    assert (c.kind, c.feedback_type, c.user_agent) == (
        EventKind.COMPLAINT,
        "abuse",
        "ExampleISP FBL",
    )
    d = one(SES_DELIVERY)
    assert (d.kind, d.recipients[0].status, d.recipients[0].reply_code) == (
        EventKind.DELIVERED,
        "2.6.0",
        "250",
    )
    dl = one(SES_DELAY)
    assert (dl.kind, dl.recipients[0].provider_category, dl.recipients[0].status) == (
        EventKind.DELAYED,
        "MailboxFull",
        "4.2.2",
    )
    rj = one(SES_REJECT)
    assert (
        rj.kind is EventKind.REJECTED
        and [x.address for x in rj.recipients] == SES_MAIL["destination"]
    )
    assert decode(SES_OPEN) == Ignored(provider="amazonses", rule="amazonses:Open")
    # the same delivery read twice has the same derived id; another delivery time, another id
    assert one(SES_DELIVERY).event_id == d.event_id
    later = {
        **SES_DELIVERY,
        "delivery": {**SES_DELIVERY["delivery"], "timestamp": "2026-03-02T10:00:02Z"},
    }
    assert one(later).event_id != d.event_id  # type: ignore[arg-type]


def test_sendgrid() -> None:
    out = [decode(e) for e in SG_EVENTS]
    kinds = [o.kind if isinstance(o, ProviderEvent) else None for o in out]
    assert kinds == [EventKind.BOUNCE, EventKind.BOUNCE, EventKind.DELAYED, EventKind.DELIVERED,
                     EventKind.SUPPRESSED, EventKind.COMPLAINT, EventKind.UNSUBSCRIBE, None]  # fmt: skip
    bounce, blocked = out[0], out[1]
    assert isinstance(bounce, ProviderEvent) and isinstance(blocked, ProviderEvent)
    assert bounce.recipients[0].provider_category == "bounce/Invalid Address"
    assert blocked.recipients[0].provider_category == "blocked/Reputation"
    assert (bounce.event_id, bounce.recipients[0].reply_code) == ("sg-e1", "550")
    dropped_invalid = {**SG, "email": "x@dest.example", "event": "dropped", "reason": "Invalid"}
    assert one(dropped_invalid).kind is EventKind.REJECTED  # no sg_event_id: a derived one
    assert one(dropped_invalid).event_id.startswith("sha256:")


def test_mailgun() -> None:
    out = [one(e) for e in MG_EVENTS]
    assert [o.kind for o in out] == [EventKind.BOUNCE, EventKind.DELAYED, EventKind.SUPPRESSED,
                                    EventKind.DELIVERED, EventKind.COMPLAINT, EventKind.UNSUBSCRIBE]  # fmt: skip
    r = out[0].recipients[0]
    assert (r.reply_code, r.status, r.remote_mta, r.provider_category) == (
        "550",
        None,
        "mx.dest.example",
        "permanent/bounce",
    )
    assert out[2].recipients[0].reply_code is None  # 605 is Mailgun's own code, not SMTP
    assert out[0].event_id == "mg-e1@1772445600.25"
    # the Events API record alone (no webhook wrapper) reads the same
    assert one(MG_EVENTS[0]["event-data"]).event_id == out[0].event_id


def test_postmark() -> None:
    out = [one(e) for e in PM_EVENTS]
    assert [o.kind for o in out] == [EventKind.BOUNCE, EventKind.DELAYED, EventKind.DELIVERED,
                                    EventKind.COMPLAINT, EventKind.UNSUBSCRIBE, EventKind.SUPPRESSED]  # fmt: skip
    hard = out[0]
    assert (hard.event_id, hard.recipients[0].provider_category, hard.recipients[0].status) == (
        "4242",
        "HardBounce",
        "5.1.1",
    )
    assert hard.occurred_at == datetime(2026, 3, 2, 15, 0, 0, 123456, tzinfo=UTC)
    auto = {**PM_EVENTS[0], "ID": 1, "Type": "AutoResponder", "TypeCode": 64}
    assert decode(auto) == Ignored(provider="postmark", rule="postmark:Bounce:AutoResponder")


def test_sparkpost() -> None:
    out = [decode(e) for e in SP_EVENTS]
    assert [o.kind if isinstance(o, ProviderEvent) else o.rule for o in out] == [
        EventKind.BOUNCE, EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.SUPPRESSED,
        EventKind.DELAYED, EventKind.DELIVERED, "sparkpost:click"]  # fmt: skip
    b = out[0]
    assert isinstance(b, ProviderEvent)
    assert (b.recipients[0].provider_category, b.recipients[0].status) == (
        "10 Invalid Recipient",
        "5.1.1",
    )
    c = out[2]
    assert isinstance(c, ProviderEvent) and c.feedback_type == "abuse"
    # the Events API record (the inner object) is SparkPost's too
    assert one(SP_EVENTS[0]["msys"]["message_event"]).event_id == "sp-e1"


def test_mandrill() -> None:
    out = [decode(e) for e in MD_EVENTS]
    assert [o.kind if isinstance(o, ProviderEvent) else o.rule for o in out] == [
        EventKind.BOUNCE, EventKind.BOUNCE, EventKind.DELAYED, EventKind.COMPLAINT,
        EventKind.SUPPRESSED, "mandrill:send"]  # fmt: skip
    d = out[2]
    assert isinstance(d, ProviderEvent)
    assert (d.recipients[0].reply_code, d.recipients[0].status, d.recipients[0].remote_mta) == (
        "451",
        "4.3.5",
        "198.51.100.7",
    )
    first = out[0]
    assert (
        isinstance(first, ProviderEvent) and first.recipients[0].provider_category == "bad_mailbox"
    )


def test_postal() -> None:
    out = [one(e) for e in PO_EVENTS]
    assert [o.kind for o in out] == [EventKind.BOUNCE, EventKind.DELAYED, EventKind.DELIVERED,
                                    EventKind.BOUNCE, EventKind.BOUNCE]  # fmt: skip
    assert (out[0].event_id, out[0].recipients[0].address, out[0].original_message_id) == (
        "po-u1",
        "cal@dest.example",
        "postal-1@sender.example",
    )
    assert out[3].recipients[0].address == "eli@dest.example"
    assert out[4].event_type == "MessageDeliveryFailed" and out[4].event_id.startswith("sha256:")


def test_forced_provider_refuses_another_shape() -> None:
    with pytest.raises(ParseError) as exc:
        decode(SG_EVENTS[0], "postmark")
    assert exc.value.code == "not-postmark"
    assert one(SG_EVENTS[0]).provider == "sendgrid"


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (
            {
                **SES_BOUNCE,
                "bounce": {**SES_BOUNCE["bounce"], "bouncedRecipients": "ann@dest.example"},
            },
            "bad-field",
        ),  # type: ignore[dict-item]
        (
            {**SES_BOUNCE, "bounce": {**SES_BOUNCE["bounce"], "bouncedRecipients": []}},
            "no-recipients",
        ),  # type: ignore[dict-item]
        ({**SG_EVENTS[0], "timestamp": "yesterday"}, "bad-timestamp"),
        ({**SG_EVENTS[0], "timestamp": 10**20}, "bad-timestamp"),
        ({**SG_EVENTS[0], "email": 42}, "bad-recipient"),
        ({**SG_EVENTS[0], "event": "teleported"}, "unknown-event"),
        ({**SG_EVENTS[0], "reason": {"nested": True}}, "bad-field"),
        ({"hello": "world"}, "unknown-provider"),
        ({**PM_EVENTS[4], "SuppressSending": "yes"}, "bad-field"),
    ],
)
def test_malformed_events_raise_parse_error(event: dict[str, Any], code: str) -> None:
    with pytest.raises(ParseError) as exc:
        decode(event)
    assert exc.value.code == code


# --- framing ---------------------------------------------------------------------------------


def test_framing_array_lines_object_gzip_and_envelopes() -> None:
    arr = json.dumps(SG_EVENTS).encode()
    lines = b"\n".join(json.dumps(e).encode() for e in SG_EVENTS) + b"\n"
    assert [f.event for f in split_events(arr)] == SG_EVENTS
    assert [f.event for f in split_events(lines)] == SG_EVENTS
    assert [f.event for f in split_events(gzip.compress(lines))] == SG_EVENTS
    two_members = gzip.compress(lines[:200]) + gzip.compress(lines[200:])
    assert [f.event for f in split_events(two_members)] == SG_EVENTS
    pretty = json.dumps(SES_BOUNCE, indent=2).encode()
    assert [f.event for f in split_events(pretty)] == [SES_BOUNCE]
    sns = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:eu-west-1:1:ses",
           "Message": json.dumps(SES_BOUNCE), "Timestamp": "2026-03-02T10:00:06.000Z"}  # fmt: skip
    assert [f.event for f in split_events(json.dumps(sns).encode())] == [SES_BOUNCE]
    form = {"mandrill_events": json.dumps(MD_EVENTS)}
    assert [f.event for f in split_events(json.dumps(form).encode())] == MD_EVENTS
    # a bad line is its own frame; its neighbours are read
    mixed = lines.replace(b"\n", b"\n{not json\n", 1)
    frames = list(split_events(mixed))
    assert [f.index for f in frames] == list(range(len(SG_EVENTS) + 1))
    assert [f.error.code for f in frames if f.error] == ["bad-json"] and frames[
        1
    ].raw == b"{not json"


def test_framing_refuses_hostile_input() -> None:
    def codes(data: bytes, **kw: Any) -> list[str]:
        return [f.error.code if f.error else "ok" for f in split_events(data, **kw)]

    assert codes(b"\x00\x01binary garbage") == ["bad-json"]
    assert codes(b"not json\nat all\n") == ["bad-json"]
    assert codes(b"   \n") == ["empty"]
    assert codes(b"[" * 200_000 + b"]" * 200_000) == ["too-deep"]
    assert codes(b'{"a": ' * 100_000 + b"1" + b"}" * 100_000) == ["too-deep"]
    assert codes(b'[1, "two", {"event": "x"}]') == ["not-an-object", "not-an-object", "ok"]
    bomb = gzip.compress(b"[" + b" " * (8 << 20) + b"]")
    assert len(bomb) < 64 << 10
    assert codes(bomb, max_bytes=1 << 20) == ["too-large"]
    with pytest.raises(ParseError, match="too-large"):
        gunzip(bomb, 1 << 20)
    assert codes(gzip.compress(b"[]")[:-12]) == ["truncated-gzip"]
    assert codes(b"\x1f\x8bnot really gzip") == ["bad-gzip"]
    assert codes(b"x" * 2000, max_bytes=1000) == ["too-large"]


# --- the store -------------------------------------------------------------------------------


def _write(tmp: Path) -> Path:
    d = tmp / "events"
    d.mkdir()
    (d / "ses.jsonl").write_text("\n".join(
        json.dumps({"Type": "Notification", "MessageId": f"sns-{i}", "Message": json.dumps(e)})
        for i, e in enumerate(ALL["amazonses"])) + "\n")  # fmt: skip
    (d / "sendgrid.json").write_text(json.dumps(SG_EVENTS))
    (d / "mailgun.json.gz").write_bytes(
        gzip.compress("\n".join(json.dumps(e) for e in MG_EVENTS).encode())
    )
    (d / "postmark.json").write_text(json.dumps(PM_EVENTS, indent=1))
    (d / "sparkpost.json").write_text(json.dumps(SP_EVENTS))
    (d / "mandrill.json").write_text(json.dumps({"mandrill_events": json.dumps(MD_EVENTS)}))
    (d / "postal.jsonl").write_text("\n".join(json.dumps(e) for e in PO_EVENTS))
    return d


NOW = datetime(2026, 3, 10, tzinfo=UTC)


def _ingest(store: Store, paths: list[Path], **kw: Any) -> E.EventsResult:
    return E.ingest(store, paths, now=lambda: NOW, **kw)


def test_ingest_lands_in_views_and_is_idempotent(tmp_path: Path) -> None:
    d = _write(tmp_path)
    store = Store.memory()
    r = _ingest(store, [d])
    total = sum(len(v) for v in ALL.values())
    ignored = 1 + 1 + 0 + 0 + 1 + 1 + 0  # SES Open, SG open, SparkPost click, Mandrill send
    assert (r.files, r.events, r.ignored, r.quarantined) == (7, total, ignored, 0), (
        r.quarantine_reasons
    )
    assert (
        r.stored == total - ignored
        and r.events == r.stored + r.duplicates + r.ignored + r.quarantined
    )
    assert set(r.by_provider) == set(BY_NAME)
    q = store.con.execute
    rows = q("SELECT source, recipient, reason, hard, provider_category, provider_event FROM bounces "
             "ORDER BY source, recipient").fetchall()  # fmt: skip
    by = {(s, rc): (why, hard, cat, ev) for s, rc, why, hard, cat, ev in rows}
    # one classifier: the provider's reply decides the reason, its own category kept beside it
    assert by[("amazonses", "ann@dest.example")] == (
        "userunknown",
        True,
        "Permanent/General",
        "Bounce",
    )
    assert by[("sendgrid", "dan@dest.example")][:3] == (
        "userunknown",
        True,
        "bounce/Invalid Address",
    )
    assert by[("sendgrid", "eve@dest.example")][0] == "blocked"
    assert by[("sparkpost", "tom@dest.example")][:3] == ("mailboxfull", False, "22 Mailbox Full")
    assert by[("mandrill", "xia@dest.example")][:2] == ("userunknown", True)
    assert by[("postal", "cal@dest.example")][:2] == ("userunknown", True)
    # provider suppressions, deferrals, deliveries, unsubscribes are not bounces
    bounced = {rc for _, rc in by}
    assert not bounced & {"bob@dest.example", "gus@dest.example", "lee@dest.example", "vic@dest.example",
                          "bea@dest.example", "fay@dest.example", "kim@dest.example", "ivy@dest.example"}  # fmt: skip
    complaints = {
        (s, rc, ft)
        for s, rc, ft in q("SELECT source, recipient, feedback_type FROM complaints").fetchall()
    }
    assert complaints == {("amazonses", "bob@dest.example", "abuse"), ("sendgrid", "hal@dest.example", "abuse"),
                          ("mailgun", "max@dest.example", "abuse"), ("postmark", "quinn@dest.example", "abuse"),
                          ("sparkpost", "uma@dest.example", "abuse"), ("mandrill", "abe@dest.example", "abuse")}  # fmt: skip
    deliveries = q(
        "SELECT provider, recipient, kind, reason FROM provider_deliveries ORDER BY ALL"
    ).fetchall()
    assert ("amazonses", "bob@dest.example", "delivered", "delivered") in deliveries
    assert ("mailgun", "kim@dest.example", "delayed", "mailboxfull") in deliveries
    assert ("postal", "dee@dest.example", "delivered", "delivered") in deliveries
    kinds = dict(q("SELECT kind, count(*) FROM provider_events GROUP BY kind").fetchall())
    # suppressed: SES OnAccountSuppressionList, SendGrid "Bounced Address", Mailgun
    # suppress-bounce, Postmark's HardBounce suppression, SparkPost class 25, Mandrill reject
    # rejected: the SES Reject, one row per recipient of its mail
    assert (kinds["suppressed"], kinds["unsubscribe"], kinds["rejected"]) == (6, 3, 2)
    before = q("SELECT count(*) FROM bounce_reports").fetchone()
    again = _ingest(store, [d])
    assert (again.stored, again.duplicates, again.ignored) == (0, r.stored, r.ignored)
    assert q("SELECT count(*) FROM bounce_reports").fetchone() == before
    # the same events in another framing are the same events
    (tmp_path / "again.json").write_text(json.dumps(SG_EVENTS))
    assert _ingest(store, [tmp_path / "again.json"]).duplicates == len(SG_EVENTS) - 1


def test_hostile_files_are_quarantined_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps(SG_EVENTS[:2]))
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (tmp_path / "mixed.jsonl").write_text("\n".join([
        json.dumps(SG_EVENTS[2]), "{broken", json.dumps({"unrelated": 1}), "17",
        json.dumps({**SES_BOUNCE, "bounce": "a string"}), json.dumps({**MG_EVENTS[0], "event-data": []}),
    ]))  # fmt: skip
    (tmp_path / "bomb.json.gz").write_bytes(gzip.compress(b" " * (4 << 20)))
    store = Store.memory()
    r = _ingest(store, [tmp_path], max_bytes=1 << 20)
    assert r.stored == 3
    assert r.quarantine_reasons == {"bad-json": 2, "too-deep": 1, "too-large": 1, "unknown-provider": 1,
                                    "not-an-object": 1, "bad-field": 2}  # fmt: skip
    rows = store.con.execute(
        'SELECT source, source_kind, "offset", reason, raw FROM quarantine ORDER BY source, "offset"'
    ).fetchall()
    assert len(rows) == r.quarantined == 8 and {k for _, k, *_ in rows} == {"event"}
    mixed = [(off, why, raw) for src, _, off, why, raw in rows if src.endswith("mixed.jsonl")]
    assert mixed[0] == (1, "bad-json", b"{broken")
    # reading the same files again quarantines nothing twice
    _ingest(store, [tmp_path], max_bytes=1 << 20)
    assert store.con.execute("SELECT count(*) FROM quarantine").fetchone() == (8,)


def test_suppression_policy_reads_events(tmp_path: Path) -> None:
    from mtalens.pipeline import suppressions as S
    from mtalens.pipeline.config import SuppressionsConfig

    def sg(ident: str, event: str, day: int, **kw: Any) -> dict[str, Any]:
        return {"email": "soft@dest.example", "event": event, "sg_event_id": ident,
                "sg_message_id": f"m-{ident}", "timestamp": int(datetime(2026, 3, day, 12, tzinfo=UTC).timestamp()), **kw}  # fmt: skip

    soft = [
        sg(f"s{i}", "bounce", 1 + i, type="bounce", status="4.2.2", reason="452 4.2.2 mailbox full")
        for i in range(3)
    ]
    hard = {**SG_EVENTS[0], "email": "hard@dest.example", "sg_event_id": "h1"}
    (tmp_path / "a.json").write_text(json.dumps([*soft, hard]))
    store = Store.memory()
    policy = SuppressionsConfig()
    _ingest(store, [tmp_path / "a.json"])
    S.prepare(store, now=NOW)
    got = {s.address: s for s in S.list_suppressions(store, policy, now=NOW, include_all=True)}
    assert got["hard@dest.example"].suppressed and got["hard@dest.example"].kind == "hard"
    assert got["soft@dest.example"].suppressed and got["soft@dest.example"].kind == "soft"
    # a later delivery event clears the soft failures, as a delivery in the log does; a
    # deferral is no evidence either way
    (tmp_path / "b.json").write_text(json.dumps([
        sg("d1", "delivered", 8, response="250 OK"),
        {**hard, "event": "deferred", "sg_event_id": "h2", "response": "451 try later"},
    ]))  # fmt: skip
    _ingest(store, [tmp_path / "b.json"])
    S.prepare(store, now=NOW)
    got = {s.address: s for s in S.list_suppressions(store, policy, now=NOW, include_all=True)}
    assert not got["soft@dest.example"].suppressed
    assert got["soft@dest.example"].not_suppressed_because == "cleared by a later delivery"
    assert got["hard@dest.example"].suppressed


# --- the command -----------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "e.duckdb")
    d = _write(tmp_path)
    assert run(["events", "ingest", "--db", db, str(d)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "duplicates 0" in out and "stored" in out
    assert run(["events", "ingest", "--db", db, "--format", "json", str(d)]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["stored"] == 0 and summary["duplicates"] > 0
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert run(["events", "ingest", "--db", db, str(bad)]) == ExitCode.USAGE
    assert (
        run(["events", "ingest", "--db", db, str(bad), str(d / "sendgrid.json")])
        == ExitCode.PARTIAL
    )
    err = capsys.readouterr().err
    assert "quarantined (bad-json)" in err and "Traceback" not in err
    assert (
        run(["events", "ingest", "--db", db, "--provider", "postmark", str(d / "sendgrid.json")])
        == ExitCode.USAGE
    )
    assert "not-postmark" in capsys.readouterr().err
    assert run(["events", "ingest", "--db", db, "--provider", "hotmail", str(d)]) == ExitCode.USAGE
