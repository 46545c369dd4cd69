"""A log written by a real Postfix 3.7 (Debian 12), produced by bench/make_real_postfix_sample.py
with the lab in tests/lab/: every recipient's final status, enhanced status code and delays."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store

REAL = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix" / "real-postfix-3.7.log"

# What the fake MX answers per local part (tests/lab/fake_mx.py), hence what Postfix must log.
EXPECTED = {
    "ok": ("sent", "2.0.0", 250, None, "delivered"),
    "unknown": ("bounced", "5.1.1", 550, "RCPT TO", "userunknown"),
    "full": ("bounced", "5.2.2", 552, "RCPT TO", "mailboxfull"),
    "listed": ("bounced", "5.7.1", 554, "RCPT TO", "blocked"),
    "bigdata": ("bounced", "5.3.4", 552, "end of DATA", "mesgtoobig"),
    "defer": ("expired", "4.2.0", 450, "RCPT TO", "expired"),
    "busy": ("expired", "4.7.0", 421, "RCPT TO", "expired"),
}


def test_every_recipient_has_the_right_final_word(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "real.duckdb")
    stats = LogIngestor(store, tz=UTC, year=2026).run([REAL])
    assert stats.quarantined == 0 and stats.balanced
    rows = store.con.execute(
        "SELECT recipient, status, dsn, reply_code, smtp_stage, reason, delay,"
        " delay_before_queue, delay_in_queue, delay_connect, delay_transmit"
        " FROM recipient_outcomes WHERE recipient LIKE '%@example.com' OR recipient LIKE '%@example.org'"
    ).fetchall()
    assert rows, "no outbound recipients found"
    seen = set()
    for rcpt, status, dsn, code, stage, reason, delay, a, b, c, d in rows:
        kind = rcpt.split("@")[0].rstrip("0123456789")
        seen.add(kind)
        assert (status, dsn, code, stage, reason) == EXPECTED[kind], rcpt
        # Postfix rounds each stage separately (delay_logging_resolution_limit): allow that
        assert abs((a + b + c + d) - delay) <= 0.05, rcpt
    assert seen == set(EXPECTED)
    # every DSN Postfix generated is linked to the message it is about
    orphans = store.con.execute(
        "SELECT count(*) FROM messages WHERE origin = 'bounce' AND bounce_of_key IS NULL"
    ).fetchone()
    assert orphans == (0,)
    kinds = dict(
        store.con.execute(
            "SELECT notification_kind, count(*) FROM messages WHERE origin = 'bounce' GROUP BY 1"
        ).fetchall()
    )
    assert kinds.get("non-delivery", 0) >= 5 and kinds.get("delay", 0) >= 2
