"""``--since`` / ``--until`` values: ISO dates or datetimes (UTC unless an offset is given), or
a span back from now such as ``90m``, ``24h``, ``7d``, ``2w``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mtalens.pipeline.exitcodes import InputError

_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class TimeRangeError(InputError, ValueError):
    pass


def parse_when(value: str | None, *, now: datetime, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    v = value.strip()
    m = _SPAN.match(v)
    if m:
        return now - timedelta(**{_UNITS[m[2]]: int(m[1])})
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(v)
    except ValueError as exc:
        raise TimeRangeError(
            f"cannot read time {value!r}: use an ISO date/time (2026-11-28, "
            "2026-11-28T14:00) or a span back from now (24h, 7d)"
        ) from exc
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def time_range(since: str | None, until: str | None, *, now: datetime) -> tuple[datetime, datetime]:
    start = parse_when(since, now=now, default=EPOCH)
    end = parse_when(until, now=now, default=FAR_FUTURE)
    if end <= start:
        raise TimeRangeError(
            f"--until ({end.isoformat()}) is not after --since ({start.isoformat()})"
        )
    return start, end
