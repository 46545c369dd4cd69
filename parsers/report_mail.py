"""Finding DMARC aggregate and TLS-RPT reports in mail, and telling a report's bytes apart.

A report arrives as a MIME part (RFC 7489 section 7.2.1.1: a gzipped XML attachment; RFC 8460
section 5.3: ``application/tlsrpt+gzip`` or ``application/tlsrpt+json``). Receivers also send
``application/zip`` (Google), ``application/x-gzip``, ``text/xml`` or ``application/xml``,
and ``application/octet-stream`` with a ``.zip``/``.gz``/``.xml`` name, and some put the report
in a forwarded message. A part is a candidate when its type is one of :data:`REPORT_TYPES` or
its file name (Content-Disposition ``filename``, else Content-Type ``name``) ends in one of
:data:`REPORT_SUFFIXES`; a message whose single body is XML or JSON is one too.

Which report a payload holds is read from its first bytes, not its name: ``<`` is XML (a DMARC
aggregate report), ``{`` is JSON (TLS-RPT). MIME is read with the bounded reader in
``mtalens.parsers.bounces.mime``. Pure: bytes in, parts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from mtalens.parsers.bounces.mime import (
    Part,
    content_type_of,
    decode_words,
    normalise_newlines,
    parse_part,
)
from mtalens.parsers.bounces.records import ParseError as MimeParseError
from mtalens.parsers.errors import ParseError

REPORT_TYPES: Final = frozenset(
    {
        "application/zip",
        "application/x-zip",
        "application/x-zip-compressed",
        "application/gzip",
        "application/x-gzip",
        "application/tlsrpt+gzip",  # RFC 8460 section 5.3
        "application/tlsrpt+json",  # RFC 8460 section 5.3
        "text/xml",
        "application/xml",
    }
)
REPORT_SUFFIXES: Final = (".zip", ".gz", ".gzip", ".xml", ".json")


class PayloadKind(StrEnum):
    DMARC = "dmarc"
    TLSRPT = "tlsrpt"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    name: str  # file name, or the content type when the part has none
    content_type: str
    data: bytes  # transfer decoding undone; still gzip/zip when it was


def sniff(head: bytes) -> PayloadKind | None:
    """What a decompressed payload is, from its first non-blank byte (after a UTF-8 BOM)."""
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if first == b"<":
        return PayloadKind.DMARC
    if first == b"{":
        return PayloadKind.TLSRPT
    return None


def _filename(part: Part) -> str | None:
    disp = part.header("content-disposition")
    if disp:
        _, params = content_type_of("x/" + disp)  # same parameter syntax (RFC 2183 section 2)
        name = params.get("filename") or params.get("filename*")
        if name:
            return decode_words(name)
    name = part.params.get("name")
    return decode_words(name) if name else None


def _is_candidate(part: Part) -> bool:
    if part.children or part.content_type.startswith(("multipart/", "message/")):
        return False
    if part.content_type in REPORT_TYPES:
        return True
    name = _filename(part)
    return bool(name and name.lower().endswith(REPORT_SUFFIXES))


def find_reports(raw: bytes) -> list[Attachment]:
    """Report candidates of one message, in MIME order (forwarded messages included). Raises
    ``ParseError('not-a-report', ...)`` when there is none."""
    try:
        root = parse_part(normalise_newlines(raw))
    except MimeParseError as exc:
        raise ParseError("bad-mime", str(exc)) from None
    found: list[Attachment] = []
    for part in root.walk(into_messages=True):
        if _is_candidate(part):
            found.append(
                Attachment(
                    name=_filename(part) or part.content_type,
                    content_type=part.content_type,
                    data=part.payload(),
                )
            )
    if not found and not root.children and root.content_type in ("text/plain", "text/xml"):
        body = root.payload()
        if sniff(body[:256]) is PayloadKind.DMARC:  # a report pasted as the body
            found.append(Attachment(name="body", content_type=root.content_type, data=body))
    if not found:
        subject = decode_words(root.header("subject") or "")[:80]
        raise ParseError("not-a-report", f"no report attachment (subject {subject!r})")
    return found
