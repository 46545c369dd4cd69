"""`mtalens watch`: tail Postfix logs and bounce mailboxes into the store, exactly once.

Tailing (STYLE.md section 5). Files are tracked by (device, inode), not by name; watchdog
(inotify) events only wake the loop, which then stats every source (and does so anyway every
``poll_interval``). Per file, lines are read from its checkpoint to the last ``\\n``; a partial
last line stays unread until its newline arrives. The checkpoint (device, inode, fingerprint of
the first bytes, offset) is committed in the same transaction as the rows it covers
(``mtalens.pipeline.ingest``), so ``kill -9`` at any moment loses only an uncommitted batch, which is read
again after the restart.

- rename-and-create rotation: the name now points at a new inode; the old file (still open) is
  drained for ``drain_grace`` seconds after it stops growing, then read to its end (a last line
  without newline counts) and closed; the new file is read from 0.
- copytruncate: same inode but smaller than the offset, or its first bytes changed. The lines
  between the checkpoint and the truncation are in the copy (``mail.log.1``, ``mail.log-DATE``):
  a sibling whose first bytes match the checkpoint is read from the checkpoint's offset first.
- deleted / recreated: a deleted file is drained through its open descriptor, a recreated one is
  a new inode.
- restart: a rotated sibling whose first bytes match a checkpoint with unread bytes (rotated while
  the daemon was down) is read before the live files.

Mailboxes: Maildir ``new/`` messages are decoded and stored (``mtalens.pipeline.bounces``), and only after
that commit moved to ``cur/`` (maildir(5): ``cur/NAME:2,``). A message that cannot be read stays
in ``new/`` and is retried with back-off; after ``MAILDIR_READ_ATTEMPTS`` failures it gets a
quarantine row (reason ``unreadable``) and then moves: nothing leaves ``new/`` without a row. mbox files are read by offset
(complete messages only: a message ends where the next ``From`` line starts, the last one once
the file has been quiet for ``drain_grace``). Both rely on the bounce store's content-hash key
for exactly-once: a message committed but not yet moved (or an mbox offset not yet saved) when
the daemon died is read again and recognised as a duplicate.

Readers while it runs (DuckDB: one read-write process or many read-only ones). The daemon holds
the database file only during short *write windows*: it opens it read-write, commits what is new
(one transaction per batch per source), closes it, and waits at least ``commit_interval`` before
the next window. Between windows any process can open it read-only; ``Store.open(read_only=True)``
retries on a lock conflict for ``$MTALENS_LOCK_WAIT`` seconds, so `mtalens query`/`report` just
work. A reader that keeps the file open delays the next window (the daemon retries with back-off;
nothing is lost, the bytes wait in the files): notebooks should open, query and close
(``with Store.open(db, read_only=True) as s: ...``) rather than hold a connection.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import queue
import re
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from glob import glob, has_magic
from pathlib import Path
from typing import IO, Any, Final
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from mtalens.parsers.formats import POSTFIX as _POSTFIX_ROW
from mtalens.parsers.syslog import SyslogClock
from mtalens.pipeline import bounces, upkeep
from mtalens.pipeline.alerts import AlertEngine
from mtalens.pipeline.config import load_config
from mtalens.pipeline.correlate import (
    AUTH_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    REJECTION_COLUMNS,
    Batch,
)
from mtalens.pipeline.decode_pool import DecodePool
from mtalens.pipeline.fastpath import ArrowBatch
from mtalens.pipeline.ingest import (
    FP_LEN,
    Checkpoint,
    LineCounts,
    LogIngestor,
    fingerprint,
    logical_size,
    read_head,
)
from mtalens.pipeline.jsonlog import JsonFormatter as JsonFormatter
from mtalens.pipeline.jsonlog import setup_json_logging as setup_json_logging
from mtalens.pipeline.mailbox import MailboxMessage, split_mbox
from mtalens.pipeline.metrics import LAG_BUCKETS, Metrics, MetricsServer
from mtalens.pipeline.store import Store, StoreError, resolve_db_path, store_error
from mtalens.pipeline.watch_config import WatchConfig, load_watch_config

log = logging.getLogger("mtalens.watch")

MAILDIR_BATCH: Final = 500  # messages per write window and Maildir
WEBHOOK_LINGER: Final = 1.0  # seconds a window stays open for webhook requests that keep coming
WEBHOOK_IDLE: Final = 0.1  # ... and how long it waits for the next one
# A Maildir message that cannot be read (permissions, not a regular file, a symbolic link) stays
# in new/ and is retried after 1, 2, 4 ... s; at the 7th failure (about a minute after the first)
# it gets a quarantine row (reason 'unreadable') and moves to cur/ like any handled message, so
# it neither keeps the daemon busy nor is lost: `mtalens bounces ingest` the file once it is fixed.
MAILDIR_READ_ATTEMPTS: Final = 7
MAILDIR_RETRY_AFTER: Final = 1.0
MBOX_KEY_PREFIX: Final = "mbox:"
# the suppression summary (pipeline/upkeep.py) is folded at most this often: about 0.3 s with
# nothing new at 10 M deliveries, a few seconds per 100 k new ones (bench/bench_suppressions.py)
SUMMARY_FOLD_INTERVAL: Final = 60.0
# how often the scheduled checks get our sending IPs from the store again (diagnose's
# our_addresses over the last CHECK_IPS_DAYS days)
CHECK_IPS_REFRESH: Final = 600.0
# RFC 4155: a message starts with a "From " line at the start of the file or after a blank line
_MBOX_SEPARATOR: Final = re.compile(rb"\n\r?\nFrom ")
# what mtalens.pipeline.alerts.AlertEngine.feed reads of each row
_ALERT_DELIVERY_COLUMNS: Final = ("logged_at", "recipient", "status", "blocklist", "delay")
_ALERT_AUTH_COLUMNS: Final = ("logged_at", "client_ip")


# --- structured logs -----------------------------------------------------------------------------


# --- tailing -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tail:
    key: tuple[int, int]  # (device, inode)
    path: Path  # last name seen
    source: str  # the configured path or glob (metrics label)
    fh: IO[bytes]
    cp: Checkpoint | None = None
    clock: SyslogClock | None = None
    orphaned_at: float | None = None  # monotonic time it lost its name
    last_size: int = -1
    grew_at: float = 0.0


def _rotated_siblings(path: Path) -> list[Path]:
    """``mail.log.1``, ``mail.log.2.gz``, ``mail.log-20260301``: logrotate's names for ``path``."""
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    out = [
        p
        for p in entries
        if p.name != path.name
        and p.name.startswith((path.name + ".", path.name + "-"))
        and p.is_file()
    ]
    return sorted(out, key=lambda p: p.stat().st_mtime)


def _expand(pattern: str) -> list[Path]:
    if has_magic(pattern):
        return [Path(p) for p in sorted(glob(pattern)) if os.path.isfile(p)]
    return [Path(pattern)] if os.path.isfile(pattern) else []


def _read_maildir_file(path: Path) -> bytes:
    """A message's bytes. Not through a symbolic link (nothing in a Maildir is one; following
    it could store any file the daemon can read), and only from a regular file (a FIFO would
    block the daemon; O_NONBLOCK makes its open return at once)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", closefd=True) as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return fh.read()


def _os_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link (not followed)"
    return (exc.strerror or type(exc).__name__).lower()


def _maildir_name(name: str) -> str:
    # maildir(5): a message moved to cur/ gets the info suffix ":2," (no flags yet)
    return name if ":2," in name else name + ":2,"


@dataclass(slots=True)
class WatchStats:
    windows: int = 0
    lines: int = 0
    maildir_messages: int = 0
    mbox_messages: int = 0
    report_messages: int = 0
    rotations: int = 0
    truncations: int = 0
    lock_waits: int = 0
    errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Watcher:
    """The daemon. ``run()`` in the main thread installs signal handlers; ``window()`` does one
    write window and can be driven directly (tests, notebooks)."""

    def __init__(
        self,
        config: WatchConfig,
        *,
        config_path: str | Path | None = None,
        metrics: Metrics | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.tz = tz or _zone(config.timezone)
        self.stats = WatchStats()
        self.alerts = AlertEngine(config.alert_rules(), webhook=config.webhook,
                                  metrics=self.metrics)  # fmt: skip
        self.checks = self._make_checks()
        self._log_ips_at: float | None = None  # monotonic time our IPs were last read
        # [postfix] and [suppressions] of the same mtalens.toml; a bad value fails here, at
        # start-up (read once: a reload does not change them)
        shared = load_config(config_path)
        self.queue_lifetime = shared.queue_lifetime()
        self.policy = shared.suppressions
        hooks = shared.webhooks
        if config.webhook_port is not None or config.webhook_host is not None:
            hooks = replace(hooks, port=config.webhook_port if config.webhook_port is not None
                            else hooks.port, host=config.webhook_host or hooks.host)  # fmt: skip
        self.webhook_config = hooks
        self.webhooks: Any = None  # the receiver (pipeline/webhooks.py), while run() runs
        self.imap_config = shared.imap
        self.mailboxes: list[Any] = []  # IMAP sources (pipeline/imap.py MailboxWatcher)
        # functions other threads want run with the store, in the next write window
        self._store_jobs: queue.Queue[tuple[Callable[[Store], Any], Future[Any]]] = queue.Queue()
        self._jobs_closed = False
        self._folded_at: float | None = None  # monotonic time of the last summary fold
        # Maildir messages whose read failed: path -> (failed attempts, monotonic retry time)
        self._unreadable: dict[str, tuple[int, float]] = {}
        self._wake = threading.Event()
        self._pool: DecodePool | None = None  # bounce decoding workers, started when needed
        self._stop = False
        self._migrated = False  # migrations are checked at the first window only
        self._reload = False
        self._lake_writer: Store | None = None  # with [watch] lake: the writer, kept open
        self._reset_state()

    def _reset_state(self) -> None:
        """Forget everything in memory; the store's checkpoints say where to resume."""
        self.ingestor: LogIngestor | None = None
        self._close_lake()
        self.tails: dict[tuple[int, int], _Tail] = {}
        self._source_of_key: dict[str, str] = {}
        self._started = False
        self._idle_state: tuple[Any, ...] | None = None  # _sources_state before the last window

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def reload(self) -> None:
        if self.config_path is None:
            log.info("reload requested, no config file")
            return
        new = load_watch_config(self.config_path)
        # the command line's sources stay if the file has none
        self.config = new.with_overrides(
            db=self.config.db if new.db is None else None,
            logs=self.config.logs if not new.logs else None,
            maildirs=self.config.maildirs if not new.maildirs else None,
            mboxes=self.config.mboxes if not new.mboxes else None,
            report_maildirs=self.config.report_maildirs if not new.report_maildirs else None,
        )
        self.alerts.close()  # its delivery thread ends after what it has queued
        self.alerts = AlertEngine(self.config.alert_rules(), webhook=self.config.webhook,
                                  metrics=self.metrics)  # fmt: skip
        if self.checks is not None:
            self.checks.stop()
        self.checks = self._make_checks()
        self._log_ips_at = None
        log.info("config reloaded", extra={"logs": list(self.config.logs),
                                           "rules": len(self.config.rules)})  # fmt: skip

    def _make_checks(self) -> Any:
        """The scheduler of ``[checks]`` (pipeline/checks.py), or None: imported only then
        (dnspython)."""
        if not self.config.checks.enabled:
            return None
        from mtalens.pipeline.checks import CheckScheduler, make_client_factory

        return CheckScheduler(self.config.checks, client=make_client_factory(self.config.checks),
                              metrics=self.metrics, on_finished=self.wake)  # fmt: skip

    # -- the write window -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _open_store(self) -> Iterator[Store]:
        if self.config.lake is not None:
            yield from self._open_lake()
            return
        delay = 0.05
        while True:
            try:
                # its own back-off below (counted, and stoppable): no wait inside the open
                store = Store.open(self.config.db, check_migrations=not self._migrated, lock_wait=0)
                self._migrated = True
                break
            except StoreError as exc:
                if "locked" not in str(exc):
                    log.error("cannot open the store", extra={"error": str(exc)})
                    raise
                self.stats.lock_waits += 1
                self.metrics.inc("mtalens_store_lock_waits_total",
                                 "Write windows delayed by a reader holding the store.")  # fmt: skip
                if self._stop and delay >= 2.0:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            yield store
        finally:
            try:
                store.close()
            except StoreError as exc:  # the checkpoint at close failed; the WAL keeps the commit
                log.error("closing the store failed", extra={"error": str(exc)})

    def _open_lake(self) -> Iterator[Store]:
        """The lake writer (pipeline/lake.py), opened once for the daemon's life: a lake has no
        lock for readers to wait on, so there is no window to close. A window that fails drops
        it: the next one opens it again from what it published (``_reset_state`` forgets the
        rest)."""
        from mtalens.pipeline import lake

        if self._lake_writer is None:
            assert self.config.lake is not None
            self._lake_writer = lake.open_writer(self.config.lake, self.config.writer)
        try:
            yield self._lake_writer
        except BaseException:
            self._close_lake()
            raise

    def _close_lake(self) -> None:
        w, self._lake_writer = self._lake_writer, None
        if w is not None:
            try:
                w.close()
            except StoreError as exc:
                log.error("closing the lake writer failed", extra={"error": str(exc)})

    def window(self, *, final: bool = False) -> None:
        """Open the store, commit everything new from every source, close the store; skipped
        when no source changed since the last window began (see ``_sources_state``)."""
        state = None if final else self._sources_state()
        if state is not None and state == self._idle_state:
            # measured: an idle window (open + close the store) costs 20-190 ms of CPU, and
            # inotify wakes the loop for any file in a watched directory (the store itself if
            # it lives next to the log): without this the daemon used 9.6 % of a core idle
            self.metrics.inc("mtalens_idle_windows_skipped_total",
                             "Wake-ups with no source changed (store not opened).")  # fmt: skip
            return
        self._idle_state = None
        t0 = time.monotonic()
        with self._open_store() as store:
            try:
                self._window(store, final=final)
            except Exception as exc:
                # a failed commit leaves the correlator ahead of the store: start again from
                # the checkpoints (nothing committed is read twice, nothing uncommitted lost)
                self.stats.errors += 1
                known = store_error(exc, resolve_db_path(self.config.db))
                if known is None:
                    log.exception("write window failed; resuming from the checkpoints")
                else:  # a full disk, a corrupt block: one line, not a traceback per window
                    log.error("write window failed; resuming from the checkpoints",
                              extra={"error": str(known)})  # fmt: skip
                self._close_tails()
                self._reset_state()
                raise
        self.stats.windows += 1
        self._idle_state = state  # as stat'ed before this window: a later write changes it
        spent = time.monotonic() - t0
        self.metrics.inc(
            "mtalens_write_windows_total", "Write windows (store open, commit, close)."
        )
        self.metrics.observe("mtalens_write_window_seconds", "Time the store is held per window.",
                             spent, LAG_BUCKETS)  # fmt: skip
        self.metrics.set("mtalens_last_commit_timestamp_seconds", "When the last window closed.",
                         time.time())  # fmt: skip

    def _sources_state(self) -> tuple[Any, ...] | None:
        """What the log files look like now (name, device, inode, size, mtime), or None when a
        window must run whatever they look like: before the first one, while a rotated-away
        file is being drained (its grace period runs on the clock), when a Maildir has new
        messages, or when mboxes are configured (their last message waits for a quiet
        period)."""
        if not self._started or self.config.mboxes:
            return None
        if self.checks is not None and self.checks.pending():
            return None
        if self._pool is not None and self._pool.ready():
            return None  # decoded bounces wait to be stored
        if self.webhooks is not None and not self.webhooks.pending.empty():
            return None  # webhook requests wait for their commit
        if not self._store_jobs.empty():
            return None  # an IMAP batch waits to be stored
        for md in (*self.config.maildirs, *self.config.report_maildirs):
            try:
                with os.scandir(Path(md) / "new") as entries:
                    if any(self._maildir_due(e) for e in entries):
                        return None
            except OSError:
                return None
        files: list[tuple[Any, ...]] = []
        keys: set[tuple[int, int]] = set()
        for pattern in self.config.logs:
            for path in _expand(pattern):
                try:
                    st = path.stat()
                except OSError:
                    continue
                keys.add((st.st_dev, st.st_ino))
                files.append((str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        if any(key not in keys for key in self.tails):
            return None
        return tuple(files)

    def _window(self, store: Store, *, final: bool) -> None:
        if self.ingestor is None:
            self.ingestor = LogIngestor(store, tz=self.tz, year=self.config.year,
                                        queue_lifetime=self.queue_lifetime)  # fmt: skip
            self.ingestor.on_commit = self._on_commit
        ing = self.ingestor
        ing.store = store
        if not self._started:
            ing.load_open_messages()
            self._drain_siblings_at_start(ing)
            self._started = True
        self._tail_logs(ing, final=final)
        if self.config.maildirs:
            self._bounce_maildirs(store, final=final)
        for md in self.config.report_maildirs:
            self._report_maildir(store, Path(md))
        for mb in self.config.mboxes:
            self._mbox(store, Path(mb), final=final)
        self._store_webhooks(store)
        self._run_store_jobs(store)
        self._fold_summary(store, final=final)
        self._store_checks(store)
        self.alerts.evaluate()

    def in_window(self, fn: Callable[[Store], Any]) -> Any:
        """Run ``fn(store)`` in the next write window and return its result (another thread's
        call: an IMAP source stores its batches so); StoreUnavailable once the daemon stops."""
        from mtalens.pipeline.imap import StoreUnavailable

        if self._jobs_closed:
            raise StoreUnavailable("the daemon is stopping")
        fut: Future[Any] = Future()
        self._store_jobs.put((fn, fut))
        self.wake()
        return fut.result()

    def _run_store_jobs(self, store: Store) -> None:
        while True:
            try:
                fn, fut = self._store_jobs.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn(store))
            except Exception as exc:  # the job's caller gets it; the window goes on
                fut.set_exception(exc)

    def _close_store_jobs(self) -> None:
        from mtalens.pipeline.imap import StoreUnavailable

        self._jobs_closed = True
        while True:
            try:
                _, fut = self._store_jobs.get_nowait()
            except queue.Empty:
                return
            fut.set_exception(StoreUnavailable("the daemon is stopping"))

    def _start_mailboxes(self) -> None:
        """The IMAP sources of ``[watch] imap`` / ``--imap`` (pipeline/imap.py)."""
        if not self.config.imap:
            return
        import os

        from mtalens.pipeline import imap

        password = imap.resolve_password(password_file=None, environ=os.environ,
                                         config=self.imap_config)  # fmt: skip
        options = imap.ImapOptions(password=password, ca_file=self.imap_config.ca_file,
                                   move_to=self.config.imap_move_to)  # fmt: skip
        for text in self.config.imap:
            url = imap.parse_url(text)
            self.mailboxes.append(imap.MailboxWatcher(
                url, options, self.in_window, poll_interval=self.config.imap_poll_interval,
                on_result=self._count_imap,
            ).start())  # fmt: skip
            log.info("imap mailbox watched", extra={"mailbox": url.display})

    def _count_imap(self, r: Any) -> None:
        for outcome, n in (("stored", r.stored), ("duplicate", r.duplicates),
                           ("quarantined", r.quarantined)):  # fmt: skip
            self.metrics.inc("mtalens_mailbox_messages_total", "Bounce mailbox messages by outcome.",
                             n, origin="imap", outcome=outcome)  # fmt: skip

    def _store_webhooks(self, store: Store) -> None:
        """Commit what the webhook receiver accepted; its requests are answered then."""
        if self.webhooks is None:
            return
        from mtalens.pipeline import webhooks

        # Opening and closing the store (its checkpoint) cost more than committing a few
        # requests' events (measured: ~15 ms + 30-60 ms against 10-30 ms): while requests keep
        # coming, the window stays open and commits each group as it comes, for at most
        # WEBHOOK_LINGER, and closes once none came for WEBHOOK_IDLE.
        pending = self.webhooks.pending
        jobs = webhooks.take(pending)
        if not jobs:
            return
        deadline = time.monotonic() + WEBHOOK_LINGER
        while True:
            webhooks.commit(store, jobs, metrics=self.metrics)
            left = deadline - time.monotonic()
            if left <= 0 or self._stop:
                return
            try:
                first = pending.get(timeout=min(WEBHOOK_IDLE, left))
            except queue.Empty:
                return
            jobs = [first, *webhooks.take(pending)]

    def _store_checks(self, store: Store) -> None:
        """Hand our IPs from the logs to the scheduled checks (at most every
        ``CHECK_IPS_REFRESH`` seconds) and store the runs they finished."""
        if self.checks is None:
            return
        from mtalens.pipeline.checks import commit_run, our_addresses

        now = time.monotonic()
        if self.config.checks.ips_from_logs and (
            self._log_ips_at is None or now - self._log_ips_at >= CHECK_IPS_REFRESH
        ):
            self._log_ips_at = now
            try:
                self.checks.set_log_ips(our_addresses(store))
            except Exception:  # the daemon never dies on a check; the configured IPs remain
                log.exception("checks: reading our addresses from the store failed")
        runs = self.checks.finished()
        for i, run in enumerate(runs):
            try:
                commit_run(store, run, metrics=self.metrics, alerts=self.alerts)
            except Exception:
                self.checks.give_back(runs[i:])  # stored at the next window
                raise

    def _fold_summary(self, store: Store, *, final: bool) -> None:
        """Fold new rows into the suppression summary (if the store has one) at most every
        SUMMARY_FOLD_INTERVAL seconds and at shutdown: readers are right without it (they
        evaluate unfolded rows on the fly), only slower the more rows wait."""
        if self.config.lake is not None:
            return  # a lake's readers keep the summary themselves (pipeline/lake.py)
        now = time.monotonic()
        recent = self._folded_at is not None and now - self._folded_at < SUMMARY_FOLD_INTERVAL
        if recent and not final:
            return
        self._folded_at = now
        try:
            done = upkeep.fold_new_rows(store, self.policy)
        except Exception:  # the daemon never dies on upkeep; the next fold tries again
            log.exception("suppression summary fold failed")
            return
        if done is not None:
            log.info("suppression summary folded",
                     extra={"deliveries": done.new_deliveries, "addresses": done.addresses,
                            "seconds": round(time.monotonic() - now, 3)})  # fmt: skip

    # -- logs -----------------------------------------------------------------------------------

    def _drain_siblings_at_start(self, ing: LogIngestor) -> None:
        """Rotated while we were down: finish the rotated files a checkpoint says are unread, and
        read whole those that appeared after our last commit for that name (created and rotated
        away while we were down). Files older than that are history: ``mtalens ingest`` them."""
        names = {p for pattern in self.config.logs for p in _expand(pattern)}
        for path in sorted(names):
            sibs = [s for s in _rotated_siblings(path) if s not in names]
            known = [str(path), *map(str, sibs)]
            row = ing.store.con.execute(
                "SELECT max(updated_at) FROM checkpoints WHERE path IN (SELECT unnest(?))", [known]
            ).fetchone()
            last = row[0].timestamp() if row and row[0] is not None else None
            for sib in sibs:  # oldest first
                try:
                    head = read_head(sib)
                    st = sib.stat()
                except OSError:
                    continue
                if not head:
                    continue
                mtime = st.st_mtime
                cp = ing.find_checkpoint(head, st)
                unread = cp is not None and cp.offset < logical_size(sib)
                missed = cp is None and last is not None and mtime > last
                if unread or missed:
                    log.info("reading rotated file left unfinished", extra={"path": str(sib),
                             "offset": cp.offset if cp else 0})  # fmt: skip
                    ing.ingest_file(sib)

    def _tail_logs(self, ing: LogIngestor, *, final: bool) -> None:
        now = time.monotonic()
        seen: dict[tuple[int, int], tuple[Path, str]] = {}
        for pattern in self.config.logs:
            for path in _expand(pattern):
                try:
                    st = path.stat()
                except OSError:
                    continue
                seen.setdefault((st.st_dev, st.st_ino), (path, pattern))
        # rotated-away files first: their lines were written before the new file's
        for key, gone in list(self.tails.items()):
            if key in seen:
                continue
            self._drain_orphan(ing, key, gone, now, final=final)
        for key, (path, pattern) in seen.items():
            tail = self.tails.get(key)
            if tail is None:
                try:
                    fh = open(path, "rb")  # noqa: SIM115 - closed when the tail is dropped
                except OSError as exc:
                    log.warning("cannot open log", extra={"path": str(path), "error": str(exc)})
                    continue
                st = os.fstat(fh.fileno())
                if (st.st_dev, st.st_ino) != key:  # replaced between stat and open: next time
                    fh.close()
                    continue
                tail = self.tails[key] = _Tail(key=key, path=path, source=pattern, fh=fh,
                                               grew_at=now)  # fmt: skip
            elif tail.orphaned_at is not None:
                tail.orphaned_at = None
            tail.path = path
            self._advance(ing, tail, final=False)

    def _drain_orphan(
        self, ing: LogIngestor, key: tuple[int, int], tail: _Tail, now: float, *, final: bool
    ) -> None:
        """A file that lost its name (rotated, deleted): read on through its descriptor until it
        has been quiet for ``drain_grace``, then to its very end, then close it."""
        if tail.orphaned_at is None:
            tail.orphaned_at = now
            self.stats.rotations += 1
            log.info("log rotated away, draining", extra={"path": str(tail.path)})
        self._advance(ing, tail, final=False)
        quiet = time.monotonic() - max(tail.grew_at, tail.orphaned_at) >= self.config.drain_grace
        if final or quiet:
            self._advance(ing, tail, final=True)
            tail.fh.close()
            del self.tails[key]

    def _advance(self, ing: LogIngestor, tail: _Tail, *, final: bool) -> None:
        fd = tail.fh.fileno()
        st = os.fstat(fd)
        if st.st_size != tail.last_size:
            tail.last_size = st.st_size
            tail.grew_at = time.monotonic()
        if tail.cp is not None and (
            st.st_size < tail.cp.offset or _head_hash(fd, tail.cp.fp_len) != tail.cp.fp_hash
        ):
            self._truncated(ing, tail)
        if tail.cp is None:
            head = os.pread(fd, FP_LEN, 0)
            if not head:
                return
            tail.cp, tail.clock = ing.open_source(
                tail.path, head, st, log_format=self.config.format_of(tail.source)
            )
            self._source_of_key[tail.cp.source_key] = tail.source
            if tail.cp.offset > st.st_size:  # cannot happen for a matching head; be safe
                tail.cp.offset = 0
        elif tail.cp.fp_len < FP_LEN and st.st_size > tail.cp.fp_len:
            head = os.pread(fd, FP_LEN, 0)  # identify the file by more of its bytes from now on
            tail.cp.fp_len, tail.cp.fp_hash = len(head), fingerprint(head)
            ing.redetect(tail.cp, head)  # and tell its format, if its first lines could not
        assert tail.clock is not None
        if tail.cp.format_guessed and tail.cp.fp_len < FP_LEN and not final:
            return  # no format claims its first lines yet: wait for more of them (or 1 KiB)
        if st.st_size > tail.cp.offset or (final and st.st_size != tail.cp.offset):
            before = ing.stats.read
            tail.fh.seek(tail.cp.offset)
            ing.consume(tail.fh, tail.cp, tail.clock, final=final)
            self.stats.lines += ing.stats.read - before
        self.metrics.set("mtalens_unread_bytes", "Bytes written to a source and not yet committed.",
                         max(0, st.st_size - tail.cp.offset), source=tail.source)  # fmt: skip

    def _truncated(self, ing: LogIngestor, tail: _Tail) -> None:
        """copytruncate: read what the copy holds past our checkpoint, then start the file anew."""
        assert tail.cp is not None
        self.stats.truncations += 1
        cp = tail.cp
        found = False
        for sib in reversed(_rotated_siblings(tail.path)):
            try:
                head = read_head(sib)
            except OSError:
                continue
            if len(head) >= cp.fp_len and fingerprint(head[: cp.fp_len]) == cp.fp_hash:
                log.info("log truncated, reading the rest from its copy",
                         extra={"path": str(tail.path), "copy": str(sib), "offset": cp.offset})  # fmt: skip
                ing.ingest_file(sib)
                found = True
                break
        if not found:
            log.warning("log truncated and no copy found: lines written after offset and before "
                        "the truncation are lost", extra={"path": str(tail.path),
                                                         "offset": cp.offset})  # fmt: skip
        tail.cp, tail.clock = None, None

    def _on_commit(self, batch: Batch, source_key: str, counts: LineCounts) -> None:
        # by columns: the fast path hands over the Arrow tables it wrote (no per-row objects),
        # the pure path's tuples are turned into the same tables
        tables = batch.tables if isinstance(batch, ArrowBatch) else _batch_tables(batch)
        deliveries = tables.get("delivery_log")
        auths = tables.get("auth_failure_log")
        m = self.metrics
        ing = self.ingestor
        mta = ing.format_of_key.get(source_key, _POSTFIX_ROW.name) if ing else _POSTFIX_ROW.name
        if deliveries is not None:
            m.record_delivery_table(deliveries, mta)
        rejections = tables.get("rejection_log")
        if rejections is not None:
            m.record_rejection_table(rejections, mta)
        events = tables.get("event_log")
        if events is not None:
            m.record_event_table(events, mta)
        m.record_auth_failures(0 if auths is None else auths.num_rows, mta)
        m.record_queue(counts, mta)
        source = self._source_of_key.get(source_key, "rotated")
        m.record_lines(source, counts.read, counts.stored, dict(counts.ignored),
                       dict(counts.quarantined), mta)  # fmt: skip
        if deliveries is not None and deliveries.num_rows:
            newest = pc.max(deliveries["logged_at"]).as_py()
            lag = max(0.0, time.time() - newest.timestamp())
            m.set(
                "mtalens_lag_seconds", "Wall clock minus the newest committed log timestamp.", lag
            )
        if self.alerts.rules:  # rows as dicts only for what the rules read
            self.alerts.feed(_dicts(deliveries, _ALERT_DELIVERY_COLUMNS),
                             _dicts(auths, _ALERT_AUTH_COLUMNS))  # fmt: skip

    def close(self) -> None:
        """Close the files still open (``run`` does it on exit)."""
        self._close_tails()
        self.tails.clear()

    def _close_tails(self) -> None:
        for t in self.tails.values():
            with contextlib.suppress(OSError):
                t.fh.close()

    # -- mailboxes ------------------------------------------------------------------------------

    def _bounce_maildirs(self, store: Store, *, final: bool) -> None:
        """Bounce Maildirs through the decoding workers (pipeline/decode_pool.py): store and
        move on what they finished, then hand them what is due, as far as they have room. At
        the last window (``--once``, shutdown) everything due is decoded and stored first."""
        pool = self._decode_pool()
        while True:
            self._store_decoded(store, pool.done(wait=final))
            submitted = sum(self._submit_maildir(store, Path(md)) for md in self.config.maildirs)
            if not final or not (submitted or pool.busy()):
                return

    def _decode_pool(self) -> DecodePool:
        if self._pool is None:
            self._pool = DecodePool(workers=self.config.decode_workers, on_done=self.wake)
        return self._pool

    def _submit_maildir(self, store: Store, root: Path) -> int:
        """Read the due messages of ``new/`` and give them to the workers while they have room
        (the rest wait in ``new/``); messages that cannot be read are retried, then quarantined
        and moved. Returns how many were submitted."""
        pool = self._decode_pool()
        new, cur = root / "new", root / "cur"
        try:
            with os.scandir(new) as entries:
                names = sorted(e.name for e in entries if self._maildir_due(e))
        except OSError:
            return 0
        given_up: list[tuple[Path, str]] = []
        submitted = 0
        for name in names[:MAILDIR_BATCH]:
            f = new / name
            try:
                size = f.lstat().st_size
                if not pool.room(str(f), size):
                    break
                raw = _read_maildir_file(f)
            except FileNotFoundError:
                self._unreadable.pop(str(f), None)  # moved or deleted by someone else meanwhile
                pool.forget(str(f))
                continue
            except OSError as exc:
                if self._unreadable_message(f, exc):
                    given_up.append((f, _os_error(exc)))
                continue
            self._unreadable.pop(str(f), None)
            pool.submit(MailboxMessage(source=str(f), index=1, offset=0, raw=raw))
            submitted += 1
        if given_up:
            self._quarantine_unreadable(store, given_up)
            cur.mkdir(exist_ok=True)
            for f, _ in given_up:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f, cur / _maildir_name(f.name))
        return submitted

    def _store_decoded(self, store: Store, decoded: list[bounces.Decoded]) -> None:
        """Commit what the workers decoded, then (maildir(5)) move each message to ``cur/``."""
        if not decoded:
            return
        self._store_results(store, decoded, origin="maildir")
        for d in decoded:
            f = Path(d.message.source)
            cur = f.parent.parent / "cur"
            cur.mkdir(exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.rename(f, cur / _maildir_name(f.name))
        self.stats.maildir_messages += len(decoded)

    def _report_maildir(self, store: Store, root: Path) -> None:
        """DMARC/TLS-RPT report mail (mtalens.pipeline.aggregate_reports): read up to
        MAILDIR_BATCH messages of ``new/`` and move each one on to ``cur/`` only once it is
        stored (or recognised as a duplicate) or quarantined: a message that cannot be read
        stays in ``new/`` and is tried again (see ``_unreadable_message``). Parsed in the write
        window (the reports' parsers are bounded by their decompression limits); bounce mail
        goes to the decoding workers instead (``_bounce_maildirs``)."""
        new, cur = root / "new", root / "cur"
        try:
            with os.scandir(new) as entries:
                names = sorted(e.name for e in entries if self._maildir_due(e))
        except OSError:
            return
        names = names[:MAILDIR_BATCH]
        if not names:
            return
        msgs: list[MailboxMessage] = []
        given_up: list[tuple[Path, str]] = []
        for name in names:
            f = new / name
            try:
                raw = _read_maildir_file(f)
            except FileNotFoundError:
                self._unreadable.pop(str(f), None)  # moved or deleted by someone else meanwhile
                continue
            except OSError as exc:
                if self._unreadable_message(f, exc):
                    given_up.append((f, _os_error(exc)))
                continue
            self._unreadable.pop(str(f), None)
            msgs.append(MailboxMessage(source=str(f), index=1, offset=0, raw=raw))
        if msgs:
            self._store_reports(store, msgs)
        if given_up:
            self._quarantine_unreadable(store, given_up)
        # only now, after the commit, move them on (maildir(5))
        cur.mkdir(exist_ok=True)
        for f in [Path(m.source) for m in msgs] + [f for f, _ in given_up]:
            with contextlib.suppress(FileNotFoundError):
                os.rename(f, cur / _maildir_name(f.name))
        self.stats.maildir_messages += len(msgs)

    def _store_reports(self, store: Store, msgs: list[MailboxMessage]) -> None:
        """Report mail into the store, committed before the caller moves it on: a report that
        cannot be read is quarantined there with its reason, like `mtalens reports ingest`."""
        from mtalens.pipeline.aggregate_reports import ReportIngestor

        ing = ReportIngestor(store)
        ing.add_messages(msgs)
        ing.flush()
        r = ing.result
        self.stats.report_messages += len(msgs)
        self.metrics.inc("mtalens_report_messages_total", "Report mail read from Maildirs.",
                         float(len(msgs)))  # fmt: skip
        log.info("report mail", extra={"messages": len(msgs), "dmarc_reports": r.dmarc_reports,
                 "tlsrpt_reports": r.tlsrpt_reports, "duplicates": r.duplicates,
                 "quarantined": r.quarantined})  # fmt: skip

    def _maildir_due(self, entry: os.DirEntry[str]) -> bool:
        """A ``new/`` entry to read now: not a dot file or directory, and not waiting for the
        retry of an earlier failed read."""
        if entry.name.startswith("."):
            return False
        if self._pool is not None and self._pool.in_flight(entry.path):
            return False  # with a decoding worker
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                return False
        failed = self._unreadable.get(entry.path)
        return failed is None or failed[1] <= time.monotonic()

    def _unreadable_message(self, path: Path, exc: OSError) -> bool:
        """Count a failed read; True when it was the MAILDIR_READ_ATTEMPTS-th (give up)."""
        attempts = self._unreadable.get(str(path), (0, 0.0))[0] + 1
        retry_in = MAILDIR_RETRY_AFTER * 2 ** (attempts - 1)
        self._unreadable[str(path)] = (attempts, time.monotonic() + retry_in)
        self.metrics.inc("mtalens_mailbox_read_failures_total",
                         "Failed reads of Maildir messages (each is retried, then quarantined).")  # fmt: skip
        last = attempts >= MAILDIR_READ_ATTEMPTS
        log.warning("cannot read Maildir message, quarantining it" if last else
                    "cannot read Maildir message, leaving it in new/ for a retry",
                    extra={"path": str(path), "error": _os_error(exc), "attempt": attempts,
                           "attempts": MAILDIR_READ_ATTEMPTS,
                           "retry_in_seconds": None if last else retry_in})  # fmt: skip
        return last

    def _quarantine_unreadable(self, store: Store, given_up: list[tuple[Path, str]]) -> None:
        """One quarantine row per message given up (reason ``unreadable``, no raw bytes, the
        detail says where it went), committed before it leaves ``new/``; a row already there
        (a crash before the move) is not written twice."""
        sources = [str(f) for f, _ in given_up]
        known = {
            str(src)
            for (src,) in store.con.execute(
                f"SELECT source FROM {store.history('quarantine')} WHERE source_kind = 'mail' "
                "AND reason = "
                "'unreadable' AND source IN (SELECT unnest(?))",
                [sources],
            ).fetchall()
        }
        at = datetime.now(UTC)
        rows = [
            (str(f), f"{error}; moved to cur/{_maildir_name(f.name)} after "
             f"{MAILDIR_READ_ATTEMPTS} attempts", at)
            for f, error in given_up
            if str(f) not in known
        ]  # fmt: skip
        if rows:
            with store.transaction() as con:
                con.executemany(
                    'INSERT INTO quarantine (source, source_kind, "offset", reason, detail, raw,'
                    " quarantined_at) VALUES (?, 'mail', 0, 'unreadable', ?, NULL, ?)",
                    rows,
                )
        for f, _ in given_up:
            self._unreadable.pop(str(f), None)
        self.metrics.inc("mtalens_mailbox_messages_total", "Bounce mailbox messages by outcome.",
                         len(given_up), origin="maildir", outcome="quarantined")  # fmt: skip

    def _store_messages(self, store: Store, msgs: list[MailboxMessage], *, origin: str) -> None:
        self._store_results(store, [bounces.decode_message(m) for m in msgs], origin=origin)

    def _store_results(self, store: Store, decoded: list[bounces.Decoded], *, origin: str) -> None:
        classifier = bounces.default_classifier()
        result = bounces.IngestResult(read=len(decoded))
        bounces._write_batch(store, decoded, classifier, datetime.now(UTC), result)
        m = self.metrics
        for outcome, n in (("stored", result.stored), ("duplicate", result.duplicates),
                           ("quarantined", result.quarantined)):  # fmt: skip
            m.inc("mtalens_mailbox_messages_total", "Bounce mailbox messages by outcome.", n,
                  origin=origin, outcome=outcome)  # fmt: skip
        for d in decoded:
            for row in bounces.rows_of(d, classifier):
                if row.action == "failed":
                    m.record_bounce(origin, row.reason, row.category)

    def _mbox(self, store: Store, path: Path, *, final: bool) -> None:
        try:
            st = path.stat()
            head = read_head(path)
        except OSError:
            return
        if not head:
            return
        key, offset = _mbox_checkpoint(store, head)
        if st.st_size < offset:
            offset = 0  # rewritten (a client expunged messages): content hashes skip the rest
        if st.st_size == offset:
            return
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        quiet = time.time() - st.st_mtime >= self.config.drain_grace
        if final or quiet:
            end = len(data)
        else:
            # the last message is complete once the next From_ line begins after it
            seps = list(_MBOX_SEPARATOR.finditer(data))
            end = seps[-1].end() - len(b"From ") if seps else 0
        if end <= 0:
            return
        prior = _mbox_prior_count(store, str(path), offset)
        parts = list(split_mbox(io.BytesIO(data[:end])))
        if end < len(data) and parts:
            # the blank line before the next From_ is the separator's, as when read whole
            off, raw = parts[-1]
            cut = 2 if raw.endswith(b"\r\n\r\n") else 1 if raw.endswith(b"\n\n") else 0
            parts[-1] = (off, raw[: len(raw) - cut])
        msgs = [
            MailboxMessage(source=str(path), index=prior + i, offset=offset + off, raw=raw)
            for i, (off, raw) in enumerate(parts, start=1)
        ]
        self._store_messages(store, msgs, origin="mbox")
        with store.transaction() as con:
            con.execute(
                'INSERT OR REPLACE INTO checkpoints (source_key, path, device, inode, fp_len,'
                ' fp_hash, "offset", updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                [key, str(path), st.st_dev, st.st_ino, len(head), fingerprint(head),
                 offset + end, datetime.now(UTC)],
            )  # fmt: skip
        self.stats.mbox_messages += len(msgs)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> WatchStats:
        """Until SIGTERM/SIGINT (or one window with ``once``); SIGHUP reloads the config."""
        in_main = threading.current_thread() is threading.main_thread()
        if in_main and not once:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
            signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        server = None
        if self.config.metrics_port is not None and not once:
            server = MetricsServer(self.metrics, self.config.metrics_host,
                                   self.config.metrics_port).start()  # fmt: skip
            log.info("metrics listening", extra={"host": server.host, "port": server.port})
        observer = None if once else self._start_observer()
        checks_started = False
        if not once:
            self._start_mailboxes()
        if self.webhook_config.port is not None and not once:
            from mtalens.pipeline.webhooks import WebhookReceiver

            self.webhooks = WebhookReceiver(self.webhook_config, metrics=self.metrics,
                                            wake=self.wake).start()  # fmt: skip
            log.info("webhooks listening", extra={"host": self.webhook_config.host,
                                                  "port": self.webhooks.port})  # fmt: skip
        log.info("watch started", extra={"logs": list(self.config.logs),
                 "maildirs": list(self.config.maildirs), "mboxes": list(self.config.mboxes),
                 "inotify": observer is not None, "once": once})  # fmt: skip
        for missing in self.unmatched():
            log.warning("source not there (yet)", extra={"source": missing})
        try:
            while True:
                started = time.monotonic()
                try:
                    self.window(final=once)
                except StoreError:
                    # at start-up (or --once) an unusable store is fatal; later (a full disk, a
                    # descriptor shortage) the next window tries again: logged, state was reset
                    if once or self.stats.windows == 0:
                        raise
                    time.sleep(min(self.config.poll_interval, 1.0))
                except Exception:
                    if once:
                        raise
                    time.sleep(min(self.config.poll_interval, 1.0))  # logged; state was reset
                if self.checks is not None and once:
                    self.checks.run_once()  # now, with the IPs the window read: then store it
                    with self._open_store() as store:
                        self._store_checks(store)
                elif self.checks is not None and not checks_started and self.stats.windows:
                    self.checks.start()  # after a first window: it knows our IPs from the logs
                    checks_started = True
                if once or self._stop:
                    break
                # at most one window per commit_interval; otherwise sleep until woken or polled
                rest = self.config.commit_interval - (time.monotonic() - started)
                if rest > 0:
                    time.sleep(rest)
                self._wake.wait(self.config.poll_interval)
                self._wake.clear()
                if self._reload:
                    self._reload = False
                    try:
                        self.reload()
                        self._idle_state = None  # new sources or maildirs: look at them now
                    except Exception as exc:
                        log.error(
                            "reload failed, keeping the old config", extra={"error": str(exc)}
                        )
            if self._stop and not once:
                self.window()  # flush what arrived since the last window, then checkpoint
        finally:
            if observer is not None:
                # watchdog's inotify emitter, stopped while it reads, logs "queue_events()
                # called when the thread is inactive" at ERROR (a shutdown race of the library,
                # nothing lost: the last window, above, read the files themselves)
                logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
                observer.stop()
                observer.join(timeout=5)
            if server is not None:
                server.stop()
            if self.webhooks is not None:
                self.webhooks.stop()
                self.webhooks = None
            self._close_store_jobs()
            for mb in self.mailboxes:
                mb.stop()
            self.mailboxes = []
            if self.checks is not None:
                self.checks.stop()
            if self._pool is not None:
                self._pool.close()
            self.alerts.close(wait=1.0)  # a moment for queued webhooks; the log has every alert
            self._close_tails()
            self._close_lake()
            log.info("watch stopped", extra={"windows": self.stats.windows,
                     "lines": self.stats.lines, "maildir_messages": self.stats.maildir_messages,
                     "mbox_messages": self.stats.mbox_messages})  # fmt: skip
        return self.stats

    def unmatched(self) -> list[str]:
        """The configured sources that are not there now: a log pattern no file matches, a
        Maildir without ``new/``, an mbox that is not a file (a daemon waits for them)."""
        out = [f"--log {p}: no such file" for p in self.config.logs if not _expand(p)]
        out += [
            f"--maildir {m}: not a Maildir (no new/)"
            for m in self.config.maildirs
            if not (Path(m) / "new").is_dir()
        ]
        out += [f"--mbox {m}: no such file" for m in self.config.mboxes if not Path(m).is_file()]
        out += [
            f"--reports-maildir {m}: not a Maildir (no new/)"
            for m in self.config.report_maildirs
            if not (Path(m) / "new").is_dir()
        ]
        return out

    def _watched_dirs(self) -> set[str]:
        dirs: set[str] = set()
        for pattern in self.config.logs:
            parent = Path(pattern).parent
            if not has_magic(str(parent)) and parent.is_dir():
                dirs.add(str(parent))
        for md in (*self.config.maildirs, *self.config.report_maildirs):
            if (Path(md) / "new").is_dir():
                dirs.add(str(Path(md) / "new"))
        for mb in self.config.mboxes:
            if Path(mb).parent.is_dir():
                dirs.add(str(Path(mb).parent))
        return dirs

    def _start_observer(self) -> Any:
        if self.config.poll:
            return None
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return None
        wake = self._wake

        class Hint(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        observer = Observer()
        try:
            for d in self._watched_dirs():
                observer.schedule(Hint(), d, recursive=False)
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit: polling still works
            log.warning("inotify unavailable, polling", extra={"error": str(exc)})
            return None
        return observer


def _batch_tables(batch: Batch) -> dict[str, pa.Table]:
    """The pure path's row tuples as the tables the fast path hands to the hook."""
    out: dict[str, pa.Table] = {}
    for name, cols, rows in (("delivery_log", DELIVERY_COLUMNS, batch.deliveries),
                             ("rejection_log", REJECTION_COLUMNS, batch.rejections),
                             ("auth_failure_log", AUTH_COLUMNS, batch.auth_failures),
                             ("event_log", EVENT_COLUMNS, batch.events)):  # fmt: skip
        if rows:
            columns = zip(*rows, strict=True)
            out[name] = pa.table({c: pa.array(v) for c, v in zip(cols, columns, strict=True)})
    return out


def _dicts(tbl: pa.Table | None, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return [] if tbl is None or tbl.num_rows == 0 else tbl.select(list(columns)).to_pylist()


def _zone(name: str | None) -> tzinfo:
    if name:
        return ZoneInfo(name)
    tz = datetime.now().astimezone().tzinfo
    return tz if tz is not None else UTC


def _head_hash(fd: int, n: int) -> str:
    return fingerprint(os.pread(fd, n, 0))


def _mbox_checkpoint(store: Store, head: bytes) -> tuple[str, int]:
    rows = store.con.execute(
        'SELECT source_key, fp_len, fp_hash, "offset" FROM checkpoints WHERE source_key LIKE ?',
        [MBOX_KEY_PREFIX + "%"],
    ).fetchall()
    for key, fp_len, fp_hash, offset in rows:
        if fp_len <= len(head) and fingerprint(head[:fp_len]) == fp_hash:
            return str(key), int(offset)
    return MBOX_KEY_PREFIX + fingerprint(head)[:32], 0


def _mbox_prior_count(store: Store, source: str, offset: int) -> int:
    row = store.con.execute(
        f"SELECT (SELECT count(*) FROM {store.history('bounce_reports')} WHERE source = ? AND"
        f' "offset" < ?) + (SELECT count(*) FROM {store.history("quarantine")} WHERE source = ?'
        " AND source_kind = 'mail'"
        ' AND "offset" < ?)',
        [source, offset, source, offset],
    ).fetchone()
    return int(row[0]) if row else 0


def build_watcher(config_path: str | Path | None, **overrides: Any) -> Watcher:
    """The config file's settings with the command line's on top (start-up errors raise)."""
    checks = {k: overrides.pop(k) for k in list(overrides) if k.startswith("check_")}
    config = load_watch_config(config_path).with_overrides(**overrides)
    given = {k.removeprefix("check_"): v for k, v in checks.items() if v not in (None, [], ())}
    if given:  # any --check-* option turns the checks on, over the file's [checks]
        for k in ("domains", "ips", "resolvers", "dkim_selectors", "blocklists"):
            if k in given:
                given[k] = tuple(str(x).strip().lower() for x in given[k])
        config = replace(config, checks=replace(config.checks, enabled=True, **given)).checked()
    if not (config.logs or config.maildirs or config.mboxes or config.report_maildirs
            or config.imap):  # fmt: skip
        raise ValueError(
            "nothing to watch: give --log, --maildir, --mbox, --reports-maildir or --imap (or [watch] in the config)"
        )
    return Watcher(config, config_path=config_path)
