"""Reports and statistics computed in the store: `report`, `stats delays`, `query`.

Every function takes an open store and returns :class:`Table` values, so the CLI, exports and
notebooks share one definition (the SQL lives in ``pipeline/queries/*.sql``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.named_sql import named_queries

if TYPE_CHECKING:  # duckdb is imported by the store; `mtalens --help` must not pay for it
    import duckdb

    from mtalens.pipeline.store import Store


class QueryError(InputError):
    """A user-supplied query failed."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def _run(con: duckdb.DuckDBPyConnection, name: str, sql: str, params: dict[str, Any]) -> Table:
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    cur = con.execute(sql, used)
    cols = [d[0] for d in cur.description or []]
    return Table(name, cols, cur.fetchall())


REPORT_SECTIONS: Final = tuple(named_queries("report.sql"))


def report(
    store: Store,
    *,
    since: datetime,
    until: datetime,
    top: int = 20,
    sections: tuple[str, ...] | None = None,
    bucket: int = 3600,
) -> list[Table]:
    """pflogsumm's picture and more, for [since, until). ``bucket``: seconds per row of
    ``per_hour`` (the report's is an hour; pipeline/timeline.py picks others)."""
    queries, params = report_queries(since=since, until=until, top=top, sections=sections,
                                     bucket=bucket)  # fmt: skip
    return [_run(store.con, name, sql, params) for name, sql in queries]


def report_queries(
    *,
    since: datetime,
    until: datetime,
    top: int = 20,
    sections: tuple[str, ...] | None = None,
    bucket: int = 3600,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The report's (section, SQL) pairs to run, in order, and their parameters: for DuckDB
    (:func:`report`) and Spark (mtalens.pipeline.spark.report). QueryError for an unknown
    section."""
    queries = named_queries("report.sql")
    wanted = sections or tuple(queries)
    unknown = [s for s in wanted if s not in queries]
    if unknown:
        raise QueryError(f"unknown report section(s) {unknown}; known: {list(queries)}")
    params = {"since": since, "until": until, "top": top, "bucket": bucket}
    return [(name, queries[name]) for name in wanted], params


DELAY_GROUPS: Final = {
    "domain": "recipient_domain",
    "relay": "coalesce(relay_host, relay)",
    "hour": "time_bucket(to_seconds($bucket), logged_at)",  # an hour, unless bucket= says
    "sender": "coalesce(nullif(sender, ''), '<>')",
    "status": "status",
    "mta": "mta",  # the log format: postfix, exim, sendmail
    "all": "'all'",
}


# The values of Postfix's `status=` in delivery records: sent, deferred, bounced (the delivery
# agents), expired (qmgr, maximal_queue_lifetime), deliverable and undeliverable (address
# verification probes, verify(8)). Source: Postfix's log_adhoc.c and the delivery agents' logs.
DELIVERY_STATUSES: Final = (
    "sent",
    "deferred",
    "bounced",
    "expired",
    "deliverable",
    "undeliverable",
)


def delay_query(by: str, status: str | None) -> str:
    """The SQL of ``delay_stats`` for ``by`` and ``status`` (parameters $since, $until, $top,
    $status, $bucket); pipeline/spark.py runs the same text."""
    group = DELAY_GROUPS.get(by)
    if group is None:
        raise QueryError(f"--by must be one of {', '.join(DELAY_GROUPS)}")
    if status is not None and status not in DELIVERY_STATUSES:
        raise QueryError(f"--status must be one of {', '.join(DELIVERY_STATUSES)}, any")
    status_filter = "true" if status is None else "status = $status"
    sql = named_queries("delays.sql")["delays"].format(group=group, status_filter=status_filter)
    if by == "hour":
        sql = sql.replace('ORDER BY count DESC, "key"', 'ORDER BY "key"')
    return sql


def delay_stats(
    store: Store,
    *,
    by: str,
    since: datetime,
    until: datetime,
    top: int = 50,
    status: str | None = "sent",
    bucket: int = 3600,
) -> Table:
    """Count and p50/p90/p99/max of the total delay and each of the four stages. ``bucket``:
    seconds per row of ``by="hour"`` (pipeline/timeline.py picks others)."""
    sql = delay_query(by, status)
    params: dict[str, Any] = {"since": since, "until": until, "top": top, "status": status,
                              "bucket": bucket}  # fmt: skip
    return _run(store.con, f"delays_by_{by}", sql, params)


# DuckDB's messages when a restricted connection (Store.restrict) refuses something.
_REFUSED: Final = (
    "disabled by configuration",
    "configuration has been locked",
    "cannot enable external access",
    "external extensions is disabled",
)


def query(store: Store, sql: str, *, allow_external_access: bool = False) -> Table:
    """Run user SQL on a store opened read-only. Unless ``allow_external_access``, the store's
    connection is restricted first (:meth:`Store.restrict`, for good): the SQL cannot read or
    write files outside the store, load extensions or change settings."""
    import duckdb

    if not sql.strip():
        raise QueryError("no SQL given")
    if not allow_external_access:
        store.restrict()
    try:
        cur = store.con.execute(sql)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        if any(m in first.lower() for m in _REFUSED):
            first += (
                " (a query may not touch files outside the store, extensions or settings; "
                "--allow-external-access allows it)"
            )
        raise QueryError(first) from exc
    if cur is None:  # DuckDB returns no cursor for SQL that is only comments or semicolons
        raise QueryError("no SQL statement given (only comments or semicolons)")
    if cur.description is None:
        return Table("query", [], [])
    return Table("query", [d[0] for d in cur.description], cur.fetchall())
