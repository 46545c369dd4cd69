"""Lake benchmark: `mtalens ingest --lake` against pflogsumm, then a simulated fleet.

    python bench/bench_lake.py [--lines 5000000] [--seed 1] [--style mixed]
        [--hosts 8] [--fleet 10000000,40000000] [--spark/--no-spark] [--keep]

Part 1, one host, in one run on the same file (bench/gen_postfix_logs.py, cached in bench/out/ as
by bench_ingest.py): `cat FILE`, Debian's `pflogsumm FILE`, `mtalens ingest --lake NEW FILE` and
`mtalens ingest --db NEW FILE` (the single-file store), each a child process timed with a
monotonic clock, with its CPU seconds and peak RSS (VmHWM sampled every 10 ms: bench_ingest.py's
run_child). Targets (issue 15): the lake at >= 1,000,000 lines/s with peak RSS < 1 GB, the store
at >= 4x pflogsumm's lines/s.

Part 2, a fleet, for each total of --fleet: --hosts copies of one generated log of total/hosts
lines, each with its own host name (h1, h2, ...: the syslog host field rewritten), written into
one new lake by --hosts `mtalens ingest --lake L --writer hN` processes started at once; then
`mtalens report --lake L` (DuckDB, a new process: it loads the snapshot, then reports) and, with
--spark, the same report through Spark (pipeline/spark.py, local[2], a new process; the session
start is timed apart). Printed: each time, and how each grows from the first total to the last.

The machine may be shared: the load average before and after each part is printed. The last
stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ingest import (  # noqa: E402  (a sibling script)
    MTALENS,
    OUT,
    cached_log,
    mtalens_summary,
    print_runs,
    run_child,
    runs_record,
)

LAKE_TARGET = 1_000_000  # lines/s
RSS_TARGET_MB = 1024
STORE_TARGET = 4.0  # x pflogsumm
RANGE = ["--since", "2020-01-01", "--until", "2030-01-01"]

SPARK_REPORT = """
import json, sys, time
t0 = time.perf_counter()
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[2]").appName("mtalens-bench")
         .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "6g").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
t1 = time.perf_counter()
from datetime import datetime, timezone
from mtalens.pipeline import spark as mspark
mspark.register_lake(spark, sys.argv[1])
t2 = time.perf_counter()
tables = mspark.report(spark, datetime(2020, 1, 1, tzinfo=timezone.utc),
                       datetime(2030, 1, 1, tzinfo=timezone.utc))
t3 = time.perf_counter()
rows = sum(len(t.rows) for t in tables)
print(json.dumps({"session": t1 - t0, "register": t2 - t1, "report": t3 - t2, "rows": rows}))
spark.stop()
"""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one_host(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    log, gen = cached_log(OUT, args.lines, args.seed, args.style)
    size = log.stat().st_size
    print(f"log {log.name}: {args.lines:,} lines, {size / 1e6:,.1f} MB"
          + (f" (generated in {gen:.1f} s)" if gen else " (cached)"))  # fmt: skip
    print(f"load average before: {load()}")
    ingest = [str(MTALENS), "ingest", "--year", "2026", "--timezone", "UTC", "-f", "json"]
    runs = [
        run_child("cat", ["cat", str(log)], args.lines, size, None),
        run_child("pflogsumm", ["pflogsumm", str(log)], args.lines, size, work / "pflogsumm.txt"),
        run_child("mtalens ingest --lake", [*ingest, "--lake", str(work / "lake"), str(log)],
                  args.lines, size, work / "lake.json"),
        run_child("mtalens ingest --db", [*ingest, "--db", str(work / "store.duckdb"), str(log)],
                  args.lines, size, work / "store.json"),
    ]  # fmt: skip
    print(f"load average after: {load()}")
    print_runs(runs, 24)
    pfl, lake_run, store_run = runs[1], runs[2], runs[3]
    out: dict[str, Any] = {"log": str(log), "lines": args.lines, "bytes": size,
                           "runs": runs_record(runs)}  # fmt: skip
    for r in runs:
        if r.rc != 0:
            print(f"{r.name} failed ({r.rc}): {r.stderr_tail}", file=sys.stderr)
    if pfl.rc == 0 and lake_run.rc == 0 and store_run.rc == 0:
        lake_x = lake_run.lines_per_s / pfl.lines_per_s
        store_x = store_run.lines_per_s / pfl.lines_per_s
        met = "met" if lake_run.lines_per_s >= LAKE_TARGET else "NOT met"
        rss = "met" if lake_run.peak_rss_mb < RSS_TARGET_MB else "NOT met"
        print(f"lake: {lake_run.lines_per_s:,.0f} lines/s = {lake_x:.2f}x pflogsumm "
              f"(target {LAKE_TARGET:,} lines/s: {met}); peak RSS {lake_run.peak_rss_mb:,.0f} MB "
              f"(target < {RSS_TARGET_MB} MB: {rss})")  # fmt: skip
        met = "met" if store_x >= STORE_TARGET else "NOT met"
        print(f"store: {store_run.lines_per_s:,.0f} lines/s = {store_x:.2f}x pflogsumm "
              f"(target {STORE_TARGET}x: {met})")  # fmt: skip
        out |= {"lake_vs_pflogsumm": lake_x, "store_vs_pflogsumm": store_x}
        for name, r in (("lake", lake_run), ("store", store_run)):
            s = mtalens_summary(r.stdout_tail)
            print(f"{name}: read {s.get('lines_read', 0):,} = stored {s.get('lines_stored', 0):,}"
                  f" + ignored {s.get('lines_ignored', 0):,} + quarantined"
                  f" {s.get('lines_quarantined', 0):,}")  # fmt: skip
    return out


def fleet_logs(total: int, hosts: int, seed: int, style: str) -> list[Path]:
    """``hosts`` copies of one log of total/hosts lines, host names h1..hN (cached)."""
    per = total // hosts
    base, _ = cached_log(OUT, per, seed, style)
    d = OUT / f"fleet-{base.stem}-x{hosts}"
    d.mkdir(exist_ok=True)
    out = []
    for i in range(1, hosts + 1):
        p = d / f"h{i}.log"
        if not p.exists():
            tmp = p.with_suffix(".part")
            with base.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(64 << 20):
                    # cut at a line end so the host field is never split across chunks
                    chunk += src.readline()
                    dst.write(chunk.replace(b" mx1 postfix", f" h{i} postfix".encode()))
            tmp.rename(p)
        out.append(p)
    return out


def timed(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[float, str, int]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode not in (0, 1):
        print(f"{argv[:3]} failed ({r.returncode}): {r.stderr[-2000:]}", file=sys.stderr)
    return time.perf_counter() - t0, r.stdout, r.returncode


def fleet(args: argparse.Namespace, work: Path, total: int) -> dict[str, Any]:
    logs = fleet_logs(total, args.hosts, args.seed, args.style)
    root = work / f"fleet-{total}"
    print(f"\nfleet: {args.hosts} hosts x {total // args.hosts:,} lines = {total:,} lines; "
          f"load average before: {load()}")  # fmt: skip
    t0 = time.perf_counter()
    procs = []
    for i, log in enumerate(logs, start=1):
        argv = [str(MTALENS), "ingest", "--lake", str(root), "--writer", f"h{i}", "--year",
                "2026", "--timezone", "UTC", "-f", "json", str(log)]  # fmt: skip
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    cpu = 0.0
    failed = 0
    for p in procs:
        _pid, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if p.returncode != 0:
            failed += 1
            print(f"writer failed: {p.stderr.read()[-1000:] if p.stderr else ''}", file=sys.stderr)
        for fh in (p.stdout, p.stderr):
            if fh is not None:
                fh.close()
    ingest_s = time.perf_counter() - t0
    print(f"  {args.hosts} writers at once: {ingest_s:.1f} s ({total / ingest_s:,.0f} lines/s, "
          f"{cpu:.1f} CPU s), {failed} failed")  # fmt: skip
    duck_s, out, rc = timed([str(MTALENS), "report", "--lake", str(root), *RANGE, "-f", "json"])
    duck_rows = len(json.loads(out).get("totals", [])) if rc in (0, 1) and out else 0
    print(f"  report through DuckDB: {duck_s:.1f} s (load the snapshot + report)")
    res: dict[str, Any] = {"total": total, "hosts": args.hosts, "ingest_s": ingest_s,
                           "ingest_cpu_s": cpu, "failed": failed, "duckdb_report_s": duck_s,
                           "duckdb_rows": duck_rows}  # fmt: skip
    if args.spark:
        spark_s, out, rc = timed([sys.executable, "-c", SPARK_REPORT, str(root)])
        if rc == 0 and out.strip():
            sp = json.loads(out.strip().splitlines()[-1])
            print(f"  report through Spark (local[2]): {spark_s:.1f} s in all: session "
                  f"{sp['session']:.1f} s, register {sp['register']:.1f} s, report "
                  f"{sp['report']:.1f} s")  # fmt: skip
            res |= {"spark_total_s": spark_s, **{f"spark_{k}": v for k, v in sp.items()}}
    print(f"  load average after: {load()}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--style", default="mixed", choices=["mixed", "rfc3164", "rfc3339"])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument(
        "--fleet",
        default="10000000,40000000",
        help="total lines of each fleet run, comma-separated ('' for none)",
    )
    ap.add_argument("--spark", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--skip-one-host", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("pflogsumm") is None and not args.skip_one_host:
        print("pflogsumm not found: apt-get install pflogsumm", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mtalens-bench-lake-", dir=OUT))
    result: dict[str, Any] = {}
    try:
        if not args.skip_one_host:
            result["one_host"] = one_host(args, work)
        totals = [int(x) for x in args.fleet.split(",") if x.strip()]
        runs = [fleet(args, work, t) for t in totals]
        result["fleet"] = runs
        if len(runs) >= 2:
            a, b = runs[0], runs[-1]
            grow = b["total"] / a["total"]
            print(f"\nfrom {a['total']:,} to {b['total']:,} lines ({grow:.1f}x): ingest "
                  f"{b['ingest_s'] / a['ingest_s']:.2f}x the time, DuckDB report "
                  f"{b['duckdb_report_s'] / a['duckdb_report_s']:.2f}x"
                  + (f", Spark report {b['spark_report'] / a['spark_report']:.2f}x"
                     if "spark_report" in a and "spark_report" in b else ""))  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
