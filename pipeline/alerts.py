"""Alert rules of `mtalens watch`: evaluated on what each commit stored, over a window of log
time (the timestamps in the lines, not the wall clock, so a replay alerts like the live run).

An alert fires once per episode: when its condition becomes true for a key (a destination domain,
a client IP, a blocklist zone, or the whole server), one JSON log line ``alert firing`` is written
and, if configured, one JSON POST goes to the webhook; nothing more until the condition is false
again, which logs ``alert resolved`` (and posts it), and a later breach is a new episode.

Rule kinds (``pipeline/watch_config.py``):

- ``bounce_rate`` / ``deferral_rate``: bounced (deferred) attempts / all attempts to a recipient
  domain in the window >= threshold, with at least ``min_events`` attempts.
- ``sasl_failures``: SASL authentication failures from one client IP in the window >= threshold.
- ``blocklist``: replies naming a blocklist zone (the classifier's ``blocklist`` column) >= threshold.
- ``queue_delay_p90``: the 90th percentile of the total ``delay=`` of delivered mail in the
  window > threshold seconds, with at least ``min_events`` deliveries.
- ``dnsbl_listed`` / ``dns_broken`` / ``dns_changed``: the scheduled checks of ``[checks]``
  (``pipeline/checks.py``): one of our IPs listed on a zone (key "ip zone"), a domain check in
  error, a domain check whose records changed since its previous run (key "domain check").
  State, not a window: they fire and resolve when a run of the checks is stored (``observe``);
  ``at`` is the run's time. The firing state lives in memory: after a restart, a listing still
  there fires again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from mtalens.pipeline.watch_config import CHECK_KINDS, AlertKind, AlertRule

if TYPE_CHECKING:
    from mtalens.pipeline.metrics import Metrics

log = logging.getLogger("mtalens.alerts")

# (logged_at, key, value): value is a status, 1 for a count, or a delay in seconds
_Event = tuple[datetime, str, Any]
# (url, payload) -> delivered? (None: not known, e.g. a test's recorder)
Poster = Callable[[str, dict[str, Any]], bool | None]

# A webhook is a peer we do not control (issue 12: one that trickled a byte every 4 s kept a
# thread and a socket per alert, 1,025 threads). So: one delivery thread, a bounded queue in
# front of it (full: the notification is dropped and counted; the alert is in the JSON log
# anyway), and WEBHOOK_TIMEOUT for the whole POST (connect, TLS, send, status line), not per read.
WEBHOOK_TIMEOUT: Final = 10.0
WEBHOOK_QUEUE: Final = 100
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-5]\d\d)[ \r\n]")
_MAX_STATUS_LINE: Final = 8192


def post_json(url: str, payload: dict[str, Any], *, timeout: float = WEBHOOK_TIMEOUT) -> bool:
    """POST the payload as JSON; True if answered 2xx. A redirect is not followed (a POST's
    destination is the configured URL, nothing a response names). Errors are logged, never
    raised."""
    try:
        status = _post(url, json.dumps(payload).encode(), timeout)
    except (OSError, ValueError) as exc:  # a dead or hostile webhook must not stop the daemon
        log.warning("webhook failed", extra={"url": url, "error": f"{type(exc).__name__}: {exc}"})
        return False
    if 200 <= status < 300:
        return True
    if 300 <= status < 400:
        log.warning("webhook answered a redirect, not followed", extra={"url": url,
                                                                         "status": status})  # fmt: skip
    else:
        log.warning("webhook failed", extra={"url": url, "status": status})
    return False


def _post(url: str, body: bytes, timeout: float) -> int:
    """One HTTP/1.1 POST with ``Connection: close``; returns the status code. The response is
    read only up to its status line, each read bounded by what is left of ``timeout``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    deadline = time.monotonic() + timeout

    def left() -> float:
        rest = deadline - time.monotonic()
        if rest <= 0:
            raise TimeoutError(f"no status line within {timeout:g} s")
        return rest

    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
        "Content-Type: application/json\r\nUser-Agent: mtalens\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")  # a URL with other characters is a ValueError, logged like the rest
    default_port = 443 if parts.scheme == "https" else 80
    sock = socket.create_connection((parts.hostname, parts.port or default_port), timeout=left())
    try:
        if parts.scheme == "https":
            tls = ssl.create_default_context().wrap_socket(
                sock, server_hostname=parts.hostname, do_handshake_on_connect=False
            )
            sock = tls
            tls.settimeout(left())
            tls.do_handshake()  # the timeout bounds the whole handshake (CPython's _ssl)
        sock.settimeout(left())
        sock.sendall(head + body)  # the timeout bounds the whole sendall (Python >= 3.5)
        got = b""
        while b"\n" not in got:
            sock.settimeout(left())
            chunk = sock.recv(1024)
            if not chunk:
                raise ConnectionError("closed before a status line")
            got += chunk
            if len(got) > _MAX_STATUS_LINE:
                raise ValueError("no HTTP status line in the first 8 KB")
    finally:
        sock.close()
    m = _STATUS_LINE.match(got)
    if m is None:
        raise ValueError(f"not an HTTP response: {got[:40]!r}")
    return int(m.group(1))


def _p90(values: list[float]) -> float:
    # nearest-rank percentile: the smallest value with at least 90% of values at or below it
    s = sorted(values)
    rank = max(1, -(-9 * len(s) // 10))
    return s[rank - 1]


class AlertEngine:
    def __init__(
        self,
        rules: Iterable[AlertRule],
        *,
        webhook: str | None = None,
        post: Poster = post_json,
        background: bool = True,
        queue_size: int = WEBHOOK_QUEUE,
        metrics: Metrics | None = None,
    ) -> None:
        """``background``: webhooks are posted by one delivery thread through a queue of
        ``queue_size`` (full: dropped, counted in ``dropped_total`` and the metric
        ``mtalens_alert_webhooks_total{outcome="dropped"}``); without it, in the caller (tests)."""
        self.rules = tuple(rules)
        self.webhook = webhook
        self._post = post
        self._background = background
        self._metrics = metrics
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None
        self._closing = False
        self.dropped_total = 0
        self._events: dict[str, deque[_Event]] = {r.id: deque() for r in self.rules}
        self.firing: dict[tuple[str, str], dict[str, Any]] = {}
        self.latest: datetime | None = None
        self.fired_total = 0

    # -- feeding --------------------------------------------------------------------------------

    def feed(
        self,
        deliveries: Iterable[dict[str, Any]] = (),
        auth_failures: Iterable[dict[str, Any]] = (),
    ) -> None:
        for d in deliveries:
            at = d["logged_at"]
            self._see(at)
            domain = str(d.get("recipient") or "").rpartition("@")[2].lower()
            status = d.get("status")
            for r in self.rules:
                if r.kind in (AlertKind.BOUNCE_RATE, AlertKind.DEFERRAL_RATE):
                    if r.domain is None or r.domain == domain:
                        self._events[r.id].append((at, domain, status))
                elif r.kind is AlertKind.BLOCKLIST and d.get("blocklist"):
                    self._events[r.id].append((at, str(d["blocklist"]), 1))
                elif (
                    r.kind is AlertKind.QUEUE_DELAY_P90
                    and status == "sent"
                    and d.get("delay") is not None
                ):
                    self._events[r.id].append((at, "", float(d["delay"])))
        for a in auth_failures:
            at = a["logged_at"]
            self._see(at)
            for r in self.rules:
                if r.kind is AlertKind.SASL_FAILURES:
                    self._events[r.id].append((at, str(a.get("client_ip") or "unknown"), 1))

    def _see(self, at: datetime) -> None:
        if self.latest is None or at > self.latest:
            self.latest = at

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self) -> list[dict[str, Any]]:
        """Fire new episodes, resolve ended ones; returns the notifications sent."""
        if self.latest is None:
            return []
        sent: list[dict[str, Any]] = []
        for r in self.rules:
            if r.kind in CHECK_KINDS:
                continue  # state from the scheduled checks: observe()
            q = self._events[r.id]
            horizon = self.latest.timestamp() - r.window
            while q and q[0][0].timestamp() < horizon:
                q.popleft()
            breached = self._breached(r, q)
            for key, value in breached.items():
                if (r.id, key) not in self.firing:
                    sent.append(self._notify("firing", r, key, value))
            for rid, key in [k for k in self.firing if k[0] == r.id]:
                if key not in breached:
                    sent.append(self._notify("resolved", r, key, self.firing[(rid, key)]["value"]))
        return sent

    def observe(
        self,
        kind: AlertKind,
        active: Mapping[str, str],
        *,
        at: datetime,
        keep: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """The scheduled checks' state for ``kind`` (``pipeline/checks.py``): ``active`` maps
        each key that is true now to its detail. New keys fire, firing keys no longer active
        resolve, except those in ``keep`` (checks that got no answer this run: unknown is not
        resolved). Returns the notifications sent."""
        sent: list[dict[str, Any]] = []
        for r in self.rules:
            if r.kind is not kind:
                continue
            for key, detail in active.items():
                if (r.id, key) not in self.firing:
                    sent.append(self._notify("firing", r, key, 1.0, at=at, detail=detail))
            for _, key in [k for k in self.firing if k[0] == r.id]:
                if key not in active and key not in keep:
                    sent.append(self._notify("resolved", r, key, 0.0, at=at))
        return sent

    def _breached(self, r: AlertRule, q: deque[_Event]) -> dict[str, float]:
        out: dict[str, float] = {}
        if r.kind in (AlertKind.BOUNCE_RATE, AlertKind.DEFERRAL_RATE):
            want = "bounced" if r.kind is AlertKind.BOUNCE_RATE else "deferred"
            totals: dict[str, list[int]] = {}
            for _, key, status in q:
                t = totals.setdefault(key, [0, 0])
                t[0] += 1
                t[1] += status == want
            for key, (n, bad) in totals.items():
                if n >= r.min_events and bad / n >= r.threshold:
                    out[key] = round(bad / n, 4)
        elif r.kind in (AlertKind.SASL_FAILURES, AlertKind.BLOCKLIST):
            counts: dict[str, int] = {}
            for _, key, _one in q:
                counts[key] = counts.get(key, 0) + 1
            out = {k: float(n) for k, n in counts.items() if n >= r.threshold}
        elif r.kind is AlertKind.QUEUE_DELAY_P90:
            delays = [float(v) for _, _, v in q]
            if len(delays) >= r.min_events and (p := _p90(delays)) > r.threshold:
                out[""] = p
        return out

    def _notify(
        self,
        state: str,
        r: AlertRule,
        key: str,
        value: float,
        *,
        at: datetime | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        at = at or self.latest
        assert at is not None
        payload: dict[str, Any] = {
            "alert": r.id,
            "kind": str(r.kind),
            "state": state,
            "key": key,
            "value": value,
            "threshold": r.threshold,
            "window_seconds": r.window,
            "at": at.isoformat(),
        }
        if detail is not None:
            payload["detail"] = detail
        if state == "firing":
            self.firing[(r.id, key)] = payload
            self.fired_total += 1
        else:
            self.firing.pop((r.id, key), None)
        log.warning(f"alert {state}", extra={"alert": payload})
        if self.webhook:
            if self._background:
                self._enqueue(payload)
            else:
                self._count(self._post(self.webhook, payload))
        return payload

    # -- webhook delivery -----------------------------------------------------------------------

    def _enqueue(self, payload: dict[str, Any]) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._deliver, daemon=True,
                                            name="mtalens-webhook")  # fmt: skip
            self._worker.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:  # the webhook is slower than the alerts: never wait for it
            self.dropped_total += 1
            self._count_outcome("dropped")
            log.warning("webhook queue full, notification dropped",
                        extra={"alert": payload["alert"], "state": payload["state"],
                               "key": payload["key"], "queue_size": self._queue.maxsize})  # fmt: skip

    def _deliver(self) -> None:
        while True:
            try:
                payload = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._closing:
                    return
                continue
            if payload is None:
                return
            if self.webhook:
                self._count(self._post(self.webhook, payload))

    def _count(self, delivered: bool | None) -> None:
        if delivered is not None:
            self._count_outcome("delivered" if delivered else "failed")

    def _count_outcome(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("mtalens_alert_webhooks_total",
                              "Alert notifications for the webhook, by outcome.",
                              outcome=outcome)  # fmt: skip

    def close(self, wait: float = 0.0) -> None:
        """Stop the delivery thread once it has posted what is queued, waiting up to ``wait``
        seconds for that (it is a daemon thread: what is left when the process exits is lost,
        as the alerts' log lines are not)."""
        if self._worker is None:
            return
        self._closing = True  # if the queue is too full for the marker, the thread sees this
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(wait, 0.01))
        self._worker.join(timeout=wait)
