"""Property tests: the parsers are total, and the accounting invariant holds on any bytes."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtalens.parsers import postfix as pf
from mtalens.parsers.errors import ParseError
from mtalens.parsers.syslog import SyslogClock, parse_envelope
from mtalens.pipeline.ingest import Checkpoint, LogIngestor
from mtalens.pipeline.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
REAL_LINES = [
    ln for p in sorted(SAMPLES.glob("*.log")) for ln in p.read_bytes().split(b"\n") if ln.strip()
]
SERVICES = ["smtp", "smtpd", "qmgr", "cleanup", "pickup", "bounce", "postscreen", "local", "lmtp",
            "error", "virtual", "pipe", "postsuper", "dnsblog", "anvil", "whatever"]  # fmt: skip


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(REAL_LINES)).decode("utf-8", "replace")
    cut = draw(st.integers(0, len(base)))
    insert = draw(st.text(max_size=20))
    keep = draw(st.integers(0, len(base)))
    return base[:cut] + insert + base[keep:]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), mutated_lines()))
def test_envelope_and_message_parsers_are_total(line: str) -> None:
    clock = SyslogClock(year=2026, tz=UTC)
    try:
        env = parse_envelope(line, clock)
    except ParseError:
        return
    for service in SERVICES:
        with contextlib.suppress(ParseError):
            pf.parse_message(service, env.text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SERVICES), st.one_of(st.text(max_size=400), mutated_lines()))
def test_message_parser_is_total_on_raw_text(service: str, text: str) -> None:
    try:
        rec = pf.parse_message(service, text)
    except ParseError:
        return
    assert rec is not None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.one_of(st.sampled_from(REAL_LINES), st.binary(max_size=120)), max_size=60),
    st.integers(1, 50),
)
def test_accounting_adds_up_on_any_bytes(chunks: list[bytes], batch: int) -> None:
    data = b"\n".join(chunks)
    store = Store.memory()
    ing = LogIngestor(store, tz=UTC, year=2026, batch_lines=batch,
                      clock=lambda: datetime(2026, 11, 29, tzinfo=UTC))  # fmt: skip
    cp = Checkpoint(source_key="k", path="mem", fp_len=0, fp_hash="", offset=0,
                    clock_year=None, clock_month=None)  # fmt: skip
    ing._consume(io.BytesIO(data), cp, SyslogClock(year=2026, tz=UTC), final=True)
    s = ing.stats
    expected_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert s.read == expected_lines
    assert s.read == s.stored + s.ignored + s.quarantined
    stored = store.con.execute("SELECT coalesce(sum(lines), 0) FROM line_accounting_log").fetchone()
    assert stored == (s.read,)
    assert cp.offset == len(data)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_chunking_does_not_change_lines_or_offsets(cuts: list[int]) -> None:
    data = (SAMPLES / "mx1-rfc3164.log").read_bytes()

    class Chunky(io.RawIOBase):
        def __init__(self) -> None:
            self.pos = 0
            self.i = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            size = cuts[self.i % len(cuts)]
            self.i += 1
            out = data[self.pos : self.pos + size]
            self.pos += len(out)
            return out

    def run(fh: io.RawIOBase | io.BytesIO) -> list[tuple[object, ...]]:
        store = Store.memory()
        ing = LogIngestor(
            store, tz=UTC, year=2026, clock=lambda: datetime(2026, 11, 29, tzinfo=UTC)
        )
        cp = Checkpoint(source_key="k", path="mem", fp_len=0, fp_hash="", offset=0,
                        clock_year=None, clock_month=None)  # fmt: skip
        ing._consume(fh, cp, SyslogClock(year=2026, tz=UTC), final=True)  # type: ignore[arg-type]
        return store.con.execute(
            "SELECT line_offset, recipient, status FROM delivery_log ORDER BY line_offset"
        ).fetchall()

    assert run(Chunky()) == run(io.BytesIO(data))
