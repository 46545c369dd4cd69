"""`mtalens suppressions list|add|remove|explain|export` (thin; see pipeline/suppressions.py).

The library (polars, pyarrow, duckdb, the exporters) is imported inside each command, so that
`mtalens --help` does not pay for it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, NoReturn

import typer

from mtalens.pipeline.exitcodes import ExitCode, InputError
from mtalens.pipeline.render import Format, render_tables

if TYPE_CHECKING:
    from mtalens.pipeline.config import SuppressionsConfig
    from mtalens.pipeline.reports import Table
    from mtalens.pipeline.store import Store

# The names of exports.EXPORTERS, for the help text without importing the exporters
# (tests/test_suppressions_cli.py checks that the two agree).
EXPORT_FORMATS: Final = (
    "csv", "jsonl", "ses-csv", "ses-jsonl", "mailgun-bounces", "mailgun-complaints",
    "mailgun-unsubscribes", "sendgrid", "postmark", "listmonk", "postfix-access",
    "postfix-transport",
)  # fmt: skip

suppressions_app = typer.Typer(
    name="suppressions",
    help="Suppression lists: which addresses to stop mailing, why, and exports.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", "--lake", envvar="MTALENS_DB", help="DuckDB store file, or a lake directory."
    ),
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", envvar="MTALENS_CONFIG", help="mtalens.toml")
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
AsOfOption = Annotated[
    datetime | None, typer.Option("--as-of", help="Evaluate as of this UTC time (default: now).")
]


def _fail(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    typer.echo(f"mtalens: {message}", err=True)
    raise typer.Exit(code)


def _policy(config: str | None) -> SuppressionsConfig:
    from mtalens.pipeline.config import ConfigError, load_config

    try:
        return load_config(config).suppressions
    except ConfigError as exc:
        _fail(str(exc))


def _now(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)


def _open(db: str | None, *, write: bool) -> Store:
    """Read-write when possible (to normalise new addresses); read-only if a daemon holds it.
    The read-write try does not wait for the lock (the read-only open does, see
    pipeline/store.py) unless the command must write."""
    from mtalens.pipeline.store import Store, StoreError

    if write:
        return Store.open(db)
    try:
        return Store.open(db, lock_wait=0)
    except StoreError as exc:
        if "locked" not in str(exc):
            raise
        return Store.open(db, read_only=True)


def _pending_note(
    store: Store, now: datetime, policy: SuppressionsConfig, *, build: bool = True
) -> None:
    from mtalens.pipeline import suppressions, upkeep

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
    days: Annotated[
        int, typer.Option(min=1, help="Window for --sender-side, in days (at least 1).")
    ] = 7,
    never: Annotated[
        bool, typer.Option("--never", help="The never-suppress list instead.")
    ] = False,
) -> None:
    """The suppression list (or invalid addresses, sender-side problems, never-suppress list)."""
    from mtalens.pipeline import suppressions

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
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Expire after this many days (at least 1; default: never)."),
    ] = None,
    never: Annotated[bool, typer.Option("--never", help="Add to the never-suppress list.")] = False,
    as_of: AsOfOption = None,
) -> None:
    """Suppress an address by hand, or put it (or @domain) on the never-suppress list.

    The address is stored in its normal form: domain and the ASCII letters of the local part lower-cased (Spammy.Person@Example.COM is spammy.person@example.com), as every other command and the evidence from logs and DSNs compare it. Without --days the suppression lasts until `suppressions remove`.
    """  # one line per paragraph: the help keeps line breaks
    from mtalens.pipeline import suppressions
    from mtalens.pipeline.reports import Table
    from mtalens.pipeline.store import Store

    now = _now(as_of)
    expires = None if never or days is None else now + timedelta(days=days)
    with Store.open(db) as store:
        try:
            if never:
                key = suppressions.never_add(store, address, now=now, note=note)
            else:
                key = suppressions.add(store, address, now=now, note=note, expires_at=expires)
        except InputError as exc:
            _fail(str(exc), exc.exit_code)
    _note_normalised(address, key)
    action = "never suppressed" if never else "suppressed by hand"
    until = "" if never else (expires.isoformat() if expires else "never")
    _echo([Table("added", ["address", "action", "expires_at"], [(key, action, until)])], fmt)


@suppressions_app.command("remove")
def remove_cmd(
    address: Annotated[str, typer.Argument(help="Address (or @domain with --never).")],
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    never: Annotated[
        bool, typer.Option("--never", help="Take it off the never-suppress list instead.")
    ] = False,
    as_of: AsOfOption = None,
) -> None:
    """Lift a suppression (its evidence up to now is set aside), or a never-suppress entry.

    The address is normalised as `add` does.

    Exit codes: 0 the suppression (or entry) was lifted; 2 the address is not suppressed now (never was, already removed, expired, below the soft threshold) or not on the never-suppress list: nothing was recorded and the message says why (2 also for an unusable address or store).
    """  # one line per paragraph: the help keeps line breaks
    from mtalens.pipeline import suppressions
    from mtalens.pipeline.reports import Table
    from mtalens.pipeline.store import Store

    now = _now(as_of)
    policy = None if never else _policy(config)
    with Store.open(db) as store:
        try:
            if policy is None:
                key = suppressions.never_key(address)
                if not suppressions.never_remove(store, address):
                    spelt = "" if key == address else f" (as {key})"
                    raise suppressions.NotListedError(
                        f"{address}{spelt} is not on the never-suppress list; nothing removed"
                    )
                row: tuple[object, ...] = (key, "never-suppress entry removed", "")
            else:
                _pending_note(store, now, policy, build=False)
                lifted = suppressions.lift(store, policy, address, now=now, note=note)
                kind, reason = lifted.kind or "", lifted.reason or ""
                was = kind if reason in ("", kind) else f"{kind} {reason}"
                row = (lifted.address, "suppression lifted, evidence up to now set aside", was)
        except InputError as exc:
            _fail(str(exc), exc.exit_code)
    _note_normalised(address, str(row[0]))
    _echo([Table("removed", ["address", "action", "was"], [row])], fmt)


def _note_normalised(given: str, key: str) -> None:
    if key != given.strip():
        typer.echo(f"mtalens: {given} normalised to {key}", err=True)


@suppressions_app.command("explain")
def explain_cmd(
    address: Annotated[str, typer.Argument(help="The address to explain.")],
    db: DbOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    as_of: AsOfOption = None,
) -> None:
    """Why an address is (or is not) suppressed: the decision and every event behind it.

    Something that is not an email address is explained too when logs or DSNs hold events
    written that way (a broken recipient). Exit codes: 0 explained; 2 not an email address and
    no event has it, a bad option, or no usable store."""
    from mtalens.pipeline import suppressions

    policy, now = _policy(config), _now(as_of)
    with _open(db, write=False) as store:
        _pending_note(store, now, policy, build=False)
        e = suppressions.explain(store, policy, address, now=now)
    if e.problem is not None and not e.events:
        typer.echo(f"mtalens: {address!r}: {e.problem}, and no event has it", err=True)
        raise typer.Exit(ExitCode.USAGE)
    typer.echo(render_tables(suppressions.explanation_tables(e), fmt), nl=False)


@suppressions_app.command("export")
def export_cmd(
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="One of: " + ", ".join(EXPORT_FORMATS),
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
    from mtalens.pipeline import exports, suppressions

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
