"""Framing: the bytes of a file as providers archive their events, cut into single events.

Pure: bytes in, frames out, no files. What is read, whatever the file's name:

- gzip (RFC 1952 magic ``1f 8b``, members concatenated as ``cat a.gz b.gz`` makes them),
  decompressed with a cap on the decompressed size (``max_bytes``): past it the file is refused
  (``too-large``), as is a damaged or truncated stream (``bad-gzip``, ``truncated-gzip``);
- one JSON document: an event object, or an array of events (SendGrid's Event Webhook POSTs an
  array; SparkPost's webhook batches are arrays of ``{"msys": ...}``);
- JSON lines: one event per line (Amazon Data Firehose writes SES event records one per line:
  https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-firehose-contents.html);

and inside any of them, the containers providers wrap events in:

- an Amazon SNS notification envelope (``"Type": "Notification"``) whose ``Message`` is the
  event as a JSON string (https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html);
- Mandrill's ``mandrill_events`` (a JSON array, as an array or as a string of one:
  https://mailchimp.com/developer/transactional/docs/webhooks/).

A frame is an event (a dict) or the reason it is not one; a file that is not JSON at all is one
frame with the reason. ``json`` refuses nesting deeper than the interpreter's recursion limit
(``RecursionError``): such input becomes a ``too-deep`` frame, never an exception.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from mtalens.parsers.errors import ParseError

GZIP_MAGIC: Final = b"\x1f\x8b"
MiB: Final = 1 << 20
DEFAULT_MAX_BYTES: Final = 512 * MiB  # decompressed bytes of one file
MAX_LINE: Final = 4 * MiB  # one event of JSON lines; a real event is a few KB
MAX_UNWRAP: Final = 4  # containers inside containers (an SNS envelope around Mandrill's list...)


@dataclass(frozen=True, slots=True)
class Frame:
    """``index``: 0-based position in the file. ``event``: the event, or None with ``error``.
    ``raw``: the event's text when it came from its own line, else None (rebuilt on demand)."""

    index: int
    event: dict[str, Any] | None
    error: ParseError | None = None
    raw: bytes | None = None


def gunzip(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Decompress every gzip member of ``data``, refusing output past ``max_bytes``."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        while True:
            try:
                chunk = d.decompress(rest, max_bytes - total + 1)
            except zlib.error as exc:
                raise ParseError("bad-gzip", str(exc)) from None
            total += len(chunk)
            if total > max_bytes:
                raise ParseError("too-large", f"expands past {max_bytes} bytes")
            out.append(chunk)
            rest = d.unconsumed_tail
            if d.eof or not rest:
                break
        if not d.eof:
            raise ParseError("truncated-gzip", "the gzip stream ends early")
        rest = d.unused_data
        if rest and not rest.startswith(GZIP_MAGIC):
            break  # trailing garbage after the last member is ignored, as gzip(1) does
    return b"".join(out)


# json.loads' own scanner, called directly: what json.loads(line) does for a UTF-8 line that is
# one JSON value without surrounding whitespace, minus its encoding detection, decoding and
# whitespace matching (about 1 us of the ~3.5 us per event line). Anything else (other
# encodings, a byte order mark, surrogates, extra data, errors) goes through json.loads itself,
# so the values, the errors and their messages are json.loads' own.
_scan: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(data: bytes | str) -> Any:
    first = data[:1]
    if first == (b"{" if isinstance(data, bytes) else "{") or first == (
        b"[" if isinstance(data, bytes) else "["
    ):
        try:
            text = data.decode() if isinstance(data, bytes) else data
            value, end = _scan(text, 0)
        except (ValueError, StopIteration, RecursionError):  # UnicodeDecodeError is a ValueError
            pass
        else:
            if end == len(text):
                return value
    try:
        return json.loads(data)
    except RecursionError:
        raise ParseError("too-deep", "JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ParseError("bad-encoding", str(exc)) from None
    except ValueError as exc:  # json.JSONDecodeError
        raise ParseError("bad-json", str(exc)[:200]) from None


def _unwrap(value: Any, depth: int = 0) -> Iterator[Any]:
    """The events inside a decoded value (itself, or what its containers hold)."""
    if depth > MAX_UNWRAP:
        raise ParseError("too-deep", "containers nested too deeply")
    if isinstance(value, list):
        for item in value:
            yield from _unwrap(item, depth + 1)
        return
    if isinstance(value, dict):
        if value.get("Type") == "Notification" and isinstance(value.get("Message"), str):
            yield from _unwrap(_loads(value["Message"]), depth + 1)
            return
        inner = value.get("mandrill_events")
        if inner is not None and len(value) == 1:
            yield from _unwrap(_loads(inner) if isinstance(inner, str) else inner, depth + 1)
            return
    yield value


def _frames_of(value: Any, start: int, raw: bytes | None) -> Iterator[Frame]:
    if type(value) is dict and "Message" not in value and "mandrill_events" not in value:
        yield Frame(start, value, None, raw)  # no container: the usual case, without _unwrap
        return
    i = start
    try:
        items = list(_unwrap(value))
    except ParseError as exc:
        yield Frame(i, None, exc, raw)
        return
    for item in items:
        if isinstance(item, dict):
            yield Frame(i, item, None, raw if len(items) == 1 else None)
        else:
            err = ParseError(
                "not-an-object", f"an event must be a JSON object, not {type(item).__name__}"
            )
            yield Frame(i, None, err, raw if len(items) == 1 else None)
        i += 1


def split_events(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Frame]:
    """The frames of one file's bytes (gzip or not)."""
    if data.startswith(GZIP_MAGIC):
        try:
            data = gunzip(data, max_bytes)
        except ParseError as exc:
            yield Frame(0, None, exc)
            return
    elif len(data) > max_bytes:
        yield Frame(0, None, ParseError("too-large", f"{len(data)} bytes, more than {max_bytes}"))
        return
    if data.startswith(
        b"\xef\xbb\xbf"
    ):  # a UTF-8 byte order mark (RFC 8259 section 8.1 allows ignoring it)
        data = data[3:]
    body = data.strip()
    if not body:
        yield Frame(0, None, ParseError("empty", "no events"))
        return
    try:
        whole = _loads(body)
    except ParseError as exc:
        if b"\n" not in body or exc.code != "bad-json":
            yield Frame(0, None, exc, body[:MAX_LINE])
            return
        # JSON lines (the whole is not one document). A file no line of which is JSON is one
        # bad file, not a bad event per line.
        frames = list(_json_lines(body))
        if all(f.error is not None for f in frames):
            yield Frame(0, None, exc, body[:MAX_LINE])
            return
        yield from frames
        return
    yield from _frames_of(whole, 0, None if isinstance(whole, list) else body)


def _json_lines(body: bytes) -> Iterator[Frame]:
    i = 0
    for line in body.split(b"\n"):  # b"\n" only (STYLE.md section 5)
        line = line.strip()
        if not line:
            continue
        if len(line) > MAX_LINE:
            yield Frame(
                i, None, ParseError("too-large", f"one event of {len(line)} bytes"), line[:MAX_LINE]
            )
            i += 1
            continue
        try:
            value = _loads(line)
        except ParseError as exc:
            yield Frame(i, None, exc, line)
            i += 1
            continue
        for frame in _frames_of(value, i, line):
            yield frame
            i += 1
