"""Reading messages from Maildirs, mbox files, single .eml files and directories of them.

- Maildir (maildir(5) / https://cr.yp.to/proto/maildir.html): a directory with ``new/`` and
  ``cur/`` (``tmp/`` is never read: files there are still being written); one message per file,
  in ``new/`` then ``cur/``, sorted by name (names start with the delivery time).
- mbox (RFC 4155): messages start with a "From " line at the start of the file or after a blank
  line (or any line, when it carries a From_ line's asctime date); streamed line by line, one
  message in memory at a time; the mboxrd convention quotes body lines matching ``>*From `` with one more ``>``, which
  is removed here. The From_ line itself is not part of the message.
- any other file is one message; a plain directory is read recursively, sorted by name.

Each message is yielded with its source path, its 1-based index inside the file and the byte
offset of its first byte in the file, so a quarantine row can point back at it.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

# A From_ line (RFC 4155 section 2): "From " at the start of the file or after an empty line;
# also without the empty line when the rest is the asctime() date of a real From_ line
# ("From sender Thu Jul  2 12:05:05 2020"), which some writers emit straight after the previous
# message's last line.
_ASCTIME_FROM_RE: Final = re.compile(
    rb"^From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    rb"Nov|Dec) +\d{1,2} +\d{1,2}:\d\d(?::\d\d)?(?: +[A-Z]{2,5}| +[+-]\d{4})? +\d{4}\s*$"
)
_QUOTED_FROM_RE: Final = re.compile(rb"^>(>*From )", re.MULTILINE)
READ_CHUNK: Final = 1 << 20  # mbox files are streamed in chunks of this size


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxMessage:
    source: str
    index: int  # 1-based position inside the file
    offset: int  # byte offset of the message (after its From_ line, for mbox)
    raw: bytes


def is_maildir(path: Path) -> bool:
    return path.is_dir() and ((path / "new").is_dir() or (path / "cur").is_dir())


def looks_like_mbox(head: bytes) -> bool:
    return head.startswith(b"From ")


def _lines(f: BinaryIO, *, cr_only: bool) -> Iterator[tuple[int, bytes]]:
    """(offset, line including its newline) of a stream, split on LF only (STYLE.md section 5).
    A CR-only file is read with CR as the newline: same length, so offsets hold."""
    offset = 0
    pending = b""
    while True:
        chunk = f.read(READ_CHUNK)
        if not chunk:
            break
        if cr_only:
            chunk = chunk.replace(b"\r", b"\n")
        data = pending + chunk
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            yield offset + start, data[start : nl + 1]
            start = nl + 1
        offset += start
        pending = data[start:]
    if pending:
        yield offset, pending


def _is_blank(line: bytes) -> bool:
    return line in (b"\n", b"\r\n")


def split_mbox(f: BinaryIO, *, cr_only: bool = False) -> Iterator[tuple[int, bytes]]:
    """(offset, message bytes) for each message of an mbox stream, one message in memory."""
    body: list[bytes] = []
    body_start = -1
    prev_blank = True
    for offset, line in _lines(f, cr_only=cr_only):
        if line.startswith(b"From ") and (prev_blank or _ASCTIME_FROM_RE.match(line)):
            if body_start >= 0:
                yield body_start, _finish(body, before_separator=True)
            body = []
            body_start = offset + len(line)
            prev_blank = False
            continue
        if body_start >= 0:
            body.append(line)
        prev_blank = _is_blank(line)
    if body_start >= 0:
        # RFC 4155 writers end every message, the last one too, with an empty line
        yield body_start, _finish(body, before_separator=True)


def _finish(lines: list[bytes], *, before_separator: bool) -> bytes:
    if before_separator and lines and _is_blank(lines[-1]):
        # the blank line before the next From_ belongs to the mbox, not to the message
        lines = lines[:-1]
    return _QUOTED_FROM_RE.sub(rb"\1", b"".join(lines))


def read_file(path: Path) -> Iterator[MailboxMessage]:
    source = str(path)
    with path.open("rb") as f:
        head = f.read(4096)
        if not looks_like_mbox(head):
            f.seek(0)
            yield MailboxMessage(source=source, index=1, offset=0, raw=f.read())
            return
        cr_only = b"\n" not in head and b"\r" in head
        f.seek(0)
        for index, (offset, raw) in enumerate(split_mbox(f, cr_only=cr_only), start=1):
            yield MailboxMessage(source=source, index=index, offset=offset, raw=raw)


def _files_under(path: Path) -> Iterator[Path]:
    if is_maildir(path):
        for sub in ("new", "cur"):
            d = path / sub
            if d.is_dir():
                yield from sorted(
                    p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                )
        return
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name == "tmp" and is_maildir(path):
                continue
            yield from _files_under(entry)
        elif entry.is_file():
            yield entry


def iter_messages(
    paths: Iterable[str | os.PathLike[str]],
    *,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[MailboxMessage]:
    """Every message under the given paths, in a stable order.

    A path that cannot be read (missing, unreadable, not a file or directory) raises OSError, or,
    with ``on_error``, is reported as ``on_error(path, reason)`` and skipped."""
    for p in paths:
        path = Path(p)
        try:
            if path.is_dir():
                for f in _files_under(path):
                    yield from _read_or_report(f, on_error)
            elif not path.exists():
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
            else:
                yield from _read_or_report(path, on_error)
        except OSError as exc:
            if on_error is None:
                raise
            on_error(str(path), _os_reason(exc))


def _read_or_report(
    path: Path, on_error: Callable[[str, str], None] | None
) -> Iterator[MailboxMessage]:
    try:
        yield from read_file(path)
    except OSError as exc:
        if on_error is None:
            raise
        on_error(str(path), _os_reason(exc))


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()
