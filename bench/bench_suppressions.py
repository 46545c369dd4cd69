"""Benchmark: the suppression policy over N delivery rows and M bounce rows, then every export.

Rows are synthesised directly in DuckDB (generate_series), no log parsing involved:
  deliveries  85% sent, 6% deferred (a third of them in expired messages), 5% hard bounces
              (userunknown 5.1.1), 3% soft bounces (mailboxfull 5.2.2), 1% blocked (sender-side)
  bounces     DSNs: 80% userunknown 5.1.1, 20% mailboxfull 5.2.2; plus complaints (5% of M)
Targets (issue 5): policy < 10 s, each export of 1 M suppressions < 5 s, memory < 2 GB.

    .venv/bin/python bench/bench_suppressions.py [--deliveries 10000000] [--bounces 1000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline import exports, suppressions
from pipeline.config import SuppressionsConfig
from pipeline.store import Store

NOW = datetime(2026, 7, 1, tzinfo=UTC)


def synthesise(store: Store, deliveries: int, bounces: int, addresses: int) -> None:
    con = store.con
    con.execute(
        f"""
        INSERT INTO message_log (message_key, host, queue_id, message_id, first_seen, last_seen,
                                 expired_at)
        SELECT 'mx|' || i, 'mx', 'Q' || i, '<' || i || '@bench>',
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i * 15552000 // {deliveries}),
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i * 15552000 // {deliveries}),
               CASE WHEN i % 100 BETWEEN 85 AND 86 THEN
                    TIMESTAMPTZ '2026-01-06 00:00:00+00' + to_seconds(i * 15552000 // {deliveries})
               END
        FROM generate_series(0, {deliveries} - 1) t(i)
        """
    )
    con.execute(
        f"""
        INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,
                                  status, dsn, reply_code, diagnostic, reason, category, hard,
                                  rule_id, line_offset)
        SELECT 'mx|' || i, 'mx', 'Q' || i,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i * 15552000 // {deliveries}),
               'smtp',
               'user' || (hash(i) % {addresses}) || '@d' || (hash(i) % {addresses}) % 5000 || '.example',
               CASE WHEN m < 85 THEN 'sent' WHEN m < 91 THEN 'deferred'
                    WHEN m < 96 THEN 'bounced' WHEN m < 99 THEN 'bounced' ELSE 'bounced' END,
               CASE WHEN m < 85 THEN '2.0.0' WHEN m < 91 THEN '4.4.1' WHEN m < 96 THEN '5.1.1'
                    WHEN m < 99 THEN '5.2.2' ELSE '5.7.1' END,
               CASE WHEN m < 85 THEN 250 WHEN m < 91 THEN NULL WHEN m < 96 THEN 550
                    WHEN m < 99 THEN 552 ELSE 554 END,
               CASE WHEN m < 85 THEN NULL WHEN m < 91 THEN 'connect to mx: Connection timed out'
                    WHEN m < 96 THEN '550 5.1.1 user unknown' WHEN m < 99 THEN '552 mailbox full'
                    ELSE '554 5.7.1 blocked using zen.spamhaus.org' END,
               CASE WHEN m < 85 THEN 'delivered' WHEN m < 91 THEN 'networkerror'
                    WHEN m < 96 THEN 'userunknown' WHEN m < 99 THEN 'mailboxfull'
                    ELSE 'blocked' END,
               'c', m BETWEEN 91 AND 95, 'bench', i
        FROM (SELECT i, i % 100 AS m FROM generate_series(0, {deliveries} - 1) t(i))
        """
    )
    con.execute(
        f"""
        INSERT INTO bounce_reports (report_hash, source, message_index, "offset", kind, agent,
                                    report_date, ingested_at)
        SELECT 'h' || i, 'bench', 1, 0, CASE WHEN i % 20 = 0 THEN 'complaint' ELSE 'bounce' END,
               'rfc3464', TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i * 15552000 // {bounces}),
               TIMESTAMPTZ '2026-06-30 00:00:00+00'
        FROM generate_series(0, {bounces} - 1) t(i)
        """
    )
    con.execute(
        f"""
        INSERT INTO bounce_recipients (report_hash, position, recipient, action, status, reason,
                                       category, rule_id)
        SELECT 'h' || i, 1,
               'user' || (hash(i + 7) % {addresses}) || '@d' || (hash(i + 7) % {addresses}) % 5000 || '.example',
               'failed', CASE WHEN i % 5 = 0 THEN '5.2.2' ELSE '5.1.1' END,
               CASE WHEN i % 5 = 0 THEN 'mailboxfull' ELSE 'userunknown' END, 'c', 'bench'
        FROM generate_series(0, {bounces} - 1) t(i) WHERE i % 20 <> 0
        """
    )
    con.execute(
        f"""
        INSERT INTO complaint_reports (report_hash, feedback_type, original_rcpt_to, arrival_date)
        SELECT 'h' || i, 'abuse',
               ['user' || (hash(i + 7) % {addresses}) || '@d' || (hash(i + 7) % {addresses}) % 5000 || '.example'],
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i * 15552000 // {bounces})
        FROM generate_series(0, {bounces} - 1) t(i) WHERE i % 20 = 0
        """
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=10_000_000)
    ap.add_argument("--bounces", type=int, default=1_000_000)
    ap.add_argument("--addresses", type=int, default=2_500_000)
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit")
    args = ap.parse_args()
    policy = SuppressionsConfig()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.duckdb")
        store.con.execute(f"SET memory_limit = '{args.memory_limit}'")
        t = time.perf_counter()
        synthesise(store, args.deliveries, args.bounces, args.addresses)
        print(f"synthesised {args.deliveries:,} deliveries, {args.bounces:,} bounce rows "
              f"in {time.perf_counter() - t:.1f} s")  # fmt: skip

        t = time.perf_counter()
        suppressions.prepare(store, now=NOW)
        print(f"address normalisation check: {time.perf_counter() - t:.2f} s")

        t = time.perf_counter()
        frame = suppressions.decisions_frame(store, policy, now=NOW)
        policy_s = time.perf_counter() - t
        kinds = frame.group_by("kind").len().sort("kind").rows()
        print(f"policy: {frame.height:,} suppressions in {policy_s:.2f} s  {dict(kinds)}  "
              f"(peak RSS so far {peak_mb():.0f} MB)")  # fmt: skip

        worst = 0.0
        for fmt in exports.EXPORTERS:
            t = time.perf_counter()
            files, adds, _, skipped, _ = exports.export_frame(fmt, frame)
            out = Path(tmp) / fmt.name
            exports._write_files(files, out, directory=True)
            took = time.perf_counter() - t
            worst = max(worst, took)
            size = sum(len(text) for _, text in files)
            print(f"  export {fmt.name:22s} {took:6.2f} s  {len(files):5d} files "
                  f"{size / 1e6:8.1f} MB  {adds.height:,} rows, {skipped.height:,} skipped")  # fmt: skip

        t = time.perf_counter()
        r = exports.export_suppressions(
            store, policy, "ses-csv", now=NOW, out=Path(tmp) / "e2e", since_last="bench"
        )
        e2e = time.perf_counter() - t
        print(f"end to end (policy + ses-csv + target state): {e2e:.2f} s, added {r.added:,}")
        peak = peak_mb()
        print(f"peak RSS {peak:.0f} MB")
        print(f"targets: policy {policy_s:.2f} s < 10 s: {policy_s < 10}; "
              f"slowest export {worst:.2f} s < 5 s: {worst < 5}; memory < 2048 MB: {peak < 2048}")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
