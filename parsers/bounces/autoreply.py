"""RFC 3834 automatic responses (vacation / out-of-office): never a delivery failure.

Recognised by ``Auto-Submitted: auto-replied`` (RFC 3834 section 5), the de-facto
``X-Autoreply`` / ``X-Autorespond`` headers, ``Precedence: auto_reply`` and vacation-style subjects,
unless the message is from a mailer-daemon (Exim also marks its bounces auto-replied).
Samples: tests/fixtures/bounces/autoreply-*.eml.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import base_report
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import BounceReport, ReportKind

NAME: Final = "autoreply"

_SUBJECT_RE: Final = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|abwesend|"
    r"absence|absent|on leave|away from)|(auto[ -]?reply|out of office|abwesenheit)",
    re.IGNORECASE,
)
_DAEMON_RE: Final = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)


def decode(mail: Mail) -> BounceReport | None:
    h = mail.header
    auto = (h("auto-submitted") or "").strip().lower()
    signals = (
        auto.startswith("auto-replied")
        or h("x-autoreply") is not None
        or h("x-autorespond") is not None
        or (h("precedence") or "").strip().lower() == "auto_reply"
        or bool(_SUBJECT_RE.search(mail.subject[:2000]))  # the phrase is at its start
    )
    if not signals:
        return None
    if _DAEMON_RE.search((h("from") or "")[:2000]) or (h("x-failed-recipients") is not None):
        return None
    if mail.find("message/delivery-status", "message/feedback-report") is not None:
        return None
    return base_report(mail, kind=ReportKind.AUTOREPLY, agent=NAME)
