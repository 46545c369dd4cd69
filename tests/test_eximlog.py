"""Line-level facts of parsers/eximlog.py met in real Exim 4.96 output (tests/test_e2e_exim.py).

Each case is a line the real daemon wrote in the lab (tests/lab/exim_lab.py); what the line
means is Exim's (spec chapter "Log files"), what it must become is mtalens' accounting rule:
stored, ignored with a named rule, or quarantined only when it is Exim's and malformed.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from mtalens.parsers import eximlog, formats
from mtalens.parsers import postfix as pf
from mtalens.parsers.lines import Malformed, Parsed, Skipped
from mtalens.parsers.syslog import SyslogClock

CLOCK = SyslogClock(year=2026)


def test_continuation_line_of_a_multi_line_entry_is_ignored() -> None:
    # Exim writes a message with an embedded newline as it is: the daemon's start-up warning
    # without a TLS certificate is two lines, the second indented and without a timestamp.
    first = (
        b"2026-12-04 18:40:38 Warning: No server certificate defined; will use a selfsigned one."
    )
    second = b" Suggested action: either install a certificate or change tls_advertise_hosts option"
    assert isinstance(eximlog.parse_line(first, CLOCK), Skipped)
    got = eximlog.parse_line(second, CLOCK)
    assert got == Skipped("exim-continuation")
    # a tab-indented continuation the same; a line that is neither stays malformed
    assert eximlog.parse_line(b"\tmore text", CLOCK) == Skipped("exim-continuation")
    assert isinstance(eximlog.parse_line(b"Suggested action: no stamp", CLOCK), Malformed)


def test_retry_time_not_reached_is_a_deferral_without_reply() -> None:
    # retry_defer (on by default): a queue run that skips an address before its retry time
    # logs a deferral that tried nothing, so it carries no reply or remote host
    line = (
        b"2026-12-04 18:40:42 1xZYD2-0001AM-0D == defer@example.com routing defer (-52) DT=0s:"
        b" retry time not reached"
    )
    got = eximlog.parse_line(line, CLOCK)
    assert isinstance(got, Parsed) and isinstance(got.record, pf.Delivery)
    d = got.record
    assert (d.status, d.recipient, d.reply_code, d.dsn, d.remote_ip) == (
        "deferred", "defer@example.com", None, None, None)  # fmt: skip
    assert d.detail == "retry time not reached"
    assert d.delivery_time == 0.0


def test_lines_through_syslog_give_the_records_of_the_file() -> None:
    # sample_logs/exim/syslog-4.96.log: the real main log's first 16 lines as rsyslog writes
    # them with log_file_path = syslog, the first 12 with Exim's timestamp (syslog_timestamp,
    # the default), the next 4 without it (the envelope's time, the same second)
    samples = Path(__file__).resolve().parent.parent / "sample_logs" / "exim"
    real = (samples / "real-exim-4.96.log").read_bytes().splitlines()[:16]
    wrapped = (samples / "syslog-4.96.log").read_bytes().splitlines()
    clock = SyslogClock(year=2026, tz=UTC)
    for a, b in zip(real, wrapped[:16], strict=True):
        pa, pb = eximlog.parse_line(a, clock), eximlog.parse_line(b, clock)
        if isinstance(pa, Parsed):
            assert isinstance(pb, Parsed), b
            assert (pa.record, pa.extra, pa.service) == (pb.record, pb.extra, pb.service)
            assert pa.envelope.logged_at == pb.envelope.logged_at
            assert pb.envelope.host == "mx1" and pb.envelope.pid in (10112, 10113)
        else:
            assert pa == pb
    rest = [eximlog.parse_line(x, clock) for x in wrapped[16:]]
    assert rest[0] == Skipped("other-program")
    assert [getattr(r, "code", None) for r in rest[1:]] == ["exim-syslog-split"] * 2
    assert formats.detect(b"\n".join(wrapped) + b"\n", complete=True) is formats.EXIM


def test_tls_errors_are_events_of_their_direction_with_the_peer() -> None:
    inbound = eximlog.parse_line(
        b"2026-12-04 10:00:00 TLS error on connection from mail.example.net (ehlo.example) "
        b"[198.51.100.7]:40000 I=[192.0.2.1]:25 (SSL_accept): error:0A000102:SSL "
        b"routines::unsupported protocol",
        CLOCK,
    )
    assert isinstance(inbound, Parsed) and inbound.service == "smtp-in"
    rec = inbound.record
    assert isinstance(rec, pf.Event) and rec.kind == "tls-error" and rec.queue_id is None
    assert (rec.remote_host, rec.remote_ip) == ("mail.example.net", "198.51.100.7")
    outbound = eximlog.parse_line(
        b"2026-12-04 10:00:01 1xZIN1-0002xK-2s TLS error on connection to mx.example.org "
        b"[203.0.113.9] (SSL_connect): timed out",
        CLOCK,
    )
    assert isinstance(outbound, Parsed) and outbound.service == "smtp-out"
    rec = outbound.record
    assert isinstance(rec, pf.Event) and rec.kind == "tls-error"
    assert (rec.queue_id, rec.remote_ip) == ("1xZIN1-0002xK-2s", "203.0.113.9")
    assert formats.detect_claimed(
        b"2026-12-04 10:00:00 TLS error on connection from [198.51.100.7]:4 (SSL_accept): x\n"
    ) is formats.by_name("exim")
