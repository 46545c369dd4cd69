"""`mtalens suppressions add|remove` as a user reads them (issue 10, item 10): one normal form on
every path (local part's ASCII letters folded too, 0012), `remove` says what happened and exits
2 when there was nothing to lift, `--days` must be at least 1; the 0012 migration of a store
that has mixed-case entries; the command module imports no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtalens.pipeline import exports
from mtalens.pipeline import store as store_module
from mtalens.pipeline import suppressions as S
from mtalens.pipeline.cli import run
from mtalens.pipeline.commands.suppressions import EXPORT_FORMATS
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store
from tests.test_suppressions_data import day, dsn, log

POLICY = SuppressionsConfig()
AS_OF = "2026-03-10T00:00:00"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    return str(path)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run(["suppressions", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    line = err.strip()
    assert line.startswith("mtalens: ") and "\n" not in line, err
    return line


def manual_rows(db: str) -> list[tuple[str, str]]:
    with Store.open(db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT address, action FROM suppression_manual ORDER BY id"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def listed(capsys: pytest.CaptureFixture[str], db: str, as_of: str = AS_OF) -> list[str]:
    rc, out, err = cli(capsys, "list", "--db", db, "--format", "json", "--as-of", as_of)
    assert rc == 0, err
    return [r["address"] for r in json.loads(out)]


def test_add_then_remove_in_another_case(capsys: pytest.CaptureFixture[str], db: str) -> None:
    rc, out, err = cli(capsys, "add", "--db", db, "-f", "json", "--as-of", AS_OF,
                       "Spammy.Person@Example.COM")  # fmt: skip
    assert rc == 0, err
    assert json.loads(out) == [
        {"address": "spammy.person@example.com", "action": "suppressed by hand",
         "expires_at": "never"}
    ]  # fmt: skip
    assert "normalised to spammy.person@example.com" in one_line(err)
    assert listed(capsys, db) == ["spammy.person@example.com"]

    rc, out, err = cli(capsys, "remove", "--db", db, "-f", "json", "--as-of", AS_OF,
                       "spammy.person@EXAMPLE.com")  # fmt: skip
    assert rc == 0, err
    [row] = json.loads(out)
    assert row["address"] == "spammy.person@example.com" and row["was"] == "manual"
    assert row["action"].startswith("suppression lifted")
    assert listed(capsys, db) == []
    assert manual_rows(db) == [
        ("spammy.person@example.com", "add"), ("spammy.person@example.com", "remove")
    ]  # fmt: skip


def test_remove_again_says_not_listed_and_records_nothing(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    assert cli(capsys, "add", "--db", db, "--as-of", AS_OF, "x@example.com")[0] == 0
    assert cli(capsys, "remove", "--db", db, "--as-of", AS_OF, "x@example.com")[0] == 0
    rc, out, err = cli(capsys, "remove", "--db", db, "--as-of", AS_OF, "X@Example.com")
    assert rc == 2 and out == ""
    line = one_line(err)
    assert "X@Example.com (as x@example.com) is not on the suppression list" in line
    assert "removed manually" in line and "nothing recorded" in line
    assert len(manual_rows(db)) == 2


def test_remove_of_a_never_listed_address(capsys: pytest.CaptureFixture[str], db: str) -> None:
    rc, out, err = cli(capsys, "remove", "--db", db, "nobody@example.com")
    assert rc == 2 and out == ""
    assert "no evidence against it" in one_line(err)
    assert manual_rows(db) == []


def test_remove_of_evidence_below_the_threshold_records_nothing(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    with Store.open(db) as store:
        log(store, "soft@example.com", day(0), reason="mailboxfull", dsn="4.2.2",
            status="deferred", reply_code=452, expired=True)  # fmt: skip
    rc, _, err = cli(capsys, "remove", "--db", db, "--as-of", AS_OF, "soft@example.com")
    assert rc == 2 and "not on the suppression list" in one_line(err)
    assert manual_rows(db) == []


def test_logs_and_dsns_in_any_case_are_one_address(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    with Store.open(db) as store:
        log(store, "Big.Person@EXAMPLE.com", day(0))
        dsn(store, "<big.person@example.COM>", day(1))
    assert listed(capsys, db) == ["big.person@example.com"]
    rc, out, err = cli(capsys, "explain", "--db", db, "-f", "json", "--as-of", AS_OF,
                       "BIG.PERSON@example.com")  # fmt: skip
    assert rc == 0, err
    assert len(json.loads(out)["evidence"]) == 2
    rc, out, err = cli(capsys, "remove", "--db", db, "-f", "json", "--as-of", AS_OF,
                       "Big.Person@Example.com")  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)[0]["was"] == "hard userunknown"
    assert listed(capsys, db) == []


@pytest.mark.parametrize("days", ["0", "-1"])
def test_days_below_one_is_refused(capsys: pytest.CaptureFixture[str], db: str, days: str) -> None:
    rc, out, err = cli(capsys, "add", "--db", db, "--days", days, "a@example.com")
    assert rc == 2 and out == ""
    assert "--days" in one_line(err)
    assert manual_rows(db) == []


def test_days_expire_and_no_days_never_does(capsys: pytest.CaptureFixture[str], db: str) -> None:
    rc, out, err = cli(capsys, "add", "--db", db, "-f", "json", "--as-of", AS_OF, "--days", "1",
                       "short@example.com")  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)[0]["expires_at"] == "2026-03-11T00:00:00+00:00"
    assert cli(capsys, "add", "--db", db, "--as-of", AS_OF, "long@example.com")[0] == 0
    assert listed(capsys, db) == ["long@example.com", "short@example.com"]
    assert listed(capsys, db, "2026-03-12T00:00:00") == ["long@example.com"]
    assert listed(capsys, db, "2100-01-01T00:00:00") == ["long@example.com"]


def test_library_refuses_an_expiry_not_after_now() -> None:
    store = Store.memory()
    now = datetime(2026, 3, 1, tzinfo=UTC)
    for expiry in (now, now - timedelta(seconds=1)):
        with pytest.raises(S.SuppressionError, match="must be after now"):
            S.add(store, "a@example.com", now=now, expires_at=expiry)
    assert store.con.execute("SELECT count(*) FROM suppression_manual").fetchone() == (0,)


def test_never_list_normalises_and_says_when_absent(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    rc, out, err = cli(capsys, "add", "--never", "--db", db, "-f", "json", "Seed@Example.COM")
    assert rc == 0, err
    assert json.loads(out)[0]["address"] == "seed@example.com"
    rc, _, err = cli(capsys, "remove", "--never", "--db", db, "Other@example.com")
    assert rc == 2
    assert "(as other@example.com) is not on the never-suppress list" in one_line(err)
    rc, out, err = cli(capsys, "remove", "--never", "--db", db, "-f", "json", "SEED@example.com")
    assert rc == 0, err
    assert json.loads(out)[0]["action"] == "never-suppress entry removed"
    rc, out, _ = cli(capsys, "list", "--never", "--db", db, "-f", "json")
    assert json.loads(out) == []


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("Spammy.Person@Example.COM", "spammy.person@example.com"),
        ("JÖRG.Smith@Bücher.example", "jÖrg.smith@xn--bcher-kva.example"),  # ASCII letters only
        ('"John Doe"@Example.org', '"john doe"@example.org'),
        ("U@[IPv6:2001:DB8::1]", "u@[IPv6:2001:db8::1]"),
    ],
)
def test_one_normal_form(raw: str, address: str) -> None:
    assert S.normalize_address(raw).address == address
    assert S.never_key(raw) == address
    store = Store.memory()
    sql = store.con.execute("SELECT suppression_simple_address(?)", [raw]).fetchone()
    assert sql is not None and sql[0] in (None, address)  # SQL reads only plain ASCII ones


def test_export_format_names_match_the_registry() -> None:
    assert tuple(e.name for e in exports.EXPORTERS) == EXPORT_FORMATS


def test_command_module_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import mtalens.pipeline.commands.suppressions\n"
        "print(sorted(m for m in ('polars', 'pyarrow', 'duckdb', 'idna', 'flanker',"
        " 'mtalens.pipeline.exports', 'mtalens.pipeline.suppressions') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the 0012 migration ----------------------------------------------------------------------


def test_migration_folds_stored_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.duckdb"
    every = store_module.load_migrations()
    monkeypatch.setattr(
        store_module, "load_migrations", lambda: [m for m in every if m.version <= 11]
    )
    now = day(5)
    # what the code before 0012 had stored: rows in the tables (the views and macros of that
    # time are not in the migrations any more, so its code cannot run here)
    with Store.open(path) as old:
        assert old.con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (11,)
        for i, (address, at) in enumerate(
            [
                ("Mixed.Case@example.com", day(0)),
                ("mixed.case@example.com", day(1)),
                ("Jos\u00e9.X@B\u00fccher.example", day(0)),
            ]
        ):
            old.con.execute(
                "INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service,"
                " recipient, status, dsn, reply_code, diagnostic, reason, category, hard,"
                " source_key, line_offset) VALUES (?, 'mx1', ?, ?, 'smtp', ?, 'bounced', '5.1.1',"
                " 550, '550 5.1.1 user unknown', 'userunknown', 'unknown', true, 'src', ?)",
                [f"k{i}", f"Q{i}", at, address, i],
            )
        # local parts as given (this code folds them)
        old.con.execute(
            "INSERT INTO suppression_addresses VALUES (?, ?, NULL, ?)",
            ["Jos\u00e9.X@B\u00fccher.example", "Jos\u00e9.X@xn--bcher-kva.example", now],
        )
        old.con.execute(
            "INSERT INTO suppression_manual (address, action, occurred_at) VALUES (?, 'add', ?)",
            ["Hand.Made@example.com", day(2)],
        )
        old.con.executemany(
            "INSERT INTO suppression_never VALUES (?, ?, ?)",
            [["Keep.Me@example.com", "first", day(0)], ["KEEP.me@example.com", "second", day(1)],
             ["@ours.example", None, day(0)]],
        )  # fmt: skip
        # an export before: both spellings went to the target
        old.con.executemany(
            "INSERT INTO suppression_export_state VALUES ('ses', ?, ?, ?)",
            [[a, k, now] for a, k in (("Mixed.Case@example.com", "hard"),
                                      ("mixed.case@example.com", "hard"),
                                      ("Hand.Made@example.com", "manual"))],
        )  # fmt: skip
        # and a summary built over the unfolded forms
        old.con.execute(
            "INSERT INTO suppression_summary_state VALUES (1, '{}', 3, 0, 0, 0, 1, ?)", [day(1)]
        )
    monkeypatch.undo()

    with Store.open(path) as new:
        applied = new.con.execute("SELECT version FROM schema_migrations WHERE version = 12")
        assert applied.fetchall() == [(12,)]
        assert S.summary_state(new) is None  # rebuilt on the next refresh
        never = new.con.execute("SELECT entry, note FROM suppression_never ORDER BY 1").fetchall()
        assert never == [("@ours.example", None), ("keep.me@example.com", "first")]
        state = new.con.execute(
            "SELECT address FROM suppression_export_state WHERE name = 'ses' ORDER BY 1"
        ).fetchall()
        # both spellings were exported before: the target holds one address now
        assert [a for (a,) in state] == ["hand.made@example.com", "mixed.case@example.com"]
        folded = new.con.execute("SELECT address FROM suppression_addresses").fetchall()
        assert folded == [("jos\u00e9.x@xn--bcher-kva.example",)]  # ASCII letters only
        after = sorted(s.address for s in S.list_suppressions(new, POLICY, now=now))
        assert after == [
            "hand.made@example.com", "jos\u00e9.x@xn--bcher-kva.example", "mixed.case@example.com"
        ]  # fmt: skip
        d = [s for s in S.list_suppressions(new, POLICY, now=now, include_all=True)
             if s.address == "mixed.case@example.com"]  # fmt: skip
        assert len(d) == 1 and d[0].evidence_count == 2
        # the target already holds every address in its new spelling: nothing to add or remove
        r = exports.export_suppressions(new, POLICY, "ses-jsonl", now=now, out=tmp_path / "e2",
                                        since_last="ses")  # fmt: skip
        assert (r.added, r.removed) == (0, 0)
        S.refresh_suppression_summary(new, POLICY)
        assert sorted(s.address for s in S.list_suppressions(new, POLICY, now=now)) == after
