"""What the daemon keeps in memory as a log grows: the correlator's caches, sampled.

    python bench/watch_state_probe.py LOG [--every 50000] [--batch 500] [--recent-size N]

Feeds LOG through a ``LogIngestor`` in-process the way `mtalens watch` does (pure-Python path,
an ``on_commit`` hook set, one write window per ``--batch`` lines that opens the store, commits
and closes it) and prints, every ``--every``
lines: the sizes of ``Correlator.open`` (messages not yet removed), ``Correlator.recent``
(closed (host, queue id) -> key, capped at ``recent_size``), ``Correlator.pending_links``
(notifications whose new queue id was not seen yet), an estimate of their bytes
(``sys.getsizeof`` of the containers, keys and values; strings shared between entries are
counted once per entry, so it is an upper bound), and the process RSS. ``--recent-size``
overrides the ``Correlator.recent`` cap (200,000) to see what that cache costs in RSS. Used for
the soak note (bench/bench_watch_soak.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mtalens.pipeline.correlate import Correlator  # noqa: E402 - after the path set-up
from mtalens.pipeline.ingest import LogIngestor, read_head  # noqa: E402
from mtalens.pipeline.store import Store  # noqa: E402


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def deep(obj: Any) -> int:
    """getsizeof of a container, its keys and values (one level of tuples/dataclasses)."""
    total = sys.getsizeof(obj)
    items = obj.items() if isinstance(obj, dict) else ()
    for k, v in items:
        for x in (k, v):
            total += sys.getsizeof(x)
            if isinstance(x, tuple):
                total += sum(sys.getsizeof(y) for y in x)
            elif hasattr(x, "__slots__"):
                total += sum(sys.getsizeof(getattr(x, s, None)) for s in x.__slots__)
    return total


def report(n: int, c: Correlator, t0: float) -> None:
    print(
        f"{n:>9,} lines {time.monotonic() - t0:6.1f}s  open {len(c.open):>7,}"
        f" ({deep(c.open) / 2**20:6.1f} MB)  recent {len(c.recent):>7,}"
        f" ({deep(c.recent) / 2**20:6.1f} MB)  pending_links {len(c.pending_links):>6,}"
        f" ({deep(c.pending_links) / 2**20:5.1f} MB)  rss {rss_mb():6.0f} MB",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--every", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500, help="lines per write window [500]")
    ap.add_argument("--recent-size", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "probe.duckdb"
        store = Store.open(db)
        ing = LogIngestor(store, tz=UTC, year=2026)
        ing.on_commit = lambda *_: None  # as in watch: keeps the pure-Python loop
        if args.recent_size is not None:
            ing.correlator.recent_size = args.recent_size
        store.close()
        src = Path(d) / "mail.log"
        src.write_bytes(b"")
        t0, done = time.monotonic(), 0
        with open(args.log, "rb") as gen, open(src, "ab") as out, open(src, "rb") as fh:
            cp = clock = None
            while True:
                chunk = [gen.readline() for _ in range(args.batch)]
                chunk = [x for x in chunk if x]
                if not chunk:
                    break
                out.write(b"".join(chunk))
                out.flush()
                with Store.open(db) as store:  # a write window, as Watcher.window() does
                    ing.store = store
                    if cp is None:
                        cp, clock = ing.open_source(src, read_head(src), src.stat())
                    assert clock is not None
                    fh.seek(cp.offset)
                    ing.consume(fh, cp, clock, final=False)
                before, done = done, done + len(chunk)
                if done // args.every != before // args.every:
                    report(done, ing.correlator, t0)
        report(done, ing.correlator, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
