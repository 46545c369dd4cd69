"""Issue 12 item 1: decoding time grows linearly with the message, whatever its shape.

Each case of the issue runs under a hard deadline (SIGALRM interrupts a running regex, so a
quadratic pattern fails the test in seconds instead of hanging it); the property test draws
adversarial units and places and checks both the slope (4x the bytes must not cost much more
than 4x the time) and the time per MB.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtalens.parsers.bounces import MAX_RECIPIENTS, ParseError, ReportKind, decode

# A sanity bound for a shared, loaded 2-core CI box (load averages of 6 seen): the 50 ms/MB
# target is what bench/bench_adversarial.py measures; the quadratic shapes this guards against
# took seconds for 64 kB (16-64 s per MB before the fix).
MS_PER_MB_LIMIT = 2000.0

BOUNCE_HEAD = (
    b"From: MAILER-DAEMON@mx.example.org\nTo: sender@example.org\n"
    b"Subject: Undelivered Mail Returned to Sender\n"
)
DSN = (
    b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
    b"Final-Recipient: rfc822; user@example.net\nAction: failed\nStatus: 5.1.1\n"
)


class Overtime(BaseException):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    assert threading.current_thread() is threading.main_thread()

    def fire(signum: int, frame: object) -> None:
        raise Overtime

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def timed(raw: bytes, limit: float = 5.0) -> float:
    t = time.perf_counter()
    try:
        with deadline(limit), suppress(ParseError):
            decode(raw)
    except Overtime:
        pytest.fail(f"decoding {len(raw)} bytes took more than {limit} s")
    return time.perf_counter() - t


def report(human: bytes, dsn: bytes) -> bytes:
    return (
        BOUNCE_HEAD + b"Content-Type: multipart/report; report-type=delivery-status; "
        b"boundary=B\n\n--B\nContent-Type: text/plain\n\n" + human + b"\n--B\n" + dsn + b"\n--B--\n"
    )


# The issue's measurements on main: 128 KB To: 64 s; 64 KB of ".": 16 s; 64 KB body of one
# letter: 28 s; Diagnostic-Code "550-x y" + 2 M lines "x y": 72 s; 20,000 "--NNNNNNNQ": 41 s.
ISSUE_CASES: dict[str, bytes] = {
    "to_header_letter": b"From: a@example.org\nSubject: x\nTo: " + b"a" * 131_072 + b"\n\nhi\n",
    "to_header_dots": b"From: a@example.org\nSubject: x\nTo: " + b"." * 65_536 + b"\n\nhi\n",
    "bounce_body_letter": BOUNCE_HEAD + b"\n" + b"a" * 65_536 + b"\n",
    "bounce_body_dots": BOUNCE_HEAD + b"\n" + b"." * 65_536 + b"\n",
    "diagnostic_reply_lines": report(
        b"x y\n" * 2_000_000, DSN + b"Diagnostic-Code: smtp; 550-x y\n"
    ),
    # no Content-Type and a delivery-status header further down: the boundary is guessed
    "boundary_like_lines": b"From: a@example.org\n\n"
    + b"".join(b"--%07dQ\n" % i for i in range(15_000))
    + b"Content-Type: message/delivery-status\n",
    "exim_spaces": BOUNCE_HEAD
    + b"\nThis message was created automatically by mail delivery software.\n\n"
    + b"  user@example.net\n    "
    + b" " * 65_536
    + b"x\n",
    "encoded_word_starts": b"From: a@example.org\nSubject: " + b"=?utf-8?q?a" * 10_000 + b"\n\nx\n",
    "html_lt": BOUNCE_HEAD
    + b"Content-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/html\n\n"
    + b"<" * 65_536
    + b"\n--B--\n",
    "sendmail_many_at": BOUNCE_HEAD
    + b"\n----- Transcript of session follows -----\n550 "
    + b"a@" * 30_000
    + b"\n",
}


@pytest.mark.parametrize("name", sorted(ISSUE_CASES))
def test_issue_cases_decode_within_their_size_budget(name: str) -> None:
    raw = ISSUE_CASES[name]
    elapsed = timed(raw)
    assert elapsed * 1000 / (len(raw) / 1e6) < MS_PER_MB_LIMIT, f"{elapsed:.3f} s"


def test_the_diagnostic_case_still_decodes_the_recipient() -> None:
    r = decode(ISSUE_CASES["diagnostic_reply_lines"])
    assert r.kind is ReportKind.BOUNCE
    (rc,) = r.recipients
    assert rc.recipient == "user@example.net" and rc.status == "5.1.1"


def test_a_report_with_more_recipients_than_a_message_can_have_is_refused() -> None:
    groups = b"".join(
        b"Final-Recipient: rfc822; u%d@example.net\nAction: failed\nStatus: 5.1.1\n\n" % i
        for i in range(MAX_RECIPIENTS + 5)
    )
    raw = report(
        b"hi", b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n" + groups
    )
    with pytest.raises(ParseError) as exc:
        decode(raw)
    assert exc.value.code == "too_many_recipients"


def test_max_bytes_refuses_a_larger_message_unread() -> None:
    with pytest.raises(ParseError) as exc:
        decode(BOUNCE_HEAD + b"\n" + b"x" * 2000, max_bytes=1000)
    assert exc.value.code == "too_large"


PLACES: dict[str, Callable[[bytes], bytes]] = {
    "to": lambda f: b"From: a@example.org\nSubject: x\nTo: " + f + b"\n\nhi\n",
    "subject": lambda f: b"From: MAILER-DAEMON@x.example\nSubject: " + f + b"\n\nhi\n",
    "plain_body": lambda f: b"From: a@example.org\nContent-Type: text/plain\n\n" + f + b"\n",
    "bounce_body": lambda f: BOUNCE_HEAD + b"\n" + f + b"\n",
    "exim": lambda f: (
        BOUNCE_HEAD
        + b"\nThis message was created automatically by mail delivery software.\n\n  u@example.net\n    "
        + f
    ),
    "sendmail": lambda f: (
        BOUNCE_HEAD
        + b"\n----- The following addresses had permanent fatal errors -----\n"
        + f
        + b"\n----- Transcript of session follows -----\n"
        + f
    ),
    "dsn_human": lambda f: report(f, DSN + b"Diagnostic-Code: smtp; 550-x y\n"),
    "dsn_fields": lambda f: report(b"hi", DSN + b"Diagnostic-Code: smtp; 550-" + f),
    "no_content_type": lambda f: (
        b"From: a@example.org\n\n" + f + b"\nContent-Type: message/delivery-status\n"
    ),
}
# the characters the issue names (letters, dots, "@", "<", spaces, reply lines, boundary-like
# lines) and the separators the decoders' patterns care about
UNITS = st.text(alphabet="a.@< \n-:>;5x(\t=?*", min_size=1, max_size=12).map(
    str.encode
) | st.sampled_from(
    [
        b"550-x y\n",
        b"x y\n",
        b"--0000001Q\n",
        b">>> RCPT TO:<a@b.example>\n<<< 550-5.1.1 x\n",
        b"a@b.example, ",
    ]
)


def fill(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=UNITS, place=st.sampled_from(sorted(PLACES)))
def test_time_grows_linearly_with_size(unit: bytes, place: str) -> None:
    small = PLACES[place](fill(unit, 64_000))
    big = PLACES[place](fill(unit, 256_000))
    # best of three, and up to three tries: the machine is shared (other jobs, CI), and one
    # slow run says nothing about the decoder; a quadratic shape fails every try
    for _ in range(3):
        t_small = min(timed(small) for _ in range(3))
        t_big = min(timed(big) for _ in range(3))
        # 4x the bytes: linear is 4x the time, quadratic 16x; the floor absorbs timer noise
        # (only the slope: an absolute bound here failed under 25x load from other jobs; the
        # issue cases above keep one, and the bench measures the 50 ms/MB target)
        if t_big <= 8 * max(t_small, 0.005):
            return
    raise AssertionError((place, unit, t_small, t_big))


def test_field_groups_unfold_and_split_as_rfc_3464_says() -> None:
    from mtalens.parsers.bounces.rfc3464 import split_groups

    text = (
        "Reporting-MTA: dns; mx.example\n"
        "\n"
        "Final-Recipient: rfc822; a@example.net\n"
        "Action: failed\n"
        "Diagnostic-Code: smtp; 550 5.1.1\n"
        "  user unknown \n"
        "\tsee https://example.net/\n"
        "not a field\n"
        "  still the diagnostic\n"
        "Final-Recipient: rfc822; b@example.net\n"  # no blank line: a repeated field starts one
        "Status: 4.4.1\n"
        "  \n"  # a blank line made of spaces ends the group...
        "  orphan continuation\n"  # ... and this continues nothing
        "Final-Recipient: rfc822; c@example.net\n"
    )
    assert split_groups(text) == [
        [("reporting-mta", "dns; mx.example")],
        [("final-recipient", "rfc822; a@example.net"), ("action", "failed"),
         ("diagnostic-code", "smtp; 550 5.1.1\nuser unknown\nsee https://example.net/\n"
                             "still the diagnostic")],
        [("final-recipient", "rfc822; b@example.net"), ("status", "4.4.1")],
        [("final-recipient", "rfc822; c@example.net")],
    ]  # fmt: skip
    assert split_groups("") == [] and split_groups("  leading continuation\nA: b") == [[("a", "b")]]
