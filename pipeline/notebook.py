"""What the notebooks in ``notebooks/`` call: the store as polars frames, and matplotlib plots.

The notebooks hold no logic: every query here is a named query shared with the CLI and the HTML
report (``pipeline/queries/*.sql``), and every plot takes a frame and returns its Axes.

Each function takes the store as ``db``: a path (``None``: ``$MTALENS_DB``, else
``./mtalens.duckdb``), opened read-only, queried and closed again within the call, so a notebook
never holds the file while `mtalens watch` runs. DuckDB allows one read-write process or many
read-only ones, never both; the daemon writes in short windows and a read-only open waits one out
(``$MTALENS_LOCK_WAIT``, pipeline/store.py), so each call sees the data as of the last window.
Frames are fully materialised before the store is closed. An open :class:`Store` is accepted too
(tests, or a store the caller closes itself); it is used and left open (:func:`query` restricts
it, as below, unless told not to).

A store opened here is restricted as `mtalens query`'s is (pipeline/store.py, ``Store.restrict``):
no files outside the store, no extensions, no settings; ``allow_external_access=True`` (on
:func:`reading` and :func:`query`) lifts it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from mtalens.pipeline import reports, timeline
from mtalens.pipeline.diagnose import Context, diagnose, run_query
from mtalens.pipeline.store import Store, StoreError, resolve_db_path
from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

StoreRef = Store | str | os.PathLike[str] | None


def store_path(db: str | os.PathLike[str] | None = None) -> Path:
    """``db``, else ``$MTALENS_DB``, else ``./mtalens.duckdb``; it must exist (nothing is
    opened: pass the path to the functions below)."""
    path = resolve_db_path(db)
    if not path.exists():
        raise StoreError(f"{path}: no such store (run `mtalens ingest` first)")
    return path


@contextmanager
def reading(db: StoreRef = None, *, allow_external_access: bool = False) -> Iterator[Store]:
    """The store for one call: opened read-only and closed on exit (a Store is passed through
    as it is). Unless ``allow_external_access``, it is restricted like `mtalens query`'s
    (:meth:`Store.restrict`): SQL run on it cannot touch files outside the store, load
    extensions or change settings."""
    if isinstance(db, Store):
        yield db
        return
    with Store.open(db, read_only=True, external_access=allow_external_access) as store:
        yield store


def _ctx(store: Store, since: datetime | None, until: datetime | None) -> Context:
    return Context(store=store, since=since or EPOCH, until=until or FAR_FUTURE)


def _frame(rows: list[Any]) -> pl.DataFrame:
    return pl.DataFrame([dict(r) for r in rows]) if rows else pl.DataFrame()


def _table_frame(t: reports.Table) -> pl.DataFrame:
    return pl.DataFrame(t.records()) if t.rows else pl.DataFrame(schema=t.columns)


def totals(
    db: StoreRef = None, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """The `report` totals section: received, delivered, deferred, bounced, rejected..."""
    with reading(db) as store:
        [t] = reports.report(
            store, since=since or EPOCH, until=until or FAR_FUTURE, sections=("totals",)
        )
    return _table_frame(t)


def report_section(
    name: str,
    db: StoreRef = None,
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = 1000,
) -> pl.DataFrame:
    """One section of `mtalens report` (``reports.REPORT_SECTIONS``) as a frame: the same SQL,
    e.g. ``dmarc_sources`` or ``tlsrpt_results`` for the reports receivers send."""
    with reading(db) as store:
        [t] = reports.report(
            store, since=since or EPOCH, until=until or FAR_FUTURE, top=top, sections=(name,)
        )
    return _table_frame(t)


def plot_dmarc_sources(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """Messages per sending IP (``report_section("dmarc_sources")``), split into DMARC pass
    and fail: the sources that fail are the misconfigured servers, forwarders and spoofers."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No DMARC aggregate reports")
        return ax
    labels = [f"{d} {ip}" for d, ip in zip(frame["policy_domain"], frame["source_ip"], strict=True)]
    total = frame["messages"].to_list()
    passed = [m * p / 100 for m, p in zip(total, frame["dmarc_pass_pct"].to_list(), strict=True)]
    failed = [m - p for m, p in zip(total, passed, strict=True)]
    ax.barh(labels, passed, color="#2da44e", label="DMARC pass")
    ax.barh(labels, failed, left=passed, color="#cf222e", label="DMARC fail")
    ax.set_xlabel("messages (aggregate reports)")
    ax.set_title("DMARC results by sending IP")
    ax.legend()
    return ax


def outcomes_by_hour(
    db: StoreRef = None, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    with reading(db) as store:
        return _frame(run_query(_ctx(store, since, until), "outcomes_by_hour"))


def volume(
    db: StoreRef = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: int | None = None,
) -> pl.DataFrame:
    """Per bucket with data: delivered, deferred, bounced (delivery attempts in the log),
    received, rejected. ``bucket`` seconds, by default what the range calls for
    (pipeline/timeline.py: a minute for an hour, a day for a month); the frame's
    ``bucket_seconds`` column says which. Buckets without data are absent: gaps."""
    since, until = since or EPOCH, until or FAR_FUTURE
    with reading(db) as store:
        seconds = bucket or _bucket(store, since, until)
        rows = timeline.volume(store, since=since, until=until, bucket=seconds)
    return (
        _frame(rows).with_columns(pl.lit(seconds).alias("bucket_seconds")) if rows else _frame([])
    )


def delays_over_time(
    db: StoreRef = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: int | None = None,
) -> pl.DataFrame:
    """Per bucket with deliveries: count and p50/p90/p99/max of the total delay (``key`` is the
    bucket's start), in buckets as :func:`volume`'s."""
    since, until = since or EPOCH, until or FAR_FUTURE
    with reading(db) as store:
        seconds = bucket or _bucket(store, since, until)
        rows = timeline.delays(store, since=since, until=until, bucket=seconds)
    return (
        _frame(rows).with_columns(pl.lit(seconds).alias("bucket_seconds")) if rows else _frame([])
    )


def _bucket(store: Store, since: datetime, until: datetime) -> int:
    span = timeline.data_range(store, since=since, until=until)
    return timeline.choose_bucket(*span) if span else 3600


def failures_by_reason(
    db: StoreRef = None, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """Failed recipients by reason and where the failure was seen: ``log`` (final outcomes
    bounced or expired in the MTA log) and ``bounce mail`` (DSNs read from mailboxes). A
    recipient can be in both: a DSN about a refusal the log shows too."""
    since, until = since or EPOCH, until or FAR_FUTURE
    with reading(db) as store:
        rows = run_query(_ctx(store, since, until), "failures_by_reason")
    return _frame(rows)


def bounce_reasons_by_destination(
    db: StoreRef = None, top: int = 10, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    with reading(db) as store:
        return _frame(
            run_query(_ctx(store, since, until), "bounce_reasons_by_destination", {"top": top})
        )


def delay_stages(
    db: StoreRef = None, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """p50/p90/max of the four Postfix delay stages of successful deliveries."""
    with reading(db) as store:
        return _frame(run_query(_ctx(store, since, until), "delay_stages"))


def delays_by(
    db: StoreRef = None,
    by: str = "hour",
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """`mtalens stats delays --by BY`: count and percentiles of total delay and each stage."""
    with reading(db) as store:
        t = reports.delay_stats(
            store, by=by, since=since or EPOCH, until=until or FAR_FUTURE, top=1000
        )
    return _table_frame(t)


def findings(
    db: StoreRef = None, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """`mtalens diagnose` as a frame: one row per finding."""
    with reading(db) as store:
        found = diagnose(_ctx(store, since, until))
    rows = [
        {
            "severity": str(f.severity),
            "id": f.id,
            "title": f.title,
            "count": f.evidence.count,
            "first_seen": f.evidence.first_seen,
            "last_seen": f.evidence.last_seen,
            "destinations": ", ".join(f.evidence.destinations),
            "remedy": f.remedy,
        }
        for f in found
    ]
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def _arrow_frame(db: StoreRef, sql: str) -> pl.DataFrame:
    with reading(db) as store:
        table = store.con.sql(sql).to_arrow_table()  # materialised: independent of the store
    return pl.from_arrow(table)  # type: ignore[return-value]


def bounces(db: StoreRef = None) -> pl.DataFrame:
    """The ``bounces`` view (failed recipients from DSNs), newest first."""
    return _arrow_frame(db, "SELECT * FROM bounces ORDER BY report_date DESC NULLS LAST")


def complaints(db: StoreRef = None) -> pl.DataFrame:
    return _arrow_frame(db, "SELECT * FROM complaints ORDER BY report_date DESC NULLS LAST")


def bounces_by_reason(db: StoreRef = None) -> pl.DataFrame:
    frame = bounces(db)
    if frame.is_empty():
        return pl.DataFrame(schema={"reason": pl.Utf8, "count": pl.UInt32})
    return (
        frame.with_columns(pl.col("reason").fill_null("unclassified"))
        .group_by("reason")
        .len("count")
        .sort(["count", "reason"], descending=[True, False])
    )


def suppressions(db: StoreRef = None, *, now: datetime) -> pl.DataFrame:
    """Suppressed addresses under the default policy (pipeline/suppressions.py)."""
    from mtalens.pipeline.config import SuppressionsConfig
    from mtalens.pipeline.suppressions import decisions_frame

    if isinstance(db, Store):
        return decisions_frame(db, SuppressionsConfig(), now=now)
    with Store.open(db, read_only=True) as store:
        # no files outside the store either; the configuration stays open because the staged
        # evaluation sets optimizer hints for a statement (suppressions._setting)
        store.restrict(lock_configuration=False)
        return decisions_frame(store, SuppressionsConfig(), now=now)


def query(db: StoreRef, sql: str, *, allow_external_access: bool = False) -> pl.DataFrame:
    """`mtalens query SQL` as a frame: read-only, and restricted unless
    ``allow_external_access`` (reports.query)."""
    with reading(db, allow_external_access=allow_external_access) as store:
        t = reports.query(store, sql, allow_external_access=allow_external_access)
    return _table_frame(t)


# --------------------------------------------------------------------------------------------
# Plots (matplotlib is imported only when plotting)


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=(10, 4))
    return new


def plot_outcomes(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bars of delivery attempts per hour by status."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No deliveries")
        return ax
    hours = frame["hour"].to_list()  # on a time axis: hours without attempts are gaps
    bottom = [0] * len(hours)
    for status, colour in (("sent", "#2da44e"), ("deferred", "#d4a72c"), ("bounced", "#cf222e")):
        values = frame[status].to_list()
        ax.bar(hours, values, width=0.95 / 24, align="edge", bottom=bottom, label=status,
               color=colour)  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("delivery attempts in the log")
    ax.set_title("Delivery outcomes per hour (UTC)")
    _time_ticks(ax)
    ax.legend()
    return ax


def _bucket_days(frame: pl.DataFrame) -> tuple[float, str]:
    seconds = int(frame["bucket_seconds"][0])
    return seconds / 86400, timeline.bucket_name(seconds)


def plot_volume(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """:func:`volume` as stacked bars on a real time axis: each bar one bucket wide at its
    time, so a stretch without data is a gap, not a squeezed-out hour."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No deliveries or rejections")
        return ax
    width, name = _bucket_days(frame)
    times = frame["hour"].to_list()
    bottom = [0] * len(times)
    for col, colour in (("delivered", "#2da44e"), ("deferred", "#d4a72c"),
                        ("bounced", "#cf222e"), ("rejected", "#6e40c9")):  # fmt: skip
        values = frame[col].to_list()
        ax.bar(times, values, width=width * 0.95, align="edge", bottom=bottom, label=col,
               color=colour)  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel(f"per {name}")
    ax.set_title(f"Delivery attempts in the log and rejected requests, per {name} (UTC)")
    _time_ticks(ax)
    ax.legend()
    return ax


def plot_delays_over_time(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """:func:`delays_over_time` as p50/p90/p99 lines, broken where a bucket has no
    deliveries."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No delays")
        return ax
    _, name = _bucket_days(frame)
    seconds = int(frame["bucket_seconds"][0])
    times: list[Any] = []
    cols: dict[str, list[Any]] = {c: [] for c in ("delay_p50", "delay_p90", "delay_p99")}
    previous = None
    for row in frame.sort("key").iter_rows(named=True):
        if previous is not None and (row["key"] - previous).total_seconds() > seconds:
            times.append(previous + (row["key"] - previous) / 2)  # a gap: break the lines
            for c in cols:
                cols[c].append(float("nan"))
        times.append(row["key"])
        for c in cols:
            cols[c].append(row[c])
        previous = row["key"]
    for c, values in cols.items():
        ax.plot(times, values, marker=".", label=c.removeprefix("delay_"))
    ax.set_ylabel("seconds")
    ax.set_title(f"Total delay of delivered mail per {name}: percentiles (UTC)")
    _time_ticks(ax)
    ax.legend()
    return ax


def _time_ticks(ax: Axes) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def plot_failures_by_reason(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """:func:`failures_by_reason`: one bar per reason, log and bounce mail side by side."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No failed recipients")
        return ax
    wide = frame.pivot(on="seen_in", index="reason", values="recipients").fill_null(0)
    reasons = wide["reason"].to_list()
    ys = list(range(len(reasons)))
    sources = [c for c in ("log", "bounce mail") if c in wide.columns]
    h = 0.8 / max(len(sources), 1)
    for i, src in enumerate(sources):
        ax.barh([y + i * h for y in ys], wide[src].to_list(), height=h, label=src)
    ax.set_yticks([y + h * (len(sources) - 1) / 2 for y in ys], reasons)
    ax.invert_yaxis()
    ax.set_xlabel("failed recipients")
    ax.set_title("Failed recipients by reason: MTA log (final outcomes) and bounce mail (DSNs)")
    ax.legend()
    return ax


def plot_reasons(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """Horizontal stacked bars: failed recipients per destination and reason."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No failed recipients")
        return ax
    wide = frame.pivot(on="reason", index="destination", values="count").fill_null(0)
    dests = wide["destination"].to_list()
    left = [0] * len(dests)
    for reason in [c for c in wide.columns if c != "destination"]:
        values = wide[reason].to_list()
        ax.barh(dests, values, left=left, label=reason)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("recipients (final outcome in the log)")
    ax.set_title("Failed and still-deferred recipients by destination and reason (MTA log)")
    ax.legend(fontsize="small")
    return ax


def plot_delay_stages(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """p50 and p90 per delay stage (seconds)."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No delays")
        return ax
    stages = frame["stage"].to_list()
    xs = list(range(len(stages)))
    ax.bar([x - 0.2 for x in xs], frame["p50"].to_list(), width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], frame["p90"].to_list(), width=0.4, label="p90")
    ax.set_xticks(xs, stages)
    ax.set_ylabel("seconds")
    ax.set_title("Delay by stage (before queue, in queue, connect, transmit)")
    ax.legend()
    return ax


def plot_delay_percentiles_by_hour(frame: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """p50/p90/p99 of the total delay per hour (from `delays_by(store, "hour")`)."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title("No delays")
        return ax
    return plot_delays_over_time(frame.with_columns(pl.lit(3600).alias("bucket_seconds")), ax)


def plot_counts(
    frame: pl.DataFrame, label: str, value: str = "count", ax: Axes | None = None
) -> Axes:
    """Horizontal bars of one count column by one label column."""
    ax = _axes(ax)
    if frame.is_empty():
        ax.set_title(f"No {label}")
        return ax
    ax.barh([str(x) for x in frame[label]], frame[value].to_list())
    ax.set_xlabel(value)
    ax.set_title(f"{value} by {label}")
    return ax
