"""Spark on the lake (pipeline/spark.py) against DuckDB on the same lake (lake.open_view): every
base table, every public view, the report, the delay statistics and the suppression list.

Spark runs in local mode with two workers, one session for the module (it takes seconds to
start). Under CI a missing pyspark or Java fails (tests/conftest.need)."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mtalens.pipeline import aggregate_reports, bounces, lake, reports, suppressions
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
from tests.conftest import need

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR = datetime(9999, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    need(importlib.util.find_spec("pyspark") is not None, "pyspark (pip install '.[spark]')")
    need(shutil.which("java") is not None, "java (Debian's openjdk-17-jre-headless)")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("mtalens-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # a few rows per query: Spark's default of 200 shuffle partitions is 200 tasks each
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        # not ./spark-warehouse in the checkout
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    # py4j's connections log their closing when collected at exit, after pytest closed stderr
    logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two writers (two hosts' logs) and the bounces and reports of a third, in one lake."""
    root = tmp_path_factory.mktemp("lake") / "lake"
    for writer, sources in (
        ("mx1", [SAMPLES / "postfix"]),
        ("mx2", [SAMPLES / "exim", SAMPLES / "sendmail"]),
    ):
        w = lake.open_writer(root, writer)
        try:
            LogIngestor(w, tz=UTC, year=2026, clock=lambda: NOW).run(sources)
        finally:
            w.close()
    w = lake.open_writer(root, "mail")
    try:
        bounces.ingest(w, [SAMPLES / "bounces"], now=lambda: NOW)
        aggregate_reports.ingest_reports(w, [SAMPLES / "reports"], now=lambda: NOW)
    finally:
        w.close()
    return root


@pytest.fixture(scope="module")
def duck(root: Path) -> Iterator[Store]:
    with lake.open_view(root) as view:
        yield view


@pytest.fixture(scope="module")
def catalog(spark: Any, root: Path) -> Any:
    from mtalens.pipeline import spark as mspark

    return mspark.register_lake(spark, root)


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, list | tuple):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    return v


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """As a multiset: normalised values, sorted by their text."""
    out = [tuple(_norm(x) for x in r) for r in rows]
    return sorted(out, key=lambda r: tuple((x is None, str(x)) for x in r))


def _same(d: reports.Table, s: reports.Table) -> None:
    assert s.columns == d.columns, d.name
    assert _rows(s.rows) == _rows(d.rows), d.name


def _duck(store: Store, sql: str) -> reports.Table:
    cur = store.con.execute(sql)
    return reports.Table(sql, [c[0] for c in cur.description or []], cur.fetchall())


def test_lake_directories_add_no_columns(spark: Any, catalog: Any, root: Path) -> None:
    """The files' own columns only: no `day` from day=..., and `host` the file's (the
    directory's value is the partition's, which a NULL host writes differently)."""
    import pyarrow.parquet as pq

    for table in ("delivery_log", "event_log", "message_log"):
        expected = pq.read_schema(root / "_schema" / f"{table}.parquet").names
        raw = spark.table(f"mtalens_raw_{table}")
        assert raw.columns == expected, table
        assert "day" not in raw.columns
    files = lake.open_snapshot(root).files["delivery_log"]
    assert any("/host=" in str(p) for p in files)
    hosts = {r[0] for r in spark.sql("SELECT DISTINCT host FROM delivery_log").collect()}
    assert hosts == {h for (h,) in catalog_hosts(root)}


def catalog_hosts(root: Path) -> list[tuple[Any]]:
    with lake.open_view(root) as view:
        return view.con.execute("SELECT DISTINCT host FROM delivery_log").fetchall()


def test_base_tables(spark: Any, catalog: Any, duck: Store) -> None:
    from mtalens.pipeline import spark as mspark

    filled = 0
    for table in lake.TABLES:
        d = _duck(duck, f"SELECT * FROM {table}")
        s = mspark.spark_table(spark, f"SELECT * FROM `{table}`", name=d.name)
        _same(d, s)
        filled += bool(d.rows)
    assert filled >= 12  # logs, bounces and reports: most tables have rows


def test_public_views(spark: Any, catalog: Any, duck: Store) -> None:
    from mtalens.pipeline import spark as mspark

    assert "recipient_outcomes" in catalog.views and "bounce_deliveries" in catalog.views
    for view in catalog.views:
        d = _duck(duck, f"SELECT * FROM {view}")
        _same(d, mspark.spark_table(spark, f"SELECT * FROM `{view}`", name=d.name))


@pytest.mark.parametrize(
    ("since", "until"),
    [(EPOCH, FAR), (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))],
)
def test_report(spark: Any, catalog: Any, duck: Store, since: datetime, until: datetime) -> None:
    from mtalens.pipeline import spark as mspark

    want = reports.report(duck, since=since, until=until, top=1000)
    got = mspark.report(spark, since, until, top=1000)
    assert [t.name for t in got] == list(reports.REPORT_SECTIONS)
    assert sum(len(t.rows) for t in want) > 50
    for d, s in zip(want, got, strict=True):
        _same(d, s)


def test_time_buckets_of_a_week(spark: Any, catalog: Any, duck: Store) -> None:
    """time_bucket's origin (2000-01-03, a Monday) matters for buckets longer than a day."""
    from mtalens.pipeline import spark as mspark

    week = 7 * 86400
    (d,) = reports.report(duck, since=EPOCH, until=FAR, sections=("per_hour",), bucket=week)
    (s,) = mspark.report(spark, EPOCH, FAR, sections=("per_hour",), bucket=week)
    _same(d, s)
    assert all(r[0].weekday() == 0 for r in s.rows)


@pytest.mark.parametrize("status", ["sent", None])
def test_delay_percentiles(spark: Any, catalog: Any, duck: Store, status: str | None) -> None:
    from mtalens.pipeline import spark as mspark

    for by in reports.DELAY_GROUPS:
        d = reports.delay_stats(duck, by=by, since=EPOCH, until=FAR, status=status, bucket=900)
        s = mspark.delay_stats(spark, by=by, since=EPOCH, until=FAR, status=status, bucket=900)
        assert d.rows, by
        _same(d, s)


def test_suppression_list(spark: Any, catalog: Any, duck: Store) -> None:
    from mtalens.pipeline import spark as mspark

    policy = SuppressionsConfig()
    want = suppressions.list_suppressions(duck, policy, now=NOW, include_all=True)
    got = mspark.list_suppressions(spark, policy, now=NOW, include_all=True)
    assert len(want) > 10 and any(s.suppressed for s in want)
    assert got == want
    listed = mspark.list_suppressions(spark, policy, now=NOW)
    assert listed == [s for s in want if s.suppressed]
    # a stricter policy moves addresses: the parameters reach Spark
    strict = SuppressionsConfig(soft_threshold=1, soft_window_days=1)
    assert mspark.list_suppressions(spark, strict, now=NOW) == suppressions.list_suppressions(
        duck, strict, now=NOW
    )


def test_files_read_from_another_root(spark: Any, catalog: Any, root: Path, duck: Store) -> None:
    """``files_root``: the commit log read from ``root``, the files by Spark under another URL
    (a bucket's s3a://; here the same directory as a file:// URL)."""
    from mtalens.pipeline import spark as mspark

    again = mspark.register_lake(spark, root, files_root=root.as_uri())
    try:
        paths = {
            r[0]
            for r in spark.sql("SELECT input_file_name() FROM mtalens_raw_delivery_log").collect()
        }
        assert paths and all(p.startswith("file:") for p in paths)
        for table in ("delivery_log", "message_log", "checkpoints"):
            d = _duck(duck, f"SELECT * FROM {table}")
            _same(d, mspark.spark_table(spark, f"SELECT * FROM `{table}`", name=d.name))
    finally:
        assert again.views == catalog.views
