"""What the mail-reading commands (`reports ingest`, `events ingest`) print after a run: the
inputs they could not use on stderr, one line each, and their counts as CSV."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import typer

from mtalens.pipeline.cells import one_line


def echo_problems(
    unreadable: Iterable[tuple[str, str]], quarantined: Iterable[tuple[str, str, str]]
) -> None:
    """Paths that could not be read, then inputs quarantined (where, reason, detail)."""
    for path, reason in unreadable:
        typer.echo(f"mtalens: {one_line(path)}: {reason}", err=True)
    for where, reason, detail in quarantined:
        typer.echo(
            f"mtalens: warning: {one_line(where)}: quarantined ({reason}): {one_line(detail)}",
            err=True,
        )


def echo_csv_counts(totals: Mapping[str, Any], *groups: tuple[str, Mapping[str, int]]) -> None:
    """``measure,value`` rows: the integer totals, then each group's counts as ``group:key``."""
    typer.echo("measure,value")
    for k, v in totals.items():
        if isinstance(v, int) and not isinstance(v, bool):
            typer.echo(f"{k},{v}")
    for prefix, counts in groups:
        for key, n in sorted(counts.items()):
            typer.echo(f"{prefix}:{one_line(key)},{n}")
