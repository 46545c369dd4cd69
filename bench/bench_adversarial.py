"""Time per MB of the bounce decoder on adversarial inputs, next to the stdlib parser.

Usage: .venv/bin/python bench/bench_adversarial.py [--mb 1.0] [--repeat 3]

Each shape is one message of about ``--mb`` MB built around a repeated unit (issue 12 item 1:
repeated letters, dots, "@", "<", spaces, multi-line reply lines, boundary-like lines) in the
place where it used to hurt: a header, a plain-text body, a bounce's prose, a delivery-status
part. For each shape it prints the best of ``--repeat`` runs of ``mtalens.parsers.bounces.decode``
and of ``email.message_from_bytes`` (stdlib, compat32: splits headers and body, decodes nothing),
both in ms per MB of input, and the decoder's outcome. Target: decode <= 50 ms/MB for every shape.
"""

from __future__ import annotations

import argparse
import email
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mtalens.parsers.bounces import ParseError, decode

_BOUNCE_HEAD = (
    b"From: MAILER-DAEMON@mx.example.org\nTo: sender@example.org\n"
    b"Subject: Undelivered Mail Returned to Sender\n"
)
_DSN = (
    b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
    b"Final-Recipient: rfc822; user@example.net\nAction: failed\nStatus: 5.1.1\n"
)


def _fill(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


def _lines(size: int, make: Callable[[int], bytes]) -> bytes:
    out: list[bytes] = []
    total = i = 0
    while total < size:
        line = make(i)
        out.append(line)
        total += len(line)
        i += 1
    return b"".join(out)


def _report(human: bytes, dsn: bytes) -> bytes:
    return (
        _BOUNCE_HEAD + b"Content-Type: multipart/report; report-type=delivery-status; "
        b"boundary=B\n\n--B\nContent-Type: text/plain\n\n" + human + b"\n--B\n" + dsn + b"\n--B--\n"
    )


def shapes(size: int) -> dict[str, bytes]:
    plain = b"From: a@example.org\nSubject: hello\nContent-Type: text/plain\n\n"
    head = size * 9 // 10  # headers stay under MAX_HEADER_BYTES (1 MB), which refuses more
    return {
        "To: one letter": b"From: a@example.org\nSubject: x\nTo: "
        + _fill(b"a", head)
        + b"\n\nhi\n",
        "To: dots": b"From: a@example.org\nSubject: x\nTo: " + _fill(b".", head) + b"\n\nhi\n",
        "To: '@'": b"From: a@example.org\nTo: " + _fill(b"@", head) + b"\n\nhi\n",
        "Subject: '=?'": b"From: a@example.org\nSubject: "
        + _fill(b"=?utf-8?q?a", head)
        + b"\n\nx\n",
        "body: one letter": plain + _fill(b"a", size) + b"\n",
        "body: dots": plain + _fill(b".", size) + b"\n",
        "bounce prose: one letter": _BOUNCE_HEAD + b"\n" + _fill(b"a", size) + b"\n",
        "bounce prose: '<'": _BOUNCE_HEAD + b"\n" + _fill(b"<", size) + b"\n",
        "bounce prose: spaces": _BOUNCE_HEAD + b"\n" + _fill(b" ", size) + b"x\n",
        "bounce prose: addresses": _BOUNCE_HEAD + b"\n" + _fill(b"a@b.example, ", size) + b"\n",
        "exim prose: spaces": _BOUNCE_HEAD
        + b"\nThis message was created automatically by mail delivery software.\n\n"
        b"  user@example.net\n    " + _fill(b" ", size) + b"x\n",
        "sendmail transcript: reply lines": _BOUNCE_HEAD
        + b"\n----- Transcript of session follows -----\n"
        + _lines(size, lambda i: b">>> RCPT TO:<u@example.net>\n<<< 550-5.1.1 x\n")
        + b"\n",
        "DSN: 550-x y + 'x y' lines": _report(
            _lines(size, lambda i: b"x y\n"), _DSN + b"Diagnostic-Code: smtp; 550-x y\n"
        ),
        "DSN: reply lines": _report(
            _lines(size, lambda i: b"550-5.1.1 x y\n"), _DSN + b"Diagnostic-Code: smtp; 550-x y\n"
        ),
        "DSN: continuation lines": _report(
            b"hi", _DSN + b"Diagnostic-Code: smtp; 550 x\n" + _lines(size, lambda i: b" x y\n")
        ),
        "no Content-Type: '--NNNNNNNQ' lines": b"From: a@example.org\n\n"
        + _lines(size, lambda i: b"--%07dQ\n" % i),
        "no Content-Type: DSN + boundary-like lines": b"From: a@example.org\n\n"
        + _lines(size, lambda i: b"--%07dQ\n" % i)
        + b"Content-Type: message/delivery-status\n",
        "html: '<'": _BOUNCE_HEAD
        + b"Content-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/html\n\n"
        + _fill(b"<", size)
        + b"\n--B--\n",
    }


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _outcome(raw: bytes) -> str:
    try:
        r = decode(raw)
    except ParseError as exc:
        return f"quarantine:{exc.code}"
    return f"{r.kind}/{r.agent}/{len(r.recipients)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=1.0, help="size of each message in MB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = int(args.mb * (1 << 20))
    print(f"{'shape':44s} {'decode':>10s} {'stdlib':>10s}  outcome")
    worst = 0.0
    for name, raw in shapes(size).items():
        mb = len(raw) / (1 << 20)
        ours = _best(lambda raw=raw: _outcome(raw), args.repeat) * 1000 / mb
        peer = _best(lambda raw=raw: email.message_from_bytes(raw), args.repeat) * 1000 / mb
        worst = max(worst, ours)
        print(f"{name:44s} {ours:7.1f} ms {peer:7.1f} ms  {_outcome(raw)}  ({mb:.2f} MB)")
    print(f"worst: {worst:.1f} ms/MB (target 50)")


if __name__ == "__main__":
    main()
