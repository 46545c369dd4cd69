"""The core CLI commands through typer's runner, and one real subprocess for the console script."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
runner = CliRunner()


# the hand-written cases whose totals these tests count (problems.log and the real Postfix log
# have tests of their own)
CASES = [str(SAMPLES / f) for f in ("mx1-rfc3164.log", "rsyslog-rfc3339.log", "journal-short-iso.log",
                                    "rfc5424.log", "year-rollover.log", "bad-input.log")]  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, ["ingest", "--db", path, "--year", "2026", "--timezone", "UTC", *CASES])
    assert r.exit_code == 0, r.output
    return path


def test_ingest_summary_adds_up(tmp_path: Path) -> None:
    path = str(tmp_path / "c.duckdb")
    r = runner.invoke(
        app,
        [
            "ingest",
            "--db",
            path,
            "--year",
            "2026",
            "--timezone",
            "UTC",
            "--format",
            "json",
            str(SAMPLES),
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["lines_read"] == s["lines_stored"] + s["lines_ignored"] + s["lines_quarantined"]
    assert s["lines_quarantined"] > 0 and s["lines_stored"] > 100
    again = runner.invoke(
        app,
        [
            "ingest",
            "--db",
            path,
            "--year",
            "2026",
            "--timezone",
            "UTC",
            "--format",
            "json",
            str(SAMPLES),
        ],
    )
    assert json.loads(again.output)["lines_read"] == 0


def test_report_json_totals(db: str) -> None:
    r = runner.invoke(app, ["report", "--db", db, "--format", "json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    totals = rep["totals"][0]
    assert totals["bounced"] == 3  # outlook 5.1.10, virtual quota, relay access denied (rfc5424)
    assert totals["expired"] == 1
    assert {d["domain"] for d in rep["domains"]} >= {"slow.example", "outlook.example"}
    assert rep["sasl_failures"][0]["client_ip"] == "198.51.100.77"


def test_report_time_range_excludes(db: str) -> None:
    r = runner.invoke(
        app, ["report", "--db", db, "--format", "json", "--section", "totals",
              "--since", "2026-11-28T09:05", "--until", "2026-11-28T09:15"]
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    totals = json.loads(r.output)[0]
    assert totals["delivered"] == 1  # dave@slow.example at 09:06:20
    assert totals["bounced"] == 0


def test_report_csv_section(db: str) -> None:
    r = runner.invoke(app, ["report", "--db", db, "--format", "csv", "--section", "rejects"])
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert any(row["dsn"] == "5.7.1" and row["service"] == "postscreen" for row in rows)


def test_stats_delays(db: str) -> None:
    r = runner.invoke(app, ["stats", "delays", "--db", db, "--by", "domain", "--format", "json"])
    assert r.exit_code == 0, r.output
    by = {row["key"]: row for row in json.loads(r.output)}
    assert by["slow.example"]["count"] == 1
    assert by["slow.example"]["delay_max"] == 309
    assert by["slow.example"]["before_queue_p50"] == 306
    r2 = runner.invoke(app, ["stats", "delays", "--db", db, "--by", "nonsense"])
    assert r2.exit_code == 2


def test_query_json_is_one_array(db: str) -> None:
    r = runner.invoke(app, ["query", "--db", db, "--format", "json",
                            "SELECT recipient, status FROM recipient_outcomes ORDER BY recipient LIMIT 2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert isinstance(data, list) and len(data) == 2 and set(data[0]) == {"recipient", "status"}


def test_query_is_read_only(db: str) -> None:
    r = runner.invoke(app, ["query", "--db", db, "DELETE FROM delivery_log"])
    assert r.exit_code == 2
    assert "read-only" in r.output.lower() or "read only" in r.output.lower()


def test_unreadable_path_one_line_error(tmp_path: Path) -> None:
    r = runner.invoke(
        app, ["ingest", "--db", str(tmp_path / "x.duckdb"), str(tmp_path / "missing.log")]
    )
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "no such file" in r.output


def test_locked_store_is_a_one_line_error(db: str) -> None:
    # a second process holds the store read-write
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time, sys; c = duckdb.connect({db!r}); print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        out = subprocess.run(
            [sys.executable, "-m", "mtalens.pipeline.cli", "ingest", "--db", db, str(SAMPLES)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "MTALENS_LOCK_WAIT": "1"},  # a writer waits too (store.py)
        )  # fmt: skip
        assert out.returncode == 2
        assert out.stderr.strip().startswith("mtalens:") and "locked" in out.stderr
        assert "waited 1 s" in out.stderr
        assert out.stderr.strip().count("\n") == 0
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_help_lists_contract_commands() -> None:
    r = runner.invoke(app, ["--help"])
    for cmd in ("ingest", "report", "query", "stats", "bounces", "dns"):
        assert cmd in r.output
