"""Start-up benchmark: whole-process wall time of short `mtalens` commands, with peers.

    python bench/bench_startup.py [--runs 9] [--mtalens PATH]

Each command is run `--runs` times as a child process (output to /dev/null) and the median wall
time is printed with the target of issue 10 (`mtalens --help` <= 0.25 s, `bounces parse one.eml`
<= 0.4 s, `query "select 1"` <= 0.5 s). Timed in the same run, for scale: `python -c pass` (the
floor of any Python CLI), `python -c "import duckdb, polars, pyarrow"` (what a command that
imports everything eagerly pays on top), and Debian's `pflogsumm --help` (Perl) when installed.
The store for `query` is made first from sample_logs/postfix in a temporary directory. The load
average is printed before and after: figures from a loaded machine are not comparable.
Exit code 1 if a target is missed or a command fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(argv: list[str], runs: int, cwd: Path) -> tuple[float, float, int]:
    """(median, min, exit code of the last run) of the wall time of ``argv``."""
    times: list[float] = []
    rc = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        rc = p.returncode
        if rc != 0:
            sys.stderr.write(p.stderr.decode("utf-8", "replace"))
    return statistics.median(times), min(times), rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument(
        "--mtalens",
        default=str(Path(sys.executable).with_name("mtalens")),
        help="the console script to time (default: the one next to this Python)",
    )
    args = ap.parse_args()
    mtalens = args.mtalens
    eml = ROOT / "sample_logs" / "bounces" / "postfix-real" / "02-unknown-failed.eml"
    with tempfile.TemporaryDirectory(prefix="mtalens-startup-") as tmp:
        cwd = Path(tmp)
        db = cwd / "s.duckdb"
        subprocess.run(
            [mtalens, "ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC",
             str(ROOT / "sample_logs" / "postfix")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rows: list[tuple[str, list[str], float | None]] = [
            ("mtalens --help", [mtalens, "--help"], 0.25),
            ("mtalens bounces parse one.eml", [mtalens, "bounces", "parse", str(eml)], 0.4),
            ("mtalens query 'select 1'", [mtalens, "query", "select 1", "--db", str(db)], 0.5),
            ("mtalens --version", [mtalens, "--version"], None),
            ("peer: python -c pass", [sys.executable, "-c", "pass"], None),
            (
                "peer: python -c 'import duckdb, polars, pyarrow'",
                [sys.executable, "-c", "import duckdb, polars, pyarrow"],
                None,
            ),
        ]
        pflogsumm = shutil.which("pflogsumm")
        if pflogsumm:
            rows.append(("peer: pflogsumm --help (Perl)", [pflogsumm, "--help"], None))
        else:
            print("pflogsumm not installed: its row is left out", file=sys.stderr)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'command':<52} {'median s':>9} {'min s':>7} {'target':>7}  verdict")
        failed = False
        for name, argv, target in rows:
            med, best, rc = _time(argv, args.runs, cwd)
            verdict = ""
            if rc != 0:
                verdict, failed = f"FAILED (exit {rc})", True
            elif target is not None:
                ok = med <= target
                verdict = "ok" if ok else "MISSED"
                failed = failed or not ok
            tgt = f"{target:.2f}" if target is not None else ""
            print(f"{name:<52} {med:>9.3f} {best:>7.3f} {tgt:>7}  {verdict}")
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
