"""Prometheus metrics of `mtalens watch`, in the text exposition format (version 0.0.4,
https://prometheus.io/docs/instrumenting/exposition_formats/), served by the standard library's
``http.server`` on 127.0.0.1 unless configured otherwise.

Names follow the widely used postfix_exporter (https://github.com/kumina/postfix_exporter, its
README and metric list) where it has an equivalent, so existing dashboards keep working:

- ``postfix_smtp_delivery_delay_seconds{stage}`` / ``postfix_lmtp_delivery_delay_seconds{stage}``:
  histograms of the four ``delays=a/b/c/d`` stages (``before_queue_manager``, ``queue_manager``,
  ``connection_setup``, ``transmission``; postconf(5) ``delay_logging_resolution_limit``).
- ``postfix_smtp_messages_processed_total{status}``, ``postfix_smtp_deferred_messages_total``,
  plus ``..._deferred_messages_by_dsn_total{dsn}`` / ``..._bounced_messages_by_dsn_total{dsn}``.
- ``postfix_smtpd_messages_rejected_total{code}``, ``postfix_smtpd_sasl_authentication_failures_total``.

mtalens' own are ``mtalens_*``: lines read / stored / ignored / quarantined by source (the
configured path or glob, never a rotated file name), bounces by reason and category, lag.
No label ever holds an address, a client IP or a queue id: cardinality stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import socket
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

# kumina/postfix_exporter uses prometheus.ExponentialBuckets(1e-3, 2, 20) for delays; the same
# shape here (1 ms .. ~9 days is too wide for a text page; 1 ms .. ~524 s covers delivery stages).
DELAY_BUCKETS: Final = tuple(1e-3 * 2**i for i in range(20))
LAG_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# postfix_exporter's qmgr histograms: recipients 1, 2, 4 ... 128; sizes 1 kB, 10 kB ... 1 GB
RCPT_BUCKETS: Final = tuple(float(2**i) for i in range(8))
SIZE_BUCKETS: Final = tuple(10.0 ** (3 + i) for i in range(7))
DELAY_STAGES: Final = (
    ("delay_before_queue", "before_queue_manager"),
    ("delay_in_queue", "queue_manager"),
    ("delay_connect", "connection_setup"),
    ("delay_transmit", "transmission"),
)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    # exposition format: backslash, double quote and newline are escaped in label values
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt_value(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def observe(self, v: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
                break
        self.total += v
        self.n += 1


@dataclass(slots=True)
class _Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    buckets: tuple[float, ...] = ()
    values: dict[Labels, float] = field(default_factory=dict)
    hists: dict[Labels, _Histogram] = field(default_factory=dict)


# smtpd(8)/smtp(8): "<Trust> TLS connection established from|to HOST: <protocol> with cipher
# <cipher> (<secret>/<algorithm> bits)"; the correlator keeps the trust word as the event kind
# and the rest as its detail. Labels as postfix_exporter's smtpd_tls_connections_total.
# exim_exporter's exim_messages_total flags for a delivery row's status (its test/tail.metrics:
# "delivered", "deferred", "failed"; "->" lines, its "additional", are counted as delivered here,
# as the store does not tell them apart)
_EXIM_FLAGS: Final = {"sent": "delivered", "deferred": "deferred", "bounced": "failed",
                      "expired": "failed"}  # fmt: skip
_TLS_TRUST: Final = {"tls-anonymous": "Anonymous", "tls-trusted": "Trusted",
                     "tls-untrusted": "Untrusted", "tls-verified": "Verified"}  # fmt: skip
_TLS_DETAIL: Final = re.compile(r"(\S+) with cipher (\S+) \((\d+)/(\d+) bits\)")


class Metrics:
    """A small thread-safe registry: the daemon writes, the HTTP thread renders."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self.started = time.time()

    def _family(self, name: str, kind: str, help: str, buckets: tuple[float, ...] = ()) -> _Family:
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = _Family(name, kind, help, buckets)
        return fam

    def inc(self, name: str, help: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            fam = self._family(name, "counter", help)
            fam.values[key] = fam.values.get(key, 0.0) + value

    def set(self, name: str, help: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._family(name, "gauge", help).values[key] = value

    def set_total(self, name: str, help: str, value: float, **labels: str) -> None:
        """A counter whose running total is read elsewhere (``process_cpu_seconds_total``):
        typed counter, as the exposition format's guidelines name ``*_total`` series."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._family(name, "counter", help).values[key] = value

    def observe(
        self, name: str, help: str, value: float, buckets: tuple[float, ...], **labels: str
    ) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            fam = self._family(name, "histogram", help, buckets)
            h = fam.hists.get(key)
            if h is None:
                h = fam.hists[key] = _Histogram(fam.buckets)
            h.observe(value)

    def observe_many(
        self, name: str, help: str, values: Sequence[float], buckets: tuple[float, ...],
        **labels: str,
    ) -> None:  # fmt: skip
        """``observe`` for each value, in order, under one lock."""
        if not values:
            return
        key = tuple(sorted(labels.items()))
        with self._lock:
            fam = self._family(name, "histogram", help, buckets)
            h = fam.hists.get(key)
            if h is None:
                h = fam.hists[key] = _Histogram(fam.buckets)
            if not h.counts:
                h.counts = [0] * len(fam.buckets)
            counts, bs, last = h.counts, fam.buckets, len(fam.buckets)
            total = h.total
            for v in values:
                i = bisect_left(bs, v)  # the first bucket with v <= le, as _Histogram.observe
                if i < last:
                    counts[i] += 1
                total += v
            h.total = total
            h.n += len(values)

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 if never set); for tests and alerts."""
        with self._lock:
            fam = self._families.get(name)
            return 0.0 if fam is None else fam.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        self._process_metrics()
        out: list[str] = []
        with self._lock:
            for fam in sorted(self._families.values(), key=lambda f: f.name):
                out.append(f"# HELP {fam.name} {fam.help}")
                out.append(f"# TYPE {fam.name} {fam.kind}")
                for labels, v in sorted(fam.values.items()):
                    out.append(f"{fam.name}{_fmt_labels(labels)} {_fmt_value(v)}")
                for labels, h in sorted(fam.hists.items()):
                    running = 0
                    for b, c in zip(fam.buckets, h.counts or [0] * len(fam.buckets), strict=True):
                        running += c
                        le = _fmt_labels(labels, (("le", _fmt_value(b)),))
                        out.append(f"{fam.name}_bucket{le} {running}")
                    inf = _fmt_labels(labels, (("le", "+Inf"),))
                    out.append(f"{fam.name}_bucket{inf} {h.n}")
                    out.append(f"{fam.name}_sum{_fmt_labels(labels)} {_fmt_value(h.total)}")
                    out.append(f"{fam.name}_count{_fmt_labels(labels)} {h.n}")
        return "\n".join(out) + "\n"

    def _process_metrics(self) -> None:
        # The standard process_* names (Prometheus client library guidelines); Linux ru_maxrss is KiB.
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.set_total(
            "process_cpu_seconds_total", "User and system CPU time.", ru.ru_utime + ru.ru_stime
        )
        self.set(
            "process_max_resident_memory_bytes", "Peak resident set size.", ru.ru_maxrss * 1024
        )
        rss = _current_rss()
        if rss is not None:
            self.set("process_resident_memory_bytes", "Resident set size.", rss)
        self.set("process_start_time_seconds", "Start time (Unix seconds).", self.started)

    # -- what the daemon feeds in -----------------------------------------------------------------

    def record_delivery_table(self, tbl: pa.Table, mta: str = "postfix") -> None:
        """The delivery series of an Arrow table of ``delivery_log`` rows (columns by name, rows
        in line order) that the MTA ``mta`` logged (a log format's name), counted per label set:
        ``mtalens_deliveries_total`` for every MTA, postfix_exporter's series for Postfix and
        exim_exporter's ``exim_messages_total`` for Exim."""
        if tbl.num_rows == 0:
            return
        service = _label_column(tbl["service"], "")
        status = _label_column(tbl["status"], "")
        keys = pa.table({
            "service": service, "status": status, "dsn": _label_column(tbl["dsn"], ""),
            "reason": _label_column(tbl["reason"], "unclassified"),
            "category": _label_column(tbl["category"], "unclassified"),
        })  # fmt: skip
        groups = keys.group_by(["service", "status", "dsn", "reason", "category"]).aggregate(
            [([], "count_all")]
        )
        for g in groups.to_pylist():
            n, svc, st, dsn = float(g["count_all"]), g["service"], g["status"], g["dsn"]
            self.inc("mtalens_deliveries_total", "Delivery attempts by MTA, agent and status.",
                     n, service=svc, status=st, mta=mta)  # fmt: skip
            if st == "bounced":
                self.record_bounce("log", g["reason"], g["category"], n)
            if mta == "exim":
                self._exim_flag(_EXIM_FLAGS.get(st), n)
            if mta != "postfix":
                continue
            if svc in ("smtp", "lmtp"):
                self.inc(f"postfix_{svc}_messages_processed_total",
                         f"Messages processed by the {svc} client, by status.", n, status=st)  # fmt: skip
            if svc == "smtp" and st == "deferred":
                self.inc("postfix_smtp_deferred_messages_total", "Deferred deliveries.", n)
                self.inc("postfix_smtp_deferred_messages_by_dsn_total",
                         "Deferred deliveries by enhanced status code.", n, dsn=dsn)  # fmt: skip
            if svc == "smtp" and st == "bounced":
                self.inc("postfix_smtp_bounced_messages_by_dsn_total",
                         "Bounced deliveries by enhanced status code.", n, dsn=dsn)  # fmt: skip
        if mta != "postfix":
            return
        for svc in ("smtp", "lmtp"):
            mask = pc.equal(service, svc)
            if not pc.any(mask).as_py():
                continue
            for col, stage in DELAY_STAGES:
                vals = pc.filter(tbl[col], mask).drop_null().cast(pa.float64()).to_pylist()
                self.observe_many(f"postfix_{svc}_delivery_delay_seconds",
                                  f"{svc} delivery delay by stage (delays=a/b/c/d).",
                                  vals, DELAY_BUCKETS, stage=stage)  # fmt: skip

    def _exim_flag(self, flag: str | None, n: float) -> None:
        if flag is not None and n:
            self.inc("exim_messages_total", "Logged Exim messages by flag (exim_exporter's).", n,
                     flag=flag)  # fmt: skip

    def record_rejection_table(self, tbl: pa.Table, mta: str = "postfix") -> None:
        """The reject series of an Arrow table of ``rejection_log`` rows that ``mta`` logged:
        ``mtalens_rejections_total`` by action, postfix_exporter's smtpd and cleanup series,
        exim_exporter's ``exim_reject_total``."""
        if tbl.num_rows == 0:
            return
        for vc in pc.value_counts(_label_column(tbl["action"], "")).to_pylist():
            self.inc("mtalens_rejections_total", "Rejections by MTA and action.",
                     float(vc["counts"]), action=vc["values"], mta=mta)  # fmt: skip
        if mta == "exim":
            self.inc("exim_reject_total", "Logged Exim rejections (exim_exporter's).",
                     float(tbl.num_rows))  # fmt: skip
        if mta != "postfix":
            return
        mask = pc.and_(pc.equal(_label_column(tbl["service"], ""), "smtpd"),
                       pc.equal(_label_column(tbl["action"], ""), "reject"))  # fmt: skip
        codes = _label_column(pc.filter(tbl["reply_code"], mask), "")
        for vc in pc.value_counts(codes).to_pylist():
            self.inc("postfix_smtpd_messages_rejected_total",
                     "Messages rejected by smtpd, by reply code.", float(vc["counts"]),
                     code=vc["values"])  # fmt: skip
        cleanup = pc.and_(pc.equal(_label_column(tbl["service"], ""), "cleanup"),
                          pc.is_in(_label_column(tbl["action"], ""),
                                   pa.array(["reject", "milter-reject"])))  # fmt: skip
        n_cleanup = pc.sum(pc.cast(cleanup, pa.int64())).as_py() or 0
        self.inc("postfix_cleanup_messages_rejected_total",
                 "Total number of messages rejected by cleanup.", float(n_cleanup))  # fmt: skip

    def record_event_table(self, tbl: pa.Table, mta: str = "postfix") -> None:
        """postfix_exporter's smtpd and TLS counters from an Arrow table of ``event_log`` rows:
        connects, disconnects, lost connections by stage, FCrDNS failures, TLS connections by
        trust, protocol and cipher (smtpd and smtp), and smtp connection timeouts (Postfix's
        lines only)."""
        if tbl.num_rows == 0 or mta != "postfix":
            return
        kinds = tbl["kind"].to_pylist()
        services = tbl["service"].to_pylist()
        details = tbl["detail"].to_pylist()
        simple: dict[tuple[str, str], tuple[str, str]] = {
            ("connect", "smtpd"): ("postfix_smtpd_connects_total", "Incoming connections."),
            ("disconnect", "smtpd"): ("postfix_smtpd_disconnects_total", "Incoming disconnects."),
            ("fcrdns-failure", "smtpd"): (
                "postfix_smtpd_forward_confirmed_reverse_dns_errors_total",
                "Connections whose forward-confirmed reverse DNS failed.",
            ),
        }
        for kind, service, detail in zip(kinds, services, details, strict=True):
            named = simple.get((kind, service))
            if named is not None:
                self.inc(named[0], named[1])
            elif kind == "lost-connection" and service == "smtpd":
                self.inc("postfix_smtpd_connections_lost_total",
                         "Incoming connections lost, by the stage they were lost after.",
                         after_stage=str(detail or ""))  # fmt: skip
            elif kind == "connect-failure" and service == "smtp" and "timed out" in (detail or ""):
                self.inc("postfix_smtp_connection_timed_out_total",
                         "Outgoing connections that timed out.")  # fmt: skip
            elif kind in _TLS_TRUST and service in ("smtpd", "smtp"):
                tls = _TLS_DETAIL.match(detail or "")
                protocol, cipher, secret, algorithm = tls.groups() if tls else ("", "", "", "")
                direction = "Incoming" if service == "smtpd" else "Outgoing"
                self.inc(f"postfix_{service}_tls_connections_total",
                         f"{direction} TLS connections.", trust=_TLS_TRUST[kind],
                         protocol=protocol, cipher=cipher, secret_bits=secret,
                         algorithm_bits=algorithm)  # fmt: skip

    def record_queue(self, counts: Any, mta: str = "postfix") -> None:
        """postfix_exporter's qmgr and cleanup series from one commit's line counts
        (``ingest.LineCounts``): messages inserted into the active queue (one per qmgr
        ``from=... (queue active)`` line, as the exporter counts them) with their recipients and
        size, removed, expired; messages cleanup processed (``message-id=`` lines). For Exim,
        exim_exporter's ``arrived`` and ``completed`` flags."""
        if mta == "exim":
            self._exim_flag("arrived", float(len(counts.inserted_sizes)))
            self._exim_flag("completed", float(counts.removed))
        if mta != "postfix":
            return
        if counts.inserted_rcpts:
            self.observe_many("postfix_qmgr_messages_inserted_receipients",
                              "Number of recipients per message inserted into the mail queues.",
                              [float(n) for n in counts.inserted_rcpts], RCPT_BUCKETS)  # fmt: skip
        if counts.inserted_sizes:
            self.observe_many("postfix_qmgr_messages_inserted_size_bytes",
                              "Size of messages inserted into the mail queues in bytes.",
                              [float(n) for n in counts.inserted_sizes], SIZE_BUCKETS)  # fmt: skip
        self.inc("postfix_qmgr_messages_removed_total",
                 "Total number of messages removed from mail queues.", float(counts.removed))  # fmt: skip
        self.inc("postfix_qmgr_messages_expired_total",
                 "Total number of messages expired from mail queues.", float(counts.expired))  # fmt: skip
        self.inc("postfix_cleanup_messages_processed_total",
                 "Total number of messages processed by cleanup.", float(counts.cleanup_processed))  # fmt: skip
        for method, n in counts.smtpd_processed.items():
            self.inc("postfix_smtpd_messages_processed_total",
                     "Total number of messages processed by smtpd, by SASL method.", float(n),
                     sasl_method=method)  # fmt: skip

    def record_bounce(self, source: str, reason: Any, category: Any, n: float = 1.0) -> None:
        self.inc("mtalens_bounces_total", "Bounces by origin (log or mailbox), reason and category.",
                 n, origin=source, reason=str(reason or "unclassified"),
                 category=str(category or "unclassified"))  # fmt: skip

    def record_auth_failures(self, n: int, mta: str = "postfix") -> None:
        if n:
            self.inc("mtalens_auth_failures_total", "SMTP AUTH failures by MTA.", float(n),
                     mta=mta)  # fmt: skip
        if n and mta == "postfix":
            self.inc("postfix_smtpd_sasl_authentication_failures_total",
                     "SASL authentication failures.", float(n))  # fmt: skip

    def record_lines(self, source: str, read: int, stored: int,
                     ignored: dict[str, int], quarantined: dict[str, int],
                     mta: str = "postfix") -> None:  # fmt: skip
        help_ = "Log lines by source (configured path), the MTA that wrote it, and outcome."
        self.inc("mtalens_lines_total", help_, read, source=source, outcome="read", mta=mta)
        self.inc("mtalens_lines_total", help_, stored, source=source, outcome="stored", mta=mta)
        self.inc("mtalens_lines_total", help_, sum(ignored.values()), source=source,
                 outcome="ignored", mta=mta)  # fmt: skip
        self.inc("mtalens_lines_total", help_, sum(quarantined.values()), source=source,
                 outcome="quarantined", mta=mta)  # fmt: skip
        for reason, n in quarantined.items():
            self.inc("mtalens_quarantined_lines_total", "Quarantined lines by reason.", n,
                     source=source, reason=reason)  # fmt: skip
        for rule, n in ignored.items():
            self.inc("mtalens_ignored_lines_total", "Ignored lines by rule.", n,
                     source=source, rule=rule)  # fmt: skip


def _label_column(col: pa.ChunkedArray | pa.Array, default: str) -> pa.ChunkedArray | pa.Array:
    """A column as label values: ``str(value or default)`` of the per-row methods (null and
    empty become ``default``; a reply code 554 becomes ``"554"``)."""
    s = col.cast(pa.string())
    return pc.fill_null(pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s), default)


def _current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


# Limits of the metrics server (issue 12): a local client must not be able to take the daemon's
# file descriptors or threads. A scrape is one short request (HTTP/1.0, no keep-alive), so a
# connection gets IO_TIMEOUT per read or write and CONNECTION_DEADLINE in all (a peer trickling a
# byte at a time stays under any per-read timeout); beyond MAX_CONNECTIONS open at once a new one
# is answered 503 and closed at once (counted), never queued.
MAX_CONNECTIONS: Final = 32
IO_TIMEOUT: Final = 5.0
CONNECTION_DEADLINE: Final = 10.0
_BUSY: Final = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

log = logging.getLogger("mtalens.metrics")


class _BoundedServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a cap on connections (a thread and a descriptor each), a
    deadline per connection enforced from the accept loop, and errors logged, not printed
    (``socketserver`` prints tracebacks to stderr, which would break the daemon's JSON log)."""

    daemon_threads = True
    request_queue_size = 128  # the kernel's backlog; the cap applies to accepted connections

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        metrics: Metrics,
        max_connections: int,
        deadline: float,
        name: str = "metrics",
    ) -> None:
        """``name``: of the server, in its metrics (``mtalens_<name>_connections_...``)."""
        self._name = name
        self._metrics = metrics
        self._deadline = deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: dict[socket.socket, float] = {}  # connection -> monotonic deadline
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._metrics.inc(f"mtalens_{self._name}_connections_dropped_total",
                              f"{self._name} connections refused (503): too many were open.")  # fmt: skip
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open[request] = time.monotonic() + self._deadline
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back here
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self._open_lock:
            known = self._open.pop(request, None) is not None
        if known:
            self._slots.release()

    def service_actions(self) -> None:
        # called by serve_forever() between accepts and at least every poll interval (0.5 s):
        # a connection past its deadline is shut down, which ends its thread's blocked read
        now = time.monotonic()
        with self._open_lock:
            late = [s for s, until in self._open.items() if until <= now]
            for s in late:
                self._open[s] = float("inf")  # shut down once; the thread frees the slot
        for s in late:
            self._metrics.inc(f"mtalens_{self._name}_connections_timed_out_total",
                              f"{self._name} connections closed at their deadline.")  # fmt: skip
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        self._metrics.inc(f"mtalens_{self._name}_request_errors_total",
                          f"{self._name} requests that failed (mostly clients that went away).")  # fmt: skip
        if isinstance(exc, OSError):  # reset, broken pipe, timeout: the client's doing
            log.debug(f"{self._name} client went away",
                      extra={"error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        else:
            log.warning(f"{self._name} request failed", exc_info=True)


class MetricsServer:
    """``GET /metrics`` on a daemon thread; ``port=0`` picks a free port (see ``.port``). At most
    ``max_connections`` at once, each closed after ``io_timeout`` without progress or
    ``deadline`` in all (see the constants above)."""

    def __init__(
        self,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 9154,
        *,
        max_connections: int = MAX_CONNECTIONS,
        io_timeout: float = IO_TIMEOUT,
        deadline: float = CONNECTION_DEADLINE,
    ) -> None:
        registry = metrics

        class Handler(BaseHTTPRequestHandler):
            timeout = io_timeout  # StreamRequestHandler.setup() sets it on the socket

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = registry.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would flood the daemon's log

        self._server = _BoundedServer((host, port), Handler, metrics=metrics,
                                      max_connections=max_connections, deadline=deadline)  # fmt: skip
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="mtalens-metrics")  # fmt: skip

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
