"""`mtalens watch` on the C fast path: the metrics and alerts it feeds from each commit are the
same as on the pure-Python path (same log, same write windows, same partial last lines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mtalens.parsers import fastscan
from mtalens.pipeline.correlate import Batch
from mtalens.pipeline.fastpath import ArrowBatch, FastIngest
from mtalens.pipeline.ingest import LineCounts, LogIngestor
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import AlertKind, AlertRule, WatchConfig
from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent

RULES = (
    AlertRule(id="bounces", kind=AlertKind.BOUNCE_RATE, window=600, threshold=0.01, min_events=5),
    AlertRule(id="deferrals", kind=AlertKind.DEFERRAL_RATE, window=600, threshold=0.01,
              min_events=5),
    AlertRule(id="sasl", kind=AlertKind.SASL_FAILURES, window=600, threshold=2),
    AlertRule(id="dnsbl", kind=AlertKind.BLOCKLIST, window=600, threshold=1),
    AlertRule(id="delay", kind=AlertKind.QUEUE_DELAY_P90, window=600, threshold=0.5),
)  # fmt: skip

# metrics that measure the run itself (time, memory), not the log
_RUN_METRICS = ("process_", "mtalens_write_window", "mtalens_last_commit", "mtalens_lag_seconds")


def _log_lines(tmp: Path) -> list[bytes]:
    gen = tmp / "gen.log"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines",
                    "12000", "--out", str(gen), "--style", "rfc3164", "--seed", "7"],
                   check=True, capture_output=True)  # fmt: skip
    # the sample files add the line kinds the generator may not write (SASL failures, malformed)
    extra = b"".join(
        (ROOT / "sample_logs" / "postfix" / name).read_bytes()
        for name in ("problems.log", "bad-input.log", "mx1-rfc3164.log")
    )
    return gen.read_bytes().split(b"\n")[:-1] + extra.split(b"\n")[:-1]


def _watch(tmp: Path, lines: list[bytes], *, pure: bool, mp: pytest.MonkeyPatch) -> Watcher:
    """Append the lines in uneven pieces (each ending in a partial line), one window each."""
    mp.setenv("MTALENS_PURE_PYTHON", "1" if pure else "0")
    d = tmp / ("pure" if pure else "fast")
    d.mkdir()
    log = d / "mail.log"
    log.write_bytes(b"")
    w = Watcher(WatchConfig(db=str(d / "w.duckdb"), logs=(str(log),), timezone="UTC", year=2026,
                            rules=RULES))  # fmt: skip
    data = b"".join(line + b"\n" for line in lines)
    step, pos = 61_111, 0
    while pos < len(data):
        with log.open("ab") as fh:
            fh.write(data[pos : pos + step])
        pos += step
        w.window()
    w.window(final=True)
    assert w.ingestor is not None
    assert isinstance(w.ingestor._fast_path, FastIngest) is not pure  # the path under test
    w.close()
    return w


def _log_metrics(w: Watcher) -> list[str]:
    return [
        line.replace(w.config.logs[0], "LOG")  # the two runs tail files in different dirs
        for line in w.metrics.render().splitlines()
        if not any(name in line for name in _RUN_METRICS)
    ]


def test_metrics_and_alerts_match_the_pure_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need(fastscan.AVAILABLE, "mtalens.parsers._pfscan built (`pip install -e .` compiles it)")
    lines = _log_lines(tmp_path)
    fast = _watch(tmp_path, lines, pure=False, mp=monkeypatch)
    pure = _watch(tmp_path, lines, pure=True, mp=monkeypatch)

    assert _log_metrics(fast) == _log_metrics(pure)
    read = fast.metrics.value(
        "mtalens_lines_total", source=fast.config.logs[0], outcome="read", mta="postfix"
    )
    assert read == len(lines)
    assert fast.metrics.value("postfix_smtpd_sasl_authentication_failures_total") > 0
    assert any(line.startswith("postfix_smtp_deferred_messages_total ")
               for line in _log_metrics(fast))  # fmt: skip

    def alerts(w: Watcher) -> dict[Any, Any]:
        return {k: {f: v[f] for f in ("value", "state") if f in v}
                for k, v in w.alerts.firing.items()}  # fmt: skip

    assert alerts(fast) == alerts(pure)
    assert fast.alerts.fired_total == pure.alerts.fired_total > 0


def test_fast_hook_batch_rows_equal_the_pure_rows() -> None:
    """A hook that reads the tuple lists gets the pure path's rows, in the same order."""
    need(fastscan.AVAILABLE, "mtalens.parsers._pfscan built (`pip install -e .` compiles it)")
    path = ROOT / "sample_logs" / "postfix" / "problems.log"

    def rows(fast: bool) -> dict[str, list[tuple[Any, ...]]]:
        got: dict[str, list[tuple[Any, ...]]] = {"d": [], "r": [], "a": [], "e": []}

        def hook(batch: Batch, key: str, counts: LineCounts) -> None:
            assert isinstance(batch, ArrowBatch) is fast
            got["d"] += batch.deliveries
            got["r"] += batch.rejections
            got["a"] += batch.auth_failures
            got["e"] += batch.events

        ing = LogIngestor(Store.memory(), year=2026, fast=fast, batch_lines=37)
        ing.on_commit = hook
        ing.run([path])
        assert isinstance(ing._fast_path, FastIngest) is fast
        return got

    fast, pure = rows(True), rows(False)
    assert all(fast[k] for k in ("d", "r", "a"))  # the sample has each kind
    # the scanner's rows sort by offset; the pure path's events come in line order too
    assert fast == pure
