"""Counts and delays over time, in buckets that follow the data's range (issue 14 items 3 and 5):
one minute for an hour of log, one day for a month. The HTML report and the notebooks draw
these; the counts are the report's own ``per_hour`` section with another bucket, the delays
``mtalens stats delays --by hour`` with another bucket (one definition of each).

Buckets only exist where there is data: an empty bucket is a gap on a real time axis, never a
bar squeezed next to one hours or months away. ``ticks`` places axis labels at round times, far
enough apart that they cannot overlap at the chart's width.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mtalens.pipeline.store import Store

# (seconds, label): the ladder of bucket sizes
BUCKETS: Final = (
    (60, "minute"), (300, "5 minutes"), (900, "15 minutes"), (3600, "hour"),
    (3 * 3600, "3 hours"), (6 * 3600, "6 hours"), (86400, "day"), (7 * 86400, "week"),
)  # fmt: skip
MAX_BUCKETS: Final = 60  # at most this many across the range: bars stay a few pixels wide
# tick steps (seconds): round times an axis label can sit on
TICK_STEPS: Final = (
    60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400, 364 * 86400,
)  # fmt: skip
# an axis label's width per character, as a share of the font size (system-ui digits and
# punctuation are about 0.55 em; rounded up)
CHAR_EM: Final = 0.62


def choose_bucket(first: datetime | None, last: datetime | None) -> int:
    """The smallest bucket (seconds) that covers [first, last] in at most MAX_BUCKETS."""
    if first is None or last is None:
        return 3600
    span = max((last - first).total_seconds(), 1.0)
    for seconds, _ in BUCKETS:
        if span / seconds <= MAX_BUCKETS:
            return seconds
    return BUCKETS[-1][0]


def bucket_name(seconds: int) -> str:
    return dict(BUCKETS).get(seconds, f"{seconds} s")


def floor_time(t: datetime, seconds: int) -> datetime:
    """``t`` rounded down to a multiple of ``seconds`` since the Unix epoch (UTC), as DuckDB's
    ``time_bucket`` does for buckets of up to a day; weeks start on Monday (its origin)."""
    ts = t.timestamp()
    if seconds % (7 * 86400) == 0:
        monday = 4 * 86400  # 1970-01-05, a Monday
        return datetime.fromtimestamp(monday + (ts - monday) // seconds * seconds, UTC)
    return datetime.fromtimestamp(ts // seconds * seconds, UTC)


@dataclass(frozen=True, slots=True)
class Axis:
    """A time axis: [start, end) over ``width`` units, one bucket ``bucket`` seconds wide."""

    start: datetime
    end: datetime
    bucket: int

    @classmethod
    def over(cls, first: datetime, last: datetime, bucket: int) -> Axis:
        start = floor_time(first, bucket)
        end = floor_time(last, bucket) + timedelta(seconds=bucket)
        return cls(start, end, bucket)

    @property
    def span(self) -> float:
        return (self.end - self.start).total_seconds()

    def x(self, t: datetime, width: float) -> float:
        return (t - self.start).total_seconds() / self.span * width


def _label(t: datetime, step: int, previous: datetime | None) -> str:
    if step >= 86400:
        return f"{t:%Y-%m-%d}" if previous is None or previous.year != t.year else f"{t:%m-%d}"
    if previous is None or previous.date() != t.date():
        return f"{t:%m-%d %H:%M}"
    return f"{t:%H:%M}"


def label_width(text: str, font_size: float) -> float:
    return len(text) * font_size * CHAR_EM


def ticks(
    axis: Axis, width: float, font_size: float, *, gap: float = 8.0
) -> list[tuple[float, str]]:
    """(x, label) at round times: the smallest step whose labels, as wide as ``label_width``
    says, keep ``gap`` units between them."""
    for step in TICK_STEPS:
        if step < axis.bucket:
            continue
        marks: list[tuple[float, str]] = []
        t = floor_time(axis.start, step)
        if t < axis.start:
            t += timedelta(seconds=step)
        previous: datetime | None = None
        while t <= axis.end:
            marks.append((axis.x(t, width), _label(t, step, previous)))
            previous = t
            t += timedelta(seconds=step)
        if len(marks) < 2 or _fits(marks, font_size, gap):
            return marks
    return [(0.0, _label(axis.start, TICK_STEPS[-1], None))]


def _fits(marks: Sequence[tuple[float, str]], font_size: float, gap: float) -> bool:
    """Labels centred on their x keep ``gap`` between them."""
    for (x1, a), (x2, b) in itertools.pairwise(marks):
        if x2 - x1 < (label_width(a, font_size) + label_width(b, font_size)) / 2 + gap:
            return False
    return True


# -- the data -------------------------------------------------------------------------------


def volume(store: Store, *, since: datetime, until: datetime, bucket: int) -> list[dict[str, Any]]:
    """Per bucket with data: delivered, deferred, bounced (attempts), received, rejected; the
    report's ``per_hour`` section with ``bucket`` seconds."""
    from mtalens.pipeline.reports import report

    [t] = report(store, since=since, until=until, sections=("per_hour",), bucket=bucket)
    return t.records()


def delays(store: Store, *, since: datetime, until: datetime, bucket: int) -> list[dict[str, Any]]:
    """Per bucket with successful deliveries: count and p50/p90/p99/max of the total delay
    (`stats delays --by hour` with ``bucket`` seconds)."""
    from mtalens.pipeline.reports import delay_stats

    t = delay_stats(store, by="hour", since=since, until=until, top=100_000, bucket=bucket)
    return t.records()


def data_range(
    store: Store, *, since: datetime, until: datetime
) -> tuple[datetime, datetime] | None:
    """First and last delivery, arrival or rejection in [since, until)."""
    row = store.con.execute(
        "SELECT min(t), max(t) FROM (SELECT logged_at AS t FROM deliveries WHERE logged_at >= $1 "
        "AND logged_at < $2 UNION ALL SELECT arrived_at FROM messages WHERE arrived_at >= $1 "
        "AND arrived_at < $2 UNION ALL SELECT logged_at FROM rejections WHERE logged_at >= $1 "
        "AND logged_at < $2)",
        [since, until],
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def nice_max(v: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least ``v``: a y axis's top."""
    if v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag * (1 + 1e-9):
            return float(step * mag)
    return float(10 * mag)
