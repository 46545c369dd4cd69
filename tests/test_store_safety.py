"""Store safety (issue 12, item 8): a store from a newer mtalens is refused; a full disk, a file-size
limit and a corrupt block are one line each (StoreError, exit 2), and after a full disk the store
is consistent (running the same ingest again ends as one ingest in a roomy place); the store and
its WAL are created 0600."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store, StoreError
from tests.conftest import need
from tests.test_watch import gen_log, store_digest

CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]


def mtalens(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]


def ingest(db: Path, log: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return mtalens("ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC",
                   "--no-progress", str(log), **kw)  # fmt: skip


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "mail.log"
    gen_log(path, 40_000, seed=3)
    return path


# -- a newer schema -------------------------------------------------------------------------------


def test_a_store_from_a_newer_mtalens_is_refused(tmp_path: Path, big_log: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as s:
        s.con.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, "
            "'9999_from_the_future.sql', 'x')"
        )
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"9999_from_the_future\.sql.*newer mtalens"):
            Store.open(db, read_only=read_only)
    for args in (("report", "--db", str(db)), ("query", "--db", str(db), "SELECT 1")):
        run = mtalens(*args)
        assert run.returncode == 2
        assert "9999_from_the_future.sql" in one_line(run.stderr)
    run = ingest(db, big_log)
    assert run.returncode == 2
    assert "upgrade mtalens" in one_line(run.stderr)
    # nothing was written to it
    with Store.open(db, read_only=True, check_migrations=False) as s:
        assert s.con.execute("SELECT count(*) FROM delivery_log").fetchone() == (0,)
        assert s.con.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)


# -- permissions ----------------------------------------------------------------------------------


def test_store_and_wal_are_created_private(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        db = tmp_path / "s.duckdb"
        wal = tmp_path / "s.duckdb.wal"
        with Store.open(db) as s:
            assert mode(db) == 0o600
            assert os.umask(0o022) == 0o022  # a library does not keep the process umask
            with s.transaction() as con:
                con.execute("INSERT INTO dns_cache SELECT * FROM dns_cache")  # a write: a WAL
                con.execute("CREATE TABLE scratch AS SELECT 1 AS x")
            assert wal.exists() and mode(wal) == 0o600
            s.con.execute("CHECKPOINT")  # DuckDB deletes the WAL here ...
            with s.transaction() as con:
                con.execute("INSERT INTO scratch VALUES (2)")  # ... and creates it again
            assert mode(wal) == 0o600
        # an administrator's choice for an existing store is kept, and the WAL follows it
        db.chmod(0o640)
        with Store.open(db) as s, s.transaction() as con:
            con.execute("INSERT INTO scratch VALUES (3)")
        with Store.open(db) as s:
            with s.transaction() as con:
                con.execute("INSERT INTO scratch VALUES (4)")
            assert mode(db) == 0o640 and mode(wal) == 0o640
    finally:
        os.umask(before)


def test_ingest_creates_a_private_store(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    gen_log(log, 200, seed=5)
    db = tmp_path / "new.duckdb"
    run = ingest(db, log)
    assert run.returncode == 0, run.stderr
    assert mode(db) == 0o600


# -- corruption -----------------------------------------------------------------------------------


def flip(path: Path, offset: int, n: int = 64) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = fh.read(n)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def test_a_corrupt_block_is_one_line(tmp_path: Path, big_log: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert ingest(db, big_log).returncode == 0
    size = db.stat().st_size
    met_by_query: set[str] = set()
    for i, offset in enumerate((size // 4, size // 2, 3 * size // 4)):
        bad = tmp_path / f"bad{i}.duckdb"
        shutil.copy(db, bad)
        flip(bad, offset)
        try:
            Store.open(bad, read_only=True).close()
            opens = True
        except StoreError:
            opens = False
        for command in ("report", "diagnose"):
            run = mtalens(command, "--db", str(bad))
            assert run.returncode in (0, 2), run.stderr
            if run.returncode == 2:
                assert "the store is damaged (computed checksum" in one_line(run.stderr)
                if opens:
                    met_by_query.add(command)
    assert met_by_query == {"report", "diagnose"}  # met while querying, not only at open
    # every block after the headers damaged: ingest meets it at once
    ruined = tmp_path / "ruined.duckdb"
    shutil.copy(db, ruined)
    for offset in range(4 * 4096, size, 256 * 1024):
        flip(ruined, offset)
    run = ingest(ruined, big_log)
    assert run.returncode == 2
    assert "the store is damaged" in one_line(run.stderr)


# -- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB filesystem (tmpfs), if this process may mount one (root with CAP_SYS_ADMIN)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    # CI runs as root (.ci/run) and must not skip: need() fails there, skips elsewhere
    need(
        os.geteuid() == 0 and shutil.which("mount") is not None,
        "root and mount(8), to mount a small tmpfs (the RLIMIT_FSIZE test runs anyway)",
    )
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)  # fmt: skip
    need(run.returncode == 0, f"a tmpfs mount ({run.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_the_store_stays_consistent(
    tmp_path: Path, small_fs: Path, big_log: Path
) -> None:
    db = small_fs / "s.duckdb"
    run = ingest(db, big_log)
    assert run.returncode == 2
    assert "no space left on device" in one_line(run.stderr)
    # moved to a roomy place, the same command again ends as one uninterrupted ingest
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    for f in small_fs.iterdir():
        shutil.copy(f, roomy / f.name)
    run = ingest(roomy / "s.duckdb", big_log)
    assert run.returncode == 0, run.stderr
    ref = tmp_path / "reference.duckdb"
    with Store.open(ref) as s:
        LogIngestor(s, tz=UTC, year=2026).run([big_log])
    assert store_digest(roomy / "s.duckdb") == store_digest(ref)


def _file_size_limit() -> None:  # in the child: EFBIG instead of SIGXFSZ past 2 MB
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


def test_a_file_size_limit_is_one_line_and_the_store_stays_consistent(
    tmp_path: Path, big_log: Path
) -> None:
    db = tmp_path / "s.duckdb"
    run = ingest(db, big_log, preexec_fn=_file_size_limit)
    assert run.returncode == 2
    assert "file too large" in one_line(run.stderr)
    run = ingest(db, big_log)
    assert run.returncode == 0, run.stderr
    ref = tmp_path / "reference.duckdb"
    with Store.open(ref) as s:
        LogIngestor(s, tz=UTC, year=2026).run([big_log])
    assert store_digest(db) == store_digest(ref)


@pytest.mark.slow
def test_the_daemon_waits_out_a_full_disk(tmp_path: Path, small_fs: Path, big_log: Path) -> None:
    """In steady state a full disk is logged (one JSON line per failed window, no traceback) and
    retried; once there is room the daemon catches up, exactly once."""
    log = tmp_path / "logs" / "mail.log"
    log.parent.mkdir()
    log.write_bytes(b"")
    db, err = small_fs / "w.duckdb", tmp_path / "watch.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--timezone", "UTC",
             "--poll-interval", "0.1", "--commit-interval", "0.1"],
            stdout=subprocess.DEVNULL, stderr=fh,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b"watch started" not in err.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.copy(big_log, log)  # more than the filesystem holds
        deadline = time.monotonic() + 60
        while err.read_bytes().count(b"no space left on device") < 3:
            assert proc.poll() is None, err.read_text()[-2000:]
            assert time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.1)
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(StoreError), Store.open(db, read_only=True, lock_wait=5) as s:
                row = s.con.execute('SELECT coalesce(sum("offset"), 0) FROM checkpoints')
                if row.fetchone() == (big_log.stat().st_size,):
                    break
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, err.read_text()[-2000:]
    entries = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]
    failed = [
        e for e in entries if e["msg"] == "write window failed; resuming from the checkpoints"
    ]
    assert failed and all("traceback" not in e and "no space left" in e["error"] for e in failed)
    ref = tmp_path / "reference.duckdb"
    with Store.open(ref) as s:
        LogIngestor(s, tz=UTC, year=2026).run([big_log])
    assert store_digest(db) == store_digest(ref)
