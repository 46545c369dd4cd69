"""Benchmark: the webhook receiver of `mtalens watch` (issue 13 target: 2,000 events/s with p99
under 200 ms on 127.0.0.1), next to a bare HTTP server timed in the same run.

    .venv/bin/python bench/bench_webhooks.py                # 2,000 events/s offered, batches of 50
    .venv/bin/python bench/bench_webhooks.py --rate 0       # as fast as it answers

Clients POST SendGrid Event Webhook batches (the shape of tests/test_events.py, unique event ids),
each signed as SendGrid signs them (ECDSA P-256 over timestamp + body, a key made here), from
``--clients`` threads for ``--seconds``; every request's latency is from sending to its answer,
which mtalens gives only after the events are committed. Then the same load against Python's
``http.server`` answering 200 at once (no authentication, nothing stored): the floor of the
client and the loopback.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def batch(start: int, n: int, now: int) -> bytes:
    events = [
        {"email": f"user{i}@d{i % 997}.example", "timestamp": now, "event": "bounce",
         "sg_event_id": f"bench-{i}", "sg_message_id": f"m{i}", "type": "bounce",
         "status": "5.1.1", "reason": "550 5.1.1 The email account does not exist"}
        for i in range(start, start + n)
    ]  # fmt: skip
    return json.dumps(events).encode()


def load(port: int, key: ec.EllipticCurvePrivateKey | None, *, seconds: float, clients: int,
         size: int, rate: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """``rate``: events/s offered in all (0: as fast as the answers come)."""
    gap = clients * size / rate if rate else 0.0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    def client() -> None:
        next_at = time.monotonic()
        while time.monotonic() < stop:
            if gap:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += gap
            with lock:
                k = next(counter)
            now = int(time.time())
            body = batch(k * size, size, now)
            headers = {"Content-Type": "application/json"}
            if key is not None:
                sig = key.sign(str(now).encode() + body, ec.ECDSA(hashes.SHA256()))
                headers["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(sig).decode()
                headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(now)
            t0 = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                c.request("POST", "/events/sendgrid", body, headers)
                status = c.getresponse().status
            except OSError:
                status = 0
            finally:
                c.close()
            with lock:
                latencies.append(time.monotonic() - t0)
                statuses[status] = statuses.get(status, 0) + 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    ok = statuses.get(200, 0)
    lat = sorted(latencies)
    return {
        "requests": len(lat), "ok": ok, "statuses": statuses,
        "events_per_s": ok * size / elapsed,
        "p50_ms": 1000 * statistics.median(lat) if lat else 0.0,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0,
    }  # fmt: skip


def bare_server() -> tuple[ThreadingHTTPServer, int]:
    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            return

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, int(srv.server_address[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=50, help="events per POST (SendGrid batches)")
    ap.add_argument("--commit-interval", type=float, default=0.05)
    ap.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="events/s offered (the target's 2,000); 0: as fast as answered",
    )
    args = ap.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        conf = tmp / "mtalens.toml"
        conf.write_text(f'[webhooks]\nsendgrid_public_key = "{public}"\n')
        conf.chmod(0o600)
        log = tmp / "mail.log"
        log.touch()
        port = free_port()
        err = open(tmp / "watch.err", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [*CLI, "watch", "--config", str(conf), "--db", str(tmp / "w.duckdb"), "--log",
             str(log), "--webhook-port", str(port), "--commit-interval",
             str(args.commit_interval), "--poll-interval", "0.5"],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while b"webhooks listening" not in (tmp / "watch.err").read_bytes():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit((tmp / "watch.err").read_text())
                time.sleep(0.1)
            got = load(
                port,
                key,
                seconds=args.seconds,
                clients=args.clients,
                size=args.batch,
                rate=args.rate,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            err.close()
        # the daemon is the only child waited for: its CPU time, start-up and shutdown included
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        got["cpu_s"] = used.ru_utime + used.ru_stime
        srv, bare_port = bare_server()
        floor = load(bare_port, None, seconds=min(args.seconds, 5.0), clients=args.clients,
                     size=args.batch, rate=args.rate)  # fmt: skip
        srv.shutdown()
    load1, load5, _ = os.getloadavg()
    offered = f"{args.rate:,.0f} events/s offered" if args.rate else "as fast as answered"
    print(f"{args.clients} clients, {args.batch} events per POST, {offered}, commit interval "
          f"{args.commit_interval} s, load average {load1:.1f}/{load5:.1f}")  # fmt: skip
    print(f"{'':34s} {'events/s':>10s} {'requests':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'cpu s':>6s}  statuses")  # fmt: skip
    for name, r in (("mtalens watch --webhook-port", got), ("http.server, answers at once", floor)):
        cpu = f"{r['cpu_s']:6.1f}" if "cpu_s" in r else f"{'':6s}"
        print(f"{name:34s} {r['events_per_s']:10,.0f} {r['requests']:9,d} {r['p50_ms']:8.1f} "
              f"{r['p99_ms']:8.1f} {cpu}  {r['statuses']}")  # fmt: skip


if __name__ == "__main__":
    main()
