"""The suppression summary is kept current by the writers (pipeline/upkeep.py): built by the
first writable `suppressions` command, folded into by `ingest`, `bounces ingest` and the
daemon, and never created by them on a store that has none."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline import suppressions, upkeep
from mtalens.pipeline.cli import app
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import WatchConfig

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "sample_logs" / "postfix"
BOUNCES = ROOT / "sample_logs" / "bounces" / "postfix-real"
runner = CliRunner()


def ingest(db: Path, *logs: Path) -> None:
    r = runner.invoke(app, ["ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC",
                            "--no-progress", *map(str, logs)])  # fmt: skip
    assert r.exit_code == 0, r.output


def state(db: Path) -> suppressions.SummaryState | None:
    with Store.open(db, read_only=True) as store:
        return suppressions.summary_state(store)


def rows(db: Path, table: str) -> int:
    with Store.open(db, read_only=True) as store:
        return int(store.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def listed(db: Path) -> list[dict[str, object]]:
    r = runner.invoke(app, ["suppressions", "list", "--db", str(db), "--format", "json",
                            "--as-of", "2026-12-31T00:00:00Z"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return list(json.loads(r.stdout))


def test_writers_fold_into_a_summary_only_once_it_exists(tmp_path: Path) -> None:
    db = tmp_path / "u.duckdb"
    ingest(db, LOGS / "mx1-rfc3164.log")
    assert state(db) is None  # ingest alone builds nothing: stores without suppressions pay 0

    first = listed(db)
    built = state(db)
    assert built is not None and built.delivery_rows == rows(db, "delivery_log")

    ingest(db, LOGS / "problems.log")
    after_ingest = state(db)
    assert after_ingest is not None
    assert after_ingest.delivery_rows == rows(db, "delivery_log") > built.delivery_rows

    r = runner.invoke(app, ["bounces", "ingest", "--db", str(db), str(BOUNCES)])
    assert r.exit_code == 0, r.output
    after_bounces = state(db)
    assert after_bounces is not None
    assert after_bounces.bounce_recipient_rows == rows(db, "bounce_recipients") > 0

    # the folded summary gives what an evaluation without any summary gives
    folded = listed(db)
    with Store.open(db) as store:
        store.con.execute("DELETE FROM suppression_summary_state")
    assert state(db) is None
    with Store.open(db, read_only=True) as store:  # read-only: nothing can be rebuilt
        assert not suppressions.summary_usable(store, SuppressionsConfig())
    r = runner.invoke(app, ["suppressions", "list", "--db", str(db), "--format", "json",
                            "--as-of", "2026-12-31T00:00:00Z"])  # fmt: skip
    assert json.loads(r.stdout) == folded
    assert len(folded) > len(first)


def test_daemon_folds_at_most_every_interval_and_at_shutdown(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    log = tmp_path / "mail.log"
    data = (LOGS / "problems.log").read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    log.write_bytes(data[:half])
    ingest(db, LOGS / "mx1-rfc3164.log")
    listed(db)  # builds the summary
    cfg = WatchConfig(db=str(db), logs=(str(log),), timezone="UTC", year=2026, drain_grace=0.0)
    w = Watcher(cfg)
    try:
        w.window()
        n1 = rows(db, "delivery_log")
        s1 = state(db)  # the store is closed between write windows
        assert s1 is not None and s1.delivery_rows == n1  # the first window folds

        with open(log, "ab") as fh:
            fh.write(data[half:])
        w.window()  # within the interval: rows stored, not folded yet
        n2 = rows(db, "delivery_log")
        s2 = state(db)
        assert n2 > n1 and s2 is not None and s2.delivery_rows == n1

        w.window(final=True)  # shutdown folds whatever waits
        s3 = state(db)
        assert s3 is not None and s3.delivery_rows == n2
    finally:
        w.close()


def test_fold_with_nothing_new_skips_the_address_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "n.duckdb"
    ingest(db, LOGS / "mx1-rfc3164.log")
    listed(db)  # builds
    scans: list[int] = []
    real = suppressions.prepare

    def counting(
        store: Store, *, now: datetime, since: suppressions.SummaryState | None = None
    ) -> int:
        scans.append(1)
        assert since is not None  # a summary exists: only the new rows' addresses are read
        return real(store, now=now, since=since)

    monkeypatch.setattr(suppressions, "prepare", counting)
    with Store.open(db) as store:
        assert upkeep.fold_new_rows(store, SuppressionsConfig()) is not None
    assert scans == []  # nothing new: no scan of every raw address
    ingest(db, LOGS / "problems.log")  # the CLI folds, with a scan
    assert scans == [1]
    with Store.open(db) as store:
        done = upkeep.fold_new_rows(store, SuppressionsConfig())
    assert done is not None and done.new_deliveries == 0 and scans == [1]


def test_fold_normalises_the_new_rows_addresses_only(tmp_path: Path) -> None:
    """With a summary, the fold's address scan reads the rows past its watermarks: a raw
    address only Python normalises, in a new row, is normalised and folded; one in a folded
    row that was never normalised (the summary was refreshed without upkeep) is not looked at
    again."""
    db = tmp_path / "q.duckdb"
    policy = SuppressionsConfig()
    t = datetime(2026, 3, 1, tzinfo=UTC)

    def bounce(store: Store, key: str, rcpt: str) -> None:
        store.con.execute(
            "INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service,"
            " recipient, status, dsn, reply_code, reason, category, rule_id, line_offset)"
            " VALUES (?, 'mx', 'Q', ?, 'smtp', ?, 'bounced', '5.1.1', 550, 'userunknown', 'c',"
            " 'r', 1)",
            [key, t, rcpt],
        )

    with Store.open(db) as store:
        bounce(store, "m1", '"old one"@example.com')
        suppressions.refresh_suppression_summary(store, policy)  # no upkeep: not normalised
        bounce(store, "m2", '"new one"@example.com')
        done = upkeep.fold_new_rows(store, policy, now=t)
        assert done is not None and done.new_deliveries == 1
        raws = {r[0] for r in store.con.execute("SELECT raw FROM suppression_addresses").fetchall()}
        assert raws == {'"new one"@example.com'}
        listed = {s.address for s in suppressions.list_suppressions(store, policy, now=t)}
        assert listed == {'"new one"@example.com'}
        # a full prepare (what a store without a summary gets) still finds the old one
        suppressions.prepare(store, now=t)
        raws = {r[0] for r in store.con.execute("SELECT raw FROM suppression_addresses").fetchall()}
        assert raws == {'"new one"@example.com', '"old one"@example.com'}
