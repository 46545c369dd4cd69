"""`mtalens suppressions list|add|remove|explain|export` (thin; see pipeline/suppressions.py)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mtalens.pipeline import exports, suppressions, upkeep
from mtalens.pipeline.config import ConfigError, SuppressionsConfig, load_config
from mtalens.pipeline.render import Format, render_tables
from mtalens.pipeline.reports import Table
from mtalens.pipeline.store import Store, StoreError

suppressions_app = typer.Typer(
    name="suppressions",
    help="Suppression lists: which addresses to stop mailing, why, and exports.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None, typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store file")
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", envvar="MTALENS_CONFIG", help="mtalens.toml")
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
AsOfOption = Annotated[
    datetime | None, typer.Option("--as-of", help="Evaluate as of this UTC time (default: now).")
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"mtalens: {message}", err=True)
    raise typer.Exit(code)


def _policy(config: str | None) -> SuppressionsConfig:
    try:
        return load_config(config).suppressions
    except ConfigError as exc:
        _fail(str(exc))


def _now(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)


def _open(db: str | None, *, write: bool) -> Store:
    """Read-write when possible (to normalise new addresses); read-only if a daemon holds it."""
    try:
        return Store.open(db)
    except StoreError as exc:
        if write or "locked" not in str(exc):
            raise
        return Store.open(db, read_only=True)


def _pending_note(
    store: Store, now: datetime, policy: SuppressionsConfig, *, build: bool = True
) -> None:
    # a writable store gets its summary built or brought up to date (pipeline/upkeep.py), so
    # the next run starts from it (explain reads one address: it folds, it does not build)
    if upkeep.fold_new_rows(store, policy, build=build, now=now) is not None:
        return  # the fold normalised every new address first (one scan, not two)
    pending = suppressions.prepare(store, now=now)
    if pending:
        typer.echo(
            f"mtalens: {pending} addresses not normalised yet (store is read-only): "
            "they count as invalid",
            err=True,
        )


def _echo(tables: list[Table], fmt: Format) -> None:
    typer.echo(render_tables(tables, fmt, single=len(tables) == 1), nl=False)


@suppressions_app.command("list")
def list_cmd(
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    as_of: AsOfOption = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also addresses with evidence that are not suppressed.")
    ] = False,
    invalid: Annotated[bool, typer.Option("--invalid", help="Unusable addresses instead.")] = False,
    sender_side: Annotated[
        bool, typer.Option("--sender-side", help="Sender-side failures instead (last N days).")
    ] = False,
    days: Annotated[int, typer.Option(help="Window for --sender-side.")] = 7,
    never: Annotated[
        bool, typer.Option("--never", help="The never-suppress list instead.")
    ] = False,
) -> None:
    """The suppression list (or invalid addresses, sender-side problems, never-suppress list)."""
    policy, now = _policy(config), _now(as_of)
    with _open(db, write=False) as store:
        _pending_note(store, now, policy)
        if invalid:
            table = suppressions.invalid_addresses(store, now=now)
        elif sender_side:
            table = suppressions.sender_side_problems(
                store, policy, now=now, since=now - timedelta(days=days)
            )
        elif never:
            table = suppressions.never_list(store)
        else:
            items = suppressions.list_suppressions(store, policy, now=now, include_all=show_all)
            cols: tuple[str, ...] = suppressions.LIST_COLUMNS
            if show_all:
                cols = ("address", "suppressed", "kind", "reason", "not_suppressed_because")
            table = suppressions.suppressions_table(items, cols)
    _echo([table], fmt)


@suppressions_app.command("add")
def add_cmd(
    address: Annotated[str, typer.Argument(help="Address (or @domain with --never).")],
    db: DbOption = None,
    fmt: FormatOption = Format.table,
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    days: Annotated[int | None, typer.Option(help="Expire after this many days.")] = None,
    never: Annotated[bool, typer.Option("--never", help="Add to the never-suppress list.")] = False,
    as_of: AsOfOption = None,
) -> None:
    """Suppress an address by hand, or put it (or @domain) on the never-suppress list."""
    now = _now(as_of)
    with Store.open(db) as store:
        try:
            if never:
                key = suppressions.never_add(store, address, now=now, note=note)
            else:
                expires = now + timedelta(days=days) if days else None
                key = suppressions.add(store, address, now=now, note=note, expires_at=expires)
        except suppressions.SuppressionError as exc:
            _fail(str(exc))
    action = "never-suppress" if never else "suppressed"
    _echo([Table("added", ["address", "action"], [(key, action)])], fmt)


@suppressions_app.command("remove")
def remove_cmd(
    address: Annotated[str, typer.Argument(help="Address (or @domain with --never).")],
    db: DbOption = None,
    fmt: FormatOption = Format.table,
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    never: Annotated[
        bool, typer.Option("--never", help="Take it off the never-suppress list instead.")
    ] = False,
    as_of: AsOfOption = None,
) -> None:
    """Lift a suppression (evidence up to now is set aside), or a never-suppress entry."""
    now = _now(as_of)
    with Store.open(db) as store:
        try:
            if never:
                if not suppressions.never_remove(store, address):
                    _fail(f"{address} is not on the never-suppress list", 1)
                key, action = address, "never-suppress entry removed"
            else:
                key = suppressions.remove(store, address, now=now, note=note)
                action = "evidence set aside"
        except suppressions.SuppressionError as exc:
            _fail(str(exc))
    _echo([Table("removed", ["address", "action"], [(key, action)])], fmt)


@suppressions_app.command("explain")
def explain_cmd(
    address: Annotated[str, typer.Argument(help="The address to explain.")],
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    as_of: AsOfOption = None,
) -> None:
    """Why an address is (or is not) suppressed: the decision and every event behind it."""
    policy, now = _policy(config), _now(as_of)
    with _open(db, write=False) as store:
        _pending_note(store, now, policy, build=False)
        e = suppressions.explain(store, policy, address, now=now)
    typer.echo(render_tables(suppressions.explanation_tables(e), fmt), nl=False)


@suppressions_app.command("export")
def export_cmd(
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="One of: " + ", ".join(e.name for e in exports.EXPORTERS),
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (or directory for split formats).")
    ] = None,
    since_last: Annotated[
        str | None, typer.Option("--since-last", help="Named target: emit only what it lacks.")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_of: AsOfOption = None,
) -> None:
    """Export the list for a mailing system. Unsafe addresses are reported, not exported."""
    policy, now = _policy(config), _now(as_of)
    with _open(db, write=since_last is not None) as store:
        _pending_note(store, now, policy)
        try:
            r = exports.export_suppressions(
                store,
                policy,
                export_format,
                now=now,
                out=output,
                since_last=since_last,
                stream=sys.stdout.buffer,
            )
        except (exports.ExportError, suppressions.SuppressionError) as exc:
            _fail(str(exc))
    for _name, text in r.contents:
        sys.stdout.write(text)
    for address, problem in r.skipped:
        typer.echo(f"mtalens: not exported: {json.dumps(address)}: {problem}", err=True)
    typer.echo(
        f"mtalens: {r.format}: exported {r.exported}, added {r.added}, removed {r.removed}, "
        f"skipped {len(r.skipped)}"
        + (
            f", {r.removals_not_expressible} removals the format cannot express"
            if r.removals_not_expressible
            else ""
        )
        + (f"; files: {' '.join(r.files)}" if output is not None else ""),
        err=True,
    )
