"""Sending-platform events into the store: read files as providers archive them, decode each
event (``mtalens.parsers.events``), classify each recipient with the one classifier
(``mtalens.pipeline.classify``) and store them on the bounce path (migration 0014): one
``bounce_reports`` row per event, one ``bounce_recipients`` row per recipient, a
``complaint_reports`` row per complaint. So events are in the ``bounces`` and ``complaints``
views next to decoded mail, and the suppression policy reads them as it reads DSNs.

Idempotent by the provider's event id: the report key is SHA-256 of ``provider NUL event id``,
and an event already stored is a duplicate. Every event read ends as stored, duplicate, ignored
(a named rule: opens, clicks, sends...) or quarantined (a reason code, the event's bytes kept),
``events == stored + duplicates + ignored + quarantined``; a file that cannot be read at all is
listed in ``unreadable``. A parser bug becomes a ``bug:<ExceptionType>`` quarantine row and the
run goes on (STYLE.md section 4).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.events import (
    BY_NAME,
    EventKind,
    Frame,
    Ignored,
    Provider,
    ProviderEvent,
    decode,
    split_events,
)
from mtalens.parsers.events.framing import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from mtalens.pipeline.bounces import Classifier
    from mtalens.pipeline.store import Store

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 20_000
MAX_RAW: Final = 1 << 20  # bytes of a quarantined event kept for replay
MAX_PROBLEMS: Final = 50  # quarantined events named one by one (the rest are counted)
_CACHE_SIZE: Final = 100_000

# kind -> (RFC 3464 action of its recipients, the classifier's kind hint)
_ACTION: Final[dict[EventKind, tuple[str | None, str | None]]] = {
    EventKind.BOUNCE: ("failed", None),
    EventKind.SUPPRESSED: ("failed", None),
    EventKind.REJECTED: ("failed", None),
    EventKind.DELAYED: ("delayed", "delayed"),
    EventKind.DELIVERED: ("delivered", "delivered"),
    EventKind.COMPLAINT: (None, "feedback"),
    EventKind.UNSUBSCRIBE: (None, None),
}


class UnknownProviderError(ValueError):
    pass


def providers() -> list[str]:
    return list(BY_NAME)


def event_key(provider: str, event_id: str) -> str:
    return hashlib.sha256(f"{provider}\0{event_id}".encode()).hexdigest()


@dataclass(slots=True)
class Decoded:
    """One frame of a file, decoded: ``event``, or ``ignored``, or ``reason`` (quarantine)."""

    path: str
    frame: Frame
    event: ProviderEvent | None = None
    ignored: Ignored | None = None
    reason: str | None = None
    detail: str | None = None

    def raw(self) -> bytes:
        if self.frame.raw is not None:
            return self.frame.raw[:MAX_RAW]
        if self.frame.event is not None:
            try:
                return json.dumps(self.frame.event, ensure_ascii=False).encode()[:MAX_RAW]
            except (ValueError, RecursionError):  # nothing json.loads made can fail, but be safe
                return b""
        return b""


def decode_frames(
    path: str, data: bytes, *, provider: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[Decoded]:
    """Decode every event of one file's bytes; never raises."""
    last: Provider | None = None
    for frame in split_events(data, max_bytes=max_bytes):
        if frame.event is None:
            err = frame.error or ParseError("unknown")
            yield Decoded(path, frame, reason=err.code, detail=err.detail)
            continue
        try:
            out = decode(frame.event, provider, prefer=last)
        except ParseError as exc:
            yield Decoded(path, frame, reason=exc.code, detail=exc.detail)
        except RecursionError:
            yield Decoded(path, frame, reason="too-deep", detail="nested too deeply")
        except Exception as exc:  # a parser bug must not stop the run (STYLE.md section 4)
            log.exception("event parser bug on %s event %d", path, frame.index)
            yield Decoded(path, frame, reason=f"bug:{type(exc).__name__}", detail=repr(exc)[:500])
        else:
            last = BY_NAME[out.provider]
            if isinstance(out, Ignored):
                yield Decoded(path, frame, ignored=out)
            else:
                yield Decoded(path, frame, event=out)


def iter_files(
    paths: Iterable[str | os.PathLike[str]], on_error: Callable[[str, str], None]
) -> Iterator[Path]:
    """Files named, and the files under directories named (sorted); a missing or unreadable
    path goes to ``on_error(path, reason)``."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file())
            if not found:
                on_error(str(p), "a directory without files")
            yield from found
        elif p.is_file():
            yield p
        elif p.exists():
            on_error(str(p), "not a regular file")
        else:
            on_error(str(p), "no such file or directory")


@dataclass(slots=True)
class EventsResult:
    files: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    quarantined: int = 0
    recipients: int = 0
    by_provider: Counter[str] = field(default_factory=Counter)
    ignore_rules: Counter[str] = field(default_factory=Counter)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (where, reason, detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "events": self.events, "stored": self.stored,
            "duplicates": self.duplicates, "ignored": self.ignored,
            "quarantined": self.quarantined, "recipients": self.recipients,
            "by_provider": dict(self.by_provider), "ignore_rules": dict(self.ignore_rules),
            "quarantine_reasons": dict(self.quarantine_reasons),
            "unreadable": [list(u) for u in self.unreadable],
        }  # fmt: skip


class _Classify:
    """The classifier, remembering answers (providers repeat the same replies many times)."""

    def __init__(self, classifier: Classifier | None) -> None:
        self.classifier = classifier
        self.cache: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def __call__(
        self, status: str | None, reply: str | None, diagnostic: str | None,
        remote: str | None, action: str | None, kind: str | None,
    ) -> tuple[Any, ...]:  # fmt: skip
        if self.classifier is None:
            return (None, None, None, None, None)
        key = (status, reply, diagnostic, remote, action, kind)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        c = self.classifier(
            status=status, reply_code=int(reply) if reply else None, diagnostic=diagnostic,
            remote_host=remote, action=action, kind=kind,
        )  # fmt: skip
        out = (c.reason, c.category, c.hard, c.rule_id, c.blocklist)
        if len(self.cache) >= _CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = out
        return out


_REPORT_COLS: Final = (
    "report_hash", "source", "message_index", "offset", "kind", "agent", "subject",
    "report_date", "reporting_mta", "original_message_id", "original_from", "original_subject",
    "ingested_at", "provider_event_id", "provider_event", "provider_message_id", "input_path",
)  # fmt: skip
_RCPT_COLS: Final = (
    "report_hash", "position", "recipient", "action", "status", "reply_code", "diagnostic",
    "remote_mta", "last_attempt_date", "reason", "category", "hard", "rule_id", "blocklist",
    "provider_category",
)  # fmt: skip
_COMPLAINT_COLS: Final = (
    "report_hash", "feedback_type", "user_agent", "original_rcpt_to", "reporting_mta",
    "arrival_date",
)  # fmt: skip
_QUARANTINE_COLS: Final = (
    "source", "source_kind", "offset", "reason", "detail", "raw", "quarantined_at",
)  # fmt: skip


def _insert(con: Any, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """One INSERT ... SELECT of an Arrow table (STYLE.md section 6: batches, not row by row)."""
    if not rows:
        return
    import pyarrow as pa

    columns = list(zip(*rows, strict=True))
    data = pa.table({c: pa.array(list(v)) for c, v in zip(cols, columns, strict=True)})
    quoted = ", ".join(f'"{c}"' for c in cols)
    con.register("_mtalens_event_rows", data)
    try:
        con.execute(f"INSERT INTO {table} ({quoted}) SELECT {quoted} FROM _mtalens_event_rows")
    finally:
        con.unregister("_mtalens_event_rows")


def ingest(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    provider: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    classifier: Classifier | None = None,
    batch_size: int = DEFAULT_BATCH,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EventsResult:
    """Read, decode, classify and store the events of ``paths`` (files or directories), of
    ``provider`` or of the provider each event's shape names."""
    if provider is not None and provider not in BY_NAME:
        raise UnknownProviderError(f"unknown provider {provider!r} (known: {', '.join(BY_NAME)})")
    if classifier is None:
        from mtalens.pipeline.bounces import default_classifier

        classifier = default_classifier()
    classify = _Classify(classifier)
    result = EventsResult()
    batch: list[Decoded] = []

    def unreadable(path: str, why: str) -> None:
        result.unreadable.append((path, why))

    # A batch keeps tens of thousands of decoded JSON objects alive: with the cyclic GC on, its
    # collections walk all of them again and again (measured: ~15% of the run). Decoding makes
    # no cycles; whatever else does is collected once the GC is back on, when this returns.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        with store.bulk_writes():
            for path in iter_files(paths, unreadable):
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    unreadable(str(path), exc.strerror or str(exc))
                    continue
                result.files += 1
                for d in decode_frames(str(path), data, provider=provider, max_bytes=max_bytes):
                    batch.append(d)
                    if len(batch) >= batch_size:
                        _write_batch(store, batch, classify, now(), result)
                        batch = []
            if batch:
                _write_batch(store, batch, classify, now(), result)
    finally:
        if gc_was_on:
            gc.enable()
    return result


def _known_keys(store: Store, keys: set[str]) -> set[str]:
    """The keys of ``keys`` already stored."""
    if not keys:
        return set()
    rows = store.con.execute(
        f"SELECT report_hash FROM {store.history('bounce_reports')} "
        "WHERE report_hash IN (SELECT unnest(?))",
        [list(keys)],
    ).fetchall()
    return {str(h) for (h,) in rows}


def _write_batch(
    store: Store, batch: list[Decoded], classify: _Classify, at: datetime, result: EventsResult
) -> None:
    keys = [event_key(d.event.provider, d.event.event_id) if d.event else "" for d in batch]
    known = _known_keys(store, set(keys) - {""})
    bad_paths = list({d.path for d in batch if d.reason})
    quarantined = {
        (str(src), int(off), str(why))
        for src, off, why in store.con.execute(
            f'SELECT source, "offset", reason FROM {store.history("quarantine")} '
            "WHERE source_kind = 'event' AND source IN (SELECT unnest(?))",
            [bad_paths],
        ).fetchall()
    } if bad_paths else set()  # fmt: skip
    reports: list[tuple[Any, ...]] = []
    rcpts: list[tuple[Any, ...]] = []
    complaints: list[tuple[Any, ...]] = []
    quarantine: list[tuple[Any, ...]] = []
    for d, key in zip(batch, keys, strict=True):
        result.events += 1
        if d.ignored is not None:
            result.ignored += 1
            result.ignore_rules[d.ignored.rule] += 1
            continue
        e = d.event
        if e is None:
            reason = d.reason or "unknown"
            result.quarantined += 1
            result.quarantine_reasons[reason] += 1
            if len(result.problems) < MAX_PROBLEMS:
                result.problems.append(
                    (f"{d.path} event {d.frame.index + 1}", reason, d.detail or "")
                )
            qkey = (d.path, d.frame.index, reason)
            if qkey not in quarantined:  # quarantined by an earlier run: not again
                quarantined.add(qkey)
                quarantine.append((d.path, "event", d.frame.index, reason, d.detail, d.raw(), at))
            continue
        if key in known:
            result.duplicates += 1
            continue
        known.add(key)
        result.stored += 1
        result.by_provider[e.provider] += 1
        reports.append((
            key, e.provider, d.frame.index + 1, d.frame.index, str(e.kind), e.provider, e.subject,
            e.occurred_at, e.reporting_mta, e.original_message_id, e.sender, e.subject, at,
            e.event_id, e.event_type, e.message_id, d.path,
        ))  # fmt: skip
        action, hint = _ACTION[e.kind]
        for pos, r in enumerate(e.recipients, start=1):
            if e.kind is EventKind.UNSUBSCRIBE:
                why: tuple[Any, ...] = (None, None, None, None, None)
            else:
                why = classify(r.status, r.reply_code, r.diagnostic, r.remote_mta, action, hint)
            rcpts.append((
                key, pos, r.address, action, r.status, r.reply_code, r.diagnostic, r.remote_mta,
                e.occurred_at, *why, r.provider_category,
            ))  # fmt: skip
            result.recipients += 1
        if e.kind is EventKind.COMPLAINT:
            complaints.append((
                key, e.feedback_type or "abuse", e.user_agent, [r.address for r in e.recipients],
                e.reporting_mta, e.occurred_at,
            ))  # fmt: skip
    with store.transaction() as con:
        _insert(con, "bounce_reports", _REPORT_COLS, reports)
        _insert(con, "bounce_recipients", _RCPT_COLS, rcpts)
        _insert(con, "complaint_reports", _COMPLAINT_COLS, complaints)
        _insert(con, "quarantine", _QUARANTINE_COLS, quarantine)
