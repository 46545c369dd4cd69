"""Ingest: log files (plain, rotated, ``.gz``) into the store, exactly once.

Every line read ends as stored, ignored (a named rule) or quarantined (a reason code, with its
raw bytes): ``read == stored + ignored + quarantined``, per batch and per run.

A source is identified by a fingerprint of its first bytes, not by its name, so ``mail.log.1``
after rotation and ``mail.log.2.gz`` later are recognised as what was ``mail.log``. Its checkpoint
(offset, and the year of its RFC 3164 clock) is written in the same transaction as the rows it
covers: a crash loses at most an uncommitted batch, which is read again on the next run.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from mtalens.parsers.lines import Malformed, Parsed, Skipped, parse_line
from mtalens.parsers.syslog import SyslogClock, month_of_3164
from mtalens.pipeline.correlate import (
    AUTH_COLUMNS,
    DEFAULT_QUEUE_LIFETIME,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    REJECTION_COLUMNS,
    Batch,
    ClassifyFn,
    Correlator,
    MessageState,
    stale_horizon,
)
from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.store import Store

log = logging.getLogger(__name__)

FP_LEN = 1024  # bytes of a file's head that identify it
QUARANTINE_RAW_MAX = 1024 * 1024
READ_CHUNK = 4 * 1024 * 1024
# DuckDB's memory during an ingest (see LogIngestor._bulk_settings). An open transaction of the
# fast path that DuckDB does not write optimistically (one DuckDB thread) holds ~230 MB per 1 M
# lines; past the cap it spills. Measured, 5 M lines, load ~2.5: 256 MB cap 19.0 s / 21.3 s,
# peak RSS 812 MB; 384 MB cap 19.0 s / 19.5 s, 883 MB.
INGEST_MEMORY_LIMIT = "256MB"

Clock = Callable[[], datetime]


class IngestError(InputError):
    """A path cannot be ingested (missing, unreadable); raised before anything is written."""


@dataclass(slots=True)
class IngestStats:
    sources: int = 0
    skipped_sources: int = 0  # already fully ingested
    bytes: int = 0
    read: int = 0
    stored: int = 0
    ignored: int = 0
    quarantined: int = 0
    ignored_by_rule: Counter[str] = field(default_factory=Counter)
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def balanced(self) -> bool:
        return self.read == self.stored + self.ignored + self.quarantined

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "skipped_sources": self.skipped_sources,
            "bytes": self.bytes,
            "lines_read": self.read,
            "lines_stored": self.stored,
            "lines_ignored": self.ignored,
            "lines_quarantined": self.quarantined,
            "ignored_by_rule": dict(self.ignored_by_rule.most_common()),
            "quarantined_by_reason": dict(self.quarantined_by_reason.most_common()),
        }


# --- which files, in which order -------------------------------------------------------------

_ROTATED_RE = re.compile(r"^(?P<base>.+?)(?:\.(?P<n>\d+)|-(?P<date>\d{8,10}))?(?:\.gz)?$")
_NOT_LOGS = (".jsonl", ".json", ".md", ".duckdb", ".wal", ".toml", ".py", ".eml", ".parquet")


def _rotation_order(p: Path) -> tuple[str, int, str]:
    m = _ROTATED_RE.match(p.name)
    assert m is not None
    base = str(p.parent / m["base"])
    if m["n"] is not None:  # logrotate numbering: higher is older
        return (base, -int(m["n"]), "")
    if m["date"] is not None:  # dateext: older dates first
        return (base, -(10**6), m["date"])
    return (base, 1, "")


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories expanded to their log files, oldest rotation first."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [
                f
                for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".") and not f.name.endswith(_NOT_LOGS)
            ]
            out.extend(sorted(found, key=_rotation_order))
        elif p.is_file():
            out.append(p)
        elif not p.exists():
            raise IngestError(f"{p}: no such file or directory")
        else:
            raise IngestError(f"{p}: not a regular file")
        for f in out:
            if not os.access(f, os.R_OK):
                raise IngestError(f"{f}: permission denied")
    return out


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return open(path, "rb")


def read_head(path: Path) -> bytes:
    with _open(path) as fh:
        return fh.read(FP_LEN)


def fingerprint(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


# --- the ingestor ------------------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    source_key: str
    path: str
    fp_len: int
    fp_hash: str
    offset: int
    clock_year: int | None
    clock_month: int | None
    device: int | None = None
    inode: int | None = None


def _table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.table({name: pa.array(list(col)) for name, col in zip(columns, cols, strict=True)})


class LogIngestor:
    """Reads log sources into the store. One instance per process; not thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        tz: tzinfo = UTC,
        year: int | None = None,
        classify: ClassifyFn | None = None,
        batch_lines: int = 200_000,
        commit_lines: int = 1_000_000,
        clock: Clock = lambda: datetime.now(UTC),
        progress: Callable[[int], None] | None = None,
        fast: bool | None = None,
        queue_lifetime: timedelta = DEFAULT_QUEUE_LIFETIME,
    ) -> None:
        self.store = store
        # DuckDB checkpoints the WAL into the database file whenever it passes
        # checkpoint_threshold (16 MB by default); every ingest batch is bigger than that, so
        # each commit would rewrite table blocks. Let the WAL grow to 256 MB during a bulk ingest: the
        # checkpoint then happens once, at close (or at the next threshold).
        if not store.read_only and store.path != Path(":memory:"):
            store.con.execute("SET checkpoint_threshold = '256MB'")
        self.tz = tz
        self.year = year
        self.batch_lines = batch_lines
        # the fast path writes batches of batch_lines into one transaction until it holds
        # commit_lines lines (pipeline/fastpath.py; measured on 5 M lines, 2 cores: commits of
        # 200 k lines spent 8.3 s in COMMIT, of 1 M lines 1.9 s); the pure path and an ingestor
        # with an on_commit hook commit every batch
        self.commit_lines = commit_lines
        self.clock = clock
        self.progress = progress
        # Postfix's maximal_queue_lifetime (`mtalens ingest --queue-lifetime`, [postfix] in
        # mtalens.toml): an open message is forgotten after stale_horizon() of it without a line
        self.correlator = Correlator(
            classify if classify is not None else _default_classify(),
            stale_after=stale_horizon(queue_lifetime),
        )
        self.stats = IngestStats()
        self._loaded_open = False
        # called after each commit with (batch, source_key, counts): metrics and alerts hook here
        self.on_commit: Callable[[Batch, str, LineCounts], None] | None = None
        # fast-path hook (pipeline/fastpath.py): the C scanner when built; None = automatic
        # (off with MTALENS_PURE_PYTHON=1), False = always the pure-Python loop below
        self.fast: bool | None = fast
        self._fast_path: Any = None

    # -- checkpoints ----------------------------------------------------------------------------

    def _checkpoints(self) -> list[Checkpoint]:
        rows = self.store.con.execute(
            'SELECT source_key, path, fp_len, fp_hash, "offset", clock_year, clock_month,'
            " device, inode FROM checkpoints"
        ).fetchall()
        return [Checkpoint(*r) for r in rows]

    def find_checkpoint(self, head: bytes) -> Checkpoint | None:
        for cp in self._checkpoints():
            if cp.fp_len <= len(head) and fingerprint(head[: cp.fp_len]) == cp.fp_hash:
                return cp
        return None

    def load_open_messages(self) -> None:
        """Reload the messages still open in the store (once per ingestor)."""
        self._load_open_messages()

    def _load_open_messages(self) -> None:
        if self._loaded_open:
            return
        self._loaded_open = True
        # the messages the correlator would still hold had it read the store's lines in one run
        cur = self.store.con.execute(
            "SELECT * FROM message_log WHERE removed_at IS NULL AND last_seen >= "
            "(SELECT max(last_seen) FROM message_log) - ?",
            [self.correlator.stale_after],
        )
        names = [d[0] for d in cur.description or []]
        states = [MessageState.from_row(dict(zip(names, r, strict=True))) for r in cur.fetchall()]
        self.correlator.load_open(states)

    # -- files ----------------------------------------------------------------------------------

    def run(self, paths: Iterable[str | os.PathLike[str]]) -> IngestStats:
        files = expand_paths(paths)
        self._load_open_messages()
        with self._bulk_settings():
            for f in files:
                self.ingest_file(f)
        return self.stats

    @contextmanager
    def _bulk_settings(self) -> Iterator[None]:
        """DuckDB settings while files are ingested, restored afterwards (queries keep theirs).

        - ``memory_limit`` (unless ``$MTALENS_MEMORY_LIMIT`` sets one): by default DuckDB may
          use 80% of RAM and keeps the table blocks it wrote cached, so an ingest's RSS grew
          with the file (measured, fast path: DuckDB's share 56 MB after 1 M lines, 300 MB
          after 5 M). Under the cap, cached blocks are evicted (they are on disk) and
          uncommitted ones spill to DuckDB's temporary directory.
        - ``threads``: one fewer than the machine's cores (at least 1). The reading thread
          (scanner + correlation) keeps one core busy; a parallel INSERT on every core competed
          with it (measured on 2 cores, 5 M lines: 22.7 s with 2 DuckDB threads, 17.5 s with 1;
          process CPU 21.9 s and 20.1 s)."""
        con = self.store.con
        saved: list[tuple[str, Any]] = []
        wanted: list[tuple[str, Any]] = [("threads", max(1, (os.cpu_count() or 1) - 1))]
        if not os.environ.get("MTALENS_MEMORY_LIMIT") and self.store.path != Path(":memory:"):
            wanted.append(("memory_limit", INGEST_MEMORY_LIMIT))
        for name, value in wanted:
            row = con.execute("SELECT current_setting(?)", [name]).fetchone()
            con.execute(f"RESET {name}")
            default = con.execute("SELECT current_setting(?)", [name]).fetchone()
            # a default is restored with RESET: the text of a memory_limit ("2.7 GiB") does not
            # give back the same number of bytes
            saved.append((name, None if row == default or row is None else row[0]))
            con.execute(f"SET {name} = '{value}'")
        try:
            yield
        finally:
            for name, old in saved:
                con.execute(f"RESET {name}" if old is None else f"SET {name} = '{old}'")

    def _start_year(self, path: Path, head: bytes) -> int:
        if self.year is not None:
            return self.year
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=self.tz)
        first_month = month_of_3164(head[:3].decode("ascii", "replace"))
        if first_month is not None and first_month > mtime.month:
            return mtime.year - 1  # the file started last year
        return mtime.year

    def ingest_file(self, path: Path) -> None:
        head = read_head(path)
        self.stats.sources += 1
        if not head:
            return
        cp, clock = self.open_source(path, head, path.stat())
        with _open(path) as fh:
            if cp.offset:
                if path.suffix == ".gz":
                    remaining = cp.offset
                    while remaining:
                        got = fh.read(min(remaining, READ_CHUNK))
                        if not got:
                            break
                        remaining -= len(got)
                else:
                    fh.seek(cp.offset)
            before = self.stats.read
            self._consume(fh, cp, clock, final=True)
            if self.stats.read == before:
                self.stats.skipped_sources += 1

    def open_source(
        self, path: Path, head: bytes, st: os.stat_result
    ) -> tuple[Checkpoint, SyslogClock]:
        """The checkpoint of the file whose first bytes are ``head`` (a new one at offset 0 if
        none matches), with its device/inode set from ``st``, and the clock to read it with."""
        cp = self.find_checkpoint(head)
        if cp is None:
            fp_len = len(head)
            cp = Checkpoint(
                source_key=fingerprint(head)[:32],
                path=str(path),
                fp_len=fp_len,
                fp_hash=fingerprint(head),
                offset=0,
                clock_year=None,
                clock_month=None,
            )
        elif cp.fp_len < len(head):  # the file grew past the bytes we fingerprinted
            cp.fp_len, cp.fp_hash = len(head), fingerprint(head)
        cp.path = str(path)
        cp.device, cp.inode = st.st_dev, st.st_ino
        year = cp.clock_year if cp.clock_year is not None else self._start_year(path, head)
        return cp, SyslogClock(year=year, tz=self.tz, month=cp.clock_month or 0)

    def consume(self, fh: IO[bytes], cp: Checkpoint, clock: SyslogClock, *, final: bool) -> None:
        """Read complete lines from ``fh`` (positioned at ``cp.offset``) to EOF, committing every
        batch; with ``final=False`` a trailing partial line stays unread (the checkpoint offset
        stops before it), so a tailer reads it again once its newline is written."""
        self._consume(fh, cp, clock, final=final)

    def _consume(self, fh: IO[bytes], cp: Checkpoint, clock: SyslogClock, *, final: bool) -> None:
        """Read lines from fh (positioned at cp.offset) to EOF, committing every batch."""
        # --- fast-path hook: same rows as below (tests/test_fastpath.py), C scanner ---
        if self._fast_path is None:
            from mtalens.pipeline import fastpath

            use = fastpath.enabled() if self.fast is None else self.fast and fastpath.enabled()
            self._fast_path = fastpath.FastIngest(self) if use else False
        if self._fast_path:
            self._fast_path.consume(fh, cp, clock, final=final)
            return
        # --- end of the fast-path hook ---
        pending = b""
        offset = cp.offset
        counts = LineCounts()
        quarantine: list[tuple[Any, ...]] = []
        in_batch = 0
        while True:
            chunk = fh.read(READ_CHUNK)
            if not chunk:
                break
            self.stats.bytes += len(chunk)
            if self.progress is not None:
                self.progress(len(chunk))
            data = pending + chunk if pending else chunk
            lines = data.split(b"\n")
            pending = lines.pop()
            for raw in lines:
                self._line(raw, offset, cp, clock, counts, quarantine)
                offset += len(raw) + 1
                in_batch += 1
                if in_batch >= self.batch_lines:
                    self._commit(cp, offset, clock, counts, quarantine)
                    counts, quarantine, in_batch = LineCounts(), [], 0
        if pending and final:
            # a last line without its newline: the file is complete, so it is a (truncated) line
            self._line(pending, offset, cp, clock, counts, quarantine)
            offset += len(pending)
            in_batch += 1
        if in_batch or cp.offset != offset or not cp.clock_year:
            self._commit(cp, offset, clock, counts, quarantine)

    def _line(
        self,
        raw: bytes,
        offset: int,
        cp: Checkpoint,
        clock: SyslogClock,
        counts: LineCounts,
        quarantine: list[tuple[Any, ...]],
    ) -> None:
        counts.read += 1
        try:
            v = parse_line(raw, clock)
            if type(v) is Parsed:
                env = v.envelope
                self.correlator.feed(
                    v.record,
                    at=env.logged_at,
                    host=env.host,
                    instance=v.instance,
                    service=v.service,
                    source_key=cp.source_key,
                    offset=offset,
                )
                counts.stored += 1
            elif type(v) is Skipped:
                counts.ignore(v.rule)
            else:
                assert type(v) is Malformed
                self._quarantine(counts, quarantine, cp, offset, v.code, v.detail, raw)
        except Exception as exc:  # a parser bug must not stop the stream: keep the line
            log.error("parser bug at %s:%d\n%s", cp.path, offset, traceback.format_exc())
            reason = f"bug:{type(exc).__name__}"
            self._quarantine(counts, quarantine, cp, offset, reason, str(exc)[:500], raw)

    def _quarantine(
        self,
        counts: LineCounts,
        rows: list[tuple[Any, ...]],
        cp: Checkpoint,
        offset: int,
        reason: str,
        detail: str,
        raw: bytes,
    ) -> None:
        counts.quarantine(reason)
        rows.append(
            (cp.path, "log", offset, reason, detail, raw[:QUARANTINE_RAW_MAX], self.clock())
        )

    # -- commit ---------------------------------------------------------------------------------

    def _commit(
        self,
        cp: Checkpoint,
        offset: int,
        clock: SyslogClock,
        counts: LineCounts,
        quarantine: list[tuple[Any, ...]],
    ) -> None:
        self.correlator.evict_stale()
        batch = self.correlator.take_batch()
        now = self.clock()
        messages = list(batch.touched.values())
        with self.store.transaction() as con:
            _insert(con, "delivery_log", DELIVERY_COLUMNS, batch.deliveries)
            _insert(con, "rejection_log", REJECTION_COLUMNS, batch.rejections)
            _insert(con, "auth_failure_log", AUTH_COLUMNS, batch.auth_failures)
            _insert(con, "event_log", EVENT_COLUMNS, batch.events)
            replaced = [(m.message_key,) for m in messages if m.persisted]
            if replaced:
                keys = _table(("message_key",), replaced)
                con.register("_replaced_keys", keys)
                con.execute(
                    "DELETE FROM message_log WHERE message_key IN "
                    "(SELECT message_key FROM _replaced_keys)"
                )
                con.unregister("_replaced_keys")
            _insert(con, "message_log", MESSAGE_COLUMNS, [m.row() for m in messages])
            _insert(
                con,
                "quarantine",
                ("source", "source_kind", "offset", "reason", "detail", "raw", "quarantined_at"),
                quarantine,
            )
            acct = counts.rows(cp.source_key, now)
            _insert(con, "line_accounting_log", ("source_key", "outcome", "rule", "lines",
                                                 "recorded_at"), acct)  # fmt: skip
            con.execute(
                'INSERT OR REPLACE INTO checkpoints (source_key, path, device, inode, fp_len,'
                ' fp_hash, "offset", clock_year, clock_month, updated_at)'
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [cp.source_key, cp.path, cp.device, cp.inode, cp.fp_len, cp.fp_hash, offset,
                 clock.year, clock.month or None, now],
            )  # fmt: skip
        for m in messages:
            m.persisted = True
        if self.on_commit is not None:
            self.on_commit(batch, cp.source_key, counts)
        cp.offset = offset
        cp.clock_year, cp.clock_month = clock.year, clock.month
        s = self.stats
        s.read += counts.read
        s.stored += counts.stored
        s.ignored += sum(counts.ignored.values())
        s.quarantined += sum(counts.quarantined.values())
        s.ignored_by_rule.update(counts.ignored)
        s.quarantined_by_reason.update(counts.quarantined)


@dataclass(slots=True)
class LineCounts:
    """What one batch did with its lines."""

    read: int = 0
    stored: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)

    def ignore(self, rule: str) -> None:
        self.ignored[rule] += 1

    def quarantine(self, reason: str) -> None:
        self.quarantined[reason] += 1

    def rows(self, source_key: str, now: datetime) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        if self.stored:
            out.append((source_key, "stored", "", self.stored, now))
        out += [(source_key, "ignored", r, n, now) for r, n in self.ignored.items()]
        out += [(source_key, "quarantined", r, n, now) for r, n in self.quarantined.items()]
        return out


def _insert(con: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    tbl = _table(columns, rows)
    con.register("_batch", tbl)
    cols = ", ".join(f'"{c}"' for c in columns)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _batch")
    con.unregister("_batch")


def _default_classify() -> ClassifyFn | None:
    from mtalens.pipeline.classify import default_classifier

    return default_classifier().classify


__all__ = [
    "Checkpoint",
    "IngestError",
    "IngestStats",
    "LineCounts",
    "LogIngestor",
    "expand_paths",
    "fingerprint",
    "read_head",
]
