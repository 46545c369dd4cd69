"""Writers wait for the store's lock like readers (issue 10, item 8): a real second process
holds the DuckDB file, and `mtalens ingest` / `suppressions add` either get it when it is
released or give up after `$MTALENS_LOCK_WAIT` with one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mtalens.pipeline.cli import run
from mtalens.pipeline.store import Store, StoreError, lock_wait_seconds

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
ONE_LOG = str(SAMPLES / "mx1-rfc3164.log")


@contextmanager
def holder(db: Path, *, seconds: float, read_only: bool = False) -> Iterator[subprocess.Popen[str]]:
    """Another process with ``db`` open for ``seconds`` (then it closes it and exits)."""
    code = (
        "import duckdb, sys, time\n"
        f"c = duckdb.connect({str(db)!r}, read_only={read_only!r})\n"
        "print('ready', flush=True)\n"
        f"time.sleep({seconds!r})\n"
        "c.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def mtalens(*args: str, wait: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "MTALENS_LOCK_WAIT": wait}
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "mtalens.pipeline.cli", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    return out, time.monotonic() - t0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lock.duckdb"
    assert run(["ingest", "--db", str(path), "--year", "2026", "--timezone", "UTC", ONE_LOG]) == 0
    return path


def test_ingest_waits_for_a_writer_to_finish(db: Path) -> None:
    with holder(db, seconds=2):
        out, spent = mtalens(
            "ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC", str(SAMPLES),
            wait="30",
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "lines read" in out.stdout
    assert spent >= 1.5  # it did wait for the holder (released 2 s after it was ready)
    with Store.open(db, read_only=True) as store:
        row = store.con.execute("SELECT count(DISTINCT source_key) FROM checkpoints").fetchone()
    assert row is not None and row[0] > 1  # the other sample files were ingested


def test_suppressions_add_waits_too(db: Path) -> None:
    with holder(db, seconds=2):
        out, _ = mtalens("suppressions", "add", "--db", str(db), "w@example.com", wait="30")
    assert out.returncode == 0, out.stderr
    with Store.open(db, read_only=True) as store:
        rows = store.con.execute("SELECT address FROM suppression_manual").fetchall()
    assert rows == [("w@example.com",)]


def test_writer_gives_up_after_the_wait_with_one_line(db: Path) -> None:
    with holder(db, seconds=120) as proc:
        out, spent = mtalens("ingest", "--db", str(db), str(SAMPLES), wait="1")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert line.startswith("mtalens: ") and "\n" not in line
    assert "store is locked" in line and "waited 1 s" in line and "MTALENS_LOCK_WAIT" in line
    assert f"PID {proc.pid}" in line
    assert 1.0 <= spent < 15  # about 1 s of waiting plus the interpreter's start-up


def test_no_wait_fails_at_once(db: Path) -> None:
    with holder(db, seconds=120):
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="store is locked") as info:
            Store.open(db, lock_wait=0)
        assert time.monotonic() - t0 < 1.0
    assert "waited" not in str(info.value)


def test_in_process_writer_waits_then_opens(db: Path) -> None:
    with holder(db, seconds=1.5):
        t0 = time.monotonic()
        with Store.open(db, lock_wait=30) as store:
            assert not store.read_only
        assert time.monotonic() - t0 >= 1.0


def test_suppressions_list_does_not_wait_behind_a_reader(db: Path) -> None:
    # a notebook holds the store read-only: `list` tries read-write without waiting, then
    # reads alongside it (it does not spend $MTALENS_LOCK_WAIT on the read-write try)
    with holder(db, seconds=120, read_only=True):
        out, spent = mtalens("suppressions", "list", "--db", str(db), wait="30")
    assert out.returncode == 0, out.stderr
    assert spent < 20


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_bad_lock_wait_is_a_one_line_error(
    db: Path, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTALENS_LOCK_WAIT", value)
    with pytest.raises(StoreError, match="MTALENS_LOCK_WAIT"):
        lock_wait_seconds()
    capsys.readouterr()
    assert run(["query", "--db", str(db), "SELECT 1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtalens: MTALENS_LOCK_WAIT=") and "\n" not in err


@pytest.mark.parametrize(("value", "seconds"), [("", 10.0), ("0", 0.0), ("2.5", 2.5)])
def test_lock_wait_values(value: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTALENS_LOCK_WAIT", value)
    assert lock_wait_seconds() == seconds
