"""Bounce processing shell: read messages from paths, decode them (``mtalens.parsers.bounces``), classify
each recipient (``mtalens.pipeline.classify``), and store reports, recipients and complaints in batches.

Every message read ends as stored, duplicate (same content hash already in the store) or
quarantined (``ParseError`` code, or ``bug:<ExceptionType>`` for a decoder bug), so
``read == stored + duplicates + quarantined``.

Each message has a ``Budget``: one larger than ``max_bytes`` is quarantined unread
(``too_large``), one whose decoding takes longer than ``max_seconds`` is quarantined
(``time_budget``). In the main thread the decoder is interrupted when the time is up (SIGALRM;
the regex engine checks for signals while it runs); elsewhere signals cannot reach it, so the
time is checked when it returns. The decoders are linear (issue 12), so with the size cap the
time limit is a safety net, not the bound.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from mtalens.parsers.bounces import BounceRecipient, BounceReport, ParseError, ReportKind, decode
from mtalens.parsers.bounces.mime import normalise_newlines
from mtalens.pipeline.mailbox import MailboxMessage, iter_messages

if TYPE_CHECKING:  # parsing needs no store: `bounces parse` must not import duckdb
    from mtalens.pipeline.store import Store

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 500
DEFAULT_MAX_BYTES: Final = 50 << 20  # above the usual provider limits (Gmail 25 MB, Postfix 10 MB)
DEFAULT_MAX_SECONDS: Final = 5.0  # a linear decoder takes < 50 ms per MB: 100x headroom at 1 MB


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """What one message may cost to decode before it is quarantined instead."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS


DEFAULT_BUDGET: Final = Budget()


class _Overtime(BaseException):
    """Raised by the SIGALRM handler; a BaseException so no ``except Exception`` swallows it."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only, and only when no other interval
    timer is armed: then it leaves the timer alone and the caller checks the time afterwards)."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _Overtime

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)


class Classification(Protocol):
    """What ``mtalens.pipeline.classify.classify`` returns (read-only view)."""

    @property
    def reason(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def hard(self) -> bool | None: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def blocklist(self) -> str | None: ...


Classifier = Callable[..., Classification]


def default_classifier() -> Classifier | None:
    """``mtalens.pipeline.classify.classify`` (written separately); None while it does not exist."""
    try:
        from mtalens.pipeline.classify import classify

        classify(status="5.1.1")  # loads the rule files once; a broken rule set fails here
    except (ImportError, OSError) as exc:
        log.warning("bounce classification unavailable: %s", exc)
        return None
    return classify


def content_hash(raw: bytes) -> str:
    """Key of a message: SHA-256 of its bytes with line endings normalised."""
    return hashlib.sha256(normalise_newlines(raw)).hexdigest()


def verp_original(address: str | None) -> str | None:
    """``bounces+user=example.com@list.example`` -> ``user@example.com``.

    VERP as done by Postfix (VERP_README: default delimiters "+=", ``sender+recipient=domain``)
    and by qmail/ezmlm (cr.yp.to/proto/verp.txt, "-" and "="): the recipient is after the first
    delimiter of the local part, with its "@" written as "=".
    """
    if not address or "@" not in address:
        return None
    local = address.rsplit("@", 1)[0]
    for delim in ("+", "-"):
        if delim in local:
            tail = local.split(delim, 1)[1]
            if tail.count("=") >= 1:
                user, _, domain = tail.rpartition("=")
                if user and "." in domain:
                    return f"{user}@{domain}".lower()
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BounceRow:
    """One output row per recipient (or one with ``recipient=None`` for a message without)."""

    source: str
    message: int
    offset: int
    report_hash: str
    kind: str
    agent: str
    recipient: str | None
    original_recipient: str | None
    action: str | None
    status: str | None
    reply_code: str | None
    diagnostic_type: str | None
    diagnostic: str | None
    hint: str | None
    reason: str | None
    category: str | None
    hard: bool | None
    rule_id: str | None
    blocklist: str | None
    reporting_mta: str | None
    remote_mta: str | None
    original_message_id: str | None
    envelope_id: str | None
    postfix_queue_id: str | None
    mta_queue_id: str | None  # the reporting MTA's queue id (X-Postfix-Queue-ID or Received:)
    verp_recipient: str | None
    feedback_type: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def failure_row(d: Decoded) -> BounceRow:
    """The output row of a message that could not be decoded: kind ``undecodable``, the
    quarantine reason as ``reason`` and its detail as ``diagnostic`` (everything else empty)."""
    return BounceRow(
        source=d.message.source, message=d.message.index, offset=d.message.offset,
        report_hash=d.report_hash, kind="undecodable", agent="", recipient=None,
        original_recipient=None, action=None, status=None, reply_code=None,
        diagnostic_type=None, diagnostic=d.error.detail if d.error else None, hint=None,
        reason=d.reason, category=None, hard=None, rule_id=None, blocklist=None,
        reporting_mta=None, remote_mta=None, original_message_id=None, envelope_id=None,
        postfix_queue_id=None, mta_queue_id=None, verp_recipient=None, feedback_type=None,
    )  # fmt: skip


@dataclass(slots=True)
class Decoded:
    message: MailboxMessage
    report_hash: str
    report: BounceReport | None = None
    error: ParseError | None = None
    reason: str | None = None  # quarantine reason when report is None


def decode_message(
    msg: MailboxMessage,
    budget: Budget = DEFAULT_BUDGET,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Decoded:
    """Decode one message within its budget; never raises (bugs become a ``bug:<Type>``
    quarantine reason, an exceeded budget ``too_large`` or ``time_budget``)."""
    h = content_hash(msg.raw)
    overtime = ParseError("time_budget", f"decoding took more than {budget.max_seconds:g} s")
    started = clock()
    try:
        with _deadline(budget.max_seconds):
            report = decode(msg.raw, max_bytes=budget.max_bytes)
    except _Overtime:
        log.warning("bounce over its time budget: %s message %d", msg.source, msg.index)
        return Decoded(msg, h, error=overtime, reason=overtime.code)
    except ParseError as exc:
        return Decoded(msg, h, error=exc, reason=exc.code)
    except Exception as exc:  # a decoder bug must not stop the scan (STYLE.md section 4)
        log.exception("bounce decoder bug on %s message %d", msg.source, msg.index)
        return Decoded(
            msg, h, error=ParseError("bug", repr(exc)), reason=f"bug:{type(exc).__name__}"
        )
    if clock() - started > budget.max_seconds:  # where it could not be interrupted
        log.warning("bounce over its time budget: %s message %d", msg.source, msg.index)
        return Decoded(msg, h, error=overtime, reason=overtime.code)
    return Decoded(msg, h, report=report)


# The classifier's "kind" hints (pipeline/classify.py module docstring).
_CLASSIFIER_KIND: Final = {
    ReportKind.COMPLAINT: "feedback",
    ReportKind.DELAYED: "delayed",
    ReportKind.DELIVERED: "delivered",
    ReportKind.AUTOREPLY: "autoreply",
}


def _classify(
    classifier: Classifier | None, rcpt: BounceRecipient | None, report: BounceReport
) -> tuple[str | None, str | None, bool | None, str | None, str | None]:
    if classifier is None:
        return None, None, None, None, None
    if rcpt is None and report.kind is not ReportKind.COMPLAINT:
        return None, None, None, None, None
    hint = rcpt.hint if rcpt else None
    c = classifier(
        status=rcpt.status if rcpt else None,
        reply_code=int(rcpt.reply_code) if rcpt and rcpt.reply_code else None,
        diagnostic=rcpt.diagnostic if rcpt else None,
        remote_host=rcpt.remote_mta if rcpt else None,
        action=str(rcpt.action) if rcpt and report.kind is not ReportKind.COMPLAINT else None,
        kind=hint or _CLASSIFIER_KIND.get(report.kind),
        command=str(rcpt.command) if rcpt and rcpt.command else None,
        diagnostic_type=rcpt.diagnostic_type if rcpt else None,
    )
    return c.reason, c.category, c.hard, c.rule_id, c.blocklist


def rows_of(decoded: Decoded, classifier: Classifier | None) -> list[BounceRow]:
    report = decoded.report
    if report is None:
        return []
    msg = decoded.message
    verp = verp_original(report.to)
    common: dict[str, Any] = {
        "source": msg.source,
        "message": msg.index,
        "offset": msg.offset,
        "report_hash": decoded.report_hash,
        "kind": str(report.kind),
        "agent": report.agent,
        "reporting_mta": report.reporting_mta,
        "original_message_id": report.original.message_id if report.original else None,
        "envelope_id": report.envelope_id,
        "postfix_queue_id": report.postfix_queue_id,
        "mta_queue_id": report.mta_queue_id,
        "verp_recipient": verp,
        "feedback_type": report.complaint.feedback_type if report.complaint else None,
    }
    counted = report.kind in (ReportKind.BOUNCE, ReportKind.DELAYED, ReportKind.COMPLAINT)
    recipients: tuple[BounceRecipient | None, ...] = report.recipients if counted else ()
    if not recipients:
        recipients = (None,)
    rows = []
    for r in recipients:
        reason, category, hard, rule_id, blocklist = _classify(classifier, r, report)
        rows.append(
            BounceRow(
                **common,
                recipient=r.recipient if r else None,
                original_recipient=(r.original_recipient if r else None) or verp,
                action=str(r.action) if r and report.kind is not ReportKind.COMPLAINT else None,
                status=r.status if r else None,
                reply_code=r.reply_code if r else None,
                diagnostic_type=r.diagnostic_type if r else None,
                diagnostic=r.diagnostic if r else None,
                hint=r.hint if r else None,
                remote_mta=r.remote_mta if r else None,
                reason=reason,
                category=category,
                hard=hard,
                rule_id=rule_id,
                blocklist=blocklist,
            )
        )
    return rows


def parse_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    classifier: Classifier | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[BounceRow | Decoded]:
    """Stateless: a row per recipient, or the ``Decoded`` of a message that failed to decode.
    A path that cannot be read raises OSError, or goes to ``on_error(path, reason)``."""
    classifier = classifier or default_classifier()
    for msg in iter_messages(paths, on_error=on_error):
        d = decode_message(msg)
        if d.report is None:
            yield d
        else:
            yield from rows_of(d, classifier)


@dataclass(slots=True)
class IngestResult:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    recipients: int = 0
    complaints: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


_REPORT_COLS: Final = (
    "report_hash", "source", "message_index", '"offset"', "kind", "agent", "report_message_id",
    "subject", "report_from", "report_to", "verp_recipient", "report_date", "reporting_mta",
    "received_from_mta", "arrival_date", "envelope_id", "postfix_queue_id", "postfix_sender",
    "original_message_id", "original_from", "original_to", "original_subject", "original_date",
    "ingested_at", "mta_queue_id",
)  # fmt: skip
_RCPT_COLS: Final = (
    "report_hash", "position", "recipient", "original_recipient", "action", "status",
    "reply_code", "diagnostic_type", "diagnostic", "remote_mta", "last_attempt_date",
    "will_retry_until", "hint", "reason", "category", "hard", "rule_id", "blocklist",
)  # fmt: skip
_COMPLAINT_COLS: Final = (
    "report_hash", "feedback_type", "user_agent", "version", "original_mail_from",
    "original_rcpt_to", "source_ip", "reporting_mta", "reported_domain", "arrival_date",
    "incidents",
)  # fmt: skip
_QUARANTINE_COLS: Final = (
    "source",
    "source_kind",
    '"offset"',
    "reason",
    "detail",
    "raw",
    "quarantined_at",
)


def _insert(con: Any, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    marks = ", ".join("?" for _ in cols)
    con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)


def ingest(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    classifier: Classifier | None = None,
    batch_size: int = DEFAULT_BATCH,
    budget: Budget = DEFAULT_BUDGET,
    progress: Callable[[MailboxMessage], None] | None = None,
) -> IngestResult:
    """Decode, classify and store; one transaction per batch of messages. A path that cannot be
    read is listed in ``IngestResult.unreadable`` (path, reason) and the others are read.
    ``progress`` is called with each message once it is decoded."""
    classifier = classifier or default_classifier()
    result = IngestResult()
    batch: list[Decoded] = []
    for msg in iter_messages(paths, on_error=lambda p, why: result.unreadable.append((p, why))):
        result.read += 1
        batch.append(decode_message(msg, budget))
        if progress is not None:
            progress(msg)
        if len(batch) >= batch_size:
            _write_batch(store, batch, classifier, now(), result)
            batch = []
    if batch:
        _write_batch(store, batch, classifier, now(), result)
    return result


def _write_batch(
    store: Store,
    batch: list[Decoded],
    classifier: Classifier | None,
    at: datetime,
    result: IngestResult,
) -> None:
    hashes = list({d.report_hash for d in batch})
    known = {
        str(h)
        for (h,) in store.con.execute(
            f"SELECT report_hash FROM {store.history('bounce_reports')} "
            "WHERE report_hash IN (SELECT unnest(?))",
            [hashes],
        ).fetchall()
    }
    # a message quarantined by an earlier run is not quarantined again (same source and offset)
    quarantined = {
        (str(src), int(off))
        for src, off in store.con.execute(
            f'SELECT source, "offset" FROM {store.history("quarantine")} '
            "WHERE source_kind = 'mail' "
            "AND source IN (SELECT unnest(?))",
            [list({d.message.source for d in batch if d.report is None})],
        ).fetchall()
    }
    reports: list[tuple[Any, ...]] = []
    rcpts: list[tuple[Any, ...]] = []
    complaints: list[tuple[Any, ...]] = []
    quarantine: list[tuple[Any, ...]] = []
    for d in batch:
        msg = d.message
        if d.report is None:
            reason = d.reason or "unknown"
            detail = d.error.detail if d.error else None
            result.quarantined += 1
            result.quarantine_reasons[reason] = result.quarantine_reasons.get(reason, 0) + 1
            if (msg.source, msg.offset) in quarantined:
                continue
            quarantined.add((msg.source, msg.offset))
            quarantine.append((msg.source, "mail", msg.offset, reason, detail, msg.raw, at))
            continue
        if d.report_hash in known:
            result.duplicates += 1
            continue
        known.add(d.report_hash)
        r = d.report
        o = r.original
        reports.append((
            d.report_hash, msg.source, msg.index, msg.offset, str(r.kind), r.agent, r.message_id,
            r.subject, r.sender, r.to, verp_original(r.to), r.date, r.reporting_mta,
            r.received_from_mta, r.arrival_date, r.envelope_id, r.postfix_queue_id,
            r.postfix_sender, o.message_id if o else None, o.sender if o else None,
            o.to if o else None, o.subject if o else None, o.date if o else None, at,
            r.mta_queue_id,
        ))  # fmt: skip
        for pos, rc in enumerate(r.recipients, start=1):
            why, category, hard, rule_id, blocklist = _classify(classifier, rc, r)
            rcpts.append((
                d.report_hash, pos, rc.recipient, rc.original_recipient, str(rc.action),
                rc.status, rc.reply_code, rc.diagnostic_type, rc.diagnostic, rc.remote_mta,
                rc.last_attempt_date, rc.will_retry_until, rc.hint, why, category, hard,
                rule_id, blocklist,
            ))  # fmt: skip
            result.recipients += 1
        if r.complaint is not None:
            c = r.complaint
            complaints.append((
                d.report_hash, c.feedback_type, c.user_agent, c.version, c.original_mail_from,
                list(c.original_rcpt_to), c.source_ip, c.reporting_mta, list(c.reported_domain),
                c.arrival_date, c.incidents,
            ))  # fmt: skip
            result.complaints += 1
        result.stored += 1
    with store.transaction() as con:
        _insert(con, "bounce_reports", _REPORT_COLS, reports)
        _insert(con, "bounce_recipients", _RCPT_COLS, rcpts)
        _insert(con, "complaint_reports", _COMPLAINT_COLS, complaints)
        _insert(con, "quarantine", _QUARANTINE_COLS, quarantine)
