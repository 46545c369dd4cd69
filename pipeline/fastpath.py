"""The fast ingest loop: the C scanner (:mod:`mtalens.parsers.fastscan`) plus a correlation loop on
integer op codes and Arrow columns, committed by a writer thread.

It produces the same store as :meth:`mtalens.pipeline.ingest.LogIngestor._consume` with the pure-Python
parser (``tests/test_fastpath.py`` compares them table by table):

- the C scanner reads the envelope and the common Postfix line types straight into Arrow
  buffers (deliveries, events) and small op tuples (what the correlation needs); every other
  line comes back as a FALLBACK op and goes through the Python parser, which stays the only
  source of quarantine reasons and ignore rules;
- the correlation mirrors :class:`mtalens.pipeline.correlate.Correlator` with timestamps kept as UTC
  microseconds (message keys are computed exactly as ``int(ts.timestamp() * 1_000_000)``);
- batches of ``batch_lines`` lines (as the pure path's) go to a writer thread (DuckDB releases
  the GIL while it executes) while the next ones are scanned, at most ``IN_FLIGHT`` at a time,
  so memory stays bounded; the writer keeps one transaction open over batches until it holds
  ``commit_lines`` lines (or the input ends, or there is an ``on_commit`` hook) and commits
  it with its checkpoint row: all of those lines' rows or none. Within a transaction each
  table is inserted in whole row groups and each touched message written once (see
  :class:`_TableBuffers` and :meth:`FastIngest._group_touched`); a failed write rolls back the
  whole transaction, and its lines are read again by the next run.

Off when the extension is not built or when ``MTALENS_PURE_PYTHON=1``. An ``on_commit`` hook
(`mtalens watch`'s metrics and alerts) is called after each commit, in the reading thread, with a
:class:`ArrowBatch`: a :class:`~mtalens.pipeline.correlate.Batch` that holds the commit's delivery,
rejection, auth-failure and event rows as Arrow tables and builds the pure path's tuples only
if the hook reads them; its ``touched`` is empty (no hook reads the messages).
``MTALENS_FAST_SERIAL=1`` commits in the reading thread (for profiling).
"""

from __future__ import annotations

import gc
import logging
import operator
import os
import time
import traceback
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Final

import pyarrow as pa

from mtalens.parsers import fastscan
from mtalens.parsers import postfix as pf
from mtalens.parsers.lines import Malformed, Parsed, Skipped, parse_line
from mtalens.parsers.syslog import SyslogClock
from mtalens.pipeline.correlate import (
    AUTH_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    LATE_LINK_WINDOW,
    MESSAGE_COLUMNS,
    REJECTION_COLUMNS,
    SENT_CLASS,
    Batch,
    DeliveryClass,
    MessageState,
    classify_delivery,
    ends_message,
    host_clocks,
    late_notification_target,
)
from mtalens.pipeline.store import next_seq

if TYPE_CHECKING:
    from mtalens.pipeline.ingest import Checkpoint, LineCounts, LogIngestor

log = logging.getLogger(__name__)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US: Final = timedelta(microseconds=1)
LATE_LINK_WINDOW_US: Final = LATE_LINK_WINDOW // ONE_US
TS_TYPE: Final = pa.timestamp("us", tz="UTC")
READ_CHUNK: Final = 4 * 1024 * 1024
IN_FLIGHT: Final = 2  # batches handed to the writer thread and not written yet, at most


def enabled() -> bool:
    """The extension is built and the user did not ask for the pure-Python path."""
    return fastscan.AVAILABLE and os.environ.get("MTALENS_PURE_PYTHON", "") not in ("1", "true")


def to_us(ts: datetime) -> int:
    return (ts - EPOCH) // ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def key_of(host: str, qid: str, at_us: int) -> str:
    # mtalens.pipeline.correlate.message_key: int(first_seen.timestamp() * 1_000_000), where
    # timestamp() is the correctly rounded microseconds / 10**6 (CPython datetime_timestamp)
    return f"{host}|{qid}|{int(at_us / 1_000_000 * 1_000_000)}"


# --- correlation on integer timestamps -----------------------------------------------------------

_MSG_TS: Final = ("first_seen", "arrived_at", "removed_at", "expired_at", "last_seen")


class Msg:
    """mtalens.pipeline.correlate.MessageState with UTC-microsecond timestamps."""

    __slots__ = (
        "arrived_at",
        "bounce_of_key",
        "client_ip",
        "client_name",
        "client_port",
        "discarded",
        "dup",
        "expired_at",
        "first_seen",
        "held",
        "host",
        "key",
        "last_seen",
        "message_id",
        "notification_kind",
        "nrcpt",
        "orig_message_key",
        "orig_queue_id",
        "origin",
        "persisted",
        "queue_id",
        "rejected",
        "removed_at",
        "sasl_method",
        "sasl_username",
        "sender",
        "size",
        "source_key",
    )  # fmt: skip

    def __init__(self, key: str, host: str, qid: str, at: int, origin: str, source_key: str | None):
        self.key = key
        self.host = host
        self.queue_id = qid
        self.origin = origin
        self.message_id: str | None = None
        self.sender: str | None = None
        self.size: int | None = None
        self.nrcpt: int | None = None
        self.client_name: str | None = None
        self.client_ip: str | None = None
        self.client_port: int | None = None
        self.sasl_method: str | None = None
        self.sasl_username: str | None = None
        self.orig_queue_id: str | None = None
        self.orig_message_key: str | None = None
        self.bounce_of_key: str | None = None
        self.notification_kind: str | None = None
        self.first_seen = at
        self.arrived_at: int | None = None
        self.removed_at: int | None = None
        self.expired_at: int | None = None
        self.last_seen = at
        self.held = False
        self.discarded = False
        self.rejected = False
        self.source_key = source_key
        self.persisted = False
        self.dup = False  # another instance had this key (the same line logged twice)

    @classmethod
    def from_state(cls, st: MessageState) -> Msg:
        m = cls(st.message_key, st.host, st.queue_id, to_us(st.first_seen), st.origin,
                st.source_key)  # fmt: skip
        for name in MESSAGE_COLUMNS[3:]:
            if name in _MSG_TS:
                v = getattr(st, name)
                setattr(m, name, None if v is None else to_us(v))
            elif name != "origin":
                setattr(m, name, getattr(st, name))
        m.persisted = st.persisted
        return m


@dataclass(slots=True)
class Rows:
    """What one batch writes besides the scanner's columns: rows from the Python path."""

    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[tuple[Any, ...]] = field(default_factory=list)
    auth_failures: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)


class FastCorrelator:
    """mtalens.pipeline.correlate.Correlator's rules, on ints; fed by op tuples and by records."""

    def __init__(self, classify: Any, *, stale_after: timedelta, recent_size: int) -> None:
        self.open: dict[tuple[str, str], Msg] = {}
        self.recent: OrderedDict[tuple[str, str], Msg] = OrderedDict()  # as Correlator.recent
        self.pending_links: dict[tuple[str, str], tuple[str, str]] = {}
        self.classify = classify
        self.stale_us = stale_after // ONE_US
        self.recent_size = recent_size
        self.touched: dict[str, Msg] = {}
        self._memo: dict[tuple[Any, ...], DeliveryClass] = {}

    def remember_closed(self, st: Msg) -> None:
        k = (st.host, st.queue_id)
        self.recent[k] = st
        self.recent.move_to_end(k)
        while len(self.recent) > self.recent_size:
            self.recent.popitem(last=False)

    def new(self, host: str, qid: str, at: int, source_key: str, origin: str) -> Msg:
        k = (host, qid)
        old = self.open.pop(k, None)
        if old is not None:
            self.remember_closed(old)
        st = Msg(key_of(host, qid, at), host, qid, at, origin, source_key)
        gone = self.recent.get(k)
        if gone is not None and gone.key == st.key:
            st.dup = True
        if self.pending_links:
            link = self.pending_links.pop(k, None)
            if link is not None:
                st.bounce_of_key, st.notification_kind = link
                st.origin = "bounce"
        self.open[k] = st
        return st

    def get(self, host: str, qid: str, at: int, source_key: str) -> Msg:
        st = self.open.get((host, qid))
        if st is None:
            st = self.new(host, qid, at, source_key, "unknown")
        st.last_seen = at
        self.touched[st.key] = st
        return st

    def evict_stale(self) -> None:
        """As Correlator.evict_stale (by each host's clock)."""
        now = host_clocks(self.open.values())
        stale = self.stale_us
        for k in [k for k, st in self.open.items() if st.last_seen < now[st.host] - stale]:
            st = self.open.pop(k)
            self.remember_closed(st)
            self.touched[st.key] = st

    def client(self, host: str, qid: str, at: int, sk: str, service: str, name: str | None,
               ip: str | None, port: int | None, method: str | None, user: str | None,
               orig_qid: str | None) -> None:  # fmt: skip
        st = self.new(host, qid, at, sk, "pickup")
        self.touched[st.key] = st
        st.origin = "qmqpd" if service == "qmqpd" else "smtpd"
        st.client_name = name
        st.client_ip = ip
        st.client_port = port
        st.sasl_method = method
        st.sasl_username = user
        if orig_qid:
            st.orig_queue_id = orig_qid
            ok = (host, orig_qid)
            prev = self.open.get(ok) or self.recent.get(ok)
            st.orig_message_key = prev.key if prev else None
        if st.bounce_of_key:
            st.origin = "bounce"

    def pickup(self, host: str, qid: str, at: int, sk: str, sender: str) -> None:
        st = self.new(host, qid, at, sk, "pickup")
        self.touched[st.key] = st
        st.sender = sender
        if st.bounce_of_key:
            st.origin = "bounce"

    def notification(self, host: str, qid: str, at: int, sk: str, kind: str, new_qid: str) -> None:
        k = (host, qid)
        gone = None if k in self.open else self.recent.get(k)
        if gone is not None and gone.last_seen >= at - LATE_LINK_WINDOW_US:
            st = gone  # removed already: named, not reopened (as Correlator)
        else:
            st = self.get(host, qid, at, sk)
        nk = (host, new_qid)
        new = self.open.get(nk)
        if new is None:
            new = late_notification_target(self.recent.get(nk), at - LATE_LINK_WINDOW_US)
        if new is not None and new.bounce_of_key is None:
            new.bounce_of_key = st.key
            new.notification_kind = kind
            new.origin = "bounce"
            self.touched[new.key] = new
        else:
            self.pending_links[nk] = (st.key, kind)

    def classify_delivery(self, fields: tuple[Any, ...]) -> DeliveryClass:
        """mtalens.pipeline.correlate.classify_delivery of a delivery's ``fields`` (its
        arguments after ``classify``, as the scanner's OP_DELIVERY carries them), memoised."""
        # the classifier is a pure function of these fields (ordered immutable rules)
        hit = self._memo.get(fields)
        if hit is not None:
            return hit
        out = classify_delivery(self.classify, *fields)
        if len(self._memo) >= 65536:  # bounded: ingest memory must not grow with the file
            self._memo.clear()
        self._memo[fields] = out
        return out

    def feed_record(
        self, rec: pf.Record, at_dt: datetime, host: str, instance: str, service: str,
        sk: str, offset: int, rows: Rows,
    ) -> None:  # fmt: skip
        """Correlator.feed for a record of the Python parser (a FALLBACK line)."""
        at = to_us(at_dt)
        if isinstance(rec, pf.Delivery):
            st = self.get(host, rec.queue_id, at, sk)
            a = b = c = e = None
            if rec.delays is not None:
                a, b, c, e = rec.delays
            reason, category, hard, rule_id, blocklist = self.classify_delivery(
                (rec.status, rec.dsn, rec.reply_code, rec.detail, rec.remote_host,
                 rec.relay_host, rec.smtp_stage)
            )  # fmt: skip
            rows.deliveries.append(
                (st.key, host, rec.queue_id, at_dt, service, instance, rec.recipient,
                 rec.orig_recipient, rec.relay, rec.relay_host, rec.relay_ip, rec.relay_port,
                 rec.conn_use, rec.delay, a, b, c, e, rec.dsn, rec.status, rec.reply_code,
                 rec.smtp_stage, rec.detail, rec.remote_host, reason, category, hard, rule_id,
                 blocklist, sk, offset)
            )  # fmt: skip
        elif isinstance(rec, pf.Client):
            self.client(host, rec.queue_id, at, sk, service, rec.client_name, rec.client_ip,
                        rec.client_port, rec.sasl_method, rec.sasl_username, rec.orig_queue_id)  # fmt: skip
        elif isinstance(rec, pf.Pickup):
            self.pickup(host, rec.queue_id, at, sk, rec.sender)
        elif isinstance(rec, pf.MessageId):
            st = self.get(host, rec.queue_id, at, sk)
            if not rec.resent or st.message_id is None:
                st.message_id = rec.message_id
        elif isinstance(rec, pf.QueueActive):
            st = self.get(host, rec.queue_id, at, sk)
            st.sender, st.size, st.nrcpt = rec.sender, rec.size, rec.nrcpt
            if st.arrived_at is None:
                st.arrived_at = at
        elif isinstance(rec, pf.Removed):
            st = self.get(host, rec.queue_id, at, sk)
            st.removed_at = at
            del self.open[(host, rec.queue_id)]
            self.remember_closed(st)
        elif isinstance(rec, pf.Expired):
            st = self.get(host, rec.queue_id, at, sk)
            st.expired_at = at
            if st.sender is None:
                st.sender = rec.sender
        elif isinstance(rec, pf.Notification):
            self.notification(host, rec.queue_id, at, sk, rec.kind, rec.new_queue_id)
            rows.events.append((at_dt, host, service, instance, "notification-" + rec.kind,
                                rec.queue_id, None, None, rec.new_queue_id, sk, offset))  # fmt: skip
        elif isinstance(rec, pf.Reject):
            if rec.queue_id is not None:
                st = self.get(host, rec.queue_id, at, sk)
                if rec.action in ("reject", "milter-reject"):
                    st.rejected = True
                elif rec.action in ("hold", "milter-hold"):
                    st.held = True
                elif rec.action in ("discard", "milter-discard"):
                    st.discarded = True
                if ends_message(service, rec):
                    self.open.pop((host, rec.queue_id), None)
                    self.remember_closed(st)
            rows.rejections.append(
                (at_dt, host, service, instance, rec.queue_id, rec.action, rec.stage,
                 rec.client_name, rec.client_ip, rec.reply_code, rec.dsn, rec.reason, rec.sender,
                 rec.recipient, rec.helo, rec.proto, sk, offset)
            )  # fmt: skip
        elif isinstance(rec, pf.AuthFailure):
            rows.auth_failures.append(
                (at_dt, host, service, instance, rec.client_name, rec.client_ip, rec.mechanism,
                 rec.sasl_username, rec.reason, sk, offset)
            )  # fmt: skip
        elif isinstance(rec, pf.Event):
            rows.events.append((at_dt, host, service, instance, rec.kind, rec.queue_id,
                                rec.remote_host, rec.remote_ip, rec.detail, sk, offset))  # fmt: skip


# --- Arrow ---------------------------------------------------------------------------------------

_ARROW_TYPES: Final = {
    fastscan.KIND_STR: pa.string(),
    fastscan.KIND_I64: pa.int64(),
    fastscan.KIND_I32: pa.int32(),
    fastscan.KIND_F64: pa.float64(),
}


def _array(col: fastscan.RawColumn, typ: pa.DataType | None = None) -> pa.Array:
    kind, length, nulls, data, offsets, valid = col
    vbuf = pa.py_buffer(valid) if valid is not None else None
    t = typ if typ is not None else _ARROW_TYPES[kind]
    if kind == fastscan.KIND_STR:
        assert offsets is not None
        return pa.Array.from_buffers(
            t, length, [vbuf, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
        )
    return pa.Array.from_buffers(t, length, [vbuf, pa.py_buffer(data)], null_count=nulls)


def _scan_tables(
    scans: list[tuple[fastscan.Scan, list[str], list[Any], list[Any], list[Any], list[Any],
                      list[Any]]],
    source_key: str,
) -> tuple[list[pa.Table], list[pa.Table], list[pa.Table]]:  # fmt: skip
    """Delivery, event and rejection tables of the scanner's columns plus the Python-side
    columns."""
    dts: list[pa.Table] = []
    ets: list[pa.Table] = []
    rts: list[pa.Table] = []
    for sc, keys, reason, category, hard, rule_id, blocklist in scans:
        n = sc.deliveries[0][1]
        if n:
            cols: dict[str, pa.Array] = {"message_key": pa.array(keys, pa.string())}
            for name, raw in zip(fastscan.DELIVERY_FIELDS, sc.deliveries, strict=True):
                cols[name] = _array(raw, TS_TYPE if name == "logged_at" else None)
            cols["reason"] = pa.array(reason, pa.string())
            cols["category"] = pa.array(category, pa.string())
            cols["hard"] = pa.array(hard, pa.bool_())
            cols["rule_id"] = pa.array(rule_id, pa.string())
            cols["blocklist"] = pa.array(blocklist, pa.string())
            cols["source_key"] = pa.repeat(source_key, n)
            dts.append(pa.table({c: cols[c] for c in DELIVERY_COLUMNS}))
        m = sc.events[0][1]
        if m:
            ecols: dict[str, pa.Array] = {}
            for name, raw in zip(fastscan.EVENT_FIELDS, sc.events, strict=True):
                ecols[name] = _array(raw, TS_TYPE if name == "logged_at" else None)
            ecols["source_key"] = pa.repeat(source_key, m)
            ets.append(pa.table({c: ecols[c] for c in EVENT_COLUMNS}))
        r = sc.rejections[0][1]
        if r:
            rcols: dict[str, pa.Array] = {}
            for name, raw in zip(fastscan.REJECTION_FIELDS, sc.rejections, strict=True):
                rcols[name] = _array(raw, TS_TYPE if name == "logged_at" else None)
            rcols["queue_id"] = pa.nulls(r, pa.string())
            rcols["source_key"] = pa.repeat(source_key, r)
            rts.append(pa.table({c: rcols[c] for c in REJECTION_COLUMNS}))
    return dts, ets, rts


_MSG_TYPES: Final = {
    "size": pa.int64(), "nrcpt": pa.int32(), "client_port": pa.int32(), "held": pa.bool_(),
    "discarded": pa.bool_(), "rejected": pa.bool_(),
}  # fmt: skip


# one getter per column: a column built with map() over the messages is ~3x faster than rows
# of all attributes transposed with zip(*rows) (measured on the 87 k messages of one commit,
# bench/profile_ingest.py, "build" stage: 0.50 s -> 0.20 s)
_MSG_GET: Final = tuple(
    (name, operator.attrgetter("key" if name == "message_key" else name))
    for name in MESSAGE_COLUMNS
)


_MSG_SET: Final = ", ".join(f'"{c}" = u."{c}"' for c in MESSAGE_COLUMNS[1:])


def _message_table(msgs: list[Msg]) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for name, get in _MSG_GET:
        vals = list(map(get, msgs))
        if name in _MSG_TS:
            cols[name] = pa.array(vals, pa.int64()).cast(TS_TYPE)
        else:
            cols[name] = pa.array(vals, _MSG_TYPES.get(name, pa.string()))
    return pa.table(cols)


def _write_messages(con: Any, upd_table: pa.Table | None, msg_table: pa.Table | None) -> None:
    """Rewrite the rows of messages already in the store, insert the new ones."""
    if upd_table is not None:
        con.register("_fast_changed", upd_table)
        # the first_seen bound lets DuckDB skip row groups (zone maps) of messages older than
        # any changed one instead of scanning the whole table each commit
        res = con.execute(
            f"UPDATE message_log SET {_MSG_SET} FROM _fast_changed u"
            " WHERE message_log.message_key = u.message_key"
            " AND message_log.first_seen >= (SELECT min(first_seen) FROM _fast_changed)"
        ).fetchone()
        if res is None or res[0] != upd_table.num_rows:
            # a key on several rows (a line logged twice: same host, queue ID and
            # microsecond): the pure path's DELETE + INSERT leaves one row
            con.execute(
                "DELETE FROM message_log WHERE message_key IN "
                "(SELECT message_key FROM _fast_changed)"
            )
            _insert(con, "message_log", MESSAGE_COLUMNS, upd_table)
        con.unregister("_fast_changed")
    if msg_table is not None:
        _insert(con, "message_log", MESSAGE_COLUMNS, msg_table)


def _rows_table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table({name: pa.array(list(col)) for name, col in zip(columns, cols, strict=True)})


_COLUMNS: Final = {
    "delivery_log": DELIVERY_COLUMNS, "rejection_log": REJECTION_COLUMNS,
    "auth_failure_log": AUTH_COLUMNS, "event_log": EVENT_COLUMNS,
}  # fmt: skip


def _concat(tbls: list[pa.Table]) -> pa.Table:
    """One table of a store table's parts (zero-copy: the chunks are kept as they are); the
    Python fallback's tables infer their types (an all-null column is null-typed)."""
    if len(tbls) == 1:
        return tbls[0]
    return pa.concat_tables(tbls, promote_options="permissive")


def _insert(con: Any, table: str, columns: tuple[str, ...], tbl: pa.Table) -> None:
    if tbl.num_rows == 0:
        return
    con.register("_fast_batch", tbl)
    cols = ", ".join(f'"{c}"' for c in columns)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _fast_batch")
    con.unregister("_fast_batch")


class _SmallRows:
    """The open transaction's quarantine, line-accounting and checkpoint rows, inserted once,
    at its commit: per batch, the three statements cost more than a small file's rows (a
    directory of small files commits many files' batches in one transaction)."""

    QUARANTINE: Final = ("source", "source_kind", "offset", "reason", "detail", "raw",
                         "quarantined_at")  # fmt: skip
    ACCOUNTING: Final = ("source_key", "outcome", "rule", "lines", "recorded_at")
    CHECKPOINT: Final = ("source_key", "path", "device", "inode", "fp_len", "fp_hash", "offset",
                         "clock_year", "clock_month", "updated_at", "log_format")  # fmt: skip

    def __init__(self) -> None:
        self.quarantine: list[tuple[Any, ...]] = []
        self.accounting: list[tuple[Any, ...]] = []
        self.checkpoints: dict[str, tuple[Any, ...]] = {}  # by source key: the last one wins

    def add(
        self,
        quarantine: list[tuple[Any, ...]],
        accounting: list[tuple[Any, ...]],
        checkpoint: tuple[Any, ...] | None,
    ) -> None:
        self.quarantine += quarantine
        self.accounting += accounting
        if checkpoint is not None:
            self.checkpoints[checkpoint[0]] = checkpoint

    def write(self, con: Any) -> None:
        if self.quarantine:
            _insert(con, "quarantine", self.QUARANTINE,
                    _rows_table(self.QUARANTINE, self.quarantine))  # fmt: skip
        if self.accounting:
            _insert(con, "line_accounting_log", self.ACCOUNTING,
                    _rows_table(self.ACCOUNTING, self.accounting))  # fmt: skip
        if self.checkpoints:
            rows = list(self.checkpoints.values())
            con.register("_fast_ckpt", _rows_table(self.CHECKPOINT, rows))
            cols = ", ".join(f'"{c}"' for c in self.CHECKPOINT)
            con.execute(
                f"INSERT OR REPLACE INTO checkpoints ({cols}) SELECT {cols} FROM _fast_ckpt"
            )
            con.unregister("_fast_ckpt")
        self.clear()

    def clear(self) -> None:
        self.quarantine, self.accounting, self.checkpoints = [], [], {}


# --- the loop ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A batch handed to the writer thread, and what to do once it committed."""

    future: Future[None]
    offset: int
    clock_year: int
    clock_month: int
    counts: LineCounts
    batch: ArrowBatch | None  # for the ingestor's on_commit hook, if it has one
    commit: bool  # False: its rows are in the open transaction, committed with a later batch
    deferred: bool = False  # a file's last batch whose commit was left to a later file


# DuckDB's default row group size ("The default row group size in DuckDB's database format is
# 122,880 rows", https://duckdb.org/docs/stable/guides/performance/how_to_tune_workloads)
ROW_GROUP_ROWS: Final = 122_880


class _TableBuffers:
    """The rows of an open transaction not inserted yet, per store table (writer thread only).

    DuckDB writes the row groups that one parallel INSERT fills straight to the database file
    ("optimistic writes"); the rows of an INSERT too small to fill a row group per thread stay
    in memory until the COMMIT, which writes them to the WAL, and the next checkpoint copies
    them again. Measured with DuckDB 2.0 (2 threads, the deliveries and events of 3 x 1 M
    generated lines, one transaction per 1 M lines): inserted in pieces of 100,000 rows, 1.8 s
    of INSERT + 1.9 s of COMMIT; in pieces of 245,760 rows, 2.3 s + 0.05 s. With one thread
    DuckDB never wrote optimistically (pieces of 245,760 rows: 1.0 s + 2.0 s). So a table's
    rows are inserted in multiples of ``threads x 122,880`` rows; the rest waits for the next
    batch, or for the commit, which inserts everything left (it must: the checkpoint row covers
    these lines)."""

    def __init__(self, store: Any) -> None:
        row = store.con.execute("SELECT current_setting('threads')").fetchone()
        threads = int(row[0]) if row is not None else 1
        self.unit = ROW_GROUP_ROWS * max(1, threads)
        self.parts: dict[str, tuple[tuple[str, ...], list[pa.Table], int]] = {}
        # a store that takes Arrow rows itself (a lake writer: they go to Parquet, not DuckDB)
        self.direct = getattr(store, "take_rows", None)

    def append(self, con: Any, name: str, cols: tuple[str, ...], tbl: pa.Table) -> None:
        if self.direct is not None and self.direct(name, tbl):
            return
        _c, tbls, n = self.parts.get(name, (cols, [], 0))
        tbls.append(tbl)
        n += tbl.num_rows
        if n >= self.unit:
            whole = _concat(tbls)
            cut = n - n % self.unit
            _insert(con, name, cols, whole.slice(0, cut))
            rest = whole.slice(cut)
            tbls, n = ([rest] if rest.num_rows else []), rest.num_rows
        self.parts[name] = (cols, tbls, n)

    def flush(self, con: Any) -> None:
        for name, (cols, tbls, n) in self.parts.items():
            if n:
                _insert(con, name, cols, _concat(tbls))
        self.parts.clear()

    def clear(self) -> None:
        self.parts.clear()


_HOOK_TABLES: Final = ("delivery_log", "rejection_log", "auth_failure_log", "event_log")


class _LazyRows:
    """A Batch row list that :class:`ArrowBatch` builds from its tables on first read."""

    def __init__(self, slot: Any) -> None:
        self.slot = slot  # Batch's own slot descriptor

    def __get__(self, obj: ArrowBatch | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        obj.materialize()
        return self.slot.__get__(obj, owner)

    def __set__(self, obj: ArrowBatch, value: list[tuple[Any, ...]]) -> None:
        self.slot.__set__(obj, value)


class ArrowBatch(Batch):
    """What the ``on_commit`` hook gets on the fast path: the commit's rows as the Arrow tables
    written (``tables``, by store table, columns as in ``mtalens.pipeline.correlate``, in line order).
    The pure path's tuple lists (``deliveries``, ...) are the same rows, built on first read;
    a hook that can read columns (`mtalens watch`) never pays for them. ``touched`` is empty."""

    __slots__ = ("_materialized", "tables")

    deliveries = _LazyRows(Batch.deliveries)  # type: ignore[misc]
    rejections = _LazyRows(Batch.rejections)  # type: ignore[misc]
    auth_failures = _LazyRows(Batch.auth_failures)  # type: ignore[misc]
    events = _LazyRows(Batch.events)  # type: ignore[misc]

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self._materialized = True  # the parent's __init__ only sets empty lists
        super().__init__()
        self._materialized = False
        self.tables = tables

    def materialize(self) -> None:
        if self._materialized:
            return
        self._materialized = True
        for name, attr in zip(_HOOK_TABLES, ("deliveries", "rejections", "auth_failures",
                                             "events"), strict=True):  # fmt: skip
            tbl = self.tables.get(name)
            if tbl is not None:
                rows = list(zip(*(col.to_pylist() for col in tbl.columns), strict=True))
                setattr(self, attr, rows)


def _hook_batch(tables: list[tuple[str, tuple[str, ...], pa.Table]]) -> ArrowBatch:
    """The rows of one commit for the hook, one table per store table, in line order (as the
    pure path appends them: here the scanner's rows come per scan, the Python fallback's after
    them; the alert windows expect time order)."""
    parts: dict[str, list[pa.Table]] = {}
    for name, _cols, tbl in tables:
        if name in _HOOK_TABLES and tbl.num_rows:
            parts.setdefault(name, []).append(tbl)
    out: dict[str, pa.Table] = {}
    for name, tbls in parts.items():
        # one source per consume: offset is line order
        out[name] = _concat(tbls).sort_by("line_offset")
    return ArrowBatch(out)


class FastIngest:
    """The fast path of one :class:`~mtalens.pipeline.ingest.LogIngestor` (its open messages live here
    once the fast path is in use)."""

    def __init__(self, ing: LogIngestor) -> None:
        self.ing = ing
        src = ing.correlator
        # the pure correlator's settings: its stale_after follows the ingestor's queue lifetime
        # (mtalens.pipeline.correlate.stale_horizon)
        self.cor = FastCorrelator(
            src.classify, stale_after=src.stale_after, recent_size=src.recent_size
        )
        self._adopted = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtalens-writer")
        # batches handed to the writer, oldest first: up to IN_FLIGHT, so that a commit (which
        # also writes the messages and the rest of each table) does not stall the reader
        self._pending: deque[_Pending] = deque()
        # batches written into the open transaction but not committed yet (oldest first)
        self._uncommitted: list[LineCounts] = []
        self._in_txn = False  # the writer thread holds an open transaction on the store
        self._failed = False  # the writer rolled back; later batches must not be written
        self.commits = 0  # transactions committed (bench/profile_ingest.py, tests)
        self._buffers = _TableBuffers(ing.store)  # the writer thread's
        self._small = _SmallRows()  # the writer thread's too
        # the open transaction's touched messages, (message, persisted before) by key, in
        # groups written in order by the commit (see _group_touched)
        self._groups: list[dict[str, tuple[Msg, bool]]] = []
        self._txn_lines = 0  # lines of the batches in that transaction
        # the source's own clock answers the scanner's zone questions (SyslogClock.zone_offset:
        # the same choices as the pure path, repeated DST hour included)
        self._utc = ing.tz is UTC
        # commit in the writer thread, overlapping the next batch's scan
        self.threaded = os.environ.get("MTALENS_FAST_SERIAL", "") != "1"
        # seconds spent per stage (bench/profile_ingest.py prints them); "write" is the writer
        # thread's, "wait" the time the reader spent blocked on it
        self.timings: dict[str, float] = dict.fromkeys(
            ("scan", "correlate", "build", "write", "insert", "update", "commit", "wait"), 0.0
        )

    def _adopt(self) -> None:
        """Take over the messages the ingestor loaded from the store (once)."""
        if self._adopted:
            return
        self._adopted = True
        src = self.ing.correlator
        for k, st in src.open.items():
            self.cor.open[k] = Msg.from_state(st)
        for k, closed in src.recent.items():
            self.cor.recent[k] = Msg.from_state(closed)
        self.cor.pending_links.update(src.pending_links)

    def consume(self, fh: IO[bytes], cp: Checkpoint, clock: SyslogClock, *, final: bool) -> None:
        """LogIngestor.consume on the fast path (same contract, same rows)."""
        self._adopt()
        # The loop allocates millions of short-lived tuples: with the cyclic GC on, every few
        # hundred allocations walk all live open-message objects (measured: ~10% of the run).
        # The hot path makes no cycles; any the Python fallback makes are collected once the GC
        # is back on, at the end of this call.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            self._consume(fh, cp, clock, final=final)
        finally:
            if gc_was_on:
                gc.enable()

    def _consume(self, fh: IO[bytes], cp: Checkpoint, clock: SyslogClock, *, final: bool) -> None:
        from mtalens.pipeline.ingest import LineCounts

        ing = self.ing
        batch_lines = ing.batch_lines
        base = cp.offset  # file offset of data[0]
        pending = b""
        counts = LineCounts()
        rows = Rows()
        quarantine: list[tuple[Any, ...]] = []
        scans: list[Any] = []
        in_batch = 0
        offset = cp.offset
        eof = False
        try:
            while not eof:
                chunk = fh.read(READ_CHUNK)
                if not chunk:
                    eof = True
                    if not (pending and final):
                        break
                    data = pending
                else:
                    ing.stats.bytes += len(chunk)
                    if ing.progress is not None:
                        ing.progress(len(chunk))
                    data = pending + chunk if pending else chunk
                pos = 0
                while True:
                    t0 = time.perf_counter()
                    sc = fastscan.scan(
                        data, pos, max_lines=batch_lines - in_batch, final=eof,
                        clock_year=clock.year, clock_month=clock.month,
                        tz_offset=None if self._utc else clock.zone_offset,
                        base_offset=base,
                    )  # fmt: skip
                    t1 = time.perf_counter()
                    self.timings["scan"] += t1 - t0
                    if sc.lines == 0:
                        break
                    self._apply(sc, data, base, cp, clock, counts, rows, quarantine, scans)
                    self.timings["correlate"] += time.perf_counter() - t1
                    counts.read += sc.lines
                    in_batch += sc.lines
                    pos = sc.end
                    offset = base + pos
                    if in_batch >= batch_lines:
                        self._submit(cp, offset, clock, counts, rows, quarantine, scans)
                        counts, rows, quarantine, scans, in_batch = LineCounts(), Rows(), [], [], 0
                pending = data[pos:]
                base += pos
            self._wait(cp)  # the checks below read what the last commit set
            if in_batch or cp.offset != offset or not cp.clock_year or self._in_txn:
                self._submit(cp, offset, clock, counts, rows, quarantine, scans, last=True)
        except BaseException:
            self._abort()
            raise
        finally:
            self._wait(cp)

    def _apply(
        self, sc: fastscan.Scan, data: bytes, base: int, cp: Checkpoint, clock: SyslogClock,
        counts: LineCounts, rows: Rows, quarantine: list[tuple[Any, ...]], scans: list[Any],
    ) -> None:  # fmt: skip
        """Correlate one scan's ops in line order; FALLBACK lines through the Python parser."""
        cor = self.cor
        sk = cp.source_key
        open_ = cor.open
        touched = cor.touched
        new = cor.new
        n_deliv = sc.deliveries[0][1]
        keys: list[str] = []
        # a sent delivery (OP_SENT) needs no classifier; the others are set below
        reason: list[Any] = [SENT_CLASS[0]] * n_deliv
        category: list[Any] = [SENT_CLASS[1]] * n_deliv
        hard: list[Any] = [SENT_CLASS[2]] * n_deliv
        rule_id: list[Any] = [SENT_CLASS[3]] * n_deliv
        blocklist: list[Any] = [SENT_CLASS[4]] * n_deliv
        counts.stored += sc.stored
        for op in sc.ops:
            code = op[0]
            if code == 6 or code == 3 or code == 4 or code == 5 or code == 7:
                at = op[1]
                k = op[2]
                st = open_.get(k)
                if st is None:
                    st = new(k[0], k[1], at, sk, "unknown")
                st.last_seen = at
                touched[st.key] = st
                if code == 6:
                    keys.append(st.key)
                elif code == 3:
                    st.message_id = op[3]
                    counts.cleanup_processed += 1
                elif code == 4:
                    st.sender, st.size, st.nrcpt = op[3], op[4], op[5]
                    counts.inserted(op[4], op[5])
                    if st.arrived_at is None:
                        st.arrived_at = at
                elif code == 5:
                    counts.removed += 1
                    st.removed_at = at
                    del open_[k]
                    cor.remember_closed(st)
                else:
                    i = len(keys)
                    keys.append(st.key)
                    reason[i], category[i], hard[i], rule_id[i], blocklist[i] = (
                        cor.classify_delivery(op[3:])
                    )
            elif code == 1:
                k = op[2]
                counts.smtpd_processed[op[6] or ""] += 1
                cor.client(k[0], k[1], op[1], sk, "smtpd", op[3], op[4], op[5], op[6], op[7],
                           op[8])  # fmt: skip
            elif code == 2:
                k = op[2]
                cor.pickup(k[0], k[1], op[1], sk, op[3])
            elif code == 8:
                k = op[2]
                cor.notification(k[0], k[1], op[1], sk, op[3], op[4])
            else:  # FALLBACK: the Python parser, with the clock as it was before this line
                _, start, end, year, month = op
                if clock.year != year:
                    clock.year = year
                    clock._cache.clear()
                clock.month = month
                self._python_line(data[start:end], base + start, cp, clock, counts, rows,
                                  quarantine)  # fmt: skip
        if not sc.stopped:  # else the Python clock already holds the state after the last line
            if clock.year != sc.clock_year:
                clock._cache.clear()
            clock.year, clock.month = sc.clock_year, sc.clock_month
        scans.append((sc, keys, reason, category, hard, rule_id, blocklist))

    def _python_line(
        self, raw: bytes, offset: int, cp: Checkpoint, clock: SyslogClock, counts: LineCounts,
        rows: Rows, quarantine: list[tuple[Any, ...]],
    ) -> None:  # fmt: skip
        """mtalens.pipeline.ingest.LogIngestor._line, feeding this correlator."""
        ing = self.ing
        try:
            v = parse_line(raw, clock)
            if type(v) is Parsed:
                env = v.envelope
                self.cor.feed_record(v.record, env.logged_at, env.host, v.instance, v.service,
                                     cp.source_key, offset, rows)  # fmt: skip
                counts.note(v.record)
                counts.stored += 1
            elif type(v) is Skipped:
                counts.ignore(v.rule)
            else:
                assert type(v) is Malformed
                ing._quarantine(counts, quarantine, cp, offset, v.code, v.detail, raw)
        except Exception as exc:  # a parser bug must not stop the stream: keep the line
            log.error("parser bug at %s:%d\n%s", cp.path, offset, traceback.format_exc())
            ing._quarantine(counts, quarantine, cp, offset, f"bug:{type(exc).__name__}",
                            str(exc)[:500], raw)  # fmt: skip

    # -- commit ---------------------------------------------------------------------------------

    def _submit(
        self, cp: Checkpoint, offset: int, clock: SyslogClock, counts: LineCounts, rows: Rows,
        quarantine: list[tuple[Any, ...]], scans: list[Any], *, last: bool = False,
    ) -> None:  # fmt: skip
        """Build the batch's Arrow tables here (a snapshot), insert them in the writer thread.

        The batch commits (with its checkpoint row) when it is the ``last`` of this
        :meth:`consume`, when the ingestor has an ``on_commit`` hook (the hook sees each commit),
        or once the open transaction holds ``commit_lines`` lines; otherwise its rows go into
        the writer's open transaction (see :class:`_TableBuffers`), and the messages it touched
        are written once, by the commit (a message touched by several batches of a transaction
        is written once)."""
        t0 = time.perf_counter()
        self._txn_lines += counts.read
        hooked = self.ing.on_commit is not None
        # a file's last batch during LogIngestor.run may leave the transaction open for the next
        # file (its checkpoint row goes in with its rows): one commit per file cost ~7 ms, 70 s
        # for a directory of 10,000 small files
        deferred = (
            last
            and self.ing.defer_last_commit
            and not hooked
            and self._txn_lines < self.ing.commit_lines
        )
        commit = (last and not deferred) or hooked or self._txn_lines >= self.ing.commit_lines
        if commit:
            self._txn_lines = 0
        cor = self.cor
        cor.evict_stale()  # per batch, as the pure path's commits do: correlation depends on it
        self._group_touched()
        msg_writes = self._message_writes() if commit else []
        now = self.ing.clock()
        dts, ets, rts = _scan_tables(scans, cp.source_key)
        parts: dict[str, list[pa.Table]] = {
            "delivery_log": dts, "rejection_log": rts, "auth_failure_log": [], "event_log": ets,
        }  # fmt: skip
        for name, cols, extra in (
            ("delivery_log", DELIVERY_COLUMNS, rows.deliveries),
            ("rejection_log", REJECTION_COLUMNS, rows.rejections),
            ("auth_failure_log", AUTH_COLUMNS, rows.auth_failures),
            ("event_log", EVENT_COLUMNS, rows.events),
        ):
            if extra:
                parts[name].append(_rows_table(cols, extra))
        # one INSERT per store table per batch: each INSERT has a fixed cost (bind, plan, a
        # parallel sink per thread) that the scanner's many small per-chunk tables paid ~8 times
        tables: list[tuple[str, tuple[str, ...], pa.Table]] = [
            (name, _COLUMNS[name], _concat(tbls)) for name, tbls in parts.items() if tbls
        ]
        acct = counts.rows(cp.source_key, now)
        ckpt = (cp.source_key, cp.path, cp.device, cp.inode, cp.fp_len, cp.fp_hash, offset,
                clock.year, clock.month or None, now, cp.log_format)  # fmt: skip
        store = self.ing.store
        buffers = self._buffers
        small = self._small

        timings = self.timings

        def write() -> None:
            w0 = time.perf_counter()
            con = store.con
            if self._failed:  # an earlier batch of this transaction was rolled back
                raise RuntimeError("not written: an earlier batch failed")
            if not self._in_txn:
                con.execute("BEGIN TRANSACTION")
                self._in_txn = True
            try:
                for name, cols, tbl in tables:
                    if name == "delivery_log":
                        # numbered in line order (scanner rows and fallback rows come apart)
                        tbl = tbl.sort_by("line_offset")
                        first = next_seq(con, tbl.num_rows)
                        seq = pa.array(range(first, first + tbl.num_rows), pa.int64())
                        tbl, cols = tbl.append_column("seq", seq), (*cols, "seq")
                    buffers.append(con, name, cols, tbl)
                if commit:
                    buffers.flush(con)
                w1 = time.perf_counter()
                for upd_table, msg_table in msg_writes:
                    _write_messages(con, upd_table, msg_table)
                w2 = time.perf_counter()
                small.add(quarantine, acct, ckpt if commit or last else None)
                if commit:
                    small.write(con)
                w3 = time.perf_counter()
                if commit:
                    con.execute("COMMIT")
                    self._in_txn = False
            except BaseException:
                self._in_txn = False
                self._failed = True
                buffers.clear()
                small.clear()
                con.execute("ROLLBACK")
                store.rolled_back()
                raise
            if commit:
                store.committed()  # a lake publishes the transaction's rows (pipeline/lake.py)
            w4 = time.perf_counter()
            timings["write"] += w4 - w0
            timings["insert"] += w1 - w0 + w3 - w2
            timings["update"] += w2 - w1
            timings["commit"] += w4 - w3

        # the hook's rows: only when there is a hook (the bulk ingest does not pay for them)
        batch = _hook_batch(tables) if self.ing.on_commit is not None else None
        self.timings["build"] += time.perf_counter() - t0
        self._wait(cp, keep=IN_FLIGHT - 1)
        if self.threaded:
            fut = self._writer.submit(write)
        else:
            fut = Future()
            write()
            fut.set_result(None)
        self._pending.append(
            _Pending(fut, offset, clock.year, clock.month, counts, batch, commit, deferred)
        )

    def _message_writes(self) -> list[tuple[pa.Table | None, pa.Table | None]]:
        """The open transaction's message_log writes (taken at its commit): rows already in
        the store are updated in place, the others inserted: the same rows as the pure path's
        DELETE + INSERT, but DuckDB's checkpoint after deletes rewrites the table (measured:
        commits grow with message_log, 27 s of COMMIT for 5 M lines)."""
        out: list[tuple[pa.Table | None, pa.Table | None]] = []
        for grp in self._groups:
            changed = [m for m, was in grp.values() if was]
            added = [m for m, was in grp.values() if not was]
            out.append((_message_table(changed) if changed else None,
                        _message_table(added) if added else None))  # fmt: skip
        self._groups = []
        return out

    def flush(self) -> None:
        """Commit the transaction that deferred last batches left open (the end of
        LogIngestor.run, or before the ingestor writes something of its own)."""
        if not self._in_txn:
            return
        msg_writes = self._message_writes()
        store, buffers, small = self.ing.store, self._buffers, self._small

        def write() -> None:
            con = store.con
            try:
                buffers.flush(con)
                for upd_table, msg_table in msg_writes:
                    _write_messages(con, upd_table, msg_table)
                small.write(con)
                con.execute("COMMIT")
            except BaseException:
                self._failed = False
                buffers.clear()
                small.clear()
                con.execute("ROLLBACK")
                store.rolled_back()
                raise
            finally:
                self._in_txn = False
            store.committed()

        if self.threaded:
            self._writer.submit(write).result()
        else:
            write()
        self._txn_lines = 0
        self.commits += 1

    def _group_touched(self) -> None:
        """Queue the messages this batch touched for the commit's message_log writes.

        As the pure path, which writes the messages each batch touched, keyed by message key
        (a later batch rewrites a message it touches again): a transaction's batches share one
        group, whose rows are snapshots taken at the commit (every change to a message touches
        it, so a message's state at the commit is its state after the last batch that touched
        it). A key that a batch touches with another message instance (the same line logged
        twice: same host, queue ID and microsecond) starts a new group, written after the
        previous one, and such a message touched again is written as the pure path rewrites
        it, so the rows equal the pure path's."""
        touched = self.cor.touched
        self.cor.touched = {}
        groups = self._groups
        grp = groups[-1] if groups else None
        if grp is None or any(
            (g := grp.get(k)) is not None and g[0] is not m for k, m in touched.items()
        ):
            grp = {}
            groups.append(grp)
        for k, m in touched.items():
            g = grp.get(k)
            if g is None:
                grp[k] = (m, m.persisted)
                m.persisted = True
            elif m.dup and not g[1]:
                # touched again by a later batch: the pure path rewrites its key, which also
                # drops the rows of the key's other instances
                grp[k] = (m, True)

    def _abort(self) -> None:
        """Roll back the open transaction (its batches were never counted) after a failure in
        the reading thread."""
        while self._pending:
            p = self._pending.popleft()
            try:
                p.future.result()
            except Exception:  # the writer already rolled back; the reader's error is raised
                log.debug("writer failed while the reader failed too", exc_info=True)
        self._uncommitted.clear()
        self._txn_lines = 0
        self._buffers.clear()
        self._small.clear()
        self._groups = []
        self._failed = False
        if self._in_txn:
            self._in_txn = False
            self.ing.store.con.execute("ROLLBACK")
            self.ing.store.rolled_back()

    def _wait(self, cp: Checkpoint, keep: int = 0) -> None:
        """Wait for the writer until at most ``keep`` batches are in flight."""
        while len(self._pending) > keep:
            self._wait_one(cp)

    def _wait_one(self, cp: Checkpoint) -> None:
        p = self._pending.popleft()
        t0 = time.perf_counter()
        try:
            p.future.result()  # a failed commit raises here, before its lines are counted
        except BaseException:
            self._uncommitted.clear()
            self._txn_lines = 0
            raise
        self.timings["wait"] += time.perf_counter() - t0
        if not p.commit and p.deferred:
            # a file's last batch, in the transaction a later file or flush() commits: the file
            # is done, its lines count now and its checkpoint moves on (a second read of the
            # same source in this run starts there; a failed commit fails the run)
            cp.offset = p.offset
            cp.clock_year, cp.clock_month = p.clock_year, p.clock_month
            done, self._uncommitted = [*self._uncommitted, p.counts], []
            for c in done:
                self._count(self.ing.stats, c)
            return
        if not p.commit:
            self._uncommitted.append(p.counts)
            return
        hook = self.ing.on_commit
        if hook is not None and p.batch is not None:
            # as LogIngestor._commit: after the commit, before the checkpoint moves on
            hook(p.batch, cp.source_key, p.counts)
        self.commits += 1
        cp.offset = p.offset
        cp.clock_year, cp.clock_month = p.clock_year, p.clock_month
        s = self.ing.stats
        done, self._uncommitted = [*self._uncommitted, p.counts], []
        for c in done:
            self._count(s, c)

    @staticmethod
    def _count(s: Any, c: LineCounts) -> None:
        s.read += c.read
        s.stored += c.stored
        s.ignored += sum(c.ignored.values())
        s.quarantined += sum(c.quarantined.values())
        s.ignored_by_rule.update(c.ignored)
        s.quarantined_by_reason.update(c.quarantined)


__all__ = ["ArrowBatch", "FastIngest", "enabled", "key_of", "to_us"]
