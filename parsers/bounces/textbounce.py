"""Shared pieces for bounces written as prose (no RFC 3464 part): cutting off the returned
message, and turning an (address, explanation) pair into a ``BounceRecipient``."""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces.diagnostic import (
    find_command,
    find_reply_code,
    find_status,
    original_from_text,
    squeeze,
)
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import Action, BounceRecipient, OriginalMessage

# Lines that introduce the returned message in the common MTAs' prose bounces (OpenSMTPD's
# bounce notice, smtpd/bounce.c: "Below is a copy of the original message:").
# The leading run is possessive: no phrase starts with one of its characters, and letting
# "[ \t>|-]*", "-{2,}" and "[ \t]*" share a long run of spaces or dashes was quadratic.
RETURNED_MARKER_RE: Final = re.compile(
    r"^[ \t>|-]*+(?:(?:={2,}|\*{2,})[ \t]*+)?("
    r"this is a copy of the message|below this line is a copy of the message|"
    r"below is a copy of the original message|"
    r"this is a copy of your message|included is a copy of the message|"
    r"the header of the original message is following|"
    r"original message|message headers follow|returned message|"
    r"unsent message below|the original message was received|"
    r"headers of the original message|original message headers|"
    r"your message reads|message text follows|the text you sent follows"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
# A returned message quoted without any announcement: its header block (RFC 5322 section 2.2,
# fields at the start of a line, optionally "> "-quoted) starts where the notice ends. Only
# fields a notice's own summary of the message does not use count as evidence: Exchange's
# indented "To: / Cc: / Subject: / Sent:", IMail's "To: / CC: / Date: / Subject:" and other
# summaries above the failure statement have none of them.
_HEADER_FIELD_RE: Final = re.compile(
    r"^(?:>[ \t]?)?+(received|return-path|message-id|date|mime-version|content-type|"
    r"from|to|cc|subject|reply-to|sender|x-mailer|user-agent)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_EVIDENCE_FIELDS: Final = frozenset(
    {"received", "return-path", "message-id", "mime-version", "content-type"}
)
# continuation lines of a folded field (RFC 5322 section 2.2.3) between two fields
_FOLDED_RE: Final = re.compile(r"(?:[ \t][^\n]*\n)*")

BLOCK_CHARS: Final = 8000
# the prose before the returned message in which recipients are looked for
PROSE_WINDOW: Final = 64_000

_DELAY_RE: Final = re.compile(
    r"(has been delayed|not yet been delivered|delivery (is )?delayed|will (continue|keep) trying|"
    # Exim: "Warning: message <id> delayed <n> hours"; the id is short, and an unbounded ".*"
    # rescanned the rest of the line from every "warning: message"
    r"still trying|warning: message [^\n]{0,200}? delayed|delay(ed)? notification|"
    # the warnings' other wordings (Exchange: "Delivery attempts will continue to be made for
    # 4 day(s)"; qmail/others "delivery ... postponed"; "THIS IS A WARNING ONLY" / "you do not
    # need to resend", Postfix's delay_notice text); "will not be retried" matches none
    r"attempts will continue|will (?:continue|keep) (?:to )?(?:try|retry|attempt)|"
    r"will (?:be )?retr(?:y|ied)|postponed|warning only|do not need to resend|"
    r"not (?:yet )?been delivered yet|no action is required)",
    re.IGNORECASE,
)


def split_returned(text: str) -> tuple[str, str]:
    """(the notice, the returned message): cut at the first marker line or the first header
    block of a quoted message (``returned_header_block``), whichever comes first."""
    m = RETURNED_MARKER_RE.search(text)
    end = m.start() if m is not None else len(text)
    block = returned_header_block(text, min(end, PROSE_WINDOW))
    if block is not None:
        end = block
    if end >= len(text):
        return text, ""
    return text[:end], text[end:]


def returned_header_block(text: str, end: int) -> int | None:
    """Where the first run of two or more header fields at the start of consecutive lines
    (folded lines allowed between them), one of them an ``_EVIDENCE_FIELDS`` field, begins in
    ``text[:end]``; None if there is none. Each line is looked at once."""
    start = prev_eol = -1
    count = 0
    evidence = False
    for m in _HEADER_FIELD_RE.finditer(text, 0, end):
        pos = m.start()
        adjacent = prev_eol >= 0 and (
            pos == prev_eol + 1 or _FOLDED_RE.fullmatch(text, prev_eol + 1, pos) is not None
        )
        if not adjacent:
            start, count, evidence = pos, 0, False
        count += 1
        evidence = evidence or m.group(1).lower() in _EVIDENCE_FIELDS
        if count >= 2 and evidence:
            return start
        eol = text.find("\n", m.end(), end)
        if eol < 0:
            return None
        prev_eol = eol
    return None


def is_delay(text: str) -> bool:
    return bool(_DELAY_RE.search(text))


def recipient_from_block(
    addr: str, block: str, *, action: Action = Action.FAILED, status: str | None = None
) -> BounceRecipient:
    # what explains one recipient is at most BLOCK_CHARS long (the diagnostic keeps 2,000): a
    # longer block is cut, so no recipient costs more than a fixed amount of scanning
    block = block[:BLOCK_CHARS]
    diag = squeeze(block)[:2000] or None
    found = find_status(block) if block else None
    if found and (status is None or status.endswith(".0.0")):
        status = found
    reply = find_reply_code(block) if block else None
    if status is None and reply:
        # RFC 3463 section 3: a reply code alone still tells the class of the status.
        status = f"{reply[0]}.0.0"
    hint = "expired" if action is Action.FAILED and status and status.startswith("4.") else None
    return BounceRecipient(
        recipient=addr,
        action=action,
        status=status,
        reply_code=reply,
        diagnostic_type="smtp" if reply else None,
        diagnostic=diag,
        hint=hint,
        command=find_command(block[:4000]) if block else None,
    )


def returned_original(mail: Mail, returned_text: str) -> OriginalMessage | None:
    from mtalens.parsers.bounces.diagnostic import RETURNED_TYPES, original_from_part

    part = mail.find(*RETURNED_TYPES)
    if part is not None:
        got = original_from_part(part)
        if got is not None:
            return got
    return original_from_text(returned_text) if returned_text else None
