"""Many small sources: `mtalens ingest` of a directory of N files of L lines, with peers.

    python bench/bench_many_files.py [--files 10000] [--lines 3] [--mtalens PATH]

The files are cut, in log order, from one log of bench/gen_postfix_logs.py (a collector that
writes one file per host or per hour). Timed in the same run, whole process, fresh store:
`mtalens ingest DIR` (the target of issue 12: 10,000 files of 3 lines in under 20 s), the same
again (everything already read: the checkpoint lookups alone), Debian's `pflogsumm` over the same
files when installed, and `cat` of them. The load average is printed before and after.
Exit code 1 if the target is missed or a command fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 20.0  # for 10,000 files of 3 lines


def _timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{argv[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--lines", type=int, default=3)
    ap.add_argument("--mtalens", default=shutil.which("mtalens") or "mtalens")
    args = ap.parse_args()
    args.mtalens = os.path.abspath(shutil.which(args.mtalens) or args.mtalens)
    with tempfile.TemporaryDirectory(prefix="mtalens-many-") as tmp:
        work = Path(tmp)
        log = work / "gen.log"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines",
             str(args.files * args.lines), "--out", str(log), "--style", "rfc3164"],
            check=True, capture_output=True,
        )  # fmt: skip
        lines = log.read_bytes().splitlines(keepends=True)
        d = work / "d"
        d.mkdir()
        for i in range(args.files):
            part = lines[i * args.lines : (i + 1) * args.lines]
            (d / f"part-{i:06d}.log").write_bytes(b"".join(part))
        files = sorted(str(p) for p in d.iterdir())
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{args.files:,} files of {args.lines} lines ({len(lines):,} lines)")
        ingest = [args.mtalens, "ingest", "--db", str(work / "m.duckdb"), "--year", "2026",
                  "--timezone", "UTC", "--no-progress", str(d)]  # fmt: skip
        rows = [("mtalens ingest DIR", _timed(ingest, work))]
        rows.append(("mtalens ingest DIR again (all read)", _timed(ingest, work)))
        pflogsumm = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"
        if os.path.exists(pflogsumm):
            rows.append(("peer: pflogsumm FILES", _timed([pflogsumm, *files], work)))
        rows.append(("peer: cat FILES", _timed(["cat", *files], work)))
        print(f"{'command':<40} {'seconds':>8} {'files/s':>9}")
        for name, took in rows:
            print(f"{name:<40} {took:>8.2f} {args.files / took:>9,.0f}")
        scaled = rows[0][1] * 10_000 / args.files
        verdict = "ok" if scaled <= TARGET_S else "MISSED"
        print(f"target: 10,000 files in <= {TARGET_S:.0f} s; this run scales to {scaled:.1f} s:"
              f" {verdict}")  # fmt: skip
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if verdict != "ok":
            sys.exit(1)


if __name__ == "__main__":
    main()
