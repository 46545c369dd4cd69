"""Issue 12 item 2 and its "done when": the daemon keeps ingesting its log while a hostile bounce
(decoded in a worker process, pipeline/decode_pool.py), 2,000 idle metrics connections and a
trickling webhook all hit it at once. Everything real: the daemon is a process, the peers are
sockets on 127.0.0.1, the bounce is a file delivered into a Maildir."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from mtalens.pipeline.store import Store, StoreError
from tests.lab.dns_server import free_port
from tests.test_watch_peers import CLI, Trickler

SASL = (
    "Mar  2 06:{m:02d}:{s:02d} mx1 postfix/smtpd[301]: warning: unknown[198.51.100.{ip}]: "
    "SASL LOGIN authentication failed: UGFzc3dvcmQ6\n"
)
DSN_HEAD = (
    b"From: MAILER-DAEMON@mx.example.org\nTo: sender@example.com\nSubject: Undelivered Mail\n"
    b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
    b"boundary=B\n\n--B\nContent-Type: text/plain\n\nhi\n--B\n"
    b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
    b"Final-Recipient: rfc822; user@example.net\nAction: failed\nStatus: 5.1.1\n"
    b"Diagnostic-Code: smtp; 550 x\n"
)


def hostile_bounce(mb: int) -> bytes:
    """A DSN whose Diagnostic-Code goes on for ``mb`` MB of continuation lines: the slowest
    shape of bench/bench_adversarial.py per MB, seconds to decode at this size."""
    return DSN_HEAD + b" x y\n" * (mb * (1 << 20) // 5) + b"\n--B--\n"


def auth_failures(db: Path) -> int | None:
    try:
        with Store.open(db, read_only=True, lock_wait=0.05) as store:
            row = store.con.execute("SELECT count(*) FROM auth_failures").fetchone()
    except StoreError:
        return None  # a write window holds it: ask again
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_the_log_keeps_flowing_under_a_hostile_bounce_idle_clients_and_a_slow_webhook(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:  # this test's own 2,000 client sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    log, db, err = tmp_path / "mail.log", tmp_path / "w.duckdb", tmp_path / "watch.err"
    md = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True)
    log.write_text(SASL.format(m=0, s=0, ip=0))
    port = free_port()
    with Trickler(every=0.5) as hook:
        conf = tmp_path / "mtalens.toml"
        conf.write_text(
            f'[alerts]\nwebhook = "http://127.0.0.1:{hook.port}/hook"\n'
            '[[alerts.rule]]\nid = "sasl"\nkind = "sasl_failures"\nwindow = 600\nthreshold = 1\n'
        )
        with open(err, "wb") as fh:
            proc = subprocess.Popen(
                [*CLI, "watch", "--config", str(conf), "--db", str(db), "--log", str(log),
                 "--maildir", str(md), "--timezone", "UTC", "--metrics-port", str(port),
                 "--commit-interval", "0.1", "--poll-interval", "0.2"],
                stdout=subprocess.DEVNULL, stderr=fh,
            )  # fmt: skip
        idle: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 30
            while auth_failures(db) != 1:
                assert time.monotonic() < deadline, "the daemon did not start"
                time.sleep(0.1)
            # the attack, all at once: 2,000 idle metrics clients...
            for _ in range(2000):
                with contextlib.suppress(OSError):
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            # ... a bounce that takes seconds to decode, delivered as an MTA does (tmp/, new/)
            bounce = hostile_bounce(48)
            (md / "tmp" / "1.M1P1.mx").write_bytes(bounce)
            os.rename(md / "tmp" / "1.M1P1.mx", md / "new" / "1.M1P1.mx")
            # ... and every log line a new SASL alert for the trickling webhook
            written: list[float] = []
            committed: dict[int, float] = {}
            bounce_in_new_at_commit: list[bool] = []
            for i in range(1, 31):
                with log.open("a") as fh:
                    fh.write(SASL.format(m=1, s=i, ip=i))
                written.append(time.monotonic())
                # look at the store as a reader would, not so often that the daemon waits
                time.sleep(0.2)
                n = auth_failures(db)
                if n is not None:
                    for k in range(1, n):  # line k (1-based after the first) is in
                        if k not in committed:
                            committed[k] = time.monotonic()
                            bounce_in_new_at_commit.append((md / "new" / "1.M1P1.mx").exists())
            deadline = time.monotonic() + 30
            while len(committed) < 30:
                assert time.monotonic() < deadline, f"only {len(committed)} of 30 lines stored"
                n = auth_failures(db)
                for k in range(1, (n or 1)):
                    committed.setdefault(k, time.monotonic())
                time.sleep(0.05)
            lags = [committed[k] - written[k - 1] for k in range(1, 31)]
            print(f"\nlog line lag under attack: median {statistics.median(lags):.2f} s, "
                  f"max {max(lags):.2f} s, bounce still decoding at "
                  f"{sum(bounce_in_new_at_commit)} of {len(bounce_in_new_at_commit)} commits")  # fmt: skip
            # the bounce was still with its worker while log lines were committed
            assert sum(bounce_in_new_at_commit) >= 3
            assert statistics.median(lags) < 1.0 and max(lags) < 2.5, lags
            # the bounce is stored (or over its time budget: quarantined), then moved
            deadline = time.monotonic() + 120
            while (md / "new" / "1.M1P1.mx").exists():
                assert time.monotonic() < deadline, "the bounce never left new/"
                time.sleep(0.2)
            assert proc.poll() is None, "the daemon died"
        finally:
            for c in idle:
                c.close()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        assert hook.accepted >= 1  # the webhook was posted to, slowly
    assert code == 0
    with Store.open(db, read_only=True) as store:
        stored = store.con.execute("SELECT count(*) FROM bounce_reports").fetchone()
        quarantined = store.con.execute(
            "SELECT reason FROM quarantine WHERE source_kind = 'mail'"
        ).fetchall()
    assert stored == (1,) or quarantined == [("time_budget",)]
    text = err.read_text()
    assert "Traceback" not in text
    assert all(json.loads(line) for line in text.splitlines() if line.strip())
