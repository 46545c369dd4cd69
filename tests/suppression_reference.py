"""The suppression policy by its straightforward definition (tests/sql/suppression_reference.sql):
the specification the store's staged evaluation is checked against, and the baseline of
bench/bench_suppressions.py --reference. Not part of mtalens: the macro is created as a
temporary macro of the store's connection when first used (also on a read-only store)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store
from mtalens.pipeline.suppressions import policy_args

SQL_FILE: Final = Path(__file__).resolve().parent / "sql" / "suppression_reference.sql"
REFERENCE_SQL: Final = "SELECT * FROM suppression_decisions_reference(?, ?, ?, ?, ?, ?, ?, ?)"


def reference_decisions_frame(
    store: Store, policy: SuppressionsConfig, *, now: datetime, suppressed_only: bool = True
) -> pl.DataFrame:
    """The decisions by the reference definition (slow), sorted by address."""
    store.con.execute(SQL_FILE.read_text(encoding="utf-8"))
    sql = REFERENCE_SQL + (" WHERE suppressed" if suppressed_only else "") + " ORDER BY address"
    table = store.con.sql(sql, params=[now, *policy_args(policy)]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame
