"""Fallback for prose bounces from MTAs without a decoder of their own (Gmail's and Google Groups'
old text notices, DragonFly Mail Agent, Sendmail V5, Exchange 2003, Domino, IMail, Courier text,
...): the message must look like a bounce (sender MAILER-DAEMON/postmaster, a bounce subject, or
``X-Failed-Recipients``); recipients come from ``X-Failed-Recipients`` or from the addresses in
the explanation before the returned message; the status and reply code from the text around
each address. Provider modules run before this one.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from mtalens.parsers.bounces.diagnostic import (
    ADDR_RE,
    base_report,
    clean_address,
    find_address,
    find_reply_code,
    find_status,
)
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    Action,
    BounceRecipient,
    BounceReport,
    ReportKind,
)
from mtalens.parsers.bounces.textbounce import (
    PROSE_WINDOW,
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
# "To:" and "Cc:" too: Exchange's "Your message / To: ... / Cc: ... / Subject: / Sent:"
# summary lists everyone the message was sent to, the failed ones are listed below it.
# Lines quoted with "> " (RFC 3676 section 4.5 quote marks) are the returned message, not the
# notice, whatever they say; Sendmail's transcript lines start with ">>>" and stay.
_HEADER_LINE_RE: Final = re.compile(
    r"^(?:[ \t]*>(?!>)|[ \t>]*(message-id|in-reply-to|references|received|return-path|from|"
    r"to|cc|bcc|reply-to|sender|date|sent|subject|delivered-to|envelope-to|x-[\w-]+|"
    r"list-[\w-]+|dkim-signature|id)[ \t]*[:=])",
    re.IGNORECASE | re.MULTILINE,
)
# Words right before an address that make it the sender, not a recipient: "Your message from
# <a>", "Sender: a", "sent by a", "Return-Path: <a>", "originator a".
_SENDER_BEFORE_RE: Final = re.compile(
    r"(?:\bfrom|\bsender|\bsent by|\boriginator|\breturn-path|\benvelope-from)[ \t]*:?[ \t]*$",
    re.IGNORECASE,
)
# Words that introduce an example in explanatory prose ("for example someone@example.com",
# "e.g. name@domain"): the address after them is an illustration.
_EXAMPLE_CUES: Final = ("e.g.", "for example", "for instance", "such as", "example:", "look like")
_CONTACT_RE: Final = re.compile(r"\b(?:contact|write to|e-?mail us at|reach us at)\b[^\n]*$", re.I)
_SYSTEM_LOCAL_RE: Final = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|noreply|no-reply)$", re.I
)


MATCH_CHARS: Final = 2000


def _neighbours(keys: list[str]) -> tuple[list[int], list[int]]:
    """For each position, the index of the next and of the previous position whose key differs
    (len(keys) / -1 when there is none), in two linear passes."""
    n = len(keys)
    nxt = [n] * n
    prev = [-1] * n
    for i in range(n - 2, -1, -1):
        nxt[i] = i + 1 if keys[i + 1] != keys[i] else nxt[i + 1]
    for i in range(1, n):
        prev[i] = i - 1 if keys[i - 1] != keys[i] else prev[i - 1]
    return nxt, prev


def looks_like_bounce(mail: Mail) -> bool:
    if mail.header("x-failed-recipients"):
        return True
    sender = mail.header("from") or ""
    # the phrases come first in a real header; matching them all over a huge one is wasted work
    return bool(_DAEMON_RE.search(sender[:MATCH_CHARS])) or bool(
        _SUBJECT_RE.search(mail.subject[:MATCH_CHARS])
    )


# Challenge-response and allow-list services (TMDA's confirmation requests, "verify you are a
# person" gateways, approved-senders lists) answer a message automatically, in RFC 3834
# section 2's sense, and hold it: nothing failed, so nobody is a failed recipient. A notice
# that also carries a failure code ("550 5.7.1 sender not on allow list") is a rejection.
_CHALLENGE_RE: Final = re.compile(
    r"challenge[- /]response|"
    r"(?:verify|confirm|prove)(?: that)? you(?:'re| are) (?:a )?(?:real )?(?:person|human)|"
    r"(?:allow|white|safe|approved|allowed|trusted|guest)[- ]?(?:senders?'? )?list|"
    r"until you (?:confirm|verify|reply)|"
    r"(?:waiting for|pending) (?:your |the recipient's )?(?:approval|confirmation|verification)",
    re.IGNORECASE,
)
CHALLENGE_CHARS: Final = 4000


def _challenge(subject: str, head: str) -> bool:
    text = subject[:MATCH_CHARS] + "\n" + head[:CHALLENGE_CHARS]
    if _CHALLENGE_RE.search(text) is None:
        return False
    return find_status(text) is None and find_reply_code(text) is None


def _aside(head: str, line_start: int, start: int) -> bool:
    """Whether the words just before the address at ``start`` make it the sender or an example
    rather than a failed recipient (a bounded look back: at most 40 characters)."""
    if _SENDER_BEFORE_RE.search(head, max(line_start, start - 24), start) is not None:
        return True
    before = head[max(0, start - 40) : start].lower()
    for cue in _EXAMPLE_CUES:
        at = before.rfind(cue)
        if at >= 0 and "@" not in before[at:]:
            return True
    return False


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status", "message/feedback-report") is not None:
        return None
    if not looks_like_bounce(mail):
        return None
    text = mail.body_text()
    head, returned = split_returned(text)
    if not mail.header("x-failed-recipients") and _challenge(mail.subject, head):
        return base_report(mail, kind=ReportKind.AUTOREPLY, agent=NAME)
    failed = [clean_address(a) for a in (mail.header("x-failed-recipients") or "").split(",")]
    wanted = [a for a in failed if "@" in a]
    delayed = is_delay(mail.subject[:2000] + "\n" + head[:2000])
    found = prose_recipients(mail, head, wanted, Action.DELAYED if delayed else Action.FAILED)
    if not found:
        return None
    return base_report(
        mail,
        kind=ReportKind.DELAYED if delayed else ReportKind.BOUNCE,
        agent=NAME,
        recipients=found,
        original=returned_original(mail, returned),
    )


def prose_recipients(
    mail: Mail, head: str, wanted: list[str], action: Action
) -> tuple[BounceRecipient, ...]:
    """The recipients a notice's prose (``head``: the text before the returned message) names,
    each with the status and reply code of the text around it; only those of ``wanted`` when
    it is given (``X-Failed-Recipients``). The report's own From:/To: are not recipients."""
    own = {
        a.lower()
        for a in (find_address(mail.header("from") or ""), find_address(mail.header("to") or ""))
        if a
    }
    wanted_lower = {w.lower() for w in wanted}
    # addresses are looked for in the first PROSE_WINDOW characters (a notice is a few kB;
    # every address found costs a little, and a hostile text can be all addresses)
    head = head[:PROSE_WINDOW]
    found = [(m.start(), m.end(), clean_address(m.group(1))) for m in ADDR_RE.finditer(head)]
    # "please contact <support@example.net>": a help desk, not a recipient (wherever else the
    # same address is repeated, e.g. in a translation of the notice)
    helpdesk = {
        addr.lower()
        for start, _end, addr in found
        if _CONTACT_RE.search(head, max(0, start - 40), start)
    }
    positions: list[tuple[int, int, str]] = []
    # every address's line start and header-line test, found once per line (searching back
    # from each address to its line's start was quadratic on a long line of addresses)
    line_start, scanned, quoted_header = 0, 0, False
    asides: dict[str, bool] = {}
    # what depends on the address alone is decided once per distinct address (a hostile text
    # can repeat one address thousands of times)
    usable: dict[str, bool] = {}
    for start, end, addr in found:
        key = addr.lower()
        ok = usable.get(key)
        if ok is None:
            ok = usable[key] = not (
                key in own
                or _SYSTEM_LOCAL_RE.match(key.split("@", 1)[0])
                or (wanted and key not in wanted_lower)
                or key in helpdesk
            )
        if not ok:
            continue
        nl = head.rfind("\n", scanned, start)
        if nl >= 0 or scanned == 0:
            line_start = nl + 1
            quoted_header = _HEADER_LINE_RE.match(head, line_start) is not None
        scanned = start
        if quoted_header:
            continue
        if not wanted:
            # the words before its first occurrence outside quoted lines decide for all
            aside = asides.get(key)
            if aside is None:
                aside = asides[key] = _aside(head, line_start, start)
            if aside:
                continue
        positions.append((start, end, addr))
    recipients: dict[str, BounceRecipient] = {}
    nxt_other, prev_other = _neighbours([p[2].lower() for p in positions])
    for idx, (start, _end, addr) in enumerate(positions):
        if addr.lower() in recipients:
            continue
        if len(recipients) > MAX_RECIPIENTS:
            break  # decode() refuses the report: no need to read the rest
        j = nxt_other[idx]
        nxt = positions[j][0] if j < len(positions) else len(head)
        # the text before the address explains it too, but not past the previous recipient
        k = prev_other[idx]
        prev = positions[k][1] if k >= 0 else 0
        if prev:
            eol = head.find("\n", prev, start)
            prev = eol + 1 if eol >= 0 else prev
        # (each distinct address's range ends where another address starts: the ranges are
        # disjoint, so building them is linear)
        block = head[max(prev, start - 300) : start] + head[start:nxt]
        recipients[addr.lower()] = recipient_from_block(addr, block[-2000:], action=action)
    if wanted:
        # one explanation for every listed address not found in the text: decode it once
        shared = recipient_from_block("", head[:2000], action=action)
        for addr in wanted:
            if addr.lower() not in recipients:
                recipients[addr.lower()] = replace(shared, recipient=addr)
    return tuple(recipients.values())
