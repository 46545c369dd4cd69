"""`mta` in the log views (issue 11, migration 0018): the format each source was read as, for
new stores and for stores written before the column existed."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from mtalens.pipeline import store as store_module
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
POSTFIX = ROOT / "sample_logs" / "postfix" / "problems.log"
EXIM = sorted((ROOT / "sample_logs" / "exim").glob("*.log"))
VIEWS = ("messages", "deliveries", "recipient_outcomes", "rejections", "auth_failures", "events")


def by_mta(s: Store) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for v in VIEWS:
        rows = s.con.execute(f"SELECT mta, count(*) FROM {v} GROUP BY ALL").fetchall()
        out[v] = {str(m): int(n) for m, n in rows}
    return out


@pytest.mark.parametrize("fast", [False, True], ids=["pure", "fast"])
def test_every_log_view_names_the_mta_of_its_rows(tmp_path: Path, fast: bool) -> None:
    assert EXIM
    with Store.open(tmp_path / "s.duckdb") as s:
        LogIngestor(s, tz=UTC, year=2026, fast=fast).run([POSTFIX, *EXIM])
        got = by_mta(s)
        exim_ids = s.con.execute(
            "SELECT count(*) FROM deliveries WHERE mta = 'exim' AND queue_id NOT LIKE '%-%-%'"
        ).fetchone()
    assert set(got["deliveries"]) == {"postfix", "exim"}
    assert set(got["messages"]) == {"postfix", "exim"}
    assert got["recipient_outcomes"]["exim"] > 0 and got["rejections"]["postfix"] > 0
    assert exim_ids == (0,)  # the rows of the Exim sources are Exim's


def test_a_store_from_before_learns_the_mta_from_its_queue_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = tmp_path / "new.duckdb"
    with Store.open(fresh) as s:
        LogIngestor(s, tz=UTC, year=2026, fast=False).run([POSTFIX, *EXIM])
        want = by_mta(s)
    every = store_module.load_migrations()
    monkeypatch.setattr(store_module, "load_migrations",
                        lambda: [m for m in every if m.version < 18])  # fmt: skip
    db = tmp_path / "old.duckdb"
    with Store.open(db) as s:  # the same rows, as a store without the column holds them
        s.con.execute(f"ATTACH '{fresh}' AS f (READ_ONLY)")
        for t in ("message_log", "delivery_log", "rejection_log", "auth_failure_log",
                  "event_log"):  # fmt: skip
            s.con.execute(f"INSERT INTO {t} SELECT * FROM f.{t}")
        s.con.execute("INSERT INTO checkpoints SELECT * EXCLUDE (log_format) FROM f.checkpoints")
        s.con.execute("DETACH f")
    monkeypatch.undo()
    with Store.open(db) as s:  # 0018 runs
        got = by_mta(s)
    assert got == want and set(got["deliveries"]) == {"postfix", "exim"}
