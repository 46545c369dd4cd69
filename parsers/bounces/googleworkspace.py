"""Google Workspace / Gmail "Message not delivered" notices whose message/delivery-status part is
empty (Gmail's "Send mail as" through an external SMTP server, as sent by
mailer-daemon@googlemail.com): the recipient is only in the returned message's To:, the reason
after "The response was:" (https://support.google.com/mail/answer/22370).
Samples: tests/fixtures/bounces/googleworkspace-empty-dsn.eml.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import (
    RETURNED_TYPES,
    base_report,
    find_address,
    original_from_part,
)
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import BounceReport, ReportKind
from mtalens.parsers.bounces.textbounce import recipient_from_block

NAME: Final = "googleworkspace"

_SIGNATURE_RE: Final = re.compile(r"\*\* (?:Message not delivered|Address not found) \*\*")
_RESPONSE_RE: Final = re.compile(r"The response (?:was|from the remote server was):\s*", re.I)


def decode(mail: Mail) -> BounceReport | None:
    dsn = mail.find("message/delivery-status")
    if dsn is None or dsn.payload().strip():
        return None  # a DSN with fields is read by rfc3464
    if "google" not in (mail.header("from") or "").lower():
        return None
    text = mail.body_text()
    sig = _SIGNATURE_RE.search(text[:5000])
    returned = mail.find(*RETURNED_TYPES)
    if sig is None or returned is None:
        return None
    original = original_from_part(returned)
    addr = find_address(original.to) if original and original.to else None
    if not addr:
        return None
    m = _RESPONSE_RE.search(text, sig.end())
    explanation = text[m.end() :] if m else text[sig.end() :]
    return base_report(
        mail,
        kind=ReportKind.BOUNCE,
        agent=NAME,
        recipients=(recipient_from_block(addr, explanation.strip()[:1000]),),
        original=original,
    )
