"""A wake-up with no source changed does not open the store (idle CPU), and one that did
change still commits."""

from __future__ import annotations

from pathlib import Path

from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import WatchConfig

LINE = (
    "Mar  2 06:00:0{n} mx1 postfix/smtp[201]: 4A1B2C3D4{n}: to=<a@example.com>, relay=mx.example"
    ".com[192.0.2.1]:25, delay=1.5, delays=0.1/0.2/0.3/0.9, dsn=2.0.0, status=sent (250 ok)\n"
)


def _deliveries(db: Path) -> int:
    with Store.open(db, read_only=True) as s:
        row = s.con.execute("SELECT count(*) FROM delivery_log").fetchone()
        return int(row[0]) if row else -1


def test_idle_wake_ups_skip_the_store_and_new_lines_do_not(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "w.duckdb"
    log.write_text(LINE.format(n=1))
    w = Watcher(WatchConfig(db=str(db), logs=(str(log),), timezone="UTC", year=2026))
    w.window()
    w.window()
    done = w.stats.windows
    w.window()
    w.window()
    assert w.stats.windows == done  # nothing changed: no window
    assert w.metrics.value("mtalens_idle_windows_skipped_total") == 2
    with log.open("a") as fh:
        fh.write(LINE.format(n=2)[:40])  # a partial line changes the size: a window runs
    w.window()
    assert w.stats.windows == done + 1
    with log.open("a") as fh:
        fh.write(LINE.format(n=2)[40:])
    w.window()
    w.close()
    assert w.stats.windows == done + 2
    assert _deliveries(db) == 2
