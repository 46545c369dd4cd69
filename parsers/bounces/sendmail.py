"""Sendmail's prose bounces without a usable RFC 3464 part, and MTAs that copy their layout.

Sendmail 8 ``savemail.c`` (errbody) writes "The original message was received at ...", then a
section "----- The following addresses had permanent fatal errors -----" (or "transient non-fatal
errors" for a warning) listing one address per line with "(reason: ...)" / "(expanded from: ...)"
lines under it, then "----- Transcript of session follows -----" with the SMTP dialogue, then
the returned message. Sendmail V5 (5.6x) has only the transcript, where each failed address is a
line "NNN <address>... text" (sendmail's usrerr format), and "----- Unsent message follows -----".
Active!hunter keeps the Sendmail layout with ">>> address <address>" lines; Mail2000 (X1) and
Biglobe write "---The following addresses had delivery errors/problems---" with
"address [reason]" lines and a "Non-delivered information" section.
Messages that carry a message/delivery-status part go to ``rfc3464`` instead.
Samples: tests/fixtures/bounces/sendmail-*.eml.
"""

from __future__ import annotations

import re
from typing import Final

from mtalens.parsers.bounces import rfc3464
from mtalens.parsers.bounces.diagnostic import ADDR_RE, base_report, clean_address, find_address
from mtalens.parsers.bounces.mime import Mail
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    Action,
    BounceRecipient,
    BounceReport,
    ReportKind,
)
from mtalens.parsers.bounces.textbounce import recipient_from_block, returned_original

NAME: Final = "sendmail"

_LIST_RE: Final = re.compile(
    r"^[ \t]*-{3,}[ \t]*The following addresses? had (?P<what>permanent fatal errors|"
    r"transient non-fatal errors|delivery problems|delivery errors|permanent delivery errors|"
    r"fatal errors)[ \t]*+-*+[ \t]*+$",  # possessive: blanks shared by two "[ \t]*" were quadratic
    re.IGNORECASE | re.MULTILINE,
)
_TRANSCRIPT_RE: Final = re.compile(
    r"^[ \t]*-{3,}[ \t]*(?:Transcript of session follows|Non-delivered information)[ \t]*-*",
    re.IGNORECASE | re.MULTILINE,
)
# Where the returned message starts (savemail.c: "Original message follows", "Unsent message
# follows", "Message header follows"; V5: "Unsent message follows").
_RETURNED_RE: Final = re.compile(
    r"^[ \t]*-{3,}[ \t]*(?:Original message|Unsent message|Message header|Returned message|"
    r"Original message header)s? follows?",
    re.IGNORECASE | re.MULTILINE,
)
TRANSCRIPT_WINDOW: Final = 20_000
CONTEXT_RECIPIENTS: Final = 50
_BRACKET_RE: Final = re.compile(r"\[([^\[\]]+)\]")  # no "[" inside: a run of "[" stays linear
_WARNING_RE: Final = re.compile(r"this is a warning message only", re.IGNORECASE)
_SECTION_RE: Final = re.compile(r"^[ \t]*-{3,}", re.MULTILINE)
# Sendmail usrerr(): "550 <user@example.org>... User unknown" (also "554 5.0.0 <...>... ...").
# The local part holds no "@": letting it end at any of many "@"s was quadratic.
_USRERR_RE: Final = re.compile(
    r"^[245]\d\d(?:[ \t]+[245]\.\d{1,3}\.\d{1,3})?[ \t]+<?([^\s<>@]+@[^\s<>]+?)>?\.\.\.[ \t]*(.*)$",
    re.MULTILINE,
)


def _cut(text: str) -> tuple[str, str]:
    m = _RETURNED_RE.search(text)
    return (text[: m.start()], text[m.start() :]) if m else (text, "")


def decode(mail: Mail) -> BounceReport | None:
    if mail.find("message/delivery-status", "message/global-delivery-status") is not None:
        return None
    if mail.root.content_type == "multipart/report" and rfc3464.dsn_part(mail) is not None:
        # the status fields are there but a broken boundary (" --b", RFC 2046 section 5.1.1
        # wants it at the start of the line) folded them into the text part: rfc3464 reads them
        return None
    text = mail.body_text()
    listed = _LIST_RE.search(text[:20_000])
    transcript_at = _TRANSCRIPT_RE.search(text[:20_000])
    if listed is None and transcript_at is None:
        return None
    head, returned = _cut(text)
    # "transient non-fatal errors" (Sendmail) and Zoho's "THIS IS A WARNING MESSAGE ONLY" above
    # its "fatal errors" list are delay warnings, not failures.
    delayed = bool(listed and listed.group("what").lower().startswith("transient")) or bool(
        _WARNING_RE.search(text, 0, listed.start() if listed else 0)
    )
    action = Action.DELAYED if delayed else Action.FAILED
    transcript = ""
    if transcript_at is not None and transcript_at.start() < len(head):
        t_end = _SECTION_RE.search(head, transcript_at.end())
        transcript = head[transcript_at.end() : t_end.start() if t_end else len(head)]
    recipients: dict[str, BounceRecipient] = {}
    if listed is not None:
        end = _SECTION_RE.search(head, listed.end())
        section = head[listed.end() : end.start() if end else len(head)]
        # each listed address looks in the transcript's first TRANSCRIPT_WINDOW characters, for
        # the first CONTEXT_RECIPIENTS addresses (more would each rescan it: quadratic)
        window = transcript[:TRANSCRIPT_WINDOW]
        low = window.lower()
        for addr, notes in _listed(section):
            if addr.lower() in recipients:
                continue
            if len(recipients) > MAX_RECIPIENTS:
                break
            block = ""
            if len(recipients) < CONTEXT_RECIPIENTS:
                block = _transcript_for(window, low, addr) or window
            recipients[addr.lower()] = recipient_from_block(
                addr, (notes + "\n" + block).strip(), action=action
            )
    if not recipients and transcript:
        for addr, block in _usrerr(transcript):
            if len(recipients) > MAX_RECIPIENTS:
                break
            if addr.lower() not in recipients:
                recipients[addr.lower()] = recipient_from_block(addr, block, action=action)
    original = returned_original(mail, returned)
    if not recipients and transcript and original is not None and original.to:
        # V5 transcripts that only name the host ("421 example.com (smtp)... Deferred"):
        # the returned message's To: is the recipient that could not be reached.
        to_addr = find_address(original.to)
        if to_addr:
            recipients[to_addr.lower()] = recipient_from_block(to_addr, transcript, action=action)
    if not recipients:
        return None
    return base_report(
        mail,
        kind=ReportKind.DELAYED if delayed else ReportKind.BOUNCE,
        agent=NAME,
        recipients=tuple(recipients.values()),
        original=original,
    )


def _listed(section: str) -> list[tuple[str, str]]:
    """(address, its notes) from the address list: "(reason: ...)" lines or "[reason]"."""
    out: list[tuple[str, list[str]]] = []
    for line in section.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("(") and out:
            note = stripped.strip("()")
            if not note.lower().startswith("expanded from"):
                out[-1][1].append(note.removeprefix("reason:").strip())
            continue
        m = ADDR_RE.search(stripped)
        if m is None:
            continue
        addr = clean_address(m.group(1))
        rest = stripped[m.end() :]
        bracket = _BRACKET_RE.search(rest)
        out.append((addr, [bracket.group(1)] if bracket else []))
    return [(a, "\n".join(notes)) for a, notes in out]


def _transcript_for(transcript: str, low: str, addr: str) -> str:
    """The transcript lines from the dialogue that concerns this address (``low``: the
    transcript lower-cased, once for all addresses)."""
    want = addr.lower()
    idx = low.find(want)
    if idx < 0:
        return ""
    start = low.rfind("while talking to", 0, idx)
    start = start if start >= 0 else transcript.rfind("\n", 0, idx) + 1
    end = transcript.find("\n", low.rfind(want))
    return transcript[start : end if end >= 0 else len(transcript)]


def _usrerr(transcript: str) -> list[tuple[str, str]]:
    """Sendmail V5: each "NNN <address>... text" line, with the dialogue lines before it."""
    out: list[tuple[str, str]] = []
    prev = 0
    for m in _USRERR_RE.finditer(transcript):
        addr = clean_address(m.group(1))
        line_start = transcript.rfind("\n", 0, m.start()) + 1
        block_lines = transcript[prev:line_start].split("\n")
        # keep only the dialogue about this address: from the last "While talking" or ">>>"
        keep: list[str] = []
        for ln in reversed(block_lines):
            if ln.strip():
                keep.append(ln)
            if ln.lower().startswith(("while talking", ">>>")):
                break
        keep.reverse()
        if keep and not any(k.lower().startswith(("while talking", ">>>")) for k in keep):
            keep = keep[-1:]
        out.append((addr, "\n".join([*keep, transcript[line_start : m.end()]]).strip()))
        prev = m.end() + 1
    return out
