"""The store a writing command writes: a store file (``--db``) or a lake (``--lake``, with
``--writer``); shared by `ingest`, `bounces ingest`, `events ingest` and `reports ingest`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mtalens.pipeline.store import Store

LakeOption = Annotated[
    Path | None,
    typer.Option(
        "--lake",
        help="Write a Parquet lake (a directory, created if new) instead of a store file:"
        " immutable files by table, day and host, which many hosts can write at once (one"
        " --writer each) and `--lake DIR` on the reading commands, DuckDB and Spark read.",
    ),
]
WriterOption = Annotated[
    str | None,
    typer.Option(
        "--writer",
        help="With --lake: this writer's name (default: the host name). Writers that run at"
        " the same time need different names; each resumes its own sources.",
    ),
]


def from_environment(db: str | None) -> bool:
    """Whether ``--db``'s value is $MTALENS_DB's (an explicit --lake then wins over it)."""
    return db is not None and db == os.environ.get("MTALENS_DB")


def open_for_writing(db: str | None, lake_dir: Path | None, writer: str | None) -> Store:
    """The store file ``db`` (default ./mtalens.duckdb) or the lake writer ``writer`` of
    ``lake_dir``; StoreError (one line) if neither can be used."""
    from mtalens.pipeline.store import Store, StoreError

    if lake_dir is not None:
        if db is not None and not from_environment(db):
            raise StoreError("give --db or --lake, not both")
        from mtalens.pipeline import lake

        return lake.open_writer(lake_dir, writer)
    if writer is not None:
        raise StoreError("--writer names a lake writer: give --lake too")
    return Store.open(db)


__all__ = ["LakeOption", "WriterOption", "from_environment", "open_for_writing"]
