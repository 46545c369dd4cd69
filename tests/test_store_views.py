"""The views and macros live in pipeline/sql/views/ and are run when the store opens with other
ones (pipeline/store.py); migrations hold tables only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtalens.pipeline import store as store_module
from mtalens.pipeline.store import (
    LEGACY_CHECKSUMS,
    Store,
    StoreError,
    ViewsFile,
    as_temporary,
    load_migrations,
    load_views,
    views_checksum,
)

# the public views the README lists as a contract (section "The store: public views")
PUBLIC = (
    "messages", "deliveries", "recipient_outcomes", "rejections", "auth_failures", "events",
    "line_accounting", "bounces", "complaints", "bounce_deliveries", "provider_events",
    "provider_deliveries", "dmarc_reports", "dmarc_records", "tlsrpt_reports",
    "tlsrpt_policies", "tlsrpt_failures", "check_history", "check_latest",
)  # fmt: skip
_DEFINES = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?!TEMP)(VIEW|MACRO|FUNCTION)\b", re.I)


def _code(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def test_migrations_define_no_views_or_macros() -> None:
    for m in load_migrations():
        assert not _DEFINES.search(_code(m.sql)), m.name


def test_every_definition_starts_a_line_as_the_read_only_path_expects() -> None:
    for f in load_views():
        code = _code(f.sql)
        found = len(_DEFINES.findall(code))
        assert found > 0, f.name
        assert len(re.findall(r"^CREATE OR REPLACE (?:VIEW|MACRO) ", code, re.M)) == found, f.name
        assert len(re.findall(r"^CREATE OR REPLACE TEMP ", as_temporary(f.sql), re.M)) == found


def test_a_new_store_has_every_public_view_and_the_views_checksum() -> None:
    s = Store.memory()
    views = {r[0] for r in s.con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert set(PUBLIC) <= views
    row = s.con.execute("SELECT checksum FROM schema_views WHERE name = 'views'").fetchone()
    assert row == (views_checksum(load_views()),)
    # the test-only reference evaluator is not part of the store any more
    assert not s.con.execute(
        "SELECT 1 FROM duckdb_functions() WHERE function_name = 'suppression_decisions_reference'"
    ).fetchall()


def _changed_views(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """The views files with ``line_accounting`` giving one more column."""
    files = load_views()
    changed = []
    for f in files:
        sql = f.sql
        if "VIEW line_accounting AS\nSELECT " in sql:
            sql = sql.replace(
                "VIEW line_accounting AS\nSELECT ",
                f"VIEW line_accounting AS\nSELECT '{marker}' AS m, ",
            )
        changed.append(ViewsFile(f.name, sql))
    assert changed != files
    monkeypatch.setattr(store_module, "load_views", lambda: changed)


def test_changed_views_are_run_at_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    _changed_views(monkeypatch, "v2")
    with Store.open(db) as s:  # read-write: stored for good
        assert s.con.execute("SELECT m FROM line_accounting").fetchall() == []
        assert "m" in [d[0] for d in s.con.execute("SELECT * FROM line_accounting").description]
    monkeypatch.undo()
    with Store.open(db, read_only=True) as s:  # older code on a newer store: its own views, temp
        cols = [d[0] for d in s.con.execute("SELECT * FROM line_accounting").description]
        assert "m" not in cols
    with Store.open(db, read_only=True) as s:
        row = s.con.execute("SELECT checksum FROM schema_views").fetchone()
        assert row is not None and row[0] != views_checksum(load_views())  # file not written


def test_legacy_checksums_are_accepted_and_updated(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    with Store.open(db) as s:  # as a store migrated before the views moved out would be
        s.con.execute(
            "UPDATE schema_migrations SET checksum = ? WHERE version = 4", [LEGACY_CHECKSUMS[4]]
        )
    with Store.open(db, read_only=True) as s:  # accepted, not written
        assert s.con.execute(
            "SELECT checksum FROM schema_migrations WHERE version = 4"
        ).fetchone() == (LEGACY_CHECKSUMS[4],)
    with Store.open(db) as s:
        new = next(m.checksum for m in load_migrations() if m.version == 4)
        assert s.con.execute(
            "SELECT checksum FROM schema_migrations WHERE version = 4"
        ).fetchone() == (new,)
        s.con.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 4")
    with pytest.raises(StoreError, match="changed after it was applied"):
        Store.open(db)
