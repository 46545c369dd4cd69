"""RFC 5965 Abuse Reporting Format (ARF) feedback reports, as sent by mailbox providers' feedback
loops: ``multipart/report; report-type=feedback-report`` with a ``message/feedback-report`` part
(section 3.1 fields: Feedback-Type, User-Agent, Version required; Original-Mail-From,
Original-Rcpt-To, Source-IP, Reporting-MTA, Reported-Domain, Arrival-Date, Incidents optional).
Samples: tests/fixtures/bounces/arf-*.eml.
"""

from __future__ import annotations

from typing import Final

from mtalens.parsers.bounces.diagnostic import (
    RETURNED_TYPES,
    base_report,
    clean_address,
    original_from_part,
    squeeze,
)
from mtalens.parsers.bounces.mime import Mail, parse_date, parse_header_block
from mtalens.parsers.bounces.records import BounceRecipient, BounceReport, Complaint, ReportKind

NAME: Final = "arf"


def decode(mail: Mail) -> BounceReport | None:
    part = mail.find("message/feedback-report")
    if part is None:
        return None
    fields = parse_header_block(part.payload())

    def one(name: str) -> str | None:
        return next((squeeze(v) for n, v in fields if n == name), None)

    def many(name: str) -> tuple[str, ...]:
        return tuple(clean_address(v) for n, v in fields if n == name and v.strip())

    reporting = one("reporting-mta")
    if reporting and ";" in reporting:
        reporting = reporting.split(";", 1)[1].strip()
    incidents = one("incidents")
    original = None
    returned = mail.find(*RETURNED_TYPES)
    if returned is not None:
        original = original_from_part(returned)
    rcpts = many("original-rcpt-to") or many("removal-recipient")
    if not rcpts and original is not None and original.to:
        from mtalens.parsers.bounces.diagnostic import find_address

        addr = find_address(original.to)
        rcpts = (addr,) if addr else ()
    complaint = Complaint(
        feedback_type=(one("feedback-type") or "abuse").lower(),
        user_agent=one("user-agent"),
        version=one("version"),
        original_mail_from=clean_address(one("original-mail-from") or "") or None,
        original_rcpt_to=rcpts,
        source_ip=one("source-ip"),
        reporting_mta=reporting,
        reported_domain=tuple(v for n, v in fields if n == "reported-domain"),
        arrival_date=parse_date(one("arrival-date") or one("received-date")),
        incidents=int(incidents) if incidents and incidents.isdigit() else None,
    )
    return base_report(
        mail,
        kind=ReportKind.COMPLAINT,
        agent=NAME,
        reporting_mta=reporting,
        arrival_date=complaint.arrival_date,
        complaint=complaint,
        original=original,
        recipients=tuple(BounceRecipient(recipient=r) for r in rcpts),
    )
