"""The `mtalens` command line: thin. Each command opens the store, makes one library call and
renders the result; library errors become a one-line message and a non-zero exit."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime, tzinfo
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from mtalens.pipeline import reports
from mtalens.pipeline.cells import one_line

# Only light modules at the top: `mtalens --help` must start in well under 0.25 s, so DuckDB,
# polars and pyarrow are imported inside the commands that use them.
from mtalens.pipeline.commands.audit import audit_app
from mtalens.pipeline.commands.bounces import bounces_app
from mtalens.pipeline.commands.diagnose import diagnose
from mtalens.pipeline.commands.dns import dns_app
from mtalens.pipeline.commands.events import events_app
from mtalens.pipeline.commands.lake import lake_app
from mtalens.pipeline.commands.probe import probe
from mtalens.pipeline.commands.reports import reports_app
from mtalens.pipeline.commands.suppressions import suppressions_app
from mtalens.pipeline.commands.watch import watch
from mtalens.pipeline.commands.writing import LakeOption, WriterOption, open_for_writing
from mtalens.pipeline.exitcodes import EXIT_CODES_HELP, ExitCode, InputError
from mtalens.pipeline.render import Format, render_tables

if TYPE_CHECKING:
    from mtalens.pipeline.ingest import IngestStats

app = typer.Typer(
    name="mtalens",
    help="Mail server log analysis and bounce processing (Postfix logs, DSNs, DuckDB).\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mtalens {metadata.version('mtalens')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Mail server log analysis and bounce processing (Postfix logs, DSNs, DuckDB)."""


app.add_typer(audit_app, name="audit")
app.add_typer(bounces_app, name="bounces")
app.add_typer(dns_app, name="dns")
app.add_typer(events_app, name="events")
app.add_typer(lake_app, name="lake")
app.add_typer(reports_app, name="reports")
app.command("diagnose")(diagnose)
app.command("probe")(probe)
app.add_typer(suppressions_app, name="suppressions")
app.command()(watch)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        "--lake",
        envvar="MTALENS_DB",
        help="DuckDB store file (default: ./mtalens.duckdb), or a lake directory that"
        " `mtalens ingest --lake` writes.",
    ),
]


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Start (ISO date/time, UTC by default, or 24h / 7d back)."),
]
UntilOption = Annotated[str | None, typer.Option("--until", help="End, exclusive (same forms).")]


def _fail(message: str, code: int = ExitCode.USAGE) -> NoReturn:
    typer.echo(f"mtalens: {message}", err=True)
    raise typer.Exit(code)


def _range(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    from mtalens.pipeline.timerange import TimeRangeError, time_range

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
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Read every file as this log format (postfix, exim, exim-rejectlog, sendmail) instead of detecting each"
            " file's from its first lines. (--format is the summary's.)",
        ),
    ] = None,
    lake_dir: LakeOption = None,
    writer: WriterOption = None,
) -> None:
    """Read Postfix and Exim logs into the store. Re-reading what was already read adds nothing.

    Plain, rotated and compressed logs (gzip, bzip2, xz, zstd, recognised by their first
    bytes). A file that is not a log (binary, or mail) or whose compressed data is damaged is
    set aside with a warning and a quarantine row; the others are read.

    Exit codes: 0 every file read; 2 bad arguments, or no file could be used; 3 some files
    were set aside (see the warnings)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from mtalens.parsers import formats
    from mtalens.pipeline import config, upkeep
    from mtalens.pipeline.ingest import IngestError, LogIngestor, expand_paths
    from mtalens.pipeline.store import StoreError

    if log_format is not None and log_format not in formats.NAMES:
        _fail(f"unknown --log-format {log_format!r}: expected one of {', '.join(formats.NAMES)}")

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
    try:
        opened = open_for_writing(db, lake_dir, writer)
    except StoreError as exc:
        _fail(str(exc))
    # $MTALENS_COMMIT_LINES: lines per transaction (default 1,000,000, a lake 500,000; 200,000
    # without the C scanner): smaller commits publish a lake's rows sooner, redo less after a crash
    batch, commit = 200_000, 1_000_000  # LogIngestor's defaults
    if lake_dir is not None:
        # a lake publishes every 500,000 lines: its writer thread then writes one commit's
        # Parquet while the reader reads the next (5 M lines: 15.2 s and 897 MB peak, against
        # 17.6 s and 974 MB with 1 M-line commits; 250,000 lines: 18.8 s, more files)
        batch = commit = 500_000
    if knob := os.environ.get("MTALENS_COMMIT_LINES"):
        if not knob.isdigit() or int(knob) < 1:
            _fail(f"MTALENS_COMMIT_LINES={knob!r}: expected a whole number of lines")
        batch = commit = int(knob)
    with opened as store:
        if show:
            from mtalens.pipeline.progress import Progress

            with Progress("ingesting", total, stream=sys.stderr) as bar:
                stats = LogIngestor(store, tz=tz, year=year, progress=bar.update,
                                    queue_lifetime=lifetime, log_format=log_format,
                                    batch_lines=batch, commit_lines=commit).run(files)  # fmt: skip
        else:
            stats = LogIngestor(store, tz=tz, year=year, queue_lifetime=lifetime,
                                log_format=log_format, batch_lines=batch,
                                commit_lines=commit).run(files)  # fmt: skip
        upkeep.fold_new_rows(store, policy)
    out = stats.as_dict()
    if fmt is Format.json:
        typer.echo(json.dumps(out))
    elif fmt is Format.csv:
        typer.echo(render_tables([_ingest_table(stats)], Format.csv, single=True), nl=False)
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
    for path, n in stats.not_logs:
        typer.echo(
            f"mtalens: warning: {path}: none of its {n:,} lines looked like a mail log line "
            "(all quarantined): is this a log?",
            err=True,
        )
    if not stats.balanced:  # cannot happen; if it does, say so loudly
        _fail("line accounting does not add up: this is a bug", ExitCode.BUG)
    if stats.failed_sources or stats.not_logs:
        used = stats.sources - len(stats.failed_sources) - len(stats.not_logs)
        raise typer.Exit(ExitCode.PARTIAL if used > 0 else ExitCode.USAGE)


def _ingest_table(stats: IngestStats) -> reports.Table:
    """The ingest summary as rows (measure, detail, value) for `--format csv`."""
    rows: list[tuple[object, ...]] = [
        ("sources", "", stats.sources),
        ("sources", "already ingested", stats.skipped_sources),
        ("bytes", "", stats.bytes),
        ("lines", "read", stats.read),
        ("lines", "stored", stats.stored),
        ("lines", "ignored", stats.ignored),
        ("lines", "quarantined", stats.quarantined),
    ]
    rows += [("ignored", rule, n) for rule, n in stats.ignored_by_rule.most_common()]
    rows += [("quarantined", r, n) for r, n in stats.quarantined_by_reason.most_common()]
    rows += [("failed source", f"{p}: {r}", 1) for p, r, _ in stats.failed_sources]
    return reports.Table("ingest", ["measure", "detail", "value"], rows)


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
        typer.Option(
            "--section", help=f"Only these sections: {', '.join(reports.REPORT_SECTIONS)}."
        ),
    ] = None,
) -> None:
    """What pflogsumm shows, and more, for any time range, computed in the store.

    Exit codes: 0 printed; 2 bad option, time or section, or no usable store."""
    from mtalens.pipeline.store import Store

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
        str, typer.Option(help="Delivery status to include: sent, deferred, bounced, expired, any.")
    ] = "sent",
    top: Annotated[int, typer.Option(help="Rows.")] = 50,
) -> None:
    """Count and p50/p90/p99/max of total delay and of each of the four delay stages.

    Exit codes: 0 printed; 2 bad option (--by, --status, time), or no usable store."""
    from mtalens.pipeline.store import Store

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
    allow_external_access: Annotated[
        bool,
        typer.Option(
            "--allow-external-access",
            help="Let the SQL read and write files outside the store, load extensions and "
            "change settings (off by default: COPY TO, read_csv, INSTALL, SET are refused).",
        ),
    ] = False,
) -> None:
    """Read-only SQL over the store; `--format json` prints one JSON array of objects."""
    from mtalens.pipeline.store import Store

    with Store.open(db, read_only=True, external_access=allow_external_access) as store:
        try:
            t = reports.query(store, sql, allow_external_access=allow_external_access)
        except reports.QueryError as exc:
            _fail(str(exc))
    typer.echo(render_tables([t], fmt, single=True), nl=False)


class _OneLineLog(logging.Handler):
    """The library's warnings and errors on a terminal: ``mtalens: warning: ...``, one line
    each (the first line of the message; all of it, traceback too, with MTALENS_DEBUG=1).
    `watch` replaces it with its JSON log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if os.environ.get("MTALENS_DEBUG"):
                if record.exc_info:
                    text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            else:
                text = one_line(text.splitlines()[0] if text else "")
            print(f"mtalens: {record.levelname.lower()}: {text}", file=sys.stderr)
        except Exception:  # a log line must never stop a command
            self.handleError(record)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code (see pipeline/exitcodes.py). Every
    failure is one line on stderr, ``mtalens: ...``; a traceback only with MTALENS_DEBUG=1."""
    from typer.main import get_command

    root = logging.getLogger()
    if not root.handlers:
        handler = _OneLineLog(logging.WARNING)
        root.addHandler(handler)

    command = get_command(app)
    # what mtalens writes holds addresses, SASL user names and log text: the store, its WAL and
    # spill files, exports, reports are private to their owner (given back when run() returns)
    saved_umask = os.umask(0o077)
    try:
        rv = command.main(args=argv, prog_name="mtalens", standalone_mode=False)
    except InputError as exc:
        print(f"mtalens: {one_line(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except typer.TyperException as exc:  # click's usage errors: bad option, missing argument
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"mtalens: {one_line(message)}{hint}", file=sys.stderr)
        return int(getattr(exc, "exit_code", ExitCode.USAGE))
    except (typer.Abort, KeyboardInterrupt):
        print("mtalens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mtalens report | head`: the reader left; not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except Exception as exc:
        if os.environ.get("MTALENS_DEBUG"):
            traceback.print_exc()
        print(
            f"mtalens: internal error: {type(exc).__name__}: {one_line(str(exc))[:300]} "
            "(a bug in mtalens; MTALENS_DEBUG=1 prints the traceback)",
            file=sys.stderr,
        )
        return int(ExitCode.BUG)
    finally:
        os.umask(saved_umask)
    return rv if isinstance(rv, int) else int(ExitCode.OK)


def main() -> None:
    code = run()
    with contextlib.suppress(BrokenPipeError, ValueError):
        sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
