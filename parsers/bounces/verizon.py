"""Verizon Wireless MMSC non-delivery notices ("MMSC NDR Administrator", vzwpix.com): "Message
could not be delivered to mobile.", an "Error: ..." line, then "Original Message:" with the
original From/To/Subject/Date as plain lines; the "To:" there is the failed recipient.
Samples: tests/fixtures/bounces/verizon-mmsc.eml.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import base_report, clean_address, original_from_text
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import BounceReport, ReportKind
from mtalens.parsers.bounces.textbounce import recipient_from_block

NAME: Final = "verizon"

_SIGNATURE_RE: Final = re.compile(r"^Message could not be delivered to mobile\.", re.MULTILINE)
_ORIGINAL_RE: Final = re.compile(r"^Original Message:[ \t]*$", re.MULTILINE)
_TO_RE: Final = re.compile(r"^To:[ \t]*(.+)$", re.MULTILINE)


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status") is not None:
        return None
    text = mail.body_text()
    sig = _SIGNATURE_RE.search(text[:5000])
    orig = _ORIGINAL_RE.search(text[:20_000])
    if sig is None or orig is None:
        return None
    explanation = text[sig.start() : orig.start()].strip()
    recipients = []
    to = _TO_RE.search(text, orig.end(), orig.end() + 4000)
    if to is not None:
        for piece in to.group(1).split(","):
            addr = clean_address(piece)
            if "@" in addr:
                recipients.append(recipient_from_block(addr, explanation))
    if not recipients:
        return None
    return base_report(
        mail,
        kind=ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients),
        original=original_from_text(text[orig.end() :]),
    )
