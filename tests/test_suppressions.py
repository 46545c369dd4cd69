"""The suppression policy: each rule with evidence that should and should not suppress."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mtalens.pipeline import suppressions as S
from mtalens.pipeline.config import (
    ConfigError,
    SuppressionsConfig,
    config_from_mapping,
    load_config,
)
from mtalens.pipeline.store import Store
from tests.suppression_reference import reference_decisions_frame
from tests.test_suppressions_data import T0, complaint, day, dsn, log

POLICY = SuppressionsConfig()


@pytest.fixture
def store() -> Store:
    return Store.memory()


def decide(
    store: Store, address: str, *, at: float = 200, policy: SuppressionsConfig = POLICY
) -> S.Suppression | None:
    """The decision about ``address``, checked to be the same by every way to reach it: the
    reference definition, the evaluation as the store stands (staged, or a summary from an
    earlier call plus the evidence added since), a freshly refreshed summary, and the
    one-address evaluation ``explain`` uses."""
    now = day(at)
    S.prepare(store, now=now)

    def found(items: list[S.Suppression]) -> S.Suppression | None:
        mine = [s for s in items if s.address == address]
        return mine[0] if mine else None

    as_is = found(S.list_suppressions(store, policy, now=now, include_all=True))
    ref = reference_decisions_frame(store, policy, now=now, suppressed_only=False)
    assert as_is == found([S._to_suppression(r) for r in ref.to_dicts()])
    S.refresh_suppression_summary(store, policy)
    assert S.summary_usable(store, policy)
    assert found(S.list_suppressions(store, policy, now=now, include_all=True)) == as_is
    key = S.normalize_address(address).address
    if key is not None:
        with S.address_decisions(store, policy, [key], now=now) as (sql, params):
            cur = store.con.execute(sql, params)
            cols = [d[0] for d in cur.description or []]
            one = [S._to_suppression(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]
        assert found(one) == as_is
    return as_is


def suppressed(store: Store, address: str, **kw: object) -> bool:
    d = decide(store, address, **kw)  # type: ignore[arg-type]
    return d is not None and d.suppressed


# --- hard failures -------------------------------------------------------------------------


def test_hard_failure_suppresses_at_once_with_its_grounds(store: Store) -> None:
    ev = log(store, "gone@example.com", day(0), diagnostic="550 5.1.1 no such user")
    d = decide(store, "gone@example.com")
    assert d is not None and d.suppressed
    assert (d.kind, d.reason, d.rule_id, d.policy_rule) == (
        "hard",
        "userunknown",
        "rule-userunknown",
        "policy.hard",
    )
    assert d.event_ids == (ev,)
    assert d.first_evidence == d.last_evidence == day(0)
    assert d.evidence_count == 1 and d.expires_at is None


def test_hard_reason_that_was_not_permanent_is_soft(store: Store) -> None:
    # a userunknown seen only as 4xx deferrals until the queue gave up is not a hard bounce
    log(
        store,
        "maybe@example.com",
        day(0),
        status="deferred",
        dsn="4.1.1",
        reply_code=450,
        expired=True,
    )
    d = decide(store, "maybe@example.com")
    assert d is not None and not d.suppressed
    assert d.kind == "soft" and d.not_suppressed_because == "soft failures below the threshold"


def test_notaccept_needs_a_5xx(store: Store) -> None:
    dsn(store, "a@nullmx.example", day(0), reason="notaccept", status="5.1.10")
    dsn(store, "b@nomx.example", day(0), reason="notaccept", status="4.4.4")
    assert suppressed(store, "a@nullmx.example")
    assert not suppressed(store, "b@nomx.example")


def test_hard_expiry_is_configurable(store: Store) -> None:
    log(store, "gone@example.com", day(0))
    policy = SuppressionsConfig(hard_expiry_days=10)
    assert suppressed(store, "gone@example.com", at=5, policy=policy)
    assert not suppressed(store, "gone@example.com", at=11, policy=policy)
    assert suppressed(store, "gone@example.com", at=11)  # default: permanent


def test_success_after_a_hard_failure_clears_it(store: Store) -> None:
    log(store, "back@example.com", day(0))
    log(store, "back@example.com", day(1), status="sent")
    d = decide(store, "back@example.com")
    assert d is not None and not d.suppressed
    assert d.not_suppressed_because == "cleared by a later delivery"
    log(store, "back@example.com", day(2))
    assert suppressed(store, "back@example.com")


# --- soft failures -------------------------------------------------------------------------


def test_soft_failures_on_three_days_within_the_window_suppress(store: Store) -> None:
    ids = [log(store, "full@example.com", day(n), reason="mailboxfull", dsn="5.2.2", reply_code=552)
           for n in (0, 5, 10)]  # fmt: skip
    d = decide(store, "full@example.com", at=11)
    assert d is not None and d.suppressed and d.kind == "soft" and d.reason == "mailboxfull"
    assert d.event_ids == tuple(ids) and d.evidence_count == 3
    assert d.suppressed_at == day(10)
    assert d.expires_at == day(10) + timedelta(days=POLICY.soft_expiry_days)


def test_soft_failures_do_not_suppress_below_threshold_or_outside_window(store: Store) -> None:
    for _ in range(3):  # three on one day count once
        log(
            store,
            "burst@example.com",
            day(0),
            reason="mailboxfull",
            dsn="4.2.2",
            reply_code=452,
            status="bounced",
        )
    for n in (0, 20, 40):  # never three within 30 days
        log(store, "slow@example.com", day(n), reason="mailboxfull", dsn="5.2.2")
    assert not suppressed(store, "burst@example.com", at=1)
    assert not suppressed(store, "slow@example.com", at=41)


def test_success_between_soft_failures_resets_the_count(store: Store) -> None:
    log(store, "flaky@example.com", day(0), reason="suspend", dsn="5.2.1")
    log(store, "flaky@example.com", day(1), reason="suspend", dsn="5.2.1")
    log(store, "flaky@example.com", day(2), status="sent")
    log(store, "flaky@example.com", day(3), reason="suspend", dsn="5.2.1")
    assert not suppressed(store, "flaky@example.com", at=4)
    log(store, "flaky@example.com", day(4), reason="suspend", dsn="5.2.1")
    log(store, "flaky@example.com", day(5), reason="suspend", dsn="5.2.1")
    assert suppressed(store, "flaky@example.com", at=6)


def test_soft_suppression_expires(store: Store) -> None:
    for n in (0, 1, 2):
        log(store, "full@example.com", day(n), reason="mailboxfull", dsn="5.2.2")
    assert suppressed(store, "full@example.com", at=3)
    d = decide(store, "full@example.com", at=2 + POLICY.soft_expiry_days + 1)
    assert d is not None and not d.suppressed
    assert d.not_suppressed_because == "suppression expired"


def test_log_failure_and_its_dsn_count_once(store: Store) -> None:
    for n in (0, 1):
        log(store, "dup@example.com", day(n), reason="mailboxfull", dsn="5.2.2")
        dsn(
            store,
            "dup@example.com",
            day(n) + timedelta(minutes=1),
            reason="mailboxfull",
            status="5.2.2",
        )
    d = decide(store, "dup@example.com", at=3)
    assert d is not None and not d.suppressed and d.evidence_count == 4


def test_threshold_comes_from_config(store: Store) -> None:
    for n in (0, 1):
        log(store, "full@example.com", day(n), reason="mailboxfull", dsn="5.2.2")
    assert not suppressed(store, "full@example.com", at=3)
    assert suppressed(store, "full@example.com", at=3, policy=SuppressionsConfig(soft_threshold=2))


# --- complaints ----------------------------------------------------------------------------


def test_complaint_suppresses_permanently_even_after_a_delivery(store: Store) -> None:
    ev = complaint(store, "angry@example.com", day(0))
    log(store, "angry@example.com", day(1), status="sent")
    d = decide(store, "angry@example.com", at=3000)
    assert d is not None and d.suppressed and d.kind == "complaint" and d.expires_at is None
    assert d.event_ids == (ev,)


def test_not_spam_report_is_not_a_complaint(store: Store) -> None:
    complaint(store, "happy@example.com", day(0), feedback="not-spam")
    assert decide(store, "happy@example.com") is None


# --- sender-side ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    ["blocked", "badreputation", "authfailure", "requireptr", "spamdetected", "policyviolation",
     "toomanyconn", "speeding"],
)  # fmt: skip
def test_sender_side_failures_never_suppress_but_are_counted(store: Store, reason: str) -> None:
    for n in range(5):
        log(store, "fine@example.com", day(n), reason=reason, dsn="5.7.1", reply_code=554)
    assert decide(store, "fine@example.com", at=6) is None
    t = S.sender_side_problems(store, POLICY, now=day(6), since=day(-1))
    rows = [r for r in t.records() if r["reason"] == reason]
    assert rows and rows[0]["failures"] == 5 and rows[0]["recipient_domain"] == "example.com"


def test_network_error_on_our_side_is_sender_side_theirs_is_soft(store: Store) -> None:
    for n in range(3):
        log(store, "a@example.com", day(n), reason="networkerror", status="deferred", dsn="4.4.1",
            reply_code=None, expired=True,
            diagnostic="connect to mx.example.com[192.0.2.1]:25: Network is unreachable")  # fmt: skip
        log(store, "b@example.org", day(n), reason="networkerror", status="deferred", dsn="4.4.1",
            reply_code=None, expired=True,
            diagnostic="connect to mx.example.org[192.0.2.2]:25: Connection timed out")  # fmt: skip
    assert decide(store, "a@example.com", at=4) is None
    assert suppressed(store, "b@example.org", at=4)


# --- manual, never, role -------------------------------------------------------------------


def test_manual_add_and_remove(store: Store) -> None:
    key = S.add(store, "Someone@Example.COM", now=day(0), note="asked us")
    assert key == "someone@example.com"  # domain and ASCII letters folded (0012)
    d = decide(store, key, at=1)
    assert d is not None and d.suppressed and d.kind == "manual" and d.note == "asked us"
    S.remove(store, key, now=day(2))
    assert not suppressed(store, key, at=3)


def test_manual_add_with_expiry(store: Store) -> None:
    S.add(store, "tmp@example.com", now=day(0), expires_at=day(5))
    assert suppressed(store, "tmp@example.com", at=4)
    assert not suppressed(store, "tmp@example.com", at=6)


def test_remove_sets_aside_earlier_evidence_only(store: Store) -> None:
    log(store, "x@example.com", day(0))
    complaint(store, "x@example.com", day(0))
    S.remove(store, "x@example.com", now=day(1))
    d = decide(store, "x@example.com", at=2)
    assert d is not None and not d.suppressed and d.not_suppressed_because == "removed manually"
    log(store, "x@example.com", day(3))
    assert suppressed(store, "x@example.com", at=4)


def test_never_suppress_list_address_and_domain(store: Store) -> None:
    log(store, "seed@example.com", day(0))
    log(store, "qa@ours.example", day(0))
    log(store, "other@example.com", day(0))
    S.never_add(store, "seed@example.com", now=day(0))
    S.never_add(store, "@OURS.example", now=day(0))
    assert not suppressed(store, "seed@example.com")
    d = decide(store, "qa@ours.example")
    assert d is not None and not d.suppressed and d.never_entry == "@ours.example"
    assert d.not_suppressed_because == "on the never-suppress list"
    assert suppressed(store, "other@example.com")
    assert S.never_remove(store, "seed@example.com")
    assert suppressed(store, "seed@example.com")


def test_role_addresses_are_flagged_not_spared(store: Store) -> None:
    log(store, "Postmaster@example.com", day(0))
    log(store, "abuse+x@example.com", day(0))
    log(store, "john@example.com", day(0))
    assert (d := decide(store, "postmaster@example.com")) is not None and d.role and d.suppressed
    assert (d := decide(store, "abuse+x@example.com")) is not None and d.role
    assert (d := decide(store, "john@example.com")) is not None and not d.role


# --- addresses -----------------------------------------------------------------------------


def test_addresses_normalised_across_sources(store: Store) -> None:
    log(store, "Mixed@EXAMPLE.com", day(0), reason="mailboxfull", dsn="5.2.2")
    dsn(store, "<Mixed@example.COM>", day(1), reason="mailboxfull", status="5.2.2")
    log(store, "Mixed@example.com", day(2), reason="mailboxfull", dsn="5.2.2")
    log(store, "jörg@Bücher.example", day(0))
    d = decide(store, "mixed@example.com", at=3)
    assert d is not None and d.suppressed and d.evidence_count == 3
    assert suppressed(store, "jörg@xn--bcher-kva.example")


def test_invalid_addresses_are_reported_not_decided(store: Store) -> None:
    log(store, "not an address", day(0))
    log(store, "a@b", day(0))
    S.prepare(store, now=day(1))
    rows = {
        r["raw_address"]: r["problem"] for r in S.invalid_addresses(store, now=day(1)).records()
    }
    assert rows == {"not an address": "not an email address", "a@b": "domain has no dot"}
    assert all(
        s.address not in rows
        for s in S.list_suppressions(store, POLICY, now=day(1), include_all=True)
    )


@pytest.mark.parametrize(
    "raw",
    ["a@b.co", "John.Smith@Example.COM", "x+tag@sub.example.org", "o'hara@x-y.example",
     "a..b@x.example", "-@x.example", "a@-x.example", "a@x", "UPPER@XN--BCHER-KVA.EXAMPLE",
     "a" * 65 + "@x.example", "jörg@x.example", "a b@x.example", '"q"@x.example'],
)  # fmt: skip
def test_python_and_sql_fast_paths_agree(raw: str) -> None:
    store = Store.memory()
    rows = store.con.execute("SELECT suppression_simple_address(?)", [raw]).fetchall()
    sql = rows[0][0]
    py = S.normalize_address(raw)
    if sql is not None:
        assert py.address == sql
    else:
        assert S._SIMPLE.fullmatch(raw) is None or len(raw) > 254 or raw.index("@") > 64


@pytest.mark.parametrize(
    ("raw", "address", "problem"),
    [
        ("jö@bücher.de", "jö@xn--bcher-kva.de", None),
        ("u@[192.0.2.1]", "u@[192.0.2.1]", None),
        ("u@[IPv6:2001:DB8::1]", "u@[IPv6:2001:db8::1]", None),
        ("u@[300.1.1.1]", None, "invalid address literal"),
        ('"a b"@x.org', '"a b"@x.org', None),
        ("a\r\nb@x.org", None, "control characters in address"),
        ("", None, "empty address"),
    ],
)
def test_normalize_address(raw: str, address: str | None, problem: str | None) -> None:
    n = S.normalize_address(raw)
    assert (n.address, n.problem) == (address, problem)


# --- explain -------------------------------------------------------------------------------


def test_explain_lists_every_event_with_its_verdict(store: Store) -> None:
    a = log(store, "e@example.com", day(0), reason="blocked", dsn="5.7.1")
    b = log(store, "e@example.com", day(1), status="sent")
    c = log(store, "e@example.com", day(2))
    S.prepare(store, now=day(3))
    e = S.explain(store, POLICY, "e@EXAMPLE.com", now=day(3))
    assert e.address == "e@example.com" and e.decision is not None and e.decision.suppressed
    assert [(ev.event_id, ev.verdict) for ev in e.events] == [
        (a, "sender_side"), (b, "success"), (c, "hard")
    ]  # fmt: skip
    assert e.decision.event_ids == (c,)
    names = [t.name for t in S.explanation_tables(e)]
    assert names == ["decision", "evidence"]


# --- config --------------------------------------------------------------------------------


def test_config_file_overrides_defaults(tmp_path: Path) -> None:
    p = tmp_path / "mtalens.toml"
    p.write_text("[suppressions]\nsoft_threshold = 5\nhard_reasons = ['userunknown']\n")
    cfg = load_config(p).suppressions
    assert cfg.soft_threshold == 5 and cfg.hard_reasons == ("userunknown",)
    assert cfg.soft_window_days == SuppressionsConfig().soft_window_days


@pytest.mark.parametrize(
    "data",
    [{"suppressions": {"soft_treshold": 3}}, {"suppressions": {"soft_threshold": "3"}},
     {"suppressions": {"soft_threshold": True}}, {"suppressions": {"soft_threshold": 0}},
     {"nosuch": {}}, {"suppressions": {"hard_reasons": "userunknown"}}],
)  # fmt: skip
def test_bad_config_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        config_from_mapping(data)


def test_t0_is_utc() -> None:
    assert T0.utcoffset() == timedelta(0)


def test_expired_after_blocks_is_sender_side_after_full_mailbox_is_soft(store: Store) -> None:
    for n in range(3):
        log(store, "blk@example.com", day(n), reason="blocked", status="deferred", dsn="4.7.1",
            reply_code=421, expired=True)  # fmt: skip
        log(store, "full@example.com", day(n), reason="mailboxfull", status="deferred", dsn="4.2.2",
            reply_code=452, expired=True)  # fmt: skip
    assert decide(store, "blk@example.com", at=4) is None
    d = decide(store, "full@example.com", at=4)
    assert d is not None and d.suppressed and d.kind == "soft"
