"""`mtalens events ingest`: sending-platform events (Amazon SES, SendGrid, Mailgun, Postmark,
SparkPost, Mandrill, Postal) from files into the store (thin; see pipeline/events.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mtalens.pipeline.commands.summary import echo_csv_counts, echo_problems
from mtalens.pipeline.commands.writing import LakeOption, WriterOption, open_for_writing
from mtalens.pipeline.exitcodes import ExitCode
from mtalens.pipeline.render import Format

events_app = typer.Typer(
    name="events",
    help="Sending platforms' events (bounces, complaints, deliveries) from JSON files.",
    no_args_is_help=True,
)

# the registry's names, written out so that `--help` needs no parser import
_PROVIDERS = ("amazonses", "sendgrid", "mailgun", "postmark", "sparkpost", "mandrill", "postal")


@events_app.command("ingest")
def ingest_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Event files (JSON, JSON arrays, JSON lines, SNS envelopes; gzip or not) or "
            "directories of them."
        ),
    ],
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help=f"Read every event as this provider's ({', '.join(_PROVIDERS)}); "
            "default: detected from each event's shape.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", envvar="MTALENS_DB", help="DuckDB store file (default: ./mtalens.duckdb)"
        ),
    ] = None,
    lake_dir: LakeOption = None,
    writer: WriterOption = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Summary format.")] = Format.table,
) -> None:
    """Store provider events in the `bounces` and `complaints` views (deliveries and
    deferrals in `provider_deliveries`, every event in `provider_events`), classified like
    bounce mail. An event already stored (same provider and event id) is a duplicate and adds
    nothing. Opens, clicks and sends are counted as ignored.

    An event that cannot be used (not JSON, not an object, an unknown shape, a wrong type, too
    large or too deeply nested) is quarantined with its reason and the rest is read.

    Exit codes: 0 every event was used; 3 some were quarantined or some paths could not be read
    (each named on stderr); 2 bad option or store, or nothing could be used."""
    if provider is not None and provider not in _PROVIDERS:
        raise typer.BadParameter(
            f"unknown provider {provider!r}; one of {', '.join(_PROVIDERS)}",
            param_hint="--provider",
        )
    from mtalens.pipeline import upkeep
    from mtalens.pipeline.config import load_config
    from mtalens.pipeline.events import ingest

    policy = load_config(None).suppressions
    with open_for_writing(db, lake_dir, writer) as store:
        r = ingest(store, paths, provider=provider)
        if r.stored:
            upkeep.fold_new_rows(store, policy)
    echo_problems(r.unreadable, r.problems)
    if fmt is Format.json:
        typer.echo(json.dumps(r.as_dict()))
    elif fmt is Format.csv:
        echo_csv_counts(
            r.as_dict(), ("provider", r.by_provider), ("quarantined", r.quarantine_reasons)
        )
    else:
        typer.echo(
            f"files {r.files}, events {r.events}: stored {r.stored} ({r.recipients} recipients), "
            f"duplicates {r.duplicates}, ignored {r.ignored}, quarantined {r.quarantined}"
        )
        for name, n in r.by_provider.most_common():
            typer.echo(f"  stored     {n:>8}  {name}")
        for reason, n in r.quarantine_reasons.most_common():
            typer.echo(f"  quarantined {n:>7}  {reason}")
    used = r.stored + r.duplicates + r.ignored
    if r.unreadable and not r.files:
        raise typer.Exit(ExitCode.USAGE)
    if r.quarantined or r.unreadable:
        raise typer.Exit(ExitCode.PARTIAL if used else ExitCode.USAGE)
