"""Benchmark `mtalens watch`: a writer appends realistic Postfix lines at a steady rate while
the daemon (a real `mtalens watch` process) tails them; a reader measures when they become
queryable.

    python bench/bench_watch.py --rates 500,2000,20000 --seconds 30 [--lines 400000]

Per rate it prints: the rate the daemon sustained (lines committed / second), the lag from
append to queryable (p50/p99, measured by a read-only reader polling the checkpoint offset every
0.25 s: each appended chunk's end offset is timestamped, and its lag is the time until the
committed offset passes it), the daemon's CPU share (of one core) and its RSS sampled every
second (first / last / max, from /proc/PID/stat and /proc/PID/statm).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mtalens.pipeline.store import Store  # noqa: E402 - after the path set-up

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (proc(5))


def rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def committed(db: Path) -> int:
    try:
        with Store.open(db, read_only=True) as s:
            row = s.con.execute('SELECT coalesce(sum("offset"), 0) FROM checkpoints').fetchone()
            return int(row[0]) if row else 0
    except Exception:
        return -1


def run(rate: int, seconds: float, data: bytes, tmp: Path) -> dict[str, float]:
    log, db = tmp / f"mail-{rate}.log", tmp / f"bench-{rate}.duckdb"
    log.write_bytes(b"")
    lines = data.split(b"\n")[:-1]
    err = open(tmp / f"watch-{rate}.err", "wb")  # noqa: SIM115 - closed after the daemon
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()", "watch", "--db", str(db),
         "--log", str(log), "--timezone", "UTC", "--commit-interval", "1", "--poll-interval", "1"],
        stderr=err, cwd=ROOT, env={**os.environ, "MTALENS_LOCK_WAIT": "30"},
    )  # fmt: skip
    time.sleep(2.0)  # start-up
    marks: list[tuple[int, float]] = []  # (end offset, appended at)
    lags: list[float] = []
    samples: list[int] = []
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    written, i, tick = 0, 0, 0.1
    next_sample = next_poll = t0
    with open(log, "ab") as fh:
        while time.monotonic() - t0 < seconds and i < len(lines):
            due = int((time.monotonic() - t0 + tick) * rate)
            chunk = lines[i:due]
            if chunk:
                buf = b"\n".join(chunk) + b"\n"
                fh.write(buf)
                fh.flush()
                written += len(buf)
                i += len(chunk)
                marks.append((written, time.monotonic()))
            now = time.monotonic()
            if now >= next_poll:  # the reader: 4 read-only opens a second
                next_poll += 0.25
                off = committed(db)
                while marks and off >= marks[0][0]:
                    lags.append(now - marks.pop(0)[1])
            if now >= next_sample:
                samples.append(rss(proc.pid))
                next_sample += 1.0
            time.sleep(max(0.0, tick - (time.monotonic() - now)))
    appended_lines, wall = i, time.monotonic() - t0
    deadline = time.monotonic() + 120
    while marks and time.monotonic() < deadline:
        off = committed(db)
        now = time.monotonic()
        while marks and off >= marks[0][0]:
            lags.append(now - marks.pop(0)[1])
        time.sleep(0.2)
    caught_up = time.monotonic() - t0
    cpu = cpu_seconds(proc.pid) - cpu0
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    err.close()
    if code != 0:  # the figures of a daemon that died are meaningless: show why
        tail = (tmp / f"watch-{rate}.err").read_bytes()[-2000:].decode(errors="replace")
        print(f"watch exited {code}:\n{tail}", file=sys.stderr)
    lags.sort()
    return {
        "rate": rate,
        "appended_lines": appended_lines,
        "sustained_lines_per_s": appended_lines / caught_up,
        "lag_p50_s": statistics.median(lags) if lags else float("nan"),
        "lag_p99_s": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan"),
        "cpu_share": cpu / caught_up,
        "rss_first_mb": samples[0] / 2**20 if samples else 0,
        "rss_last_mb": samples[-1] / 2**20 if samples else 0,
        "rss_max_mb": max(samples) / 2**20 if samples else 0,
        "write_seconds": wall,
        "unfinished_marks": len(marks),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rates", default="500,2000,20000")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--lines", type=int, default=0, help="generated lines [rate*seconds max]")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    n = args.lines or int(max(rates) * args.seconds) + 1000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        gen = tmp / "gen.log"
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines",
                        str(n), "--out", str(gen), "--style", "rfc3164"], check=True,
                       capture_output=True)  # fmt: skip
        data = gen.read_bytes()
        print("rate  appended  sustained/s  lag_p50  lag_p99  cpu%  rss first/last/max MB")
        for rate in rates:
            r = run(rate, args.seconds, data, tmp)
            print(
                f"{rate:>5} {r['appended_lines']:>9,} {r['sustained_lines_per_s']:>11,.0f}"
                f" {r['lag_p50_s']:>7.2f}s {r['lag_p99_s']:>7.2f}s {100 * r['cpu_share']:>4.0f}%"
                f"  {r['rss_first_mb']:.0f}/{r['rss_last_mb']:.0f}/{r['rss_max_mb']:.0f}"
                f"  (writer {r['write_seconds']:.1f}s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
