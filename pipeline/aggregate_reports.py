"""DMARC aggregate and TLS-RPT reports into the store: the shell around ``mtalens.parsers.dmarc``,
``mtalens.parsers.tlsrpt``, ``mtalens.parsers.archives`` and ``mtalens.parsers.report_mail``.

Inputs: report emails from Maildirs, mbox files and ``.eml`` files (read with
``mtalens.pipeline.mailbox``), and bare report files (``.xml``, ``.xml.gz``, ``.zip``, ``.json``,
``.json.gz``: recognised by their first bytes, whatever their name). Directories are read
recursively in name order.

Every input ends as stored, duplicate or quarantined: a report already in the store (same
reporter and report id, see ``pipeline/sql/0013_dmarc_tlsrpt.sql``) is counted as a duplicate
and not stored again; a message without a report, a report that cannot be parsed and an
archive refused by the decompression caps become a ``quarantine`` row (``source_kind`` ``mail``
for a message, with its raw bytes, ``report`` for a file, with its first bytes) with the
parser's reason. Nothing stops the run; a parser bug is quarantined as ``bug:<Type>``.

Writes are batched: reports are buffered whole and written ``batch_reports`` at a time in one
transaction. A report with more than ``stream_records`` records (a 100 MB report has about a
million) is streamed instead: the pending batch is committed, then the report's records go in
``stream_records`` at a time, each batch committed, and the report's head row last; records
without a head are in no view, and are deleted when the report turns out broken, so memory
stays bounded and no half report is ever visible.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from mtalens.parsers.archives import DEFAULT_LIMITS, Limits, Member, is_archive, unpack
from mtalens.parsers.dmarc import DmarcRecord, DmarcReport, parse_aggregate
from mtalens.parsers.errors import ParseError
from mtalens.parsers.report_mail import PayloadKind, find_reports, sniff
from mtalens.parsers.tlsrpt import TlsReport, parse_tlsrpt
from mtalens.pipeline.mailbox import MailboxMessage, is_maildir, iter_messages, read_file

if TYPE_CHECKING:
    from mtalens.pipeline.store import Store

log = logging.getLogger(__name__)

READ_CHUNK: Final = 1 << 20
DEFAULT_BATCH: Final = 2000  # reports per transaction
STREAM_RECORDS: Final = 50_000  # a report with more records than this is streamed
MAX_TLSRPT_BYTES: Final = 64 << 20  # a TLS-RPT report is one JSON document, read whole
MAX_QUARANTINE_RAW: Final = 16 << 20  # raw bytes kept with a quarantine row
KEY_SEP: Final = "\x1f"


def report_key(reporter: str, report_id: str) -> str:
    """One report per reporter and id (RFC 7489 Appendix C report_id, RFC 8460 section 4.4
    report-id): the key duplicates are recognised by."""
    return f"{reporter.strip().lower()}{KEY_SEP}{report_id.strip()}"


@dataclass(slots=True)
class ReportsResult:
    inputs: int = 0  # files and messages examined
    dmarc_reports: int = 0
    dmarc_records: int = 0
    tlsrpt_reports: int = 0
    tlsrpt_failures: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (where, reason, detail)

    @property
    def stored(self) -> int:
        return self.dmarc_reports + self.tlsrpt_reports

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "dmarc_reports": self.dmarc_reports,
            "dmarc_records": self.dmarc_records,
            "tlsrpt_reports": self.tlsrpt_reports,
            "tlsrpt_failures": self.tlsrpt_failures,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.quarantine_reasons),
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
        }


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a report came from, for its row and for a quarantine row."""

    source: str
    kind: str  # mail | file
    offset: int | None
    raw: Callable[[], bytes]


def is_report_file(head: bytes) -> bool:
    """A bare report: an archive, XML or JSON (mail starts with a header or a From_ line)."""
    return is_archive(head) or sniff(head) is not None


def _read_head(path: Path, n: int) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        yield chunk


def _walk(path: Path) -> Iterator[Path]:
    """A plain directory's entries in name order, hidden ones left out (a Maildir is read by
    ``mtalens.pipeline.mailbox``, which skips its ``tmp/``)."""
    for entry in sorted(path.iterdir()):
        if not entry.name.startswith(".") and (entry.is_dir() or entry.is_file()):
            yield entry


def _constant(raw: bytes) -> Callable[[], bytes]:
    return lambda: raw


# --------------------------------------------------------------------------------------------
# Rows


_DMARC_REPORT_COLS: Final = (
    "report_key", "org_name", "report_id", "email", "extra_contact_info", "format", "version",
    "generator", "begin_at", "end_at", "errors", "domain", "p", "sp", "pct", "adkim", "aspf",
    "fo", "np", "testing", "discovery_method", "records", "messages", "source", "source_kind",
    "offset", "member", "ingested_at",
)  # fmt: skip
_DMARC_RECORD_COLS: Final = (
    "report_key", "position", "source_ip", "count", "disposition", "dkim", "spf", "reasons",
    "header_from", "envelope_from", "envelope_to", "dkim_domains", "dkim_selectors",
    "dkim_results", "spf_domains", "spf_scopes", "spf_results",
)  # fmt: skip
_TLS_REPORT_COLS: Final = (
    "report_key", "organization_name", "report_id", "contact_info", "begin_at", "end_at",
    "policies", "successful_sessions", "failed_sessions", "source", "source_kind", "offset",
    "member", "ingested_at",
)  # fmt: skip
_TLS_POLICY_COLS: Final = (
    "report_key", "position", "policy_type", "policy_domain", "policy_string", "mx_hosts",
    "successful_sessions", "failed_sessions",
)  # fmt: skip
_TLS_FAILURE_COLS: Final = (
    "report_key", "policy_position", "position", "result_type", "sending_mta_ip",
    "receiving_mx_hostname", "receiving_mx_helo", "receiving_ip", "failed_session_count",
    "additional_information", "failure_reason_code",
)  # fmt: skip
_QUARANTINE_COLS: Final = (
    "source", "source_kind", "offset", "reason", "detail", "raw", "quarantined_at",
)  # fmt: skip

_LIST_COLS: Final = frozenset(
    {
        "errors", "reasons", "dkim_domains", "dkim_selectors", "dkim_results", "spf_domains",
        "spf_scopes", "spf_results", "policy_string", "mx_hosts",
    }
)  # fmt: skip
_INT_COLS: Final = frozenset(
    {
        "pct", "records", "messages", "offset", "position", "count", "policies",
        "successful_sessions", "failed_sessions", "policy_position", "failed_session_count",
    }
)  # fmt: skip
_TIME_COLS: Final = frozenset({"begin_at", "end_at", "ingested_at", "quarantined_at"})


def _record_row(key: str, position: int, r: DmarcRecord) -> tuple[Any, ...]:
    return (
        key, position, r.source_ip, r.count, r.disposition, r.dkim, r.spf,
        [f"{o.type}: {o.comment}" if o.comment else (o.type or "") for o in r.reasons],
        r.header_from, r.envelope_from, r.envelope_to,
        [d.domain for d in r.dkim_results], [d.selector for d in r.dkim_results],
        [d.result for d in r.dkim_results], [s.domain for s in r.spf_results],
        [s.scope for s in r.spf_results], [s.result for s in r.spf_results],
    )  # fmt: skip


def _dmarc_report_row(
    key: str, h: DmarcReport, records: int, messages: int, origin: _Origin, member: str,
    at: datetime,
) -> tuple[Any, ...]:  # fmt: skip
    p = h.policy
    return (
        key, h.org_name, h.report_id, h.email, h.extra_contact_info, str(h.format), h.version,
        h.generator, h.begin, h.end, list(h.errors), p.domain, p.p, p.sp, p.pct, p.adkim,
        p.aspf, p.fo, p.np, p.testing, p.discovery_method, records, messages, origin.source,
        origin.kind, origin.offset, member, at,
    )  # fmt: skip


@dataclass(slots=True)
class _Pending:
    key: str
    table: str  # dmarc | tlsrpt
    head: tuple[Any, ...]
    children: dict[str, list[tuple[Any, ...]]]
    counts: tuple[int, int]  # (records or failures, reports)


def _arrow_table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Any:
    import pyarrow as pa

    fields = []
    for c in columns:
        if c in _LIST_COLS:
            t = pa.list_(pa.string())
        elif c in _INT_COLS:
            t = pa.int64()
        elif c in _TIME_COLS:
            t = pa.timestamp("us", tz="UTC")
        elif c == "raw":
            t = pa.binary()
        else:
            t = pa.string()
        fields.append(pa.field(c, t))
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.Table.from_arrays(
        [pa.array(list(v), type=f.type) for v, f in zip(cols, fields, strict=True)],
        schema=pa.schema(fields),
    )


def _insert(con: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    con.register("_report_batch", _arrow_table(columns, rows))
    cols = ", ".join(f'"{c}"' for c in columns)
    try:
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _report_batch")
    finally:
        con.unregister("_report_batch")


# --------------------------------------------------------------------------------------------
# The ingestor


class ReportIngestor:
    """Reads inputs, parses reports, writes them in batches. One instance per run."""

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        limits: Limits = DEFAULT_LIMITS,
        batch_reports: int = DEFAULT_BATCH,
        stream_records: int = STREAM_RECORDS,
    ) -> None:
        self.store = store
        self.now = now
        self.limits = limits
        self.batch_reports = batch_reports
        self.stream_records = stream_records
        self.result = ReportsResult()
        self._pending: list[_Pending] = []
        self._quarantine: list[tuple[Any, ...]] = []

    # ---- inputs

    def run(self, paths: Iterable[str | os.PathLike[str]]) -> ReportsResult:
        for p in paths:
            self._path(Path(p))
        self.flush()
        return self.result

    def _unreadable(self, path: Path, exc: OSError) -> None:
        self.result.unreadable.append((str(path), (exc.strerror or type(exc).__name__).lower()))

    def _path(self, path: Path) -> None:
        try:
            if path.is_dir():
                if is_maildir(path):
                    self._messages(iter_messages([path], on_error=self._mail_error))
                else:
                    for entry in _walk(path):
                        self._path(entry)
                return
            with path.open("rb") as f:  # one open: sniff, then read on from the start
                head = f.read(8)
                if is_report_file(head):
                    f.seek(0)
                    self._file(path, f)
                    return
            self._messages(read_file(path))
        except OSError as exc:
            self._unreadable(path, exc)

    def _mail_error(self, path: str, reason: str) -> None:
        self.result.unreadable.append((path, reason))

    def add_messages(self, messages: Iterable[MailboxMessage]) -> None:
        """Read report mail handed over by a caller (the daemon's Maildirs); ``flush`` writes."""
        self._messages(messages)

    def _messages(self, messages: Iterable[MailboxMessage]) -> None:
        for msg in messages:
            self.result.inputs += 1
            origin = _Origin(msg.source, "mail", msg.offset, _constant(msg.raw))
            try:
                attachments = find_reports(msg.raw)
            except ParseError as exc:
                self._quarantined(origin, exc.code, exc.detail, where=f"message {msg.index}")
                continue
            except Exception as exc:  # a parser bug must not stop the run (STYLE.md section 4)
                log.exception("report mail parser bug on %s message %d", msg.source, msg.index)
                self._quarantined(origin, f"bug:{type(exc).__name__}", repr(exc)[:300])
                continue
            for att in attachments:
                self._payload(unpack(att.data, name=att.name, limits=self.limits), origin)

    def _file(self, path: Path, f: BinaryIO) -> None:
        self.result.inputs += 1
        origin = _Origin(str(path), "report", 0, lambda: _read_head(path, MAX_QUARANTINE_RAW))
        self._payload(unpack(_chunks(f), name=path.name, limits=self.limits), origin)

    # ---- payloads

    def _payload(self, members: Iterator[Member], origin: _Origin) -> None:
        """Every member of one attachment or file; the first failure ends it (an archive that
        trips a cap is refused whole)."""
        member_name = ""
        try:
            for member in members:
                member_name = member.name
                self._member(member, origin)
        except ParseError as exc:
            self._quarantined(origin, exc.code, exc.detail, where=member_name)
        except OSError:
            raise
        except Exception as exc:
            log.exception("report parser bug on %s %s", origin.source, member_name)
            self._quarantined(origin, f"bug:{type(exc).__name__}", repr(exc)[:300])

    def _member(self, member: Member, origin: _Origin) -> None:
        chunks = iter(member.chunks)
        first = b""
        for c in chunks:
            if c:
                first = c
                break
        kind = sniff(first[:4096])
        body = _prepend(first, chunks)
        if kind is PayloadKind.DMARC:
            self._dmarc(body, origin, member.name)
        elif kind is PayloadKind.TLSRPT:
            data = _collect(body, MAX_TLSRPT_BYTES)
            self._tlsrpt(parse_tlsrpt(data), origin, member.name)
        else:
            raise ParseError(
                "not-a-report", f"{member.name}: neither XML nor JSON ({first[:16]!r})"
            )

    def _dmarc(self, chunks: Iterator[bytes], origin: _Origin, member: str) -> None:
        items = parse_aggregate(chunks)
        head = next(items, None)
        if not isinstance(head, DmarcReport):  # parse_aggregate yields the head first
            raise ParseError("dmarc-missing-field", "no report head")
        key = report_key(head.org_name, head.report_id)
        rows: list[tuple[Any, ...]] = []
        messages = 0
        for item in items:
            assert isinstance(item, DmarcRecord)
            rows.append(_record_row(key, len(rows) + 1, item))
            messages += item.count
            if len(rows) > self.stream_records:
                self._dmarc_streamed(key, head, rows, messages, items, origin, member)
                return
        at = self.now()
        self._add(
            _Pending(
                key,
                "dmarc",
                _dmarc_report_row(key, head, len(rows), messages, origin, member, at),
                {"dmarc_record_log": rows},
                (len(rows), 1),
            )
        )

    def _dmarc_streamed(
        self,
        key: str,
        head: DmarcReport,
        rows: list[tuple[Any, ...]],
        messages: int,
        items: Iterator[DmarcReport | DmarcRecord],
        origin: _Origin,
        member: str,
    ) -> None:
        """A large report, records written as they are parsed, ``stream_records`` per
        transaction (one transaction for a million records held DuckDB's uncommitted rows in
        memory: 740 MB peak). The head row goes in last: until it is there the records are in
        no view (they all join dmarc_report_log), and if the report breaks they are deleted.
        Records left by a run killed half-way have no head either; they are deleted first."""
        self.flush()
        if self._known_keys("dmarc_report_log", [key]):
            self.result.duplicates += 1
            return
        position = len(rows)

        def write(batch: list[tuple[Any, ...]]) -> None:
            with self.store.transaction() as tx:
                _insert(tx, "dmarc_record_log", _DMARC_RECORD_COLS, batch)

        with self.store.transaction() as tx:
            tx.execute("DELETE FROM dmarc_record_log WHERE report_key = ?", [key])
        try:
            write(rows)
            rows = []
            for item in items:
                assert isinstance(item, DmarcRecord)
                position += 1
                rows.append(_record_row(key, position, item))
                messages += item.count
                if len(rows) >= self.stream_records:
                    write(rows)
                    rows = []
            head_row = _dmarc_report_row(key, head, position, messages, origin, member, self.now())
            with self.store.transaction() as tx:
                _insert(tx, "dmarc_record_log", _DMARC_RECORD_COLS, rows)
                _insert(tx, "dmarc_report_log", _DMARC_REPORT_COLS, [head_row])
        except BaseException:
            with self.store.transaction() as tx:
                tx.execute("DELETE FROM dmarc_record_log WHERE report_key = ?", [key])
            raise
        self.result.dmarc_reports += 1
        self.result.dmarc_records += position

    def _tlsrpt(self, r: TlsReport, origin: _Origin, member: str) -> None:
        key = report_key(r.organization_name, r.report_id)
        policies: list[tuple[Any, ...]] = []
        failures: list[tuple[Any, ...]] = []
        for i, p in enumerate(r.policies, start=1):
            policies.append(
                (key, i, p.policy_type, p.policy_domain, list(p.policy_string),
                 list(p.mx_hosts), p.successful_sessions, p.failed_sessions)
            )  # fmt: skip
            for j, f in enumerate(p.failures, start=1):
                failures.append(
                    (key, i, j, f.result_type, f.sending_mta_ip, f.receiving_mx_hostname,
                     f.receiving_mx_helo, f.receiving_ip, f.failed_session_count,
                     f.additional_information, f.failure_reason_code)
                )  # fmt: skip
        head = (
            key, r.organization_name, r.report_id, r.contact_info, r.begin, r.end,
            len(r.policies), sum(p.successful_sessions for p in r.policies),
            sum(p.failed_sessions for p in r.policies), origin.source, origin.kind,
            origin.offset, member, self.now(),
        )  # fmt: skip
        self._add(
            _Pending(
                key,
                "tlsrpt",
                head,
                {"tlsrpt_policy_log": policies, "tlsrpt_failure_log": failures},
                (len(failures), 1),
            )
        )

    # ---- writing

    def _quarantined(self, origin: _Origin, reason: str, detail: str, *, where: str = "") -> None:
        self.result.quarantined += 1
        self.result.quarantine_reasons[reason] += 1
        label = f"{origin.source}" + (f" ({where})" if where else "")
        self.result.problems.append((label, reason, detail))
        raw = origin.raw()
        if len(raw) > MAX_QUARANTINE_RAW:
            raw = raw[:MAX_QUARANTINE_RAW]
            detail += f" [raw bytes cut to the first {MAX_QUARANTINE_RAW}]"
        self._quarantine.append(
            (origin.source, origin.kind, origin.offset, reason, detail, raw, self.now())
        )

    def _add(self, pending: _Pending) -> None:
        self._pending.append(pending)
        if len(self._pending) >= self.batch_reports:
            self.flush()

    def _known_keys(self, table: str, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        rows = self.store.con.execute(
            f"SELECT report_key FROM {table} WHERE report_key IN (SELECT unnest(?))", [keys]
        ).fetchall()
        return {str(k) for (k,) in rows}

    def _known_quarantine(self) -> set[tuple[str, str, int | None, str, str]]:
        sources = list({q[0] for q in self._quarantine})
        if not sources:
            return set()
        rows = self.store.con.execute(
            "SELECT source, source_kind, \"offset\", reason, coalesce(detail, '') FROM "
            f"{self.store.history('quarantine')} WHERE source IN (SELECT unnest(?))",
            [sources],
        ).fetchall()
        return {(str(s), str(k), o, str(r), str(d)) for s, k, o, r, d in rows}

    def flush(self) -> None:
        """Commit what is buffered: new reports (not yet in the store, first copy in the batch)
        with their children, and quarantine rows not already there from an earlier run."""
        if not self._pending and not self._quarantine:
            return
        known = self._known_keys(
            "dmarc_report_log", [p.key for p in self._pending if p.table == "dmarc"]
        ) | {
            "tls" + KEY_SEP + k
            for k in self._known_keys(
                "tlsrpt_report_log", [p.key for p in self._pending if p.table == "tlsrpt"]
            )
        }
        tables: dict[str, list[tuple[Any, ...]]] = {}
        r = self.result
        for p in self._pending:
            marker = p.key if p.table == "dmarc" else "tls" + KEY_SEP + p.key
            if marker in known:
                r.duplicates += 1
                continue
            known.add(marker)
            tables.setdefault(f"{p.table}_report_log", []).append(p.head)
            for name, rows in p.children.items():
                tables.setdefault(name, []).extend(rows)
            if p.table == "dmarc":
                r.dmarc_reports += 1
                r.dmarc_records += p.counts[0]
            else:
                r.tlsrpt_reports += 1
                r.tlsrpt_failures += p.counts[0]
        seen = self._known_quarantine()
        quarantine = []
        for q in self._quarantine:
            k = (q[0], q[1], q[2], q[3], q[4] or "")
            if k not in seen:
                seen.add(k)
                quarantine.append(q)
        columns = {
            "dmarc_report_log": _DMARC_REPORT_COLS,
            "dmarc_record_log": _DMARC_RECORD_COLS,
            "tlsrpt_report_log": _TLS_REPORT_COLS,
            "tlsrpt_policy_log": _TLS_POLICY_COLS,
            "tlsrpt_failure_log": _TLS_FAILURE_COLS,
        }
        with self.store.transaction() as con:
            for name, rows in tables.items():
                _insert(con, name, columns[name], rows)
            _insert(con, "quarantine", _QUARANTINE_COLS, quarantine)
        self._pending = []
        self._quarantine = []


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _collect(chunks: Iterable[bytes], cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    for c in chunks:
        size += len(c)
        if size > cap:
            raise ParseError("tlsrpt-too-large", f"JSON report larger than {cap} bytes")
        parts.append(c)
    return b"".join(parts)


def ingest_reports(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limits: Limits = DEFAULT_LIMITS,
    batch_reports: int = DEFAULT_BATCH,
    stream_records: int = STREAM_RECORDS,
) -> ReportsResult:
    """Read every report under ``paths`` into the store (see the module docstring)."""
    return ReportIngestor(
        store, now=now, limits=limits, batch_reports=batch_reports, stream_records=stream_records
    ).run(paths)
