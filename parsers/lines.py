"""One raw log line (bytes, without its newline) -> what becomes of it.

The single place that decides, for every path that reads logs (bulk ingest, the C fast path's
fallback, the daemon, the golden files): a line is :class:`Parsed` (a record to store),
:class:`Skipped` (ignored by a named rule) or :class:`Malformed` (quarantined with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mtalens.parsers import postfix as pf
from mtalens.parsers.errors import ParseError
from mtalens.parsers.syslog import LogLine, SyslogClock, parse_envelope, split_program

# Longer lines are quarantined. Postfix itself keeps log records far shorter
# (line_length_limit = 2048 for SMTP lines, postconf(5)); 64 KiB leaves room for any syslog relay.
MAX_LINE: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Parsed:
    envelope: LogLine
    instance: str
    service: str
    record: pf.Record
    # further records of the same line, fed after ``record`` (an Exim arrival line is a client,
    # a queue entry and a message-id at once); Postfix lines have none
    extra: tuple[pf.Record, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    rule: str


@dataclass(frozen=True, slots=True)
class Malformed:
    code: str
    detail: str


def decode_line(raw: bytes) -> str | Skipped | Malformed:
    """The checks every log format shares: a line's text, or what becomes of it."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw:
        return Skipped("empty-line")
    if len(raw) > MAX_LINE:
        return Malformed("line-too-long", f"{len(raw)} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Malformed("invalid-utf8", str(exc))
    if "\x00" in text:
        return Malformed("nul-byte", "NUL byte in line")
    return text


def parse_line(raw: bytes, clock: SyslogClock) -> Parsed | Skipped | Malformed:
    """Decide one Postfix line (the ``postfix`` row of :mod:`mtalens.parsers.formats`). Only a
    parser bug raises (the caller quarantines it as ``bug:...``)."""
    text = decode_line(raw)
    if not isinstance(text, str):
        return text
    try:
        env = parse_envelope(text, clock)
        program = env.program
        if not pf.is_postfix_program(program):
            return Skipped("other-program")
        instance, service = split_program(program)
        rec = pf.parse_message(service, env.text)
    except ParseError as exc:
        return Malformed(exc.code, exc.detail)
    if isinstance(rec, pf.Ignored):
        return Skipped(rec.rule)
    return Parsed(env, instance, service, rec)
