"""The fast suppression policy (0008, staged since 0009) decides exactly as the straightforward
definition (suppression_decisions_reference) does."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline import suppressions as S
from pipeline.config import SuppressionsConfig
from pipeline.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_suppressions import synthesise

NOW = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def store() -> Store:
    s = Store.memory()
    synthesise(s, deliveries=60_000, bounces=8_000, addresses=15_000)
    # attempts that make recipient_outcomes matter: a retry that succeeded after a bounce, a
    # success followed by a later failure, a logged "status=expired", evidence after as_of
    s.con.execute(
        """
        INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,
                                  status, dsn, reply_code, reason, category, rule_id, line_offset)
        SELECT message_key, host, queue_id, logged_at + INTERVAL 1 HOUR, service, recipient,
               CASE WHEN status = 'sent' THEN 'bounced' ELSE 'sent' END,
               CASE WHEN status = 'sent' THEN '5.1.1' ELSE '2.0.0' END,
               CASE WHEN status = 'sent' THEN 550 ELSE 250 END,
               CASE WHEN status = 'sent' THEN 'userunknown' ELSE 'delivered' END,
               'c', 'retry', line_offset + 1000000000
        FROM delivery_log WHERE line_offset % 97 = 0
        UNION ALL
        SELECT message_key, host, queue_id, logged_at + INTERVAL 2 HOUR, service, recipient,
               'expired', NULL, NULL, 'expired', 'c', 'expired', line_offset + 2000000000
        FROM delivery_log WHERE line_offset % 89 = 0 AND status = 'deferred'
        UNION ALL
        SELECT message_key, host, queue_id, TIMESTAMPTZ '2026-07-05 00:00:00+00', service,
               recipient, 'sent', '2.0.0', 250, 'delivered', 'c', 'late', line_offset + 3000000000
        FROM delivery_log WHERE line_offset % 83 = 0
        """
    )
    # ties: evidence of one address at the same instant, where the latest by event id has NULL
    # details (another message, '~' sorts after the digits and ':') and where a DSN (event id
    # "dsn:...", before "log:...") carries a diagnostic the log line at its instant lacks
    s.con.execute(
        """
        INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,
                                  status, dsn, reply_code, diagnostic, reason, category, rule_id,
                                  line_offset)
        SELECT message_key || '~', host, queue_id, logged_at, service, recipient, status, NULL,
               NULL, NULL, reason, NULL, rule_id, line_offset
        FROM delivery_log WHERE status = 'bounced' AND line_offset % 7 = 0
        """
    )
    s.con.execute(
        """
        INSERT INTO bounce_reports (report_hash, source, message_index, "offset", kind, agent,
                                    report_date, original_message_id, ingested_at)
        SELECT 'tie' || line_offset, 'test', 1, 0, 'bounce', 'rfc3464', logged_at,
               '<tie' || line_offset || '@test>', TIMESTAMPTZ '2026-06-30 00:00:00+00'
        FROM delivery_log
        WHERE status = 'bounced' AND line_offset % 11 = 0 AND NOT ends_with(message_key, '~')
        """
    )
    s.con.execute(
        """
        INSERT INTO bounce_recipients (report_hash, position, recipient, action, status,
                                       reply_code, diagnostic, reason, category, rule_id)
        SELECT 'tie' || line_offset, 1, recipient, 'failed', dsn, NULL,
               'smtp; 550 from the DSN', reason, 'dsn-category', NULL
        FROM delivery_log
        WHERE status = 'bounced' AND line_offset % 11 = 0 AND NOT ends_with(message_key, '~')
        """
    )
    S.prepare(s, now=NOW)
    return s


@pytest.mark.parametrize(
    "policy",
    [SuppressionsConfig(), SuppressionsConfig(soft_threshold=2, hard_expiry_days=60)],
    ids=["defaults", "tuned"],
)
def test_fast_policy_equals_reference(store: Store, policy: SuppressionsConfig) -> None:
    fast = S.decisions_frame(store, policy, now=NOW, suppressed_only=False)
    ref = S.reference_decisions_frame(store, policy, now=NOW, suppressed_only=False)
    assert fast.height == ref.height > 1_000
    assert fast["suppressed"].sum() > 1_000
    assert set(fast["kind"].drop_nulls()) == {"complaint", "hard", "manual", "soft"}
    assert fast.columns == ref.columns
    for col in ref.columns:
        differs = fast.filter(pl.col(col).ne_missing(ref[col]))
        assert differs.height == 0, (col, differs.head(3).rows())


def test_fast_policy_before_the_end_of_the_evidence(store: Store) -> None:
    policy = SuppressionsConfig()
    when = datetime(2026, 4, 1, tzinfo=UTC)
    fast = S.decisions_frame(store, policy, now=when, suppressed_only=False)
    ref = S.reference_decisions_frame(store, policy, now=when, suppressed_only=False)
    assert fast.height > 0 and fast.equals(ref)


@pytest.mark.parametrize(
    "policy",
    [SuppressionsConfig(), SuppressionsConfig(soft_threshold=2, hard_expiry_days=60)],
    ids=["defaults", "tuned"],
)
def test_one_query_macro_equals_reference(store: Store, policy: SuppressionsConfig) -> None:
    one = S.one_query_decisions_frame(store, policy, now=NOW, suppressed_only=False)
    ref = S.reference_decisions_frame(store, policy, now=NOW, suppressed_only=False)
    assert one.height == ref.height > 1_000
    for col in ref.columns:
        differs = one.filter(pl.col(col).ne_missing(ref[col]))
        assert differs.height == 0, (col, differs.head(3).rows())


def test_ties_are_broken_by_event_id(store: Store) -> None:
    frame = S.decisions_frame(store, SuppressionsConfig(), now=NOW, suppressed_only=False)
    # an address whose latest evidence is a '~' twin without details: the details come from
    # the row before it at the same instant (the fixture made such twins)
    twins = frame.filter(pl.col("event_ids").list.last().str.contains("~", literal=True))
    assert twins.height > 10
    assert twins["diagnostic"].null_count() < twins.height
    ids = frame.filter(pl.col("evidence_count") > 1)["event_ids"].to_list()
    assert any(any(i.startswith("dsn:tie") for i in row) for row in ids)


def test_staged_on_a_read_only_store_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as rw:
        synthesise(rw, deliveries=20_000, bounces=3_000, addresses=5_000)
        S.prepare(rw, now=NOW)
    with Store.open(path, read_only=True) as ro:
        settings = "SELECT current_setting('disabled_optimizers'), current_setting('preserve_insertion_order')"
        ro.con.execute("SET preserve_insertion_order = false")
        before = ro.con.execute(settings).fetchall()
        policy = SuppressionsConfig()
        staged = S.decisions_frame(ro, policy, now=NOW, suppressed_only=False)
        ref = S.reference_decisions_frame(ro, policy, now=NOW, suppressed_only=False)
        assert staged.height > 100 and staged.equals(ref)
        assert ro.con.execute(settings).fetchall() == before
        temp = ro.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary "
            "UNION ALL SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
        ).fetchall()
        assert temp == []
