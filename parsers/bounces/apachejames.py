"""Apache James bounces (the ``Bounce``/``DSNBounce`` mailets' plain-text notice, also sent by
carrier gateways running James such as Verizon's vtext.com): "Error: <summary>", "Error message
below:" followed by the SMTP reply, and a "Message details:" block whose "RCPT TO:" line names
the failed recipient (Apache James mailet docs, https://james.apache.org/server/dev-provided-mailets.html).
Samples: tests/fixtures/bounces/apachejames.eml.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import base_report, clean_address
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import BounceReport, ReportKind
from mtalens.parsers.bounces.textbounce import recipient_from_block, returned_original

NAME: Final = "apachejames"

_DETAILS_RE: Final = re.compile(r"^Message details:[ \t]*$", re.MULTILINE)
_RCPT_RE: Final = re.compile(r"^[ \t]*RCPT TO:[ \t]*<?([^\s<>]+@[^\s<>]+)>?", re.MULTILINE)
_ERROR_RE: Final = re.compile(r"^Error(?: message below)?:[ \t]*(.*)$", re.MULTILINE)


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status") is not None:
        return None
    text = mail.body_text()
    details = _DETAILS_RE.search(text[:20_000])
    if details is None or not _ERROR_RE.search(text, 0, details.start()):
        return None
    explanation = text[: details.start()].strip()
    recipients = [
        recipient_from_block(clean_address(m.group(1)), explanation)
        for m in _RCPT_RE.finditer(text, details.end(), details.end() + 5000)
    ]
    if not recipients:
        return None
    return base_report(
        mail,
        kind=ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients),
        original=returned_original(mail, text[details.end() :]),
    )
