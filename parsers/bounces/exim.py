"""Exim's prose bounces ("Mail delivery failed: returning message to sender") and delay warnings
("Warning: message ... delayed"), Exim 4.x default ``exim4`` bounce templates (Exim spec,
chapter "Customizing bounce and warning messages"): each failed address on a line indented by two
spaces, its explanation indented by four. Exim DSNs in RFC 3464 form go to ``rfc3464``.
Samples: tests/fixtures/bounces/exim-*.eml.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from mtalens.parsers.bounces.diagnostic import base_report, clean_address
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    Action,
    BounceRecipient,
    BounceReport,
    ReportKind,
)
from mtalens.parsers.bounces.textbounce import (
    recipient_from_block,
    returned_original,
    split_returned,
)

NAME: Final = "exim"

_SIGNATURE_RE: Final = re.compile(
    r"This message was created automatically by mail delivery software|"
    r"could not be delivered to one or more of its\s+recipients|"
    r"has not yet been delivered to all of its recipients|"
    # Exim's "Mail failure - malformed recipient address" notice (moan_to_sender, ERRMESS_BADADDRESS)
    r"recipient addresses that were\s+incorrectly constructed",
    re.IGNORECASE,
)
# "  user@example.org", "  user@example.org <alias@example.org>" (an address and the one it was
# routed as: per RFC 5322 name-addr the one in angle brackets is the mailbox when it is the only
# address), and "  <user@example.org>: 550 text" (the reason on the same line, as MXLogic's Exim
# writes it).
_ADDR_LINE_RE: Final = re.compile(
    r"^ {2}<?(\S+@[^\s<>]+|[^\s@<>]+)>?(?: <([^>]+)>)?(?::[ \t]*(.*?))?\s*$"
)
_FLUSH_ADDR_RE: Final = re.compile(r"^[\"<]?([^\s<>@:\"]+@[^\s<>:\"]+?)[\">]?:[ \t]*$", re.M)
_FAILED_RE: Final = re.compile(
    r"following address(?:\(es\)|es)? (?:failed|has|have)[^\n]*\n", re.IGNORECASE
)


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status") is not None:
        return None
    text = mail.body_text()
    if not _SIGNATURE_RE.search(text[:3000]):
        return None
    head, returned = split_returned(text)
    delayed = "delayed" in mail.subject.lower() or "has not yet been delivered" in head
    m = _FAILED_RE.search(head)
    section = head[m.end() :] if m else head
    recipients: list[BounceRecipient] = []
    lines = section.split("\n")
    i = 0
    while i < len(lines) and len(recipients) <= MAX_RECIPIENTS:
        am = _ADDR_LINE_RE.match(lines[i])
        if am and "@" in am.group(1):
            routed, note = am.group(2), am.group(3)
            malformed = bool(routed and "@" in routed and note and "malformed" in note)
            addr = clean_address(routed if malformed and routed else am.group(1))
            j = i + 1
            block: list[str] = [am.group(3)] if am.group(3) else []
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                if (
                    not lines[j].strip()
                    and j + 1 < len(lines)
                    and not lines[j + 1].startswith("    ")
                ):
                    break
                block.append(lines[j])
                j += 1
            recipients.append(
                recipient_from_block(
                    addr,
                    "\n".join(block),
                    action=Action.DELAYED if delayed else Action.FAILED,
                )
            )
            i = j
            continue
        i += 1
    if not recipients:
        # 1&1 (kundenserver.de) writes the address flush left with a colon, its reason on the
        # next lines: "xxxx@example.fr:\nSMTP error from remote server ... 550 5.2.0 ..."
        for m in _FLUSH_ADDR_RE.finditer(section):
            if len(recipients) > MAX_RECIPIENTS:
                break
            # up to the next blank line, found from here (slicing off the rest of the section
            # for every address was quadratic)
            start = m.end()
            while start < len(section) and section[start] == "\n":
                start += 1
            stop = section.find("\n\n", start)
            reason = section[start : stop if stop >= 0 else len(section)]
            recipients.append(
                recipient_from_block(
                    clean_address(m.group(1)),
                    reason,
                    action=Action.DELAYED if delayed else Action.FAILED,
                )
            )
    if not recipients:
        failed = mail.header("x-failed-recipients")
        # one explanation for all of them: decoded once
        shared = recipient_from_block("", section[:1500])
        for addr in dict.fromkeys(a.strip() for a in (failed or "").split(",")):
            if addr:
                recipients.append(replace(shared, recipient=clean_address(addr)))
    if not recipients:
        return None
    return base_report(
        mail,
        kind=ReportKind.DELAYED if delayed else ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients),
        original=returned_original(mail, returned),
    )
