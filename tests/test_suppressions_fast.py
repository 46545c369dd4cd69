"""The fast suppression policy (0008) decides exactly as the straightforward definition does."""

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
