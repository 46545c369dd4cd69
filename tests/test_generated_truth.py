"""A generated busy-server log (bench/gen_postfix_logs.py, queue IDs reused, both timestamp
styles, several instances) against the generator's own ground truth, recipient by recipient."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC
from pathlib import Path

from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_every_delivered_bounced_and_deferred_recipient_matches_the_truth(tmp_path: Path) -> None:
    log, truth_path = tmp_path / "gen.log", tmp_path / "truth.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines", "20000",
         "--seed", "11", "--out", str(log), "--truth", str(truth_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    store = Store.open(tmp_path / "gen.duckdb")
    stats = LogIngestor(store, tz=UTC, year=2026).run([log])
    assert stats.read == 20000 and stats.quarantined == 0 and stats.balanced
    ours = Counter(
        store.con.execute(
            "SELECT queue_id, recipient, last_attempt_status, dsn FROM recipient_outcomes"
        ).fetchall()
    )
    truth = [json.loads(x) for x in truth_path.read_text().splitlines()]
    wanted = Counter(
        (t["queue_id"], t["recipient"], t["status"], t["dsn"])
        for t in truth
        if t["status"] in ("sent", "bounced", "deferred")
    )
    assert sum(wanted.values()) > 3000
    # a message may list one recipient twice (two deliveries); its outcome is one row
    missing = set(wanted) - set(ours)
    assert not missing, sorted(missing)[:5]
    # a NOQUEUE reject is one line per refused recipient; a cleanup reject of a queued message
    # is one line for all its recipients
    refused = [t for t in truth if t["status"] == "rejected"]
    rejected = sum(1 for t in refused if t["queue_id"] == "NOQUEUE") + len(
        {t["queue_id"] for t in refused if t["queue_id"] != "NOQUEUE"}
    )
    got = store.con.execute(
        "SELECT count(*) FROM rejections WHERE action IN ('reject', 'milter-reject')"
    ).fetchone()
    assert got is not None and got[0] >= rejected
