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
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from mtalens.pipeline.watch_config import AlertKind, AlertRule

log = logging.getLogger("mtalens.alerts")

# (logged_at, key, value): value is a status, 1 for a count, or a delay in seconds
_Event = tuple[datetime, str, Any]
Poster = Callable[[str, dict[str, Any]], None]


def post_json(url: str, payload: dict[str, Any]) -> None:
    """POST the payload as JSON; 5 s timeout. Errors are logged, never raised."""
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
    except Exception as exc:  # a dead webhook must not stop the daemon
        log.warning("webhook failed", extra={"url": url, "error": str(exc)})


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
    ) -> None:
        self.rules = tuple(rules)
        self.webhook = webhook
        self._post = post
        self._background = background
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

    def _notify(self, state: str, r: AlertRule, key: str, value: float) -> dict[str, Any]:
        assert self.latest is not None
        payload: dict[str, Any] = {
            "alert": r.id,
            "kind": str(r.kind),
            "state": state,
            "key": key,
            "value": value,
            "threshold": r.threshold,
            "window_seconds": r.window,
            "at": self.latest.isoformat(),
        }
        if state == "firing":
            self.firing[(r.id, key)] = payload
            self.fired_total += 1
        else:
            self.firing.pop((r.id, key), None)
        log.warning(f"alert {state}", extra={"alert": payload})
        if self.webhook:
            if self._background:
                threading.Thread(
                    target=self._post, args=(self.webhook, payload), daemon=True
                ).start()
            else:
                self._post(self.webhook, payload)
        return payload
