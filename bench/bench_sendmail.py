"""Sendmail ingest benchmark: `mtalens ingest` of a Sendmail log next to the Postfix path, in one run.

    python bench/bench_sendmail.py [--lines 1000000] [--seed 1] [--postfix-style rfc3164]
                                   [--repeat 1] [--no-pflogsumm] [--keep]

Generates (or reuses, cached in bench/out/ keyed by lines, seed and a hash of the generator's
source) a Sendmail 8.17 log with bench/gen_sendmail_logs.py and a Postfix log of as many lines
with bench/gen_postfix_logs.py, then runs, in this order and in the same run:

1. `cat` of both files (the floor; it also warms the page cache);
2. `pflogsumm` on the Postfix log, for context, when it is installed (`--no-pflogsumm` skips it);
3. `mtalens ingest --db TMP FILE --year 2026 --timezone UTC` (the console script of this venv),
   each into a fresh store, alternately Postfix then Sendmail, `--repeat` times.

The target (issue 11, item 6) is the Sendmail path at least as many lines/s as the Postfix path
(which has the C scanner, parsers/_pfscan.c). Timing and peak RSS are measured as in
bench/bench_ingest.py (its helpers are used). The Postfix log's default style is RFC 3164, the
syslog timestamps the Sendmail log has too. Prints a table, the lines/s ratio, both ingests'
line accounting and, as the last stdout line, one JSON object. Exit code 1 if a child failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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
    YEAR,
    Run,
    mtalens_summary,
    pflogsumm_totals,
    print_runs,
    run_child,
    runs_record,
)
from bench_ingest import cached_log as cached_postfix_log  # noqa: E402

GENERATOR = HERE / "gen_sendmail_logs.py"
TARGET = 1.0  # Sendmail lines/s at least this many times the Postfix path's


def cached_sendmail_log(out: Path, lines: int, seed: int) -> tuple[Path, float | None]:
    """The Sendmail log for these parameters; generated (and timed) only when not cached."""
    digest = hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:10]
    out.mkdir(parents=True, exist_ok=True)
    ignore = out / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# generated benchmark logs and stores\n*\n")
    path = out / f"sendmail-{lines}-s{seed}-{digest}.log"
    if path.exists():
        return path, None
    tmp = path.with_suffix(".part")
    argv = [sys.executable, str(GENERATOR), "--lines", str(lines), "--seed", str(seed)]
    argv += ["--out", str(tmp)]
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    elapsed = time.perf_counter() - started
    tmp.rename(path)
    return path, elapsed


def _ingest(name: str, log: Path, db: Path, lines: int, out: Path) -> Run:
    argv = [str(MTALENS), "ingest", "--db", str(db), str(log), "--year", YEAR, "--timezone",
            "UTC", "--no-progress", "--format", "json"]  # fmt: skip
    return run_child(name, argv, lines, log.stat().st_size, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--postfix-style", choices=("mixed", "rfc3164", "rfc3339"), default="rfc3164")
    ap.add_argument("--repeat", type=int, default=1, help="ingest each log this many times")
    ap.add_argument("--no-pflogsumm", action="store_true", help="do not run pflogsumm")
    ap.add_argument("--keep", action="store_true", help="keep the DuckDB stores")
    ap.add_argument("--out-dir", type=Path, default=OUT, help="cache and work directory")
    args = ap.parse_args(argv)

    sm_log, sm_gen = cached_sendmail_log(args.out_dir, args.lines, args.seed)
    pf_log, pf_gen = cached_postfix_log(args.out_dir, args.lines, args.seed, args.postfix_style)
    sys.stderr.flush()
    sizes = {"sendmail": sm_log.stat().st_size, "postfix": pf_log.stat().st_size}
    work = Path(tempfile.mkdtemp(prefix="mtalens-bench-sendmail-", dir=args.out_dir))
    pflogsumm = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"
    load_before = os.getloadavg()
    runs: list[Run] = [
        run_child("cat postfix", ["cat", str(pf_log)], args.lines, sizes["postfix"], None),
        run_child("cat sendmail", ["cat", str(sm_log)], args.lines, sizes["sendmail"], None),
    ]
    if not args.no_pflogsumm and Path(pflogsumm).is_file():
        runs.append(run_child("pflogsumm postfix", [pflogsumm, str(pf_log)], args.lines,
                              sizes["postfix"], work / "pflogsumm.txt"))  # fmt: skip
    for i in range(max(1, args.repeat)):
        n = "" if i == 0 else f" #{i + 1}"
        runs.append(_ingest(f"ingest postfix{n}", pf_log, work / f"pf{i}.duckdb", args.lines,
                            work / f"pf{i}.json"))  # fmt: skip
        runs.append(_ingest(f"ingest sendmail{n}", sm_log, work / f"sm{i}.duckdb", args.lines,
                            work / f"sm{i}.json"))  # fmt: skip
    load_after = os.getloadavg()
    ok = all(r.rc == 0 for r in runs)

    def best(kind: str) -> Run:  # the fastest of the repeats
        return min((r for r in runs if r.name.startswith(f"ingest {kind}")),
                   key=lambda r: r.seconds)  # fmt: skip

    pf, sm = best("postfix"), best("sendmail")
    ratio = sm.lines_per_s / pf.lines_per_s if ok and pf.lines_per_s else None
    summaries = {
        "postfix": mtalens_summary(pf.stdout_tail) if pf.rc == 0 else {},
        "sendmail": mtalens_summary(sm.stdout_tail) if sm.rc == 0 else {},
    }
    pfl = next((r for r in runs if r.name.startswith("pflogsumm")), None)
    pfl_totals = pflogsumm_totals(pfl.stdout_head) if pfl is not None and pfl.rc == 0 else {}

    for name, log, gen_s in (("sendmail", sm_log, sm_gen), ("postfix", pf_log, pf_gen)):
        size = sizes[name]
        print(f"{name} log: {log} ({args.lines:,} lines, {size / 1e6:,.1f} MB, "
              f"{size / args.lines:.0f} B/line)")  # fmt: skip
        if gen_s is not None:
            print(f"  generated in {gen_s:.1f}s ({args.lines / gen_s:,.0f} lines/s)")
    print("load average before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))  # fmt: skip
    print_runs(runs, 22)
    if ratio is not None:
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"Sendmail path: {sm.lines_per_s:,.0f} lines/s, Postfix path: "
              f"{pf.lines_per_s:,.0f} lines/s, ratio {ratio:.2f} (target >= {TARGET:.2f}: "
              f"{verdict})")  # fmt: skip
    for name, s in summaries.items():
        if s:
            print(f"{name}: read {s['lines_read']:,} = stored {s['lines_stored']:,} + ignored "
                  f"{s['lines_ignored']:,} + quarantined {s['lines_quarantined']:,}")  # fmt: skip
    if pfl_totals:
        print("pflogsumm: " + ", ".join(f"{k} {v:,}" for k, v in pfl_totals.items()))
    for r in runs:
        if r.rc != 0:
            print(f"--- {r.name} failed (rc {r.rc}):\n{r.stderr_tail}", file=sys.stderr)
    record = {
        "lines": args.lines,
        "bytes": sizes,
        "seed": args.seed,
        "postfix_style": args.postfix_style,
        "load_before": load_before,
        "load_after": load_after,
        "ratio_sendmail_to_postfix_lines_per_s": ratio,
        "target": TARGET,
        "mtalens": summaries,
        "pflogsumm": pfl_totals,
        "runs": runs_record(runs),
    }
    if args.keep:
        print(f"kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(record, separators=(",", ":")))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
