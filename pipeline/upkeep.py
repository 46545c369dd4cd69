"""Upkeep after writes: keep the suppression summary (migration 0010) current.

The suppression policy starts from a per-address summary and evaluates the rows not folded in
yet on the fly, so readers are always right; folding new rows in after each write keeps them
fast. A store whose summary was never built (nobody used `mtalens suppressions` on it) pays
nothing: writers only fold into a summary that exists, and the first writable `suppressions`
command builds it (a one-off: about 35 s at 10 M deliveries, see bench/bench_suppressions.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from mtalens.pipeline import suppressions
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store
from mtalens.pipeline.suppressions import SummaryRefresh


def fold_new_rows(
    store: Store,
    policy: SuppressionsConfig,
    *,
    build: bool = False,
    now: datetime | None = None,
) -> SummaryRefresh | None:
    """Normalise new addresses and fold new rows into the suppression summary, in the caller's
    write window. Without ``build``, a store with no summary is left alone (returns None); so
    is a read-only one."""
    if store.read_only or not store.keeps_summary:
        return None
    state = suppressions.summary_state(store)
    if state is None and not build:
        return None
    # new raw addresses only come with new source rows: without any, the scan of raw addresses
    # is skipped, and with a summary only the new rows' are looked at (every folded row's
    # were, by the call that folded it); all of them (about 2-3 s at 10 M deliveries) only
    # before the first build
    if state is None:
        suppressions.prepare(store, now=now or datetime.now(UTC))
    elif suppressions.rows_past_watermark(store, state):
        suppressions.prepare(store, now=now or datetime.now(UTC), since=state)
    return suppressions.refresh_suppression_summary(store, policy)


__all__ = ["fold_new_rows"]
