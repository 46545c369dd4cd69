"""Log envelopes: the timestamp, host and program in front of every MTA log line.

Formats read (each with a sample under ``sample_logs/postfix/``):

- RFC 3164 / BSD syslog, ``Nov 28 14:52:13 mx1 postfix/smtp[123]: ...`` (day space-padded,
  ``Nov  8``). No year and no zone: the caller supplies both (see :class:`SyslogClock`).
  Postfix's own ``maillog_file`` (Postfix >= 3.4, ``postlog``) writes the same shape with
  microseconds, ``Nov 28 14:52:13.123456 ...`` (postconf(5) ``maillog_file``).
- RFC 3339 / ISO 8601 timestamps, rsyslog's default on Debian 12
  (``2026-11-28T14:52:13.123456+00:00 mx1 postfix/smtp[123]: ...``) and ``journalctl -o
  short-iso`` / ``short-iso-precise`` (``2026-11-28T14:52:13+0000``). A timestamp without an
  offset is read in the caller's zone.
- RFC 5424 (``<22>1 2026-11-28T14:52:13.003Z mx1 postfix/smtp 123 - - msg``), with or without
  the ``<PRI>`` part (RFC 5424 section 6), ``-`` as nil values, structured data skipped.

Program names keep their instance prefix (``postfix-out/smtp``, ``postfix/submission/smtpd``):
:func:`split_program` returns (instance, service).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from mtalens.parsers.errors import ParseError

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    logged_at: datetime  # tz-aware, UTC
    host: str
    program: str  # as logged: "postfix/smtp", "postfix-out/smtp", "dovecot"
    pid: int | None
    text: str  # the message after "program[pid]: "


# An ambiguous local minute is taken as its second instance only when its first lies this far
# before the minute read last: lines a little out of order in the first pass stay in it.
AMBIGUOUS_SLACK: Final = timedelta(minutes=10)


@dataclass(slots=True)
class SyslogClock:
    """Supplies the year RFC 3164 lines leave out, and their zone.

    Starts at ``year``; a month that goes backwards by more than six months (December ->
    January) moves to the next year. A December line right after the turn (the clock in
    January) is a late line of the old year and leaves the clock where it is; any other jump
    forward is a gap in the log, in the same year (treating it as the old year moved every line
    after a gap of more than six months back one year). The state (year, last month) is small so
    a checkpoint can carry it across restarts.
    """

    year: int
    tz: tzinfo = UTC
    month: int = 0
    _cache: dict[str, datetime] = field(default_factory=dict, repr=False)
    # the local minute last resolved, its offset (seconds east of UTC) and its UTC start
    _zone_minute: tuple[int, int, int, int, int] | None = field(default=None, repr=False)
    _zone_offset: int = field(default=0, repr=False)
    _zone_utc: datetime | None = field(default=None, repr=False)
    ambiguous: bool = field(default=False, repr=False)  # the last minute resolved was

    def zone_offset(self, y: int, mo: int, d: int, hh: int, mi: int) -> int:
        """The zone's offset (seconds east of UTC) for a local minute, monotonic where the
        local time is ambiguous: in the hour repeated when daylight saving time ends, a minute
        whose first instance (fold=0, PEP 495) lies more than AMBIGUOUS_SLACK before the minute
        resolved last is its second instance (fold=1), so the log's time goes on instead of
        jumping back an hour. Both ingest paths ask this, the C scanner once per minute."""
        key = (y, mo, d, hh, mi)
        if key == self._zone_minute:
            return self._zone_offset
        local = datetime(y, mo, d, hh, mi, tzinfo=self.tz)
        first, second = local.utcoffset(), local.replace(fold=1).utcoffset()
        off = first or timedelta(0)
        self.ambiguous = first != second
        wall = datetime(y, mo, d, hh, mi, tzinfo=UTC)
        if (
            self.ambiguous
            and second is not None
            and self._zone_utc is not None
            and wall - off < self._zone_utc - AMBIGUOUS_SLACK
            and wall - second > wall - off
        ):
            off = second
        self._zone_minute, self._zone_offset = key, int(off.total_seconds())
        self._zone_utc = wall - off
        return self._zone_offset

    def resolve(self, month: int, day: int, hh: int, mm: int, ss: int, us: int) -> datetime:
        if self.month and month < self.month and self.month - month > 6:
            self.year += 1
            self._cache.clear()
        elif self.month == 1 and month == 12:
            # An out-of-order line from the old year right after the turn.
            return self._utc(self.year - 1, month, day, hh, mm, ss, us)
        self.month = month
        return self._utc(self.year, month, day, hh, mm, ss, us)

    def _utc(self, y: int, mo: int, d: int, hh: int, mm: int, ss: int, us: int) -> datetime:
        try:
            wall = datetime(y, mo, d, hh, mm, ss, us, tzinfo=UTC)
        except ValueError as exc:  # Feb 29 in a non-leap year, December 32 and the like
            raise ParseError("bad-timestamp", str(exc)) from exc
        if self.tz is UTC:
            self.ambiguous = False
            return wall
        return wall - timedelta(seconds=self.zone_offset(y, mo, d, hh, mm))


def _parse_3164(line: str, clock: SyslogClock) -> tuple[datetime, int]:
    """Timestamp of an RFC 3164 line and the index just after it."""
    month = _MONTHS.get(line[:3])
    if month is None or len(line) < 15 or line[3] != " ":
        raise ParseError("bad-timestamp", "no RFC 3164 month")
    day_s = line[4:6]
    if line[6] != " " or line[9] != ":" or line[12] != ":":
        raise ParseError("bad-timestamp", "malformed RFC 3164 time")
    end = 15
    us = 0
    if len(line) > 15 and line[15] == ".":
        j = 16
        while j < len(line) and line[j].isdigit():
            j += 1
        frac = line[16:j]
        if not frac:
            raise ParseError("bad-timestamp", "empty fraction")
        us = int((frac + "000000")[:6])
        end = j
    key = line[:end]
    cached = clock._cache.get(key)
    if cached is not None and clock.month == month:
        return cached, end
    try:
        day = int(day_s)
        hh, mm, ss = int(line[7:9]), int(line[10:12]), int(line[13:15])
    except ValueError as exc:
        raise ParseError("bad-timestamp", "non-numeric RFC 3164 time") from exc
    if not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 61):
        raise ParseError("bad-timestamp", "time out of range")
    ts = clock.resolve(month, day, hh, mm, ss if ss < 60 else 59, us)
    # not an out-of-order line from the previous year, nor a time the zone makes ambiguous (its
    # second instance is another instant: SyslogClock.zone_offset)
    if clock.month == month and not clock.ambiguous:
        if len(clock._cache) > 4096:
            clock._cache.clear()
        clock._cache[key] = ts
    return ts, end


def _parse_iso(stamp: str, tz: tzinfo) -> datetime:
    s = stamp
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(s)
    except ValueError as exc:
        raise ParseError("bad-timestamp", f"not ISO 8601: {stamp[:40]!r}") from exc
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=tz)
    return ts.astimezone(UTC)


def _split_tag(rest: str) -> tuple[str, str, int | None, str]:
    """``host prog[pid]: text`` -> (host, program, pid, text)."""
    sp = rest.find(" ")
    if sp <= 0:
        raise ParseError("truncated", "no host")
    host = rest[:sp]
    colon = rest.find(": ", sp + 1)
    if colon < 0:
        if rest.endswith(":"):
            colon = len(rest) - 1
        else:
            raise ParseError("truncated", "no program tag")
    tag = rest[sp + 1 : colon]
    text = rest[colon + 2 :]
    pid: int | None = None
    if tag.endswith("]"):
        lb = tag.rfind("[")
        if lb > 0:
            try:
                pid = int(tag[lb + 1 : -1])
            except ValueError as exc:
                raise ParseError("bad-tag", f"pid not numeric in {tag[:60]!r}") from exc
            tag = tag[:lb]
    if not tag or " " in tag:
        raise ParseError("bad-tag", f"unusable program tag {tag[:60]!r}")
    return host, tag, pid, text


def _parse_5424(line: str, tz: tzinfo) -> LogLine:
    body = line
    if body.startswith("<"):
        gt = body.find(">")
        if gt < 0 or not body[1:gt].isdigit():
            raise ParseError("bad-header", "malformed RFC 5424 PRI")
        body = body[gt + 1 :]
    parts = body.split(" ", 6)
    if len(parts) < 7 or not parts[0].isdigit():
        raise ParseError("truncated", "RFC 5424 header incomplete")
    _version, stamp, host, app, procid, _msgid, rest = parts
    if stamp == "-":
        raise ParseError("bad-timestamp", "RFC 5424 nil timestamp")
    ts = _parse_iso(stamp, tz)
    # structured data: "-" or one or more [id k="v" ...] elements, then the message
    if rest.startswith("-"):
        text = rest[2:] if rest.startswith("- ") else rest[1:]
    elif rest.startswith("["):
        i, depth, quoted, n = 0, 0, False, len(rest)
        while i < n:
            c = rest[i]
            if quoted:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quoted = False
            elif c == '"':
                quoted = True
            elif c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
                if depth == 0 and (i + 1 >= n or rest[i + 1] != "["):
                    break
            i += 1
        text = rest[i + 2 :]
    else:
        raise ParseError("bad-header", "RFC 5424 structured data malformed")
    if text.startswith("\ufeff"):  # RFC 5424 6.4: BOM before a UTF-8 MSG
        text = text[1:]
    pid = int(procid) if procid.isdigit() else None
    return LogLine(logged_at=ts, host="" if host == "-" else host, program=app, pid=pid, text=text)


def parse_envelope(line: str, clock: SyslogClock) -> LogLine:
    """One log line (no trailing newline) -> its envelope. Raises ParseError."""
    if not line:
        raise ParseError("empty", "empty line")
    c = line[0]
    if c.isdigit():
        if len(line) > 4 and line[4] == "-":
            sp = line.find(" ")
            if sp < 0:
                raise ParseError("truncated", "timestamp only")
            if line[sp + 1 : sp + 2].isdigit() and line[:sp].isdigit():
                return _parse_5424(line, clock.tz)
            ts = _parse_iso(line[:sp], clock.tz)
            host, program, pid, text = _split_tag(line[sp + 1 :])
            return LogLine(logged_at=ts, host=host, program=program, pid=pid, text=text)
        if line[0] in "123456789" and line[1:3] == " 2":  # "1 2026-..." RFC 5424 without PRI
            return _parse_5424(line, clock.tz)
        raise ParseError("bad-timestamp", "unrecognised leading digits")
    if c == "<":
        return _parse_5424(line, clock.tz)
    ts, end = _parse_3164(line, clock)
    if end >= len(line) or line[end] != " ":
        raise ParseError("truncated", "nothing after the timestamp")
    host, program, pid, text = _split_tag(line[end + 1 :])
    return LogLine(logged_at=ts, host=host, program=program, pid=pid, text=text)


def split_program(program: str) -> tuple[str, str]:
    """``postfix-out/smtp`` -> (``postfix-out``, ``smtp``);
    ``postfix/submission/smtpd`` -> (``postfix/submission``, ``smtpd``); ``dovecot`` -> ("", ``dovecot``)."""
    slash = program.rfind("/")
    if slash < 0:
        return "", program
    return program[:slash], program[slash + 1 :]


def count_programs(lines: Sequence[str], is_program: Callable[[str], bool]) -> int:
    """How many of ``lines`` are syslog lines whose program ``is_program`` claims (the log
    formats' sniffers, mtalens.parsers.formats)."""
    clock = SyslogClock(year=2000)
    hits = 0
    for line in lines:
        try:
            env = parse_envelope(line, clock)
        except ParseError:
            continue
        if is_program(env.program):
            hits += 1
    return hits


def month_of_3164(line: str) -> int | None:
    """The month of an RFC 3164 line, or None (for choosing the starting year of a file)."""
    return _MONTHS.get(line[:3])


__all__ = [
    "LogLine",
    "ParseError",
    "SyslogClock",
    "count_programs",
    "month_of_3164",
    "parse_envelope",
    "split_program",
]
