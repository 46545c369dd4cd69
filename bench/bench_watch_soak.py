"""Soak run of `mtalens watch`: one steady rate for a long time, sampled over time.

    python bench/bench_watch_soak.py --rate 500 --minutes 30 --sample-every 10 --out /tmp/soak

Same set-up as bench/bench_watch.py (its helpers are reused): a writer appends generated
Postfix lines (bench/gen_postfix_logs.py, RFC 3164 style) at ``--rate`` lines/s, a real
`mtalens watch` process tails the file, a read-only reader polls the committed checkpoint offset
4 times a second to time append-to-queryable lag. Unlike bench_watch.py it keeps the daemon's
JSON log (``OUT/watch.err``), stops at once if the daemon dies, and writes one CSV row every
``--sample-every`` seconds (``OUT/samples.csv``): elapsed seconds, lines appended, RSS and peak
RSS (/proc/PID/statm, /proc/PID/status VmHWM), the daemon's CPU share of one core over the
interval (/proc/PID/stat utime+stime), lag p50/p99 of the chunks that became queryable in the
interval, and the store file's size. The summary gives RSS at fixed points and the RSS slope
(least squares over the second half of the run), to answer "is memory flat?".

Run it from a copy of the code (``git archive HEAD parsers pipeline bench | tar -x -C DIR``, then
``.venv/bin/python DIR/bench/bench_watch_soak.py ...``): the daemon checks the migration files
at every write window, so a migration added or edited in a shared working tree during the run
stops it ("migration ... changed after it was applied"); the daemon and the reader both import
the copy (this file puts its own tree first on ``sys.path`` and runs the daemon there).
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_watch import committed, cpu_seconds, rss  # noqa: E402 - after the path set-up


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (units of y per unit of x)."""
    if len(points) < 2:
        return float("nan")
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rate", type=int, default=500, help="lines per second [500]")
    ap.add_argument("--minutes", type=float, default=30.0, help="writing time [30]")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds per CSV row [10]")
    ap.add_argument("--out", type=Path, required=True, help="directory for log, store, CSV")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    n = int(args.rate * seconds) + 1000
    gen, log, db = out / f"gen-{n}.log", out / "mail.log", out / "soak.duckdb"
    if not gen.exists() or gen.stat().st_size == 0:
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines",
                        str(n), "--out", str(gen), "--style", "rfc3164"], check=True)  # fmt: skip
    lines = gen.read_bytes().split(b"\n")[:-1][:n]
    for stale in (log, db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    log.write_bytes(b"")
    err = (out / "watch.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()", "watch", "--db", str(db),
         "--log", str(log), "--timezone", "UTC", "--commit-interval", "1", "--poll-interval", "1"],
        stderr=err, cwd=ROOT, env={**os.environ, "MTALENS_LOCK_WAIT": "30",
                                    "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    time.sleep(2.0)  # start-up
    marks: list[tuple[int, float]] = []  # (end offset, appended at)
    lags: list[float] = []
    interval_lags: list[float] = []
    rows: list[dict[str, float]] = []
    t0 = time.monotonic()
    cpu_prev, t_prev = cpu_seconds(proc.pid), t0
    written, i, tick = 0, 0, 0.1
    next_sample, next_poll = t0 + args.sample_every, t0
    died = False
    with open(log, "ab") as fh, (out / "samples.csv").open("w", newline="") as cf:
        w = csv.writer(cf)
        w.writerow(["t_s", "lines", "rss_mb", "peak_rss_mb", "cpu_pct", "lag_p50_s",
                    "lag_p99_s", "store_mb"])  # fmt: skip
        while time.monotonic() - t0 < seconds and i < len(lines):
            if proc.poll() is not None:
                died = True
                break
            due = int((time.monotonic() - t0 + tick) * args.rate)
            chunk = lines[i:due]
            if chunk:
                buf = b"\n".join(chunk) + b"\n"
                fh.write(buf)
                fh.flush()
                written += len(buf)
                i += len(chunk)
                marks.append((written, time.monotonic()))
            now = time.monotonic()
            if now >= next_poll:
                next_poll += 0.25
                off = committed(db)
                while marks and off >= marks[0][0]:
                    lag = now - marks.pop(0)[1]
                    lags.append(lag)
                    interval_lags.append(lag)
            if now >= next_sample:
                next_sample += args.sample_every
                cpu_now = cpu_seconds(proc.pid)
                row = {
                    "t_s": round(now - t0, 1),
                    "lines": i,
                    "rss_mb": round(rss(proc.pid) / 2**20, 1),
                    "peak_rss_mb": round(peak_rss(proc.pid) / 2**20, 1),
                    "cpu_pct": round(100 * (cpu_now - cpu_prev) / (now - t_prev), 1),
                    "lag_p50_s": round(pct(interval_lags, 0.5), 2),
                    "lag_p99_s": round(pct(interval_lags, 0.99), 2),
                    "store_mb": round(db.stat().st_size / 2**20, 1) if db.exists() else 0.0,
                }
                rows.append(row)
                w.writerow(row.values())
                cf.flush()
                cpu_prev, t_prev, interval_lags = cpu_now, now, []
            time.sleep(max(0.0, tick - (time.monotonic() - now)))
    if died:
        print(f"watch died (exit {proc.returncode}); see {out / 'watch.err'}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 120
    while marks and time.monotonic() < deadline:
        off = committed(db)
        now = time.monotonic()
        while marks and off >= marks[0][0]:
            lags.append(now - marks.pop(0)[1])
        time.sleep(0.2)
    wall = time.monotonic() - t0
    cpu_total = cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err.close()
    half = [(r["t_s"] / 60, r["rss_mb"]) for r in rows if r["t_s"] >= seconds / 2]
    print(f"rate {args.rate}/s for {args.minutes:g} min: {i:,} lines, caught up after "
          f"{wall:.0f}s, unfinished chunks {len(marks)}, watch exit {code}")  # fmt: skip
    print(f"lag p50 {pct(lags, 0.5):.2f}s p99 {pct(lags, 0.99):.2f}s; "
          f"CPU {100 * cpu_total / wall:.1f}% of a core (incl. start-up)")  # fmt: skip
    marks_min = [1, 5, 10, 15, 20, 25, 30, 45, 60]
    at = {m: next((r for r in rows if r["t_s"] >= m * 60), None) for m in marks_min}
    print("RSS MB at minute: " + ", ".join(
        f"{m}: {r['rss_mb']:.0f}" for m, r in at.items() if r is not None))  # fmt: skip
    print(f"RSS slope over the second half: {slope(half):.2f} MB/min; peak "
          f"{max((r['peak_rss_mb'] for r in rows), default=0):.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
