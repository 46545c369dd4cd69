"""qmail-send bounces (qmail 1.03 ``qmail-send.c`` bounce text, "Hi. This is the qmail-send
program at ..."), and netqmail/notqmail descendants: each failed recipient is a paragraph starting
``<address>:``; the returned message follows "--- Below this line is a copy of the message."
(qmail-send(8) and the QSBMF description, http://cr.yp.to/proto/qsbmf.txt).
Samples: tests/fixtures/bounces/qmail-*.eml.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Final

from mtalens.parsers.bounces.diagnostic import base_report, clean_address
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    BounceRecipient,
    BounceReport,
    ReportKind,
)
from mtalens.parsers.bounces.textbounce import (
    recipient_from_block,
    returned_original,
    split_returned,
)

NAME: Final = "qmail"

# QSBMF: "Hi. This is the" ... "program at"; vendors rewrite the greeting but keep the layout.
_SIGNATURE_RE: Final = re.compile(
    r"this is the qmail-send program|qmail-send program at|"
    r"I'm afraid I wasn't able to deliver your message to the following addresses",
    re.IGNORECASE,
)
_PARA_RE: Final = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:[ \t]*\n?", re.MULTILINE)


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status") is not None:
        return None
    text = mail.body_text()
    if not _SIGNATURE_RE.search(text[:4000]):
        return None
    head, returned = split_returned(text)
    matches = list(islice(_PARA_RE.finditer(head), MAX_RECIPIENTS + 1))
    recipients: list[BounceRecipient] = []
    for idx, m in enumerate(matches):
        end = matches[idx + 1].start() if idx + 1 < len(matches) else len(head)
        block = head[m.end() : end].split("\n\n", 1)[0]
        recipients.append(recipient_from_block(clean_address(m.group(1)), block))
    if not recipients:
        return None
    return base_report(
        mail,
        kind=ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients),
        original=returned_original(mail, returned),
    )
