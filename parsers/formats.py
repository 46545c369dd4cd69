"""The registry of log formats: which MTA wrote a source, and how to read its lines.

One row per format, in an explicit ordered tuple (house style, section 2; the bounce side's
``DECODERS`` works the same way). A row has

- ``name``: what ``mtalens ingest --log-format`` and the samples folder (``sample_logs/<name>/``)
  call it;
- ``sniff(lines) -> int``: how many of a source's first lines look like this format's;
- ``parse(raw, clock) -> Parsed | Skipped | Malformed``: one line (bytes without its newline),
  pure, into the records the one correlator (:mod:`mtalens.pipeline.correlate`) reads;
- ``owns_queue_id(qid)``: whether a queue or message id is this format's shape (Postfix's are
  hexadecimal or base 52 without ``-``, Exim's have two), so that the messages left open by an
  earlier run go back to the format that made them;
- ``fast``: the C scanner (:mod:`mtalens.parsers.fastscan`) reads this format. Only Postfix:
  other formats go through ``parse`` line by line;
- the lifecycle rules the correlator applies to the format's messages: ``unique_ids`` (a queue
  id names one message only, as Exim's and Sendmail's encode the time and process: a record of
  a message already seen, open or recently closed, belongs to it, even a creating one) and
  ``ends_when_final`` (no line says a message was removed, as with Sendmail: it ends when as
  many recipients as it was queued for have a final status, or its queue lifetime ran out);
- ``joiner``: for a format whose entries may span lines (Exim's ``[n/m]`` parts through syslog),
  what joins them before ``parse`` (pure; a checkpoint never passes an entry still open).

:func:`detect` picks the row whose sniffer claims most of the first lines; the first row wins a
tie, and a source no row claims is read as the first row's (Postfix, as before the registry:
its lines are then ignored or quarantined with their reasons).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from mtalens.parsers import eximlog, lines, sendmaillog
from mtalens.parsers import postfix as pf
from mtalens.parsers.syslog import SyslogClock, count_programs

LineParser = Callable[[bytes, SyslogClock], lines.Parsed | lines.Skipped | lines.Malformed]


class Joiner(Protocol):
    """Joins the lines of entries a format spreads over several (see LogFormat.joiner)."""

    def feed(self, raw: bytes, offset: int) -> list[tuple[bytes, int, lines.Skipped | None]]: ...
    def waiting_from(self) -> int | None: ...
    def flush(self) -> list[tuple[bytes, int, lines.Skipped | None]]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFormat:
    name: str
    sniff: Callable[[Sequence[str]], int]
    parse: LineParser
    owns_queue_id: Callable[[str], bool]
    fast: bool
    unique_ids: bool = False
    ends_when_final: bool = False
    joiner: Callable[[], Joiner] | None = None


def _sniff_postfix(sample: Sequence[str]) -> int:
    return count_programs(sample, pf.is_postfix_program)


POSTFIX: Final = LogFormat(
    name="postfix",
    sniff=_sniff_postfix,
    parse=lines.parse_line,
    owns_queue_id=lambda qid: "-" not in qid,
    fast=True,
)
EXIM: Final = LogFormat(
    name=eximlog.NAME,
    sniff=eximlog.sniff,
    parse=eximlog.parse_line,
    owns_queue_id=eximlog.is_message_id,
    fast=False,
    joiner=eximlog.SyslogJoiner,
)
EXIM_REJECTLOG: Final = LogFormat(
    name="exim-rejectlog",
    sniff=eximlog.sniff_rejectlog,
    parse=eximlog.parse_rejectlog_line,
    owns_queue_id=eximlog.is_message_id,
    fast=False,
)
SENDMAIL: Final = LogFormat(
    name=sendmaillog.NAME,
    sniff=sendmaillog.sniff,
    parse=sendmaillog.parse_line,
    owns_queue_id=sendmaillog.is_queue_id,
    fast=False,
    unique_ids=True,
    ends_when_final=True,
)

FORMATS: Final[tuple[LogFormat, ...]] = (POSTFIX, EXIM, EXIM_REJECTLOG, SENDMAIL)
NAMES: Final = tuple(f.name for f in FORMATS)


def by_name(name: str) -> LogFormat:
    """The row called ``name``; KeyError names the known ones."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise KeyError(f"unknown log format {name!r}: expected one of {', '.join(NAMES)}")


SNIFF_LINES: Final = 20


def head_lines(head: bytes, *, complete: bool) -> list[str]:
    """The first lines of a source's first bytes, decoded leniently; the last one is dropped
    unless ``complete`` (the head is the whole source), as it may be cut short."""
    parts = head.split(b"\n")
    if not complete or parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace").rstrip("\r") for p in parts[:SNIFF_LINES]]


def detect_claimed(head: bytes, *, complete: bool = False) -> LogFormat | None:
    """The row whose sniffer claims most of a source's first lines; None when no row claims
    any (a log too young to tell, or no MTA's)."""
    sample = head_lines(head, complete=complete)
    best, best_hits = None, 0
    for f in FORMATS:
        hits = f.sniff(sample)
        if hits > best_hits:
            best, best_hits = f, hits
    return best


def detect(head: bytes, *, complete: bool = False) -> LogFormat:
    """The format of a source from its first bytes (see the module's docstring)."""
    return detect_claimed(head, complete=complete) or FORMATS[0]


def owner_of_queue_id(qid: str) -> LogFormat:
    """The first row whose queue-id shape ``qid`` has (Postfix when none)."""
    for f in FORMATS[1:]:
        if f.owns_queue_id(qid):
            return f
    return FORMATS[0]


__all__ = [
    "EXIM",
    "EXIM_REJECTLOG",
    "FORMATS",
    "NAMES",
    "POSTFIX",
    "SENDMAIL",
    "LogFormat",
    "by_name",
    "detect",
    "detect_claimed",
    "head_lines",
    "owner_of_queue_id",
]
