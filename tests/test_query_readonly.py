"""`mtalens query` (and the notebooks' store) cannot touch files outside the store, load
extensions or change settings unless told to (issue 10, item 7); empty SQL is a one-line error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mtalens.pipeline import notebook as nb
from mtalens.pipeline import reports
from mtalens.pipeline.cli import run
from mtalens.pipeline.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("q") / "q.duckdb")
    rc = run(["ingest", "--db", path, "--year", "2026", "--timezone", "UTC", str(SAMPLES)])
    assert rc == 0
    return path


def query(
    capsys: pytest.CaptureFixture[str], db: str, sql: str, *flags: str
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `mtalens query` through the real entry point."""
    capsys.readouterr()
    rc = run(["query", "--db", db, "--format", "json", *flags, "--", sql])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(rc: int, out: str, err: str) -> str:
    assert rc == 2, (out, err)
    assert out == ""
    line = err.strip()
    assert line.startswith("mtalens: ") and "\n" not in line
    return line


def test_copy_to_a_file_is_refused(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    target = tmp_path / "leak.csv"
    line = refused(*query(capsys, db, f"COPY (SELECT 1 AS x) TO '{target}'"))
    assert "Permission Error" in line and "--allow-external-access" in line
    assert not target.exists()


@pytest.mark.parametrize("reader", ["read_text", "read_blob", "read_csv"])
def test_reading_a_file_is_refused(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path, reader: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("column\nhunter2\n")
    line = refused(*query(capsys, db, f"SELECT * FROM {reader}('{secret}')"))
    assert "hunter2" not in line and "Permission Error" in line


def test_etc_hostname_is_refused(capsys: pytest.CaptureFixture[str], db: str) -> None:
    line = refused(*query(capsys, db, "SELECT content FROM read_text('/etc/hostname')"))
    assert "/etc/hostname" in line and "disabled by configuration" in line


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "SET lock_configuration = false",
        "SET temp_directory = '/tmp/elsewhere'",
        "SET memory_limit = '100GB'",
        "SET profiling_output = '/tmp/mtalens-profile.json'",
    ],
)
def test_settings_are_locked(capsys: pytest.CaptureFixture[str], db: str, sql: str) -> None:
    line = refused(*query(capsys, db, sql))
    assert "configuration has been locked" in line


@pytest.mark.parametrize("sql", ["INSTALL httpfs", "LOAD httpfs", "LOAD '/tmp/x.duckdb_extension'"])
def test_extensions_are_refused(capsys: pytest.CaptureFixture[str], db: str, sql: str) -> None:
    line = refused(*query(capsys, db, sql))
    assert "Permission Error" in line


def test_attach_and_export_are_refused(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    refused(*query(capsys, db, f"ATTACH '{tmp_path / 'other.duckdb'}' AS other"))
    refused(*query(capsys, db, f"EXPORT DATABASE '{tmp_path / 'dump'}'"))
    assert not (tmp_path / "other.duckdb").exists() and not (tmp_path / "dump").exists()


def test_every_view_and_table_still_reads(capsys: pytest.CaptureFixture[str], db: str) -> None:
    rc, out, err = query(
        capsys,
        db,
        "SELECT view_name AS name FROM duckdb_views() WHERE NOT internal "
        "UNION ALL SELECT table_name FROM duckdb_tables() ORDER BY 1",
    )
    assert rc == 0, err
    names = [r["name"] for r in json.loads(out)]
    assert {"deliveries", "recipient_outcomes", "bounces", "suppression_evidence"} <= set(names)
    for name in names:
        rc, out, err = query(capsys, db, f'SELECT count(*) AS n FROM "{name}"')
        assert rc == 0, (name, err)
    rc, out, err = query(capsys, db, "SELECT count(*) AS n FROM deliveries")
    assert json.loads(out)[0]["n"] > 0


def test_policy_macros_still_run(capsys: pytest.CaptureFixture[str], db: str) -> None:
    rc, out, err = query(
        capsys,
        db,
        "SELECT count(*) AS n FROM suppression_decisions(now(), 3, 30, 30, NULL, "
        "['userunknown', 'hostunknown'], ['blocked'], ['connection refused'])",
    )
    assert rc == 0, err
    assert json.loads(out)[0]["n"] > 0


@pytest.mark.parametrize("sql", ["", "   ", "\n\t", " ; ", ";;", "-- only a comment"])
def test_no_sql_is_a_one_line_error(capsys: pytest.CaptureFixture[str], db: str, sql: str) -> None:
    line = refused(*query(capsys, db, sql))
    assert "no SQL" in line


def test_allow_external_access_lifts_it(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    rc, _, err = query(
        capsys, db, f"COPY (SELECT 42 AS x) TO '{target}'", "--allow-external-access"
    )
    assert rc == 0, err
    assert target.read_text().splitlines() == ["x", "42"]
    secret = tmp_path / "note.txt"
    secret.write_text("hello")
    rc, out, err = query(
        capsys, db, f"SELECT content FROM read_text('{secret}')", "--allow-external-access"
    )
    assert rc == 0, err
    assert json.loads(out) == [{"content": "hello"}]


def test_writes_are_still_refused_with_external_access(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    line = refused(*query(capsys, db, "DELETE FROM delivery_log", "--allow-external-access"))
    assert "read-only" in line


def test_library_query_restricts_the_store_it_is_given() -> None:
    store = Store.memory()
    assert store.external_access
    reports.query(store, "SELECT 1", allow_external_access=True)
    assert store.external_access
    t = reports.query(store, "SELECT 1 AS one")
    assert t.rows == [(1,)]
    assert not store.external_access
    with pytest.raises(reports.QueryError, match="locked"):
        reports.query(store, "SET threads = 1", allow_external_access=True)
    store.restrict()  # idempotent
    assert not store.external_access


def test_restrict_without_lock_keeps_settings_but_not_files(tmp_path: Path) -> None:
    store = Store.memory()
    store.restrict(lock_configuration=False)
    store.con.execute("SET preserve_insertion_order = false")
    with pytest.raises(Exception, match="external access"):
        store.con.execute("SET enable_external_access = true")
    with pytest.raises(Exception, match="Permission"):
        store.con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
    assert not (tmp_path / "x.csv").exists()


def test_store_open_restricted(db: str) -> None:
    with Store.open(db, read_only=True, external_access=False) as store:
        assert not store.external_access
    with Store.open(db, read_only=True) as store:  # a fresh instance: the default again
        assert store.external_access


def test_notebook_store_is_restricted(db: str, tmp_path: Path) -> None:
    with nb.reading(db) as store:
        assert not store.external_access
    with nb.reading(db, allow_external_access=True) as store:
        assert store.external_access
    frame = nb.query(db, "SELECT count(*) AS n FROM deliveries")
    assert frame["n"].to_list()[0] > 0
    with pytest.raises(reports.QueryError, match="Permission Error"):
        nb.query(db, f"COPY deliveries TO '{tmp_path / 'd.csv'}'")
    assert not (tmp_path / "d.csv").exists()
    nb.query(db, f"COPY (SELECT 1 AS x) TO '{tmp_path / 'ok.csv'}'", allow_external_access=True)
    assert (tmp_path / "ok.csv").exists()
    # the notebook helpers that run the policy still work restricted
    frame = nb.suppressions(db, now=datetime(2026, 12, 31, tzinfo=UTC))
    assert "address" in frame.columns
    assert nb.totals(db).height == 1
