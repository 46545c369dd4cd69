"""End-to-end ingest benchmark: `cat`, Debian's `pflogsumm` and `mtalens ingest` on one log.

    python bench/bench_ingest.py [--lines 5000000] [--seed 1] [--style mixed] [--keep] [--repeat 2]

Generates the log with bench/gen_postfix_logs.py (cached in bench/out/, keyed by lines, seed,
style and a hash of the generator's source), then runs, in this order and in the same run:

1. `cat FILE > /dev/null`: the floor (it also warms the page cache for the other two);
2. `pflogsumm FILE` (Debian package pflogsumm), output kept next to the store;
3. `mtalens ingest --db TMP FILE --year 2026 --timezone UTC` (the console script of this venv),
   `--repeat` times, each into a fresh store.

The machine may be shared (other benchmarks on the same cores): the load average before and
after is printed with the figures, and each child's CPU seconds (all threads) next to its wall
time.

Each is a child process, timed with a monotonic clock; its peak RSS is the highest VmHWM read
from /proc/PID/status while it runs (sampled every 10 ms by a thread; `RUSAGE_CHILDREN` would be the
maximum over all children so far, and even a single child's ru_maxrss includes the pre-exec
copy of this Python process). Prints a table and, as the last stdout line, one JSON object. Exit code 1 if a
child failed (the others still run and are reported).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
GENERATOR = HERE / "gen_postfix_logs.py"
MTALENS = Path(sys.executable).parent / "mtalens"
YEAR = "2026"  # the generator's default start is 2026-03-02 UTC


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    name: str
    argv: list[str]
    rc: int
    seconds: float
    cpu_seconds: float  # user + system of the child (all its threads), from wait4()
    peak_rss_mb: float
    lines_per_s: float
    mb_per_s: float
    stdout_head: str
    stdout_tail: str
    stderr_tail: str


def cached_log(out: Path, lines: int, seed: int, style: str) -> tuple[Path, float | None]:
    """The log for these parameters; generated (and timed) only when not cached yet."""
    digest = hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:10]
    out.mkdir(parents=True, exist_ok=True)
    ignore = out / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# generated benchmark logs and stores\n*\n")
    path = out / f"postfix-{lines}-s{seed}-{style}-{digest}.log"
    if path.exists():
        return path, None
    tmp = path.with_suffix(".part")
    argv = [sys.executable, str(GENERATOR), "--lines", str(lines), "--seed", str(seed)]
    argv += ["--style", style, "--out", str(tmp)]
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    elapsed = time.perf_counter() - started
    tmp.rename(path)
    return path, elapsed


def _hwm_kib(pid: int) -> int:
    """VmHWM of a live process: its peak RSS since exec (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(name: str, argv: list[str], lines: int, size: int, stdout_to: Path | None) -> Run:
    """Run one step. Peak RSS: the highest VmHWM sampled every 10 ms. The rusage of
    wait4() is not used for it: on Linux ru_maxrss also counts the pre-exec image, i.e. this
    Python process, which would swamp small children like cat."""
    out_fh = stdout_to.open("wb") if stdout_to else subprocess.DEVNULL
    err_path = Path(tempfile.mkstemp(prefix=f"bench-{name.replace(' ', '-')}-", suffix=".err")[1])
    peak = 0
    try:
        with err_path.open("wb") as err_fh:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=out_fh, stderr=err_fh)
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, _hwm_kib(proc.pid))
                    done.wait(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            _pid, status, usage = os.wait4(proc.pid, 0)  # blocking: the timing stays exact
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout_to:
            out_fh.close()  # type: ignore[union-attr]
    stderr_tail = err_path.read_text(errors="replace")[-2000:]
    err_path.unlink()
    stdout_text = stdout_to.read_text(errors="replace") if stdout_to else ""
    return Run(
        name=name,
        argv=argv,
        rc=proc.returncode,
        seconds=elapsed,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak / 1024,  # 0: exited before the first sample
        lines_per_s=lines / elapsed if elapsed else 0.0,
        mb_per_s=size / 1e6 / elapsed if elapsed else 0.0,
        stdout_head=stdout_text[:8000],
        stdout_tail=stdout_text[-4000:],
        stderr_tail=stderr_tail,
    )


def print_runs(runs: list[Run], width: int = 22) -> None:
    """The table of steps every ingest benchmark prints (name, exit code, seconds, CPU seconds,
    lines/s, MB/s, peak RSS)."""
    print(f"{'step':<{width}}{'rc':>4}{'seconds':>10}{'cpu s':>8}{'lines/s':>14}{'MB/s':>10}"
          f"{'peak RSS MB':>13}")  # fmt: skip
    for r in runs:
        print(
            f"{r.name:<{width}}{r.rc:>4}{r.seconds:>10.2f}{r.cpu_seconds:>8.2f}"
            f"{r.lines_per_s:>14,.0f}{r.mb_per_s:>10.1f}"
            + (f"{r.peak_rss_mb:>13.1f}" if r.peak_rss_mb else f"{'(too short)':>13}")
        )


def runs_record(runs: list[Run]) -> list[dict[str, Any]]:
    """The runs for the closing JSON line, without their captured output."""
    drop = ("stdout_head", "stdout_tail", "stderr_tail")
    return [{k: v for k, v in asdict(r).items() if k not in drop} for r in runs]


def pflogsumm_totals(report: str) -> dict[str, int]:
    """The "Grand Totals" message counts of a pflogsumm report (received, delivered, ...).
    Counts above 512k are printed as "870k" / "1m" with k = 1024 (pflogsumm's adj_int_units),
    so those values are approximate."""
    units = {"": 1, "k": 1024, "m": 1024 * 1024}
    totals: dict[str, int] = {}
    for m in re.finditer(
        r"^\s+(\d+)([km]?)\s+(received|delivered|forwarded|deferred|bounced|rejected|held|discarded)\b",
        report,
        re.M,
    ):
        totals.setdefault(m.group(3), int(m.group(1)) * units[m.group(2)])
    return totals


def mtalens_summary(stdout: str) -> dict[str, Any]:
    """`mtalens ingest --format json` prints one JSON object (lines read/stored/...)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--style", choices=("mixed", "rfc3164", "rfc3339"), default="mixed")
    ap.add_argument("--keep", action="store_true", help="keep the DuckDB store and reports")
    ap.add_argument(
        "--repeat", type=int, default=1, help="run `mtalens ingest` this many times (fresh stores)"
    )
    ap.add_argument("--out-dir", type=Path, default=OUT, help="cache and work directory")
    args = ap.parse_args(argv)

    log, gen_seconds = cached_log(args.out_dir, args.lines, args.seed, args.style)
    sys.stderr.flush()
    size = log.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="mtalens-bench-", dir=args.out_dir))
    pflogsumm = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"
    # the machine may be shared: the load average goes with every figure
    load_before = os.getloadavg()
    runs = [
        run_child("cat", ["cat", str(log)], args.lines, size, None),
        run_child("pflogsumm", [pflogsumm, str(log)], args.lines, size, work / "pflogsumm.txt"),
    ]
    for i in range(max(1, args.repeat)):
        runs.append(
            run_child(
                "mtalens ingest" if i == 0 else f"mtalens ingest #{i + 1}",
                [str(MTALENS), "ingest", "--db", str(work / f"bench{i}.duckdb"), str(log),
                 "--year", YEAR, "--timezone", "UTC", "--no-progress", "--format", "json"],
                args.lines,
                size,
                work / f"ingest{i}.json",
            )
        )  # fmt: skip
    load_after = os.getloadavg()
    by_name = {r.name: r for r in runs}
    pfl, ing = by_name["pflogsumm"], by_name["mtalens ingest"]
    ratio = ing.seconds / pfl.seconds if pfl.rc == 0 and ing.rc == 0 and pfl.seconds else None
    summary = mtalens_summary(ing.stdout_tail) if ing.rc == 0 else {}

    print(
        f"log: {log} ({args.lines:,} lines, {size / 1e6:,.1f} MB, {size / args.lines:.0f} B/line)"
    )
    if gen_seconds is not None:
        print(f"generated in {gen_seconds:.1f}s ({args.lines / gen_seconds:,.0f} lines/s)")
    print("load average before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))  # fmt: skip
    print_runs(runs, 20)
    if ratio is not None:
        print(f"mtalens ingest / pflogsumm wall time: {ratio:.2f}x")
    if summary:
        print(
            "mtalens: read {lines_read:,} = stored {lines_stored:,} + ignored {lines_ignored:,} "
            "+ quarantined {lines_quarantined:,}".format(**summary)
        )
    totals = pflogsumm_totals(pfl.stdout_head) if pfl.rc == 0 else {}
    if totals:
        print("pflogsumm: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))
    for r in runs:
        if r.rc != 0:
            print(f"--- {r.name} failed (rc {r.rc}):\n{r.stderr_tail}", file=sys.stderr)

    record = {
        "lines": args.lines,
        "bytes": size,
        "seed": args.seed,
        "style": args.style,
        "generator_seconds": gen_seconds,
        "ratio_mtalens_to_pflogsumm": ratio,
        "load_before": load_before,
        "load_after": load_after,
        "mtalens": summary,
        "pflogsumm": totals,
        "runs": runs_record(runs),
    }
    if args.keep:
        print(f"kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(record, separators=(",", ":")))
    return 0 if all(r.rc == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
