"""What `mtalens watch` keeps in memory on the fast path, as the log grows.

    python bench/bench_watch_state.py LOG [--every 100000] [--batch 500] [--recent-size N]

Feeds LOG through a ``LogIngestor`` in-process the way the daemon does: an ``on_commit`` hook
(the daemon's own ``Watcher._on_commit``, so metrics are fed too), one write window per
``--batch`` lines (open the store, consume, close). Unlike ``bench/watch_state_probe.py`` (the
pure-Python path's ``Correlator``) it reports the fast path's ``FastCorrelator``: ``open``
(messages not yet removed), ``recent`` (closed (host, queue id) -> key), ``pending_links``, the
classifier memo, plus Arrow's allocator (``pyarrow.total_allocated_bytes``), the metrics
registry's series count and the process RSS, every ``--every`` lines. ``--tracemalloc`` also
prints the Python heap (``tracemalloc``: traced bytes) and the five source lines whose live
allocations grew most since the first report: growth in RSS but not there is native memory
(DuckDB, Arrow, the C allocator).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mtalens.pipeline.fastpath import FastIngest  # noqa: E402 - after the path set-up
from mtalens.pipeline.ingest import LogIngestor, read_head  # noqa: E402
from mtalens.pipeline.store import Store  # noqa: E402
from mtalens.pipeline.watch import Watcher  # noqa: E402
from mtalens.pipeline.watch_config import WatchConfig  # noqa: E402


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


_BASE: list[tracemalloc.Snapshot] = []


def heap_report() -> None:
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    if not _BASE:
        _BASE.append(snap)
    traced = tracemalloc.get_traced_memory()[0]
    print(f"          python heap {traced / 2**20:6.1f} MB; grew most since the first report:")
    for stat in snap.compare_to(_BASE[0], "lineno")[:5]:
        print(f"            {stat.size_diff / 2**20:+6.2f} MB {stat.count_diff:+8,} blocks  "
              f"{stat.traceback[0]}")  # fmt: skip


# seconds per stage since the last report: store open, consume (scan + correlate + hook, the
# reader thread), write (the writer thread's INSERTs/UPDATE/COMMIT), store close; and windows
# (wall clock), and "cpu": the process's CPU time (all threads, DuckDB's too) per window
_SPENT: dict[str, float] = dict.fromkeys(
    ("open", "consume", "write", "close", "cpu", "windows"), 0.0
)


def report(n: int, w: Watcher, t0: float) -> None:
    ing = w.ingestor
    fp = ing._fast_path if ing is not None else None
    if not isinstance(fp, FastIngest):
        print(f"{n:>9,} lines: not on the fast path", flush=True)
        return
    c = fp.cor
    series = sum(len(f.values) + len(f.hists) for f in w.metrics._families.values())
    print(
        f"{n:>9,} lines {time.monotonic() - t0:6.1f}s  open {len(c.open):>6,}"
        f"  recent {len(c.recent):>6,}  pending_links {len(c.pending_links):>4,}"
        f"  memo {len(c._memo):>6,}  arrow {pa.total_allocated_bytes() / 2**20:5.1f} MB"
        f"  series {series:>4}  rss {rss_mb():6.1f} MB",
        flush=True,
    )
    nw = max(_SPENT["windows"], 1.0)
    print("          ms per window: " + "  ".join(
        f"{k} {1000 * _SPENT[k] / nw:.1f}" for k in ("open", "consume", "write", "close", "cpu")
    ), flush=True)  # fmt: skip
    _SPENT.update(dict.fromkeys(_SPENT, 0.0))
    if tracemalloc.is_tracing():
        heap_report()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500, help="lines per write window [500]")
    ap.add_argument("--recent-size", type=int, default=None)
    ap.add_argument("--tracemalloc", action="store_true", help="trace the Python heap too")
    args = ap.parse_args()
    if args.tracemalloc:
        tracemalloc.start()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "probe.duckdb"
        src = Path(d) / "mail.log"
        src.write_bytes(b"")
        w = Watcher(WatchConfig(db=str(db), logs=(str(src),), timezone="UTC", year=2026))
        t0, done = time.monotonic(), 0
        with open(args.log, "rb") as gen, open(src, "ab") as out, open(src, "rb") as fh:
            cp = clock = None
            fp: FastIngest | None = None
            while True:
                chunk = [x for x in (gen.readline() for _ in range(args.batch)) if x]
                if not chunk:
                    break
                out.write(b"".join(chunk))
                out.flush()
                c1, t1 = time.process_time(), time.perf_counter()
                write0 = fp.timings["write"] if fp is not None else 0.0
                with Store.open(db) as store:  # a write window, as Watcher.window() does
                    t2 = time.perf_counter()
                    _SPENT["open"] += t2 - t1
                    if w.ingestor is None:  # as Watcher._window builds it
                        w.ingestor = LogIngestor(store, tz=UTC, year=2026)
                        w.ingestor.on_commit = w._on_commit
                    ing = w.ingestor
                    ing.store = store
                    if cp is None:
                        cp, clock = ing.open_source(src, read_head(src), src.stat())
                    assert clock is not None
                    fh.seek(cp.offset)
                    ing.consume(fh, cp, clock, final=False)
                    t3 = time.perf_counter()
                    _SPENT["consume"] += t3 - t2
                    if isinstance(ing._fast_path, FastIngest):
                        fp = ing._fast_path
                        _SPENT["write"] += fp.timings["write"] - write0
                        if args.recent_size is not None:
                            fp.cor.recent_size = args.recent_size
                _SPENT["close"] += time.perf_counter() - t3
                _SPENT["cpu"] += time.process_time() - c1
                _SPENT["windows"] += 1
                before, done = done, done + len(chunk)
                if done // args.every != before // args.every:
                    report(done, w, t0)
        report(done, w, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
