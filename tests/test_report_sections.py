"""The report's sections beyond the first ones (pflogsumm's others and mtalens' own), checked
against the store's rows counted in Python, and against each other."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.reports import REPORT_SECTIONS, report
from mtalens.pipeline.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR = datetime(9999, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store.open(tmp_path_factory.mktemp("r") / "r.duckdb") as s:
        LogIngestor(s, tz=UTC, year=2026).run([SAMPLES])
        yield s


@pytest.fixture(scope="module")
def sections(store: Store) -> dict[str, list[dict[str, object]]]:
    return {t.name: t.records() for t in report(store, since=EPOCH, until=FAR, top=1000)}


def test_every_section_is_there(sections: dict[str, list[dict[str, object]]]) -> None:
    assert list(sections) == list(REPORT_SECTIONS)
    for name in ("sending_hosts", "sender_domains", "senders_by_size", "recipients_by_size",
                 "rejects_by_client", "warnings"):  # fmt: skip
        assert sections[name], name


def test_per_hour_adds_up_to_the_totals(sections: dict[str, list[dict[str, object]]]) -> None:
    (totals,) = sections["totals"]
    hours = sections["per_hour"]
    for col, total in (("received", "received"), ("rejected", "rejected"),
                       ("delivered", "delivered"), ("bounced", "bounced")):  # fmt: skip
        assert sum(int(h[col]) for h in hours) == totals[total], col  # type: ignore[call-overload]


def test_distinct_messages_and_percentages(
    store: Store, sections: dict[str, list[dict[str, object]]]
) -> None:
    (t,) = sections["totals"]
    rows = store.con.execute(
        "SELECT orig_message_key FROM messages WHERE arrived_at IS NOT NULL AND origin <> 'bounce'"
    ).fetchall()
    copies = sum(1 for (orig,) in rows if orig is not None)
    assert copies > 0  # the samples have a content-filter round trip
    assert t["received_distinct"] == len(rows) - copies == int(t["received"]) - copies  # type: ignore[call-overload]
    expect = round(100 * int(t["rejected"]) / (int(t["rejected"]) + int(t["received"])), 1)  # type: ignore[call-overload]
    assert t["rejected_pct"] == expect


def test_sending_hosts_and_sender_domains_count_messages(
    store: Store, sections: dict[str, list[dict[str, object]]]
) -> None:
    msgs = store.con.execute(
        "SELECT client_ip, sender, size, origin FROM messages WHERE arrived_at IS NOT NULL"
    ).fetchall()
    by_ip = Counter(ip for ip, _, _, origin in msgs if origin == "smtpd")
    got = Counter()
    for r in sections["sending_hosts"]:
        got[r["client_ip"]] += int(r["messages"])  # type: ignore[call-overload]
    assert got == by_ip
    by_domain = Counter(
        (s.rsplit("@", 1)[-1].lower() if s and "@" in s else "<>")
        for _, s, _, o in msgs
        if o != "bounce"
    )
    assert {r["domain"]: r["messages"] for r in sections["sender_domains"]} == dict(by_domain)


def test_domains_have_a_delivery_rate(sections: dict[str, list[dict[str, object]]]) -> None:
    rates = [r["delivery_rate"] for r in sections["domains"] if r["delivery_rate"] is not None]
    assert rates and all(0.0 <= float(x) <= 1.0 for x in rates)  # type: ignore[arg-type]
    assert any(float(x) < 1.0 for x in rates)  # type: ignore[arg-type]


def test_warnings_group_repeats(store: Store, sections: dict[str, list[dict[str, object]]]) -> None:
    (n,) = store.con.execute("SELECT count(*) FROM events WHERE kind = 'warning'").fetchone()  # type: ignore[misc]
    rows = sections["warnings"]
    assert sum(int(r["count"]) for r in rows) == n  # type: ignore[call-overload]
    assert len(rows) < n  # repeats are grouped
    assert all("bounce(5)" not in str(r["warning"]) for r in rows)  # numbers masked
