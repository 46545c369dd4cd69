"""KDDI au one net (ezweb.ne.jp / dion.ne.jp) error notices: a text part with the lines
"Your mail sent on: <date>", "Could not be delivered to: <address>" and an explanation such as
"As their mailbox is full." (layout as sent by the au one net mail system, "メールエラー通知";
KDDI's notice pages: https://www.au.com/support/service/mobile/trouble/mail/email/bounce/).
Samples: tests/fixtures/bounces/kddi-mailboxfull.eml.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import base_report, clean_address
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import BounceReport, ReportKind
from mtalens.parsers.bounces.textbounce import recipient_from_block, returned_original

NAME: Final = "kddi"

_RCPT_RE: Final = re.compile(
    r"^[ \t]*Could not be delivered to:[ \t]*<?([^\s<>]+@[^\s<>]+)>?", re.M
)
_SENT_RE: Final = re.compile(r"^[ \t]*Your mail sent on:", re.MULTILINE)


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status") is not None:
        return None
    text = mail.body_text()
    if not _SENT_RE.search(text[:10_000]):
        return None
    found = list(_RCPT_RE.finditer(text[:20_000]))
    if not found:
        return None
    recipients = []
    for idx, m in enumerate(found):
        end = found[idx + 1].start() if idx + 1 < len(found) else len(text)
        block = text[m.end() : end].split("\n\n", 1)[0]
        recipients.append(recipient_from_block(clean_address(m.group(1)), block.strip()))
    return base_report(
        mail,
        kind=ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients),
        original=returned_original(mail, ""),
    )
