"""Issue 12 item 1: each message has a size and a time budget; past either it is quarantined
with a reason, and the scan goes on."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest

from mtalens.parsers.bounces import BounceReport
from mtalens.pipeline import bounces
from mtalens.pipeline.bounces import Budget, Decoded, decode_message, ingest
from mtalens.pipeline.mailbox import MailboxMessage
from mtalens.pipeline.store import Store

FIX = Path(__file__).parent / "fixtures" / "bounces"


def message(raw: bytes) -> MailboxMessage:
    return MailboxMessage(source="test.eml", index=1, offset=0, raw=raw)


def catastrophic(raw: bytes, *, max_bytes: int | None = None) -> BounceReport:
    # exponential backtracking: runs for hours unless interrupted
    re.match(r"(a+)+$", "a" * 64 + "b")
    raise AssertionError("not reached")


def test_a_message_over_the_size_budget_is_quarantined_unread() -> None:
    d = decode_message(message(b"From: a@example.org\n\n" + b"x" * 5000), Budget(max_bytes=1000))
    assert d.report is None and d.reason == "too_large"
    assert d.error is not None and "1000" in d.error.detail


def test_the_main_thread_is_interrupted_when_the_time_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bounces, "decode", catastrophic)
    before = signal.getsignal(signal.SIGALRM)
    t = time.monotonic()
    d = decode_message(message(b"From: a@example.org\n\nhi\n"), Budget(max_seconds=0.2))
    assert time.monotonic() - t < 3
    assert d.report is None and d.reason == "time_budget"
    # the handler and the timer are put back as they were
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_elsewhere_the_time_is_checked_when_decoding_returns() -> None:
    ticks = iter([0.0, 10.0])
    out: list[Decoded] = []
    raw = (FIX / "postfix-userunknown.eml").read_bytes()
    worker = threading.Thread(
        target=lambda: out.append(
            decode_message(message(raw), Budget(max_seconds=5), clock=lambda: next(ticks))
        )
    )
    worker.start()
    worker.join()
    (d,) = out
    assert d.report is None and d.reason == "time_budget"


def test_within_budget_the_report_is_kept() -> None:
    d = decode_message(message((FIX / "postfix-userunknown.eml").read_bytes()))
    assert d.report is not None and d.reason is None


def test_ingest_quarantines_an_oversized_message_with_its_reason_and_goes_on(
    tmp_path: Path,
) -> None:
    (tmp_path / "big.eml").write_bytes(b"From: a@example.org\n\n" + b"x" * 5000)
    (tmp_path / "ok.eml").write_bytes((FIX / "postfix-userunknown.eml").read_bytes())
    store = Store.memory()
    r = ingest(store, [tmp_path], budget=Budget(max_bytes=4000))
    assert (r.read, r.stored, r.quarantined) == (2, 1, 1)
    assert r.quarantine_reasons == {"too_large": 1}
    rows = store.con.execute("SELECT source, reason, octet_length(raw) FROM quarantine").fetchall()
    assert rows == [(str(tmp_path / "big.eml"), "too_large", 5021)]
