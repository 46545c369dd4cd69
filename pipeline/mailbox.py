"""Reading messages from Maildirs, mbox files, single .eml files and directories of them.

- Maildir (maildir(5) / https://cr.yp.to/proto/maildir.html): a directory with ``new/`` and
  ``cur/`` (``tmp/`` is never read: files there are still being written); one message per file,
  in ``new/`` then ``cur/``, sorted by name (names start with the delivery time).
- mbox (RFC 4155): messages start with a "From " line at the start of the file or after a blank
  line; the mboxrd convention quotes body lines matching ``>*From `` with one more ``>``, which
  is removed here. The From_ line itself is not part of the message.
- any other file is one message; a plain directory is read recursively, sorted by name.

Each message is yielded with its source path, its 1-based index inside the file and the byte
offset of its first byte in the file, so a quarantine row can point back at it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# A From_ line after an empty line (LF or CRLF files).
_SEPARATOR_RE: Final = re.compile(rb"\n\r?\nFrom ")
_QUOTED_FROM_RE: Final = re.compile(rb"^>(>*From )", re.MULTILINE)


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


def split_mbox(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, message bytes) for each message of an mbox buffer."""
    starts: list[int] = []
    if data.startswith(b"From "):
        starts.append(0)
    starts.extend(m.end() - 5 for m in _SEPARATOR_RE.finditer(data))
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(data)
        eol = data.find(b"\n", start, end)
        body_start = end if eol < 0 else eol + 1
        chunk = data[body_start:end]
        if n + 1 < len(starts):
            # the blank line before the next From_ belongs to the mbox, not to the message
            chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1]
        yield body_start, _QUOTED_FROM_RE.sub(rb"\1", chunk)


def read_file(path: Path) -> Iterator[MailboxMessage]:
    data = path.read_bytes()
    source = str(path)
    if looks_like_mbox(data[:5]):
        if b"\n" not in data:
            data = data.replace(b"\r", b"\n")  # CR-only mbox; same length, offsets hold
        for index, (offset, raw) in enumerate(split_mbox(data), start=1):
            yield MailboxMessage(source=source, index=index, offset=offset, raw=raw)
        return
    yield MailboxMessage(source=source, index=1, offset=0, raw=data)


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


def iter_messages(paths: Iterable[str | os.PathLike[str]]) -> Iterator[MailboxMessage]:
    """Every message under the given paths, in a stable order."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in _files_under(path):
                yield from read_file(f)
        else:
            yield from read_file(path)
