"""Benchmark: the suppression policy over N delivery rows and M bounce rows, then every export.

Rows are synthesised directly in DuckDB (generate_series), no log parsing involved. Each
address has a fate, drawn from a hash of its number, so its evidence is consistent over time
the way a real list's is (an address that died keeps bouncing, a full mailbox stays full):
  hot addresses  (4% of addresses, 20% of deliveries: daily/weekly mail) half of them fill up
                 on an onset day and bounce mailboxfull 552 5.2.2 from then on (soft)
  other addresses a third of them die on an onset day and bounce userunknown 550 5.1.1 from
                 then on (hard); the rest are healthy
  healthy rows   96% sent, 2% deferred (a third of those in messages that then expire), 1%
                 blocked 554 5.7.1 (sender-side, never suppresses), 1% deferred greylisting
  bounces        DSNs: 75% userunknown 5.1.1, 20% mailboxfull 5.2.2 (to hot addresses, a few
                 days apart); 5% ARF complaints
  manual         1% of addresses added by hand, a fifth of those later removed; 5 domains and
                 1,000 addresses on the never-suppress list
With the defaults (10 M deliveries, 1 M bounce rows, 2.5 M addresses) the policy suppresses
about one million addresses, roughly 80% hard, 10% soft, 5% complaints, 2% manual.
Targets (issue 5): policy < 10 s, each export of 1 M suppressions < 5 s, memory < 2 GB.

Measured on 2 shared cores (other engineers' runs going: each line prints the load average;
two final runs at load 2.0-3.1), 10 M deliveries / 1 M bounce rows, DuckDB memory_limit 1 GB,
892,759 suppressions (774,688 hard, 64,092 soft, 49,317 complaints, 4,662 manual):
  0008 one query        56.9 s, 1,934 MB at memory_limit 1.6 GB; out of memory at 1 GB
  0009 staged (pipeline/suppressions.staged_decisions, no summary): 25-33 s, 1.2-1.4 GB
  0010 summary (pipeline/suppressions.refresh_suppression_summary, evaluated_decisions):
    full refresh from empty (one-off)          32-36 s (41-42 s CPU), peak 1.2 GB
    refresh with nothing new                   0.2-0.4 s
    policy from a fresh summary                4.6-7.4 s, peak 1.5 GB
    policy with 100 k deliveries not folded    6.3-8.6 s
    incremental refresh of 100 k deliveries    3.6-5.4 s (56 k addresses evaluated again)
    policy with 1 M deliveries not folded      13-16 s (this tail is 40% failures naming
                                               420 k addresses: over the 10 s target)
    incremental refresh of 1 M deliveries      10-14 s
  fold combining folded candidates with new rows (issue 5: _stage_fast, and the fold's address
  scan narrowed to the new rows), upkeep.fold_new_rows, load 0.7-1.7, before -> after:
    fold of 100 k deliveries                   5.2 s -> 3.4 s (35,555 of 56,420 addresses combined)
    fold of 1 M deliveries                     10.3 s -> 8.1 s (251,929 of 424,155 combined)
    policy with 1 M deliveries not folded      9.5 s -> 9.3 s (the pick, 2.3 s, and the staging
                                               of the new rows, not the combining, dominate)
  exports of the 892,759, before streaming (whole frame, then each file's whole text):
    0.1-3.9 s each; peak RSS 1.5-2.3 GB (csv 2.0, jsonl 2.3-2.4, mailgun-bounces 1.9-2.0)
  exports streamed (pipeline/exports.py: Arrow batches from DuckDB, written batch by batch;
  three runs at load 2.0-3.1):
    policy alone, batches read and dropped      3.8-5.3 s, peak 1.28-1.30 GB
    each writer, from a held Arrow table        0.2-1.9 s (jsonl 1.6-1.9, postmark 1.0-2.2),
                                                peak 0.86-0.98 GB with DuckDB's cache given
                                                back first (1.03-1.25 GB, one 1.6, without)
    each export end to end (policy + writer,    3.3-7.1 s, peak 1.36-1.55 GB (csv 1.55)
      what `mtalens suppressions export` does)
    ses-csv --since-last, first / again         7.2-8.6 s / 5.4 s, peak 1.43-1.53 GB
  After the policy DuckDB keeps ~200 MB of table blocks (duckdb_memory BASE_TABLE); a lower
  memory_limit evicts them (64MB: RSS 678 -> 536 MB); see release_cache() for restoring it.

    .venv/bin/python bench/bench_suppressions.py [--deliveries 10000000] [--bounces 1000000]
        [--store PATH (kept, and reused when it exists; the bench appends to a copy)]
        [--reference (time the reference definition too)] [--staged (time 0009 too)] [--batch 100000]
        [--tail 1000000] [--memory-limit 1GB] [--no-exports]
        [--exports-only (the policy and the exports only, on a store with its summary)]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa

from mtalens.pipeline import exports, suppressions, upkeep
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store

NOW = datetime(2026, 7, 1, tzinfo=UTC)
PERIOD_S = 180 * 86400  # the evidence spans 2026-01-01 .. 2026-06-30


def _address(a: str) -> str:
    # a few domains in upper case: the policy lower-cases domains (RFC 5321 section 2.4)
    return (
        f"'user' || {a} || '@' || CASE WHEN {a} % 997 = 0 THEN 'D' ELSE 'd' END"
        f" || ({a} % 5000) || '.example'"
    )


def _fate(a: str, hot: int) -> str:
    return (
        f"CASE WHEN {a} < {hot} THEN (CASE WHEN hash({a}, 4) % 2 = 0 THEN 'soft' ELSE 'ok' END)"
        f" WHEN hash({a}, 4) % 3 = 0 THEN 'dead' ELSE 'ok' END"
    )


def append_deliveries(store: Store, deliveries: int, addresses: int, *, batch: int) -> None:
    """A later batch of log (batch >= 1): ``deliveries`` more attempts, to the same addresses
    with the same fates, spread over the last day of the period (new messages, new keys)."""
    _add_deliveries(
        store, deliveries, addresses, batch=batch, start_s=PERIOD_S - 86400, span_s=86400
    )


def _add_deliveries(
    store: Store, deliveries: int, addresses: int, *, batch: int, start_s: int, span_s: int
) -> None:
    con = store.con
    hot = max(1, addresses // 16)
    rest = max(1, addresses - hot)
    day0 = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
    # batch 0 is the original data set (same keys and hashes as before batches existed)
    n = "i" if batch == 0 else f"(i + {batch}::BIGINT * 1000000007)"
    key = "'mx|' || i" if batch == 0 else f"'mx|{batch}|' || i"
    con.execute(
        f"""
        CREATE TEMP TABLE bench_rows AS
        SELECT i, ts, a, fate, m, i % 3 = 0 AS expires,
               CASE WHEN fate = 'dead' AND day >= onset THEN 'dead'
                    WHEN fate = 'soft' AND day >= onset THEN 'full'
                    WHEN m < 96 THEN 'sent' WHEN m < 98 THEN 'deferred'
                    WHEN m < 99 THEN 'blocked' ELSE 'greylisted' END AS outcome
        FROM (SELECT *, {_fate("a", hot)} AS fate, hash(a, 5) % 150 AS onset
              FROM (SELECT i, hash({n}, 1) % 100 AS m,
                           {start_s} + i * {span_s} // {deliveries} AS s,
                           {day0} + to_seconds(s) AS ts, s // 86400 AS day,
                           CASE WHEN hash({n}, 2) % 100 < 30 THEN hash({n}, 3) % {hot}
                                ELSE {hot} + hash({n}, 3) % {rest} END AS a
                    FROM generate_series(0, {deliveries} - 1) t(i)))
        """
    )
    con.execute(
        f"""
        INSERT INTO message_log (message_key, host, queue_id, message_id, first_seen, last_seen,
                                 expired_at)
        SELECT {key}, 'mx', 'Q' || i, {n} || '@bench', ts, ts,
               CASE WHEN outcome IN ('deferred', 'greylisted') AND expires
                    THEN ts + INTERVAL 5 DAY END
        FROM bench_rows
        """
    )
    con.execute(
        f"""
        INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,
                                  status, dsn, reply_code, diagnostic, reason, category, hard,
                                  rule_id, line_offset)
        SELECT {key}, 'mx', 'Q' || i, ts, 'smtp', {_address("a")},
               CASE WHEN outcome = 'sent' THEN 'sent'
                    WHEN outcome IN ('deferred', 'greylisted') THEN 'deferred'
                    ELSE 'bounced' END,
               CASE outcome WHEN 'sent' THEN '2.0.0' WHEN 'deferred' THEN '4.4.1'
                    WHEN 'greylisted' THEN '4.7.1' WHEN 'dead' THEN '5.1.1'
                    WHEN 'full' THEN '5.2.2' ELSE '5.7.1' END,
               CASE outcome WHEN 'sent' THEN 250 WHEN 'deferred' THEN NULL
                    WHEN 'greylisted' THEN 450 WHEN 'dead' THEN 550
                    WHEN 'full' THEN 552 ELSE 554 END,
               CASE outcome WHEN 'sent' THEN NULL
                    WHEN 'deferred' THEN 'connect to mx: Connection timed out'
                    WHEN 'greylisted' THEN '450 4.7.1 greylisted, try again later'
                    WHEN 'dead' THEN '550 5.1.1 user unknown'
                    WHEN 'full' THEN '552 5.2.2 mailbox full'
                    ELSE '554 5.7.1 blocked using zen.spamhaus.org' END,
               CASE outcome WHEN 'sent' THEN 'delivered' WHEN 'deferred' THEN 'networkerror'
                    WHEN 'greylisted' THEN 'greylisting' WHEN 'dead' THEN 'userunknown'
                    WHEN 'full' THEN 'mailboxfull' ELSE 'blocked' END,
               'c', outcome = 'dead', 'bench', i
        FROM bench_rows
        """
    )
    con.execute("DROP TABLE bench_rows")


def synthesise(store: Store, deliveries: int, bounces: int, addresses: int) -> None:
    con = store.con
    hot = max(1, addresses // 16)
    rest = max(1, addresses - hot)
    day0 = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
    _add_deliveries(store, deliveries, addresses, batch=0, start_s=0, span_s=PERIOD_S)
    # DSNs: a mailboxfull DSN names a hot address and comes in runs of four, a day apart
    con.execute(
        f"""
        CREATE TEMP TABLE bench_reports AS
        SELECT j, CASE WHEN j % 20 = 0 THEN 'complaint' WHEN j % 5 = 1 THEN 'full'
                       ELSE 'dead' END AS what,
               CASE WHEN j % 5 = 1 THEN {day0} + to_seconds(((j // 20) * 20 * {PERIOD_S}) // {bounces})
                                        + to_days(CAST((j // 5) % 4 AS INTEGER))
                    ELSE {day0} + to_seconds(j * {PERIOD_S} // {bounces}) END AS ts,
               CASE WHEN j % 5 = 1 THEN hash(j // 20, 7) % {hot}
                    ELSE {hot} + hash(j, 7) % {rest} END AS a
        FROM generate_series(0, {bounces} - 1) t(j)
        """
    )
    con.execute(
        """
        INSERT INTO bounce_reports (report_hash, source, message_index, "offset", kind, agent,
                                    report_date, original_message_id, ingested_at)
        SELECT 'h' || j, 'bench', 1, 0, CASE what WHEN 'complaint' THEN 'complaint' ELSE 'bounce' END,
               'rfc3464', ts, '<dsn' || j || '@bench>', TIMESTAMPTZ '2026-06-30 00:00:00+00'
        FROM bench_reports
        """
    )
    con.execute(
        f"""
        INSERT INTO bounce_recipients (report_hash, position, recipient, action, status,
                                       reply_code, reason, category, rule_id)
        SELECT 'h' || j, 1, {_address("a")}, 'failed',
               CASE what WHEN 'full' THEN '5.2.2' ELSE '5.1.1' END,
               CASE what WHEN 'full' THEN '552' ELSE '550' END,
               CASE what WHEN 'full' THEN 'mailboxfull' ELSE 'userunknown' END, 'c', 'bench'
        FROM bench_reports WHERE what <> 'complaint'
        """
    )
    con.execute(
        f"""
        INSERT INTO complaint_reports (report_hash, feedback_type, original_rcpt_to, arrival_date)
        SELECT 'h' || j, 'abuse', [{_address("a")}], ts
        FROM bench_reports WHERE what = 'complaint'
        """
    )
    con.execute("DROP TABLE bench_reports")
    manual = max(1, addresses // 100)
    con.execute(
        f"""
        INSERT INTO suppression_manual (address, action, note, occurred_at)
        SELECT {_address("a")}, 'add', 'bench', {day0} + to_seconds(k * {PERIOD_S} // {manual})
        FROM (SELECT k, hash(k, 9) % {addresses} AS a FROM generate_series(0, {manual} - 1) t(k))
        UNION ALL
        SELECT {_address("a")}, 'remove', 'bench',
               {day0} + to_seconds(k * {PERIOD_S} // {manual}) + INTERVAL 10 DAY
        FROM (SELECT k, hash(k, 9) % {addresses} AS a FROM generate_series(0, {manual} - 1) t(k))
        WHERE k % 5 = 0
        """
    )
    con.execute(
        f"""
        INSERT INTO suppression_never (entry, note, added_at)
        SELECT DISTINCT {_address("a")}, 'bench', {day0}
        FROM (SELECT hash(k, 10) % {addresses} AS a FROM generate_series(0, 999) t(k))
        WHERE a % 5000 NOT IN (11, 22, 33, 44, 55)
        UNION ALL
        SELECT '@d' || d || '.example', 'bench', {day0} FROM unnest([11, 22, 33, 44, 55]) t(d)
        """
    )


def cpu_s() -> float:
    """CPU seconds of this process (the machine's cores are shared: wall time alone misleads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    """Peak RSS since the last reset_peak() (Linux VmHWM), else since the start."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start a new peak RSS measurement (proc(5): writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def load() -> str:
    """The machine's load average (other engineers' runs share the 2 cores)."""
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


class Phase:
    """Times one step: wall and CPU seconds, its own peak RSS, the load average around it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.seconds = 0.0

    def __enter__(self) -> Phase:
        reset_peak()
        self.before = load()
        self.t, self.cpu = time.perf_counter(), cpu_s()
        return self

    worst_peak = 0.0  # the largest phase peak: ru_maxrss does not survive reset_peak()

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t
        Phase.worst_peak = max(Phase.worst_peak, peak_mb())
        cpu = cpu_s() - self.cpu
        print(f"{self.label:58s} {self.seconds:7.2f} s ({cpu:5.1f} s CPU) "
              f"peak {peak_mb():5.0f} MB  [{self.before} -> {load()}]", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=10_000_000)
    ap.add_argument("--bounces", type=int, default=1_000_000)
    ap.add_argument("--addresses", type=int, default=2_500_000)
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit")
    ap.add_argument(
        "--store", type=Path, help="keep the synthetic store here (reused if present; the "
        "bench appends batches to a copy, the kept file stays as synthesised)"
    )  # fmt: skip
    ap.add_argument(
        "--reference",
        action="store_true",
        help="also time the reference definition (tests/sql/suppression_reference.sql)",
    )
    ap.add_argument("--staged", action="store_true", help="also time 0009 (no summary)")
    ap.add_argument("--batch", type=int, default=100_000, help="deliveries per incremental batch")
    ap.add_argument("--tail", type=int, default=1_000_000, help="deliveries left unfolded")
    ap.add_argument("--no-exports", action="store_true")
    ap.add_argument(
        "--exports-only", action="store_true", help="only the policy and the exports (the "
        "store's summary is refreshed first if it is not current)"
    )  # fmt: skip
    args = ap.parse_args()
    print(f"start: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        kept = args.store
        if kept is None or not kept.exists():
            store = Store.open(kept or path)
            t = time.perf_counter()
            synthesise(store, args.deliveries, args.bounces, args.addresses)
            store.con.execute("CHECKPOINT")
            print(f"synthesised {args.deliveries:,} deliveries, {args.bounces:,} bounce rows "
                  f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
            store.close()
        if kept is not None:
            shutil.copyfile(kept, path)
        store = Store.open(path)
        store.con.execute(f"SET memory_limit = '{args.memory_limit}'")
        run(store, Path(tmp), args)
        store.close()


def _size_mb(paths: list[str]) -> float:
    return sum(os.path.getsize(p) for p in paths) / 1e6


def _sink(fmt: exports.Exporter, out: Path) -> exports.Sink:
    return exports.Sink(directory=out) if fmt.multi_file else exports.Sink(file=out)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _setting(store: Store, name: str) -> str:
    return str(store.con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0])


def _buffers_mb(store: Store) -> float:
    rows = store.con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()
    return float(rows[0][0] or 0) / 2**20


def release_cache(store: Store, memory_limit: str) -> None:
    """What DuckDB keeps after the policy, and whether a lower memory_limit gives it back.
    Restores the limit from the text it was set with: current_setting() answers a rounded,
    human-readable value ('1GB' reads '953.6 MiB'; set back, that is 953.6 * 2^20 bytes, which
    reads '953.5 MiB'), so saving and restoring its text lowers the limit a little, once."""
    time.sleep(2)  # the background allocator threads hand freed memory back meanwhile
    print(f"  after the policy: RSS {rss_mb():.0f} MB, DuckDB buffers {_buffers_mb(store):.0f} MB")
    text = _setting(store, "memory_limit")
    store.con.execute("SET memory_limit = '64MB'")
    time.sleep(2)
    print(f"  memory_limit 64MB: RSS {rss_mb():.0f} MB, DuckDB buffers {_buffers_mb(store):.0f} MB")
    store.con.execute(f"SET memory_limit = '{text}'")
    drifted = _setting(store, "memory_limit")
    store.con.execute(f"SET memory_limit = '{memory_limit}'")
    print(f"  restored from current_setting's text {text!r}: {drifted!r}; "
          f"from {memory_limit!r}: {_setting(store, 'memory_limit')!r}")  # fmt: skip


def run_exports(store: Store, tmp: Path, policy: SuppressionsConfig, memory_limit: str) -> float:
    """The policy, then each export, each phase with its own peak RSS. Two ways: (1) from the
    decisions held as one Arrow table (the writers' own time, as in the figures before
    streaming), then (2) end to end as `mtalens suppressions export` runs: the policy's
    batches streamed into the writer, nothing held. Returns the slowest writer time (1)."""
    gc.collect()
    with (
        Phase("policy, streamed (batches read and dropped)"),
        suppressions.decision_batches(store, policy, now=NOW) as batches,
    ):
        rows = sum(b.num_rows for b in batches)
    print(f"  {rows:,} suppressions")
    with (
        Phase("policy, held (one Arrow table)"),
        suppressions.decision_batches(store, policy, now=NOW) as batches,
    ):
        table = pa.Table.from_batches(list(batches))
    print(f"  {table.num_rows:,} rows, {table.nbytes / 1e6:.0f} MB of Arrow buffers")
    release_cache(store, memory_limit)
    worst = 0.0
    for fmt in exports.EXPORTERS:
        sink = _sink(fmt, tmp / f"held-{fmt.name}")
        with Phase(f"export {fmt.name} (writer only, from the held table)") as ph:
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            outcome = exports.export_batches(fmt, frame.iter_slices(100_000), sink)
            sink.commit()
            del frame
        worst = max(worst, ph.seconds)
        print(f"  {len(sink.written):5d} files {_size_mb(sink.written):8.1f} MB  "
              f"{outcome.added:,} rows, {outcome.skipped.height:,} skipped")  # fmt: skip
        _remove(tmp / f"held-{fmt.name}")
    del table
    gc.collect()
    for fmt in exports.EXPORTERS:
        out = tmp / f"e2e-{fmt.name}"
        with Phase(f"export {fmt.name} end to end (policy + writer, streamed)"):
            r = exports.export_suppressions(store, policy, fmt.name, now=NOW, out=out)
        print(f"  {len(r.files):5d} files {_size_mb(list(r.files)):8.1f} MB  "
              f"{r.exported:,} rows, {len(r.skipped):,} skipped")  # fmt: skip
        _remove(out)
    with store.transaction() as con:  # a kept store: start the target from scratch
        con.execute("DELETE FROM suppression_export_state WHERE name = 'bench-stream'")
        con.execute("DELETE FROM suppression_export_targets WHERE name = 'bench-stream'")
    for run in ("first run, all additions", "again, nothing new"):
        out = tmp / "e2e-since-last"
        with Phase(f"export ses-csv --since-last, {run}"):
            r = exports.export_suppressions(
                store, policy, "ses-csv", now=NOW, out=out, since_last="bench-stream"
            )
        print(f"  {len(r.files):5d} files, added {r.added:,}, removed {r.removed:,}")
        _remove(out)
    return worst


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fold(store: Store, policy: SuppressionsConfig) -> suppressions.SummaryRefresh:
    """What a writer does after its writes (pipeline/upkeep.py): normalise the new rows'
    addresses, then fold them in."""
    r = upkeep.fold_new_rows(store, policy, now=NOW)
    assert r is not None and not r.full
    combined = getattr(r, "combined", 0)  # older trees (for before/after figures) lack it
    print(f"  {r.addresses:,} addresses evaluated again, {combined:,} of them by combining "
          f"their folded candidates with the new rows")  # fmt: skip
    return r


def run(store: Store, tmp: Path, args: argparse.Namespace) -> None:
    policy = SuppressionsConfig()
    with Phase("address normalisation (prepare)"):
        suppressions.prepare(store, now=NOW)
    if args.reference:
        with Phase("reference policy (one query)"):
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.suppression_reference import reference_decisions_frame

            ref = reference_decisions_frame(store, policy, now=NOW)
    if args.staged:
        with (
            Phase("staged policy over every row (0009, no summary)"),
            suppressions.staged_decisions(store, policy, now=NOW) as (sql, params),
        ):
            staged = store.con.sql(sql + " WHERE suppressed", params=params).fetchall()
        print(f"  {len(staged):,} suppressions")
        del staged

    if args.exports_only:
        if not suppressions.summary_usable(store, policy):
            with Phase("summary: refresh"):
                suppressions.refresh_suppression_summary(store, policy)
        worst = run_exports(store, tmp, policy, args.memory_limit)
        print(f"whole run peak RSS (largest phase peak) {Phase.worst_peak:.0f} MB; end: {load()}")
        print(f"slowest export (writer only) {worst:.2f} s < 5 s: {worst < 5}; "
              f"memory < 2048 MB: {Phase.worst_peak < 2048}")  # fmt: skip
        return
    with store.transaction() as con:  # a kept store may hold a summary: start from empty
        con.execute("DELETE FROM suppression_summary_state")
    with Phase("summary: full refresh from empty (one-off)") as full:
        r = suppressions.refresh_suppression_summary(store, policy)
    print(f"  {r.addresses:,} addresses, {r.candidates:,} candidate rows")
    store.con.execute("CHECKPOINT")
    with Phase("summary: refresh with nothing new"):
        r = suppressions.refresh_suppression_summary(store, policy)
    assert r.addresses == 0 and not r.full

    with Phase("policy from a fresh summary") as fresh:
        frame = suppressions.decisions_frame(store, policy, now=NOW)
    kinds = frame.group_by("kind").len().sort("kind").rows()
    print(f"  {frame.height:,} suppressions {dict(kinds)}")
    if args.reference:
        print(f"  equals the reference: {ref.equals(frame)}")
        del ref
    del frame

    worst = 0.0 if args.no_exports else run_exports(store, tmp, policy, args.memory_limit)
    append_deliveries(store, args.batch, args.addresses, batch=1)
    store.con.execute("CHECKPOINT")
    with Phase(f"policy with {args.batch:,} unfolded deliveries (no refresh)") as small:
        n = suppressions.decisions_frame(store, policy, now=NOW).height
    print(f"  {n:,} suppressions")
    with Phase(f"summary: incremental fold (upkeep), {args.batch:,} new deliveries") as inc:
        r = _fold(store, policy)

    append_deliveries(store, args.tail, args.addresses, batch=2)
    store.con.execute("CHECKPOINT")
    with Phase(f"policy with {args.tail:,} unfolded deliveries (no refresh)") as tail:
        unfolded = suppressions.decisions_frame(store, policy, now=NOW)
    print(f"  {unfolded.height:,} suppressions")
    digest = (unfolded.height, int(unfolded.hash_rows(seed=1).sum()))
    del unfolded
    with Phase(f"summary: incremental fold (upkeep), {args.tail:,} new deliveries") as tail_fold:
        r = _fold(store, policy)
    with Phase("policy from the refreshed summary"):
        folded = suppressions.decisions_frame(store, policy, now=NOW)
    same = digest == (folded.height, int(folded.hash_rows(seed=1).sum()))
    print(f"  unfolded tail + summary gives the rows of the refreshed summary: {same}")
    del folded

    if not args.no_exports:
        with store.transaction() as con:  # a kept store: start the target from scratch
            con.execute("DELETE FROM suppression_export_state WHERE name = 'bench'")
            con.execute("DELETE FROM suppression_export_targets WHERE name = 'bench'")
        with Phase("end to end: policy + ses-csv + target state"):
            e2e = exports.export_suppressions(
                store, policy, "ses-csv", now=NOW, out=tmp / "e2e", since_last="bench"
            )
        print(f"  added {e2e.added:,}")
    peak = Phase.worst_peak
    print(f"whole run peak RSS (largest phase peak) {peak:.0f} MB; end: {load()}")
    print(f"targets: policy {fresh.seconds:.2f} s (fresh summary), {small.seconds:.2f} s "
          f"({args.batch:,} unfolded), {tail.seconds:.2f} s ({args.tail:,} unfolded) < 10 s: "
          f"{max(fresh.seconds, small.seconds, tail.seconds) < 10}; "
          f"slowest export {worst:.2f} s < 5 s: {worst < 5}; memory < 2048 MB: {peak < 2048}; "
          f"full refresh {full.seconds:.1f} s, incremental {inc.seconds:.2f} s "
          f"({args.batch:,}), {tail_fold.seconds:.2f} s ({args.tail:,})")  # fmt: skip


if __name__ == "__main__":
    main()
