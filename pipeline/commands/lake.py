"""`mtalens lake`: what a lake holds, compaction, retention (thin; see pipeline/lake.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from mtalens.pipeline.exitcodes import ExitCode
from mtalens.pipeline.render import Format

lake_app = typer.Typer(
    name="lake",
    help="The Parquet lake that `ingest --lake` and `watch --lake` write: info, compact, expire.",
    no_args_is_help=True,
)

LakeArg = Annotated[Path, typer.Argument(help="The lake directory.")]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"mtalens lake: {message}", err=True)
    return typer.Exit(ExitCode.USAGE)


def _span(value: str) -> timedelta:
    from mtalens.parsers.errors import ParseError
    from mtalens.parsers.postfix import parse_time_value

    try:
        return parse_time_value(value)
    except ParseError as exc:
        raise _fail(f"cannot read {value!r}: {exc.detail} (e.g. 90d, 12w, 36h)") from exc


@lake_app.command("info")
def info_cmd(root: LakeArg, fmt: FormatOption = Format.table) -> None:
    """Live files and rows per table, and each writer's last commit."""
    import pyarrow.parquet as pq

    from mtalens.pipeline import lake

    try:
        snap = lake.open_snapshot(root)
    except lake.LakeError as exc:
        raise _fail(str(exc)) from exc
    tables = []
    for name, files in snap.files.items():
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        size = sum(p.stat().st_size for p in files)
        tables.append({"table": name, "files": len(files), "rows": rows, "bytes": size})
    writers = {w: {"writer": w, "commits": snap.last(w)[0]} for w in snap.writers()}
    out = {"tables": tables, "writers": list(writers.values()),
           "unfolded_entries": len(snap.entries)}  # fmt: skip
    if fmt is Format.json:
        typer.echo(json.dumps(out))
        return
    for t in tables:
        typer.echo(f"{t['table']:<22} {t['files']:>6} files {t['rows']:>12,} rows "
                   f"{t['bytes']:>14,} bytes")  # fmt: skip
    for w in writers.values():
        typer.echo(f"writer {w['writer']}: {w['commits']} commits")
    typer.echo(f"{len(snap.entries)} entries not yet folded into a manifest (`lake compact`)")


@lake_app.command("compact")
def compact_cmd(
    root: LakeArg,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="Delete a file compaction removed only this long after (readers that listed"
            " it before may still be reading it).",
        ),
    ] = "1h",
    fmt: FormatOption = Format.table,
) -> None:
    """Merge each partition's small files into one (readers never see a row twice or miss
    one), and delete the files removed more than --grace ago and those of commits a killed
    writer never published."""
    from mtalens.pipeline import lake

    try:
        st = lake.compact(root, grace=_span(grace), now=datetime.now(UTC))
    except lake.LakeError as exc:
        raise _fail(str(exc)) from exc
    out = {"partitions": st.partitions, "files_in": st.files_in, "files_out": st.files_out,
           "rows_in": st.rows_in, "rows_out": st.rows_out, "deleted": st.deleted,
           "entries_folded": st.entries_folded}  # fmt: skip
    if fmt is Format.json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"compacted {st.files_in} files into {st.files_out} in {st.partitions}"
                   f" partitions ({st.rows_in:,} rows, {st.rows_out:,} kept); folded"
                   f" {st.entries_folded} entries into a manifest; deleted {st.deleted} files")  # fmt: skip


@lake_app.command("expire")
def expire_cmd(
    root: LakeArg,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Retention: remove days older than this (90d).")
    ],
    fmt: FormatOption = Format.table,
) -> None:
    """Remove the partitions of days older than --older-than (checkpoints and line accounting
    are kept, so nothing is read again); `lake compact` deletes their files later."""
    from mtalens.pipeline import lake

    try:
        st = lake.expire(root, _span(older_than), now=datetime.now(UTC))
    except lake.LakeError as exc:
        raise _fail(str(exc)) from exc
    if fmt is Format.json:
        typer.echo(json.dumps({"files": st.files, "partitions": st.partitions}))
    else:
        typer.echo(f"expired {st.files} files in {st.partitions} partitions")


__all__ = ["lake_app"]
