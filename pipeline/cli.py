"""The `mtalens` command line: thin. Each command opens the store, makes one library call and
renders the result; library errors become a one-line message and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.store import StoreError

app = typer.Typer(
    name="mtalens",
    help="Mail server log analysis and bounce processing (Postfix logs, DSNs, DuckDB).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store file [default: ./mtalens.duckdb]"),
]


def main() -> None:
    try:
        app()
    except StoreError as exc:
        print(f"mtalens: {exc}", file=sys.stderr)
        sys.exit(2)
