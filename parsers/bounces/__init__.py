"""Bounce and complaint decoding: one message (bytes) in, one ``BounceReport`` out.

``decode(raw)`` parses the MIME structure once (``mime.py``) and asks each decoder of ``DECODERS``
in order; the first that does not return ``None`` wins. Provider- and MTA-specific decoders come
first, the generic RFC 3464 decoder and the prose fallback last. A message nobody claims is a
``ReportKind.NOT_BOUNCE`` report with no recipients. Only ``ParseError`` escapes ``decode``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from mtalens.parsers.bounces import (
    amazonses,
    apachejames,
    arf,
    autoreply,
    exim,
    googleworkspace,
    kddi,
    plaintext,
    qmail,
    rfc3464,
    sendmail,
    verizon,
)
from mtalens.parsers.bounces.diagnostic import base_report
from mtalens.parsers.bounces.mime import Mail, parse_mail
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    Action,
    BounceRecipient,
    BounceReport,
    Complaint,
    OriginalMessage,
    ParseError,
    ReportKind,
)

__all__ = [
    "DECODERS",
    "MAX_RECIPIENTS",
    "Action",
    "BounceRecipient",
    "BounceReport",
    "Complaint",
    "OriginalMessage",
    "ParseError",
    "ReportKind",
    "decode",
]

Decoder = Callable[..., BounceReport | None]

# (name, decode function), tried in this order: specific before generic.
DECODERS: Final[tuple[tuple[str, Decoder], ...]] = (
    (arf.NAME, arf.decode),
    (amazonses.NAME, amazonses.decode),
    (exim.NAME, exim.decode),
    (qmail.NAME, qmail.decode),
    (sendmail.NAME, sendmail.decode),
    (kddi.NAME, kddi.decode),
    (apachejames.NAME, apachejames.decode),
    (verizon.NAME, verizon.decode),
    (googleworkspace.NAME, googleworkspace.decode),
    (autoreply.NAME, autoreply.decode),
    (rfc3464.NAME, rfc3464.decode),
    (plaintext.NAME, plaintext.decode),
)


def decode(raw: bytes, *, max_bytes: int | None = None) -> BounceReport:
    """Decode one message. ``max_bytes``: a larger message is refused unread
    (``ParseError("too_large")``); the caller picks the budget."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise ParseError("too_large", f"{len(raw)} bytes, more than the {max_bytes} allowed")
    if not raw.strip():
        raise ParseError("empty", "no bytes or only white space")
    try:
        mail = parse_mail(raw)
    except ParseError:
        raise
    except (ValueError, IndexError, LookupError, RecursionError) as exc:
        raise ParseError("mime", f"{type(exc).__name__}: {exc}") from exc
    if not mail.root.headers:
        raise ParseError("no_headers", "the message has no header fields")
    return _decode_mail(mail, 0)


_INLINE_FROM_RE: Final = re.compile(
    rb"^From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \d{4}[ \t]*\n", re.MULTILINE
)
_INLINE_REPORT_RE: Final = re.compile(rb"^content-type:[ \t]*multipart/report", re.I | re.M)
MAX_FORWARD_DEPTH: Final = 2  # a report forwarded inside a report inside a message, at most


def _forwarded_report(mail: Mail, depth: int) -> BounceReport | None:
    """A bounce forwarded as an attachment (message/rfc822 holding a multipart/report, as a
    gateway or a user forwarding it to postmaster does): decode the attached report."""
    if depth >= MAX_FORWARD_DEPTH:
        return None
    for part in mail.parts:
        if part.content_type == "text/plain" and not part.children:
            # pasted inline after an mbox From_ line (RFC 4155), as OCN's notices do
            body = part.payload()
            m = _INLINE_FROM_RE.search(body, 0, 100_000)
            if m is not None and _INLINE_REPORT_RE.search(body, m.end(), m.end() + 20_000):
                report = _decode_mail(parse_mail(body[m.end() :]), depth + 1)
                if report.recipients:
                    return report
        if part.content_type not in ("message/rfc822", "message/global") or not part.children:
            continue
        inner = part.children[0]
        if inner.content_type != "multipart/report":
            continue
        report = _decode_mail(Mail(inner, inner.walk()), depth + 1)
        if report.recipients or report.complaint is not None:
            return report
    return None


def _decode_mail(mail: Mail, depth: int) -> BounceReport:
    for _name, fn in DECODERS:
        if _name == plaintext.NAME:
            # an attached report is better evidence than the prose fallback's guesses
            nested = _forwarded_report(mail, depth)
            if nested is not None:
                return nested
        try:
            report = fn(mail)
        except ParseError:
            raise
        except (ValueError, IndexError, LookupError, RecursionError) as exc:
            raise ParseError("decoder", f"{_name}: {type(exc).__name__}: {exc}") from exc
        if report is not None:
            if len(report.recipients) > MAX_RECIPIENTS:
                raise ParseError(
                    "too_many_recipients", f"{_name}: more than {MAX_RECIPIENTS} recipients"
                )
            return report
    defects = [d for p in mail.parts for d in p.defects]
    if defects and mail.root.content_type == "multipart/report":
        raise ParseError(defects[0], "a delivery report whose MIME structure cannot be read")
    return base_report(mail, kind=ReportKind.NOT_BOUNCE, agent="none")
