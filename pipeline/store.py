"""The DuckDB store: opening, forward-only migrations, the views, transactions.

Migrations are the numbered files in ``pipeline/sql/`` (``0001_core.sql``, ...): tables, and the
statements that move data between them. Each is applied once, in order, inside one explicit
transaction together with its row in ``schema_migrations``. A migration that was applied and
whose text has changed since is refused at start-up: migrations are forward-only, so a change
must be a new file. A store with a migration this code does not know (written by a newer
mtalens) is refused too, read-only or not.

The views and macros (the public views, the suppression policy) are not migrations: they are the
files in ``pipeline/sql/views/``, run in name order after the migrations whenever their text
differs from what the store last ran (``schema_views`` keeps its checksum), so each has one
definition, the current one. A read-only open of a store whose views are older creates them as
temporary views and macros for that connection (they shadow the stored ones; the file is not
written). The view and macro statements the migrations up to 0019 held were moved there: their
files' checksums before that move (:data:`LEGACY_CHECKSUMS`) are accepted and updated.

The store holds SASL usernames and addresses: a new store file is created 0600 (the umask is
narrowed around its creation only), and its ``.wal`` (which DuckDB deletes at each checkpoint
and creates again) is given no more permissions than the store file after each transaction and
at open. The CLI runs every command under umask 077 (``pipeline/cli.py``), so there the WAL and
the ``.tmp`` spill directory are private from their first byte. An existing store keeps its mode
and the WAL follows it: an administrator's ``chmod 0640`` plus a group for readers is respected.

Failures a user can act on become one-line :class:`StoreError`s (:func:`store_error`): a full
disk (DuckDB rolls the failed transaction back; what was committed before stays, so running the
same command again continues), a file-size limit, a corrupt block.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import duckdb

from mtalens.pipeline.exitcodes import InputError

DEFAULT_DB = "mtalens.duckdb"
DEFAULT_LOCK_WAIT = 10.0


class StoreError(InputError):
    """The store cannot be opened or used (locked, unwritable, changed migration)."""


def store_error(exc: BaseException, path: str | os.PathLike[str]) -> StoreError | None:
    """The :class:`StoreError` a failure while using the store at ``path`` means for the user,
    or None when it is not one of those (then it is a bug of ours). The causes and contexts of
    ``exc`` are searched too: DuckDB's "cannot rollback - no transaction is active", raised by
    a ROLLBACK after a COMMIT that failed for lack of space, has the real reason as context."""
    if isinstance(exc, StoreError):
        return exc
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        text = str(e)
        code = e.errno if isinstance(e, OSError) else None
        if code == errno.ENOSPC or "No space left on device" in text:
            return StoreError(
                f"{path}: no space left on device; what was committed before is kept and the "
                "store is consistent: free some space and run it again"
            )
        if code == errno.EFBIG or "File too large" in text:
            return StoreError(
                f"{path}: file too large (a file-size limit, ulimit -f, was reached); what was "
                "committed before is kept: raise the limit and run it again"
            )
        if "Corrupt database file" in text:
            detail = text.splitlines()[0].split("Corrupt database file", 1)[1].lstrip(": ")
            return StoreError(
                f"{path}: the store is damaged ({detail}); restore it from a backup, or ingest "
                "the logs again into a new store"
            )
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return None


# Creating a store: the process umask is narrowed only around the call that creates the file
# (a library must not change a notebook's umask for longer than that).
_umask_lock = threading.Lock()


def _connect_private(path: Path, *, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """``_connect``, creating a new store 0600 from its first byte."""
    with _umask_lock:
        saved = os.umask(0o077)
        try:
            return _connect(path, read_only=read_only, wait=wait)
        finally:
            os.umask(saved)


def _private_wal(path: Path) -> None:
    """Give the store's WAL (which DuckDB deletes at each checkpoint and creates again with the
    process umask) no more permissions than the store file itself."""
    wal = path.with_name(path.name + ".wal")
    with contextlib.suppress(OSError):
        want = stat.S_IMODE(path.stat().st_mode)
        have = stat.S_IMODE(wal.stat().st_mode)
        if have & ~want:
            os.chmod(wal, have & want)


def resolve_db_path(db: str | os.PathLike[str] | None) -> Path:
    """``--db`` wins, then ``$MTALENS_DB``, then ``./mtalens.duckdb``."""
    if db:
        return Path(db)
    return Path(os.environ.get("MTALENS_DB") or DEFAULT_DB)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


# sha256 of migrations 0001-0019 as released, with the view and macro definitions since moved to
# pipeline/sql/views/: a store that applied them is up to date and gets the new checksums
LEGACY_CHECKSUMS: Final = {
    1: "f2a7e2de4ee026b9e0f2778b872165f30d8af957aa22442d47abea581cdd3375",
    2: "fee98efb1647c9e8ccb6ac244d1349293dcd4c13ca184c0cb5035d47428108a5",
    3: "33843c4d144570dee323b880952c2ed2ff4977fa083e59ff3135bfd80c0fd87f",
    4: "0aa0ec1347d11fa912b69531b9e7b6be476fd64956ba4dd6496d650982e81497",
    5: "acf51ac84484a1a9456d36f56db42e9b5810df01f1edb4a5dd797f1ce2125ba6",
    6: "837f13555d6eec3a45561fa1a9bbb3bf3afb51e48ac7b37d136b34f679b5161f",
    8: "b19182a7254a248c329653be664fe5a49c5a877c4398ef53d437a0fb70f04521",
    9: "56ee1c4d07e52930a5584c5240e254f86691d71453ab39789068cb24001883a3",
    10: "050faa21f67daf43087947848aeee2eefe1835adc10926df5fc9fa4f8de8f4e5",
    11: "493675d3cd7f091a1e6e3b5c34349f4f001a9b6a8412364bc206f6cbad997310",
    12: "3370d069a8bc104c9afeed432c30c3d085ede04ebd549bac78e9491020b86119",
    13: "bb5f6b37f3966c24b59c53e37bc376eb8441d22da80e165e65fc12163410e8b8",
    14: "bfdcd0acd2bf01d16f009d7ee1967034f7af75c84ff7defdf543f49e34246dc9",
    15: "f0bb9f99359b900b5bea17dba5c114b4841fe9a9358d6fb0f9c858e0dc036ced",
    16: "28edf0c383d6c7a332afb6bfdc48de2111e7ba9c9d5cfcfc8b558d980196b04e",
    17: "bcb672612026b7f30e130ec45d6b3da3822bb8c1604908720448f0d97a535c5a",
    18: "86093493bbc16c046a2b0aa82d6e4af038e6a94bd462f97f59b2816981bab872",
    19: "d2ad6c72616dc8152179783996fa8f9c3d4d06b128d576152884e9ab292875bc",
}


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("mtalens.pipeline").joinpath("sql").iterdir():
        name = entry.name
        if not name.endswith(".sql") or not name[:4].isdigit():
            continue
        found.append(Migration(int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a number: {versions}")
    return found


@dataclass(frozen=True, slots=True)
class ViewsFile:
    name: str
    sql: str


def load_views() -> list[ViewsFile]:
    """The files of ``pipeline/sql/views/`` in name order."""
    folder = resources.files("mtalens.pipeline").joinpath("sql").joinpath("views")
    found = [
        ViewsFile(e.name, e.read_text(encoding="utf-8"))
        for e in folder.iterdir()
        if e.name.endswith(".sql")
    ]
    return sorted(found, key=lambda f: f.name)


def views_checksum(files: list[ViewsFile]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.sql.encode() + b"\0")
    return h.hexdigest()


# every definition in the views files starts a line with one of these
_DEFINITION_RE: Final = re.compile(r"^(CREATE OR REPLACE )(VIEW|MACRO) ", re.M)


def as_temporary(sql: str) -> str:
    """The views file ``sql`` with its views and macros made temporary (a read-only open)."""
    return _DEFINITION_RE.sub(r"\1TEMP \2 ", sql)


def lock_wait_seconds() -> float:
    """How long an open waits for another process's lock: ``$MTALENS_LOCK_WAIT`` seconds
    (default 10; 0 fails at once)."""
    raw = os.environ.get("MTALENS_LOCK_WAIT", "").strip()
    if not raw:
        return DEFAULT_LOCK_WAIT
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not wait >= 0 or wait == float("inf"):  # also NaN
        raise StoreError(f"MTALENS_LOCK_WAIT={raw!r}: not a number of seconds >= 0")
    return wait


def _connect(path: Path, *, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """Retry on a lock conflict for up to ``wait`` seconds. Readers and writers both wait: `mtalens
    watch` holds the file only while it commits (see pipeline/watch.py), so a reader, or another
    writer (`ingest`, `suppressions add`), gets it as soon as the window ends."""
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.01)))
            pause = min(pause * 2, 0.25)


def _locked_message(path: Path, exc: duckdb.IOException, wait: float) -> str:
    holder = re.search(r"\(PID (\d+)\)", str(exc))
    by = f" (PID {holder.group(1)})" if holder else ""
    waited = f"; waited {wait:g} s ($MTALENS_LOCK_WAIT)" if wait > 0 else ""
    return (
        f"{path}: store is locked by another process{by}{waited}; "
        "is `mtalens watch` or a notebook holding it?"
    )


def _tune(con: duckdb.DuckDBPyConnection) -> None:
    """Memory: DuckDB defaults to 80% of RAM; ``$MTALENS_MEMORY_LIMIT`` (e.g. ``1GB``) caps it
    (queries then spill to disk where DuckDB can). Background allocator threads hand freed
    memory back to the OS (measured: a 1 M-address jsonl export peaked at 2.7 GB without them,
    1.9 GB with)."""
    limit = os.environ.get("MTALENS_MEMORY_LIMIT")
    if limit:
        try:
            con.execute("SET memory_limit = ?", [limit])
        except duckdb.Error as exc:
            raise StoreError(f"MTALENS_MEMORY_LIMIT={limit!r}: {str(exc).splitlines()[0]}") from exc
    with contextlib.suppress(duckdb.Error):  # older DuckDB without the setting
        con.execute("SET allocator_background_threads = true")


class Store:
    """One DuckDB connection plus the project's conventions around it."""

    # whether its writers fold new rows into the suppression summary (a lake writer does not:
    # each reader of a lake builds its own, pipeline/lake.py)
    keeps_summary: bool = True

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(
        cls,
        db: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        check_migrations: bool = True,
        external_access: bool = True,
        lock_wait: float | None = None,
    ) -> Store:
        """Open (and, read-write, migrate) the store. A long-running process that reopens the
        store often (the daemon's write windows) checks migrations once, at start-up, and
        passes ``check_migrations=False`` afterwards: a migration file edited or added on disk
        while it runs must not stop it (it is refused at the next start).

        ``lock_wait``: seconds to wait while another process holds the file (default
        ``$MTALENS_LOCK_WAIT``, else 10; a caller with its own retry loop passes 0).
        ``external_access=False``: the connection is :meth:`restrict`-ed once open."""
        path = resolve_db_path(db)
        if path.is_dir():
            from mtalens.pipeline import lake

            if lake.is_lake(path):  # `--lake DIR` (an alias of --db): its snapshot, read
                return lake.open_view(path)
            raise StoreError(f"{path}: a directory that is not a lake (give a store file)")
        if read_only and not path.exists():
            raise StoreError(f"{path}: no such store (run `mtalens ingest` first)")
        if not read_only and path.parent and not path.parent.exists():
            raise StoreError(f"{path}: directory {path.parent} does not exist")
        wait = lock_wait_seconds() if lock_wait is None else lock_wait
        new = not read_only and not path.exists()
        try:
            con = (_connect_private if new else _connect)(path, read_only=read_only, wait=wait)
        except duckdb.IOException as exc:
            first = str(exc).splitlines()[0]
            if "lock" in first.lower():
                raise StoreError(_locked_message(path, exc, wait)) from exc
            raise (
                store_error(exc, path) or StoreError(f"{path}: cannot open store: {first}")
            ) from exc
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise (
                store_error(exc, path) or StoreError(f"{path}: cannot open store: {first}")
            ) from exc
        if new:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)  # the umask did it; a filesystem without modes may not
        if not read_only:
            _private_wal(path)  # one left by a crash, replayed at this open
        store = cls(con, path, read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            _tune(con)
            if check_migrations:
                store._check_migrations(apply=not read_only)
            if not external_access:
                store.restrict()
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):
                con.close()
            if isinstance(exc, duckdb.Error) and (known := store_error(exc, path)):
                raise known from exc
            raise
        return store

    @classmethod
    def memory(cls) -> Store:
        """An in-memory store, fully migrated (tests, notebooks, `bounces parse`)."""
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        store = cls(con, Path(":memory:"), False)
        store._check_migrations(apply=True)
        return store

    def _check_migrations(self, *, apply: bool) -> None:
        con = self.con
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchone()
        applied: dict[int, str] = {}
        if exists and exists[0]:
            applied = {
                int(v): str(c)
                for v, c in con.execute(
                    "SELECT version, checksum FROM schema_migrations"
                ).fetchall()
            }
        migrations = load_migrations()
        unknown = sorted(set(applied) - {m.version for m in migrations})
        if unknown:
            names = dict(con.execute("SELECT version, name FROM schema_migrations").fetchall())
            newest = unknown[-1]
            raise StoreError(
                f"{self.path}: store has migration {names.get(newest, newest)}, which this "
                f"mtalens does not know (it knows up to {migrations[-1].name}): it was written "
                "by a newer mtalens; upgrade mtalens to use it"
            )
        for mig in migrations:
            if mig.version in applied:
                legacy = LEGACY_CHECKSUMS.get(mig.version)
                if applied[mig.version] == legacy and apply:
                    con.execute(
                        "UPDATE schema_migrations SET checksum = ? WHERE version = ?",
                        [mig.checksum, mig.version],
                    )
                elif applied[mig.version] != mig.checksum and applied[mig.version] != legacy:
                    raise StoreError(
                        f"{self.path}: migration {mig.name} changed after it was applied; "
                        "migrations are forward-only, add a new one"
                    )
                continue
            if not apply:
                raise StoreError(
                    f"{self.path}: store is at an older schema ({mig.name} not applied); "
                    "open it once read-write (e.g. `mtalens ingest`) to migrate"
                )
            try:
                con.execute("BEGIN TRANSACTION")
                if mig.version == 1:
                    con.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                        " checksum VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                con.execute(mig.sql)
                con.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                    [mig.version, mig.name, mig.checksum],
                )
                con.execute("COMMIT")
            except duckdb.Error as exc:
                _rollback(con)
                if known := store_error(exc, self.path):
                    raise known from exc
                raise StoreError(f"{self.path}: migration {mig.name} failed: {exc}") from exc
        self._ensure_views(apply=apply)

    def _ensure_views(self, *, apply: bool) -> None:
        """Run the views files when the store last ran other ones (see the module's
        docstring); read-only, as temporary views of this connection."""
        con = self.con
        has_table = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_views'"
        ).fetchone()
        if not has_table or not has_table[0]:
            return  # a schema from before the views files (only a test builds one now)
        files = load_views()
        want = views_checksum(files)
        row = con.execute("SELECT checksum FROM schema_views WHERE name = 'views'").fetchone()
        if row is not None and row[0] == want:
            return
        if not apply:
            for f in files:
                con.execute(as_temporary(f.sql))
            return
        current = None
        try:
            con.execute("BEGIN TRANSACTION")
            for f in files:
                current = f.name
                con.execute(f.sql)
            current = None
            con.execute(
                "INSERT OR REPLACE INTO schema_views (name, checksum, applied_at)"
                " VALUES ('views', ?, now())",
                [want],
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            _rollback(con)
            if known := store_error(exc, self.path):
                raise known from exc
            raise StoreError(f"{self.path}: views file {current} failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: the rows and the checkpoint that covers them commit together."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
            self.con.execute("COMMIT")
            if not self.read_only and self.path != Path(":memory:"):
                _private_wal(self.path)
        except BaseException as exc:
            _rollback(self.con)  # a failed COMMIT has already rolled back
            if isinstance(exc, duckdb.Error) and (known := store_error(exc, self.path)):
                raise known from exc
            raise

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Many commits in a row (a file ingest): DuckDB checkpoints the WAL into the file each
        time it passes ``checkpoint_threshold`` (16 MB), rewriting the touched blocks and
        indexes; let the WAL grow to 256 MB meanwhile, so that happens about once (measured on
        200,000 provider events: 2.3 s of commits, mostly checkpoints, of 10.5 s)."""
        if self.read_only or self.path == Path(":memory:"):
            yield
            return
        row = self.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        self.con.execute("SET checkpoint_threshold = '256MB'")
        try:
            yield
        finally:
            if row is not None:
                with contextlib.suppress(duckdb.Error):
                    self.con.execute(f"SET checkpoint_threshold = '{row[0]}'")

    def committed(self) -> None:
        """Called after each COMMIT of ingested rows by whoever issued it (a lake writer,
        :class:`mtalens.pipeline.lake.LakeWriter`, publishes them here; a store file has them)."""

    def rolled_back(self) -> None:
        """Called after a ROLLBACK issued outside :meth:`transaction` (the fast path's)."""

    def history(self, table: str) -> str:
        """The relation that holds ``table``'s rows written before this process (a lake writer
        keeps only new rows in its tables)."""
        return table

    def restrict(self, *, lock_configuration: bool = True) -> None:
        """From now on this connection cannot read or write files other than the store's own
        (no COPY TO, read_csv, read_text, ATTACH, EXPORT DATABASE, secrets on disk) nor install
        or load extensions: DuckDB's ``enable_external_access = false``, which DuckDB refuses
        to turn back on while the database is open. ``lock_configuration`` also refuses every
        later ``SET`` (temp_directory, profiling_output, memory_limit, threads ...): what user
        SQL gets (`mtalens query`). The database's own files (the store, its WAL, spilling to
        ``<store>.tmp``) keep working. Settings are per database instance, and DuckDB shares
        one instance among the connections of a process to the same file: they are all
        restricted. Idempotent."""
        row = self.con.execute(
            "SELECT current_setting('enable_external_access'), "
            "current_setting('lock_configuration')"
        ).fetchone()
        external, locked = (bool(row[0]), bool(row[1])) if row else (True, False)
        if locked:
            if external:
                raise StoreError(
                    f"{self.path}: configuration is locked with external access on; "
                    "cannot restrict this connection"
                )
            return
        if external:
            self.con.execute("SET enable_external_access = false")
        if lock_configuration:
            self.con.execute("SET lock_configuration = true")

    @property
    def external_access(self) -> bool:
        """Whether this connection may touch files outside the store (see :meth:`restrict`)."""
        row = self.con.execute("SELECT current_setting('enable_external_access')").fetchone()
        return bool(row[0]) if row else True

    def close(self) -> None:
        """Close the connection (DuckDB checkpoints the WAL into the file here, which can fail
        for the same reasons as a commit: then a :class:`StoreError`; the WAL is kept and
        replayed at the next open)."""
        try:
            self.con.close()
        except duckdb.Error as exc:
            if known := store_error(exc, self.path):
                raise known from exc
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """A failure of the store met inside the block (a full disk, a corrupt block read by a
        query) leaves it as a one-line :class:`StoreError`; others pass unchanged."""
        if exc is None:
            self.close()
            return
        with contextlib.suppress(duckdb.Error, StoreError):
            self.close()  # the error inside the block is the one to report
        if isinstance(exc, duckdb.Error) and (known := store_error(exc, self.path)):
            raise known from exc


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """ROLLBACK, unless DuckDB has already ended the transaction (a failed COMMIT does)."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException as exc:
        if "no transaction is active" not in str(exc):
            raise


def next_seq(con: duckdb.DuckDBPyConnection, n: int) -> int:
    """The first of ``n`` consecutive new ``delivery_log.seq`` numbers (migration 0017: the
    order attempts were read in), drawn from ``delivery_seq`` (one writer at a time: nothing
    else draws meanwhile, so the ``n`` are consecutive)."""
    rows = con.execute("SELECT max(nextval('delivery_seq')) FROM range(?)", [n]).fetchall()
    row = rows[0] if rows else None
    if row is None or row[0] is None:
        raise StoreError("the store has no delivery sequence (migration 0017)")
    return int(row[0]) - n + 1
