"""Ingest: log files (plain, rotated, compressed with gzip, bzip2, xz or zstd) into the store,
exactly once.

Every line read ends as stored, ignored (a named rule) or quarantined (a reason code, with its
raw bytes): ``read == stored + ignored + quarantined``, per batch and per run.

A source is identified by a fingerprint of its first bytes, not by its name, so ``mail.log.1``
after rotation and ``mail.log.2.gz`` later are recognised as what was ``mail.log``. Its checkpoint
(offset, and the year of its RFC 3164 clock) is written in the same transaction as the rows it
covers: a crash loses at most an uncommitted batch, which is read again on the next run.

A source that cannot be read as a log is set aside whole, with a reason, and the run goes on
with the others (``IngestStats.failed_sources``; a ``quarantine`` row of ``source_kind``
``'source'``): compressed data that is corrupt or ends early (the lines before the damage are
kept), binary data, and mail (an mbox or a message, for ``mtalens bounces ingest``).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from mtalens.parsers import formats
from mtalens.parsers import postfix as pf
from mtalens.parsers.formats import LineParser
from mtalens.parsers.lines import Malformed, Parsed, Skipped
from mtalens.parsers.syslog import SyslogClock, month_of_3164
from mtalens.pipeline.correlate import (
    AUTH_COLUMNS,
    DEFAULT_QUEUE_LIFETIME,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    FINAL_STATUSES,
    MESSAGE_COLUMNS,
    REJECTION_COLUMNS,
    Batch,
    ClassifyFn,
    Correlator,
    MessageState,
    stale_horizon,
)
from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.store import Store, next_seq

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
    # sources set aside whole or in part: (path, reason, detail); see SourceProblem
    failed_sources: list[tuple[str, str, str]] = field(default_factory=list)
    # sources read to the end in which no line looked like a mail log: (path, lines)
    not_logs: list[tuple[str, int]] = field(default_factory=list)

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
            "failed_sources": [
                {"path": p, "reason": r, "detail": d} for p, r, d in self.failed_sources
            ],
            "not_logs": [{"path": p, "lines": n} for p, n in self.not_logs],
        }


# --- which files, in which order -------------------------------------------------------------

_ROTATED_RE = re.compile(
    r"^(?P<base>.+?)(?:\.(?P<n>\d+)|-(?P<date>\d{8,10}))?(?:\.(?:gz|bz2|xz|zst))?$"
)
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
    """Files as given; directories expanded to their log files, oldest rotation first. A
    Maildir, or a directory with no file to read, is an error that says what to do instead."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if (p / "cur").is_dir() and (p / "new").is_dir():  # maildir(5)
                raise IngestError(
                    f"{p}: is a Maildir, not a log; read its bounces with `mtalens bounces ingest`"
                )
            found = [
                f
                for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".") and not f.name.endswith(_NOT_LOGS)
            ]
            if not found:
                raise IngestError(f"{p}: no log files in this directory")
            out.extend(sorted(found, key=_rotation_order))
        elif p.is_file():
            out.append(p)
        elif not p.exists():
            raise IngestError(f"{p}: no such file or directory")
        else:
            raise IngestError(f"{p}: not a regular file")
    for f in out:  # once per file (inside the loop above it was quadratic)
        if not os.access(f, os.R_OK):
            raise IngestError(f"{f}: permission denied")
    return out


# --- compressed sources -----------------------------------------------------------------------

# Magic numbers: gzip RFC 1952 section 2.3.1; bzip2 "BZh" + block size (bzip2 1.0 format);
# xz file format 1.2.1 section 2.1.1.1; zstd RFC 8878 section 3.1.1. Read from the file's first
# bytes, not its name: logrotate's `compressext` and hand-made copies do not always agree.
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def compression_of(path: Path) -> str | None:
    """``gzip``, ``bzip2``, ``xz``, ``zstd`` or None (plain), from the file's magic number."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    return next((name for sig, name in _MAGIC if magic.startswith(sig)), None)


class SourceReader:
    """A log file's bytes, decompressed if it is compressed. Damaged compressed data (corrupt,
    or ending before its end-of-stream marker) ends the stream where the damage starts and is
    kept in ``error``: the lines before it are read as usual and the source is reported."""

    def __init__(self, path: Path) -> None:
        self.compression = compression_of(path)
        self.error: str | None = None
        raw = open(path, "rb")  # noqa: SIM115  # owned by this reader, closed in close()
        self._raw = raw
        try:
            self._fh, self._damage = _decompressor(self.compression, raw)
        except BaseException:
            raw.close()
            raise

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            return b""
        if self.compression is None:
            return self._fh.read(n)
        # read1: one decompression step at a time, so what was decompressed before the damage
        # is returned (a buffered read(n) drops it when a later step raises)
        parts: list[bytes] = []
        want = n if n >= 0 else 1 << 62
        try:
            while want > 0:
                got = self._fh.read1(min(want, READ_CHUNK))  # type: ignore[attr-defined]
                if not got:
                    break
                parts.append(got)
                want -= len(got)
        except self._damage as exc:
            self.error = f"{self.compression} data corrupt or truncated: {exc}"
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Move ``n`` bytes on from the start (decompressed bytes if compressed)."""
        if self.compression is None:
            self._fh.seek(n)
            return
        while n > 0:
            got = self.read(min(n, READ_CHUNK))
            if not got:
                break
            n -= len(got)

    def close(self) -> None:
        try:
            self._fh.close()  # a decompressor given a file object leaves it open
        finally:
            self._raw.close()

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What each decompressor raises on damaged input: gzip.BadGzipFile and bz2's "Invalid data
# stream" are OSErrors, lzma raises LZMAError, and a stream that ends before its end-of-stream
# marker is an EOFError in all three; zstandard raises its ZstdError.
_DAMAGE: tuple[type[Exception], ...] = (OSError, EOFError, lzma.LZMAError)


def _decompressor(
    kind: str | None, raw: IO[bytes]
) -> tuple[IO[bytes], tuple[type[Exception], ...]]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), _DAMAGE  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb"), _DAMAGE
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb"), _DAMAGE
    if kind == "zstd":
        import zstandard  # only when a .zst log is read

        return _ZstdFrames(raw, zstandard), (*_DAMAGE, zstandard.ZstdError)  # type: ignore[return-value]
    return raw, ()


class _ZstdFrames:
    """zstd frames one after another (RFC 8878 section 2: a file may hold several), read with
    ``read1``. zstandard's ``stream_reader`` ends quietly when a frame is cut short, so frames
    are decoded here and a file that ends inside one raises EOFError like the stdlib's
    decompressors. Input goes in 1 KiB at a time: a zstd block is at most 128 KiB once
    decoded and takes at least 4 bytes (RFC 8878 3.1.1.2), so one step yields at most 32 MiB,
    whatever the file claims (bounded decompression)."""

    STEP = 1024

    def __init__(self, raw: IO[bytes], zstandard: Any) -> None:
        self._raw, self._dctx = raw, zstandard.ZstdDecompressor()
        self._frame: Any = None
        self._buf, self._tail = b"", b""

    def read1(self, n: int) -> bytes:
        while not self._buf:
            data, self._tail = self._tail or self._raw.read(self.STEP), b""
            if not data:
                if self._frame is not None:
                    raise EOFError("zstd data ends inside a frame")
                return b""
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            self._buf = self._frame.decompress(data)
            if self._frame.eof:
                self._tail, self._frame = self._frame.unused_data, None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._raw.close()


def open_log(path: Path) -> SourceReader:
    return SourceReader(path)


def read_head(path: Path) -> bytes:
    with open_log(path) as fh:
        return fh.read(FP_LEN)


def logical_size(path: Path) -> int:
    """Bytes of the log once decompressed (a file's size if it is plain)."""
    with open_log(path) as fh:
        if fh.compression is None:
            return path.stat().st_size
        return sum(len(c) for c in iter(lambda: fh.read(READ_CHUNK), b""))


# Mail where a log was expected: an mbox ("From " line, RFC 4155) or one message (RFC 5322
# header fields a syslog line never starts with).
_MAIL_START = (b"From ", b"Return-Path:", b"Received:", b"Delivered-To:", b"MIME-Version:",
               b"Message-ID:", b"X-Original-To:")  # fmt: skip


def not_a_log(head: bytes) -> tuple[str, str] | None:
    """(reason, detail) when a source's first bytes show it is not a text log, else None.
    NUL bytes alone do not count: a log copied with copytruncate while its writer kept its
    offset starts with a run of NULs and is still a log (those lines are quarantined)."""
    if head.startswith(_MAIL_START):
        return "not-a-log:mail", "looks like mail: read bounces with `mtalens bounces ingest`"
    text = head.replace(b"\0", b"")
    if not text:
        return None
    decoded = text.decode("utf-8", "replace")
    bad = sum(1 for c in decoded if c == "\ufffd" or (c < " " and c not in "\t\n\r"))
    if bad > len(decoded) * 0.1:
        return "not-a-log:binary", f"{bad} of the first {len(decoded)} characters are not text"
    return None


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
    # the registry row (mtalens.parsers.formats) its lines are read with: detected from its
    # first bytes whenever it is opened (or the ingestor's log_format), stored as the mta
    log_format: str = formats.POSTFIX.name
    # no row claimed any of its first lines (a young log): the first row's, until one does
    format_guessed: bool = False


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
        log_format: str | None = None,
    ) -> None:
        self.store = store
        # a registry row's name (`mtalens ingest --log-format`) read for every source, or None:
        # each source's own, detected from its first bytes (mtalens.parsers.formats.detect)
        self.log_format = None if log_format is None else formats.by_name(log_format).name
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
        # one Correlator (one set of rules) per log format read, each owning the messages of
        # its format; the Postfix one is `correlator`, which the fast path takes over
        self._correlators: dict[str, Correlator] = {formats.POSTFIX.name: self.correlator}
        self.stats = IngestStats()
        self._loaded_open = False
        # called after each commit with (batch, source_key, counts): metrics and alerts hook here
        self.on_commit: Callable[[Batch, str, LineCounts], None] | None = None
        # the log format (the MTA) of each source opened, by source key, for the hook's metrics
        self.format_of_key: dict[str, str] = {}
        # fast-path hook (pipeline/fastpath.py): the C scanner when built; None = automatic
        # (off with MTALENS_PURE_PYTHON=1), False = always the pure-Python loop below
        self.fast: bool | None = fast
        self._fast_path: Any = None
        # during run(), the fast path may leave a file's last transaction open for the next
        # file's rows (one commit per file dominated a directory of small files); the daemon,
        # which calls consume() itself, commits every file
        self.defer_last_commit = False
        # run()'s checkpoints by (fp_len, fp_hash), and the lengths in use; None outside run()
        self._index: dict[tuple[int, str], Checkpoint] | None = None
        self._by_inode: dict[tuple[int, int], Checkpoint] = {}  # (device, inode) of each

    # -- checkpoints ----------------------------------------------------------------------------

    def _checkpoints(self) -> list[Checkpoint]:
        rows = self.store.con.execute(
            'SELECT source_key, path, fp_len, fp_hash, "offset", clock_year, clock_month,'
            " device, inode FROM checkpoints"
        ).fetchall()
        return [Checkpoint(*r) for r in rows]

    def find_checkpoint(self, head: bytes, st: os.stat_result | None = None) -> Checkpoint | None:
        """The checkpoint of the source whose first bytes are ``head``. A full fingerprint
        (FP_LEN bytes) names a source wherever it is found (renamed, compressed). A shorter
        one, taken while the file was smaller, is only a prefix and many files share it (a
        1-byte file ``M`` and every log starting in March): it names a file of exactly that
        content, or the same file (``st``: device and inode) grown since."""
        if self._index is not None:  # during run(): the three ways a checkpoint can match
            found = [self._index.get((len(head), fingerprint(head)))]  # full, or exact content
            if st is not None:
                found.append(self._by_inode.get((st.st_dev, st.st_ino)))  # the same file
            candidates = [cp for cp in found if cp is not None]
        else:
            candidates = self._checkpoints()
        for cp in candidates:
            if cp.fp_len > len(head) or fingerprint(head[: cp.fp_len]) != cp.fp_hash:
                continue
            if cp.fp_len >= FP_LEN or cp.fp_len == len(head):
                return cp
            if st is not None and (cp.device, cp.inode) == (st.st_dev, st.st_ino):
                return cp
        return None

    def _index_checkpoint(self, cp: Checkpoint, old: Checkpoint | None = None) -> None:
        """(Re-)index ``cp`` in run()'s index; ``old`` holds its fields before they changed."""
        if self._index is None:
            return
        if old is not None:
            if self._index.get((old.fp_len, old.fp_hash)) is cp:
                del self._index[(old.fp_len, old.fp_hash)]
            inode = (old.device, old.inode)
            if None not in inode and self._by_inode.get(inode) is cp:  # type: ignore[arg-type]
                del self._by_inode[inode]  # type: ignore[arg-type]
        self._index[(cp.fp_len, cp.fp_hash)] = cp
        if cp.device is not None and cp.inode is not None:
            self._by_inode[(cp.device, cp.inode)] = cp

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
        by_format: dict[str, list[MessageState]] = {}
        for st in states:  # the store keeps no format per message: the queue id's shape tells
            by_format.setdefault(formats.owner_of_queue_id(st.queue_id).name, []).append(st)
        for name, group in by_format.items():
            cor = self.correlator_for(name)
            if cor.ends_when_final:  # its recipients with a final status, as it had them
                self._load_final_recipients(group)
            cor.load_open(group)

    def _load_final_recipients(self, states: list[MessageState]) -> None:
        by_key = {st.message_key: st for st in states}
        rows = self.store.con.execute(
            "SELECT message_key, list(DISTINCT recipient) FROM "
            f"{self.store.history('delivery_log')} "
            "WHERE message_key IN (SELECT unnest(?)) AND status IN (SELECT unnest(?)) "
            "GROUP BY message_key",
            [list(by_key), sorted(FINAL_STATUSES)],
        ).fetchall()
        for key, recipients in rows:
            by_key[key].final_rcpts = set(recipients)

    def correlator_for(self, log_format: str) -> Correlator:
        """The correlator of the messages of ``log_format`` (made on first use, with the
        Postfix one's settings)."""
        cor = self._correlators.get(log_format)
        if cor is None:
            base, row = self.correlator, formats.by_name(log_format)
            cor = Correlator(base.classify, stale_after=base.stale_after,
                             recent_size=base.recent_size, unique_ids=row.unique_ids,
                             ends_when_final=row.ends_when_final)  # fmt: skip
            self._correlators[log_format] = cor
        return cor

    # -- files ----------------------------------------------------------------------------------

    def run(self, paths: Iterable[str | os.PathLike[str]]) -> IngestStats:
        """Ingest files in order. This process alone writes checkpoints meanwhile (it holds the
        store read-write), so they are read once and kept in an index (a directory of 10,000
        small files made one query per file over every checkpoint)."""
        files = expand_paths(paths)
        self._load_open_messages()
        self._index, self._by_inode = {}, {}
        for cp in self._checkpoints():
            self._index_checkpoint(cp)
        self.defer_last_commit = True
        try:
            with self._bulk_settings():
                for f in files:
                    self.ingest_file(f)
                self.flush_deferred()
        finally:
            self._index = None
            self.defer_last_commit = False
        return self.stats

    def flush_deferred(self) -> None:
        """Commit what the fast path left open across files (see ``defer_last_commit``)."""
        if self._fast_path:
            self._fast_path.flush()

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
        """Read one file from its checkpoint to its end. A source that is not a log, or whose
        compressed data is damaged, is reported in ``stats.failed_sources`` (and as a
        ``quarantine`` row of kind ``source``); it never stops the run."""
        s = self.stats
        s.sources += 1
        with open_log(path) as fh:
            head = fh.read(FP_LEN)
            if not head:
                if fh.error is not None:
                    self._source_failed(path, "corrupt-compressed", fh.error)
                return
            refused = not_a_log(head)
            if refused is not None:
                self._source_failed(path, *refused)
                return
            cp, clock = self.open_source(path, head, path.stat())
        with open_log(path) as fh:
            fh.skip(cp.offset)
            before = (s.read, s.stored, s.ignored)
            self._consume(fh, cp, clock, final=True)  # type: ignore[arg-type]
            if fh.error is not None:
                self._source_failed(path, "corrupt-compressed", fh.error, offset=cp.offset)
            if s.read == before[0]:
                s.skipped_sources += 1
            elif (s.stored, s.ignored) == before[1:]:
                s.not_logs.append((str(path), s.read - before[0]))

    def _source_failed(self, path: Path, reason: str, detail: str, offset: int = 0) -> None:
        self.flush_deferred()  # its own transaction follows
        self.stats.failed_sources.append((str(path), reason, detail))
        log.warning("%s: set aside, %s: %s", path, reason, detail)
        with self.store.transaction() as con:  # once per source and reason, however often read
            con.execute(
                'INSERT INTO quarantine (source, source_kind, "offset", reason, detail, raw,'
                " quarantined_at) SELECT ?, 'source', ?, ?, ?, NULL, ? WHERE NOT EXISTS (SELECT 1"
                " FROM quarantine WHERE source = ? AND source_kind = 'source' AND reason = ?"
                ' AND "offset" = ?)',
                [str(path), offset, reason, detail, self.clock(), str(path), reason, offset],
            )

    def open_source(
        self, path: Path, head: bytes, st: os.stat_result, *, log_format: str | None = None
    ) -> tuple[Checkpoint, SyslogClock]:
        """The checkpoint of the file whose first bytes are ``head`` (a new one at offset 0 if
        none matches), with its device/inode set from ``st``, and the clock to read it with.
        Its format is ``log_format``, else the ingestor's, else detected from ``head``."""
        cp = self.find_checkpoint(head, st)
        before = None if cp is None else replace(cp)
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
        forced = log_format or self.log_format
        found = None if forced else formats.detect_claimed(head, complete=len(head) < FP_LEN)
        cp.log_format = forced or (found or formats.FORMATS[0]).name
        cp.format_guessed = forced is None and found is None
        self.format_of_key[cp.source_key] = cp.log_format
        self._index_checkpoint(cp, before)
        year = cp.clock_year if cp.clock_year is not None else self._start_year(path, head)
        return cp, SyslogClock(year=year, tz=self.tz, month=cp.clock_month or 0)

    def redetect(self, cp: Checkpoint, head: bytes) -> None:
        """A source whose format was guessed (no row claimed its first lines) is detected again
        from more of its first bytes: the daemon's young log that began with lines of no MTA."""
        if not cp.format_guessed:
            return
        found = formats.detect_claimed(head)
        if found is not None:
            cp.log_format, cp.format_guessed = found.name, False
            self.format_of_key[cp.source_key] = found.name

    def consume(self, fh: IO[bytes], cp: Checkpoint, clock: SyslogClock, *, final: bool) -> None:
        """Read complete lines from ``fh`` (positioned at ``cp.offset``) to EOF, committing every
        batch; with ``final=False`` a trailing partial line stays unread (the checkpoint offset
        stops before it), so a tailer reads it again once its newline is written."""
        self._consume(fh, cp, clock, final=final)

    def _consume(self, fh: IO[bytes], cp: Checkpoint, clock: SyslogClock, *, final: bool) -> None:
        """Read lines from fh (positioned at cp.offset) to EOF, committing every batch."""
        fmt = formats.by_name(cp.log_format)
        # --- fast-path hook: same rows as below (tests/test_fastpath.py), C scanner ---
        # (the scanner reads Postfix only: other formats take the loop below)
        if not fmt.fast:
            self.flush_deferred()  # the fast path's open transaction, before this one's
        elif self._fast_path is None:
            from mtalens.pipeline import fastpath

            use = fastpath.enabled() if self.fast is None else self.fast and fastpath.enabled()
            self._fast_path = fastpath.FastIngest(self) if use else False
        if fmt.fast and self._fast_path:
            self._fast_path.consume(fh, cp, clock, final=final)
            return
        # --- end of the fast-path hook ---
        parse, cor = fmt.parse, self.correlator_for(fmt.name)
        # a format whose entries may span lines (Exim's [n/m] parts through syslog) joins them
        # first; a checkpoint never passes the first line of an entry still open
        joiner = fmt.joiner() if fmt.joiner is not None else None
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
                if joiner is None:
                    self._line(raw, offset, cp, clock, counts, quarantine, parse, cor)
                else:
                    for r, off, decided in joiner.feed(raw, offset):
                        self._line(r, off, cp, clock, counts, quarantine, parse, cor, decided)
                offset += len(raw) + 1
                in_batch += 1
                if in_batch >= self.batch_lines and (
                    joiner is None or joiner.waiting_from() is None
                ):
                    self._commit(cp, offset, clock, counts, quarantine, cor)
                    counts, quarantine, in_batch = LineCounts(), [], 0
        if pending and final:
            # a last line without its newline: the file is complete, so it is a (truncated) line
            if joiner is None:
                self._line(pending, offset, cp, clock, counts, quarantine, parse, cor)
            else:
                for r, off, decided in joiner.feed(pending, offset):
                    self._line(r, off, cp, clock, counts, quarantine, parse, cor, decided)
            offset += len(pending)
            in_batch += 1
        if joiner is not None:
            if final:  # the source is complete: entries still open are given up
                for r, off, decided in joiner.flush():
                    self._line(r, off, cp, clock, counts, quarantine, parse, cor, decided)
            else:  # their lines are read again, whole, next time
                held = joiner.waiting_from()
                offset = offset if held is None else held
        if in_batch or cp.offset != offset or not cp.clock_year:
            self._commit(cp, offset, clock, counts, quarantine, cor)

    def _line(
        self,
        raw: bytes,
        offset: int,
        cp: Checkpoint,
        clock: SyslogClock,
        counts: LineCounts,
        quarantine: list[tuple[Any, ...]],
        parse: LineParser,
        cor: Correlator,
        decided: Skipped | None = None,
    ) -> None:
        counts.read += 1
        if decided is not None:  # a joiner's part of an entry read whole at its first line
            counts.ignore(decided.rule)
            return
        try:
            v = parse(raw, clock)
            if type(v) is Parsed:
                env = v.envelope
                for rec in (v.record, *v.extra):
                    cor.feed(
                        rec,
                        at=env.logged_at,
                        host=env.host,
                        instance=v.instance,
                        service=v.service,
                        source_key=cp.source_key,
                        offset=offset,
                    )
                    counts.note(rec)
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
        cor: Correlator,
    ) -> None:
        cor.evict_stale()
        batch = cor.take_batch()
        now = self.clock()
        messages = list(batch.touched.values())
        with self.store.transaction() as con:
            if batch.deliveries:  # in line order: the correlator appends them as it reads
                first = next_seq(con, len(batch.deliveries))
                rows = [(*r, first + i) for i, r in enumerate(batch.deliveries)]
                _insert(con, "delivery_log", (*DELIVERY_COLUMNS, "seq"), rows)
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
                ' fp_hash, "offset", clock_year, clock_month, updated_at, log_format)'
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [cp.source_key, cp.path, cp.device, cp.inode, cp.fp_len, cp.fp_hash, offset,
                 clock.year, clock.month or None, now, cp.log_format],
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

    # what postfix_exporter counts of the queue manager and cleanup (pipeline/metrics.py
    # record_queue): qmgr "from=... (queue active)" lines with their size and recipients,
    # removals, expiries; cleanup "message-id=" lines
    inserted_sizes: list[int] = field(default_factory=list)
    inserted_rcpts: list[int] = field(default_factory=list)
    removed: int = 0
    expired: int = 0
    cleanup_processed: int = 0
    smtpd_processed: Counter[str] = field(default_factory=Counter)  # by SASL method ("" none)

    def ignore(self, rule: str) -> None:
        self.ignored[rule] += 1

    def inserted(self, size: int, nrcpt: int | None) -> None:
        self.inserted_sizes.append(size)
        if nrcpt is not None:
            self.inserted_rcpts.append(nrcpt)

    def note(self, rec: object) -> None:
        """Count one parsed record of the kinds above (both ingest paths call this)."""
        t = type(rec)
        if t is pf.QueueActive:
            assert isinstance(rec, pf.QueueActive)
            self.inserted(rec.size, rec.nrcpt)
        elif t is pf.Removed:
            self.removed += 1
        elif t is pf.Expired:
            self.expired += 1
        elif t is pf.MessageId:
            self.cleanup_processed += 1
        elif t is pf.Client:
            assert isinstance(rec, pf.Client)
            self.smtpd_processed[rec.sasl_method or ""] += 1

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
    "SourceReader",
    "compression_of",
    "expand_paths",
    "fingerprint",
    "logical_size",
    "not_a_log",
    "open_log",
    "read_head",
]
