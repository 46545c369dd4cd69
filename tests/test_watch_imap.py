"""`mtalens watch --imap imaps://...` against a real Dovecot on 127.0.0.1 (tests/lab/dovecot_lab.py):
new mail is stored while the daemon runs, flagged only after its commit, and `kill -9` at any
moment loses and duplicates nothing (issue 13 item 1). Between two looks the watcher waits with
IDLE (RFC 2177) where the server offers it, polls where it does not, stops within seconds
either way, and takes a connection dropped while idle as a failure to reconnect after."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mtalens.pipeline import imap
from mtalens.pipeline.store import Store, StoreError
from tests.conftest import need_binary
from tests.lab.dovecot_lab import DovecotServer
from tests.test_bounces_imap import PASSWORD, SAMPLES, _flags, _hashes, _stored_hashes
from tests.test_watch_peers import CLI

USERS = ("live", "killed", "idle", "stopped", "kick", "kill", "refused")
# Dovecot's list after login, less IDLE: a server that cannot push new mail
NO_IDLE = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE UIDPLUS MOVE"


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


def start(
    dovecot: DovecotServer, user: str, tmp: Path, err: Path, *, imap_poll_interval: float = 1
) -> subprocess.Popen[bytes]:
    conf = tmp / "mtalens.toml"
    conf.write_text(
        f'[imap]\nca_file = "{dovecot.ca_file}"\n'
        f"[watch]\nimap_poll_interval = {imap_poll_interval}\n"
    )
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


def wait_stored(
    db: Path, want: set[str], timeout: float = 90, read: Callable[[Path], set[str] | None] = stored
) -> float:
    """Seconds until the store holds ``want``."""
    began = time.monotonic()
    while (got := read(db)) != want:
        assert time.monotonic() - began < timeout, f"stored {len(got or ())} of {len(want)}"
        time.sleep(0.1)
    return time.monotonic() - began


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
    before = err.stat().st_size
    proc = start(dovecot, "killed", tmp_path, err)
    try:
        # up, its signal handlers set, before anything is sent to it: everything may be stored
        # and flagged already by the killed ones, and SIGTERM at start-up would kill it
        deadline = time.monotonic() + 60
        while b'"watch started"' not in err.read_bytes()[before:]:
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()[-2000:]
            time.sleep(0.1)
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


def test_idle_stores_new_mail_within_seconds_with_an_hour_between_polls(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """With `imap_poll_interval = 3600` only IDLE can bring mail in within seconds; the daemon,
    idle, still stops at once on SIGTERM."""
    err, db = tmp_path / "watch.err", tmp_path / "w.duckdb"
    append(dovecot, "idle", SAMPLES[:1])
    proc = start(dovecot, "idle", tmp_path, err, imap_poll_interval=3600)
    try:
        wait_stored(db, set(_hashes(dovecot, "idle").values()))
        for files in (SAMPLES[1:3], SAMPLES[3:]):  # twice: IDLE is issued again after a look
            time.sleep(2)  # the look is over, flagged, idle again
            append(dovecot, "idle", files)
            took = wait_stored(db, set(_hashes(dovecot, "idle").values()), timeout=20)
            print(f"IDLE: {len(files)} messages stored {took:.2f} s after APPEND")
            assert took < 10
        deadline = time.monotonic() + 10
        while not all("\\Seen" in f for f in _flags(dovecot, "idle").values()):
            assert time.monotonic() < deadline, "not every stored message was flagged"
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()
    print(f"IDLE: the daemon stopped {time.monotonic() - stopping:.2f} s after SIGTERM")
    assert time.monotonic() - stopping < 10
    assert "Traceback" not in err.read_text() and PASSWORD not in err.read_text()


@contextlib.contextmanager
def watching(
    server: DovecotServer, user: str, tmp: Path, *, poll_interval: float
) -> Iterator[tuple[imap.MailboxWatcher, Callable[[Path], set[str] | None]]]:
    """A MailboxWatcher in this process, its batches stored under a lock (the daemon's write
    window); yields it and a reader of the stored hashes for wait_stored."""
    lock = threading.Lock()
    with Store.open(tmp / "w.duckdb") as store:

        def run(fn: Callable[[Store], Any]) -> Any:
            with lock:
                return fn(store)

        def read(_db: Path) -> set[str] | None:
            with lock:
                return _stored_hashes(store)

        options = imap.ImapOptions(password=PASSWORD, ca_file=str(server.ca_file), timeout=10)
        url = imap.parse_url(server.url(user))
        watcher = imap.MailboxWatcher(url, options, run, poll_interval=poll_interval).start()
        try:
            yield watcher, read
        finally:
            watcher.stop()


def test_without_idle_the_watcher_polls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose list after login lacks IDLE: never sent, the mailbox is polled."""

    def no_idle(*_args: object) -> bool:
        raise AssertionError("IDLE sent to a server that does not offer it")

    monkeypatch.setattr(imap._Session, "idle", no_idle)
    caplog.set_level(logging.INFO, logger="mtalens.pipeline.imap")
    server = DovecotServer({"poll": PASSWORD}, binary=need_binary("dovecot"),
                           imap_capability=NO_IDLE)  # fmt: skip
    with server, watching(server, "poll", tmp_path, poll_interval=1) as (watcher, read):
        time.sleep(1.5)  # looked once, now asleep
        append(server, "poll", SAMPLES[:2])
        took = wait_stored(tmp_path, set(_hashes(server, "poll").values()), 20, read)
        print(f"polling every 1 s: stored {took:.2f} s after APPEND")
        assert watcher.failures == 0
    assert any(r.getMessage() == "imap mailbox polls" for r in caplog.records)


def test_stop_while_idle_is_prompt(dovecot: DovecotServer, tmp_path: Path) -> None:
    with watching(dovecot, "stopped", tmp_path, poll_interval=3600) as (watcher, _read):
        time.sleep(2)  # logged in, looked, idle
        began = time.monotonic()
        watcher.stop()
        assert not watcher._thread.is_alive()
        assert time.monotonic() - began < 3


def _drop(dovecot: DovecotServer, user: str, how: str) -> None:
    """End the user's IMAP session on the server: `doveadm kick` (Dovecot says BYE), or the
    session's own process killed (the connection just closes)."""
    doveadm = [need_binary("doveadm"), "-c", str(dovecot.workdir / "dovecot.conf")]
    if how == "kick":
        done = subprocess.run([*doveadm, "kick", user], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return
    who = subprocess.run([*doveadm, "who", "-1", user], capture_output=True, text=True)
    pids = [
        int(f[2]) for f in (ln.split() for ln in who.stdout.splitlines()[1:]) if f[1:2] == ["imap"]
    ]
    assert len(pids) == 1, who.stdout
    os.kill(pids[0], signal.SIGKILL)


@pytest.mark.parametrize("how", ["kick", "kill"])
def test_a_connection_dropped_while_idle_reconnects(
    dovecot: DovecotServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The session ends while it idles: one logged failure (one line, no password), a new
    session after the back-off, and mail is read by it."""
    with watching(dovecot, how, tmp_path, poll_interval=3600) as (watcher, read):
        time.sleep(2)
        _drop(dovecot, how, how)
        deadline = time.monotonic() + 10
        while watcher.failures == 0:
            assert time.monotonic() < deadline, "the dropped connection went unnoticed"
            time.sleep(0.1)
        append(dovecot, how, SAMPLES[:1])
        wait_stored(tmp_path, set(_hashes(dovecot, how).values()), 20, read)
    failed = [r for r in caplog.records if r.getMessage() == "imap mailbox failed, retrying"]
    assert failed and all("\n" not in r.error and PASSWORD not in r.error for r in failed)
    print(f"dropped while idle ({how}): {failed[0].error}")


class _ScriptedConnection:
    """The bits of imaplib.IMAP4 that IDLE uses, answering from a script."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.sent: list[bytes] = []
        self.tagged_commands: dict[bytes, object] = {}

    def _new_tag(self) -> bytes:
        self.tagged_commands[b"T1"] = None
        return b"T1"

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def readline(self) -> bytes:
        return self.lines.pop(0)


def test_idle_refused_is_its_own_error_and_the_watcher_polls_then(
    dovecot: DovecotServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NO to IDLE (RFC 2177 section 3: a tagged answer instead of "+") leaves the session
    usable: the watcher logs it and polls instead."""
    session = object.__new__(imap._Session)
    session.url = imap.parse_url("imaps://u@example.org/INBOX")
    session.options = imap.ImapOptions(password=PASSWORD)
    con = _ScriptedConnection([b"* 3 EXPUNGE\r\n", b"T1 NO IDLE not for you\r\n"])
    session.con = con  # type: ignore[assignment]
    with pytest.raises(imap.IdleRefused, match="NO IDLE not for you"):
        session.idle(threading.Event(), 60)
    assert con.sent == [b"T1 IDLE\r\n"] and con.tagged_commands == {}

    def refused(*_args: object) -> bool:
        raise imap.IdleRefused("NO IDLE not for you")

    monkeypatch.setattr(imap._Session, "idle", refused)
    caplog.set_level(logging.INFO, logger="mtalens.pipeline.imap")
    with watching(dovecot, "refused", tmp_path, poll_interval=1) as (watcher, read):
        time.sleep(1.5)
        append(dovecot, "refused", SAMPLES[:1])
        wait_stored(tmp_path, set(_hashes(dovecot, "refused").values()), 20, read)
        assert watcher.failures == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "imap mailbox waits with IDLE" in messages and "imap IDLE refused, polling" in messages
