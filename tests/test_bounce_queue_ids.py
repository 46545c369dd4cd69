"""The reporting MTA's queue id of a bounce (parsers/bounces/received.py, bounce_reports.mta_queue_id,
migration 0021) and `bounce_deliveries` linking Exim's and Sendmail's DSNs by it (issue 11, item 5).

The DSNs are real: Exim 4.96 and Sendmail 8.17 returned them to the lab's sender, and the logs
are those of the same runs (tests/lab/dsn_sample.py wrote tests/fixtures/bounces/exim-4.96-*.eml,
sendmail-8.17-*.eml and tests/fixtures/bounce_links/*.log)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mtalens.parsers.bounces import decode
from mtalens.parsers.bounces.received import by_and_id, clause_words, reporting_queue_id
from mtalens.pipeline.bounces import ingest as ingest_bounces
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store

FIX = Path(__file__).parent / "fixtures" / "bounces"
LOGS = Path(__file__).parent / "fixtures" / "bounce_links"
NOW = datetime(2026, 12, 5, tzinfo=UTC)
MTAS = ("exim-4.96", "sendmail-8.17")

# fixture -> (mta_queue_id, the returned Message-ID), read off the DSNs' returned Received: and
# the ids the MTAs answered the lab's DATA with (tests/lab/dsn_sample.py printed them)
WANT = {
    "exim-4.96-full.eml": ("1xZYgF-0001pH-1p", "<dsn-full@client.example.net>"),
    "exim-4.96-hdrs.eml": ("1xZYgF-0001pi-2b", "<dsn-hdrs@client.example.net>"),
    "exim-4.96-shared-1.eml": ("1xZYgG-0001py-04", "<shared@client.example.net>"),
    "exim-4.96-shared-2.eml": ("1xZYgG-0001qO-0m", "<shared@client.example.net>"),
    # Exim adds no Message-ID to a message from a remote host (not submission mode)
    "exim-4.96-nomsgid.eml": ("1xZYgG-0001qf-1T", None),
    "sendmail-8.17-full.eml": ("6B4JAtlL007207", "<dsn-full@client.example.net>"),
    "sendmail-8.17-hdrs.eml": ("6B4JAtnv007216", "<dsn-hdrs@client.example.net>"),
    "sendmail-8.17-shared-1.eml": ("6B4JAtMd007225", "<shared@client.example.net>"),
    "sendmail-8.17-shared-2.eml": ("6B4JAupI007254", "<shared@client.example.net>"),
    # Sendmail adds its own Message-Id to a message without one
    "sendmail-8.17-nomsgid.eml": (
        "6B4JAucC007265",
        "<202612041910.6B4JAucC007265@mx1.example.net>",
    ),
}


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# -- the decoder --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WANT))
def test_real_dsns_name_the_reporting_mtas_queue_id(name: str) -> None:
    raw = (FIX / name).read_bytes()
    r = decode(raw)
    qid, mid = WANT[name]
    assert r.agent == "rfc3464"
    assert r.reporting_mta == "mx1.example.net"
    assert r.postfix_queue_id is None  # neither MTA writes X-Postfix-Queue-ID
    assert r.mta_queue_id == qid
    assert (r.original.message_id if r.original else None) == mid
    # the id is the one in the returned headers, not the bounce's own Received: id
    own = re.search(rb"\bid ([0-9A-Za-z-]+)", raw)
    assert own is not None and own.group(1).decode() != qid
    returned = b"text/rfc822-headers" if "-hdrs" in name else b"message/rfc822"
    assert re.search(rb"(?im)^content-type: " + returned, raw), name


def test_the_postfix_queue_id_field_still_wins_and_is_kept() -> None:
    r = decode((FIX / "postfix-userunknown.eml").read_bytes())
    assert r.postfix_queue_id == r.mta_queue_id == "4F2A31C0A1"


def _edit(name: str, old: bytes, new: bytes) -> bytes:
    raw = (FIX / name).read_bytes()
    assert raw.count(old) == 1, old
    return raw.replace(old, new)


def test_no_id_when_the_received_is_another_hosts() -> None:
    # a DSN from another MTA: the topmost Received: is by mx1, which did not report it
    raw = _edit("sendmail-8.17-full.eml", b"Reporting-MTA: dns; mx1.example.net",
                b"Reporting-MTA: dns; relay.example.org")  # fmt: skip
    assert decode(raw).mta_queue_id is None


def test_no_id_without_the_returned_received() -> None:
    raw = _edit(
        "exim-4.96-hdrs.eml",
        b"Received: from [127.0.0.1] (helo=client.example.net)\n"
        b"\tby mx1.example.net with esmtp (Exim 4.96)\n"
        b"\t(envelope-from <sender@example.net>)\n"
        b"\tid 1xZYgF-0001pi-2b\n"
        b"\tfor unknown-hdrs@example.com;\n"
        b"\tFri, 04 Dec 2026 19:10:51 +0000\n",
        b"",
    )
    r = decode(raw)
    assert r.mta_queue_id is None
    assert r.recipients[0].recipient == "unknown-hdrs@example.com"


# -- Received: clauses (RFC 5321 section 4.4) ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        # Exim 4.96, unfolded
        ("from [127.0.0.1] (helo=client.example.net) by mx1.example.net with esmtp (Exim 4.96) "
         "(envelope-from <sender@example.net>) id 1xZYgF-0001pH-1p for a@example.com; "
         "Fri, 04 Dec 2026 19:10:51 +0000", ("mx1.example.net", "1xZYgF-0001pH-1p")),
        # Sendmail 8.17: the version comment between "by" host and "with"
        ("from client.example.net (localhost [127.0.0.1]) by mx1.example.net "
         "(8.17.1.9/8.17.1.9/Debian-2+deb12u2) with ESMTP id 6B4JAtnv007216 for "
         "<a@example.com>; Fri, 4 Dec 2026 19:10:55 GMT", ("mx1.example.net", "6B4JAtnv007216")),
        # comments that say "by" and "id", nested, with a quoted ")" inside
        ("from x (by evil.example id WRONG (nested \\) by other id NO)) BY MX2.Example.NET. "
         "(id not-this) WITH esmtp ID <q-1@mx2.example.net>; date",
         ("mx2.example.net", "q-1@mx2.example.net")),
        # a quoted local part with a space in the "for" clause; no id
        ('from x by mx3.example.org with smtp for <"a b"@example.org>; date',
         ("mx3.example.org", None)),
        # the id after the ";" is the date's, not a clause
        ("from x by mx4.example.org; Fri, 4 Dec 2026 id 123", ("mx4.example.org", None)),
        # qmail: only a comment, no clause at all
        ("(qmail 1234 invoked by uid 0); 4 Dec 2026 19:10:55 -0000", (None, None)),
        # "by" without a host
        ("from x by with smtp id ABC; date", (None, "ABC")),
        # an id that is not an atom or msg-id is not taken
        ("from x by mx5 with smtp id [not,an,id]; date", ("mx5", None)),
    ],
)  # fmt: skip
def test_by_and_id(value: str, want: tuple[str | None, str | None]) -> None:
    assert by_and_id(value) == want


def test_clause_words_keep_quoted_strings_whole() -> None:
    assert clause_words('by h for <"x (y) z"@d>; date') == ["by", "h", "for", '<"x (y) z"@d>']


def test_topmost_received_of_the_reporting_host_wins() -> None:
    headers = [
        ("return-path", "<s@example.net>"),
        ("received", "from mx1.example.net by gw.example.net with esmtp id GW1; d"),
        ("received", "from localhost by mx1.example.net (Postfix) with ESMTP id B2; d"),
        ("received", "from client by mx1.example.net (Postfix) with ESMTP id A1; d"),
    ]
    assert reporting_queue_id(headers, "mx1.example.net") == "B2"
    assert reporting_queue_id(headers, "MX1") == "B2"  # first labels compared, any case
    assert reporting_queue_id(headers, "gw.example.org") == "GW1"
    assert reporting_queue_id(headers, "other.example.net") is None
    assert reporting_queue_id(headers, None) is None
    assert reporting_queue_id(headers, "  ") is None
    # the reporting host's topmost Received: has no id: none is guessed from a lower one
    no_id = [("received", "from a by mx1.example.net with local; d"), *headers[2:]]
    assert reporting_queue_id(no_id, "mx1.example.net") is None


def test_a_huge_received_is_read_in_bounded_time() -> None:
    import time

    value = "from x " + "(" * 200_000 + "by h id X" + ")" * 200_000 + " by mx1 id Y; d"
    t0 = time.perf_counter()
    by_and_id(value)
    assert time.perf_counter() - t0 < 0.5
    many = [("received", "from a by mx9 with smtp id Z; d")] * 100_000
    t0 = time.perf_counter()
    assert reporting_queue_id([*many, ("received", "by mx1 id Y; d")], "mx1") is None
    assert time.perf_counter() - t0 < 0.5


# -- bounce_deliveries --------------------------------------------------------------------------


def _store(mta: str, tmp_path: Path, dsns: dict[str, bytes] | None = None) -> Store:
    mail = tmp_path / "bounces"
    mail.mkdir()
    if dsns is None:
        dsns = {p.name: p.read_bytes() for p in FIX.glob(f"{mta}-*.eml")}
    for name, raw in dsns.items():
        (mail / name).write_bytes(raw)
    store = Store.memory()
    LogIngestor(store, tz=UTC, year=2026, clock=lambda: NOW).run([LOGS / f"{mta}.log"])
    ingest_bounces(store, [mail], now=lambda: NOW)
    return store


def _links(store: Store) -> dict[str, dict[str, Any]]:
    got = rows(store.con, "SELECT * FROM bounce_deliveries")
    # one attempt each (a bounce linked to nothing has no attempt)
    assert all(r["is_last_attempt"] for r in got if r["message_key"] is not None), got
    return {Path(r["source"]).name: r for r in got}


@pytest.mark.parametrize("mta", MTAS)
def test_real_bounces_link_by_the_mtas_queue_id(mta: str, tmp_path: Path) -> None:
    store = _store(mta, tmp_path)
    links = _links(store)
    assert sorted(links) == sorted(n for n in WANT if n.startswith(mta))
    by_id = {r["queue_id"]: r for r in rows(store.con, "SELECT * FROM messages")}
    for name, link in links.items():
        qid, mid = WANT[name]
        assert link["link_method"] == "queue_id", name
        assert link["mta_queue_id"] == link["queue_id"] == qid, name
        assert link["message_key"] == by_id[qid]["message_key"]
        assert (link["delivery_status"], link["delivery_dsn"]) == ("bounced", "5.1.1"), name
        assert link["delivery_reply_code"] == 550
        if mid is not None:  # the log keeps the Message-ID without angle brackets
            assert link["message_id"] == mid.strip("<>")
    # one Message-ID, two messages to the same recipient: each DSN finds its own
    one, two = links[f"{mta}-shared-1.eml"], links[f"{mta}-shared-2.eml"]
    assert one["message_key"] != two["message_key"]
    # the bounces view has the column too
    got = rows(store.con, "SELECT mta_queue_id FROM bounces ORDER BY mta_queue_id")
    assert sorted(r["mta_queue_id"] for r in got) == sorted(
        q for n, (q, _) in WANT.items() if n.startswith(mta)
    )


@pytest.mark.parametrize("mta", MTAS)
def test_without_the_queue_id_a_shared_message_id_picks_one_message(
    mta: str, tmp_path: Path
) -> None:
    """What the queue id fixes: with the Received: id unreadable (Reporting-MTA renamed, so no
    Received: is the reporting host's), both DSNs of the shared Message-ID link by Message-ID,
    to the same (latest) message, one of them wrongly; Exim's DSN without a Message-ID links to
    nothing."""
    dsns = {}
    for p in FIX.glob(f"{mta}-*.eml"):
        raw = p.read_bytes()
        dsns[p.name] = raw.replace(b"Reporting-MTA: dns; mx1.example.net",
                                   b"Reporting-MTA: dns; other.example.net")  # fmt: skip
    links = _links(_store(mta, tmp_path, dsns))
    one, two = links[f"{mta}-shared-1.eml"], links[f"{mta}-shared-2.eml"]
    assert one["link_method"] == two["link_method"] == "message_id"
    assert one["message_key"] == two["message_key"]
    assert one["queue_id"] == WANT[f"{mta}-shared-2.eml"][0]
    if mta.startswith("exim"):
        assert links["exim-4.96-nomsgid.eml"]["message_key"] is None


def _shift_arrival(raw: bytes, new_date: bytes) -> bytes:
    out, n = re.subn(rb"(?m)^Arrival-Date: .*$", b"Arrival-Date: " + new_date, raw)
    assert n == 1
    return out


@pytest.mark.parametrize(
    ("arrival", "linked"),
    [
        # 5 hours off (a log read with the wrong --timezone): Sendmail's ids are unique, linked
        (b"Fri, 4 Dec 2026 14:10:55 GMT", True),
        (b"Sat, 5 Dec 2026 00:10:55 GMT", True),
        # three days off: not the message's arrival, whatever the id says
        (b"Mon, 7 Dec 2026 19:10:55 GMT", False),
        (b"Tue, 1 Dec 2026 19:10:55 GMT", False),
    ],
)
def test_sendmail_ids_link_within_a_day_of_the_messages_lifetime(
    arrival: bytes, linked: bool, tmp_path: Path
) -> None:
    raw = (FIX / "sendmail-8.17-shared-1.eml").read_bytes()
    store = _store("sendmail-8.17", tmp_path, {"a.eml": _shift_arrival(raw, arrival)})
    (link,) = _links(store).values()
    if linked:
        assert (link["link_method"], link["queue_id"]) == ("queue_id", "6B4JAtMd007225")
    else:  # the Message-ID is shared: the fallback takes the latest of the two messages
        assert (link["link_method"], link["queue_id"]) == ("message_id", "6B4JAupI007254")
