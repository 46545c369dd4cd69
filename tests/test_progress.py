"""The progress line of long commands (pipeline/progress.py): rate and time left, then a final
line; and the commands that draw it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from mtalens.pipeline.progress import Progress, clock_text, human_bytes

CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]
ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_units() -> None:
    assert [human_bytes(n) for n in (999, 1000, 98_200_000, 801_600_000, 1_230_000_000)] == [
        "999 B", "1 kB", "98.2 MB", "802 MB", "1.23 GB",
    ]  # fmt: skip
    assert clock_text(3725.4) == "1:02:05" and clock_text(0.2) == "0:00:00"


def test_rate_and_time_left_then_a_final_line() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("ingesting", 800_000_000, stream=out, clock=clock, width=100) as bar:
        clock.t += 4.0
        bar.update(200_000_000)  # 50 MB/s: 600 MB left take 12 s
        line = out.getvalue().split("\r")[-1]
        assert "25%" in line and "200 MB of 800 MB" in line and "50 MB/s" in line
        assert "left 0:00:12" in line
        assert "[#######-----------------------]" in line  # a quarter of a 30-wide bar
        clock.t += 0.05
        bar.update(1)  # redrawn at most every 0.2 s
        assert out.getvalue().count("\r") == 1
        clock.t += 12.0
        bar.update(599_999_999)
    final = out.getvalue().split("\r")[-1]
    assert final == "ingesting  800 MB in 0:00:16 (49.8 MB/s)\x1b[K\n"  # 16.05 s in all


def test_items_and_no_total() -> None:
    out, clock = io.StringIO(), Clock()
    bar = Progress("decoding", None, items="messages", stream=out, clock=clock, width=120)
    clock.t += 2.0
    bar.count(40)
    bar.update(4_000_000)
    line = out.getvalue().split("\r")[-1].removesuffix("\x1b[K")
    assert "4 MB" in line and "40 messages" in line and "2 MB/s" in line
    assert "left" not in line and "[" not in line  # no total: no bar, no estimate
    bar.finish()
    assert "40 messages in 0:00:02" in out.getvalue()


def test_the_line_fits_a_narrow_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    bar = Progress("ingesting", 10_000, stream=out, clock=clock, width=40)
    clock.t += 1
    bar.update(5_000)
    assert len(out.getvalue().split("\r")[-1].removesuffix("\x1b[K")) <= 39


def test_ingest_draws_it_when_asked(tmp_path: Path) -> None:
    log = ROOT / "sample_logs" / "postfix" / "problems.log"
    run = subprocess.run(
        [*CLI, "ingest", "--db", str(tmp_path / "p.duckdb"), "--progress", "--year", "2026",
         str(log)], capture_output=True, timeout=120, env={"COLUMNS": "120", "PATH": ""},
    )  # fmt: skip
    err = run.stderr.decode()  # bytes: text mode would turn the carriage returns into newlines
    assert run.returncode == 0, err
    assert "\ringesting  [" in err and "left 0:00:0" in err
    assert re.search(r"\ringesting  [\d.]+ kB in 0:00:0\d \([\d.]+ [kM]B/s\)", err), err
    quiet = subprocess.run(
        [*CLI, "ingest", "--db", str(tmp_path / "q.duckdb"), "--year", "2026", str(log)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "ingesting" not in quiet.stderr  # not a terminal: no progress line
