"""Exporting the suppression list in the formats mailing systems import.

One writer per format, listed in ``EXPORTERS`` (an explicit, ordered registry). Each writer
says which addresses it cannot carry safely (``problems``), and turns the additions (and, where
the format has them, removals) into named text files. ``export_suppressions`` does the rest:
evaluates the policy (pipeline/suppressions.py), reports unsafe addresses instead of exporting
them, and for a named target (``since_last``) remembers what the target already holds so the
next run emits only the difference.

Addresses and diagnostics come from mail, so they are attacker-controlled. Every format
exports only plain ASCII addresses (dot-atom local part, LDH domain: no quotes, spaces, commas,
brackets or control characters), so no address can add a line or a field anywhere. CSV formats
also refuse addresses that a spreadsheet would read as a formula (leading ``=``, ``+``, ``-``,
``@``; OWASP "CSV Injection"), and the generic CSV neutralises text fields the same way (a
leading apostrophe, control characters replaced by spaces). Postfix maps refuse a leading ``#``
(postmap(1): a comment line). JSON is always built by ``json.dumps`` or polars' JSON encoder.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import polars as pl

from pipeline.config import SuppressionsConfig
from pipeline.store import Store
from pipeline.suppressions import SuppressionError, decisions_frame

# RFC 5322 section 3.2.3 atext, dots between atoms, LDH domain already lower-cased.
_SAFE_ADDRESS: Final = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"
)
_FORMULA_START: Final = r"^[=+\-@\t\r]"
_CONTROL: Final = r"[\x00-\x1f\x7f\u0085\u2028\u2029]"
UNSAFE_ADDRESS: Final = "not a plain ASCII address (quoted, literal, non-ASCII or odd characters)"
FORMULA: Final = "starts with a character a spreadsheet reads as a formula"
COMMENT: Final = "starts with '#', a comment in a Postfix map"

COLUMNS: Final = (
    "address", "kind", "reason", "category", "rule_id", "policy_rule", "first_evidence",
    "last_evidence", "evidence_count", "suppressed_at", "expires_at", "status_code",
    "reply_code", "diagnostic", "role",
)  # fmt: skip


class ExportError(ValueError):
    """The export cannot be done as asked (unknown format, missing output, wrong target)."""


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

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]: ...


def _base_problems(frame: pl.DataFrame, *extra: tuple[str, str]) -> pl.Series:
    addr = pl.col("address")
    expr: Any = pl.when(~addr.str.contains(_SAFE_ADDRESS)).then(pl.lit(UNSAFE_ADDRESS))
    for pattern, message in extra:
        expr = expr.when(addr.str.contains(pattern)).then(pl.lit(message))
    return frame.select(expr.otherwise(pl.lit(None, dtype=pl.String)).alias("problem"))["problem"]


def _csv_text(frame: pl.DataFrame, *, header: bool) -> str:
    return frame.write_csv(include_header=header, line_terminator="\n", quote_style="necessary")


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _rfc2822(col: str) -> pl.Expr:
    # RFC 5322 section 3.3 date-time, in UTC (Mailgun's created_at)
    return pl.col(col).dt.convert_time_zone("UTC").dt.strftime("%a, %d %b %Y %H:%M:%S +0000")


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


def _neutralise(col: str) -> pl.Expr:
    text = pl.col(col).cast(pl.String).str.replace_all(_CONTROL, " ")
    return (
        pl.when(text.str.contains(_FORMULA_START)).then(pl.lit("'") + text).otherwise(text)
    ).alias(col)


@dataclass(frozen=True, slots=True)
class GenericCsv:
    name: str = "csv"
    description: str = "generic CSV, one row per suppression with its grounds (header row)"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        out = adds.select(
            [_neutralise(c) if adds[c].dtype == pl.String else pl.col(c) for c in COLUMNS]
        ).with_columns(
            pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            for c in ("first_evidence", "last_evidence", "suppressed_at", "expires_at")
        )
        return [("suppressions.csv", _csv_text(out, header=True))]


@dataclass(frozen=True, slots=True)
class GenericJsonl:
    name: str = "jsonl"
    description: str = "generic JSON lines, one object per suppression with its event ids"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        out = adds.select([*COLUMNS, "event_ids"]).with_columns(
            pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            for c in ("first_evidence", "last_evidence", "suppressed_at", "expires_at")
        )
        text = out.write_ndjson() if out.height else ""
        return [("suppressions.jsonl", text)]


# Amazon SES v2 account-level suppression list bulk import (CreateImportJob with a
# SuppressionListDestination; DataFormat CSV or JSON; SuppressionListImportAction PUT adds,
# DELETE removes): https://docs.aws.amazon.com/ses/latest/dg/sending-email-suppression-list.html
SES_FILE_LIMIT: Final = 100_000


def _ses_reason(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col("address"),
        pl.when(pl.col("kind") == "complaint")
        .then(pl.lit("COMPLAINT"))
        .otherwise(pl.lit("BOUNCE"))
        .alias("reason"),
    )


@dataclass(frozen=True, slots=True)
class SesCsv:
    name: str = "ses-csv"
    description: str = "Amazon SES suppression import, headerless CSV address,BOUNCE|COMPLAINT"
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        files = []
        for action, frame in (("put", adds), ("delete", removes)):
            rows = _ses_reason(frame)
            for i, start in enumerate(range(0, rows.height, SES_FILE_LIMIT), 1):
                part = rows.slice(start, SES_FILE_LIMIT)
                files.append((f"ses-{action}-{i:04d}.csv", _csv_text(part, header=False)))
        return files


@dataclass(frozen=True, slots=True)
class SesJsonl:
    name: str = "ses-jsonl"
    description: str = 'Amazon SES suppression import, JSON lines {"emailAddress","reason"}'
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        files = []
        for action, frame in (("put", adds), ("delete", removes)):
            rows = _ses_reason(frame).rename({"address": "emailAddress"})
            for i, start in enumerate(range(0, rows.height, SES_FILE_LIMIT), 1):
                files.append(
                    (
                        f"ses-{action}-{i:04d}.jsonl",
                        rows.slice(start, SES_FILE_LIMIT).write_ndjson(),
                    )
                )
        return files


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

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        rows = adds.filter(pl.col("kind").is_in(["hard", "soft"])).select(
            pl.col("address"),
            pl.col("reply_code")
            .fill_null(pl.when(pl.col("kind") == "hard").then(550).otherwise(452))
            .cast(pl.Int64)
            .alias("code"),
            _neutralise("error_text").alias("error"),
            _rfc2822("suppressed_at").alias("created_at"),
        )
        return [("mailgun-bounces.csv", _csv_text(rows, header=True))]


@dataclass(frozen=True, slots=True)
class MailgunComplaints:
    name: str = "mailgun-complaints"
    description: str = "Mailgun complaints import CSV"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        rows = adds.filter(pl.col("kind") == "complaint").select(
            pl.col("address"), _rfc2822("suppressed_at").alias("created_at")
        )
        return [("mailgun-complaints.csv", _csv_text(rows, header=True))]


@dataclass(frozen=True, slots=True)
class MailgunUnsubscribes:
    name: str = "mailgun-unsubscribes"
    description: str = "Mailgun unsubscribes import CSV (manual suppressions; tag *: all)"
    multi_file: bool = False
    removals: bool = False
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame, (_FORMULA_START, FORMULA))

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        rows = adds.filter(pl.col("kind") == "manual").select(
            pl.col("address"),
            pl.lit("*").alias("tags"),
            _rfc2822("suppressed_at").alias("created_at"),
        )
        return [("mailgun-unsubscribes.csv", _csv_text(rows, header=True))]


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

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        files = [
            (f"sendgrid-global-add-{i:04d}.json", json.dumps({"recipient_emails": list(chunk)}))
            for i, chunk in enumerate(_chunks(adds["address"].to_list(), SENDGRID_BATCH), 1)
        ]
        if removes.height:
            lines = [
                json.dumps(
                    {
                        "method": "DELETE",
                        "path": "/v3/asm/suppressions/global/" + urllib.parse.quote(a, safe=""),
                    }
                )
                for a in removes["address"].to_list()
            ]
            files.append(("sendgrid-global-delete.jsonl", "\n".join(lines) + "\n"))
        return files


# Postmark suppressions API: POST /message-streams/{stream}/suppressions and
# .../suppressions/delete with {"Suppressions": [{"EmailAddress": ...}]}, 50 per request.
# https://postmarkapp.com/developer/api/suppressions-api
POSTMARK_BATCH: Final = 50


@dataclass(frozen=True, slots=True)
class Postmark:
    name: str = "postmark"
    description: str = "Postmark suppression request bodies (50 addresses each)"
    multi_file: bool = True
    removals: bool = True
    snapshot: bool = False

    def problems(self, frame: pl.DataFrame) -> pl.Series:
        return _base_problems(frame)

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        files = []
        for action, frame in (("add", adds), ("delete", removes)):
            for i, chunk in enumerate(_chunks(frame["address"].to_list(), POSTMARK_BATCH), 1):
                body = {"Suppressions": [{"EmailAddress": a} for a in chunk]}
                files.append((f"postmark-{action}-{i:04d}.json", json.dumps(body)))
        return files


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

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        rows = adds.select(
            pl.col("address").alias("email"),
            pl.col("address").alias("name"),
            pl.struct(
                pl.col("kind").alias("mtalens_kind"), pl.col("reason").alias("mtalens_reason")
            )
            .struct.json_encode()
            .alias("attributes"),
        )
        return [("listmonk-blocklist.csv", _csv_text(rows, header=True))]


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

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        lines = adds.select(
            pl.concat_str(
                pl.col("address"),
                pl.lit(" REJECT suppressed by mtalens: "),
                _word("kind"),
                pl.lit(" "),
                _word("reason"),
            )
        ).to_series()
        return [("access", "".join(line + "\n" for line in lines.to_list()))]


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

    def render(self, adds: pl.DataFrame, removes: pl.DataFrame) -> list[tuple[str, str]]:
        lines = adds.select(
            pl.concat_str(
                pl.col("address"),
                pl.lit(" error:"),
                _status_for(pl.col("kind"), pl.col("reason")),
                pl.lit(" suppressed by mtalens: "),
                _word("kind"),
                pl.lit(" "),
                _word("reason"),
            )
        ).to_series()
        return [("transport", "".join(line + "\n" for line in lines.to_list()))]


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
    files: tuple[str, ...]  # written paths, or names when returned in memory
    exported: int  # addresses in this export (additions, or all of them for a snapshot)
    added: int
    removed: int
    removals_not_expressible: int  # gone from the list, but the format cannot remove them
    skipped: tuple[tuple[str, str], ...]  # (address, problem): reported, not exported
    contents: tuple[tuple[str, str], ...] = ()  # (name, text) when no output path was given


def prepare_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns every writer may use, from ``suppressions.decisions_frame``."""
    return frame.with_columns(
        pl.coalesce(pl.col("diagnostic"), pl.col("reason")).alias("error_text")
    )


def export_frame(
    fmt: Exporter, frame: pl.DataFrame, previous: pl.DataFrame | None = None
) -> tuple[list[tuple[str, str]], pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """Pure part of an export: (files, additions, removals, skipped, removals not expressible).

    ``previous`` (a frame with ``address``) is what the target already holds."""
    frame = prepare_frame(frame)
    problems = fmt.problems(frame)
    frame = frame.with_columns(problems.alias("problem"))
    skipped = frame.filter(pl.col("problem").is_not_null()).select("address", "problem")
    current = frame.filter(pl.col("problem").is_null())
    if previous is None:
        adds = current
        removes = pl.DataFrame(schema={"address": pl.String, "kind": pl.String})
    else:
        adds = current.join(previous.select("address"), on="address", how="anti")
        gone = previous.join(current.select("address"), on="address", how="anti")
        removes = gone.select("address", pl.col("kind").cast(pl.String))
    unexpressible = 0 if fmt.removals else removes.height
    if fmt.snapshot:
        files = fmt.render(current, removes)
    else:
        files = fmt.render(adds, removes if fmt.removals else removes.clear())
    return files, adds, removes, skipped, unexpressible


def export_suppressions(
    store: Store,
    policy: SuppressionsConfig,
    fmt_name: str,
    *,
    now: datetime,
    out: Path | None = None,
    since_last: str | None = None,
) -> ExportResult:
    """Evaluate the policy and export; with ``since_last`` only what target NAME lacks."""
    fmt = exporter(fmt_name)
    if out is None and fmt.multi_file:
        raise ExportError(f"format {fmt.name} writes several files: give -o DIRECTORY")
    if since_last is not None and store.read_only:
        raise SuppressionError("--since-last records what was exported: the store must be writable")
    frame = decisions_frame(store, policy, now=now)
    previous = None
    if since_last is not None:
        known = store.con.execute(
            "SELECT format FROM suppression_export_targets WHERE name = ?", [since_last]
        ).fetchall()
        if known and known[0][0] != fmt.name:
            raise ExportError(f"target {since_last!r} is a {known[0][0]} target, not {fmt.name}")
        prev = pl.from_arrow(
            store.con.sql(
                "SELECT address, kind FROM suppression_export_state WHERE name = ?",
                params=[since_last],
            ).to_arrow_table()
        )
        assert isinstance(prev, pl.DataFrame)
        previous = prev
    files, adds, removes, skipped, unexpressible = export_frame(fmt, frame, previous)
    written: list[str] = []
    contents: tuple[tuple[str, str], ...] = ()
    if out is None:
        contents = tuple(files)
    else:
        written = _write_files(files, out, directory=fmt.multi_file)
    if since_last is not None:
        _record(store, since_last, fmt, adds, removes, now)
    return ExportResult(
        format=fmt.name,
        files=tuple(written) if out is not None else tuple(n for n, _ in files),
        exported=(frame.height - skipped.height) if fmt.snapshot else adds.height,
        added=adds.height,
        removed=removes.height if fmt.removals else 0,
        removals_not_expressible=unexpressible,
        skipped=tuple(zip(skipped["address"].to_list(), skipped["problem"].to_list(), strict=True)),
        contents=contents,
    )


def _write_files(files: list[tuple[str, str]], out: Path, *, directory: bool) -> list[str]:
    if directory:
        out.mkdir(parents=True, exist_ok=True)
        targets = [(out / name, text) for name, text in files]
    else:
        if len(files) != 1:
            raise ExportError("internal: a single-file format produced several files")
        targets = [(out, files[0][1])]
    written = []
    for path, text in targets:
        # write beside, then rename: a reader (postmap, an uploader) never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(str(path))
    return written


def _record(
    store: Store,
    name: str,
    fmt: Exporter,
    adds: pl.DataFrame,
    removes: pl.DataFrame,
    now: datetime,
) -> None:
    added = adds.select("address", "kind")
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
