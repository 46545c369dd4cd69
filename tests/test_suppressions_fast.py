"""The fast suppression policy (0008, staged since 0009) decides exactly as the straightforward
definition (suppression_decisions_reference) does."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mtalens.pipeline import suppressions as S
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store
from tests.suppression_reference import reference_decisions_frame

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_suppressions import synthesise

NOW = datetime(2026, 7, 1, tzinfo=UTC)


def build(s: Store, *, deliveries: int, bounces: int, addresses: int) -> None:
    """Synthetic evidence plus the cases that make the policy hard to get right."""
    synthesise(s, deliveries=deliveries, bounces=bounces, addresses=addresses)
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
    # addresses only the Python normaliser reads (IDNA domain, quoted local part, upper-case
    # non-ASCII domain that maps to an existing one), bouncing in the log and in DSNs
    for n, raw in enumerate(
        ["jos\u00e9@b\u00fccher.example", '"a b"@example.com', "jos\u00e9@B\u00dcCHER.example"]
    ):
        s.con.execute(
            "INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service,"
            " recipient, status, dsn, reply_code, reason, category, rule_id, line_offset)"
            " SELECT 'odd|' || ? || '|' || i, 'mx', 'O' || i,"
            " TIMESTAMPTZ '2026-05-01 00:00:00+00' + to_days(CAST(i AS INTEGER)), 'smtp', ?,"
            " 'bounced', '5.2.2', 552, 'mailboxfull', 'c', 'odd', i FROM range(4) t(i)",
            [n, raw],
        )


@pytest.fixture(scope="module")
def store() -> Store:
    s = Store.memory()
    build(s, deliveries=60_000, bounces=8_000, addresses=15_000)
    S.prepare(s, now=NOW)
    return s


def staged_frame(store: Store, policy: SuppressionsConfig, *, now: datetime) -> pl.DataFrame:
    """The staged evaluation of every row (0009), whatever the summary's state."""
    with S.staged_decisions(store, policy, now=now) as (sql, params):
        frame = pl.from_arrow(
            store.con.sql(sql + " ORDER BY address", params=params).to_arrow_table()
        )
    assert isinstance(frame, pl.DataFrame)
    return frame


def assert_same(got: pl.DataFrame, ref: pl.DataFrame) -> None:
    assert got.columns == ref.columns
    assert got.schema == ref.schema
    assert got.height == ref.height
    assert got["address"].to_list() == ref["address"].to_list()
    for col in ref.columns:
        differs = got.filter(pl.col(col).ne_missing(ref[col]))
        assert differs.height == 0, (col, differs.head(3).rows())


@pytest.mark.parametrize(
    "policy",
    [SuppressionsConfig(), SuppressionsConfig(soft_threshold=2, hard_expiry_days=60)],
    ids=["defaults", "tuned"],
)
def test_fast_policy_equals_reference(store: Store, policy: SuppressionsConfig) -> None:
    fast = staged_frame(store, policy, now=NOW)
    ref = reference_decisions_frame(store, policy, now=NOW, suppressed_only=False)
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
    fast = staged_frame(store, policy, now=when)
    ref = reference_decisions_frame(store, policy, now=when, suppressed_only=False)
    assert fast.height > 0 and fast.equals(ref)


@pytest.mark.parametrize(
    "policy",
    [SuppressionsConfig(), SuppressionsConfig(soft_threshold=2, hard_expiry_days=60)],
    ids=["defaults", "tuned"],
)
def test_one_query_macro_equals_reference(store: Store, policy: SuppressionsConfig) -> None:
    one = S.one_query_decisions_frame(store, policy, now=NOW, suppressed_only=False)
    ref = reference_decisions_frame(store, policy, now=NOW, suppressed_only=False)
    assert one.height == ref.height > 1_000
    for col in ref.columns:
        differs = one.filter(pl.col(col).ne_missing(ref[col]))
        assert differs.height == 0, (col, differs.head(3).rows())


def test_ties_are_broken_by_event_id(store: Store) -> None:
    frame = staged_frame(store, SuppressionsConfig(), now=NOW)
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
        ref = reference_decisions_frame(ro, policy, now=NOW, suppressed_only=False)
        assert staged.height > 100 and staged.equals(ref)
        assert ro.con.execute(settings).fetchall() == before
        temp = ro.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary "
            "UNION ALL SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
        ).fetchall()
        assert temp == []


# --- the per-address summary (0010): summary + unfolded rows = the reference -------------------


POLICIES = [SuppressionsConfig(), SuppressionsConfig(soft_threshold=2, hard_expiry_days=60)]


def evaluated_frame(store: Store, policy: SuppressionsConfig, *, now: datetime) -> pl.DataFrame:
    return S.decisions_frame(store, policy, now=now, suppressed_only=False)


@pytest.mark.parametrize("policy", POLICIES, ids=["defaults", "tuned"])
def test_summary_equals_reference(store: Store, policy: SuppressionsConfig) -> None:
    report = S.refresh_suppression_summary(store, policy)
    assert report.full and report.candidates > 1_000
    assert S.summary_usable(store, policy)
    for when in (NOW, datetime(2026, 4, 1, tzinfo=UTC)):
        ref = reference_decisions_frame(store, policy, now=when, suppressed_only=False)
        assert ref.height > 1_000
        assert_same(evaluated_frame(store, policy, now=when), ref)
    again = S.refresh_suppression_summary(store, policy)
    assert (again.full, again.addresses, again.new_deliveries) == (False, 0, 0)
    assert again.candidates == report.candidates


def test_summary_evidence_after_as_of_is_recomputed(store: Store) -> None:
    # the fixture has successes logged after NOW: those addresses come from their own rows
    policy = SuppressionsConfig()
    S.refresh_suppression_summary(store, policy)
    with S.evaluated_decisions(store, policy, now=NOW) as (sql, params):
        late = store.con.execute("SELECT count(*) FROM mtalens_suppression_scope").fetchall()[0]
        total = store.con.execute("SELECT count(*) FROM suppression_summary").fetchall()[0]
        rows = store.con.execute(sql, params).fetchall()
    assert 0 < late[0] < total[0] / 10
    assert len(rows) > 1_000


def test_address_decisions_equal_reference_rows(store: Store) -> None:
    policy = SuppressionsConfig()
    ref = reference_decisions_frame(store, policy, now=NOW, suppressed_only=False)
    sample = ref.filter(
        pl.col("kind").is_null() | pl.col("suppressed") | (pl.col("evidence_count") > 2)
    ).gather_every(97)
    assert sample.height > 20
    with S.address_decisions(store, policy, sample["address"].to_list(), now=NOW) as (q, p):
        got = pl.from_arrow(store.con.sql(q + " ORDER BY address", params=p).to_arrow_table())
    assert isinstance(got, pl.DataFrame)
    assert_same(got, sample)


# Data arriving in several ingests: the source store's rows copied over in four parts, in row
# order (later parts hold retries that replace earlier final attempts), messages expiring
# (message_log rows rewritten) one part after their deliveries, odd addresses normalised
# late, manual decisions in between.
PARTS = 4


@pytest.fixture(scope="module")
def source() -> Store:
    s = Store.memory()
    build(s, deliveries=16_000, bounces=3_000, addresses=4_000)
    s.con.execute(
        "INSERT INTO suppression_manual (address, action, note, occurred_at) VALUES "
        "('jos\u00e9@b\u00fccher.example', 'add', 'late', TIMESTAMPTZ '2026-05-20 00:00:00+00'),"
        "('user7@d7.example', 'remove', 'late', TIMESTAMPTZ '2026-06-29 00:00:00+00')"
    )
    return s


def _copy(src: Store, dst: Store, table: str, where: str) -> None:
    chunk = src.con.sql(f"SELECT * FROM {table} WHERE {where}").to_arrow_table()
    dst.con.register("mtalens_test_chunk", chunk)
    try:
        dst.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM mtalens_test_chunk")
    finally:
        dst.con.unregister("mtalens_test_chunk")


def _ingest_part(src: Store, dst: Store, k: int) -> None:
    def part(table: str) -> str:
        n = int(src.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        return f"rowid >= {n * k // PARTS} AND rowid < {n * (k + 1) // PARTS}"

    if k == 0:
        _copy(src, dst, "suppression_never", "true")
    _copy(src, dst, "delivery_log", part("delivery_log"))
    # messages arrive unexpired; qmgr's expiry rewrites the row later
    chunk = src.con.sql(
        f"SELECT * REPLACE (NULL AS expired_at) FROM message_log WHERE {part('message_log')}"
    ).to_arrow_table()
    dst.con.register("mtalens_test_chunk", chunk)
    dst.con.execute("INSERT INTO message_log BY NAME SELECT * FROM mtalens_test_chunk")
    dst.con.unregister("mtalens_test_chunk")
    expiring = src.con.sql(
        "SELECT message_key, expired_at FROM message_log "
        f"WHERE expired_at IS NOT NULL AND hash(message_key) % {PARTS} <= {k}"
    ).to_arrow_table()
    dst.con.register("mtalens_test_expiring", expiring)
    with dst.transaction() as con:
        con.execute(
            "CREATE TEMP TABLE mtalens_test_rewritten AS SELECT m.* REPLACE (x.expired_at AS"
            " expired_at) FROM message_log m JOIN mtalens_test_expiring x USING (message_key)"
            " WHERE m.expired_at IS DISTINCT FROM x.expired_at"
        )
        con.execute(
            "DELETE FROM message_log WHERE message_key IN"
            " (SELECT message_key FROM mtalens_test_rewritten)"
        )
        con.execute("INSERT INTO message_log SELECT * FROM mtalens_test_rewritten")
        con.execute("DROP TABLE mtalens_test_rewritten")
    dst.con.unregister("mtalens_test_expiring")
    reports = (
        f"report_hash IN (SELECT report_hash FROM bounce_reports WHERE {part('bounce_reports')})"
    )
    _copy(src, dst, "bounce_reports", part("bounce_reports"))
    _copy(src, dst, "bounce_recipients", reports)
    _copy(src, dst, "complaint_reports", reports)
    _copy(src, dst, "suppression_manual", part("suppression_manual"))


@pytest.mark.parametrize(
    "refresh_after", [{0, 1, 2, 3}, {0}, {1, 3}, set()], ids=["every", "first", "some", "never"]
)
def test_summary_with_several_ingests_equals_reference(
    source: Store, refresh_after: set[int]
) -> None:
    policy = SuppressionsConfig()
    dst = Store.memory()
    for k in range(PARTS):
        _ingest_part(source, dst, k)
        if k != PARTS - 1:  # the odd addresses (last part) are normalised after a refresh
            S.prepare(dst, now=NOW)
        if k in refresh_after:
            report = S.refresh_suppression_summary(dst, policy)
            assert report.full == (k == min(refresh_after))
            if not report.full:  # both ways of folding an address are exercised
                assert 0 < report.combined < report.addresses, report
        assert S.summary_usable(dst, policy) == (k >= min(refresh_after, default=PARTS))
        for when in (NOW, datetime(2026, 5, 15, tzinfo=UTC)):
            ref = reference_decisions_frame(dst, policy, now=when, suppressed_only=False)
            assert ref.height > 100
            assert_same(evaluated_frame(dst, policy, now=when), ref)
    assert S.prepare(dst, now=NOW) == 0
    # and the same rows as the source store, where everything arrived at once
    S.prepare(source, now=NOW)
    final = reference_decisions_frame(source, policy, now=NOW, suppressed_only=False)
    assert_same(evaluated_frame(dst, policy, now=NOW), final)


def test_summary_of_another_policy_is_not_used(source: Store) -> None:
    dst = Store.memory()
    _ingest_part(source, dst, 0)
    S.prepare(dst, now=NOW)
    tuned, defaults = POLICIES[1], POLICIES[0]
    S.refresh_suppression_summary(dst, tuned)
    assert S.summary_usable(dst, tuned) and not S.summary_usable(dst, defaults)
    ref = reference_decisions_frame(dst, defaults, now=NOW, suppressed_only=False)
    assert_same(evaluated_frame(dst, defaults, now=NOW), ref)
    # a refresh with the other policy rebuilds the summary for it
    assert S.refresh_suppression_summary(dst, defaults).full
    assert S.summary_usable(dst, defaults) and not S.summary_usable(dst, tuned)


def test_summary_read_only_with_unfolded_rows(source: Store, tmp_path: Path) -> None:
    """A reader (the daemon holds the writes) gets the reference's rows while new rows are
    not folded in yet, and leaves nothing behind."""
    policy = SuppressionsConfig()
    path = tmp_path / "s.duckdb"
    with Store.open(path) as rw:
        for k in range(2):
            _ingest_part(source, rw, k)
        S.prepare(rw, now=NOW)
        S.refresh_suppression_summary(rw, policy)
        for k in range(2, PARTS):
            _ingest_part(source, rw, k)
        S.prepare(rw, now=NOW)
    with Store.open(path, read_only=True) as ro:
        assert S.summary_usable(ro, policy)
        with pytest.raises(S.SuppressionError):
            S.refresh_suppression_summary(ro, policy)
        got = evaluated_frame(ro, policy, now=NOW)
        ref = reference_decisions_frame(ro, policy, now=NOW, suppressed_only=False)
        assert ref.height > 100
        assert_same(got, ref)
        temp = ro.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary "
            "UNION ALL SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
        ).fetchall()
        assert temp == []


def test_summary_falls_back_when_a_source_lost_rows(source: Store) -> None:
    policy = SuppressionsConfig()
    dst = Store.memory()
    _ingest_part(source, dst, 0)
    S.prepare(dst, now=NOW)
    S.refresh_suppression_summary(dst, policy)
    dst.con.execute("DELETE FROM delivery_log WHERE rowid % 5 = 0")
    assert not S.summary_usable(dst, policy)
    ref = reference_decisions_frame(dst, policy, now=NOW, suppressed_only=False)
    assert_same(evaluated_frame(dst, policy, now=NOW), ref)
    assert S.refresh_suppression_summary(dst, policy).full


def _attempt(
    store: Store, key: str, recipient: str, when: datetime, status: str, reason: str, offset: int
) -> None:
    store.con.execute(
        "INSERT INTO delivery_log (message_key, host, queue_id, logged_at, service, recipient,"
        " status, dsn, reply_code, reason, category, rule_id, line_offset)"
        " VALUES (?, 'mx', 'Q', ?, 'smtp', ?, ?, ?, ?, ?, 'c', 'r', ?)",
        [key, when, recipient, status,
         {"sent": "2.0.0", "bounced": "5.1.1"}.get(status, "4.7.1"),
         {"sent": 250, "bounced": 550}.get(status, 450), reason, offset],
    )  # fmt: skip


def _check(store: Store, policy: SuppressionsConfig, when: datetime) -> pl.DataFrame:
    ref = reference_decisions_frame(store, policy, now=when, suppressed_only=False)
    assert_same(evaluated_frame(store, policy, now=when), ref)
    return ref


def test_summary_success_after_as_of_then_new_failure() -> None:
    """A folded success after as_of does not count at as_of, even for an address that only
    had successes when folded and gets its first failure later."""
    policy = SuppressionsConfig()
    s = Store.memory()
    _attempt(s, "m1", "x@example.com", datetime(2026, 3, 10, tzinfo=UTC), "sent", "delivered", 1)
    S.refresh_suppression_summary(s, policy)
    _attempt(
        s, "m2", "x@example.com", datetime(2026, 3, 3, tzinfo=UTC), "bounced", "userunknown", 2
    )
    ref = _check(s, policy, datetime(2026, 3, 5, tzinfo=UTC))
    assert ref["suppressed"].to_list() == [True]
    ref = _check(s, policy, datetime(2026, 3, 20, tzinfo=UTC))
    assert ref["suppressed"].to_list() == [False]


def test_summary_new_deferral_at_a_folded_line_offset() -> None:
    """An expired outcome reads the deferrals logged at its (message, line offset), whoever
    they name: a new row there changes a folded address's evidence."""
    policy = SuppressionsConfig(soft_threshold=2)
    s = Store.memory()
    t = datetime(2026, 3, 1, tzinfo=UTC)
    s.con.execute(
        "INSERT INTO message_log (message_key, host, queue_id, first_seen, last_seen, expired_at)"
        " VALUES ('m1', 'mx', 'Q', ?, ?, ?)",
        [t, t, datetime(2026, 3, 6, tzinfo=UTC)],
    )
    _attempt(s, "m1", "y@example.com", t, "deferred", "greylisting", 500)
    S.refresh_suppression_summary(s, policy)
    _attempt(s, "m1", "z@example.com", t, "deferred", "greylisting", 500)
    ref = _check(s, policy, datetime(2026, 4, 1, tzinfo=UTC))
    y = ref.filter(pl.col("address") == "y@example.com")
    assert y["evidence_count"].to_list() == [2]  # the reference joins both deferrals
    S.refresh_suppression_summary(s, policy)
    _check(s, policy, datetime(2026, 4, 1, tzinfo=UTC))


# --- the fold's combining path (_stage_fast) and each way it must fall back ------------------


def _day(d: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, d, hour, tzinfo=UTC)


def _message(store: Store, key: str, when: datetime, expired_at: datetime | None = None) -> None:
    store.con.execute(
        "INSERT INTO message_log (message_key, host, queue_id, first_seen, last_seen, expired_at)"
        " VALUES (?, 'mx', 'Q', ?, ?, ?)",
        [key, when, when, expired_at],
    )


def _folded_base(policy: SuppressionsConfig) -> Store:
    """A few addresses with a folded history, the summary built over it."""
    s = Store.memory()
    _attempt(s, "a1", "a@example.com", _day(1), "bounced", "userunknown", 1)
    _attempt(s, "a2", "a@example.com", _day(5), "bounced", "userunknown", 2)
    _attempt(s, "s1", "s@example.com", _day(1), "bounced", "mailboxfull", 3)
    _attempt(s, "s2", "s@example.com", _day(2), "bounced", "mailboxfull", 4)
    # soft failures a success then set aside (not live: they must not count toward a trigger)
    _attempt(s, "t1", "t@example.com", _day(1), "bounced", "mailboxfull", 5)
    _attempt(s, "t2", "t@example.com", _day(2), "bounced", "mailboxfull", 6)
    _attempt(s, "t3", "t@example.com", _day(2, 12), "sent", "delivered", 7)
    _attempt(s, "c1", "c@example.com", _day(1), "sent", "delivered", 8)
    # a deferral in a message that has not expired yet (no evidence until it does)
    _message(s, "d1", _day(1))
    _attempt(s, "d1", "d@example.com", _day(1), "deferred", "mailboxfull", 9)
    _attempt(s, "d2", "d@example.com", _day(4), "bounced", "mailboxfull", 10)
    # an address only Python normalises (a quoted local part, RFC 5321 section 4.1.2)
    _attempt(s, "q1", '"q r"@Example.COM', _day(3), "bounced", "userunknown", 11)
    S.prepare(s, now=_day(6))
    S.refresh_suppression_summary(s, policy)
    return s


def _manual(
    store: Store, address: str, action: str, when: datetime, expires: datetime | None
) -> None:
    store.con.execute(
        "INSERT INTO suppression_manual (address, action, note, occurred_at, expires_at)"
        " VALUES (?, ?, 'n', ?, ?)",
        [address, action, when, expires],
    )


def _rewrite_expiry(store: Store, key: str, expired_at: datetime) -> None:
    # message_log rows are rewritten while a message is open (0006), not appended
    with store.transaction() as con:
        con.execute(
            "CREATE TEMP TABLE mtalens_test_m AS SELECT * REPLACE (CAST(? AS TIMESTAMPTZ)"
            " AS expired_at) FROM message_log WHERE message_key = ?",
            [expired_at, key],
        )
        con.execute("DELETE FROM message_log WHERE message_key = ?", [key])
        con.execute("INSERT INTO message_log SELECT * FROM mtalens_test_m")
        con.execute("DROP TABLE mtalens_test_m")


FAST_CASES: dict[str, tuple[Any, int]] = {
    # new evidence after everything folded about the address: combined
    "later-hard": (lambda s: _attempt(s, "a3", "a@example.com", _day(9), "bounced",
                                      "userunknown", 20), 1),
    "soft-reaches-folded-days": (lambda s: _attempt(s, "s3", "s@example.com", _day(3),
                                                    "bounced", "mailboxfull", 20), 1),
    "soft-after-a-success": (lambda s: _attempt(s, "t4", "t@example.com", _day(3), "bounced",
                                                "mailboxfull", 20), 1),
    "first-failure-after-a-success": (lambda s: _attempt(s, "c2", "c@example.com", _day(7),
                                                         "bounced", "userunknown", 20), 1),
    "new-address": (lambda s: _attempt(s, "n1", "n@example.com", _day(7), "bounced",
                                       "userunknown", 20), 1),
    "manual-add": (lambda s: _manual(s, "a@example.com", "add", _day(8), _day(20)), 1),
    "several-verdicts": (lambda s: (
        _attempt(s, "s4", "s@example.com", _day(6), "bounced", "userunknown", 20),
        _attempt(s, "s5", "s@example.com", _day(7), "bounced", "mailboxfull", 21),
        _attempt(s, "s6", "s@example.com", _day(8), "bounced", "mailboxfull", 22)), 1),
    # each way it must fall back (0 combined)
    "dated-before-folded-evidence": (lambda s: _attempt(s, "a3", "a@example.com", _day(3),
                                                        "bounced", "userunknown", 20), 0),
    "same-time-as-folded-evidence": (lambda s: _attempt(s, "a3", "a@example.com", _day(5),
                                                        "bounced", "userunknown", 20), 0),
    "new-success-then-failure": (lambda s: (
        _attempt(s, "a3", "a@example.com", _day(8), "sent", "delivered", 20),
        _attempt(s, "a4", "a@example.com", _day(9), "bounced", "userunknown", 21)), 0),
    "new-manual-remove": (lambda s: _manual(s, "a@example.com", "remove", _day(8), None), 0),
    "replaces-a-counted-outcome": (lambda s: _attempt(s, "a2", "a@example.com", _day(9),
                                                      "bounced", "mailboxfull", 20), 0),
    "expiry-changed": (lambda s: (
        _rewrite_expiry(s, "d1", _day(6)),
        _attempt(s, "d3", "d@example.com", _day(9), "bounced", "mailboxfull", 20)), 0),
    "normalisation-changed": (lambda s: (
        s.con.execute("UPDATE suppression_addresses SET address = NULL, problem = 'changed'"
                      " WHERE raw = '\"q r\"@Example.COM'"),
        _attempt(s, "q2", '"q r"@example.com', _day(9), "bounced", "userunknown", 20)), 0),
}  # fmt: skip


@pytest.mark.parametrize("policy", POLICIES, ids=["defaults", "tuned"])
@pytest.mark.parametrize("case", list(FAST_CASES))
def test_fold_combines_only_what_it_may(case: str, policy: SuppressionsConfig) -> None:
    """New rows that only add evidence after everything folded about their address are
    combined with its folded candidates; anything else is evaluated again from the rows. Both
    give the reference's rows, before the fold (unfolded tail) and after it."""
    s = _folded_base(policy)
    change, combined = FAST_CASES[case]
    change(s)
    S.prepare(s, now=_day(10))
    whens = (_day(4), _day(10), datetime(2026, 6, 1, tzinfo=UTC))
    for when in whens:
        _check(s, policy, when)
    report = S.refresh_suppression_summary(s, policy)
    assert not report.full
    assert report.combined == combined, report
    assert report.addresses >= combined
    for when in whens:
        _check(s, policy, when)
    # and the summary rows are those of a full rebuild
    folded = s.con.sql("SELECT * FROM suppression_summary ORDER BY address, verdict").fetchall()
    s.con.execute("DELETE FROM suppression_summary_state")
    assert S.refresh_suppression_summary(s, policy).full
    rebuilt = s.con.sql("SELECT * FROM suppression_summary ORDER BY address, verdict").fetchall()
    assert folded == rebuilt


def test_fold_combining_the_soft_window() -> None:
    """The trigger of a soft suppression reads the folded failure days within the window."""
    policy = SuppressionsConfig()
    s = _folded_base(policy)
    _attempt(s, "s3", "s@example.com", _day(3), "bounced", "mailboxfull", 20)
    _attempt(s, "t4", "t@example.com", _day(3), "bounced", "mailboxfull", 21)
    assert S.refresh_suppression_summary(s, policy).combined == 2
    ref = _check(s, policy, _day(10))
    got = dict(zip(ref["address"].to_list(), ref["suppressed"].to_list(), strict=True))
    assert got["s@example.com"] is True  # days 1, 2 (folded) and 3: three in 30 days
    assert got["t@example.com"] is False  # days 1 and 2 were cleared by the success
