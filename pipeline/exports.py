"""Exporting the suppression list in the formats mailing systems import.

One writer per format, listed in ``EXPORTERS`` (an explicit, ordered registry). Each writer
says which addresses it cannot carry safely (``problems``), and turns the additions (and, where
the format has them, removals) into named text files. ``export_suppressions`` does the rest:
evaluates the policy (pipeline/suppressions.py), reports unsafe addresses instead of exporting
them, and for a named target (``since_last``) remembers what the target already holds so the
next run emits only the difference.

Exports stream: the policy's decisions come from DuckDB as Arrow record batches in address
order (``suppressions.decision_batches``), each batch is checked, transformed with polars
expressions and written to its file (or stdout) before the next one is read, so neither the
whole list nor a whole file's text is ever held in Python (issue 5: < 2 GB at 1 M addresses).
Files go to hidden temporary names beside their targets and are renamed only when the whole
export succeeded: a reader (postmap, an uploader) never sees half a file or half a split set.

Addresses and diagnostics come from mail, so they are attacker-controlled. Every format
exports only plain ASCII addresses (dot-atom local part, LDH domain: no quotes, spaces, commas,
brackets or control characters), so no address can add a line or a field anywhere. CSV formats
also refuse addresses that a spreadsheet would read as a formula (leading ``=``, ``+``, ``-``,
``@``; OWASP "CSV Injection"), and the generic CSV neutralises text fields the same way (a
leading apostrophe, control characters replaced by spaces). Postfix maps refuse a leading ``#``
(postmap(1): a comment line). Every JSON value is made by polars' JSON encoder
(``write_ndjson``, ``struct.json_encode``); request bodies only join its output with fixed
brackets and commas.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

import polars as pl

from mtalens.pipeline.cells import FORMULA_START, spreadsheet_expr
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.store import Store
from mtalens.pipeline.suppressions import SuppressionError, decision_batches

# RFC 5322 section 3.2.3 atext, dots between atoms, LDH domain already lower-cased.
_SAFE_ADDRESS: Final = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"
)
_FORMULA_START: Final = FORMULA_START  # one definition for every renderer: pipeline/cells.py
UNSAFE_ADDRESS: Final = "not a plain ASCII address (quoted, literal, non-ASCII or odd characters)"
FORMULA: Final = "starts with a character a spreadsheet reads as a formula"
COMMENT: Final = "starts with '#', a comment in a Postfix map"

COLUMNS: Final = (
    "address", "kind", "reason", "category", "rule_id", "policy_rule", "first_evidence",
    "last_evidence", "evidence_count", "suppressed_at", "expires_at", "status_code",
    "reply_code", "diagnostic", "role",
)  # fmt: skip


class ExportError(InputError, ValueError):
    """The export cannot be done as asked (unknown format, missing output, wrong target)."""


class Sink:
    """Where an export's files go: a directory (split formats), one file, a binary stream
    (stdout), or, with none of them, memory (``contents``: names and bytes).

    Files are written under hidden temporary names beside their targets; ``commit`` renames
    them all, ``abort`` removes them: an export that fails half-way leaves no file behind."""

    def __init__(
        self,
        *,
        directory: Path | None = None,
        file: Path | None = None,
        stream: IO[bytes] | None = None,
    ) -> None:
        self._directory = directory
        self._file = file
        self._stream = stream
        self._open: list[IO[bytes]] = []
        self._renames: list[tuple[str, Path]] = []  # (temporary path, target)
        self._memory: list[tuple[str, io.BytesIO]] = []
        self.names: list[str] = []
        self.written: list[str] = []
        self.contents: list[tuple[str, bytes]] = []
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def create(self, name: str) -> IO[bytes]:
        """A new output called ``name``; hand it back with ``done`` once it is complete."""
        if (self._file is not None or self._stream is not None) and self.names:
            raise ExportError("internal: a single-file format produced several files")
        self.names.append(name)
        target = self._directory / name if self._directory is not None else self._file
        if target is None:
            if self._stream is not None:
                return self._stream
            buffer = io.BytesIO()
            self._memory.append((name, buffer))
            return buffer
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        self._renames.append((tmp, target))
        fh = os.fdopen(fd, "wb", buffering=1 << 18)
        self._open.append(fh)
        return fh

    def done(self, fh: IO[bytes]) -> None:
        """``fh`` is complete: close it (a temporary file) or flush it (a stream)."""
        if fh is self._stream:
            fh.flush()
        elif fh in self._open:
            self._open.remove(fh)
            fh.close()

    def commit(self) -> None:
        for fh in self._open:
            fh.close()
        self._open.clear()
        for tmp, target in self._renames:
            os.replace(tmp, target)
            self.written.append(str(target))
        self._renames.clear()
        self.contents = [(name, buffer.getvalue()) for name, buffer in self._memory]
        if self._stream is not None:
            self._stream.flush()

    def abort(self) -> None:
        for fh in self._open:
            fh.close()
        self._open.clear()
        for tmp, _target in self._renames:
            Path(tmp).unlink(missing_ok=True)
        self._renames.clear()


class Exporter(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def multi_file(self) -> bool: ...  # writes several files: the output must be a directory
    @property
    def removals(self) -> bool: ...  # can express "take these addresses off the list"
    @property
    def snapshot(self) -> bool: ...  # always the whole list (maps): removals are implicit

    def problems(self, frame: pl.DataFrame) -> pl.Series: ...

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        """Write the additions (the whole list for a snapshot), a frame at a time, in order.
        At least one frame (maybe empty) comes; a writer reads every frame."""

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        """Write the removals (``address``, ``kind``); called only when there are some."""


def _base_problems(frame: pl.DataFrame, *extra: tuple[str, str]) -> pl.Series:
    addr = pl.col("address")
    expr: Any = pl.when(~addr.str.contains(_SAFE_ADDRESS)).then(pl.lit(UNSAFE_ADDRESS))
    for pattern, message in extra:
        expr = expr.when(addr.str.contains(pattern)).then(pl.lit(message))
    return frame.select(expr.otherwise(pl.lit(None, dtype=pl.String)).alias("problem"))["problem"]


def _write_csv(
    sink: Sink, name: str, frames: Iterable[pl.DataFrame], select: list[pl.Expr]
) -> None:
    """One CSV file with a header row, ``select`` applied to each frame."""
    fh = sink.create(name)
    header = True
    for frame in frames:
        frame.select(select).write_csv(
            fh, include_header=header, line_terminator="\n", quote_style="necessary"
        )
        header = False
    sink.done(fh)


def _write_lines(lines: pl.Series, fh: IO[bytes]) -> None:
    """Text lines (JSON objects, map entries) joined by polars, written as one block."""
    if lines.len():
        fh.write(lines.str.join("\n").item().encode("utf-8") + b"\n")


def _write_split(
    sink: Sink,
    frames: Iterable[pl.DataFrame],
    limit: int,
    name: str,
    write: Callable[[pl.DataFrame, IO[bytes]], None],
) -> None:
    """Files of at most ``limit`` rows named ``name.format(n)`` (n from 1); ``write(part, fh)``
    writes the rows of one part. No rows, no file."""
    fh: IO[bytes] | None = None
    used = files = 0
    for frame in frames:
        start = 0
        while start < frame.height:
            if fh is None or used == limit:
                if fh is not None:
                    sink.done(fh)
                files += 1
                fh, used = sink.create(name.format(files)), 0
            part = frame.slice(start, limit - used)
            write(part, fh)
            used += part.height
            start += part.height
    if fh is not None:
        sink.done(fh)


def _write_bodies(
    sink: Sink,
    frames: Iterable[pl.DataFrame],
    size: int,
    name: str,
    item: pl.Expr,
    wrap: tuple[str, str],
) -> None:
    """JSON request bodies of at most ``size`` items each, one file per body: ``item`` (a JSON
    text made by polars' encoder) per address, joined and wrapped by polars, not one Python
    object per address. Items left over from one frame fill the next body."""
    carry: pl.DataFrame | None = None
    files = 0

    def bodies(items: pl.DataFrame) -> None:
        nonlocal files
        grouped = (
            items.with_row_index("n")
            .group_by(pl.col("n") // size, maintain_order=True)
            .agg(pl.col("item").str.join(","))
            .select(pl.concat_str(pl.lit(wrap[0]), pl.col("item"), pl.lit(wrap[1])))
            .to_series()
        )
        for body in grouped:
            files += 1
            fh = sink.create(name.format(files))
            fh.write(body.encode("utf-8"))
            sink.done(fh)

    for frame in frames:
        items = frame.select(item.alias("item"))
        if carry is not None:
            items = pl.concat([carry, items])
        whole = items.height - items.height % size
        if whole:
            bodies(items.slice(0, whole))
        carry = items.slice(whole)
    if carry is not None and carry.height:
        bodies(carry)


def _json_string(col: str) -> pl.Expr:
    # the JSON string literal of a column, by polars' encoder: {"a":"x"} -> "x"
    return pl.struct(pl.col(col).alias("a")).struct.json_encode().str.slice(5).str.strip_suffix("}")


# RFC 3986 section 2.3: only ALPHA / DIGIT / "-" / "." / "_" / "~" stand for themselves in a
# path segment; section 2.1: anything else is percent-encoded (as urllib.parse.quote with
# safe=""). These are the other characters a safe address (RFC 5322 atext, "." and "@") can
# hold; "%" comes first so that no escape is escaped again.
_PERCENT_ENCODED: Final = "%!#$&'*+/=?^`{|}@"


def _path_segment(col: str) -> pl.Expr:
    expr = pl.col(col)
    for ch in _PERCENT_ENCODED:
        expr = expr.str.replace_all(ch, f"%{ord(ch):02X}", literal=True)
    return expr


def _rfc2822(col: str) -> pl.Expr:
    # RFC 5322 section 3.3 date-time, in UTC (Mailgun's created_at)
    return pl.col(col).dt.convert_time_zone("UTC").dt.strftime("%a, %d %b %Y %H:%M:%S +0000")


def _iso(col: str) -> pl.Expr:
    return pl.col(col).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias(col)


_TIMES: Final = ("first_evidence", "last_evidence", "suppressed_at", "expires_at")


def _status_for(kind: pl.Expr, reason: pl.Expr) -> pl.Expr:
    # RFC 3463 section 3.2/3.3 detail codes for the reason; RFC 7505 section 4.2 for null MX
    return (
        pl.when(kind == "complaint").then(pl.lit("5.7.1"))
        .when(kind == "manual").then(pl.lit("5.7.1"))
        .when(reason == "userunknown").then(pl.lit("5.1.1"))
        .when(reason == "hostunknown").then(pl.lit("5.1.2"))
        .when(reason == "hasmoved").then(pl.lit("5.1.6"))
        .when(reason == "notaccept").then(pl.lit("5.1.10"))
        .when(reason == "suspend").then(pl.lit("5.2.1"))
        .when(reason == "mailboxfull").then(pl.lit("5.2.2"))
        .otherwise(pl.lit("5.0.0"))
    )  # fmt: skip


def _word(col: str) -> pl.Expr:
    # reasons and kinds are ours, but keep map texts to one harmless token regardless
    return pl.col(col).fill_null("unknown").str.replace_all(r"[^a-z0-9._-]", "_")


def _only(frames: Iterable[pl.DataFrame], predicate: pl.Expr) -> Iterator[pl.DataFrame]:
    for frame in frames:
        yield frame.filter(predicate)


@dataclass(frozen=True, slots=True)
class GenericCsv:
    name: str = "csv"
    description: str = "generic CSV, one row per suppression with its grounds (header row)"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        select = [
            _iso(c) if c in _TIMES else spreadsheet_expr(c) if c in _TEXT_COLUMNS else pl.col(c)
            for c in COLUMNS
        ]
        _write_csv(sink, "suppressions.csv", adds, select)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        raise ExportError(f"internal: {self.name} cannot express removals")


# the text columns of COLUMNS (neutralised in the generic CSV); the rest are numbers, times
# and booleans, which a spreadsheet cannot read as a formula
_TEXT_COLUMNS: Final = frozenset(
    {"address", "kind", "reason", "category", "rule_id", "policy_rule", "status_code",
     "diagnostic"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GenericJsonl:
    name: str = "jsonl"
    description: str = "generic JSON lines, one object per suppression with its event ids"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        fh = sink.create("suppressions.jsonl")
        for frame in adds:
            if frame.height:
                out = frame.select([*COLUMNS, "event_ids"]).with_columns(_iso(c) for c in _TIMES)
                out.write_ndjson(fh)
        sink.done(fh)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        raise ExportError(f"internal: {self.name} cannot express removals")


# Amazon SES v2 account-level suppression list bulk import (CreateImportJob with a
# SuppressionListDestination; DataFormat CSV or JSON; SuppressionListImportAction PUT adds,
# DELETE removes): https://docs.aws.amazon.com/ses/latest/dg/sending-email-suppression-list.html
SES_FILE_LIMIT: Final = 100_000


def _ses_reason(frames: Iterable[pl.DataFrame], address: str) -> Iterator[pl.DataFrame]:
    for frame in frames:
        yield frame.select(
            pl.col("address").alias(address),
            pl.when(pl.col("kind") == "complaint")
            .then(pl.lit("COMPLAINT"))
            .otherwise(pl.lit("BOUNCE"))
            .alias("reason"),
        )


def _csv_rows(part: pl.DataFrame, fh: IO[bytes]) -> None:
    part.write_csv(fh, include_header=False, line_terminator="\n", quote_style="necessary")


def _ndjson_rows(part: pl.DataFrame, fh: IO[bytes]) -> None:
    part.write_ndjson(fh)


@dataclass(frozen=True, slots=True)
class SesCsv:
    name: str = "ses-csv"
    description: str = "Amazon SES suppression import, headerless CSV address,BOUNCE|COMPLAINT"
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        rows = _ses_reason(adds, "address")
        _write_split(sink, rows, SES_FILE_LIMIT, "ses-put-{:04d}.csv", _csv_rows)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        rows = _ses_reason([removes], "address")
        _write_split(sink, rows, SES_FILE_LIMIT, "ses-delete-{:04d}.csv", _csv_rows)


@dataclass(frozen=True, slots=True)
class SesJsonl:
    name: str = "ses-jsonl"
    description: str = 'Amazon SES suppression import, JSON lines {"emailAddress","reason"}'
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        rows = _ses_reason(adds, "emailAddress")
        _write_split(sink, rows, SES_FILE_LIMIT, "ses-put-{:04d}.jsonl", _ndjson_rows)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        rows = _ses_reason([removes], "emailAddress")
        _write_split(sink, rows, SES_FILE_LIMIT, "ses-delete-{:04d}.jsonl", _ndjson_rows)


# Mailgun suppression imports (CSV with a header row): bounces "address, code, error,
# created_at", complaints "address, created_at", unsubscribes "address, tags, created_at";
# created_at is an RFC 2822 date. https://documentation.mailgun.com/docs/mailgun/user-manual/
# tracking-messages/ and the Suppressions API reference (bounces/complaints/unsubscribes import).
@dataclass(frozen=True, slots=True)
class MailgunBounces:
    name: str = "mailgun-bounces"
    description: str = "Mailgun bounces import CSV (hard and soft suppressions)"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        select = [
            pl.col("address"),
            pl.col("reply_code")
            .fill_null(pl.when(pl.col("kind") == "hard").then(550).otherwise(452))
            .cast(pl.Int64)
            .alias("code"),
            spreadsheet_expr("error_text").alias("error"),
            _rfc2822("suppressed_at").alias("created_at"),
        ]
        rows = _only(adds, pl.col("kind").is_in(["hard", "soft"]))
        _write_csv(sink, "mailgun-bounces.csv", rows, select)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        raise ExportError(f"internal: {self.name} cannot express removals")


@dataclass(frozen=True, slots=True)
class MailgunComplaints:
    name: str = "mailgun-complaints"
    description: str = "Mailgun complaints import CSV"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        select = [pl.col("address"), _rfc2822("suppressed_at").alias("created_at")]
        rows = _only(adds, pl.col("kind") == "complaint")
        _write_csv(sink, "mailgun-complaints.csv", rows, select)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        raise ExportError(f"internal: {self.name} cannot express removals")


@dataclass(frozen=True, slots=True)
class MailgunUnsubscribes:
    name: str = "mailgun-unsubscribes"
    description: str = "Mailgun unsubscribes import CSV (manual suppressions; tag *: all)"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        select = [
            pl.col("address"),
            pl.lit("*").alias("tags"),
            _rfc2822("suppressed_at").alias("created_at"),
        ]
        rows = _only(adds, pl.col("kind") == "manual")
        _write_csv(sink, "mailgun-unsubscribes.csv", rows, select)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        raise ExportError(f"internal: {self.name} cannot express removals")


# SendGrid "Add recipient addresses to the global suppression group":
# POST /v3/asm/suppressions/global {"recipient_emails": [...]}, and
# DELETE /v3/asm/suppressions/global/{email} to remove one.
# https://www.twilio.com/docs/sendgrid/api-reference/suppressions-global-suppressions
SENDGRID_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class SendgridGlobal:
    name: str = "sendgrid"
    description: str = "SendGrid global suppressions request bodies (1,000 addresses each)"
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        _write_bodies(
            sink,
            adds,
            SENDGRID_BATCH,
            "sendgrid-global-add-{:04d}.json",
            _json_string("address"),
            ('{"recipient_emails":[', "]}"),
        )

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        lines = removes.select(
            pl.struct(
                pl.lit("DELETE").alias("method"),
                (pl.lit("/v3/asm/suppressions/global/") + _path_segment("address")).alias("path"),
            ).struct.json_encode()
        ).to_series()
        fh = sink.create("sendgrid-global-delete.jsonl")
        _write_lines(lines, fh)
        sink.done(fh)


# Postmark suppressions API: POST /message-streams/{stream}/suppressions and
# .../suppressions/delete with {"Suppressions": [{"EmailAddress": ...}]}, 50 per request.
# https://postmarkapp.com/developer/api/suppressions-api
POSTMARK_BATCH: Final = 50


def _postmark_item() -> pl.Expr:
    return pl.struct(pl.col("address").alias("EmailAddress")).struct.json_encode()


@dataclass(frozen=True, slots=True)
class Postmark:
    name: str = "postmark"
    description: str = "Postmark suppression request bodies (50 addresses each)"
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        _write_bodies(
            sink,
            adds,
            POSTMARK_BATCH,
            "postmark-add-{:04d}.json",
            _postmark_item(),
            ('{"Suppressions":[', "]}"),
        )

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        _write_bodies(
            sink,
            [removes],
            POSTMARK_BATCH,
            "postmark-delete-{:04d}.json",
            _postmark_item(),
            ('{"Suppressions":[', "]}"),
        )


# listmonk subscriber import (Subscribers -> Import, mode "blocklist"): CSV with the header
# email,name,attributes; attributes is a JSON object. https://listmonk.app/docs/subscribers/
@dataclass(frozen=True, slots=True)
class Listmonk:
    name: str = "listmonk"
    description: str = "listmonk blocklist subscriber import CSV (email,name,attributes)"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        select = [
            pl.col("address").alias("email"),
            pl.col("address").alias("name"),
            pl.struct(
                pl.col("kind").alias("mtalens_kind"), pl.col("reason").alias("mtalens_reason")
            )
            .struct.json_encode()
            .alias("attributes"),
        ]
        _write_csv(sink, "listmonk-blocklist.csv", adds, select)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        raise ExportError(f"internal: {self.name} cannot express removals")


def _write_map(sink: Sink, name: str, frames: Iterable[pl.DataFrame], line: pl.Expr) -> None:
    fh = sink.create(name)
    for frame in frames:
        _write_lines(frame.select(line).to_series(), fh)
    sink.done(fh)


# Postfix access(5) table for smtpd_recipient_restrictions = check_recipient_access: "REJECT
# optional text". Build with postmap(1). A snapshot: the map is the whole list each time.
@dataclass(frozen=True, slots=True)
class PostfixAccess:
    name: str = "postfix-access"
    description: str = "Postfix access(5) map for check_recipient_access (run postmap on it)"
    multi_file: bool = False
    removals: bool = True
    snapshot: bool = True

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (r"^#", COMMENT))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        line = pl.concat_str(
            pl.col("address"),
            pl.lit(" REJECT suppressed by mtalens: "),
            _word("kind"),
            pl.lit(" "),
            _word("reason"),
        )
        _write_map(sink, "access", adds, line)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        pass  # a snapshot: an address no longer listed is simply not in the new map


# Postfix transport(5) map: "error:5.1.1 text" hands the recipient to error(8), which bounces
# it with that status, for mail submitted locally too (sendmail, pickup), not only via SMTP.
@dataclass(frozen=True, slots=True)
class PostfixTransport:
    name: str = "postfix-transport"
    description: str = "Postfix transport(5) map, address error:5.x.x (covers local submission)"
    multi_file: bool = False
    removals: bool = True
    snapshot: bool = True

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (r"^#", COMMENT))

    def write(self, adds: Iterable[pl.DataFrame], sink: Sink) -> None:
        line = pl.concat_str(
            pl.col("address"),
            pl.lit(" error:"),
            _status_for(pl.col("kind"), pl.col("reason")),
            pl.lit(" suppressed by mtalens: "),
            _word("kind"),
            pl.lit(" "),
            _word("reason"),
        )
        _write_map(sink, "transport", adds, line)

    def write_removals(self, removes: pl.DataFrame, sink: Sink) -> None:
        pass  # a snapshot: an address no longer listed is simply not in the new map


EXPORTERS: Final[tuple[Exporter, ...]] = (
    GenericCsv(),
    GenericJsonl(),
    SesCsv(),
    SesJsonl(),
    MailgunBounces(),
    MailgunComplaints(),
    MailgunUnsubscribes(),
    SendgridGlobal(),
    Postmark(),
    Listmonk(),
    PostfixAccess(),
    PostfixTransport(),
)


def exporter(name: str) -> Exporter:
    for e in EXPORTERS:
        if e.name == name:
            return e
    raise ExportError(
        f"unknown export format {name!r} (known: {', '.join(e.name for e in EXPORTERS)})"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportResult:
    format: str
    files: tuple[str, ...]  # written paths, or names when returned in memory or streamed
    exported: int  # addresses in this export (additions, or all of them for a snapshot)
    added: int
    removed: int
    removals_not_expressible: int  # gone from the list, but the format cannot remove them
    skipped: tuple[tuple[str, str], ...]  # (address, problem): reported, not exported
    contents: tuple[tuple[str, str], ...] = ()  # (name, text) when no output path was given


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOutcome:
    """What ``export_batches`` did. ``additions`` (``address``, ``kind``) and ``removes``
    are kept only when a previous state was given (to record it); ``added`` always counts."""

    listed: int  # exportable addresses on the list now
    added: int
    additions: pl.DataFrame
    removes: pl.DataFrame
    skipped: pl.DataFrame  # address, problem


_STATE_SCHEMA: Final = {"address": pl.String, "kind": pl.String}


@dataclass(slots=True)
class _Tally:
    listed: int = 0
    added: int = 0
    additions: list[pl.DataFrame] = field(default_factory=list)
    seen: list[pl.DataFrame] = field(default_factory=list)
    skipped: list[pl.DataFrame] = field(default_factory=list)


def prepare_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns every writer may use, from a frame (or batch) of decisions."""
    return frame.with_columns(
        pl.coalesce(pl.col("diagnostic"), pl.col("reason")).alias("error_text")
    )


def export_batches(
    fmt: Exporter,
    frames: Iterable[pl.DataFrame],
    sink: Sink,
    previous: pl.DataFrame | None = None,
) -> ExportOutcome:
    """Check each frame of decisions, hand the exportable rows to the writer as they come,
    and work out the additions and removals against ``previous`` (``address``, ``kind``: what
    the target holds; None: no target). The caller commits or aborts ``sink``."""
    tally = _Tally()
    held = None if previous is None else previous.select("address")

    def rows() -> Iterator[pl.DataFrame]:
        for raw in frames:
            frame = prepare_frame(raw)
            frame = frame.with_columns(fmt.problems(frame).alias("problem"))
            bad = frame.filter(pl.col("problem").is_not_null())
            if bad.height:
                tally.skipped.append(bad.select("address", "problem"))
            current = frame.filter(pl.col("problem").is_null()).drop("problem")
            del raw, frame, bad
            tally.listed += current.height
            if held is None:
                tally.added += current.height
                yield current
                continue
            tally.seen.append(current.select("address"))
            adds = current.join(held, on="address", how="anti", maintain_order="left")
            tally.added += adds.height
            tally.additions.append(adds.select("address", pl.col("kind").cast(pl.String)))
            yield current if fmt.snapshot else adds

    stream = rows()
    fmt.write(stream, sink)
    if next(stream, None) is not None:
        raise ExportError(f"internal: the {fmt.name} writer did not read every row")
    removes = pl.DataFrame(schema=_STATE_SCHEMA)
    if previous is not None:
        here = pl.concat(tally.seen) if tally.seen else pl.DataFrame(schema={"address": pl.String})
        removes = (
            previous.join(here, on="address", how="anti")
            .select("address", pl.col("kind").cast(pl.String))
            .sort("address")
        )
        if fmt.removals and removes.height:
            fmt.write_removals(removes, sink)
    skipped = (
        pl.concat(tally.skipped)
        if tally.skipped
        else pl.DataFrame(schema={"address": pl.String, "problem": pl.String})
    )
    additions = (
        pl.concat(tally.additions) if tally.additions else pl.DataFrame(schema=_STATE_SCHEMA)
    )
    return ExportOutcome(
        listed=tally.listed,
        added=tally.added,
        additions=additions,
        removes=removes,
        skipped=skipped,
    )


def export_frame(
    fmt: Exporter, frame: pl.DataFrame, previous: pl.DataFrame | None = None
) -> tuple[list[tuple[str, str]], ExportOutcome]:
    """An export of a frame of decisions held in memory (notebooks, tests): the files as
    (name, text) and what was exported."""
    sink = Sink()
    outcome = export_batches(fmt, [frame], sink, previous)
    sink.commit()
    return [(name, data.decode("utf-8")) for name, data in sink.contents], outcome


def _batch_frames(batches: Iterable[Any]) -> Iterator[pl.DataFrame]:
    for batch in batches:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame


def export_suppressions(
    store: Store,
    policy: SuppressionsConfig,
    fmt_name: str,
    *,
    now: datetime,
    out: Path | None = None,
    since_last: str | None = None,
    stream: IO[bytes] | None = None,
) -> ExportResult:
    """Evaluate the policy and export; with ``since_last`` only what target NAME lacks.
    Written to ``out`` (a file, or a directory for split formats), else to ``stream`` (a
    binary stream such as stdout), else returned in ``contents``."""
    fmt = exporter(fmt_name)
    if out is None and fmt.multi_file:
        raise ExportError(f"format {fmt.name} writes several files: give -o DIRECTORY")
    if since_last is not None and store.read_only:
        raise SuppressionError("--since-last records what was exported: the store must be writable")
    previous = None if since_last is None else _target_state(store, since_last, fmt)
    if out is None:
        sink = Sink(stream=stream)
    elif fmt.multi_file:
        sink = Sink(directory=out)
    else:
        sink = Sink(file=out)
    try:
        with decision_batches(store, policy, now=now) as batches:
            outcome = export_batches(fmt, _batch_frames(batches), sink, previous)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    if since_last is not None:
        _record(store, since_last, fmt, outcome.additions, outcome.removes, now)
    removed = outcome.removes.height
    skipped = outcome.skipped
    return ExportResult(
        format=fmt.name,
        files=tuple(sink.written) if out is not None else tuple(sink.names),
        exported=outcome.listed if fmt.snapshot else outcome.added,
        added=outcome.added,
        removed=removed if fmt.removals else 0,
        removals_not_expressible=0 if fmt.removals else removed,
        skipped=tuple(zip(skipped["address"].to_list(), skipped["problem"].to_list(), strict=True)),
        contents=tuple((name, data.decode("utf-8")) for name, data in sink.contents),
    )


def _target_state(store: Store, name: str, fmt: Exporter) -> pl.DataFrame:
    """What target ``name`` already holds (``address``, ``kind``)."""
    known = store.con.execute(
        "SELECT format FROM suppression_export_targets WHERE name = ?", [name]
    ).fetchall()
    if known and known[0][0] != fmt.name:
        raise ExportError(f"target {name!r} is a {known[0][0]} target, not {fmt.name}")
    prev = pl.from_arrow(
        store.con.sql(
            "SELECT address, kind FROM suppression_export_state WHERE name = ?", params=[name]
        ).to_arrow_table()
    )
    assert isinstance(prev, pl.DataFrame)
    return prev.cast(_STATE_SCHEMA)  # type: ignore[arg-type]


def _record(
    store: Store,
    name: str,
    fmt: Exporter,
    added: pl.DataFrame,
    removes: pl.DataFrame,
    now: datetime,
) -> None:
    gone = removes.select("address")
    with store.transaction() as con:
        con.execute(
            "INSERT INTO suppression_export_targets (name, format, created_at, last_run_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at",
            [name, fmt.name, now, now],
        )
        con.register("mtalens_export_added", added.to_arrow())
        con.register("mtalens_export_gone", gone.to_arrow())
        try:
            if fmt.removals:
                con.execute(
                    "DELETE FROM suppression_export_state WHERE name = ? "
                    "AND address IN (SELECT address FROM mtalens_export_gone)",
                    [name],
                )
            con.execute(
                "INSERT OR REPLACE INTO suppression_export_state "
                "SELECT ?, address, kind, ? FROM mtalens_export_added",
                [name, now],
            )
        finally:
            con.unregister("mtalens_export_added")
            con.unregister("mtalens_export_gone")
