"""Bounce decoding off the daemon's tailing path (issue 12 item 2): one hostile message must not
stall the logs.

``watch`` hands each Maildir message to a worker process and goes on tailing; finished decodes
are stored in a later write window, and only then is the message moved to ``cur/`` (the same
exactly-once rule as before: a message leaves ``new/`` only once stored or quarantined; one
decoded but not stored when the daemon dies is decoded again and recognised by its content
hash).

Why processes, not threads: the decoders are Python and ``re``, which hold the GIL while they
run, so a slow message in a thread would still slow the tailing thread; and the per-message time
budget (``pipeline/bounces.py``) interrupts a decoder with SIGALRM, which only works in a main
thread, which each worker has. The workers are started with ``spawn`` (the daemon has threads:
forking it is unsafe) and import only the decoders.

Bounds and back-pressure: at most ``max_in_flight`` messages (and ``max_in_flight_bytes`` of
them) are with the workers; the watcher submits more only when earlier ones are done, so a flood
of bounces waits in ``new/``, not in memory. A worker that dies (killed, out of memory, a crash
in C) fails the messages it had: each is tried again alone, and one that kills a worker
``CRASH_ATTEMPTS`` times is quarantined (``bug:worker_died``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Final

from mtalens.parsers.bounces import ParseError
from mtalens.pipeline import bounces
from mtalens.pipeline.mailbox import MailboxMessage

log = logging.getLogger("mtalens.decode")

MAX_IN_FLIGHT: Final = 64
MAX_IN_FLIGHT_BYTES: Final = 64 << 20
CRASH_ATTEMPTS: Final = 2


def _worker_init(level: int) -> None:
    """In each worker: log as the daemon does (JSON lines on the same stderr)."""
    from mtalens.pipeline.jsonlog import setup_json_logging

    setup_json_logging(level)


def _decode(msg: MailboxMessage) -> bounces.Decoded:
    """In the worker: decode within the budget, send back everything but the raw bytes (the
    watcher has them)."""
    d = bounces.decode_message(msg)
    return replace(d, message=replace(msg, raw=b""))


@dataclass(slots=True)
class _Job:
    msg: MailboxMessage
    future: Future[bounces.Decoded]


class DecodePool:
    """Messages in, ``Decoded`` out, in worker processes; ``done()`` hands back what finished."""

    def __init__(
        self,
        *,
        workers: int = 1,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self._on_done = on_done
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: dict[str, _Job] = {}  # by source path
        self._crashes: dict[str, int] = {}  # source -> worker deaths while it was in flight
        self._lock = threading.Lock()
        self.restarts = 0

    # -- submitting -----------------------------------------------------------------------------

    def in_flight(self, source: str) -> bool:
        return source in self._jobs

    def room(self, source: str, size: int) -> bool:
        """Whether this message (``size`` bytes) may go now (back-pressure). A message that was
        with a worker that died goes alone; a first message always fits."""
        if not self._jobs:
            return True
        if source in self._crashes or any(s in self._crashes for s in self._jobs):
            return False
        used = sum(len(j.msg.raw) for j in self._jobs.values())
        return len(self._jobs) < self.max_in_flight and used + size <= self.max_in_flight_bytes

    def submit(self, msg: MailboxMessage) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(logging.getLogger().getEffectiveLevel(),),
            )
        try:
            future = self._pool.submit(_decode, msg)
        except BrokenProcessPool:
            self._restart()
            assert self._pool is not None
            future = self._pool.submit(_decode, msg)
        self._jobs[msg.source] = _Job(msg, future)
        if self._on_done is not None:
            on_done = self._on_done
            future.add_done_callback(lambda _f: on_done())

    # -- collecting -----------------------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self._jobs)

    def ready(self) -> bool:
        return any(j.future.done() for j in self._jobs.values())

    def done(self, *, wait: bool = False) -> list[bounces.Decoded]:
        """The decodes that finished (all of them, waiting, with ``wait``), with their raw
        bytes back. Messages lost with a dead worker are dropped from the pool (their files are
        still in ``new/``: the watcher submits them again, alone), or after ``CRASH_ATTEMPTS``
        come back quarantined as ``bug:worker_died``."""
        out: list[bounces.Decoded] = []
        broken = False
        for source, job in list(self._jobs.items()):
            if wait:
                concurrent.futures.wait([job.future])
            if not job.future.done():
                continue
            del self._jobs[source]
            try:
                d = job.future.result()
            except BrokenProcessPool:
                broken = True
                n = self._crashes.get(source, 0) + 1
                self._crashes[source] = n
                log.error("a decoding worker died", extra={"source": source, "deaths": n})
                if n >= CRASH_ATTEMPTS:
                    self._crashes.pop(source, None)
                    err = ParseError("bug", f"the decoding worker died {n} times on it")
                    out.append(bounces.Decoded(job.msg, bounces.content_hash(job.msg.raw),
                                               error=err, reason="bug:worker_died"))  # fmt: skip
                continue
            except Exception as exc:  # pickling trouble and the like: a bug, quarantined
                log.exception("decoding worker failed", extra={"source": source})
                err = ParseError("bug", repr(exc))
                out.append(bounces.Decoded(job.msg, bounces.content_hash(job.msg.raw), error=err,
                                           reason=f"bug:{type(exc).__name__}"))  # fmt: skip
                continue
            self._crashes.pop(source, None)
            out.append(replace(d, message=job.msg))
        if broken:
            self._restart()
        return out

    def forget(self, source: str) -> None:
        """The file went away (moved or deleted by someone else): stop tracking it."""
        self._crashes.pop(source, None)

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self.restarts += 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._jobs.clear()
