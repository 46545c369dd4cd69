"""The bounce decoding workers of `watch` (pipeline/decode_pool.py): the same results as decoding
in the daemon, back-pressure, and a worker that dies (killed here with SIGKILL, as the kernel's
OOM killer would) costs a retry, then a quarantine row, never the message or the pool."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from mtalens.pipeline import bounces
from mtalens.pipeline.decode_pool import CRASH_ATTEMPTS, DecodePool
from mtalens.pipeline.mailbox import MailboxMessage
from tests.test_watch_under_attack import hostile_bounce

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"


def message(path: Path | str, raw: bytes) -> MailboxMessage:
    return MailboxMessage(source=str(path), index=1, offset=0, raw=raw)


def test_workers_decode_exactly_as_the_daemon_does() -> None:
    msgs = [message(p, p.read_bytes()) for p in sorted(FIXTURES.glob("*.eml"))]
    assert len(msgs) > 20
    pool = DecodePool(workers=2)
    try:
        for m in msgs:
            pool.submit(m)
        got = {d.message.source: d for d in pool.done(wait=True)}
    finally:
        pool.close()
    assert set(got) == {m.source for m in msgs}
    for m in msgs:
        here = bounces.decode_message(m)
        there = got[m.source]
        assert there.message.raw == m.raw  # the raw bytes are the daemon's own again
        assert (there.report_hash, there.report, there.reason) == (
            here.report_hash, here.report, here.reason
        ), m.source  # fmt: skip
        if here.error is not None:
            assert there.error is not None
            assert (there.error.code, there.error.detail) == (here.error.code, here.error.detail)


def test_back_pressure_counts_messages_and_bytes() -> None:
    pool = DecodePool(max_in_flight=2, max_in_flight_bytes=1000)
    try:
        assert pool.room("a", 5000)  # a first message always goes, whatever its size
        pool.submit(message("a", b"x" * 600))
        assert not pool.room("b", 500)  # 1,100 bytes
        assert pool.room("b", 300)
        pool.submit(message("b", b"y" * 300))
        assert not pool.room("c", 1)  # two in flight
        assert pool.in_flight("a") and not pool.in_flight("c")
        assert len(pool.done(wait=True)) == 2
        assert not pool.busy() and pool.room("c", 1)
    finally:
        pool.close()


def _kill_worker(pool: DecodePool) -> None:
    deadline = time.monotonic() + 30
    while True:
        procs = dict(getattr(pool._pool, "_processes", None) or {})
        if procs:
            break
        assert time.monotonic() < deadline, "no worker process started"
        time.sleep(0.05)
    time.sleep(0.3)  # it has the message
    for pid in procs:
        os.kill(pid, signal.SIGKILL)


def test_a_message_with_a_dying_worker_is_retried_alone_then_quarantined() -> None:
    slow = message("/m/new/slow", hostile_bounce(24))  # seconds of decoding: killed meanwhile
    other = message("/m/new/other", (FIXTURES / "postfix-userunknown.eml").read_bytes())
    pool = DecodePool()
    try:
        pool.submit(slow)
        pool.submit(other)
        _kill_worker(pool)
        first = pool.done(wait=True)
        # both were with the dead worker: neither is stored yet, both stay for another try
        assert first == [] and not pool.busy()
        assert pool.restarts == 1
        assert pool.room(slow.source, len(slow.raw))  # alone...
        pool.submit(slow)
        assert not pool.room(other.source, 1)  # ... nothing goes next to a suspect
        for attempt in range(2, CRASH_ATTEMPTS + 1):
            _kill_worker(pool)
            out = pool.done(wait=True)
            if attempt < CRASH_ATTEMPTS:
                assert out == []
                pool.submit(slow)
        assert [(d.message.source, d.reason, d.report) for d in out] == [
            (slow.source, "bug:worker_died", None)
        ]
        assert out[0].message.raw == slow.raw  # quarantined with its bytes
        # the other message goes alone (it was a suspect too), then the pool is back to normal
        pool.submit(other)
        [good] = pool.done(wait=True)
        assert good.report is not None and good.reason is None
        assert pool.room("next", 1) and pool.room("after", 1)
    finally:
        pool.close()
