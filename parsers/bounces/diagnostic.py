"""Shared extraction of SMTP facts from free text: enhanced status codes (RFC 3463 section 2),
reply codes (RFC 5321 section 4.2), addresses, and the returned message's headers."""

from __future__ import annotations

import re
from typing import Final

from parsers.bounces.mime import Mail, Part, decode_words, parse_date, parse_header_block
from parsers.bounces.records import BounceReport, OriginalMessage

# RFC 3463 section 2: class "." subject "." detail; class is 2, 4 or 5.
STATUS_RE: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# RFC 5321 section 4.2: three digits, first 2-5, at the start of the text or after a separator.
REPLY_RE: Final = re.compile(r"(?:^|[\s:(\[\"'])([245][0-5]\d)(?=[\s\-]|$)")
ADDR_RE: Final = re.compile(r"<?([^\s<>\"'();:,\[\]@]+@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9])>?")
_SPACE_RE: Final = re.compile(r"\s+")
RETURNED_TYPES: Final = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global-headers",
)


def squeeze(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def find_status(text: str) -> str | None:
    """The most specific enhanced status code in the text (x.0.0 only if nothing better)."""
    generic: str | None = None
    for m in STATUS_RE.finditer(text):
        code = ".".join(m.groups())
        if m.group(2) == "0" and m.group(3) == "0":
            generic = generic or code
            continue
        return code
    return generic


def find_reply_code(text: str) -> str | None:
    m = REPLY_RE.search(text)
    return m.group(1) if m else None


def find_address(text: str) -> str | None:
    m = ADDR_RE.search(text)
    return clean_address(m.group(1)) if m else None


def clean_address(value: str) -> str:
    """Strip the RFC 3464 address type ("rfc822;"), brackets, quotes and trailing dots."""
    v = value.strip()
    if ";" in v:
        typ, _, rest = v.partition(";")
        if typ.strip().lower() in ("rfc822", "rfc/822", "x-unknown", "unknown", "x-local", "utf-8"):
            v = rest.strip()
    if "<" in v and ">" in v:
        inner = v[v.index("<") + 1 : v.rindex(">")]
        if "@" in inner or "@" not in v:
            v = inner
    v = v.strip().strip("<>'").rstrip(".:;,").strip()
    if v.count('"') == 1:
        v = v.replace('"', "")
    if "@" in v and (" " in v or v.startswith(("|", "/"))):
        # Exim names pipe/file deliveries with the address inside: "|/bin/x user@example.com"
        found = ADDR_RE.search(v)
        if found:
            return found.group(1).rstrip(".:;,")
    return v


def original_from_headers(headers: list[tuple[str, str]]) -> OriginalMessage | None:
    got = dict(reversed(headers))  # first occurrence wins
    if not any(k in got for k in ("message-id", "from", "to", "subject")):
        return None
    mid = got.get("message-id")
    return OriginalMessage(
        message_id=mid.strip() if mid else None,
        sender=decode_words(got["from"]) if "from" in got else None,
        to=decode_words(got["to"]) if "to" in got else None,
        subject=decode_words(got["subject"]) if "subject" in got else None,
        date=parse_date(got.get("date")),
    )


def original_from_part(part: Part) -> OriginalMessage | None:
    """message/rfc822 (headers of the child) or text/rfc822-headers (the body is headers)."""
    if part.content_type in ("message/rfc822", "message/global") and part.children:
        return original_from_headers(part.children[0].headers)
    return original_from_headers(parse_header_block(part.payload()))


_MID_RE: Final = re.compile(r"^message-id:[ \t]*(<[^>\n]+>)", re.IGNORECASE | re.MULTILINE)
_HDR_RE: Final = re.compile(r"^(from|to|subject|date):[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)


def original_from_text(text: str) -> OriginalMessage | None:
    """Returned headers quoted as plain text after a text bounce's marker line."""
    m = _MID_RE.search(text)
    start = m.start() if m else 0
    block = text[max(0, start - 4000) : start + 4000] if m else text[:8000]
    found: dict[str, str] = {}
    for hm in _HDR_RE.finditer(block):
        found.setdefault(hm.group(1).lower(), hm.group(2).strip())
    if not m and not found:
        return None
    return OriginalMessage(
        message_id=m.group(1) if m else None,
        sender=decode_words(found["from"]) if "from" in found else None,
        to=decode_words(found["to"]) if "to" in found else None,
        subject=decode_words(found["subject"]) if "subject" in found else None,
        date=parse_date(found.get("date")),
    )


def base_report(mail: Mail, **fields: object) -> BounceReport:
    root = mail.root
    mid = root.header("message-id")
    to = root.header("to")
    fields.setdefault("message_id", mid.strip() if mid else None)
    fields.setdefault("subject", mail.subject or None)
    fields.setdefault("sender", decode_words(root.header("from") or "") or None)
    fields.setdefault("to", (find_address(to) if to else None) or None)
    fields.setdefault("date", parse_date(root.header("date")))
    if "original" not in fields:
        returned = mail.find(*RETURNED_TYPES)
        fields["original"] = original_from_part(returned) if returned else None
    return BounceReport(**fields)  # type: ignore[arg-type]
