"""`mtalens watch` as a real process: kill -9 at random moments (with a rotation in between)
then restart equals one uninterrupted ingest; a reader process queries while it writes;
SIGHUP reloads, SIGTERM stops cleanly."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtalens.pipeline.store import Store
from tests.test_watch import gen_log, line_cut, reference, store_digest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]


def start_watch(db: Path, *args: str, err: Path) -> subprocess.Popen[bytes]:
    with open(err, "ab") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--timezone", "UTC", "--poll-interval", "0.05",
             "--commit-interval", "0.05", "--drain-grace", "0.2", *args],
            stdout=subprocess.DEVNULL, stderr=fh, env={**os.environ, "MTALENS_LOCK_WAIT": "20"},
        )  # fmt: skip


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def committed_offset(db: Path) -> int:
    if not db.exists():
        return -1
    try:
        with Store.open(db, read_only=True) as s:
            row = s.con.execute('SELECT coalesce(sum("offset"), 0) FROM checkpoints').fetchone()
    except Exception:
        return -1
    return int(row[0]) if row else -1


def test_kill_9_at_random_moments_then_restart_equals_one_ingest(tmp_path: Path) -> None:
    data = gen_log(tmp_path / "gen.log", 40_000, seed=7)
    log, old = tmp_path / "logs" / "mail.log", tmp_path / "logs" / "mail.log.1"
    log.parent.mkdir()
    db = tmp_path / "w.duckdb"
    err = tmp_path / "watch.err"
    rng = random.Random(4)
    rotate_at = line_cut(data, 0.5)
    kills = 0
    pos = line_cut(data, 0.01)
    log.write_bytes(data[:pos])
    proc = start_watch(db, "--log", str(log), err=err)
    # the daemon must have seen the file once: what it never saw is history (`mtalens ingest`)
    wait_for(lambda: committed_offset(db) == pos, 30, "the first commit")
    try:
        while pos < len(data):
            # append in uneven chunks that split lines anywhere
            step = rng.randint(1_000, 200_000)
            end = min(len(data), pos + step)
            if pos < rotate_at <= end:
                end = rotate_at
            with open(log, "ab") as fh:
                fh.write(data[pos:end])
            pos = end
            if pos == rotate_at:
                os.rename(log, old)
                log.write_bytes(b"")
            if rng.random() < 0.35:
                time.sleep(rng.uniform(0.0, 0.8))  # mid-window, between windows, at start-up
                proc.kill()  # SIGKILL
                proc.wait()
                kills += 1
                proc = start_watch(db, "--log", str(log), err=err)
        # let it finish, then stop it cleanly
        size = len(data)
        wait_for(lambda: committed_offset(db) == size, 90, "the daemon to catch up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert kills >= 3
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "a").write_bytes(data[:rotate_at])
    (ref_dir / "b").write_bytes(data[rotate_at:])
    # same bytes, same fingerprints: the reference reads the two halves as two files
    assert store_digest(db) == reference(tmp_path, [ref_dir / "a", ref_dir / "b"])


def test_reader_process_queries_while_watch_writes(tmp_path: Path) -> None:
    data = gen_log(tmp_path / "gen.log", 20_000, seed=3)
    log, db, err = tmp_path / "mail.log", tmp_path / "w.duckdb", tmp_path / "watch.err"
    log.write_bytes(data[: line_cut(data, 0.1)])
    proc = start_watch(db, "--log", str(log), "--commit-interval", "0.5", err=err)
    try:
        wait_for(lambda: committed_offset(db) > 0, 30, "the first commit")
        seen: list[int] = []
        pos = line_cut(data, 0.1)
        for frac in (0.3, 0.5, 0.7, 1.0):
            end = len(data) if frac == 1.0 else line_cut(data, frac)
            with open(log, "ab") as fh:
                fh.write(data[pos:end])
            pos = end
            t0 = time.monotonic()
            while True:  # a separate reader process, as a user would run it
                out = subprocess.run(
                    [*CLI, "query", "--db", str(db), "--format", "json",
                     'SELECT sum("offset") AS o FROM checkpoints'],
                    capture_output=True, text=True, env={**os.environ, "MTALENS_LOCK_WAIT": "10"},
                )  # fmt: skip
                assert out.returncode == 0, out.stderr
                offset = json.loads(out.stdout)[0]["o"]
                if offset == end or time.monotonic() - t0 > 20:
                    break
            seen.append(int(offset))
            assert offset == end, f"data not queryable after {time.monotonic() - t0:.1f}s"
        assert seen == sorted(seen)
        # `report` works too while the daemon runs
        rep = subprocess.run([*CLI, "report", "--db", str(db), "--since", "2026-01-01"],
                             capture_output=True, text=True)  # fmt: skip
        assert rep.returncode == 0, rep.stderr
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sighup_reloads_sigterm_stops_json_logs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    line = b"Mar  2 06:00:01 mx1 postfix/smtpd[101]: connect from x.example.org[192.0.2.7]\n"
    a.write_bytes(line)
    b.write_bytes(line.replace(b"[101]", b"[102]"))
    cfg = tmp_path / "mtalens.toml"
    cfg.write_text(f'[watch]\nlogs = ["{a}"]\n')
    db, err = tmp_path / "w.duckdb", tmp_path / "watch.err"
    proc = start_watch(db, "--config", str(cfg), err=err)
    try:
        wait_for(lambda: committed_offset(db) == len(line), 30, "a.log read")
        cfg.write_text(f'[watch]\nlogs = ["{a}", "{b}"]\n')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: committed_offset(db) == 2 * len(line), 30, "b.log read after SIGHUP")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    records = [json.loads(x) for x in err.read_text().splitlines() if x.startswith("{")]
    msgs = [r["msg"] for r in records]
    assert "config reloaded" in msgs and msgs[-1] == "watch stopped"
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
