"""A progress line for long commands on a terminal (`ingest`, `bounces ingest`): done and total,
the rate, and the time left at that rate, redrawn at most every ``interval`` seconds and fitted
to the terminal's width; a final line says what was done in how long.

    ingesting  [#########-----------]  45%  361 MB of 801 MB  98.2 MB/s  left 0:00:04

The rate is the average since the start: an ingest's speed is steady, and an average does not
jump about when one chunk is slow. Without a known total there is no bar and no time left.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import IO, Final

_UNITS: Final = ("B", "kB", "MB", "GB", "TB")


def human_bytes(n: float) -> str:
    """Decimal units, three significant digits: ``801 MB``, ``98.2 MB``, ``1.23 GB``."""
    for unit in _UNITS:
        if abs(n) < 1000 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def clock_text(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``update(n)`` as work is done (bytes, or items with ``unit``); use as a context manager
    (the final line is written on exit)."""

    def __init__(
        self,
        label: str,
        total: float | None,
        *,
        unit: str = "B",
        items: str | None = None,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
        width: int | None = None,
    ) -> None:
        """``unit="B"`` formats amounts as bytes, anything else as counts of ``unit``;
        ``items``: also count items (``count()``) and show them, e.g. ``"messages"``."""
        self.label = label
        self.total = total if total else None
        self.unit = unit
        self.items = items
        self.stream = stream or sys.stderr
        self.clock = clock
        self.interval = interval
        self.width = width
        self.done = 0.0
        self.n_items = 0
        self.started = clock()
        self._drawn_at: float | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def update(self, n: float) -> None:
        self.done += n
        now = self.clock()
        if self._drawn_at is None or now - self._drawn_at >= self.interval:
            self._drawn_at = now
            self._draw(self.line(now))

    def count(self, n: int = 1) -> None:
        self.n_items += n

    def _amount(self, v: float) -> str:
        return human_bytes(v) if self.unit == "B" else f"{v:,.0f} {self.unit}"

    def _rate(self, elapsed: float) -> str:
        if elapsed <= 0:
            return ""
        per_s = self.done / elapsed
        return f"{human_bytes(per_s)}/s" if self.unit == "B" else f"{per_s:,.0f} {self.unit}/s"

    def line(self, now: float) -> str:
        """The progress line as of ``now`` (without the carriage return)."""
        elapsed = now - self.started
        parts = [self.label]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            parts.append(f"{frac:4.0%}")
            parts.append(f"{self._amount(self.done)} of {self._amount(self.total)}")
        else:
            parts.append(self._amount(self.done))
        if self.items:
            parts.append(f"{self.n_items:,} {self.items}")
        rate = self._rate(elapsed)
        if rate:
            parts.append(rate)
        if self.total and self.done and elapsed > 0:
            left = (self.total - self.done) / (self.done / elapsed)
            parts.append(f"left {clock_text(max(left, 0.0))}")
        text = "  ".join(parts)
        width = self.width or shutil.get_terminal_size((80, 24)).columns
        if self.total:
            room = width - len(text) - 5
            if room >= 10:  # a bar only where it fits
                bar = min(room, 30)
                filled = int(bar * min(self.done / self.total, 1.0))
                head, _, rest = text.partition("  ")
                text = f"{head}  [{'#' * filled}{'-' * (bar - filled)}]  {rest}"
        return text[: max(width - 1, 10)]

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        now = self.clock()
        elapsed = now - self.started
        summary = f"{self.label}  {self._amount(self.done)}"
        if self.items:
            summary += f", {self.n_items:,} {self.items}"
        summary += f" in {clock_text(elapsed)}"
        rate = self._rate(elapsed)
        if rate:
            summary += f" ({rate})"
        self._draw(summary)
        self.stream.write("\n")
        self.stream.flush()
