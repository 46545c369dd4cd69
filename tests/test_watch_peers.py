"""Peers cannot exhaust the daemon (issue 12, item 3): idle and trickling clients of the metrics
server, a trickling or redirecting webhook, clients that disconnect mid-response. Real sockets on
127.0.0.1 only: the test opens the connections and runs the hostile servers in threads."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mtalens.pipeline.alerts import AlertEngine, post_json
from mtalens.pipeline.metrics import Metrics, MetricsServer
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import setup_json_logging
from mtalens.pipeline.watch_config import AlertKind, AlertRule

CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]
LINE = (
    "Mar  2 06:00:{sec:02d} mx1 postfix/smtp[201]: 4A1B2C3D{sec:02d}: to=<a@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1.5, delays=0.1/0.2/0.3/0.9, dsn=2.0.0, "
    "status=sent (250 ok)\n"
)


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def metrics_server(metrics: Metrics, **kw: Any) -> Iterator[MetricsServer]:
    server = MetricsServer(metrics, "127.0.0.1", 0, **kw).start()
    try:
        yield server
    finally:
        server.stop()


# -- the metrics server ---------------------------------------------------------------------------


def test_idle_connections_hold_at_most_the_cap_then_time_out() -> None:
    metrics = Metrics()
    cap = 8
    base_threads, base_fds = threading.active_count(), own_fds()
    with metrics_server(metrics, max_connections=cap, io_timeout=2.0, deadline=30) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(300)]
        try:
            wait_for(lambda: metrics.value("mtalens_metrics_connections_dropped_total") >= 300 - cap,
                     10, "the connections over the cap to be refused")  # fmt: skip
            # the server side: one thread and one socket per connection it holds, at most `cap`
            assert threading.active_count() - base_threads <= cap + 1  # + the accept thread
            assert own_fds() - base_fds - len(idle) <= cap + 2  # + the listening socket
            # a refused client is told so, not left hanging
            refused = idle[-1]
            refused.settimeout(5)
            assert refused.recv(100).startswith(b"HTTP/1.0 503")
            # the idle ones are closed after io_timeout without a request; then scrapes work
            wait_for(lambda: threading.active_count() - base_threads <= 1, 5, "idle threads to end")
            text = scrape(server.port)
        finally:
            for s in idle:
                s.close()
    assert "mtalens_metrics_connections_dropped_total " in text


def test_a_trickling_client_is_cut_at_the_connection_deadline() -> None:
    metrics = Metrics()
    with metrics_server(metrics, io_timeout=0.5, deadline=1.5) as server:
        c = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        started = time.monotonic()
        closed_after = None
        with c:
            # one byte of a request line every 0.2 s: each read succeeds within io_timeout
            for ch in b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"x" * 100:
                r, _, _ = select.select([c], [], [], 0.2)
                if r:
                    with contextlib.suppress(ConnectionError):
                        if c.recv(100) == b"":
                            closed_after = time.monotonic() - started
                            break
                try:
                    c.send(bytes([ch]))
                except OSError:
                    closed_after = time.monotonic() - started
                    break
        assert closed_after is not None, "the server let a trickling client keep its connection"
        assert 1.2 <= closed_after <= 3.5
        assert metrics.value("mtalens_metrics_connections_timed_out_total") == 1
        assert "mtalens_metrics_connections_timed_out_total 1\n" in scrape(server.port)


def test_clients_that_leave_mid_response_keep_the_log_json(
    capfd: pytest.CaptureFixture[str],
) -> None:
    metrics = Metrics()
    for i in range(20_000):  # a page of ~1 MB: larger than the socket buffers
        metrics.inc("mtalens_test_series_total", "Padding.", source=f"/var/log/mail-{i:05d}.log")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_json_logging(logging.DEBUG, stream=sys.stderr)
    try:
        with metrics_server(metrics) as server:
            # a write can beat the RST (loopback buffers grow under load): leave until
            # the server has seen 5 clients go, with a deadline rather than a fixed count
            deadline = time.monotonic() + 20
            while metrics.value("mtalens_metrics_request_errors_total") < 5:
                assert time.monotonic() < deadline, "the server never saw a client leave"
                c = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                c.recv(1000)  # the response has started
                # close with RST (SO_LINGER 0): the server's next writes fail
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                time.sleep(0.05)
            time.sleep(0.2)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert all(json.loads(line)["logger"] for line in lines), lines[:5]
    went_away = sum(json.loads(line)["msg"] == "metrics client went away" for line in lines)
    assert went_away == metrics.value("mtalens_metrics_request_errors_total") >= 5


@pytest.mark.slow
def test_daemon_survives_more_idle_connections_than_descriptors(tmp_path: Path) -> None:
    """Before: 1,020 idle connections under `ulimit -n 1024` made the daemon exit (`Too many
    open files` opening the store). Here 600 against a limit of 256."""
    log, db, err = tmp_path / "mail.log", tmp_path / "w.duckdb", tmp_path / "watch.err"
    log.write_text(LINE.format(sec=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--timezone", "UTC",
             "--metrics-port", str(port), "--commit-interval", "0.1",
             "--poll-interval", "0.1"],
            stdout=subprocess.DEVNULL, stderr=fh, preexec_fn=limit_fds,
        )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        wait_for(lambda: b"metrics listening" in err.read_bytes(), 30, "the metrics server")
        for _ in range(600):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        with open(f"/proc/{proc.pid}/status") as status:
            threads = next(int(x.split()[1]) for x in status if x.startswith("Threads:"))
        with open(log, "a") as fh2:
            fh2.write(LINE.format(sec=2))
        time.sleep(1.5)  # a dozen windows
        alive = proc.poll() is None
    finally:
        for c in idle:
            c.close()
        proc.terminate()
        proc.wait(20)
    stderr = err.read_text()
    assert alive, stderr[-500:]
    assert fds < 100 and threads < 60, (fds, threads)
    with Store.open(db, read_only=True) as store:
        row = store.con.execute("SELECT count(*) FROM delivery_log").fetchone()
    assert row == (2,)  # the line written during the attack was ingested
    assert all(json.loads(line) for line in stderr.splitlines() if line.strip())


# -- the webhook ----------------------------------------------------------------------------------


def _readable(c: socket.socket) -> bool:
    p = select.poll()
    p.register(c, select.POLLIN)
    return bool(p.poll(0))


class Trickler:
    """An HTTP server that reads a request, then sends one byte every ``every`` seconds and never
    a full status line; records how long each client kept its connection."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.held: list[float] = []  # seconds from accept to the client's close
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conns: dict[socket.socket, float] = {}
        next_drip = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                c, _ = self.sock.accept()
                c.setblocking(False)
                conns[c] = time.monotonic()
                self.accepted += 1
            readable = [c for c in conns if _readable(c)]  # poll(2): any descriptor number
            for c in readable:
                try:
                    data = c.recv(65536)
                except OSError:
                    data = b""
                if not data:  # the client gave up
                    self.held.append(time.monotonic() - conns.pop(c))
                    c.close()
            if time.monotonic() >= next_drip:
                next_drip += self.every
                for c in list(conns):
                    with contextlib.suppress(OSError):
                        c.send(b"H")
        for c in conns:
            c.close()

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def sasl_episodes(eng: AlertEngine, n: int) -> float:
    """``n`` alert episodes (each a new client IP); the seconds feeding and evaluating took."""
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    started = time.monotonic()
    for i in range(n):
        at = t0 + timedelta(seconds=10 * i)
        eng.feed(auth_failures=[{"logged_at": at, "client_ip": f"192.0.2.{i % 250}"}])
        eng.evaluate()
    return time.monotonic() - started


def test_a_trickling_webhook_costs_one_thread_and_drops_what_it_cannot_take() -> None:
    metrics = Metrics()
    rule = AlertRule(id="sasl", kind=AlertKind.SASL_FAILURES, window=1, threshold=1)
    with Trickler(every=0.2) as hook:
        eng = AlertEngine([rule], webhook=f"http://127.0.0.1:{hook.port}/hook",
                          post=partial(post_json, timeout=1.0), queue_size=4,
                          metrics=metrics)  # fmt: skip
        base_threads, base_fds = threading.active_count(), own_fds()
        spent = sasl_episodes(eng, 50)  # 99 notifications: 50 firing, 49 resolved
        assert spent < 1.0  # the alerts never wait for the webhook
        time.sleep(0.3)
        assert threading.active_count() - base_threads == 1  # one delivery thread
        assert own_fds() - base_fds <= 2  # one connection at a time (its two ends are ours)
        wait_for(lambda: len(hook.held) >= 3, 10, "the client to give up on the trickler")
        eng.close(wait=8)  # what is queued is posted (1 s each) before the test ends
    dropped = metrics.value("mtalens_alert_webhooks_total", outcome="dropped")
    assert dropped == eng.dropped_total >= 99 - 4 - 1 - 5  # queue of 4, one in flight, slack
    assert metrics.value("mtalens_alert_webhooks_total", outcome="failed") >= 3
    # each POST is given up after its 1 s budget although every read got a byte within 0.2 s
    assert all(0.8 <= h <= 2.5 for h in hook.held), hook.held


class _Recorder(threading.Thread):
    """An HTTP server answering every request with ``answer``; records request lines."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(daemon=True)
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except TimeoutError:
                continue
            with c:
                c.settimeout(2)
                got = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in got:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        got += chunk
                    head, _, body = got.partition(b"\r\n\r\n")
                    length = re.search(rb"(?im)^content-length: *(\d+)", head)
                    while length and len(body) < int(length.group(1)):
                        body += c.recv(4096)
                    self.requests.append(head.split(b"\r\n", 1)[0])
                    self.bodies.append(body)
                    c.sendall(self.answer)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_webhook_redirects_are_not_followed(code: int, caplog: pytest.LogCaptureFixture) -> None:
    target = _Recorder(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    hook = _Recorder(
        f"HTTP/1.1 {code} Moved\r\nLocation: http://127.0.0.1:{target.port}/elsewhere\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    target.start()
    hook.start()
    try:
        assert post_json(f"http://127.0.0.1:{hook.port}/hook", {"a": 1}, timeout=2) is False
        time.sleep(0.2)
    finally:
        for srv in (hook, target):
            srv.done.set()
            srv.join(2)
            srv.sock.close()
    assert hook.requests == [b"POST /hook HTTP/1.1"]
    assert target.requests == []
    assert any(
        r.getMessage() == "webhook answered a redirect, not followed" for r in caplog.records
    )


def test_webhook_post_delivers_json_to_a_plain_server() -> None:
    hook = _Recorder(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    hook.start()
    try:
        assert post_json(f"http://127.0.0.1:{hook.port}/h?x=1", {"alert": "a"}, timeout=2)
    finally:
        hook.done.set()
        hook.join(2)
        hook.sock.close()
    assert hook.requests == [b"POST /h?x=1 HTTP/1.1"]
    assert [json.loads(b) for b in hook.bodies] == [{"alert": "a"}]
