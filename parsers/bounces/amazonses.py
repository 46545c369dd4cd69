"""Amazon SES bounce, complaint and delivery notifications delivered by mail (an SNS topic with
an e-mail subscription): the body is the SES notification JSON, either bare or wrapped in the SNS
envelope (``"Type": "Notification"`` with the notification as the ``Message`` string), followed
by SNS's "--" unsubscribe footer.
Fields: https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html (notificationType,
bounce.bounceType / bouncedRecipients[].emailAddress, action, status, diagnosticCode,
reportingMTA; complaint.complainedRecipients, complaintFeedbackType, userAgent, arrivalDate;
delivery.recipients, smtpResponse, reportingMTA; mail.commonHeaders).
SNS e-mail format: https://docs.aws.amazon.com/sns/latest/dg/sns-email-notifications.html.
Samples: tests/fixtures/bounces/amazonses-*.eml.
"""

from __future__ import annotations

import json
from typing import Any, Final

from mtalens.parsers.bounces.diagnostic import (
    base_report,
    clean_address,
    find_reply_code,
    find_status,
)
from mtalens.parsers.bounces.mime import Mail, parse_date
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    Action,
    BounceRecipient,
    BounceReport,
    Complaint,
    OriginalMessage,
    ReportKind,
)
from mtalens.parsers.bounces.rfc3464 import split_typed

NAME: Final = "amazonses"
MAX_JSON: Final = 1 << 20  # notifications are a few kB; a larger body is not one of them


def _notification(mail: Mail) -> dict[str, Any] | None:
    sender = (mail.header("from") or "").lower()
    if mail.header("x-amz-sns-message-id") is None and "@sns.amazonaws.com" not in sender:
        return None
    text = mail.body_text()
    start = text.find("{")
    end = text.rfind("}", 0, MAX_JSON)
    if start < 0 or end < start:
        return None
    blob = text[start : end + 1]
    try:
        data = json.loads(blob)
    except ValueError:
        try:  # the mail transport folded the one-line JSON: undo the line breaks
            data = json.loads(blob.replace("\n", ""))
        except ValueError:
            return None
    if isinstance(data, dict) and data.get("Type") == "Notification":
        try:
            data = json.loads(str(data.get("Message", "")))
        except ValueError:
            return None
    if not isinstance(data, dict) or ("notificationType" not in data and "eventType" not in data):
        return None
    return data


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _original(data: dict[str, Any]) -> OriginalMessage | None:
    m = data.get("mail")
    if not isinstance(m, dict):
        return None
    common = m.get("commonHeaders") if isinstance(m.get("commonHeaders"), dict) else {}
    assert isinstance(common, dict)

    def first(key: str) -> str | None:
        v = common.get(key)
        return _str(v[0]) if isinstance(v, list) and v else _str(v)

    return OriginalMessage(
        message_id=first("messageId"),
        sender=first("from") or _str(m.get("source")),
        to=first("to"),
        subject=first("subject"),
        date=parse_date(first("date")),
    )


def decode(mail: Mail) -> BounceReport | None:
    data = _notification(mail)
    if data is None:
        return None
    ntype = str(data.get("notificationType") or data.get("eventType") or "").lower()
    original = _original(data)
    if ntype == "bounce":
        b = data.get("bounce") or {}
        _, reporting = split_typed(_str(b.get("reportingMTA")))
        transient = str(b.get("bounceType", "")).lower() == "transient"
        recipients: list[BounceRecipient] = []
        for r in b.get("bouncedRecipients") or []:
            if len(recipients) > MAX_RECIPIENTS:
                break  # decode() refuses the report
            if not isinstance(r, dict) or not _str(r.get("emailAddress")):
                continue
            dtype, diag = split_typed(_str(r.get("diagnosticCode")))
            status = _str(r.get("status")) or (find_status(diag) if diag else None)
            action = Action.DELAYED if transient and not status else Action.FAILED
            recipients.append(
                BounceRecipient(
                    recipient=clean_address(str(r["emailAddress"])),
                    action=action,
                    status=status,
                    reply_code=find_reply_code(diag) if diag else None,
                    diagnostic_type=dtype,
                    diagnostic=diag or _str(b.get("bounceSubType")),
                    remote_mta=None,
                )
            )
        return base_report(
            mail,
            kind=ReportKind.BOUNCE if recipients else ReportKind.NOT_BOUNCE,
            agent=NAME,
            reporting_mta=reporting,
            arrival_date=parse_date(_str(b.get("timestamp"))),
            recipients=tuple(recipients),
            original=original,
        )
    if ntype == "complaint":
        c = data.get("complaint") or {}
        rcpts = tuple(
            clean_address(str(r["emailAddress"]))
            for r in c.get("complainedRecipients") or []
            if isinstance(r, dict) and _str(r.get("emailAddress"))
        )
        complaint = Complaint(
            feedback_type=(_str(c.get("complaintFeedbackType")) or "abuse").lower(),
            user_agent=_str(c.get("userAgent")),
            original_mail_from=original.sender if original else None,
            original_rcpt_to=rcpts,
            arrival_date=parse_date(_str(c.get("arrivalDate")) or _str(c.get("timestamp"))),
        )
        return base_report(
            mail,
            kind=ReportKind.COMPLAINT,
            agent=NAME,
            arrival_date=complaint.arrival_date,
            complaint=complaint,
            recipients=tuple(BounceRecipient(recipient=r) for r in rcpts),
            original=original,
        )
    if ntype == "delivery":
        d = data.get("delivery") or {}
        reply = _str(d.get("smtpResponse"))
        _, reporting = split_typed(_str(d.get("reportingMTA")))
        recipients = [
            BounceRecipient(
                recipient=clean_address(r),
                action=Action.DELIVERED,
                status=find_status(reply) if reply else None,
                reply_code=find_reply_code(reply) if reply else None,
                diagnostic=reply,
            )
            for r in d.get("recipients") or []
            if isinstance(r, str) and r
        ]
        return base_report(
            mail,
            kind=ReportKind.DELIVERED,
            agent=NAME,
            reporting_mta=reporting,
            recipients=tuple(recipients),
            original=original,
        )
    return None
