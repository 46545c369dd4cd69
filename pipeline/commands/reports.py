"""`mtalens reports ingest`: DMARC aggregate and TLS-RPT reports into the store (thin; see
pipeline/aggregate_reports.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mtalens.pipeline.commands.summary import echo_csv_counts, echo_problems
from mtalens.pipeline.commands.writing import LakeOption, WriterOption, open_for_writing
from mtalens.pipeline.exitcodes import ExitCode
from mtalens.pipeline.render import Format

reports_app = typer.Typer(
    name="reports",
    help="DMARC aggregate (rua) and SMTP TLS (TLS-RPT) reports.",
    no_args_is_help=True,
)


@reports_app.command("ingest")
def ingest_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Maildirs, mbox or .eml files, report files (.xml, .xml.gz, .zip, .json, "
            ".json.gz) or directories of them."
        ),
    ],
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
    """Store DMARC aggregate reports (RFC 7489, DMARCbis) and TLS-RPT reports (RFC 8460) from
    mail and from files. A report already stored (same reporter and report id) is counted as a
    duplicate and not stored again.

    A message without a report, a report that cannot be parsed, or an archive refused by the
    decompression limits (zip bombs, nesting, size) is quarantined with its reason and named on
    stderr; the rest is read.

    Exit codes: 0 every input was used; 3 some were quarantined or could not be read (each
    named on stderr); 2 bad option or store, no file to read, or no input could be used."""
    from mtalens.pipeline.aggregate_reports import ingest_reports

    with open_for_writing(db, lake_dir, writer) as store:
        r = ingest_reports(store, paths)
    echo_problems(r.unreadable, r.problems)
    if fmt is Format.json:
        typer.echo(json.dumps(r.as_dict()))
    elif fmt is Format.csv:
        echo_csv_counts(r.as_dict(), ("quarantined", r.quarantine_reasons))
    else:
        typer.echo(
            f"inputs {r.inputs}: DMARC reports {r.dmarc_reports} ({r.dmarc_records} records), "
            f"TLS-RPT reports {r.tlsrpt_reports} ({r.tlsrpt_failures} failure rows), "
            f"duplicates {r.duplicates}, quarantined {r.quarantined}"
        )
        for reason, n in r.quarantine_reasons.most_common():
            typer.echo(f"  quarantined {n:>8}  {reason}")
    if r.inputs == 0 and not r.unreadable:  # as `ingest`: an empty directory is not a success
        typer.echo("mtalens: no files to read in " + ", ".join(map(str, paths)), err=True)
        raise typer.Exit(ExitCode.USAGE)
    failed = len(r.unreadable) + r.quarantined
    if failed:
        used = r.stored + r.duplicates
        raise typer.Exit(ExitCode.PARTIAL if used else ExitCode.USAGE)
