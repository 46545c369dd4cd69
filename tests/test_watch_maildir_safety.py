"""Mailbox safety (issue 12, item 7): a Maildir message the daemon cannot read is never moved to
cur/ without a row. It stays in new/, is logged and retried; after MAILDIR_READ_ATTEMPTS failures
it gets a quarantine row and only then moves on.

Real unreadable entries: a file with mode 000 (as root, the daemon runs in a child without the
capabilities that let root read any file), and entries that fail for root too: a FIFO, a
dangling symbolic link, a symbolic link to a real message."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtalens.pipeline import watch
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import WatchConfig

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]
# linux/capability.h, linux/prctl.h
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with Store.open(db, read_only=True) as s:
        return s.con.execute(sql).fetchall()


def without_dac_override() -> None:
    """In a child before exec: as root, drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so the process (still uid 0, so it can run this venv's Python) is refused a
    mode-000 file like any user; prctl(2) PR_CAPBSET_DROP, capabilities(7)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def watch_once(db: Path, md: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "watch", "--once", "--db", str(db), "--maildir", str(md)],
        capture_output=True, text=True, timeout=120, preexec_fn=without_dac_override,
    )  # fmt: skip


def test_a_message_without_read_permission_stays_in_new(tmp_path: Path) -> None:
    md = maildir(tmp_path / "Maildir")
    shutil.copy(FIXTURES / "postfix-userunknown.eml", md / "new" / "1700000001.M1P1.host")
    locked = md / "new" / "1700000002.M1P1.host"
    shutil.copy(FIXTURES / "postfix-expired.eml", locked)
    db = tmp_path / "w.duckdb"
    locked.chmod(0o000)
    try:
        run = watch_once(db, md)
    finally:
        locked.chmod(0o644)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (md / "new").iterdir()) == [locked.name]
    assert sorted(p.name for p in (md / "cur").iterdir()) == ["1700000001.M1P1.host:2,"]
    logged = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    warned = [e for e in logged if e["msg"].startswith("cannot read Maildir message")]
    assert [(w["path"], w["error"], w["attempt"]) for w in warned] == [
        (str(locked), "permission denied", 1)
    ]
    assert rows(db, "SELECT count(*) FROM bounce_reports") == [(1,)]
    assert rows(db, "SELECT count(*) FROM quarantine") == [(0,)]
    # fixed: the next run reads it and moves it like any other
    run = watch_once(db, md)
    assert run.returncode == 0, run.stderr
    assert list((md / "new").iterdir()) == []
    assert rows(db, "SELECT count(*) FROM bounce_reports") == [(2,)]


def test_unreadable_entries_are_retried_then_quarantined_then_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md = maildir(tmp_path / "Maildir")
    new = md / "new"
    shutil.copy(FIXTURES / "postfix-userunknown.eml", new / "1700000001.M1P1.host")
    os.mkfifo(new / "1700000002.M1P1.host")  # opening it for reading would block
    (new / "1700000003.M1P1.host").symlink_to(tmp_path / "gone.eml")  # dangling
    target = tmp_path / "elsewhere.eml"
    shutil.copy(FIXTURES / "postfix-expired.eml", target)
    (new / "1700000004.M1P1.host").symlink_to(target)  # not followed
    bad = ["1700000002.M1P1.host", "1700000003.M1P1.host", "1700000004.M1P1.host"]
    db = tmp_path / "w.duckdb"
    monkeypatch.setattr(watch, "MAILDIR_RETRY_AFTER", 3600.0)
    w = Watcher(WatchConfig(db=str(db), maildirs=(str(md),)))
    w.window(final=True)  # a last window waits for the decoding workers
    assert sorted(p.name for p in new.iterdir()) == bad
    assert [p.name for p in (md / "cur").iterdir()] == ["1700000001.M1P1.host:2,"]
    assert rows(db, "SELECT count(*) FROM quarantine") == [(0,)]
    assert w.metrics.value("mtalens_mailbox_read_failures_total") == 3
    # waiting for their retry, they do not make every wake-up a write window
    assert w._sources_state() is not None
    w.window()
    assert w.metrics.value("mtalens_mailbox_read_failures_total") == 3  # not tried again yet

    monkeypatch.setattr(watch, "MAILDIR_RETRY_AFTER", 0.0)
    for _ in range(watch.MAILDIR_READ_ATTEMPTS - 2):
        w._unreadable = {p: (n, 0.0) for p, (n, _) in w._unreadable.items()}  # retries due
        w.window(final=True)
        assert sorted(p.name for p in new.iterdir()) == bad  # still waiting
    w.window(final=True)  # the last attempt
    assert list(new.iterdir()) == []
    assert sorted(p.name for p in (md / "cur").iterdir()) == sorted(
        [f"{n}:2," for n in bad] + ["1700000001.M1P1.host:2,"]
    )
    got = rows(db, "SELECT source, reason, detail, raw FROM quarantine ORDER BY source")
    assert [(Path(str(src)).name, reason, raw) for src, reason, _, raw in got] == [
        (n, "unreadable", None) for n in bad
    ]
    details = [str(d) for _, _, d, _ in got]
    assert details[0].startswith("not a regular file; moved to cur/1700000002.M1P1.host:2,")
    assert details[1].startswith("a symbolic link (not followed)")
    assert details[2].startswith("a symbolic link (not followed)")
    assert w.metrics.value("mtalens_mailbox_read_failures_total") == 3 * watch.MAILDIR_READ_ATTEMPTS
    assert rows(db, "SELECT count(*) FROM bounce_reports") == [(1,)]  # the symlink's target: no
