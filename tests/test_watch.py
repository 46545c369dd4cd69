"""`mtalens watch` in-process: tailing (partial lines, rotation by rename and by copytruncate,
deleted/recreated files, globs), Maildir move after commit, mbox by offset, config.

The reference for "nothing lost, nothing doubled" is always one plain `LogIngestor.run` (what
`mtalens ingest` does) over the same final files, compared table by table (``store_digest``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from mtalens.pipeline.correlate import QUEUE_LIFETIME_MARGIN
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import WatchConfig, WatchConfigError, load_watch_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "bounces"

# Columns that record wall-clock time of ingestion, not facts from the input; and seq, whose
# numbers are drawn from a sequence a crash or a rollback leaves gaps in: its order is the fact.
SEQ_ORDER: Final = "* EXCLUDE (seq), dense_rank() OVER (ORDER BY seq) AS seq_order"
_TABLES = {
    "delivery_log": SEQ_ORDER,
    "message_log": "*",
    "rejection_log": "*",
    "auth_failure_log": "*",
    "event_log": "*",
    "quarantine": "* EXCLUDE (quarantined_at)",
}


def store_digest(db: Path) -> dict[str, Any]:
    """Every row of every table (sorted), plus line accounting summed per source/outcome/rule."""
    with Store.open(db, read_only=True) as s:
        out: dict[str, Any] = {}
        for t, cols in _TABLES.items():
            rows = s.con.execute(f"SELECT {cols} FROM {t}").fetchall()
            out[t] = sorted(rows, key=repr)
        out["accounting"] = sorted(
            s.con.execute(
                "SELECT source_key, outcome, rule, sum(lines) FROM line_accounting_log GROUP BY ALL"
            ).fetchall()
        )
        return out


def reference(tmp: Path, files: list[Path]) -> dict[str, Any]:
    db = tmp / "reference.duckdb"
    with Store.open(db) as s:
        LogIngestor(s, tz=UTC, year=2026).run(files)
    return store_digest(db)


def gen_log(path: Path, lines: int, seed: int = 1) -> bytes:
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines", str(lines),
         "--out", str(path), "--seed", str(seed), "--style", "rfc3164"],
        check=True, capture_output=True,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture(scope="module")
def log_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return gen_log(tmp_path_factory.mktemp("gen") / "gen.log", 6000)


_OPEN: list[Watcher] = []


@pytest.fixture(autouse=True)
def _close_watchers() -> Any:
    yield
    while _OPEN:
        _OPEN.pop().close()


def watcher(tmp: Path, logs: list[str], **kw: Any) -> Watcher:
    cfg = WatchConfig(db=str(tmp / "w.duckdb"), logs=tuple(logs), timezone="UTC", year=2026,
                      drain_grace=kw.pop("drain_grace", 0.0), **kw)  # fmt: skip
    w = Watcher(cfg)
    _OPEN.append(w)
    return w


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def line_cut(data: bytes, frac: float) -> int:
    """An offset just past a newline near ``frac`` of the data."""
    return data.index(b"\n", int(len(data) * frac)) + 1


def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    line = b"Mar  2 06:00:01 mx1 postfix/smtpd[101]: connect from mail.example.org[192.0.2.7]\n"
    log.write_bytes(line + line[:30])
    w = watcher(tmp_path, [str(log)])
    w.window()
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        assert s.con.execute('SELECT "offset" FROM checkpoints').fetchall() == [(len(line),)]
        assert s.con.execute("SELECT sum(lines) FROM line_accounting_log").fetchone() == (1,)
    append(log, line[30:])
    w.window()
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        assert s.con.execute('SELECT "offset" FROM checkpoints').fetchall() == [(2 * len(line),)]
        assert s.con.execute("SELECT sum(lines) FROM line_accounting_log").fetchone() == (2,)
        assert s.con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_rotation_by_rename_and_create(tmp_path: Path, log_bytes: bytes) -> None:
    log, old = tmp_path / "mail.log", tmp_path / "mail.log.1"
    a, b, c = line_cut(log_bytes, 0.3), line_cut(log_bytes, 0.5), line_cut(log_bytes, 0.6)
    log.write_bytes(log_bytes[:a])
    w = watcher(tmp_path, [str(log)], drain_grace=0.5)
    w.window()
    append(log, log_bytes[a:b])
    os.rename(log, old)  # logrotate: rename, then create
    log.write_bytes(log_bytes[c:])
    append(old, log_bytes[b:c])  # the MTA still writes to the old file until it reopens
    w.window()
    assert w.stats.rotations == 1
    assert len(w.tails) == 2  # the old one is still drained through its descriptor
    time.sleep(0.6)
    w.window()
    assert len(w.tails) == 1
    assert store_digest(tmp_path / "w.duckdb") == reference(tmp_path, [old, log])


def test_rotation_by_copytruncate(tmp_path: Path, log_bytes: bytes) -> None:
    log, copy = tmp_path / "mail.log", tmp_path / "mail.log.1"
    a, b = line_cut(log_bytes, 0.4), line_cut(log_bytes, 0.7)
    log.write_bytes(log_bytes[:a])
    w = watcher(tmp_path, [str(log)])
    w.window()
    append(log, log_bytes[a:b])  # not yet read when logrotate copies and truncates
    shutil.copyfile(log, copy)
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, log_bytes[b:])
    w.window()
    assert w.stats.truncations == 1
    assert store_digest(tmp_path / "w.duckdb") == reference(tmp_path, [copy, log])


def test_truncated_and_regrown_past_the_offset_is_noticed(tmp_path: Path, log_bytes: bytes) -> None:
    log, copy = tmp_path / "mail.log", tmp_path / "mail.log-20260302"
    a, b = line_cut(log_bytes, 0.2), line_cut(log_bytes, 0.3)
    log.write_bytes(log_bytes[:a])
    w = watcher(tmp_path, [str(log)])
    w.window()
    append(log, log_bytes[a:b])
    shutil.copyfile(log, copy)
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, log_bytes[b:])  # already longer than the old offset: only the head tells
    assert log.stat().st_size > a
    w.window()
    assert w.stats.truncations == 1
    assert store_digest(tmp_path / "w.duckdb") == reference(tmp_path, [copy, log])


def test_deleted_then_recreated(tmp_path: Path, log_bytes: bytes) -> None:
    log = tmp_path / "mail.log"
    a, b = line_cut(log_bytes, 0.5), line_cut(log_bytes, 0.8)
    log.write_bytes(log_bytes[:a])
    w = watcher(tmp_path, [str(log)])
    with open(log, "ab") as writer:  # the MTA keeps its descriptor
        w.window()
        writer.write(log_bytes[a:b])
        writer.flush()
        log.unlink()
        w.window()  # drained through our descriptor, then closed (drain_grace 0)
    assert not w.tails
    log.write_bytes(log_bytes[b:])
    w.window()
    keep = tmp_path / "ref"
    keep.mkdir()
    (keep / "first").write_bytes(log_bytes[:b])
    (keep / "second").write_bytes(log_bytes[b:])
    assert store_digest(tmp_path / "w.duckdb") == reference(
        tmp_path, [keep / "first", keep / "second"]
    )


def test_glob_several_files_and_restart_from_saved_position(
    tmp_path: Path, log_bytes: bytes
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    mid = line_cut(log_bytes, 0.5)
    one, two = logs / "mx1.log", logs / "mx2.log"
    one.write_bytes(log_bytes[: line_cut(log_bytes, 0.25)])
    w = watcher(tmp_path, [str(logs / "*.log")])
    w.window()
    two.write_bytes(log_bytes[mid:])  # a new file matching the glob
    append(one, log_bytes[line_cut(log_bytes, 0.25) : mid])
    w.window()
    # a fresh daemon resumes from the checkpoints: nothing is read twice
    w2 = watcher(tmp_path, [str(logs / "*.log")])
    w2.window()
    assert w2.stats.lines == 0
    assert store_digest(tmp_path / "w.duckdb") == reference(tmp_path, [one, two])


def test_rotated_while_down_is_finished_at_start(tmp_path: Path, log_bytes: bytes) -> None:
    log, old = tmp_path / "mail.log", tmp_path / "mail.log.1"
    a, b = line_cut(log_bytes, 0.3), line_cut(log_bytes, 0.6)
    log.write_bytes(log_bytes[:a])
    watcher(tmp_path, [str(log)]).window()
    append(log, log_bytes[a:b])
    os.rename(log, old)
    log.write_bytes(log_bytes[b:])
    watcher(tmp_path, [str(log)]).window()  # a new process: no descriptor of the old file
    assert store_digest(tmp_path / "w.duckdb") == reference(tmp_path, [old, log])


def _maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def test_maildir_moves_to_cur_only_after_commit(tmp_path: Path) -> None:
    md = _maildir(tmp_path / "Maildir")
    names = ["postfix-userunknown.eml", "postfix-expired.eml", "not-a-report.eml"]
    for i, name in enumerate(names):
        shutil.copy(FIXTURES / name, md / "new" / f"17000000{i}.M1P1.host")
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), maildirs=(str(md),)))
    w.window(final=True)  # a last window waits for the decoding workers
    assert list((md / "new").iterdir()) == []
    assert sorted(p.name for p in (md / "cur").iterdir()) == [
        f"17000000{i}.M1P1.host:2," for i in range(3)
    ]
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        stored = s.con.execute("SELECT count(*) FROM bounce_reports").fetchone()
        failed = s.con.execute("SELECT recipient, status FROM bounces ORDER BY 1").fetchall()
        quarantined = s.con.execute(
            "SELECT count(*) FROM quarantine WHERE source_kind = 'mail'"
        ).fetchone()
    assert (stored, quarantined) in (((3,), (0,)), ((2,), (1,)))  # not-a-report: either way
    assert failed == [("carol@example.net", "5.1.1"), ("erin@slow.example", "4.4.1")]
    # a crash after the commit and before the move: the message is read again, stored once
    shutil.copy(FIXTURES / names[0], md / "new" / "170000000.M1P1.host")
    w.window(final=True)
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        assert s.con.execute("SELECT count(*) FROM bounce_reports").fetchone() == stored
    assert w.metrics.value("mtalens_mailbox_messages_total", origin="maildir",
                           outcome="duplicate") == 1  # fmt: skip


def test_mbox_by_offset_complete_messages_only(tmp_path: Path) -> None:
    mbox = tmp_path / "bounces.mbox"
    msgs = [FIXTURES / n for n in ("postfix-userunknown.eml", "qmail.eml", "exim-text.eml")]

    def entry(p: Path) -> bytes:
        body = p.read_bytes().replace(b"\r\n", b"\n")
        return b"From MAILER-DAEMON Mon Mar  2 06:00:00 2026\n" + body.rstrip(b"\n") + b"\n\n"

    mbox.write_bytes(entry(msgs[0]) + entry(msgs[1]))
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), mboxes=(str(mbox),), drain_grace=60))
    w.window()
    # the second message may still be being written: only the first is complete
    assert w.stats.mbox_messages == 1
    append(mbox, entry(msgs[2]))
    w.window()
    assert w.stats.mbox_messages == 2
    w.window(final=True)  # at stop (or once quiet), the last one counts too
    assert w.stats.mbox_messages == 3
    w.window(final=True)
    assert w.stats.mbox_messages == 3
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        rows = s.con.execute(
            'SELECT message_index, "offset" FROM bounce_reports ORDER BY 2'
        ).fetchall()
    data = mbox.read_bytes()
    assert [i for i, _ in rows] == [1, 2, 3]
    for _, off in rows:  # each offset is just after a From_ line
        assert data[:off].rsplit(b"\n", 2)[-2].startswith(b"From MAILER-DAEMON")


def test_config_file_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "mtalens.toml"
    cfg.write_text(
        '[watch]\nlogs = ["/var/log/mail.log"]\nmetrics_port = 9154\ncommit_interval = 2\n'
        '[alerts]\nwebhook = "http://127.0.0.1:9/x"\n'
        '[[alerts.rule]]\nid = "b"\nkind = "bounce_rate"\nthreshold = 0.1\ndomain = "Example.COM"\n'
        "[suppressions]\nwhatever = 1\n"
    )
    c = load_watch_config(cfg)
    assert c.logs == ("/var/log/mail.log",) and c.metrics_port == 9154
    assert c.commit_interval == 2.0 and c.metrics_host == "127.0.0.1"
    assert c.rules[0].domain == "example.com"
    assert c.with_overrides(logs=["a.log"], db=None).logs == ("a.log",)
    cfg.write_text('[watch]\nlogz = ["x"]\n')
    with pytest.raises(WatchConfigError, match="unknown key 'logz'"):
        load_watch_config(cfg)
    cfg.write_text('[[alerts.rule]]\nid = "x"\nkind = "nope"\n')
    with pytest.raises(WatchConfigError, match="unknown kind"):
        load_watch_config(cfg)


def test_queue_lifetime_from_the_shared_config_file(tmp_path: Path) -> None:
    """[postfix] maximal_queue_lifetime in the watch's mtalens.toml sets the open-message horizon
    (lifetime + margin); a bad value is refused at start-up, not in the first write window."""
    cfg = tmp_path / "mtalens.toml"
    cfg.write_text('[watch]\nlogs = []\n[postfix]\nmaximal_queue_lifetime = "10d"\n')
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), timezone="UTC"), config_path=cfg)
    _OPEN.append(w)
    assert w.queue_lifetime == timedelta(days=10)
    w.window()
    assert w.ingestor is not None
    assert w.ingestor.correlator.stale_after == timedelta(days=10) + QUEUE_LIFETIME_MARGIN
    cfg.write_text('[postfix]\nmaximal_queue_lifetime = "ten days"\n')
    with pytest.raises(ValueError, match="maximal_queue_lifetime"):
        Watcher(WatchConfig(db=str(tmp_path / "w2.duckdb")), config_path=cfg)


def test_a_truncated_rotated_gzip_does_not_stop_the_live_log(
    tmp_path: Path, log_bytes: bytes
) -> None:
    """Rotated and compressed while the daemon was down, and the .gz cut short (disk full during
    logrotate): each window used to fail on it, and the live log was never read again."""
    import gzip

    log = tmp_path / "mail.log"
    a, b = line_cut(log_bytes, 0.3), line_cut(log_bytes, 0.6)
    log.write_bytes(log_bytes[:a])
    watcher(tmp_path, [str(log)]).window()
    append(log, log_bytes[a:b])
    packed = gzip.compress(log.read_bytes())
    (tmp_path / "mail.log.1.gz").write_bytes(packed[: len(packed) // 2])
    log.write_bytes(log_bytes[b:])  # the new live log
    w = watcher(tmp_path, [str(log)])
    w.window()
    append(log, b"")
    w.window()  # and the next window too
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        offsets = dict(s.con.execute('SELECT path, "offset" FROM checkpoints').fetchall())
    assert offsets[str(log)] == len(log_bytes) - b  # the live log was read to its end
