"""`mtalens diagnose` against a store built from sample_logs/postfix/problems.log, a hand-written
log that shows every problem class once (see the comments in pipeline/queries/diagnose.sql)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app
from mtalens.pipeline.diagnose import (
    DETECTORS,
    Context,
    Finding,
    Severity,
    Thresholds,
    diagnose,
    render_text,
)
from mtalens.pipeline.dns import Answer, DnsCache, Status
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store
from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE

PROBLEMS = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix" / "problems.log"
NOW = datetime(2026, 12, 2, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("diag") / "p.duckdb"
    with Store.open(path) as store:
        LogIngestor(store, tz=UTC, year=2026).run([PROBLEMS])
    return path


@pytest.fixture(scope="module")
def findings(db: Path) -> dict[str, Finding]:
    with Store.open(db, read_only=True) as store:
        found = diagnose(Context(store=store, since=EPOCH, until=FAR_FUTURE, clock=lambda: NOW))
    every = [m for f in found for m in f.flat()]  # grouped findings and their members
    by_id = {f.id: f for f in every}
    assert len(by_id) == len(every), "finding ids must be unique"
    return by_id


def test_every_detector_finds_its_problem_in_the_sample(findings: dict[str, Finding]) -> None:
    # a registry row without a sample problem fails here
    problems = {f.problem for f in findings.values()}
    assert [d.id for d in DETECTORS if d.id not in problems] == []


def test_findings_are_ordered_most_severe_first(db: Path) -> None:
    with Store.open(db, read_only=True) as store:
        found = diagnose(Context(store=store, since=EPOCH, until=FAR_FUTURE, clock=lambda: NOW))
    ranks = [f.severity.rank for f in found]
    assert ranks == sorted(ranks)


def test_relay_and_configuration(findings: dict[str, Finding]) -> None:
    out = findings["relay-denied-outbound:smtp.isp.example"]
    assert out.severity is Severity.CRITICAL and out.evidence.count == 2
    assert out.evidence.destinations == ("north.example", "south.example")
    assert out.evidence.fact("port") == 587
    assert "smtp_sasl_auth_enable" in out.remedy
    assert "Relay access denied" in out.evidence.examples[0]
    loop = findings["mail-loop:hosted.example"]
    assert "loops back to myself" in loop.evidence.examples[0]
    assert "mydestination" in loop.remedy
    inbound = findings["relay-denied-inbound:inbound"]
    assert inbound.severity is Severity.NOTICE and inbound.evidence.count == 3
    assert inbound.evidence.fact("client_ips") == ("198.51.100.90", "198.51.100.91")


def test_sasl_brute_force_and_auth_without_tls(findings: dict[str, Finding]) -> None:
    bf = findings["auth-bruteforce:203.0.113.66"]
    assert bf.evidence.count == 16 and bf.evidence.fact("usernames") == 8
    assert bf.evidence.first_seen == datetime(2026, 12, 1, 9, 10, 2, tzinfo=UTC)
    assert "203.0.113.66" in bf.remedy
    # the user who mistyped a password once (over TLS) is not a brute forcer
    assert "auth-bruteforce:198.51.100.23" not in findings
    clear = findings["auth-without-tls:198.51.100.44"]
    assert clear.severity is Severity.CRITICAL and clear.evidence.fact("successful_logins") == 1
    assert "smtpd_tls_auth_only = yes" in clear.remedy
    assert findings["auth-without-tls:203.0.113.66"].severity is Severity.WARNING
    assert "auth-without-tls:198.51.100.23" not in findings  # STARTTLS before AUTH


def test_outbound_port_25_blocked(findings: dict[str, Finding]) -> None:
    f = findings["port25-blocked:port-25"]
    assert f.severity is Severity.CRITICAL
    assert len(f.evidence.destinations) == 6 and f.evidence.fact("timeouts") == 6
    assert f.evidence.fact("sent_via_port25_meanwhile") == 0
    assert ":587" in f.remedy and "relayhost" in f.remedy


def test_dns_problems(findings: dict[str, Finding]) -> None:
    failing = findings["dns-failures:lookup-failing"]
    assert failing.evidence.destinations == ("broken-dns.example",)
    assert failing.evidence.count == 2 and failing.severity is Severity.WARNING
    nx = findings["dns-failures:nxdomain"]
    assert nx.evidence.destinations == ("gmial.example",) and nx.evidence.fact("recipients") == 2
    ptr = findings["own-reverse-dns:refusals"]
    assert ptr.evidence.destinations == ("gmail.example",)
    assert ptr.evidence.fact("our_addresses") == ("192.0.2.10",)
    # nothing in the DNS cache: say which check to run, do not guess
    assert ptr.evidence.fact("fcrdns_unchecked") == ("192.0.2.10",)
    assert "mtalens dns fcrdns 192.0.2.10" in ptr.remedy


def test_blocklists_named_with_delisting(findings: dict[str, Finding]) -> None:
    sh = findings["blocklisted:spamhaus"]
    assert sh.evidence.destinations == ("corp-a.example", "corp-b.example", "corp-c.example")
    assert sh.evidence.first_seen == datetime(2026, 12, 1, 11, 30, 1, tzinfo=UTC)
    assert "https://check.spamhaus.org/" in sh.remedy
    assert "sender.office.com" in findings["blocklisted:microsoft"].remedy
    assert findings["blocklisted:spamcop"].evidence.destinations == ("univ.example",)


def test_spf_dkim_dmarc_by_destination(findings: dict[str, Finding]) -> None:
    assert findings["sender-authentication:SPF"].evidence.destinations == ("small-isp.example",)
    assert findings["sender-authentication:DKIM"].evidence.destinations == ("bank.example",)
    assert findings["sender-authentication:DMARC"].evidence.destinations == ("outlook.example",)
    both = findings["sender-authentication:SPF and DKIM"]
    assert both.evidence.destinations == ("gmail.example",) and "RFC 7208" in both.remedy
    assert "RFC 7489" in findings["sender-authentication:DMARC"].remedy


def test_tls_failures(findings: dict[str, Finding]) -> None:
    assert "not offered" in str(findings["tls-outbound:mx.secure.example"].evidence.fact("error"))
    old = findings["tls-outbound:mx.oldtls.example"]
    errors = old.evidence.fact("tls_library_errors")
    assert isinstance(errors, tuple) and any("protocol version" in e for e in errors)
    assert findings["tls-inbound:inbound"].evidence.fact("clients") == ("198.51.100.201",)


def test_greylisting_and_rate_limiting(findings: dict[str, Finding]) -> None:
    grey = findings["throttling:greylisting"]
    assert grey.evidence.destinations == ("grey.example",) and grey.severity is Severity.NOTICE
    assert grey.evidence.fact("delivered_later") == 1
    rate = findings["throttling:rate-limiting"]
    assert rate.evidence.destinations == ("gmail.example", "outlook.example")
    assert rate.evidence.count == 4


def test_mailbox_full_and_user_unknown_rates(findings: dict[str, Finding]) -> None:
    uu = findings["recipient-failures:userunknown"]
    total = uu.evidence.fact("recipients_total")
    assert uu.evidence.count == 5 and isinstance(total, int) and total > 0
    assert uu.evidence.fact("rate") == pytest.approx(5 / total, abs=1e-4)
    assert uu.severity is Severity.WARNING  # between the 2 % and 10 % thresholds
    mf = findings["recipient-failures:mailboxfull"]
    assert mf.evidence.count == 3 and mf.evidence.fact("still_deferred") == 1


def test_queue_delay_growth_names_the_stage(findings: dict[str, Finding]) -> None:
    stages = {f.id for f in findings.values() if f.problem == "delay-growth"}
    assert stages == {"delay-growth:in_queue"}
    f = findings["delay-growth:in_queue"]
    before, after = f.evidence.fact("earlier_p90_s"), f.evidence.fact("recent_p90_s")
    assert isinstance(before, float) and isinstance(after, float) and after > 100 * before
    assert "qshape" in f.remedy


def test_time_range_limits_the_evidence(db: Path) -> None:
    with Store.open(db, read_only=True) as store:
        until_nine = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        early = diagnose(Context(store=store, since=EPOCH, until=until_nine))
    ids = {m.id for f in early for m in f.flat()}
    assert "relay-denied-inbound:inbound" in ids
    assert not any(i.startswith(("auth-bruteforce", "blocklisted", "port25")) for i in ids)


def test_thresholds_are_policy(db: Path) -> None:
    strict = Thresholds(bf_failures=100, bf_usernames=100, port25_destinations=7)
    with Store.open(db, read_only=True) as store:
        ids = {
            m.id
            for f in diagnose(
                Context(store=store, since=EPOCH, until=FAR_FUTURE, thresholds=strict)
            )
            for m in f.flat()
        }
    assert "auth-bruteforce:203.0.113.66" not in ids
    assert "port25-blocked:port-25" not in ids


def _cache(store: Store, qname: str, rdtype: str, *records: str) -> None:
    DnsCache(store).put(
        Answer(qname=qname, rdtype=rdtype, status=Status.NOERROR, records=records, ttl=86400), NOW
    )


def test_own_fcrdns_from_the_dns_cache(tmp_path: Path) -> None:
    with Store.open(tmp_path / "f.duckdb") as store:
        LogIngestor(store, tz=UTC, year=2026).run([PROBLEMS])
        # PTR names mx1.example.net, whose A record points elsewhere: not forward-confirmed
        _cache(store, "10.2.0.192.in-addr.arpa", "PTR", "mx1.example.net.")
        _cache(store, "mx1.example.net", "A", "192.0.2.99")
        ctx = Context(store=store, since=EPOCH, until=FAR_FUTURE, clock=lambda: NOW)
        f = next(x for x in diagnose(ctx) if x.problem == "own-reverse-dns")
        assert f.evidence.fact("fcrdns_unchecked") == ()
        assert f.evidence.fact("fcrdns") == (
            "192.0.2.10: FAIL (no PTR name resolves back to 192.0.2.10: mx1.example.net)",
        )
        assert f.id == "own-reverse-dns:192.0.2.10"
        # fixed: the name resolves back, and only the remote refusals remain as evidence
        _cache(store, "mx1.example.net", "A", "192.0.2.10")
        f = next(x for x in diagnose(ctx) if x.problem == "own-reverse-dns")
        assert f.id == "own-reverse-dns:refusals"
        assert f.evidence.fact("fcrdns") == (
            "192.0.2.10: ok (confirmed: mx1.example.net -> 192.0.2.10)",
        )


def test_fcrdns_failure_alone_is_a_finding(tmp_path: Path) -> None:
    with Store.open(tmp_path / "g.duckdb") as store:
        _cache(store, "10.2.0.192.in-addr.arpa", "PTR", "host-192-0-2-10.isp.example.")
        _cache(store, "host-192-0-2-10.isp.example", "A", "192.0.2.11")
        ctx = Context(
            store=store, since=EPOCH, until=FAR_FUTURE, our_ips=("192.0.2.10",), clock=lambda: NOW
        )
        found = diagnose(ctx)
    assert [f.id for f in found] == ["own-reverse-dns:192.0.2.10"]
    assert found[0].evidence.count == 0


def test_empty_store_has_no_findings() -> None:
    store = Store.memory()
    assert diagnose(Context(store=store, since=EPOCH, until=FAR_FUTURE)) == []
    assert render_text([]) == "No problems found in this time range.\n"


def test_cli_text_json_and_exit_code(db: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["diagnose", "--db", str(db)])
    assert r.exit_code == 0, r.output  # findings are not a failure unless --fail-on says so
    for level in ("critical", "warning", "notice"):
        r = runner.invoke(app, ["diagnose", "--db", str(db), "--fail-on", level])
        assert r.exit_code == 1, (level, r.output)  # the store has critical findings
    assert runner.invoke(app, ["diagnose", "--db", str(db), "--fail-on", "never"]).exit_code == 0
    assert "[CRITICAL] Outbound port 25 looks blocked" in r.output
    assert "remedy:" in r.output
    r = runner.invoke(app, ["diagnose", "--db", str(db), "--format", "json"])
    data = json.loads(r.output)
    f = next(x for x in data if x["id"] == "blocklisted:spamhaus")
    assert f["severity"] == "critical" and f["evidence"]["count"] == 3
    assert f["evidence"]["first_seen"] == "2026-12-01T11:30:01+00:00"
    r = runner.invoke(
        app, ["diagnose", "--db", str(db), "--since", "2026-12-01T14:00", "--format", "json"]
    )
    late = json.loads(r.output)
    assert r.exit_code == 0 and not any(x["id"].startswith("blocklisted") for x in late)
    assert not any(x["severity"] == "critical" for x in late)
    r = runner.invoke(
        app, ["diagnose", "--db", str(db), "--since", "2026-12-01T14:00", "--fail-on", "critical"]
    )
    assert r.exit_code == 0, r.output  # nothing critical after 14:00
    r = runner.invoke(
        app, ["diagnose", "--db", str(db), "--since", "2026-12-01T14:00", "--fail-on", "notice"]
    )
    assert r.exit_code == (1 if late else 0), (late, r.output)  # any finding is >= notice
    out = tmp_path / "r.html"
    r = runner.invoke(
        app,
        ["diagnose", "--db", str(db), "--format", "html", "-o", str(out), "--fail-on", "critical"],
    )
    assert r.exit_code == 1 and out.read_text().startswith("<!DOCTYPE html>")
    r = runner.invoke(app, ["diagnose", "--db", str(db), "--since", "tomorrow"])
    assert r.exit_code == 2 and "cannot read time" in r.output
    r = runner.invoke(app, ["diagnose", "--db", str(db), "--fail-on", "sometimes"])
    assert r.exit_code == 2


def test_text_output_neutralises_control_characters() -> None:
    from mtalens.pipeline.diagnose import Evidence

    f = Finding(
        id="x:y",
        problem="x",
        title="evil \x1b[31mred",
        severity=Severity.NOTICE,
        evidence=Evidence(count=1, first_seen=None, last_seen=None, examples=("a\x1b]0;t\x07b",)),
        remedy="r",
    )
    text = render_text([f])
    assert "\x1b" not in text and "\x07" not in text and "evil ?[31mred" in text


def _dsn(queue_id: str, recipient: str, arrival: str, when: str) -> bytes:
    """A Postfix bounce(8) DSN (RFC 3464 multipart/report, with Postfix's X-Postfix-Queue-ID)
    about one refusal naming Spamhaus, as the sample's mx1 would send it."""
    return f"""Return-Path: <>
Date: {when}
From: MAILER-DAEMON@mx1.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: news@example.net
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B/{queue_id}"
Message-Id: <{queue_id}.dsn@mx1.example.net>

--B/{queue_id}
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--B/{queue_id}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.example.net
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; news@example.net
Arrival-Date: {arrival}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.7.1
Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.10]
    blocked using zen.spamhaus.org
Last-Attempt-Date: {when}

--B/{queue_id}--
""".replace("\n", "\r\n").encode()


def test_blocklist_refusal_and_its_dsn_count_once(tmp_path: Path) -> None:
    from mtalens.pipeline import bounces

    # one DSN about a refusal the log shows (3A128B001B, info@corp-a.example), one about a
    # refusal the log does not show (its message was never logged here)
    (tmp_path / "same.eml").write_bytes(
        _dsn(
            "3A128B001B",
            "info@corp-a.example",
            "Tue,  1 Dec 2026 11:30:00 +0000 (UTC)",
            "Tue,  1 Dec 2026 11:30:01 +0000 (UTC)",
        )
    )
    (tmp_path / "other.eml").write_bytes(
        _dsn(
            "7F00AA0001",
            "sales@corp-z.example",
            "Tue,  1 Dec 2026 12:00:00 +0000 (UTC)",
            "Tue,  1 Dec 2026 12:00:02 +0000 (UTC)",
        )
    )
    with Store.open(tmp_path / "b.duckdb") as store:
        LogIngestor(store, tz=UTC, year=2026).run([PROBLEMS])
        bounces.ingest(store, sorted(tmp_path.glob("*.eml")), now=lambda: NOW)
        linked = store.con.execute(
            "SELECT queue_id FROM bounce_deliveries WHERE recipient = 'info@corp-a.example'"
        ).fetchall()
        assert linked == [("3A128B001B",)]  # the link the dedupe relies on
        found = diagnose(Context(store=store, since=EPOCH, until=FAR_FUTURE, clock=lambda: NOW))
    sh = next(f for f in found if f.id == "blocklisted:spamhaus")
    assert sh.evidence.count == 4  # 3 logged refusals + 1 known only from its DSN
    assert sh.evidence.fact("attempts") == 3
    assert sh.evidence.fact("from_bounce_reports_only") == 1
    assert sh.evidence.destinations == (
        "corp-a.example",
        "corp-b.example",
        "corp-c.example",
        "corp-z.example",
    )
    assert sh.evidence.last_seen == datetime(2026, 12, 1, 12, 0, 2, tzinfo=UTC)
