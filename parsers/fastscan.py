"""The optional C scanner (``parsers/_pfscan.c``) for the common shapes of Postfix log lines.

Same formats and rules as :mod:`mtalens.parsers.syslog` and :mod:`mtalens.parsers.postfix` (which stay the
reference): RFC 3164 (with ``maillog_file``'s fraction) and RFC 3339 envelopes, and the hot
Postfix line types (deliveries, ``client=``, ``message-id=``, qmgr ``from=``/``removed``,
connect/disconnect/TLS/postscreen/dnsblog events). Every other line comes back as a FALLBACK op
for the Python parser, with the :class:`~mtalens.parsers.syslog.SyslogClock` state to parse it with.

Pure: bytes in, columns out. :data:`AVAILABLE` is False when the extension is not built (no
compiler at install time); callers then use the Python parser for every line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

try:
    from mtalens.parsers import _pfscan  # type: ignore[attr-defined]
except ImportError:  # not built: the pure-Python path does everything
    _pfscan = None

AVAILABLE: Final = _pfscan is not None

# op codes, as in _pfscan.c; every op but FALLBACK is (code, ts, (host, qid), ...), ts in UTC
# microseconds, (host, qid) the correlation key
OP_CLIENT: Final = 1  # + client_name, client_ip, port, sasl_method, sasl_username, orig_queue_id
OP_PICKUP: Final = 2  # + sender
OP_MSGID: Final = 3  # + message_id
OP_QACTIVE: Final = 4  # + sender, size, nrcpt
OP_REMOVED: Final = 5
OP_SENT: Final = 6  # the next row of the delivery columns, status=sent
# + status, dsn, reply_code, detail, remote_host, relay_host, smtp_stage (the next row): the
# arguments of mtalens.pipeline.correlate.classify_delivery after its first
OP_DELIVERY: Final = 7
OP_NOTIFY: Final = 8  # + kind, new_qid; its event row is in the event columns
OP_FALLBACK: Final = 9  # (9, start, end, clock_year_before, clock_month_before)

# column kinds, as in _pfscan.c
KIND_STR: Final = 0
KIND_I64: Final = 1
KIND_I32: Final = 2
KIND_F64: Final = 3

DELIVERY_FIELDS: Final = (
    "host", "queue_id", "logged_at", "service", "instance", "recipient", "orig_recipient",
    "relay", "relay_host", "relay_ip", "relay_port", "conn_use", "delay", "delay_before_queue",
    "delay_in_queue", "delay_connect", "delay_transmit", "dsn", "status", "reply_code",
    "smtp_stage", "diagnostic", "remote_host", "line_offset",
)  # fmt: skip
EVENT_FIELDS: Final = (
    "logged_at", "host", "service", "instance", "kind", "queue_id", "remote_host", "remote_ip",
    "detail", "line_offset",
)  # fmt: skip
REJECTION_FIELDS: Final = (
    "logged_at", "host", "service", "instance", "action", "stage", "client_name", "client_ip",
    "reply_code", "dsn", "reason", "sender", "recipient", "helo", "proto", "line_offset",
)  # fmt: skip

# (kind, length, null_count, data, offsets or None, validity bitmap or None): Arrow layout
RawColumn = tuple[int, int, int, bytes, bytes | None, bytes | None]
# tz_offset(year, month, day, hour, minute) -> the zone's UTC offset in seconds at that local time
TzOffset = Callable[[int, int, int, int, int], int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    end: int  # position in the buffer after the last line read
    lines: int
    clock_year: int
    clock_month: int
    stored: int  # lines turned into ops/rows here (FALLBACK lines not included)
    max_ts: int | None  # UTC microseconds
    ops: list[tuple[Any, ...]]
    deliveries: tuple[RawColumn, ...]
    events: tuple[RawColumn, ...]
    stopped: bool  # the last line needs the Python clock: continue from its state
    rejections: tuple[RawColumn, ...]  # NOQUEUE rejects (queue_id NULL)


def scan(
    buf: bytes,
    pos: int,
    *,
    max_lines: int,
    final: bool,
    clock_year: int,
    clock_month: int,
    tz_offset: TzOffset | None,
    base_offset: int,
) -> Scan:
    """Scan whole lines of ``buf`` from ``pos``. ``tz_offset`` None means local time is UTC.
    Timestamps come back as UTC microseconds; offsets as ``base_offset`` + position."""
    if _pfscan is None:
        raise RuntimeError("mtalens.parsers._pfscan is not built")
    r = _pfscan.scan(buf, pos, max_lines, final, clock_year, clock_month, tz_offset, base_offset)
    return Scan(
        end=r[0],
        lines=r[1],
        clock_year=r[2],
        clock_month=r[3],
        stored=r[4],
        max_ts=r[5],
        ops=r[6],
        deliveries=r[7],
        events=r[8],
        stopped=bool(r[9]),
        rejections=r[10],
    )


__all__ = [
    "AVAILABLE",
    "DELIVERY_FIELDS",
    "EVENT_FIELDS",
    "OP_CLIENT",
    "OP_DELIVERY",
    "OP_FALLBACK",
    "OP_MSGID",
    "OP_NOTIFY",
    "OP_PICKUP",
    "OP_QACTIVE",
    "OP_REMOVED",
    "OP_SENT",
    "REJECTION_FIELDS",
    "RawColumn",
    "Scan",
    "TzOffset",
    "scan",
]
