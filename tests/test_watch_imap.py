"""`mtalens watch --imap imaps://...` against a real Dovecot on 127.0.0.1 (tests/lab/dovecot_lab.py):
new mail is stored while the daemon runs, flagged only after its commit, and `kill -9` at any
moment loses and duplicates nothing (issue 13 item 1)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtalens.pipeline.store import Store, StoreError
from tests.conftest import need_binary
from tests.lab.dovecot_lab import DovecotServer
from tests.test_bounces_imap import PASSWORD, SAMPLES, _flags, _hashes, _stored_hashes
from tests.test_watch_peers import CLI

USERS = ("live", "killed")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer({u: PASSWORD for u in USERS}, binary=need_binary("dovecot")) as server:
        yield server


def append(dovecot: DovecotServer, user: str, files: list[Path]) -> None:
    con = dovecot.client(user, PASSWORD)
    try:
        for f in files:
            typ, data = con.append("INBOX", "", "", f.read_bytes())
            assert typ == "OK", data
    finally:
        con.logout()


def stored(db: Path) -> set[str] | None:
    try:
        with Store.open(db, read_only=True, lock_wait=0.2) as store:
            return _stored_hashes(store)
    except StoreError:
        return None  # no store yet, or a window holds it


def start(dovecot: DovecotServer, user: str, tmp: Path, err: Path) -> subprocess.Popen[bytes]:
    conf = tmp / "mtalens.toml"
    conf.write_text(f'[imap]\nca_file = "{dovecot.ca_file}"\n[watch]\nimap_poll_interval = 1\n')
    log = tmp / "mail.log"
    log.touch()
    env = {**os.environ, "MTALENS_IMAP_PASSWORD": PASSWORD}
    with open(err, "ab") as fh:
        return subprocess.Popen(
            [*CLI, "watch", "--config", str(conf), "--db", str(tmp / "w.duckdb"),
             "--log", str(log), "--imap", dovecot.url(user), "--timezone", "UTC",
             "--commit-interval", "0.1", "--poll-interval", "0.2"],
            stdout=subprocess.DEVNULL, stderr=fh, env=env,
        )  # fmt: skip


def wait_stored(db: Path, want: set[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (got := stored(db)) != want:
        assert time.monotonic() < deadline, f"stored {len(got or ())} of {len(want)}"
        time.sleep(0.3)


def test_new_mail_is_stored_while_the_daemon_runs_then_flagged(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    err = tmp_path / "watch.err"
    half = len(SAMPLES) // 2
    append(dovecot, "live", SAMPLES[:half])
    proc = start(dovecot, "live", tmp_path, err)
    try:
        wait_stored(tmp_path / "w.duckdb", set(_hashes(dovecot, "live").values()))
        append(dovecot, "live", SAMPLES[half:])  # arrives while it runs
        on_server = _hashes(dovecot, "live")
        assert len(on_server) == len(SAMPLES)
        wait_stored(tmp_path / "w.duckdb", set(on_server.values()))
        deadline = time.monotonic() + 30
        while not all("\\Seen" in f for f in _flags(dovecot, "live").values()):
            assert time.monotonic() < deadline, "not every stored message was flagged"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()
    assert "Traceback" not in err.read_text()
    with Store.open(tmp_path / "w.duckdb", read_only=True) as store:
        rows = store.con.execute("SELECT count(*), count(DISTINCT report_hash) FROM bounce_reports")
        total, distinct = rows.fetchone() or (0, 0)
    assert total == distinct  # nothing stored twice


@pytest.mark.slow
def test_kill_9_while_mail_arrives_loses_and_duplicates_nothing(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    err = tmp_path / "watch.err"
    rng = random.Random(12)
    files = list(SAMPLES)
    rng.shuffle(files)
    chunks = [files[i::4] for i in range(4)]
    for chunk in chunks:
        proc = start(dovecot, "killed", tmp_path, err)
        append(dovecot, "killed", chunk)
        time.sleep(rng.uniform(0.3, 2.5))  # somewhere between fetch, commit and flag
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    proc = start(dovecot, "killed", tmp_path, err)
    try:
        on_server = _hashes(dovecot, "killed")
        wait_stored(tmp_path / "w.duckdb", set(on_server.values()))
        deadline = time.monotonic() + 30
        while not all("\\Seen" in f for f in _flags(dovecot, "killed").values()):
            assert time.monotonic() < deadline, "stored messages left unflagged"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    with Store.open(tmp_path / "w.duckdb", read_only=True) as store:
        total, distinct = store.con.execute(
            "SELECT count(*), count(DISTINCT report_hash) FROM bounce_reports"
        ).fetchone() or (0, 0)
        quarantined = store.con.execute(
            "SELECT count(*), count(DISTINCT raw) FROM quarantine WHERE source_kind = 'mail'"
        ).fetchone() or (0, 0)
    assert total == distinct and quarantined[0] == quarantined[1]
    assert "Traceback" not in err.read_text()
