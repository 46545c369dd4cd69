"""The lake: the store's tables as immutable Parquet files that many writers add to at once.

A fleet's hosts each run ``mtalens ingest --lake DIR`` or ``mtalens watch --lake DIR`` into one
directory (local, NFS, or a bucket synced by the user): there is no server and no coordination
between writers beyond file names. Layout (version 1)::

    DIR/_lake.json                                   {"format": "mtalens-lake", "version": 1}
    DIR/_schema/<table>.parquet                      0 rows: the table's columns and types
    DIR/<table>/day=YYYY-MM-DD/host=<host>/<writer>-<commit>-<n>.parquet    data (Hive-style)
    DIR/_log/<writer>/<commit>.json                  one writer's commits, numbered from 1
    DIR/_log/_maint/<n>.json                         compactions and expiries, numbered

A data file is written under a temporary name and renamed into place; it is *live* only once a
commit entry lists it. An entry is the commit point: written to a temporary file, flushed, then
hard-linked to its final name, which fails if the name exists (so two processes can never both
publish commit N of one writer). The rows of one store transaction (the ingestor's batch plus
the checkpoint that covers it) are one entry: a reader sees all of them or none, and a writer
killed at any moment leaves files no entry lists (ignored, then swept by ``lake compact``) and
its checkpoint where its last entry left it, so it reads the same lines again: nothing lost,
nothing twice.

Each data file holds its table's columns plus ``_writer`` (the writer's name) and ``_commit``
(its commit number). Append-only tables (deliveries, rejections, events...) are the union of
their live files. Tables whose rows change (``message_log``: a message stays open until it is
removed; ``checkpoints``) are stored append-only too, one row per version, and resolved by
:func:`resolve_sql`: the latest version of each key. Nothing is updated in place.

Readers (:func:`open_view`) take a snapshot of the commit log and never wait for writers: the
maintenance entries are listed before the writers' ones, so a compaction a reader sees never
refers to a writer entry it has not seen. ``lake compact`` merges a partition's small files into
one (an entry that adds it and removes them, atomically); a removed file is deleted from disk
only after a grace period, so a reader that listed it before can still read it. ``lake expire``
removes the partitions older than a retention (never the checkpoints).

The same tables and views run on DuckDB here and on Apache Spark (:mod:`mtalens.pipeline.spark`);
:func:`resolve_sql` is their one definition of the base tables over the files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtalens.pipeline.store import Store, StoreError

FORMAT: Final = "mtalens-lake"
VERSION: Final = 1
MARKER: Final = "_lake.json"
COMPRESSION: Final = "zstd"
# a file compaction removed is deleted this long after (readers that listed it keep reading)
DEFAULT_GRACE: Final = timedelta(hours=1)
WRITER_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# the relative path of a data file as entries may name it (an entry is input: never trust it)
_DATA_RE: Final = re.compile(
    r"^[a-z_]+/day=\d{4}-\d{2}-\d{2}/host=[A-Za-z0-9%._-]+/[A-Za-z0-9._-]+\.parquet$"
)


class LakeError(StoreError):
    """A lake that cannot be used as asked (one line, for the CLI)."""


@dataclass(frozen=True, slots=True)
class LakeTable:
    """A store table kept in the lake.

    ``key``: the columns naming one row whose versions succeed each other (None: rows are only
    ever added). ``per_writer``: each writer has its own versions of a key (checkpoints: two
    hosts may read files with the same first bytes). ``day_of``: the timestamp column whose UTC
    day partitions the rows (None: the commit's day). ``keep``: never expired. ``read_back``:
    the ingestors read its rows again (the writer keeps them in memory and publishes the
    versions that changed); every other table's rows leave the writer's memory once published.
    """

    name: str
    key: tuple[str, ...] | None = None
    per_writer: bool = False
    day_of: str | None = None
    keep: bool = False
    read_back: bool = False


# the tables the log, bounce and report ingestors and the daemon's checks write; the others (the
# suppression policy's caches and state, the DNS cache, schema bookkeeping) are each process's
# own, in memory. A keyed table that is not read back can hold a key twice (a bounce read again
# after the writer restarted): its readers keep one version.
TABLES: Final[dict[str, LakeTable]] = {
    t.name: t
    for t in (
        LakeTable("message_log", key=("message_key",), day_of="first_seen", read_back=True),
        LakeTable("delivery_log", day_of="logged_at"),
        LakeTable("rejection_log", day_of="logged_at"),
        LakeTable("auth_failure_log", day_of="logged_at"),
        LakeTable("event_log", day_of="logged_at"),
        LakeTable("quarantine", day_of="quarantined_at"),
        LakeTable("line_accounting_log", day_of="recorded_at", keep=True),
        LakeTable("checkpoints", key=("source_key",), per_writer=True, keep=True, read_back=True),
        LakeTable("bounce_reports", key=("report_hash",), day_of="ingested_at"),
        LakeTable("bounce_recipients", key=("report_hash", "position")),
        LakeTable("complaint_reports", key=("report_hash",)),
        LakeTable("imap_checkpoints", key=("mailbox",), per_writer=True, keep=True, read_back=True),
        LakeTable("dmarc_report_log", key=("report_key",), day_of="ingested_at"),
        LakeTable("dmarc_record_log", key=("report_key", "position")),
        LakeTable("tlsrpt_report_log", key=("report_key",), day_of="ingested_at"),
        LakeTable("tlsrpt_policy_log", key=("report_key", "position")),
        LakeTable("tlsrpt_failure_log", key=("report_key", "policy_position", "position")),
        LakeTable("check_log", day_of="run_at"),
    )
}
META_COLUMNS: Final = ("_writer", "_commit")


def resolve_sql(table: str, relation: str) -> str:
    """The store's ``table`` over ``relation`` (every row of its live files): DuckDB SQL that
    Spark runs too, transpiled (mtalens.pipeline.spark). A keyed table keeps the latest
    version of each key (the highest commit; within one, the last row written)."""
    spec = TABLES[table]
    if spec.key is None:
        return f"SELECT * EXCLUDE (_writer, _commit) FROM {relation}"
    return f"SELECT * EXCLUDE (_writer, _commit) FROM ({latest_versions_sql(spec, relation)})"


def latest_versions_sql(spec: LakeTable, relation: str) -> str:
    """The rows of keyed ``relation`` no later row of the same key replaces, with their
    ``_writer`` and ``_commit`` (what readers resolve, and what compaction keeps)."""
    assert spec.key is not None
    part = ", ".join((*(("_writer",) if spec.per_writer else ()), *spec.key))
    return (
        f"SELECT * EXCLUDE (_rn) FROM (SELECT *, row_number() OVER (PARTITION BY {part} "
        f"ORDER BY _commit DESC, _writer DESC) AS _rn FROM {relation}) WHERE _rn = 1"
    )


def is_lake(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MARKER).is_file()


def default_writer() -> str:
    """This host's name, as a writer name (``--writer`` names concurrent writers of one host)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return name.lstrip(".-_")[:100] or "host"


def partition_value(value: str | None) -> str:
    """A Hive partition value as a path component: percent-encoded as Spark and DuckDB decode
    it, so a host name read from a log can never be ``..`` or hold a slash."""
    if not value:
        return "__NULL__"
    out = quote(value, safe="-_")
    return out.replace(".", "%2E") if set(out) <= {"."} else out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file; ``exclusive``: fail (FileExistsError)
    if ``path`` exists, as a hard link does, so two writers cannot both publish it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _write_parquet(tbl: pa.Table, path: Path) -> None:
    """``tbl`` as ``path``, whole or not at all: written under a temporary name, flushed, then
    renamed over whatever lies there (a file of a commit that was never published)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(tbl, tmp, compression=COMPRESSION)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def init(root: Path) -> None:
    """Make ``root`` a lake (idempotent); refuse a directory that holds something else."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if marker.exists():
        _check_marker(root)
        return
    # what another writer starting at the same moment may have made already
    ours = ("_log", "_schema")
    if any(p.name not in ours and not p.name.startswith(f".{MARKER}.") for p in root.iterdir()):
        raise LakeError(f"{root}: not empty and not a lake; give an empty or new directory")
    with contextlib.suppress(FileExistsError):
        _write_atomic(marker, json.dumps({"format": FORMAT, "version": VERSION}).encode(),
                      exclusive=True)  # fmt: skip
    (root / "_log" / "_maint").mkdir(parents=True, exist_ok=True)
    (root / "_schema").mkdir(exist_ok=True)


def _check_marker(root: Path) -> None:
    try:
        meta = json.loads((root / MARKER).read_text())
    except FileNotFoundError as exc:
        raise LakeError(
            f"{root}: not a lake (no {MARKER}; `mtalens ingest --lake` makes one)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise LakeError(f"{root}: unreadable {MARKER}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LakeError(f"{root}: {MARKER} does not describe an mtalens lake")
    if meta.get("version") != VERSION:
        raise LakeError(
            f"{root}: lake version {meta.get('version')!r}, this mtalens reads {VERSION}"
        )


# -- the commit log -------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    writer: str  # "_maint" for compactions and expiries
    number: int
    add: list[str]
    remove: list[str]
    at: datetime
    meta: dict[str, Any]


def _read_entry(path: Path, writer: str) -> Entry:
    try:
        doc = json.loads(path.read_bytes())
        add = [str(p) for p in doc.get("add", [])]
        remove = [str(p) for p in doc.get("remove", [])]
        at = datetime.fromisoformat(doc["at"])
        number = int(path.stem)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LakeError(f"{path}: damaged commit entry: {exc}") from exc
    for rel in (*add, *remove):
        if not _DATA_RE.match(rel) or "/../" in f"/{rel}/":
            raise LakeError(f"{path}: commit entry names a file outside the lake: {rel[:200]!r}")
    return Entry(writer, number, add, remove, at, doc.get("meta") or {})


def _entries(root: Path, writer: str, after: int = 0) -> list[Entry]:
    """``writer``'s entries numbered above ``after`` (what its manifest does not cover)."""
    d = root / "_log" / writer
    if not d.is_dir():
        return []
    names = sorted(
        p for p in d.iterdir() if p.suffix == ".json" and p.stem.isdigit() and int(p.stem) > after
    )
    return [_read_entry(p, writer) for p in names]


@dataclass(slots=True)
class Manifest:
    """``_log/_manifest/<n>.json``, written by ``lake compact``: the live files as of the
    entries it covers (each writer's up to a number), so that readers do not read every entry
    since the lake began; the entries it covers are deleted once it is older than the grace."""

    number: int
    at: datetime
    live: list[str]
    covers: dict[str, int]  # writer (and "_maint") -> last entry number covered
    meta: dict[str, dict[str, Any]]  # writer -> the meta of its last covered entry


def _manifests(root: Path) -> list[Path]:
    d = root / "_log" / "_manifest"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix == ".json" and p.stem.isdigit())


def _read_manifest(path: Path) -> Manifest:
    try:
        doc = json.loads(path.read_bytes())
        m = Manifest(int(path.stem), datetime.fromisoformat(doc["at"]),
                     [str(p) for p in doc["live"]],
                     {str(k): int(v) for k, v in doc["covers"].items()},
                     {str(k): dict(v) for k, v in doc.get("meta", {}).items()})  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LakeError(f"{path}: damaged manifest: {exc}") from exc
    for rel in m.live:
        if not _DATA_RE.match(rel) or "/../" in f"/{rel}/":
            raise LakeError(f"{path}: manifest names a file outside the lake: {rel[:200]!r}")
    return m


@dataclass(slots=True)
class Snapshot:
    """The live files of a lake at one moment (what a reader reads)."""

    root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)  # those the manifest does not cover
    manifest: Manifest | None = None

    def schema_file(self, table: str) -> Path:
        return self.root / "_schema" / f"{table}.parquet"

    def last(self, writer: str) -> tuple[int, dict[str, Any]]:
        """``writer``'s last commit number and that entry's meta (0, {} before its first)."""
        own = [e for e in self.entries if e.writer == writer]
        if own:
            return own[-1].number, own[-1].meta
        m = self.manifest
        if m is not None and writer in m.covers:
            return m.covers[writer], m.meta.get(writer, {})
        return 0, {}

    def writers(self) -> list[str]:
        names = {e.writer for e in self.entries}
        if self.manifest is not None:
            names |= set(self.manifest.covers)
        return sorted(n for n in names if n != "_maint")


def open_snapshot(root: str | os.PathLike[str]) -> Snapshot:
    """The manifest first, then the maintenance entries, then the writers' (each listing
    happens after the previous one: a compaction seen refers only to writer entries published
    before it, a manifest seen to entries still there for the grace period)."""
    root = Path(root)
    _check_marker(root)
    log_dir = root / "_log"
    manifests = _manifests(root)
    manifest = _read_manifest(manifests[-1]) if manifests else None
    covers = manifest.covers if manifest is not None else {}
    entries = _entries(root, "_maint", covers.get("_maint", 0))
    writers = sorted(
        p.name for p in log_dir.iterdir() if p.is_dir() and not p.name.startswith("_")
    ) if log_dir.is_dir() else []  # fmt: skip
    for w in writers:
        entries += _entries(root, w, covers.get(w, 0))
    removed = {rel for e in entries for rel in e.remove}
    live: dict[str, list[Path]] = {name: [] for name in TABLES}
    seen: set[str] = set()
    for rel in [*(manifest.live if manifest is not None else []),
                *(rel for e in entries for rel in e.add)]:  # fmt: skip
        if rel in removed or rel in seen:
            continue
        seen.add(rel)
        table = rel.split("/", 1)[0]
        if table in live:
            live[table].append(root / rel)
    return Snapshot(root, live, entries, manifest)


# -- reading --------------------------------------------------------------------------------------


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def raw_sql(snap: Snapshot, table: str) -> str:
    """Every row of ``table``'s live files (plus its schema file, for the types), in DuckDB."""
    files = [snap.schema_file(table), *snap.files.get(table, [])]
    listing = ", ".join(_sql_str(str(p)) for p in files)
    return (
        f"SELECT * FROM read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"
    )


class LakeView(Store):
    """A store in this process's memory whose log and bounce tables are loaded from a snapshot
    of the lake, resolved (:func:`resolve_sql`), when it opens; its other tables (the
    suppression policy's caches and state) start empty, so every command runs on it as on a
    store file, and nothing it writes reaches the lake.

    Why loaded and not views over the files: the suppression policy's incremental summary and
    its macros address rows by DuckDB's ``rowid`` (pipeline/suppressions.py), which only base
    tables have; DuckDB reads Parquet at several million rows a second, and it is what each
    query would read anyway. A lake too big for one reader's memory is Spark's
    (mtalens.pipeline.spark)."""

    lake_root: Path

    @classmethod
    def open_lake(cls, root: str | os.PathLike[str]) -> LakeView:
        root = Path(root)
        snap = open_snapshot(root)
        con = duckdb.connect(":memory:")
        store = cls(con, root, False)
        store.lake_root = root
        try:
            con.execute("SET TimeZone = 'UTC'")
            store._check_migrations(apply=True)
            for name in TABLES:
                if not snap.schema_file(name).exists():
                    continue  # no writer has published this table yet: its empty table stays
                con.execute(f"DROP TABLE {name}")
                con.execute(f"CREATE VIEW _lake_raw_{name} AS {raw_sql(snap, name)}")
                con.execute(
                    f"CREATE TABLE {name} AS {resolve_sql(name, f'_lake_raw_{name}')}"
                    + (" ORDER BY seq" if name == "delivery_log" else "")
                )
                con.execute(f"DROP VIEW _lake_raw_{name}")
        except duckdb.Error as exc:
            con.close()
            raise LakeError(f"{root}: cannot read the lake: {str(exc).splitlines()[0]}") from exc
        return store

    def restrict(self, *, lock_configuration: bool = True) -> None:
        # the lake's files stay readable with external access off (`mtalens query`)
        self.con.execute(f"SET allowed_directories = [{_sql_str(str(self.lake_root) + '/')}]")
        super().restrict(lock_configuration=lock_configuration)


def open_view(root: str | os.PathLike[str]) -> LakeView:
    return LakeView.open_lake(root)


# -- writing --------------------------------------------------------------------------------------


class LakeWriter(Store):
    """An in-memory store whose committed rows are published to the lake.

    The ingestors write to it as to a store file. After each commit (:meth:`committed`) the
    rows of the append-only tables are taken out of memory into Parquet files, the changed
    versions of keyed rows are found by difference with what was last published, and one
    commit entry lists the files. Memory holds only what the ingestors read back: the
    checkpoints and the messages still open."""

    lake_root: Path
    writer: str
    keeps_summary = False

    @classmethod
    def open_lake(
        cls, root: str | os.PathLike[str], writer: str | None = None, *, host: str | None = None
    ) -> LakeWriter:
        root = Path(root)
        name = writer or default_writer()
        if not WRITER_RE.match(name) or name.startswith("_"):
            raise LakeError(f"writer name {name!r}: letters, digits, '.', '_', '-' only")
        init(root)
        wdir = root / "_log" / name
        wdir.mkdir(parents=True, exist_ok=True)
        lock = open(wdir / ".lock", "a+b")  # noqa: SIM115 - held for the writer's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise LakeError(
                f"{root}: writer {name!r} is already running; give each concurrent writer its"
                " own --writer name"
            ) from exc
        con = duckdb.connect(":memory:")
        store = cls(con, root, False)
        store.lake_root, store.writer, store._lock = root, name, lock
        store.host = host or default_writer()
        store._poisoned = None
        store._taken = {}
        store._history_of = {}
        try:
            con.execute("SET TimeZone = 'UTC'")
            store._check_migrations(apply=True)
            store._write_schemas()
            store._load_state()
        except BaseException:
            store.close()
            raise
        return store

    _lock: Any
    _poisoned: str | None
    _taken: dict[str, list[pa.Table]]
    _history_of: dict[str, tuple[int, float]]  # table -> (commit number, monotonic time) built
    host: str
    number: int
    seq_next: int
    seq_offset: int

    # -- start-up

    def _write_schemas(self) -> None:
        for name in TABLES:
            tbl = self._arrow(f"SELECT * FROM {name} LIMIT 0")
            tbl = _with_meta(tbl, self.writer, 0)
            target = self.lake_root / "_schema" / f"{name}.parquet"
            if target.exists():
                try:
                    if pq.read_schema(target).equals(tbl.schema):
                        continue
                except (OSError, pa.ArrowInvalid):
                    pass
            sink = pa.BufferOutputStream()
            pq.write_table(tbl, sink)
            _write_atomic(target, sink.getvalue().to_pybytes(), exclusive=False)

    def _load_state(self) -> None:
        """This writer's checkpoints, open messages and numbering, from its published rows."""
        root, con = self.lake_root, self.con
        snap = open_snapshot(root)
        self.number, meta = snap.last(self.writer)
        self.seq_next = int(meta.get("seq_next", 1))
        w = _sql_str(self.writer)
        for name, spec in TABLES.items():
            if not spec.read_back:
                continue
            con.execute(f"CREATE TEMP TABLE _pub_{name} AS SELECT * FROM {name} LIMIT 0")
            if not snap.files.get(name):
                continue
            resolved = resolve_sql(name, f"({raw_sql(snap, name)} WHERE _writer = {w})")
            if name == "message_log":
                # the open messages, and the latest one: the ingestor's horizon is measured
                # from it (LogIngestor._load_open_messages)
                resolved = (
                    f"SELECT * FROM ({resolved}) WHERE removed_at IS NULL OR last_seen = "
                    f"(SELECT max(last_seen) FROM ({resolved}))"
                )
            con.execute(f"INSERT INTO {name} BY NAME {resolved}")
            con.execute(f"INSERT INTO _pub_{name} SELECT * FROM {name}")
        # delivery_log.seq numbers attempts in log order (migration 0017); this process's
        # sequence starts at 1 again, so published numbers are offset past the last published
        self.seq_offset = self.seq_next - 1

    def take_rows(self, table: str, tbl: pa.Table) -> bool:
        """Keep the fast path's Arrow rows of a table that is not read back for the commit's
        Parquet files (they never enter DuckDB); False: insert them as usual."""
        spec = TABLES.get(table)
        if spec is None or spec.read_back:
            return False
        self._taken.setdefault(table, []).append(tbl)
        return True

    def rolled_back(self) -> None:
        self._taken.clear()

    def history(self, table: str) -> str:
        """A relation of every row of ``table`` (see Store.history): the lake's (every
        writer's, unresolved) and those in memory. Its file list is taken again after this
        writer published, and every few minutes (compactions delete files after a grace)."""
        if table not in TABLES:
            return table
        now = time.monotonic()
        built = self._history_of.get(table)
        if built is None or built[0] != self.number or now - built[1] > 300:
            snap = open_snapshot(self.lake_root)
            sql = f"SELECT * FROM {table}"
            if snap.files.get(table):
                sql = (f"SELECT * EXCLUDE (_writer, _commit) FROM ({raw_sql(snap, table)}) "
                       f"UNION ALL BY NAME {sql}")  # fmt: skip
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW _history_{table} AS {sql}")
            self._history_of[table] = (self.number, now)
        return f"_history_{table}"

    # -- commits

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self._check_usable()
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
            self.con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise
        self.committed()

    def _check_usable(self) -> None:
        if self._poisoned is not None:
            raise LakeError(f"{self.lake_root}: writer {self.writer!r} stopped: {self._poisoned}")

    def committed(self) -> None:
        """Publish what the last commit added (called after each COMMIT, by whoever issued
        it). A failure leaves memory ahead of the lake: the writer refuses to go on, and the
        next run starts again from the last published entry."""
        self._check_usable()
        try:
            self._publish()
        except BaseException as exc:
            self._poisoned = f"publishing commit {self.number + 1} failed: {exc}"
            if isinstance(exc, OSError | duckdb.Error | pa.ArrowException):
                raise LakeError(f"{self.lake_root}: {self._poisoned}") from exc
            raise

    def _arrow(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def _publish(self) -> None:
        con = self.con
        out: list[tuple[str, pa.Table]] = []
        taken, self._taken = self._taken, {}
        for name, spec in TABLES.items():
            if not spec.read_back:
                tbl = self._arrow(f"SELECT * FROM {name}")
                if tbl.num_rows:
                    con.execute(f"DELETE FROM {name}")
                if name in taken:
                    tbl = pa.concat_tables([tbl, *(_conform(t, tbl.schema) for t in taken[name])])
            else:
                tbl = self._arrow(f"SELECT * FROM {name} EXCEPT ALL SELECT * FROM _pub_{name}")
                if tbl.num_rows:
                    con.execute(f"DELETE FROM _pub_{name}")
                    if name == "message_log":  # a removed message is not read back
                        con.execute("DELETE FROM message_log WHERE removed_at IS NOT NULL")
                    con.execute(f"INSERT INTO _pub_{name} SELECT * FROM {name}")
            if tbl.num_rows:
                out.append((name, tbl))
        if not out:
            return
        number = self.number + 1
        seq_next = self.seq_next
        for i, (name, tbl) in enumerate(out):
            if name == "delivery_log" and tbl.num_rows:
                seq = pc.add(tbl.column("seq"), self.seq_offset)
                tbl = tbl.set_column(tbl.column_names.index("seq"), "seq", seq)
                seq_next = max(seq_next, int(pc.max(seq).as_py()) + 1)
                out[i] = (name, tbl)
        added: list[str] = []
        today = datetime.now(UTC).date()
        for name, tbl in out:
            for i, (rel, part) in enumerate(self._partitions(name, tbl, today)):
                rel = f"{rel}/{self.writer}-{number:012d}-{i}.parquet"
                path = self.lake_root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_parquet(_with_meta(part, self.writer, number), path)
                added.append(rel)
        doc = {"writer": self.writer, "host": self.host, "at": datetime.now(UTC).isoformat(),
               "add": added, "remove": [], "meta": {"seq_next": seq_next}}  # fmt: skip
        entry = self.lake_root / "_log" / self.writer / f"{number:012d}.json"
        try:
            _write_atomic(entry, json.dumps(doc).encode(), exclusive=True)
        except FileExistsError as exc:
            raise LakeError(
                f"{entry}: exists: another process published as {self.writer!r}"
            ) from exc
        self.number, self.seq_next = number, seq_next

    def _partitions(self, name: str, tbl: pa.Table, today: date) -> Iterator[tuple[str, pa.Table]]:
        spec = TABLES[name]
        if spec.day_of is not None and spec.day_of in tbl.column_names:
            col = tbl.column(spec.day_of)
            days = pc.fill_null(pc.cast(col, pa.date32()), pa.scalar(today, pa.date32()))
        else:
            days = pa.chunked_array([pa.array([today] * tbl.num_rows, pa.date32())])
        if "host" in tbl.column_names:
            hosts = pc.fill_null(tbl.column("host"), "")
        else:
            hosts = pa.chunked_array([pa.array([self.host] * tbl.num_rows, pa.string())])
        keyed = pa.table({"d": days, "h": hosts})
        groups = keyed.group_by(["d", "h"]).aggregate([])
        if groups.num_rows == 1:
            yield _rel(name, groups.column("d")[0].as_py(), groups.column("h")[0].as_py()), tbl
            return
        for d, h in zip(groups.column("d").to_pylist(), groups.column("h").to_pylist(),
                        strict=True):  # fmt: skip
            mask = pc.and_(pc.equal(days, pa.scalar(d, pa.date32())), pc.equal(hosts, h))
            yield _rel(name, d, h), tbl.filter(mask)

    def close(self) -> None:
        try:
            super().close()
        finally:
            lock = getattr(self, "_lock", None)
            if lock is not None:
                lock.close()
                self._lock = None


def _conform(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """``tbl`` with the columns and types of ``schema`` (a column it lacks is all null)."""
    cols = [
        tbl.column(f.name).cast(f.type) if f.name in tbl.column_names
        else pa.nulls(tbl.num_rows, f.type)
        for f in schema
    ]  # fmt: skip
    return pa.Table.from_arrays(cols, schema=schema)


def _rel(table: str, day: date, host: str | None) -> str:
    return f"{table}/day={day.isoformat()}/host={partition_value(host)}"


def _with_meta(tbl: pa.Table, writer: str, number: int) -> pa.Table:
    n = tbl.num_rows
    tbl = tbl.append_column("_writer", pa.array([writer] * n, pa.string()))
    return tbl.append_column("_commit", pa.array([number] * n, pa.int64()))


def open_writer(
    root: str | os.PathLike[str], writer: str | None = None, *, host: str | None = None
) -> LakeWriter:
    return LakeWriter.open_lake(root, writer, host=host)


# -- maintenance ----------------------------------------------------------------------------------


@contextmanager
def _maint_lock(root: Path) -> Iterator[None]:
    _check_marker(root)
    d = root / "_log" / "_maint"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise LakeError(f"{root}: another compaction or expiry is running") from exc
        yield


def _publish_maint(root: Path, snap: Snapshot, add: list[str], remove: list[str],
                   meta: dict[str, Any]) -> int:  # fmt: skip
    number = snap.last("_maint")[0] + 1
    doc = {"writer": "_maint", "at": datetime.now(UTC).isoformat(), "add": add,
           "remove": remove, "meta": meta}  # fmt: skip
    _write_atomic(root / "_log" / "_maint" / f"{number:012d}.json", json.dumps(doc).encode(),
                  exclusive=True)  # fmt: skip
    return number


@dataclass(slots=True)
class CompactStats:
    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    deleted: int = 0  # data files and folded entries deleted
    entries_folded: int = 0  # entries the new manifest covers


def compact(
    root: str | os.PathLike[str],
    *,
    small_bytes: int = 64 * 1024 * 1024,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
) -> CompactStats:
    """Merge each partition's small live files (under ``small_bytes``) into one; delete the
    files removed more than ``grace`` ago and the stray files of commits never published."""
    root = Path(root)
    now = now or datetime.now(UTC)
    stats = CompactStats()
    with _maint_lock(root):
        snap = open_snapshot(root)
        groups: dict[str, list[Path]] = {}
        for files in snap.files.values():
            for p in files:
                if p.stat().st_size < small_bytes:
                    groups.setdefault(str(p.parent.relative_to(root)), []).append(p)
        add: list[str] = []
        remove: list[str] = []
        stamp = uuid.uuid4().hex[:12]
        for i, (part, files) in enumerate(sorted(groups.items())):
            if len(files) < 2:
                continue
            table = part.split("/", 1)[0]
            merged = pa.concat_tables([_utc(pq.read_table(p)) for p in files],
                                      promote_options="default")  # fmt: skip
            stats.rows_in += merged.num_rows
            merged = _utc(_drop_superseded(TABLES[table], merged))
            rel = f"{part}/compact-{stamp}-{i}.parquet"
            _write_parquet(merged, root / rel)
            add.append(rel)
            remove += [str(p.relative_to(root)) for p in files]
            stats.partitions += 1
            stats.files_in += len(files)
            stats.files_out += 1
            stats.rows_out += merged.num_rows
        if add:
            _publish_maint(root, snap, add, remove, {"op": "compact"})
        snap = open_snapshot(root)
        stats.deleted = _sweep(root, snap, now - grace)
        stats.entries_folded = _write_manifest(root, snap, now)
        stats.deleted += _drop_covered(root, now - grace)
    return stats


def _write_manifest(root: Path, snap: Snapshot, now: datetime) -> int:
    """Fold the entries ``snap`` read into a new manifest (none if it read none); returns how
    many it folded."""
    if not snap.entries:
        return 0
    covers = dict(snap.manifest.covers) if snap.manifest is not None else {}
    meta = dict(snap.manifest.meta) if snap.manifest is not None else {}
    for e in snap.entries:
        covers[e.writer] = max(covers.get(e.writer, 0), e.number)
        meta[e.writer] = e.meta
    number = (snap.manifest.number if snap.manifest is not None else 0) + 1
    live = [str(p.relative_to(root)) for files in snap.files.values() for p in files]
    d = root / "_log" / "_manifest"
    d.mkdir(parents=True, exist_ok=True)
    doc = {"at": now.isoformat(), "live": live, "covers": covers, "meta": meta}
    _write_atomic(d / f"{number:012d}.json", json.dumps(doc).encode(), exclusive=True)
    return len(snap.entries)


def _drop_covered(root: Path, before: datetime) -> int:
    """Delete the entries (and older manifests) that a manifest written before ``before``
    covers: a reader still on them started longer than the grace ago."""
    old = [m for m in map(_read_manifest, _manifests(root)) if m.at < before]
    if not old:
        return 0
    base = old[-1]
    n = 0
    for writer, upto in base.covers.items():
        for e in _entries(root, writer):
            if e.number <= upto:
                with contextlib.suppress(FileNotFoundError):
                    (root / "_log" / writer / f"{e.number:012d}.json").unlink()
                    n += 1
    for m in old[:-1]:
        with contextlib.suppress(FileNotFoundError):
            (root / "_log" / "_manifest" / f"{m.number:012d}.json").unlink()
    return n


def _utc(tbl: pa.Table) -> pa.Table:
    """``tbl`` with every zoned timestamp in zone "UTC" (DuckDB names its session's zone, which
    may be "Etc/UTC"): files merged must agree on their types."""
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit, tz="UTC"), f.nullable)
        if pa.types.is_timestamp(f.type) and f.type.tz is not None
        else f
        for f in tbl.schema
    ]
    schema = pa.schema(fields)
    return tbl if schema.equals(tbl.schema) else tbl.cast(schema)


def _drop_superseded(spec: LakeTable, tbl: pa.Table) -> pa.Table:
    """A keyed table's rows that some later row of the same key in ``tbl`` does not replace
    (what resolve_sql would keep of them anyway, plus every version it would not see)."""
    if spec.key is None or tbl.num_rows == 0:
        return tbl
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("_t", tbl)
        return con.sql(latest_versions_sql(spec, "_t")).to_arrow_table()
    finally:
        con.close()


def _sweep(root: Path, snap: Snapshot, before: datetime) -> int:
    """Delete data files no live entry lists: removed ones once ``before`` is past their
    removal, unpublished ones (a writer killed mid-commit) once older than ``before``."""
    live = {str(p.relative_to(root)) for files in snap.files.values() for p in files}
    removed_at: dict[str, datetime] = {}
    for e in _entries(root, "_maint"):  # a manifest's too: they stay for the grace period
        for rel in e.remove:
            removed_at[rel] = e.at
    cutoff = before.timestamp()
    n = 0
    for table in TABLES:
        base = root / table
        if not base.is_dir():
            continue
        for path in base.glob("day=*/host=*/*"):
            rel = str(path.relative_to(root))
            if rel in live:
                continue
            when = removed_at.get(rel)
            try:  # a writer's temporary file may be renamed into place meanwhile
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            old = (when is not None and when.timestamp() < cutoff) or (
                when is None and mtime < cutoff
            )
            if old:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    n += 1
    return n


@dataclass(slots=True)
class ExpireStats:
    files: int = 0
    partitions: int = 0


def expire(
    root: str | os.PathLike[str], older_than: timedelta, *, now: datetime | None = None
) -> ExpireStats:
    """Remove the partitions whose day is older than ``older_than`` (checkpoints and line
    accounting are kept: they say what was read)."""
    root = Path(root)
    now = now or datetime.now(UTC)
    cutoff = (now - older_than).date()
    stats = ExpireStats()
    with _maint_lock(root):
        snap = open_snapshot(root)
        remove: list[str] = []
        parts: set[str] = set()
        for table, files in snap.files.items():
            if TABLES[table].keep:
                continue
            for p in files:
                day = p.parent.parent.name.removeprefix("day=")
                if date.fromisoformat(day) < cutoff:
                    rel = str(p.relative_to(root))
                    remove.append(rel)
                    parts.add(str(p.parent))
        if remove:
            _publish_maint(root, snap, [], remove, {"op": "expire", "before": cutoff.isoformat()})
        stats.files, stats.partitions = len(remove), len(parts)
    return stats


__all__ = [
    "TABLES",
    "CompactStats",
    "ExpireStats",
    "LakeError",
    "LakeTable",
    "LakeView",
    "LakeWriter",
    "Snapshot",
    "compact",
    "default_writer",
    "expire",
    "init",
    "is_lake",
    "open_snapshot",
    "open_view",
    "open_writer",
    "partition_value",
    "resolve_sql",
]
