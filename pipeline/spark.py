"""The lake's views on Apache Spark: the same SQL as DuckDB's, transpiled.

``register_lake(spark, root)`` registers, in a ``SparkSession``, a temp view for every base table
of the lake (``pipeline/lake.py``: the files its snapshot lists, resolved by
``lake.resolve_sql``) and then every public view of ``pipeline/sql/views/*.sql``. Nothing is
written twice: each definition is read from the DuckDB SQL and translated by sqlglot
(``read="duckdb", write="spark"``, https://sqlglot.com/sqlglot.html), plus the few rewrites
sqlglot does not make, each named in ``_rewrite`` and below. The report
(``pipeline/queries/report.sql``), the delay percentiles (``delays.sql``) and the suppression
policy then run as Spark SQL: :func:`report`, :func:`delay_stats` and :func:`list_suppressions`
return the rows of their DuckDB counterparts in ``pipeline/reports.py`` and
``pipeline/suppressions.py`` (``tests/test_spark_lake.py`` compares them on the same lake).

How the DuckDB constructs are carried over:

* DuckDB macros (``CREATE MACRO``) have no Spark equivalent. They are kept as sqlglot trees and
  expanded where they are called: a scalar macro becomes its body with the arguments in place of
  the parameters; a table macro becomes a subquery of its body, and ``query_table('name')`` in
  it the relation of that name. The suppression policy is ``suppression_decisions`` expanded
  with the policy's parameters (``suppressions.policy_args``) and the clock value as literals;
  its common table expressions are then computed one by one as checkpointed temp views
  (:func:`staged_table`), as pipeline/suppressions.py stages them in DuckDB.
* ``SELECT * EXCLUDE/REPLACE`` (no Spark form) is expanded column by column by sqlglot's
  optimizer (``qualify``), from the schemas of the relations registered so far.
* ``rowid`` (DuckDB's row identity, which Spark has none of) appears only where the suppression
  policy carries the final failed attempts of ``delivery_log`` by row id; it becomes
  ``to_json(struct(message_key, recipient, seq))`` there, which selects the same rows: a row with
  the key and seq of a final attempt is a final attempt itself (nothing with that key has a
  higher seq), so rows are not told apart where they need not be.
* Quantiles: DuckDB's ``quantile_cont(x, q)`` interpolates linearly between the two nearest
  values of the sorted input, as Spark's exact ``percentile(x, q)`` does (Spark SQL reference,
  "percentile": "exact percentile value of numeric column"; DuckDB "Aggregate functions":
  ``quantile_cont`` "interpolated quantile"); ``percentile_approx`` would not give the same
  numbers and is not used.
* Time: DuckDB's ``time_bucket(interval, timestamptz)`` counts buckets from 2000-01-03 00:00 UTC
  (DuckDB "Timestamp with time zone functions": the default origin); the same arithmetic is
  written on Spark's microseconds since the epoch. Day boundaries (``CAST(ts AS DATE)``,
  ``date_trunc('day', ts)``) follow each engine's session time zone: give Spark
  ``spark.sql.session.timeZone`` the zone DuckDB uses (UTC in the tests).

The lake's Hive-style directories (``day=YYYY-MM-DD/host=NAME``) carry no information the files
do not (they hold a ``host`` column of their own), so Spark must not derive partition columns
from them: files are read by the explicit paths the snapshot lists, with an explicit schema and
``recursiveFileLookup`` (Spark "Generic File Source Options": it "disables partition inferring").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from mtalens.pipeline.reports import QueryError, Table, delay_query, report_queries
from mtalens.pipeline.store import load_views

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mtalens.pipeline.config import SuppressionsConfig
    from mtalens.pipeline.suppressions import Suppression

# The prefix of the temp views that hold a table's raw rows (all rows of its live files).
RAW_PREFIX: Final = "mtalens_raw_"

# DuckDB's time_bucket origin for buckets without months (2000-01-03 00:00:00 UTC), in
# microseconds since the epoch (DuckDB docs, "time_bucket": "default origin 2000-01-03").
_BUCKET_ORIGIN_US: Final = 946_857_600_000_000

# '-infinity'::TIMESTAMPTZ has no Spark value; the smallest timestamp Spark has (0001-01-01,
# Spark SQL "Data Types": TimestampType's range) orders before every logged time the same way.
_MINUS_INFINITY: Final = "0001-01-01 00:00:00+00:00"

# The identity that stands in for DuckDB's rowid of a table (see the module docstring).
_ROW_IDENTITY: Final = {"delivery_log": ("message_key", "recipient", "seq")}


@dataclass(frozen=True, slots=True)
class Macro:
    """A DuckDB macro: parameter names and body (an expression, or a query for a table macro)."""

    name: str
    params: tuple[str, ...]
    body: exp.Expr
    table: bool


@dataclass(slots=True)
class Catalog:
    """What :func:`register_lake` registered: relation name -> column names (the sqlglot
    schema the next definitions are qualified against), and the macros."""

    columns: dict[str, dict[str, object]] = field(default_factory=dict)
    macros: dict[str, Macro] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    def schema(self) -> MappingSchema:
        return MappingSchema(dict(self.columns), dialect="spark", normalize=False)


# --- from DuckDB SQL to Spark SQL ------------------------------------------------------------


def _literal(value: Any) -> exp.Expr:
    """A parameter value as a DuckDB literal."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise QueryError(f"timestamp parameter without a time zone: {value!r}")
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMPTZ")
    if isinstance(value, int | float | Decimal):
        return exp.Literal.number(value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, list | tuple):
        if not value:  # the element type comes from the cast (sender_side_problems' [])
            return exp.cast(exp.Array(expressions=[]), "VARCHAR[]", dialect="duckdb")
        return exp.Array(expressions=[_literal(v) for v in value])
    raise QueryError(f"cannot pass {type(value).__name__} to Spark SQL: {value!r}")


def _bind(tree: exp.Expr, params: Mapping[str, Any]) -> exp.Expr:
    """``$name`` parameters replaced by literals."""

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter | exp.Placeholder) and node.name:
            name = node.name
            if name not in params:
                raise QueryError(f"no value for parameter ${name}")
            return _literal(params[name])
        return node

    return tree.transform(swap)


def _substitute(body: exp.Expr, args: Mapping[str, exp.Expr]) -> exp.Expr:
    """A macro body with each bare reference to a parameter replaced by its argument (DuckDB
    binds a macro's parameters by name, before the columns of its FROM)."""
    body = body.copy()
    for col in list(body.find_all(exp.Column)):
        if not col.table and col.name in args and not _is_lambda_var(col):
            col.replace(args[col.name].copy())
    return body


def _is_lambda_var(col: exp.Column) -> bool:
    node: exp.Expr | None = col.parent
    while node is not None:
        if isinstance(node, exp.Lambda) and col.name in {v.name for v in node.expressions}:
            return True
        node = node.parent
    return False


def _call_args(macro: Macro, call: exp.Anonymous) -> dict[str, exp.Expr]:
    given = list(call.expressions)
    if len(given) != len(macro.params):
        raise QueryError(f"{macro.name} takes {len(macro.params)} arguments, got {len(given)}")
    return dict(zip(macro.params, given, strict=True))


def _relation_name(arg: exp.Expr) -> str:
    if isinstance(arg, exp.Literal) and arg.is_string:
        return str(arg.this)
    raise QueryError(f"query_table() needs a relation name, got {arg.sql('duckdb')}")


def expand_macros(tree: exp.Expr, macros: Mapping[str, Macro]) -> exp.Expr:
    """Every call of a macro in ``macros`` replaced by its body, to any depth."""
    for _ in range(100):  # macros call macros; each round expands one level
        changed = False
        for node in list(tree.find_all(exp.Anonymous)):
            name = str(node.this).lower()
            parent = node.parent
            if name == "query_table" and isinstance(parent, exp.Table):
                (arg,) = node.expressions
                table = exp.to_table(_relation_name(arg))
                if parent.args.get("alias"):
                    table.set("alias", parent.args["alias"].copy())
                parent.replace(table)
                changed = True
                continue
            macro = macros.get(name)
            if macro is None:
                continue
            body = _substitute(macro.body, _call_args(macro, node))
            if macro.table:
                if not isinstance(parent, exp.Table):
                    raise QueryError(f"table macro {name} called outside FROM")
                alias = parent.args.get("alias") or exp.TableAlias(this=exp.to_identifier(name))
                parent.replace(exp.Subquery(this=body, alias=alias.copy()))
            else:
                node.replace(exp.Paren(this=body))
            changed = True
        if not changed:
            return tree
    raise QueryError("macros nested too deeply (a macro calling itself?)")


def _fold_int(node: exp.Expr) -> int | None:
    """The value of a constant integer expression (literals, casts, + and -), else None."""
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(str(node.this))
        except ValueError:
            return None
    if isinstance(node, exp.Cast | exp.Paren | exp.TryCast):
        return _fold_int(node.this)
    if isinstance(node, exp.Neg):
        v = _fold_int(node.this)
        return None if v is None else -v
    if isinstance(node, exp.Add | exp.Sub):
        a, b = _fold_int(node.this), _fold_int(node.expression)
        if a is None or b is None:
            return None
        return a + b if isinstance(node, exp.Add) else a - b
    return None


def _spark(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="spark")


def _time_bucket(node: exp.DateBin) -> exp.Expr:
    # DATE_BIN(TO_SECONDS(n), ts): n seconds per bucket from DuckDB's origin
    width = node.this
    ts = node.expression
    if isinstance(width, exp.Anonymous) and str(width.this).lower() == "to_seconds":
        seconds = width.expressions[0]
    else:
        raise QueryError(f"time_bucket width not understood: {width.sql('duckdb')}")
    w = f"(CAST({seconds.sql('spark')} AS BIGINT) * 1000000)"
    o = str(_BUCKET_ORIGIN_US)
    t = f"unix_micros({ts.sql('spark')})"
    return _spark(f"timestamp_micros({o} + CAST(floor(({t} - {o}) / {w}) AS BIGINT) * {w})")


def _rewrite(node: exp.Expr) -> exp.Expr:
    """One DuckDB construct sqlglot leaves as DuckDB-only, in its Spark form."""
    if isinstance(node, exp.DateBin):
        return _time_bucket(node)
    if isinstance(node, exp.PercentileCont) and not isinstance(node.parent, exp.WithinGroup):
        # quantile_cont(x, q) -> percentile(x, q): the same interpolation (module docstring)
        return exp.Anonymous(this="percentile", expressions=[node.this, node.expression])
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
        # list(DISTINCT x ORDER BY x) -> array_sort(collect_set(x)); an empty group is NULL in
        # DuckDB and [] in Spark, so the empty case is made NULL
        order = node.this
        inner = order.this
        if isinstance(inner, exp.Distinct):
            (value,) = inner.expressions
            keys = [o.this for o in order.expressions]
            if len(keys) == 1 and keys[0] == value:
                v = value.sql("spark")
                return _spark(f"IF(count({v}) = 0, NULL, array_sort(collect_set({v})))")
        raise QueryError(f"ordered list() not translated: {node.sql('duckdb')}")
    if (
        isinstance(node, exp.Cast)
        and isinstance(node.this, exp.Literal)
        and str(node.this.this) == "-infinity"
    ):
        return exp.cast(exp.Literal.string(_MINUS_INFINITY), "TIMESTAMP")
    if isinstance(node, exp.ToDays):
        n = _fold_int(node.this)
        if n is not None:  # a literal interval: Spark wants one in a RANGE frame
            return exp.Interval(this=exp.Literal.string(str(n)), unit=exp.Var(this="DAY"))
        return exp.Anonymous(this="make_dt_interval", expressions=[node.this])
    if isinstance(node, exp.RegexpFullMatch):
        # RE2's full match is Java's find() of the pattern anchored at both ends
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise QueryError("regexp_full_match with a pattern that is not a literal")
        anchored = exp.Literal.string(f"^(?:{pattern.this})$")
        return exp.RegexpLike(this=node.this, expression=anchored)
    if isinstance(node, exp.Length) and isinstance(node.this, exp.ArrayFilter | exp.Array):
        return exp.ArraySize(this=node.this)  # len(list) is the element count
    if isinstance(node, exp.Tuple) and not isinstance(node.parent, exp.In):
        # arg_max(v, (a, b)): a row value orders field by field, as a Spark struct does
        return exp.Struct(expressions=list(node.expressions))
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)  # AS [NOT] MATERIALIZED: DuckDB's planner hint
    return node


def _inline_windows(select: exp.Select) -> None:
    """``WINDOW w AS (...)`` with ``OVER (w ROWS ...)`` (a refinement Spark does not allow)
    written out in every OVER."""
    named = select.args.get("windows") or []
    if not named:
        return
    specs = {w.name: w for w in named}
    for win in select.find_all(exp.Window):
        ref = win.args.get("alias")
        base = specs.get(ref.name) if isinstance(ref, exp.Identifier) else None
        if base is None:
            continue
        win.set("alias", None)
        for key in ("partition_by", "order"):
            if not win.args.get(key) and base.args.get(key):
                win.set(key, base.args[key].copy() if key == "order" else
                        [p.copy() for p in base.args[key]])  # fmt: skip
        if not win.args.get("spec") and base.args.get("spec"):
            win.set("spec", base.args["spec"].copy())
    select.set("windows", None)


def _sources_of(select: exp.Select) -> dict[str, str]:
    """Alias (or name) -> table name of the tables in the FROM and JOINs of ``select``."""
    found: dict[str, str] = {}
    parts = [select.args.get("from_"), *(select.args.get("joins") or [])]
    for part in parts:
        if part is not None and isinstance(part.this, exp.Table):
            found[part.this.alias_or_name] = part.this.name
    return found


def _row_identity(tree: exp.Expr) -> exp.Expr:
    """``rowid`` of a table in ``_ROW_IDENTITY`` as the struct of its identity columns; the
    table is the one the column names (or the only one) in the FROM of the nearest SELECT."""
    for col in list(tree.find_all(exp.Column)):
        if col.name.lower() != "rowid":
            continue
        select = col.find_ancestor(exp.Select)
        sources = _sources_of(select) if select is not None else {}
        if col.table:
            table = sources.get(col.table)
        else:
            names = set(sources.values()) & set(_ROW_IDENTITY)
            table = next(iter(names)) if len(names) == 1 else None
        if table not in _ROW_IDENTITY:
            raise QueryError(f"rowid of {table or 'an unknown relation'} has no Spark form")
        parts = [exp.column(c, table=col.table or None) for c in _ROW_IDENTITY[table]]
        # as JSON text: one value (Spark reads a struct left of IN (subquery) as several
        # columns), NULL fields kept apart from any text (to_json omits them by name)
        col.replace(exp.Anonymous(this="to_json", expressions=[exp.Struct(expressions=parts)]))
    return tree


def to_spark(
    tree: exp.Expr,
    catalog: Catalog,
    *,
    params: Mapping[str, Any] | None = None,
) -> str:
    """A DuckDB query (sqlglot tree) as Spark SQL: macros expanded, parameters bound, stars
    expanded against ``catalog``, then the rewrites of ``_rewrite``."""
    tree = expand_macros(tree.copy(), catalog.macros)
    tree = _bind(tree, params or {})
    tree = _row_identity(tree)
    tree = qualify(
        tree,
        schema=catalog.schema(),
        dialect="duckdb",
        validate_qualify_columns=False,
        identify=True,
    )
    for select in list(tree.find_all(exp.Select)):
        _inline_windows(select)
    tree = tree.transform(_rewrite)
    return tree.sql("spark")


def transpile(sql: str, catalog: Catalog, *, params: Mapping[str, Any] | None = None) -> str:
    """One DuckDB SELECT (text) as Spark SQL (see :func:`to_spark`)."""
    return to_spark(sqlglot.parse_one(sql, read="duckdb"), catalog, params=params)


# --- registering the lake --------------------------------------------------------------------


def _columns(df: DataFrame) -> dict[str, object]:
    return {f.name: f.dataType.simpleString() for f in df.schema.fields}


def register_table(
    spark: SparkSession,
    catalog: Catalog,
    table: str,
    schema_file: Path | str,
    files: Iterable[Path | str],
    resolve: Callable[[str, str], str],
) -> None:
    """Register ``table``: its raw rows (the schema file's columns, the rows of ``files``) as
    ``mtalens_raw_<table>``, then the table as ``resolve(table, raw)`` (DuckDB SQL) on top."""
    schema = spark.read.parquet(str(schema_file)).schema
    paths = [str(p) for p in files] or [str(schema_file)]
    raw = (
        spark.read.schema(schema)
        # explicit paths and no partition inference (module docstring): `host` and `day`
        # come from the files' columns only
        .option("recursiveFileLookup", "true")
        .parquet(*paths)
    )
    raw_name = RAW_PREFIX + table
    raw.createOrReplaceTempView(raw_name)
    catalog.columns[raw_name] = _columns(raw)
    sql = transpile(resolve(table, raw_name), catalog)
    spark.sql(f"CREATE OR REPLACE TEMP VIEW `{table}` AS {sql}")
    catalog.columns[table] = _columns(spark.table(table))
    catalog.tables.append(table)


def register_views(spark: SparkSession, catalog: Catalog) -> None:
    """Every view of ``pipeline/sql/views/*.sql`` as a Spark temp view, in file order; every
    macro kept in ``catalog`` for expansion."""
    for views_file in load_views():
        for stmt in sqlglot.parse(views_file.sql, read="duckdb"):
            if not isinstance(stmt, exp.Create):
                continue
            kind = str(stmt.args.get("kind") or "").upper()
            if kind == "MACRO":
                udf = stmt.this
                name = udf.this.name.lower()
                params = tuple(p.name for p in udf.expressions)
                body = stmt.expression
                catalog.macros[name] = Macro(name, params, body, isinstance(body, exp.Query))
            elif kind == "VIEW":
                name = stmt.this.name
                try:
                    sql = to_spark(stmt.expression, catalog)
                    spark.sql(f"CREATE OR REPLACE TEMP VIEW `{name}` AS {sql}")
                except Exception as exc:
                    raise QueryError(f"view {name} ({views_file.name}): {exc}") from exc
                catalog.columns[name] = _columns(spark.table(name))
                catalog.views.append(name)


# The catalog register_lake() built for each session (id of the SparkSession), for the query
# functions called without one.
_CATALOGS: Final[dict[int, Catalog]] = {}

# DuckDB types whose Arrow form Spark does not take, and what Spark reads them as from Parquet
# (Spark SQL "Parquet Files": unsigned 64-bit integers as DECIMAL(20, 0)).
_STORE_CASTS: Final = {"JSON": "VARCHAR", "UBIGINT": "DECIMAL(20, 0)"}


def register_store_tables(spark: SparkSession, catalog: Catalog, skip: Iterable[str]) -> None:
    """The base tables the lake does not hold (the suppression policy's manual entries and
    caches, the role names the migrations seed), as the migrations leave them: what
    ``lake.LakeView`` starts from too. Their rows travel with the plan (a few, or none)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from mtalens.pipeline.store import Store

    skipped = set(skip)
    with Store.memory() as store:
        con = store.con
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1"
            ).fetchall()
        ]
        for name in names:
            if name in skipped:
                continue
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                [name],
            ).fetchall()
            select = ", ".join(
                f'CAST("{c}" AS {_STORE_CASTS[t]}) AS "{c}"' if t in _STORE_CASTS else f'"{c}"'
                for c, t in cols
            )
            arrow = con.sql(f'SELECT {select} FROM "{name}"').to_arrow_table()
            # through rows, not the Arrow table itself (pyspark 4.3 cannot take an empty one
            # with timestamp columns)
            schema = from_arrow_schema(arrow.schema)
            rows = [tuple(r.values()) for r in arrow.to_pylist()]
            frame = spark.createDataFrame(rows, schema)
            frame.createOrReplaceTempView(name)
            catalog.columns[name] = _columns(frame)
            catalog.tables.append(name)


def register_lake(
    spark: SparkSession, root: Path | str, *, files_root: str | None = None
) -> Catalog:
    """Register the lake at ``root`` in ``spark``: a temp view per base table (the snapshot's
    live files, resolved by ``lake.resolve_sql``; a table no writer has published yet, and the
    tables the lake does not hold, empty as the migrations create them) and per public view.
    Sets the session time zone to UTC, as ``lake.LakeView`` sets DuckDB's, so that days and
    hours fall where they do there. Returns the catalog the query functions below use (they
    find it by the session when not given).

    ``files_root``: where Spark's executors read the lake's files when that is not ``root``,
    the directory the driver reads the commit log from; for a copy of the lake in a bucket,
    ``s3a://bucket/lake`` (each live file's path under ``root`` is taken under it)."""
    from mtalens.pipeline import lake

    base = Path(root)

    def where(path: Path) -> str:
        if files_root is None:
            return str(path)
        return files_root.rstrip("/") + "/" + path.relative_to(base).as_posix()

    spark.conf.set("spark.sql.session.timeZone", "UTC")
    snapshot = lake.open_snapshot(root)
    catalog = Catalog()
    published = [t for t in lake.TABLES if snapshot.schema_file(t).exists()]
    register_store_tables(spark, catalog, skip=published)
    for table in published:
        register_table(
            spark,
            catalog,
            table,
            where(snapshot.schema_file(table)),
            [where(p) for p in snapshot.files.get(table, [])],
            lake.resolve_sql,
        )
    register_views(spark, catalog)
    _CATALOGS[id(spark)] = catalog
    return catalog


def _catalog_of(spark: SparkSession, catalog: Catalog | None) -> Catalog:
    if catalog is not None:
        return catalog
    found = _CATALOGS.get(id(spark))
    if found is None:
        raise QueryError("no lake registered in this Spark session (call register_lake first)")
    return found


# --- the queries -----------------------------------------------------------------------------


def _value(v: Any) -> Any:
    # Spark computes DuckDB's DOUBLE results of decimal arithmetic (100.0 * n / m) in DECIMAL
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def spark_table(spark: SparkSession, sql: str, *, name: str = "query") -> Table:
    """The rows of Spark SQL ``sql`` as a :class:`Table`, values as DuckDB's Python API gives
    them (time-zone aware timestamps, floats for DOUBLE)."""
    df = spark.sql(sql)
    # through Arrow: timestamps come back time-zone aware (collect() gives naive local times)
    arrow = df.toArrow()
    cols = list(arrow.column_names)
    rows = [tuple(_value(r[c]) for c in cols) for r in arrow.to_pylist()]
    return Table(name, cols, rows)


def report(
    spark: SparkSession,
    since: datetime,
    until: datetime,
    *,
    top: int = 20,
    sections: tuple[str, ...] | None = None,
    bucket: int = 3600,
    catalog: Catalog | None = None,
) -> list[Table]:
    """``reports.report`` on Spark: the sections of ``report.sql`` for [since, until)."""
    catalog = _catalog_of(spark, catalog)
    queries, params = report_queries(since=since, until=until, top=top, sections=sections,
                                     bucket=bucket)  # fmt: skip
    return [
        spark_table(spark, transpile(sql, catalog, params=params), name=name)
        for name, sql in queries
    ]


def delay_stats(
    spark: SparkSession,
    *,
    by: str,
    since: datetime,
    until: datetime,
    top: int = 50,
    status: str | None = "sent",
    bucket: int = 3600,
    catalog: Catalog | None = None,
) -> Table:
    """``reports.delay_stats`` on Spark (quantile_cont as Spark's exact percentile)."""
    catalog = _catalog_of(spark, catalog)
    sql = delay_query(by, status)
    params: dict[str, Any] = {"since": since, "until": until, "top": top, "status": status,
                              "bucket": bucket}  # fmt: skip
    return spark_table(spark, transpile(sql, catalog, params=params), name=f"delays_by_{by}")


# The common table expressions of the expanded policy become cached temp views under this
# prefix, so that Spark plans each stage once. Planned as one query, the expanded macros made
# a plan that took Spark's optimizer 15 s and its adaptive execution many minutes on the
# sample logs (it plans the rest of the query again after each stage); staged, seconds. It is
# the staged evaluation of pipeline/suppressions.py (staged_decisions) in Spark's terms.
STAGE_PREFIX: Final = "mtalens_stage_"


def _rename_tables(scope: exp.Expr, names: Mapping[str, str]) -> None:
    """References to the relations ``names`` maps, inside ``scope``, renamed, except below a
    WITH that defines the same name again (it shadows the outer one)."""
    for t in list(scope.find_all(exp.Table)):
        if t.db or t.name not in names:
            continue
        node: exp.Expr | None = t.parent
        shadowed = False
        while node is not None and node is not scope:
            w = node.args.get("with_") if isinstance(node, exp.Query) else None
            if w is not None and t.name in {c.alias for c in w.expressions}:
                shadowed = True
                break
            node = node.parent
        if not shadowed:
            if not t.alias:  # `ev.*` still names it
                t.set("alias", exp.TableAlias(this=exp.to_identifier(t.name)))
            t.set("this", exp.to_identifier(names[t.name]))


def hoist_ctes(tree: exp.Expr) -> list[tuple[str, exp.Expr]]:
    """Every common table expression in ``tree`` (macro bodies expanded into subqueries
    included) removed from ``tree`` and returned as (unique name, query), in an order where
    each reads only the ones before it. Macro bodies are never correlated with the query
    around them, so each can stand alone."""
    stages: list[tuple[str, exp.Expr]] = []
    taken: set[str] = set()
    # outermost first: its names are renamed in its whole scope, the nested WITHs included
    while True:
        w = next(iter(tree.find_all(exp.With)), None)
        if w is None:
            for _, query in stages:
                nested = next(iter(query.find_all(exp.With)), None)
                if nested is not None:
                    w = nested
                    break
        if w is None:
            break
        owner = w.parent
        assert owner is not None
        names: dict[str, str] = {}
        for cte in w.expressions:
            base = STAGE_PREFIX + cte.alias
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}_{n}"
            taken.add(name)
            names[cte.alias] = name
        owner.set("with_", None)
        _rename_tables(owner, names)
        for cte in w.expressions:
            _rename_tables(cte.this, names)
            stages.append((names[cte.alias], cte.this))
    # a stage reads stages hoisted before it (inner ones, and earlier ones of its own WITH):
    # order them so by their references
    ordered: list[tuple[str, exp.Expr]] = []
    pending = dict(stages)
    while pending:
        progress = False
        for name, query in list(pending.items()):
            needs = {t.name for t in query.find_all(exp.Table)} & set(pending) - {name}
            if not needs:
                ordered.append((name, query))
                del pending[name]
                progress = True
        if not progress:
            raise QueryError(f"stages read each other in a cycle: {sorted(pending)}")
    return ordered


def staged_table(
    spark: SparkSession, catalog: Catalog, name: str, sql: str, params: Mapping[str, Any]
) -> Table:
    """The rows of DuckDB query ``sql`` with ``params``, its macros expanded and every common
    table expression computed first as a stage (STAGE_PREFIX); the stages are dropped after.
    A stage is a local checkpoint (PySpark ``DataFrame.localCheckpoint``: "truncate the
    logical plan"), not a cached view: a view is its plan, so every later stage would carry
    the plans of all it reads (the 8 joins of suppression_decide's candidates ran the driver
    out of memory)."""
    tree = _bind(expand_macros(sqlglot.parse_one(sql, read="duckdb"), catalog.macros), params)
    stages = hoist_ctes(tree)
    done: list[str] = []
    try:
        for stage, query in stages:
            frame = spark.sql(to_spark(query, catalog)).localCheckpoint(eager=True)
            frame.createOrReplaceTempView(stage)
            done.append(stage)
            catalog.columns[stage] = _columns(frame)
        return spark_table(spark, to_spark(tree, catalog), name=name)
    finally:
        for stage in done:
            spark.catalog.dropTempView(stage)
            catalog.columns.pop(stage, None)


def decisions(
    spark: SparkSession,
    policy: SuppressionsConfig,
    *,
    now: datetime,
    catalog: Catalog | None = None,
) -> Table:
    """Every row of ``suppression_decisions(now, *policy_args(policy))`` (the one-query form,
    ``suppressions.DECISIONS_SQL``), ordered by address, computed in stages (staged_table)."""
    from mtalens.pipeline import suppressions

    catalog = _catalog_of(spark, catalog)
    args = [now, *suppressions.policy_args(policy)]
    names = [f"p{i}" for i in range(len(args))]
    call = ", ".join(f"${n}" for n in names)
    sql = f"SELECT * FROM suppression_decisions({call}) ORDER BY address"
    return staged_table(spark, catalog, "suppressions", sql, dict(zip(names, args, strict=True)))


def list_suppressions(
    spark: SparkSession,
    policy: SuppressionsConfig,
    *,
    now: datetime,
    include_all: bool = False,
    limit: int | None = None,
    catalog: Catalog | None = None,
) -> list[Suppression]:
    """``suppressions.list_suppressions`` on Spark: suppressed addresses (``include_all``:
    every address with evidence), sorted by address."""
    from mtalens.pipeline.suppressions import Suppression

    table = decisions(spark, policy, now=now, catalog=catalog)
    names = {f.name for f in fields(Suppression)}
    out: list[Suppression] = []
    for record in table.records():
        if not include_all and not record["suppressed"]:
            continue
        values = {k: v for k, v in record.items() if k in names}
        values["event_ids"] = tuple(values.get("event_ids") or ())
        out.append(Suppression(**values))
        if limit is not None and len(out) >= limit:
            break
    return out
