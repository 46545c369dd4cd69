"""Exim ingest benchmark: `cat`, Debian's `eximstats` and `mtalens ingest` on one Exim main log.

    python bench/bench_exim.py [--lines 1000000] [--seed 1] [--ids 16] [--repeat 1] [--keep]
                               [--eximstats PATH]

Generates the log with bench/gen_exim_logs.py (cached in bench/out/, keyed by lines, seed, id
form and a hash of the generator's source), then runs, in this order and in the same run:

1. `cat FILE > /dev/null`: the floor (it also warms the page cache for the other two);
2. `perl eximstats FILE`: Debian's exim4-base report script with its defaults (the text report:
   grand totals, per transport, per hour histograms, top 50 lists, errors), output kept;
3. `mtalens ingest --db TMP FILE --timezone UTC` (the console script of this venv), `--repeat`
   times, each into a fresh store.

The target (issue 11, item 6) is mtalens at least 3 times as fast as eximstats.

eximstats is looked for in `--eximstats`, `$EXIMSTATS`, `$MTALENS_EXIM_ROOT/root/usr/sbin/`
(where .ci/run unpacks exim4-base; default root /opt/mtalens-ci/exim), then `eximstats` on
the PATH and /usr/sbin. exim4 itself need not be installed (it would remove postfix):

    cd /tmp/x && apt-get download exim4-base && dpkg -x exim4-base_*.deb root
    python bench/bench_exim.py --eximstats /tmp/x/root/usr/sbin/eximstats

The default log has 16-character message ids: eximstats 1.61 (Debian 12, Exim 4.96) takes the
id and the flag from fixed columns and misreads the 23-character ids of Exim 4.97 and later.
Timing and peak RSS are measured as in bench/bench_ingest.py (its helpers are used). Prints a
table, both tools' totals (messages received, addresses delivered) and, as the last stdout
line, one JSON object. Exit code 1 if a child failed, 2 if eximstats is not found.
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ingest import (  # noqa: E402  (a sibling script)
    MTALENS,
    OUT,
    Run,
    mtalens_summary,
    print_runs,
    run_child,
    runs_record,
)

GENERATOR = HERE / "gen_exim_logs.py"
TARGET = 3.0  # mtalens at least this many times as fast as eximstats


def find_eximstats(given: str | None) -> Path | None:
    """The first eximstats script that exists, in the order of the module docstring."""
    if given:  # a path asked for is the only one tried
        return Path(given) if Path(given).is_file() else None
    root = os.environ.get("MTALENS_EXIM_ROOT") or "/opt/mtalens-ci/exim"
    candidates = [os.environ.get("EXIMSTATS"), f"{root}/root/usr/sbin/eximstats",
                  shutil.which("eximstats"), "/usr/sbin/eximstats"]  # fmt: skip
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def cached_log(out: Path, lines: int, seed: int, ids: str) -> tuple[Path, float | None]:
    """The log for these parameters; generated (and timed) only when not cached yet."""
    digest = hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:10]
    out.mkdir(parents=True, exist_ok=True)
    ignore = out / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# generated benchmark logs and stores\n*\n")
    path = out / f"exim-{lines}-s{seed}-ids{ids}-{digest}.log"
    if path.exists():
        return path, None
    tmp = path.with_suffix(".part")
    argv = [sys.executable, str(GENERATOR), "--lines", str(lines), "--seed", str(seed)]
    argv += ["--ids", ids, "--out", str(tmp)]
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    elapsed = time.perf_counter() - started
    tmp.rename(path)
    return path, elapsed


def eximstats_totals(report: str) -> dict[str, int]:
    """Messages received, messages and addresses delivered, rejects, from the "Grand total
    summary" of eximstats' text report."""
    totals: dict[str, int] = {}
    m = re.search(r"^\s+Received\s+\S+\s+(\d+)", report, re.M)
    if m:
        totals["received"] = int(m[1])
    m = re.search(r"^\s+Delivered\s+\S+\s+(\d+)\s+(\d+)", report, re.M)
    if m:
        totals["delivered_messages"], totals["delivered_addresses"] = int(m[1]), int(m[2])
    m = re.search(r"^\s+Rejects\s+(\d+)", report, re.M)
    if m:
        totals["rejects"] = int(m[1])
    return totals


def store_totals(db: Path) -> dict[str, int]:
    """The same totals from the store mtalens wrote (messages with an arrival line, addresses
    delivered, rejections)."""
    from mtalens.pipeline.store import Store

    with Store.open(db) as s:  # read-write: it may need a migration added since the ingest
        row = s.con.execute(
            "SELECT (SELECT count(*) FROM message_log WHERE arrived_at IS NOT NULL),"
            " (SELECT count(*) FROM delivery_log WHERE status = 'sent'),"
            " (SELECT count(*) FROM rejection_log WHERE action = 'reject')"
        ).fetchone()
    assert row is not None
    return {"received": row[0], "delivered_addresses": row[1], "rejects": row[2]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ids", choices=("16", "23", "both"), default="16",
                    help="message id form of the generated log (eximstats reads 16) [16]")  # fmt: skip
    ap.add_argument("--eximstats", help="path of the eximstats script")
    ap.add_argument("--keep", action="store_true", help="keep the DuckDB store and the report")
    ap.add_argument(
        "--repeat", type=int, default=1, help="run `mtalens ingest` this many times (fresh stores)"
    )
    ap.add_argument("--out-dir", type=Path, default=OUT, help="cache and work directory")
    args = ap.parse_args(argv)

    eximstats = find_eximstats(args.eximstats)
    if eximstats is None:
        print("bench_exim: eximstats not found (give --eximstats PATH or $EXIMSTATS; "
              "apt-get download exim4-base && dpkg -x exim4-base_*.deb root unpacks it)",
              file=sys.stderr)  # fmt: skip
        return 2
    log, gen_seconds = cached_log(args.out_dir, args.lines, args.seed, args.ids)
    size = log.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="mtalens-bench-exim-", dir=args.out_dir))
    load_before = os.getloadavg()
    runs: list[Run] = [
        run_child("cat", ["cat", str(log)], args.lines, size, None),
        run_child("eximstats", ["perl", str(eximstats), str(log)], args.lines, size,
                  work / "eximstats.txt"),
    ]  # fmt: skip
    for i in range(max(1, args.repeat)):
        runs.append(
            run_child(
                "mtalens ingest" if i == 0 else f"mtalens ingest #{i + 1}",
                [str(MTALENS), "ingest", "--db", str(work / f"bench{i}.duckdb"), str(log),
                 "--timezone", "UTC", "--no-progress", "--format", "json"],
                args.lines,
                size,
                work / f"ingest{i}.json",
            )
        )  # fmt: skip
    load_after = os.getloadavg()
    by_name = {r.name: r for r in runs}
    exs, ing = by_name["eximstats"], by_name["mtalens ingest"]
    ok = exs.rc == 0 and ing.rc == 0
    speedup = exs.seconds / ing.seconds if ok and ing.seconds else None
    summary = mtalens_summary(ing.stdout_tail) if ing.rc == 0 else {}
    ex_totals = eximstats_totals(exs.stdout_head) if exs.rc == 0 else {}
    ml_totals = store_totals(work / "bench0.duckdb") if ing.rc == 0 else {}

    print(
        f"log: {log} ({args.lines:,} lines, {size / 1e6:,.1f} MB, {size / args.lines:.0f} B/line)"
    )
    if gen_seconds is not None:
        print(f"generated in {gen_seconds:.1f}s ({args.lines / gen_seconds:,.0f} lines/s)")
    print(f"eximstats: {eximstats}")
    print("load average before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))  # fmt: skip
    print_runs(runs, 20)
    if speedup is not None:
        verdict = "met" if speedup >= TARGET else "NOT met"
        print(f"mtalens ingest is {speedup:.2f}x as fast as eximstats "
              f"(target >= {TARGET:.0f}x: {verdict})")  # fmt: skip
    if summary:
        print(
            "mtalens: read {lines_read:,} = stored {lines_stored:,} + ignored {lines_ignored:,} "
            "+ quarantined {lines_quarantined:,}".format(**summary)
        )
    for name, totals in (("eximstats", ex_totals), ("mtalens store", ml_totals)):
        if totals:
            print(f"{name}: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))
    for r in runs:
        if r.rc != 0:
            print(f"--- {r.name} failed (rc {r.rc}):\n{r.stderr_tail}", file=sys.stderr)
    record = {
        "log": str(log),
        "lines": args.lines,
        "bytes": size,
        "seed": args.seed,
        "ids": args.ids,
        "eximstats": str(eximstats),
        "load_before": load_before,
        "load_after": load_after,
        "speedup_vs_eximstats": speedup,
        "target": TARGET,
        "mtalens": summary,
        "eximstats_totals": ex_totals,
        "store_totals": ml_totals,
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
