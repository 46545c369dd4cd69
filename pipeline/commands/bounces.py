"""`mtalens bounces parse|ingest`: decode bounce and complaint emails (thin; see pipeline/bounces.py)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from mtalens.pipeline import upkeep
from mtalens.pipeline.bounces import BounceRow, Decoded, ingest, parse_paths
from mtalens.pipeline.config import ConfigError, load_config
from mtalens.pipeline.store import Store

bounces_app = typer.Typer(
    name="bounces",
    help="Decode bounces (DSNs), complaints (ARF) and auto-replies.",
    no_args_is_help=True,
)

PathsArg = Annotated[
    list[str], typer.Argument(help="Maildirs, mbox files, .eml files or directories")
]
_TABLE_COLS = ("message", "recipient", "kind", "status", "reply_code", "reason", "hard", "source")


@bounces_app.command("parse")
def parse(
    paths: PathsArg,
    fmt: Annotated[
        str, typer.Option("--format", help="json (one object per line) or table")
    ] = "json",
) -> None:
    """Decode messages and print one row per recipient; nothing is stored."""
    if fmt not in ("json", "table"):
        raise typer.BadParameter("--format must be json or table")
    failed = 0
    if fmt == "table":
        print("\t".join(_TABLE_COLS))
    for item in parse_paths(paths):
        if isinstance(item, Decoded):
            failed += 1
            print(f"{item.message.source}#{item.message.index}: {item.reason}", file=sys.stderr)
            continue
        _print_row(item, fmt)
    if failed:
        raise typer.Exit(1)


def _print_row(row: BounceRow, fmt: str) -> None:
    data = row.to_json()
    if fmt == "json":
        print(json.dumps(data, ensure_ascii=False))
    else:
        print("\t".join("" if data[c] is None else str(data[c]) for c in _TABLE_COLS))


@bounces_app.command("ingest")
def ingest_cmd(
    paths: PathsArg,
    db: Annotated[
        str | None, typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store file")
    ] = None,
) -> None:
    """Decode, classify and store reports, recipients and complaints (idempotent)."""
    try:
        policy = load_config(None).suppressions
    except ConfigError as exc:
        print(f"mtalens: {exc}", file=sys.stderr)
        raise typer.Exit(2) from exc
    with Store.open(db) as store:
        r = ingest(store, paths)
        upkeep.fold_new_rows(store, policy)
    print(
        f"read {r.read}: stored {r.stored}, duplicates {r.duplicates}, quarantined "
        f"{r.quarantined}; {r.recipients} recipients, {r.complaints} complaints"
    )
