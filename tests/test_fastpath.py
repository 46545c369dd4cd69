"""The fast ingest path (parsers/_pfscan.c + pipeline/fastpath.py) against the pure-Python one.

The contract is a differential one: whatever the input (sample logs, generated logs of several
seeds, styles and zones, mutated lines, random bytes, any chunking), the store the fast path
writes equals, table by table and row by row, the store the pure-Python path writes. Plus: the
fast path really runs when the extension is built, and mtalens works when it is not.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtalens.parsers import fastscan
from mtalens.pipeline import fastpath
from mtalens.pipeline.ingest import Checkpoint, LogIngestor
from mtalens.pipeline.store import Store
from tests.conftest import need
from tests.test_watch import SEQ_ORDER

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_logs" / "postfix"
GENERATOR = ROOT / "bench" / "gen_postfix_logs.py"
FIXED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

TABLES = (
    "delivery_log",
    "message_log",
    "rejection_log",
    "auth_failure_log",
    "event_log",
    "quarantine",
    "checkpoints",
)


@pytest.fixture(autouse=True)
def _extension_built() -> None:
    need(fastscan.AVAILABLE, "mtalens.parsers._pfscan built (`pip install -e .` compiles it)")


def _ingestor(store: Store, fast: bool, **kw: Any) -> LogIngestor:
    kw.setdefault("year", 2026)
    return LogIngestor(store, clock=lambda: FIXED, fast=fast, **kw)


def _snapshot(store: Store) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in TABLES:
        cols = SEQ_ORDER if t == "delivery_log" else "*"
        rows = store.con.execute(f"SELECT {cols} FROM {t}").fetchall()
        out[t] = sorted(rows, key=repr)
    out["line_accounting"] = sorted(
        store.con.execute(
            "SELECT source_key, outcome, rule, sum(lines) FROM line_accounting_log GROUP BY ALL"
        ).fetchall()
    )
    return out


def _assert_same(pure: dict[str, Any], fast: dict[str, Any]) -> None:
    for name in pure:
        a, b = pure[name], fast[name]
        if a != b:
            only_pure = [r for r in a if r not in b][:3]
            only_fast = [r for r in b if r not in a][:3]
            pytest.fail(
                f"{name}: {len(a)} rows pure, {len(b)} fast\n"
                f"  pure only: {only_pure}\n  fast only: {only_fast}"
            )


def _run_paths(paths: list[Path], fast: bool, **kw: Any) -> tuple[dict[str, Any], LogIngestor]:
    store = Store.memory()
    ing = _ingestor(store, fast, **kw)
    ing.run(paths)
    if fast:
        assert isinstance(ing._fast_path, fastpath.FastIngest), "the fast path did not run"
    else:
        assert ing._fast_path is False
    s = ing.stats
    assert s.read == s.stored + s.ignored + s.quarantined
    return _snapshot(store), ing


def _differ(paths: list[Path], **kw: Any) -> LogIngestor:
    pure, ing_pure = _run_paths(paths, False, **kw)
    fast, ing_fast = _run_paths(paths, True, **kw)
    _assert_same(pure, fast)
    assert ing_pure.stats.as_dict() == ing_fast.stats.as_dict()
    return ing_fast


def _consume_bytes(data: bytes, fast: bool, *, batch: int, tz: tzinfo = UTC) -> dict[str, Any]:
    store = Store.memory()
    ing = _ingestor(store, fast, tz=tz, batch_lines=batch)
    cp = Checkpoint(source_key="k", path="mem", fp_len=0, fp_hash="", offset=0,
                    clock_year=None, clock_month=None)  # fmt: skip
    from mtalens.parsers.syslog import SyslogClock

    ing._consume(io.BytesIO(data), cp, SyslogClock(year=2026, tz=tz), final=True)
    assert cp.offset == len(data)
    return _snapshot(store)


def _differ_bytes(data: bytes, *, batch: int = 200_000, tz: tzinfo = UTC) -> None:
    _assert_same(_consume_bytes(data, False, batch=batch, tz=tz),
                 _consume_bytes(data, True, batch=batch, tz=tz))  # fmt: skip


def _generate(tmp: Path, lines: int, seed: int, style: str, start: str | None = None) -> Path:
    out = tmp / f"gen-{seed}-{style}.log"
    argv = [sys.executable, str(GENERATOR), "--lines", str(lines), "--out", str(out),
            "--seed", str(seed), "--style", style]  # fmt: skip
    if start is not None:
        argv += ["--start", start]
    subprocess.run(argv, check=True, capture_output=True)
    return out


# --- sample logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.log")), ids=lambda p: p.name)
def test_sample_log_same_store(sample: Path) -> None:
    _differ([sample])


def test_all_samples_in_one_run_same_store() -> None:
    # one ingestor over every file: open messages carried across files, small batches
    _differ([SAMPLES], batch_lines=7)


# --- generated logs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "style"), [(1, "mixed"), (2, "rfc3164"), (3, "rfc3339"), (4, "mixed")]
)
def test_generated_log_same_store(tmp_path: Path, seed: int, style: str) -> None:
    log = _generate(tmp_path, 12_000, seed, style)
    ing = _differ([log], batch_lines=2_500)
    # most lines really went through the C scanner (else this test proves little)
    assert ing.stats.stored > 11_000


def test_generated_log_in_a_zone_across_dst_same_store(tmp_path: Path) -> None:
    # RFC 3164 stamps are local time: Europe/Berlin moves from +01:00 to +02:00 on
    # 2026-03-29 01:00 UTC; the generated log spans that hour
    log = _generate(tmp_path, 6_000, 5, "rfc3164", start="2026-03-29T00:40:00+00:00")
    _differ([log], tz=ZoneInfo("Europe/Berlin"), batch_lines=1_000)


def test_generated_log_partial_tail_then_rest(tmp_path: Path) -> None:
    """A tailer's view: consume(final=False) up to a half-written line, then the rest."""
    data = _generate(tmp_path, 3_000, 6, "mixed").read_bytes()
    cut = len(data) // 2 + 17  # mid-line
    results = []
    for fast in (False, True):
        store = Store.memory()
        ing = _ingestor(store, fast, batch_lines=500)
        from mtalens.parsers.syslog import SyslogClock

        cp = Checkpoint(source_key="k", path="mem", fp_len=0, fp_hash="", offset=0,
                        clock_year=None, clock_month=None)  # fmt: skip
        clock = SyslogClock(year=2026, tz=UTC)
        ing.consume(io.BytesIO(data[:cut]), cp, clock, final=False)
        assert cp.offset == data.rfind(b"\n", 0, cut) + 1
        rest = io.BytesIO(data)
        rest.seek(cp.offset)
        ing.consume(rest, cp, clock, final=True)
        assert cp.offset == len(data)
        results.append(_snapshot(store))
    _assert_same(results[0], results[1])


def test_restart_reloads_open_messages_same_store(tmp_path: Path) -> None:
    """A second run (a new ingestor on the same store) continues the messages left open."""
    lines = _generate(tmp_path, 6_000, 7, "mixed").read_bytes().split(b"\n")
    first, second = tmp_path / "mail.log.1", tmp_path / "mail.log"
    first.write_bytes(b"\n".join(lines[:3_000]) + b"\n")
    second.write_bytes(b"\n".join(lines[3_000:]))
    snaps = []
    for fast in (False, True):
        store = Store.memory()
        _ingestor(store, fast, batch_lines=700).run([first])
        ing = _ingestor(store, fast, batch_lines=700)
        ing.run([second])
        assert isinstance(ing._fast_path, fastpath.FastIngest) == fast
        snaps.append(_snapshot(store))
    _assert_same(snaps[0], snaps[1])
    # messages created in the first run and removed in the second: the reload really happened
    (spanning,) = store.con.execute(
        "SELECT count(*) FROM message_log m JOIN checkpoints c USING (source_key)"
        " WHERE c.path LIKE '%.1' AND m.removed_at > (SELECT max(logged_at) FROM event_log e"
        " WHERE e.source_key = m.source_key)"
    ).fetchone()
    assert spanning > 0


# --- hand-made edge cases ------------------------------------------------------------------------

EDGES = b"""\
Dec 31 23:59:58 mx1 postfix/smtpd[1]: 3F2A41C0B7: client=a.example[192.0.2.1]:25, sasl_method=PLAIN, sasl_username=u
Dec 31 23:59:59.5 mx1 postfix/cleanup[2]: 3F2A41C0B7: message-id=<x@y>
Jan  1 00:00:00 mx1 postfix/qmgr[3]: 3F2A41C0B7: from=<a@b>, size=10, nrcpt=1 (queue active)
Dec 31 23:59:59 mx1 postfix/smtp[4]: 3F2A41C0B7: to=<c@d>, relay=mx.d[198.51.100.1]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=2.0.0, status=sent (250 ok)
Jan  1 00:00:01 mx1 postfix/qmgr[3]: 3F2A41C0B7: removed
Feb 29 10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0B8: removed
Feb 30 10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0B8: removed
Mar  1 25:00:00 mx1 postfix/qmgr[3]: 3F2A41C0B8: removed
Mar  1 10:00:60 mx1 postfix/qmgr[3]: 3F2A41C0B9: removed
Mar 1  10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0B9: removed
Mar +1 10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0B9: removed
Mar  1 10:00:00.
Mar  1 10:00:00
Mar  1 10:00:00 mx1
Mar  1 10:00:00 mx1 postfix/qmgr[x]: 3F2A41C0B9: removed
Mar  1 10:00:00 mx1 postfix/qmgr[3] 3F2A41C0B9: removed
Mar  1 10:00:00 mx1 dovecot[3]: imap-login: Login
2026-03-01T10:00:00+0000 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, orig_to=<g@h>, relay=none, delay=0.1, delays=0.1/0/0/0, dsn=4.4.1, status=deferred (connect to mx.f[203.0.113.9]:25: Connection refused)
2026-03-01T10:00:00.123Z mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, relay=mx.f[203.0.113.9]:25, conn_use=2, delay=5, delays=1/2/1/1, dsn=5.1.1, status=bounced (host mx.f[203.0.113.9] said: 550 5.1.1 <e@f>: unknown user (in reply to RCPT TO command))
2026-03-01T10:00:00.1234567+00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, relay=local, delay=5, delays=1/2, dsn=2.0.0, status=sent (delivered)
2026-03-01T10:00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, relay=local, delay=5, delays=1/2/3/4, dsn=2.0.0, status=sent (x) tail
2026-03-01T10:00:00+05:30 mx1 postfix/lmtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e>f@g>, relay=h[private/dovecot-lmtp], delay=5, delays=1/2/3/4, dsn=4.2.0, status=deferred (lost connection with h[private/dovecot-lmtp] while sending end of data)
2026-03-01T10:00:00-08:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, relay=h[1.2.3.4]:65536, delay=5, delays=1./.2/3/4, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X)
2026-03-01T10:00:00+00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, relay=h, delay=1..2, delays=1/2/3/4, dsn=2.0.0, status=sent
2026-03-01T10:00:00+00:00 mx1 postfix/qmgr[5]: 4Xk2Lm0Rz9z9sTj: from=<a>, size=1>, size=2, nrcpt=3 (queue active)
2026-03-01T10:00:00+00:00 mx1 postfix/qmgr[5]: 4Xk2Lm0Rz9z9sTj: from=<a>, size=999999999999999999, nrcpt=3
2026-03-01T10:00:00+00:00 mx1 postfix/qmgr[5]: 4Xk2Lm0Rz9z9sTj: from=<a@b>, status=expired, returned to sender
2026-03-01T10:00:00+00:00 mx1 postfix/cleanup[5]: 4Xk2Lm0Rz9z9sTj: message-id=  <>
2026-03-01T10:00:00+00:00 mx1 postfix/cleanup[5]: 4Xk2Lm0Rz9z9sTj: resent-message-id=<r@s>
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: NOQUEUE: reject: RCPT from x[192.0.2.9]:4455: 554 5.7.1 <a@b>: Relay access denied; from=<q@r> to=<a@b> proto=ESMTP helo=<x>
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: NOQUEUE: reject: CONNECT from [192.0.2.9]: 5.7.1 go away
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: NOQUEUE: milter-reject: DATA from unknown[192.0.2.9]: 4.7.1000 Try later, from=<> to=<a@b>, proto=SMTP, helo=<h>>: x
2026-03-01T10:00:00+00:00 mx1 postfix/postscreen[5]: NOQUEUE: reject: RCPT from [2001:db8::1]:4455: 550 5.7.1 Service unavailable; client [2001:db8::1] blocked using zen; from=<a>, to=<b>, proto=ESMTP, helo=<c>
2026-03-01T10:00:00+00:00 mx1 postfix/postscreen[5]: PASS NEW [ipv6:2001:db8::2]:25
2026-03-01T10:00:00+00:00 mx1 postfix/postscreen[5]: DNSBL rank 3 for [192.0.2.10]:5555
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: lost connection after DATA (0 bytes) from unknown[192.0.2.11]
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: timeout after END-OF-MESSAGE from x[192.0.2.11]:25
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: lost connection after AUTH from
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: disconnect from x[192.0.2.11] ehlo=1 quit=1 commands=2
2026-03-01T10:00:00+00:00 mx1 postfix/smtpd[5]: connect from [192.0.2.11]
2026-03-01T10:00:00+00:00 mx1 postfix-out/smtp[5]: Verified TLS connection established to mx.f[203.0.113.9]:25: TLSv1.3 with cipher X
2026-03-01T10:00:00+00:00 mx1 postfix/smtp[5]: connect to mx.f[203.0.113.9]:25: Connection timed out
2026-03-01T10:00:00+00:00 mx1 postfix/smtp[5]: connect to mx.f[203.0.113.9]:25
2026-03-01T10:00:00+00:00 mx1 postfix/bounce[5]: 4Xk2Lm0Rz9z9sTj: sender non-delivery notification: 4Xk2Lm0Rz9z9sTk
2026-03-01T10:00:00+00:00 mx1 postfix/pickup[5]: 4Xk2Lm0Rz9z9sTk: uid=0 from=<root>
2026-03-01T10:00:00+00:00 mx1 postfix/pickup[5]: 4Xk2Lm0Rz9z9sTm: uid=0
2026-03-01T10:00:00+00:00 mx1 postfix/dnsblog[5]: addr 192.0.2.1 listed by domain zen.spamhaus.org as 127.0.0.2
2026-03-01T10:00:00+00:00 mx1 postfix/dnsblog[5]: addr 192.0.2.1
<22>1 2026-03-01T10:00:00.003Z mx1 postfix/qmgr 123 - - 4Xk2Lm0Rz9z9sTj: removed
2026-03-01T10:00:00+00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<\xc3\xa9@f>, relay=local, delay=5, delays=1/2/3/4, dsn=2.0.0, status=sent (ok)
Mar  1 10:00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<\xff@f>, relay=local, delay=5, delays=1/2/3/4, dsn=2.0.0, status=sent (ok)
Mar  1 10:00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<\x00@f>, relay=local, delay=5, delays=1/2/3/4, dsn=2.0.0, status=sent (ok)\r
Jul  1 10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0BA: removed
Jan  1 10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0BA: removed\r
\r

Mar\xc2\xa01 10:00:00 mx1 postfix/qmgr[3]: 3F2A41C0BA: removed
Mar  1 10:00:00.\xd9\xa3 mx1 postfix/qmgr[3]: 3F2A41C0BA: removed
2026-03-01T10:00:00+00:00 mx1 postfix/smtp[5]: 4Xk2Lm0Rz9z9sTj: to=<e@f>, relay=local, delay=5, delays=1/2/3/4, dsn=2.0.0, status=sent (ok)"""


@pytest.mark.parametrize("batch", [1, 3, 1000])
@pytest.mark.parametrize("tz", [UTC, ZoneInfo("America/New_York")], ids=str)
def test_edge_lines_same_store(batch: int, tz: tzinfo) -> None:
    _differ_bytes(EDGES + b"x" * 70_000 + b"\n" + EDGES, batch=batch, tz=tz)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_line_logged_twice_same_store(batch: int) -> None:
    # the same client= line twice makes two message instances with one key; a later commit that
    # rewrites the key (here: stale eviction after a jump in time) must leave the same rows
    client = (b"Nov 28 09:01:11 mx1 postfix/submission/smtpd[2110]: 7D3E51E0C2: "
              b"client=laptop.example.net[198.51.100.23], sasl_method=PLAIN")  # fmt: skip
    later = b"Mar  1 10:00:59 mx1 postfix/qmgr[3]: 3F2A41C0B9: removed"
    _differ_bytes(b"\n".join([client, client, later]), batch=batch)


# --- mutated lines and random bytes --------------------------------------------------------------

REAL_LINES = [
    ln for p in sorted(SAMPLES.glob("*.log")) for ln in p.read_bytes().split(b"\n") if ln
] + EDGES.split(b"\n")


def _mutate(line: bytes, rnd: random.Random) -> bytes:
    b = bytearray(line)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(5)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:  # flip a byte to something structural
            b[min(i, len(b) - 1)] = rnd.choice(b" :<>[],;=()./-0123456789ZzT\r\x00\xff")
        elif op == 1:  # insert
            b[i:i] = rnd.choice([b" ", b":", b"<", b">", b", ", b"]", b"[", b"\xc3\xa9", b"9"])
        elif op == 2:  # delete a run
            del b[i : i + rnd.randint(1, 6)]
        elif op == 3:  # truncate
            del b[i:]
        else:  # duplicate a slice
            j = rnd.randrange(len(b) + 1)
            b[i:i] = b[min(i, j) : max(i, j)][:20]
    return bytes(b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(REAL_LINES),
            st.tuples(st.sampled_from(REAL_LINES), st.integers(0, 2**32)).map(
                lambda t: _mutate(t[0], random.Random(t[1]))
            ),
            st.binary(max_size=80),
        ),
        min_size=1,
        max_size=80,
    ),
    st.integers(1, 40),
)
def test_mutated_lines_and_random_bytes_same_store(lines: list[bytes], batch: int) -> None:
    _differ_bytes(b"\n".join(lines), batch=batch)


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=3000))
def test_random_bytes_same_store(data: bytes) -> None:
    _differ_bytes(data, batch=50)


# --- the scanner itself --------------------------------------------------------------------------


def test_scanner_stops_at_max_lines_and_keeps_partial_line() -> None:
    data = b"1\n2\n3\n4partial"  # digit-led: FALLBACK lines that do not touch the clock
    sc = fastscan.scan(data, 0, max_lines=2, final=False, clock_year=2026, clock_month=0,
                       tz_offset=None, base_offset=100)  # fmt: skip
    assert (sc.end, sc.lines) == (4, 2)
    sc = fastscan.scan(data, 4, max_lines=10, final=False, clock_year=2026, clock_month=0,
                       tz_offset=None, base_offset=100)  # fmt: skip
    assert (sc.end, sc.lines) == (6, 1)  # "partial" stays: no newline yet
    assert [op[0] for op in sc.ops] == [fastscan.OP_FALLBACK]
    sc = fastscan.scan(data, 6, max_lines=10, final=True, clock_year=2026, clock_month=0,
                       tz_offset=None, base_offset=100)  # fmt: skip
    assert (sc.end, sc.lines) == (len(data), 1)
    # a short line that may move the RFC 3164 clock stops the scan for Python to time it
    sc = fastscan.scan(b"Mar  1 10:00:00\nx\n", 0, max_lines=10, final=True, clock_year=2026,
                       clock_month=0, tz_offset=None, base_offset=0)  # fmt: skip
    assert (sc.lines, sc.stopped, sc.clock_month) == (1, True, 0)


def test_scanner_reads_a_delivery_into_columns() -> None:
    line = (b"2026-03-01T10:00:00.25+01:00 mx1 postfix-out/smtp[5]: 3F2A41C0B7: to=<a@b>, "
            b"relay=mx.b[192.0.2.1]:25, conn_use=3, delay=1.5, delays=0.1/0.2/0.3/0.9, "
            b"dsn=5.1.1, status=bounced (host mx.b[192.0.2.1] said: 550 5.1.1 no (in reply "
            b"to RCPT TO command))\n")  # fmt: skip
    sc = fastscan.scan(line, 0, max_lines=10, final=True, clock_year=2026, clock_month=0,
                       tz_offset=None, base_offset=7)  # fmt: skip
    assert sc.stored == 1
    (op,) = sc.ops
    ts = int((datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=UTC) - fastpath.EPOCH).total_seconds()
             * 1_000_000)  # fmt: skip
    assert op[:3] == (fastscan.OP_DELIVERY, ts, ("mx1", "3F2A41C0B7"))
    # what pipeline/correlate.py classify_delivery takes: status, dsn, reply code, detail,
    # remote host, relay host and the command the reply answered
    assert op[3:] == ("bounced", "5.1.1", 550, "host mx.b[192.0.2.1] said: 550 5.1.1 no (in "
                      "reply to RCPT TO command)", "mx.b", "mx.b", "RCPT TO")  # fmt: skip
    cols = dict(zip(fastscan.DELIVERY_FIELDS, sc.deliveries, strict=True))
    table = {k: fastpath._array(v).to_pylist()[0] for k, v in cols.items()}
    assert table["instance"] == "postfix-out"
    assert table["relay_port"] == 25 and table["conn_use"] == 3
    assert table["delay_transmit"] == 0.9 and table["smtp_stage"] == "RCPT TO"
    assert table["line_offset"] == 7


def test_scanner_keeps_the_instance_of_rejections_and_events() -> None:
    data = (b"2026-03-03T10:06:01+00:00 gw1 postfix-in/smtpd[4105]: NOQUEUE: reject: RCPT from "
            b"unknown[198.51.100.91]: 554 5.7.1 <v@x.example>: Relay access denied; "
            b"from=<s@y.example> to=<v@x.example> proto=ESMTP helo=<h>\n"
            b"2026-03-03T10:09:00+00:00 gw1 postfix-out/submission/smtpd[4211]: connect from "
            b"laptop.example.net[198.51.100.23]\n")  # fmt: skip
    sc = fastscan.scan(data, 0, max_lines=10, final=True, clock_year=2026, clock_month=0,
                       tz_offset=None, base_offset=0)  # fmt: skip
    assert sc.stored == 2 and not [op for op in sc.ops if op[0] == fastscan.OP_FALLBACK]
    rej = {k: fastpath._array(v).to_pylist() for k, v in zip(fastscan.REJECTION_FIELDS,
                                                              sc.rejections, strict=True)}  # fmt: skip
    ev = {k: fastpath._array(v).to_pylist() for k, v in zip(fastscan.EVENT_FIELDS, sc.events,
                                                             strict=True)}  # fmt: skip
    assert (rej["instance"], rej["service"], rej["action"]) == (["postfix-in"], ["smtpd"],
                                                                ["reject"])  # fmt: skip
    # the instance is everything before the last slash (parsers/syslog.py split_program)
    assert (ev["instance"], ev["service"], ev["kind"]) == (["postfix-out/submission"], ["smtpd"],
                                                           ["connect"])  # fmt: skip


# the multi-instance sample: rows of the scanner (NOQUEUE rejects, connect/TLS/postscreen events,
# the bounce notification) and of the Python fallback (SASL failures, a cleanup header reject)
MULTI_REJECTIONS = [
    ("postfix-in", "postscreen", "reject", "RCPT", None),
    ("postfix-in", "smtpd", "reject", "RCPT", None),
    ("postfix-in", "cleanup", "reject", "header", "8D9E0F1A05"),
]
MULTI_AUTH = [
    ("postfix-out/submission", "smtpd", "admin@example.net"),
    ("postfix-in", "smtpd", "info@example.net"),
]
MULTI_EVENTS = {
    ("postfix", "smtp"): 1,
    ("postfix-in", "postscreen"): 4,
    ("postfix-in", "smtpd"): 7,
    ("postfix-out", "bounce"): 1,
    ("postfix-out", "smtp"): 1,
    ("postfix-out", "smtpd"): 2,
    ("postfix-out/submission", "smtpd"): 6,
}


@pytest.mark.parametrize("fast", [False, True], ids=["pure", "fast"])
def test_multi_instance_rows_keep_their_instance(fast: bool) -> None:
    store = Store.memory()
    ing = _ingestor(store, fast)
    ing.run([SAMPLES / "multi-instance.log"])
    assert bool(ing._fast_path) is fast
    con = store.con
    assert (
        con.execute(
            "SELECT instance, service, action, stage, queue_id FROM rejections ORDER BY logged_at"
        ).fetchall()
        == MULTI_REJECTIONS
    )
    assert (
        con.execute(
            "SELECT instance, service, sasl_username FROM auth_failures ORDER BY logged_at"
        ).fetchall()
        == MULTI_AUTH
    )
    got = dict(((i, s), n) for i, s, n in con.execute(
        "SELECT instance, service, count(*) FROM events GROUP BY ALL").fetchall())  # fmt: skip
    assert got == MULTI_EVENTS
    assert con.execute("SELECT DISTINCT instance FROM deliveries ORDER BY 1").fetchall() == [
        ("postfix",),
        ("postfix-in",),
        ("postfix-out",),
    ]


def test_message_key_matches_the_pure_formula() -> None:
    from mtalens.pipeline.correlate import message_key

    rnd = random.Random(7)
    for _ in range(5000):
        us = rnd.randrange(0, 4_000_000_000_000_000)
        dt = fastpath.from_us(us)
        assert fastpath.key_of("h", "Q", us) == message_key("h", "Q", dt)


# --- without the extension -------------------------------------------------------------------------


def test_without_the_extension_mtalens_still_ingests(tmp_path: Path) -> None:
    """A build without a compiler: the import of mtalens.parsers._pfscan fails, the pure path runs."""
    code = """
import sys
class NoExt:
    def find_spec(self, name, path=None, target=None):
        if name == "mtalens.parsers._pfscan":
            raise ImportError("not built")
        return None
sys.meta_path.insert(0, NoExt())
from mtalens.parsers import fastscan
from mtalens.pipeline import fastpath
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
assert not fastscan.AVAILABLE and not fastpath.enabled()
ing = LogIngestor(Store.memory(), year=2026)
s = ing.run([sys.argv[1]])
assert ing._fast_path is False
print(s.read, s.stored, s.ignored, s.quarantined)
"""
    sample = SAMPLES / "mx1-rfc3164.log"
    out = subprocess.run([sys.executable, "-c", code, str(sample)], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout.split()  # fmt: skip
    read, stored, ignored, quarantined = map(int, out)
    assert read == sample.read_bytes().count(b"\n") + (
        0 if sample.read_bytes().endswith(b"\n") else 1
    )
    assert read == stored + ignored + quarantined and stored > 0
    # and it is the same store as the one the fast path builds
    _, ing = _run_paths([sample], True)
    assert (ing.stats.read, ing.stats.stored) == (read, stored)


def test_pure_python_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTALENS_PURE_PYTHON", "1")
    assert not fastpath.enabled()
    ing = LogIngestor(Store.memory(), year=2026)
    ing.run([SAMPLES / "mx1-rfc3164.log"])
    assert ing._fast_path is False
    monkeypatch.delenv("MTALENS_PURE_PYTHON")
    ing = LogIngestor(Store.memory(), year=2026)
    ing.run([SAMPLES / "mx1-rfc3164.log"])
    assert isinstance(ing._fast_path, fastpath.FastIngest)


def test_on_commit_hook_runs_on_the_fast_path() -> None:
    # `mtalens watch` sets the hook; tests/test_watch_fastpath.py compares what it sees
    ing = LogIngestor(Store.memory(), year=2026)
    seen: list[int] = []
    hook: Callable[..., None] = lambda batch, key, counts: seen.append(counts.read)  # noqa: E731
    ing.on_commit = hook
    ing.run([SAMPLES / "mx1-rfc3164.log"])
    assert isinstance(ing._fast_path, fastpath.FastIngest) and sum(seen) == ing.stats.read


# --- transactions spanning batches (pipeline/fastpath.py: FastIngest._submit) ---------------------


@pytest.mark.parametrize(("batch", "commit"), [(300, 1_000), (700, 10**9), (1, 2)])
def test_transactions_of_several_batches_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int, commit: int
) -> None:
    # tiny "row groups", so tables are inserted in slices between commits as on a big file
    monkeypatch.setattr(fastpath, "ROW_GROUP_ROWS", 64)
    lines = 3_000 if batch > 1 else 300
    log = _generate(tmp_path, lines, 8, "mixed")
    ing = _differ([log], batch_lines=batch, commit_lines=commit)
    fp = ing._fast_path
    assert isinstance(fp, fastpath.FastIngest)
    # one commit per `commit` lines (the last one at the end of the file), not one per batch
    per_txn = -(-commit // batch) * batch
    assert fp.commits == -(-ing.stats.read // per_txn)
    assert fp.commits < -(-ing.stats.read // batch)


@pytest.mark.parametrize("batch", [1, 2])
def test_line_logged_twice_across_transactions_same_store(batch: int) -> None:
    # instance A of a key committed by one transaction; instance B (same line again, same key)
    # touched by two batches of the next one: the pure path rewrites B's key, dropping A's row
    client = (b"Nov 28 09:01:11 mx1 postfix/smtpd[2110]: 7D3E51E0C2: "
              b"client=laptop.example.net[198.51.100.23], sasl_method=PLAIN")  # fmt: skip
    msgid = b"Nov 28 09:01:12 mx1 postfix/cleanup[2111]: 7D3E51E0C2: message-id=<m@x>"
    other = b"Nov 28 09:01:10 mx1 postfix/qmgr[3]: 3F2A41C0B9: removed"
    data = b"\n".join([other, client, client, msgid, msgid])
    for commit in (2, 3, 10):
        pure = _consume_bytes(data, False, batch=batch)
        store = Store.memory()
        ing = _ingestor(store, True, batch_lines=batch, commit_lines=commit)
        cp = Checkpoint(source_key="k", path="mem", fp_len=0, fp_hash="", offset=0,
                        clock_year=None, clock_month=None)  # fmt: skip
        from mtalens.parsers.syslog import SyslogClock

        ing._consume(io.BytesIO(data), cp, SyslogClock(year=2026, tz=UTC), final=True)
        _assert_same(pure, _snapshot(store))


def _fail_on_insert(monkeypatch: pytest.MonkeyPatch, table: str, nth: int) -> None:
    """Make the nth INSERT into ``table`` fail, as a full disk or a killed writer would."""
    real = fastpath._insert
    seen = [0]

    def insert(con: Any, name: str, columns: tuple[str, ...], tbl: Any) -> None:
        if name == table:
            seen[0] += 1
            if seen[0] == nth:
                raise OSError("disk full (injected)")
        real(con, name, columns, tbl)

    monkeypatch.setattr(fastpath, "_insert", insert)


@pytest.mark.parametrize("commit", [10**9, 1_000])
def test_a_failed_write_rolls_back_its_whole_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit: int
) -> None:
    """A transaction of several batches commits all of them with their checkpoint, or none:
    after a failure the store holds exactly the committed lines, and a rerun completes it to
    the same store as one clean run."""
    monkeypatch.setattr(fastpath, "ROW_GROUP_ROWS", 64)
    log = _generate(tmp_path, 4_000, 9, "mixed")
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        # a slice of events some batches into the file (tables go in slices of 64 rows here):
        # after batches were written into the open transaction, and after the first commit
        _fail_on_insert(monkeypatch, "event_log", 6)
        ing = _ingestor(store, True, batch_lines=400, commit_lines=commit)
        with pytest.raises(OSError, match="injected"):
            ing.run([log])
        monkeypatch.undo()
        fp = ing._fast_path
        assert isinstance(fp, fastpath.FastIngest)
        committed = store.con.execute(
            'SELECT coalesce(max("offset"), 0) FROM checkpoints'
        ).fetchone()
        assert committed is not None
        (lines_in_store,) = store.con.execute(
            "SELECT coalesce(sum(lines), 0) FROM line_accounting_log"
        ).fetchone() or (None,)
        (late,) = store.con.execute(
            "SELECT count(*) FROM event_log WHERE line_offset >= ?", [committed[0]]
        ).fetchone() or (None,)
        assert late == 0  # no row of an uncommitted batch
        assert lines_in_store == ing.stats.read  # what was counted is what was committed
        if commit == 10**9:
            assert fp.commits == 0 and committed[0] == 0 and lines_in_store == 0
        else:
            assert fp.commits >= 1 and 0 < committed[0] < log.stat().st_size
        # the connection is usable (no transaction left open) and a rerun finishes the file
        _ingestor(store, True, batch_lines=400, commit_lines=commit).run([log])
        resumed = _snapshot(store)
    clean, _ = _run_paths([log], False, batch_lines=400)
    for t in ("delivery_log", "message_log", "event_log", "rejection_log", "line_accounting"):
        assert resumed[t] == clean[t], t


def test_bulk_settings_are_restored_after_the_run(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        con = store.con
        con.execute("SET memory_limit = '2GiB'")
        con.execute("SET threads = 4")
        before = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        ).fetchone()
        seen: list[Any] = []
        ing = _ingestor(store, True)
        ing.on_commit = lambda *_: seen.append(
            con.execute(
                "SELECT current_setting('memory_limit'), current_setting('threads')"
            ).fetchone()
        )
        ing.run([SAMPLES / "mx1-rfc3164.log"])
        after = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        ).fetchone()
    assert seen and seen[0] != before  # the ingest ran under its own settings
    assert after == before
    with Store.open(tmp_path / "s.duckdb") as store:  # a default comes back as the default
        default = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
        _ingestor(store, True).run([SAMPLES / "problems.log"])
        assert store.con.execute("SELECT current_setting('memory_limit')").fetchone() == default


# bounce(8)'s notification line logged after the DSN it names was delivered and removed
# (postlogd(8) orders lines as they arrive; seen with the lab's Postfix 3.7 under load), then a
# notification naming a closed message that a client submitted (not a DSN: never linked)
LATE_NOTIFICATION = b"""\
2026-03-01T10:00:00.100000+00:00 mx1 postfix/smtpd[11]: 4A1B2C3D4E: client=a.example[192.0.2.7]
2026-03-01T10:00:00.200000+00:00 mx1 postfix/cleanup[12]: 4A1B2C3D4E: message-id=<m1@a.example>
2026-03-01T10:00:00.300000+00:00 mx1 postfix/qmgr[13]: 4A1B2C3D4E: from=<s@a.example>, size=900, nrcpt=1 (queue active)
2026-03-01T10:00:01.000000+00:00 mx1 postfix/smtp[14]: 4A1B2C3D4E: to=<u@b.example>, relay=mx.b.example[198.51.100.5]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=5.1.1, status=bounced (host mx.b.example[198.51.100.5] said: 550 5.1.1 <u@b.example>: Recipient address rejected: User unknown (in reply to RCPT TO command))
2026-03-01T10:00:01.100000+00:00 mx1 postfix/cleanup[12]: 5F6A7B8C9D: message-id=<d1@mx1>
2026-03-01T10:00:01.200000+00:00 mx1 postfix/qmgr[13]: 5F6A7B8C9D: from=<>, size=2900, nrcpt=1 (queue active)
2026-03-01T10:00:01.300000+00:00 mx1 postfix/local[15]: 5F6A7B8C9D: to=<s@a.example>, relay=local, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)
2026-03-01T10:00:01.400000+00:00 mx1 postfix/qmgr[13]: 5F6A7B8C9D: removed
2026-03-01T10:00:01.500000+00:00 mx1 postfix/bounce[16]: 4A1B2C3D4E: sender non-delivery notification: 5F6A7B8C9D
2026-03-01T10:00:01.600000+00:00 mx1 postfix/qmgr[13]: 4A1B2C3D4E: removed
2026-03-01T10:00:02.000000+00:00 mx1 postfix/smtpd[11]: 6E7F8A9B0C: client=c.example[192.0.2.8]
2026-03-01T10:00:02.100000+00:00 mx1 postfix/qmgr[13]: 6E7F8A9B0C: from=<>, size=500, nrcpt=1 (queue active)
2026-03-01T10:00:02.200000+00:00 mx1 postfix/local[15]: 6E7F8A9B0C: to=<s@a.example>, relay=local, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)
2026-03-01T10:00:02.300000+00:00 mx1 postfix/qmgr[13]: 6E7F8A9B0C: removed
2026-03-01T10:00:02.400000+00:00 mx1 postfix/bounce[16]: 4A1B2C3D4E: sender delay notification: 6E7F8A9B0C
"""


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_notification_logged_after_its_dsn_was_removed(batch: int) -> None:
    pure = _consume_bytes(LATE_NOTIFICATION, False, batch=batch)
    fast = _consume_bytes(LATE_NOTIFICATION, True, batch=batch)
    _assert_same(pure, fast)
    store = Store.memory()
    ing = _ingestor(store, True, batch_lines=batch)
    cp = Checkpoint(source_key="k", path="mem", fp_len=0, fp_hash="", offset=0,
                    clock_year=None, clock_month=None)  # fmt: skip
    from mtalens.parsers.syslog import SyslogClock

    ing._consume(io.BytesIO(LATE_NOTIFICATION), cp, SyslogClock(year=2026, tz=UTC), final=True)
    rows = store.con.execute(
        "SELECT m.queue_id, m.origin, m.notification_kind, o.queue_id FROM messages m"
        " LEFT JOIN messages o ON o.message_key = m.bounce_of_key ORDER BY m.queue_id"
    ).fetchall()
    assert rows == [
        ("4A1B2C3D4E", "smtpd", None, None),
        ("5F6A7B8C9D", "bounce", "non-delivery", "4A1B2C3D4E"),  # linked although removed
        ("6E7F8A9B0C", "smtpd", None, None),  # a client's message is never a DSN
    ]
