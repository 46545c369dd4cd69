"""Typed access to decoded JSON for the provider modules: every getter checks the type it
promises and raises ``ParseError`` otherwise, so a provider module cannot be crashed by a string
where an object was documented (or a list nested ten thousand deep: ``json`` refuses that
before we see it, see ``framing.py``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from mtalens.parsers.errors import ParseError

MAX_TEXT: Final = 4096  # longest diagnostic kept; SMTP replies are far shorter (RFC 5321 4.5.3.1.5)

# A reply as providers pass it on: "smtp; 550 5.1.1 <a@b>: user unknown", "550-5.1.1 ...",
# "451 4.3.5 Temporarily unavailable": an optional diagnostic type (RFC 3464 section 2.3.6),
# the RFC 5321 section 4.2 reply code and an RFC 3463 status code.
_REPLY: Final = re.compile(
    r"^\s*(?:[a-z][a-z0-9-]*\s*;\s*)?([245]\d\d)(?:[ -]+([245]\.\d{1,3}\.\d{1,3})\b)?", re.I
)
_STATUS: Final = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_EPOCH_MAX: Final = 253402300799  # 9999-12-31T23:59:59Z


def obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ParseError("bad-field", f"{where}: expected an object, got {type(value).__name__}")
    return value


def opt_obj(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return {} if value is None else obj(value, key)


def seq(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ParseError("bad-field", f"{where}: expected a list, got {type(value).__name__}")
    return value


def text(parent: Mapping[str, Any], key: str) -> str | None:
    """A string field (numbers are accepted and written out: ids, codes)."""
    value = parent.get(key)
    if type(value) is str:  # the common case first (this runs several times per event)
        return (value[:MAX_TEXT] if len(value) > MAX_TEXT else value) or None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ParseError("bad-field", f"{key}: expected a string, got {type(value).__name__}")
    out = value if isinstance(value, str) else str(value)
    return out[:MAX_TEXT]


def need(parent: Mapping[str, Any], key: str) -> str:
    value = text(parent, key)
    if value is None:
        raise ParseError("missing-field", key)
    return value


def address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParseError("bad-recipient", f"{where}: not an address: {str(value)[:80]!r}")
    return value.strip()[:320]


def when(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time (with an offset, or UTC) or Unix seconds (a number or a string of one)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ParseError("bad-timestamp", f"{where}: {value!r}")
    if isinstance(value, str):
        s = value.strip()
        try:
            number = float(s)
        except ValueError:
            try:
                t = datetime.fromisoformat(s)
            except ValueError:
                raise ParseError("bad-timestamp", f"{where}: {s[:64]!r}") from None
            return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
        value = number
    if isinstance(value, int | float):
        if not 0 <= value <= _EPOCH_MAX:  # also refuses nan and inf
            raise ParseError("bad-timestamp", f"{where}: {value!r} is out of range")
        return datetime.fromtimestamp(value, UTC)
    raise ParseError("bad-timestamp", f"{where}: expected a time, got {type(value).__name__}")


def reply_parts(diagnostic: str | None) -> tuple[str | None, str | None]:
    """(reply code, enhanced status) at the start of an SMTP reply, as far as they are there."""
    if not diagnostic:
        return None, None
    m = _REPLY.match(diagnostic)
    return (m.group(1), m.group(2)) if m else (None, None)


def status_code(value: str | None) -> str | None:
    """An RFC 3463 status code, or None for anything else ("", "5.0", "bounce")."""
    return value if value and _STATUS.match(value) else None


def reply_code(value: str | None) -> str | None:
    """A basic SMTP reply code 2xx-5xx, or None (Mailgun uses 6xx codes of its own)."""
    return value if value and len(value) == 3 and value[0] in "2345" and value.isdigit() else None


def derived_id(*parts: object) -> str:
    """An event id made of fields that identify the event, for providers whose events carry
    none: the same event read twice gets the same id."""
    return (
        "sha256:"
        + hashlib.sha256(
            json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
        ).hexdigest()
    )
