"""`mtalens bounces parse|ingest`: decode bounce and complaint emails (thin; see pipeline/bounces.py)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mtalens.pipeline.exitcodes import ExitCode

if TYPE_CHECKING:
    from mtalens.pipeline.bounces import BounceRow

bounces_app = typer.Typer(
    name="bounces",
    help="Decode bounces (DSNs), complaints (ARF) and auto-replies.",
    no_args_is_help=True,
)

PathsArg = Annotated[
    list[str], typer.Argument(help="Maildirs, mbox files, .eml files or directories")
]
_TABLE_COLS = ("message", "recipient", "kind", "status", "reply_code", "reason", "hard", "source")


def _report_unreadable(path: str, reason: str) -> None:
    print(f"mtalens: {path}: {reason}", file=sys.stderr)


def _outcome(paths: list[str], unreadable: int) -> ExitCode:
    """OK, PARTIAL when some paths could not be read, USAGE when none could."""
    if not unreadable:
        return ExitCode.OK
    return ExitCode.USAGE if unreadable >= len(paths) else ExitCode.PARTIAL


@bounces_app.command("parse")
def parse(
    paths: PathsArg,
    fmt: Annotated[
        str, typer.Option("--format", help="json (one object per line) or table")
    ] = "json",
) -> None:
    """Decode messages and print one row per recipient; nothing is stored.

    A message that cannot be decoded is a row too, with kind `undecodable` and the reason.
    Exit codes: 0 every path was read; 3 some paths could not be read (each named on stderr);
    2 none could, or a bad option."""
    from mtalens.pipeline.bounces import Decoded, failure_row, parse_paths

    if fmt not in ("json", "table"):
        raise typer.BadParameter("--format must be json or table")
    unreadable = 0

    def on_error(path: str, reason: str) -> None:
        nonlocal unreadable
        unreadable += 1
        _report_unreadable(path, reason)

    if fmt == "table":
        print("\t".join(_TABLE_COLS))
    for item in parse_paths(paths, on_error=on_error):
        _print_row(failure_row(item) if isinstance(item, Decoded) else item, fmt)
    code = _outcome(paths, unreadable)
    if code:
        raise typer.Exit(code)


def _print_row(row: BounceRow, fmt: str) -> None:
    data = row.to_json()
    if fmt == "json":
        print(json.dumps(data, ensure_ascii=False))
    else:
        print("\t".join("" if data[c] is None else _cell(str(data[c])) for c in _TABLE_COLS))


def _cell(text: str) -> str:
    # one row per line, whatever the message says: tabs, newlines, escapes, bidi controls go
    from mtalens.pipeline.cells import terminal_text

    return terminal_text(text, " ")


@bounces_app.command("ingest")
def ingest_cmd(
    paths: PathsArg,
    db: Annotated[
        str | None, typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store file")
    ] = None,
) -> None:
    """Decode, classify and store reports, recipients and complaints (idempotent).

    Messages that cannot be decoded are quarantined with a reason (counted in the summary).
    Exit codes: 0 every path was read; 3 some paths could not be read (each named on stderr);
    2 none could, or a bad option, config or store."""
    from mtalens.pipeline import upkeep
    from mtalens.pipeline.bounces import ingest
    from mtalens.pipeline.config import load_config
    from mtalens.pipeline.store import Store

    policy = load_config(None).suppressions
    with Store.open(db) as store:
        r = ingest(store, paths)
        upkeep.fold_new_rows(store, policy)
    for path, reason in r.unreadable:
        _report_unreadable(path, reason)
    print(
        f"read {r.read}: stored {r.stored}, duplicates {r.duplicates}, quarantined "
        f"{r.quarantined}; {r.recipients} recipients, {r.complaints} complaints"
    )
    code = _outcome(paths, len(r.unreadable))
    if code:
        raise typer.Exit(code)
