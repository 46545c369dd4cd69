"""Fallback for prose bounces from MTAs without a decoder of their own (Gmail's and Google Groups'
old text notices, DragonFly Mail Agent, Sendmail V5, Exchange 2003, Domino, IMail, Courier text,
...): the message must look like a bounce (sender MAILER-DAEMON/postmaster, a bounce subject, or
``X-Failed-Recipients``); recipients come from ``X-Failed-Recipients`` or from the addresses in
the explanation before the returned message; the status and reply code from the text around
each address. Provider modules run before this one.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import ADDR_RE, base_report, clean_address, find_address
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import Action, BounceRecipient, BounceReport, ReportKind
from mtalens.parsers.bounces.textbounce import (
    is_delay,
    recipient_from_block,
    returned_original,
    split_returned,
)

NAME: Final = "plaintext"

_DAEMON_RE: Final = re.compile(
    r"mailer-daemon|mail[ -]?delivery|postmaster|mail ?administrator|mailadmin|"
    r"system administrator|delivery[ -]?(status|subsystem)|nobody@|returned[ -]?mail",
    re.IGNORECASE,
)
_SUBJECT_RE: Final = re.compile(
    r"undeliver|undelivered|delivery (status|failure|failed|problem|notification)|"
    r"failure notice|returned mail|mail delivery|could not be delivered|non[- ]?delivery|"
    r"delivery has failed|unable to deliver|nondeliverable|returned to sender|"
    r"mail system error|rejected|bounce|message not delivered|warning: could not send|"
    r"failed delivery|delivery report|error sending|permanent error",
    re.IGNORECASE,
)
# Addresses that belong to the reporting system, not to a recipient.
# Header lines quoted in the explanation name senders and message ids, not failed recipients.
_HEADER_LINE_RE: Final = re.compile(
    r"^[ \t>]*(message-id|in-reply-to|references|received|return-path|from|cc|reply-to|sender|"
    r"date|subject|delivered-to|envelope-to|x-[\w-]+|list-[\w-]+|dkim-signature|id)[ \t]*[:=]",
    re.IGNORECASE | re.MULTILINE,
)
_CONTACT_RE: Final = re.compile(r"\b(?:contact|write to|e-?mail us at|reach us at)\b[^\n]*$", re.I)
_SYSTEM_LOCAL_RE: Final = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|noreply|no-reply)$", re.I
)


def looks_like_bounce(mail: Mail) -> bool:
    if mail.header("x-failed-recipients"):
        return True
    sender = mail.header("from") or ""
    return bool(_DAEMON_RE.search(sender)) or bool(_SUBJECT_RE.search(mail.subject))


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status", "message/feedback-report") is not None:
        return None
    if not looks_like_bounce(mail):
        return None
    text = mail.body_text()
    head, returned = split_returned(text)
    own = {
        a.lower()
        for a in (find_address(mail.header("from") or ""), find_address(mail.header("to") or ""))
        if a
    }
    failed = [clean_address(a) for a in (mail.header("x-failed-recipients") or "").split(",")]
    wanted = [a for a in failed if "@" in a]
    # "please contact <support@example.net>": a help desk, not a recipient (wherever else the
    # same address is repeated, e.g. in a translation of the notice)
    helpdesk = {
        clean_address(m.group(1)).lower()
        for m in ADDR_RE.finditer(head)
        if _CONTACT_RE.search(head, max(0, m.start() - 40), m.start())
    }
    positions: list[tuple[int, int, str]] = []
    for m in ADDR_RE.finditer(head):
        addr = clean_address(m.group(1))
        local = addr.split("@", 1)[0]
        if addr.lower() in own or _SYSTEM_LOCAL_RE.match(local):
            continue
        if wanted and addr.lower() not in {w.lower() for w in wanted}:
            continue
        line_start = head.rfind("\n", 0, m.start()) + 1
        if _HEADER_LINE_RE.match(head, line_start):
            continue
        if addr.lower() in helpdesk:
            continue
        positions.append((m.start(), m.end(), addr))
    delayed = is_delay(mail.subject + "\n" + head[:2000])
    action = Action.DELAYED if delayed else Action.FAILED
    recipients: dict[str, BounceRecipient] = {}
    for idx, (start, _end, addr) in enumerate(positions):
        if addr.lower() in recipients:
            continue
        nxt = next((p[0] for p in positions[idx + 1 :] if p[2].lower() != addr.lower()), len(head))
        # the text before the address explains it too, but not past the previous recipient
        prev = max((p[1] for p in positions[:idx] if p[2].lower() != addr.lower()), default=0)
        if prev:
            eol = head.find("\n", prev, start)
            prev = eol + 1 if eol >= 0 else prev
        block = head[max(prev, start - 300) : start] + head[start:nxt]
        recipients[addr.lower()] = recipient_from_block(addr, block[-2000:], action=action)
    for addr in wanted:
        if addr.lower() not in recipients:
            recipients[addr.lower()] = recipient_from_block(addr, head[:2000], action=action)
    if not recipients:
        return None
    return base_report(
        mail,
        kind=ReportKind.DELAYED if delayed else ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients.values()),
        original=returned_original(mail, returned),
    )
