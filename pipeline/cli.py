"""The `mtalens` command line: thin. Each command opens the store, makes one library call and
renders the result; library errors become a one-line message and a non-zero exit."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from mtalens.pipeline import config, reports, upkeep
from mtalens.pipeline.commands.bounces import bounces_app
from mtalens.pipeline.commands.diagnose import diagnose
from mtalens.pipeline.commands.dns import dns_app
from mtalens.pipeline.commands.suppressions import suppressions_app
from mtalens.pipeline.commands.watch import watch
from mtalens.pipeline.ingest import IngestError, LogIngestor, expand_paths
from mtalens.pipeline.render import Format, render_tables
from mtalens.pipeline.reports import REPORT_SECTIONS
from mtalens.pipeline.store import Store, StoreError
from mtalens.pipeline.timerange import TimeRangeError, time_range

app = typer.Typer(
    name="mtalens",
    help="Mail server log analysis and bounce processing (Postfix logs, DSNs, DuckDB).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bounces_app, name="bounces")
app.add_typer(dns_app, name="dns")
app.command("diagnose")(diagnose)
app.add_typer(suppressions_app, name="suppressions")
app.command()(watch)

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store file (default: ./mtalens.duckdb)"),
]


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Start (ISO date/time, UTC by default, or 24h / 7d back)."),
]
UntilOption = Annotated[str | None, typer.Option("--until", help="End, exclusive (same forms).")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"mtalens: {message}", err=True)
    raise typer.Exit(code)


def _range(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    try:
        return time_range(since, until, now=datetime.now(UTC))
    except TimeRangeError as exc:
        _fail(str(exc))


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Log files or directories (rotated and .gz too).")
    ],
    db: DbOption = None,
    year: Annotated[
        int | None,
        typer.Option(
            help="Year of RFC 3164 timestamps (they have none) (default: from file mtime)."
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone", help="IANA zone of timestamps without an offset (default: local)."
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Summary format.")] = Format.table,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
    queue_lifetime: Annotated[
        str | None,
        typer.Option(
            "--queue-lifetime",
            help="Postfix's maximal_queue_lifetime (5d, 12h; default: \\[postfix] in mtalens.toml,"
            " else 5d): a message silent for longer (plus 3d) is counted as a new one.",
        ),
    ] = None,
) -> None:
    """Read Postfix logs into the store. Re-reading what was already read adds nothing."""
    try:
        cfg = config.load_config(None)
        lifetime, policy = cfg.queue_lifetime(queue_lifetime), cfg.suppressions
    except config.ConfigError as exc:
        _fail(str(exc))
    try:
        tz = ZoneInfo(timezone) if timezone else _local_zone()
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"unknown time zone {timezone!r} (use an IANA name such as Europe/Berlin or UTC)")
    try:
        files = expand_paths(paths)
    except IngestError as exc:
        _fail(str(exc))
    show = sys.stderr.isatty() if progress is None else progress
    total = sum(f.stat().st_size for f in files)
    with Store.open(db) as store:
        if show:
            with typer.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:
                stats = LogIngestor(store, tz=tz, year=year, progress=bar.update,
                                    queue_lifetime=lifetime).run(files)  # fmt: skip
        else:
            stats = LogIngestor(store, tz=tz, year=year, queue_lifetime=lifetime).run(files)
        upkeep.fold_new_rows(store, policy)
    out = stats.as_dict()
    if fmt is Format.json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(
            f"sources {out['sources']} ({out['skipped_sources']} already ingested), "
            f"bytes {out['bytes']:,}\n"
            f"lines read {stats.read:,} = stored {stats.stored:,} + ignored {stats.ignored:,}"
            f" + quarantined {stats.quarantined:,}"
        )
        for rule, n in stats.ignored_by_rule.most_common():
            typer.echo(f"  ignored     {n:>10,}  {rule}")
        for reason, n in stats.quarantined_by_reason.most_common():
            typer.echo(f"  quarantined {n:>10,}  {reason}")
    if not stats.balanced:  # cannot happen; if it does, say so loudly
        _fail("line accounting does not add up: this is a bug", 3)


def _local_zone() -> tzinfo:
    tz = datetime.now().astimezone().tzinfo
    return tz if tz is not None else UTC


@app.command()
def report(
    db: DbOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    fmt: FormatOption = Format.table,
    top: Annotated[int, typer.Option(help="Rows per ranked section.")] = 20,
    section: Annotated[
        list[str] | None,
        typer.Option("--section", help=f"Only these sections: {', '.join(REPORT_SECTIONS)}."),
    ] = None,
) -> None:
    """What pflogsumm shows, and more, for any time range, computed in the store."""
    start, end = _range(since, until)
    with Store.open(db, read_only=True) as store:
        try:
            tables = reports.report(
                store, since=start, until=end, top=top, sections=tuple(section) if section else None
            )
        except reports.QueryError as exc:
            _fail(str(exc))
    typer.echo(
        render_tables(tables, fmt, single=len(tables) == 1 and fmt is not Format.table), nl=False
    )


stats_app = typer.Typer(help="Statistics over the store.", no_args_is_help=True)
app.add_typer(stats_app, name="stats")


@stats_app.command("delays")
def stats_delays(
    db: DbOption = None,
    by: Annotated[
        str, typer.Option("--by", help=f"Group by: {', '.join(reports.DELAY_GROUPS)}.")
    ] = "domain",
    since: SinceOption = None,
    until: UntilOption = None,
    fmt: FormatOption = Format.table,
    status: Annotated[
        str, typer.Option(help="Delivery status to include (sent, deferred, bounced, any).")
    ] = "sent",
    top: Annotated[int, typer.Option(help="Rows.")] = 50,
) -> None:
    """Count and p50/p90/p99/max of total delay and of each of the four delay stages."""
    start, end = _range(since, until)
    with Store.open(db, read_only=True) as store:
        try:
            t = reports.delay_stats(
                store,
                by=by,
                since=start,
                until=end,
                top=top,
                status=None if status == "any" else status,
            )
        except reports.QueryError as exc:
            _fail(str(exc))
    typer.echo(render_tables([t], fmt, single=True), nl=False)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the store's views (read-only).")],
    db: DbOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Read-only SQL over the store; `--format json` prints one JSON array of objects."""
    with Store.open(db, read_only=True) as store:
        try:
            t = reports.query(store, sql)
        except reports.QueryError as exc:
            _fail(str(exc))
    typer.echo(render_tables([t], fmt, single=True), nl=False)


def main() -> None:
    try:
        app()
    except StoreError as exc:
        print(f"mtalens: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
