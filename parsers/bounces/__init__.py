"""Bounce and complaint decoding: one message (bytes) in, one ``BounceReport`` out.

``decode(raw)`` parses the MIME structure once (``mime.py``) and asks each decoder of ``DECODERS``
in order; the first that does not return ``None`` wins. Provider- and MTA-specific decoders come
first, the generic RFC 3464 decoder and the prose fallback last. A message nobody claims is a
``ReportKind.NOT_BOUNCE`` report with no recipients. Only ``ParseError`` escapes ``decode``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from parsers.bounces import arf, autoreply, exim, plaintext, qmail, rfc3464
from parsers.bounces.diagnostic import base_report
from parsers.bounces.mime import parse_mail
from parsers.bounces.records import (
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
    (exim.NAME, exim.decode),
    (qmail.NAME, qmail.decode),
    (autoreply.NAME, autoreply.decode),
    (rfc3464.NAME, rfc3464.decode),
    (plaintext.NAME, plaintext.decode),
)


def decode(raw: bytes) -> BounceReport:
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
    for _name, fn in DECODERS:
        try:
            report = fn(mail)
        except ParseError:
            raise
        except (ValueError, IndexError, LookupError, RecursionError) as exc:
            raise ParseError("decoder", f"{_name}: {type(exc).__name__}: {exc}") from exc
        if report is not None:
            return report
    defects = [d for p in mail.parts for d in p.defects]
    if defects and mail.root.content_type == "multipart/report":
        raise ParseError(defects[0], "a delivery report whose MIME structure cannot be read")
    return base_report(mail, kind=ReportKind.NOT_BOUNCE, agent="none")
