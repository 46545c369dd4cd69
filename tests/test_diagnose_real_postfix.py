"""`mtalens diagnose` against a store built from a real Postfix run (issue 6, "Done when").

tests/lab/problem_lab.py runs Debian's Postfix 3.7 on loopback into each problem class diagnose
knows: relay refusals both ways, a mail loop, SASL password guessing and AUTH without TLS (Cyrus
SASL), refused and timed-out port 25, DNS failures (nsd on a loopback address), blocklists,
SPF/DKIM/DMARC, TLS failures both ways, greylisting, rate limiting, unknown and full mailboxes,
and a receiver that got slow. The log goes in with `mtalens ingest`, the DSNs the lab's Maildir
received with `mtalens bounces ingest`; each finding is checked for its evidence and remedy.

The same checks run (fast, no Postfix) on the committed sample of one such run,
sample_logs/postfix/real-problems-3.7.log (bench/make_real_problems_sample.py writes it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app
from mtalens.pipeline.diagnose import DETECTORS, Context, Finding, Severity, diagnose
from mtalens.pipeline.store import Store
from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE
from tests.conftest import need, need_binary
from tests.lab.problem_lab import (
    BLACKHOLE_HOSTS,
    CLIENT_BADTLS,
    CLIENT_BRUTE,
    CLIENT_CLEAR,
    CLIENT_PROBE,
    CLIENT_TLS,
    PLAIN_MX,
    REFUSED_HOSTS,
    TLS_MX,
    LoopbackBlock,
    run_problems,
)

SAMPLE = (
    Path(__file__).resolve().parent.parent / "sample_logs" / "postfix" / "real-problems-3.7.log"
)
SAMPLE_BLOCK = LoopbackBlock("127.10.0")  # bench/make_real_problems_sample.py runs with this
runner = CliRunner()


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosed:
    findings: dict[str, Finding]
    block: LoopbackBlock
    with_dsns: bool
    db: Path


def build_store(db: Path, log: Path, dsn_dir: Path | None, year: int) -> None:
    """The CLI path: `mtalens ingest` the log, `mtalens bounces ingest` the DSNs."""
    r = runner.invoke(
        app, ["ingest", "--db", str(db), "--year", str(year), "--timezone", "UTC", str(log)]
    )
    assert r.exit_code == 0, r.output
    assert "quarantined 0" in r.output, r.output
    if dsn_dir is not None:
        r = runner.invoke(app, ["bounces", "ingest", "--db", str(db), str(dsn_dir)])
        assert r.exit_code == 0, r.output
        assert ", quarantined 0;" in r.output, r.output


def findings_of(db: Path) -> dict[str, Finding]:
    with Store.open(db, read_only=True) as store:
        found = diagnose(Context(store=store, since=EPOCH, until=FAR_FUTURE))
    every = [m for f in found for m in f.flat()]  # grouped findings and their members
    by_id = {f.id: f for f in every}
    assert len(by_id) == len(every), "finding ids must be unique"
    return by_id


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Diagnosed]:
    need_binary("postfix")
    need_binary("saslpasswd2")  # Debian's sasl2-bin: the lab's sasldb
    need_binary("nsd")
    # Port 25 (black holes, the looping MX) and 53 (nsd for a stub resolver) need root.
    need(os.geteuid() == 0, "root, for ports 25 and 53 on loopback addresses")
    tmp = tmp_path_factory.mktemp("problems")
    run = run_problems(tmp / "lab", LoopbackBlock.random())
    log = tmp / "maillog"
    log.write_text(run.log, encoding="utf-8")
    dsn_dir = tmp / "dsns"
    dsn_dir.mkdir()
    for i, raw in enumerate(run.dsns):
        (dsn_dir / f"{i:03d}.eml").write_bytes(raw)
    db = tmp / "store.duckdb"
    build_store(db, log, dsn_dir, datetime.now(UTC).year)
    yield Diagnosed(findings=findings_of(db), block=run.block, with_dsns=True, db=db)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Diagnosed:
    db = tmp_path_factory.mktemp("problems-sample") / "store.duckdb"
    build_store(db, SAMPLE, None, 2026)
    return Diagnosed(findings=findings_of(db), block=SAMPLE_BLOCK, with_dsns=False, db=db)


# -- the checks, shared by the live run and the sample -----------------------------------------


def check_every_class_found(d: Diagnosed) -> None:
    problems = {f.problem for f in d.findings.values()}
    assert [det.id for det in DETECTORS if det.id not in problems] == []
    for f in d.findings.values():
        assert len(f.remedy) > 40, f.id
        assert f.evidence.count >= 1 and f.evidence.examples, f.id


def check_relay_and_loop(d: Diagnosed) -> None:
    out = d.findings["relay-denied-outbound:127.0.0.1"]
    assert out.severity is Severity.CRITICAL and out.evidence.count == 2
    assert out.evidence.destinations == ("far-a.example", "far-b.example")  # ordered
    assert "Relay access denied" in out.evidence.examples[0]
    assert "smtp_sasl_auth_enable" in out.remedy
    loop = d.findings["mail-loop:loop.test"]
    assert loop.evidence.count == 1 and "loops back to myself" in loop.evidence.examples[0]
    assert "mydestination" in loop.remedy
    inbound = d.findings["relay-denied-inbound:inbound"]
    assert inbound.severity is Severity.NOTICE and inbound.evidence.count == 3
    assert inbound.evidence.fact("client_ips") == (d.block.ip(CLIENT_PROBE),)
    assert inbound.evidence.destinations == ("elsewhere.example",)


def check_sasl(d: Diagnosed) -> None:
    brute_ip = d.block.ip(CLIENT_BRUTE)
    bf = d.findings[f"auth-bruteforce:{brute_ip}"]
    assert bf.severity is Severity.CRITICAL
    assert bf.evidence.count == 12 and bf.evidence.fact("usernames") == 6
    assert bf.evidence.fact("mechanisms") == ("LOGIN", "PLAIN")
    assert brute_ip in bf.remedy and "smtpd_client_auth_rate_limit" in bf.remedy
    clear = d.findings[f"auth-without-tls:{d.block.ip(CLIENT_CLEAR)}"]
    assert clear.severity is Severity.CRITICAL and clear.evidence.fact("successful_logins") == 1
    assert "smtpd_tls_auth_only = yes" in clear.remedy
    guessing = d.findings[f"auth-without-tls:{brute_ip}"]
    assert guessing.severity is Severity.WARNING and guessing.evidence.count == 3
    # STARTTLS before AUTH is fine; nobody else logged in
    assert {f.id for f in d.findings.values() if f.problem == "auth-without-tls"} == {
        clear.id,
        guessing.id,
        "auth-without-tls:all",  # the one finding that groups them
    }
    group = d.findings["auth-without-tls:all"]
    assert group.members == (clear, guessing) and group.severity is Severity.CRITICAL
    assert group.evidence.count == clear.evidence.count + guessing.evidence.count
    assert not any(d.block.ip(CLIENT_TLS) in f.id for f in d.findings.values())


def check_port25(d: Diagnosed) -> None:
    f = d.findings["port25-blocked:port-25"]
    assert f.severity is Severity.CRITICAL
    assert f.evidence.destinations == (
        "east.test",
        "harbour.test",
        "north.test",
        "south.test",
        "west.test",
    )
    timeouts, refusals = f.evidence.fact("timeouts"), f.evidence.fact("refusals")
    assert isinstance(timeouts, int) and isinstance(refusals, int)
    assert timeouts >= len(BLACKHOLE_HOSTS) and refusals >= len(REFUSED_HOSTS)
    assert timeouts + refusals == f.evidence.count
    assert f.evidence.fact("sent_via_port25_meanwhile") == 0
    assert any(
        f"[{d.block.ip(REFUSED_HOSTS[0])}]:25: Connection refused" in e for e in f.evidence.examples
    )
    assert ":587" in f.remedy and "relayhost" in f.remedy


def check_dns(d: Diagnosed) -> None:
    failing = d.findings["dns-failures:lookup-failing"]
    assert failing.severity is Severity.WARNING
    assert failing.evidence.destinations == ("broken-dns.example",)
    assert failing.evidence.fact("recipients") == 1 and failing.evidence.count >= 2  # retried
    nx = d.findings["dns-failures:nxdomain"]
    assert nx.evidence.destinations == ("gmial.test",) and nx.evidence.count == 1
    assert "typos" in nx.remedy
    ptr = d.findings["own-reverse-dns:refusals"]
    assert ptr.evidence.destinations == ("ptr-check.example",) and ptr.evidence.count == 1
    assert "PTR record" in ptr.remedy


def check_blocklists(d: Diagnosed) -> None:
    # One refusal per message and recipient: the live run's DSNs about these refusals (linked
    # to the log by bounce_deliveries) add nothing, the count is the same with or without them.
    sh = d.findings["blocklisted:spamhaus"]
    assert sh.evidence.destinations == ("corp-a.example", "corp-b.example", "corp-c.example")
    assert sh.evidence.count == 3 and sh.evidence.fact("attempts") == 3
    assert sh.evidence.fact("from_bounce_reports_only") == 0
    assert "https://check.spamhaus.org/" in sh.remedy
    bc = d.findings["blocklisted:barracuda"]
    assert bc.evidence.destinations == ("corp-d.example", "corp-e.example")
    assert bc.evidence.count == 2 and bc.evidence.fact("from_bounce_reports_only") == 0
    assert all(e.count(": to=<") == 1 for e in sh.evidence.examples + bc.evidence.examples)
    if d.with_dsns:  # the DSNs are there and name the lists: the dedupe had work to do
        with Store.open(d.db, read_only=True) as store:
            row = store.con.execute(
                "SELECT count(*) FILTER (blocklist = 'spamhaus'),"
                " count(*) FILTER (blocklist = 'barracuda') FROM bounces"
            ).fetchone()
        assert row == (3, 2)
    assert "barracudacentral.org/rbl/removal-request" in bc.remedy
    assert {f.id for f in d.findings.values() if f.problem == "blocklisted"} == {sh.id, bc.id}


def check_sender_authentication(d: Diagnosed) -> None:
    spf = d.findings["sender-authentication:SPF"]
    assert spf.evidence.destinations == ("small-isp.example",) and "RFC 7208" in spf.remedy
    dmarc = d.findings["sender-authentication:DMARC"]
    assert dmarc.evidence.destinations == ("mail-b.example",) and "RFC 7489" in dmarc.remedy
    assert "5.7.26" in dmarc.evidence.examples[0]
    dkim = d.findings["sender-authentication:DKIM"]
    assert dkim.evidence.destinations == ("bank.example",) and "RFC 6376" in dkim.remedy
    for f in (spf, dmarc, dkim):
        assert f.evidence.count == 1 and f.evidence.fact("senders") == ("news@example.net",)


def check_tls(d: Diagnosed) -> None:
    verify = d.findings[f"tls-outbound:{d.block.ip(TLS_MX)}"]
    assert verify.evidence.fact("error") == "Server certificate not verified"
    assert verify.evidence.destinations == ("secure-tls.example",)
    encrypt = d.findings[f"tls-outbound:{d.block.ip(PLAIN_MX)}"]
    assert str(encrypt.evidence.fact("error")).startswith("TLS is required, but was not offered")
    assert encrypt.evidence.destinations == ("needs-tls.example",)
    assert "smtp_tls_security_level" in encrypt.remedy
    inbound = d.findings["tls-inbound:inbound"]
    assert inbound.evidence.fact("clients") == (d.block.ip(CLIENT_BADTLS),)
    assert any("SSL_accept error" in e for e in inbound.evidence.examples)


def check_throttling(d: Diagnosed) -> None:
    grey = d.findings["throttling:greylisting"]
    assert grey.severity is Severity.NOTICE and grey.evidence.destinations == ("grey.example",)
    assert grey.evidence.fact("messages") == 2 and grey.evidence.fact("delivered_later") == 2
    rate = d.findings["throttling:rate-limiting"]
    assert rate.severity is Severity.WARNING
    assert rate.evidence.destinations == ("bulk-a.example", "bulk-b.example")
    assert rate.evidence.fact("messages") == 3 and rate.evidence.fact("delivered_later") == 0
    assert rate.evidence.count > 3  # retried until they expired
    assert "smtp_destination_rate_delay" in rate.remedy


def check_recipient_rates(d: Diagnosed) -> None:
    uu = d.findings["recipient-failures:userunknown"]
    # The lab sends 46 messages to remote recipients; the 40 DSNs and delay warnings Postfix
    # sent itself and delivered to the lab's Maildir through virtual(8) are not recipients.
    assert uu.evidence.fact("recipients_total") == 46
    assert uu.evidence.count == 3 and uu.evidence.fact("rate") == pytest.approx(3 / 46, abs=1e-4)
    assert uu.evidence.destinations == ("customer-a.example", "example.com", "example.org")
    assert uu.severity is Severity.WARNING  # between the 2 % and 10 % thresholds
    mf = d.findings["recipient-failures:mailboxfull"]
    assert mf.evidence.count == 2 and mf.evidence.fact("bounced") == 2
    assert mf.evidence.destinations == ("customer-b.example", "example.com")
    assert mf.evidence.fact("recipients_total") == 46
    assert mf.evidence.fact("rate") == pytest.approx(2 / 46, abs=1e-4)


def check_delay_growth(d: Diagnosed) -> None:
    f = d.findings["delay-growth:transmit"]
    before, after = f.evidence.fact("earlier_p90_s"), f.evidence.fact("recent_p90_s")
    assert isinstance(before, float) and isinstance(after, float)
    assert before < 1.0 and after >= 10.0  # the slow receiver answers DATA after 12 s
    # only the slow receiver grew; the lab's own DSNs delivered locally in a few ms are not
    # listed although their transmit time is above the earlier p90
    assert f.evidence.destinations == ("slow.example",)
    assert all("@slow.example>" in e for e in f.evidence.examples), f.evidence.examples
    assert "smtp_destination_rate_delay" in f.remedy


CHECKS = (
    check_every_class_found,
    check_relay_and_loop,
    check_sasl,
    check_port25,
    check_dns,
    check_blocklists,
    check_sender_authentication,
    check_tls,
    check_throttling,
    check_recipient_rates,
    check_delay_growth,
)


@pytest.mark.slow
@pytest.mark.postfix
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_live_postfix_run(live: Diagnosed, check: object) -> None:
    assert callable(check)
    check(live)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_committed_sample(sample: Diagnosed, check: object) -> None:
    assert callable(check)
    check(sample)


@pytest.mark.slow
@pytest.mark.postfix
def test_cli_json_of_the_live_run(live: Diagnosed) -> None:
    r = runner.invoke(
        app, ["diagnose", "--db", str(live.db), "--format", "json", "--fail-on", "critical"]
    )
    assert r.exit_code == 1, r.output  # critical findings
    data = json.loads(r.output)
    every = [m for x in data for m in (x, *x.get("members", []))]
    assert {x["id"] for x in every} == set(live.findings)
    assert all(x["remedy"] for x in every)


# -- FCrDNS of our sending IP found in the log, checked live against a real nsd ----------------

_SOA = "@ SOA ns1.{z}. hostmaster.{z}. 1 3600 600 86400 60\n@ NS ns1.{z}.\n"


def _zone(name: str, body: str) -> str:
    return f"$ORIGIN {name}.\n$TTL 300\n" + _SOA.format(z=name) + body.strip() + "\n"


# The remotes of the sample quote our sending address as [127.0.0.1] (the lab's Postfix sends
# from loopback), e.g. Gmail's 5.7.25 PTR refusal; each case serves its reverse zone.
FCRDNS_CASES = {
    # PTR names mx1.example.net, whose A record is another address: not forward-confirmed
    "mismatch": (
        "1 PTR mx1.example.net.",
        "mx1 A 127.0.0.2",
        "own-reverse-dns:127.0.0.1",
        "127.0.0.1: FAIL (no PTR name resolves back to 127.0.0.1: mx1.example.net)",
    ),
    # no PTR at all (NXDOMAIN for 1.0.0.127.in-addr.arpa)
    "missing": (
        "2 PTR other.example.net.",
        "mx1 A 127.0.0.1",
        "own-reverse-dns:127.0.0.1",
        "127.0.0.1: FAIL (no PTR record)",
    ),
    # fixed: only the remote's refusal remains as evidence
    "confirmed": (
        "1 PTR mx1.example.net.",
        "mx1 A 127.0.0.1",
        "own-reverse-dns:refusals",
        "127.0.0.1: ok (confirmed: mx1.example.net -> 127.0.0.1)",
    ),
}


@pytest.mark.parametrize("case", FCRDNS_CASES)
def test_diagnose_checks_fcrdns_of_our_ip_with_a_real_nameserver(
    sample: Diagnosed, tmp_path: Path, case: str
) -> None:
    from tests.lab.dns_server import NsdServer

    binary = need_binary("nsd")
    reverse, forward, finding_id, fcrdns = FCRDNS_CASES[case]
    zones = {
        "0.0.127.in-addr.arpa": _zone("0.0.127.in-addr.arpa", reverse),
        "example.net": _zone("example.net", forward),
    }
    with NsdServer(tmp_path / "nsd", zones, binary=binary) as nsd:
        r = runner.invoke(
            app,
            ["diagnose", "--db", str(sample.db), "--format", "json",
             "--resolver", "127.0.0.1", "--port", str(nsd.port), "--fail-on", "critical"],
        )  # fmt: skip
    assert r.exit_code == 1, r.output
    found = {x["id"]: x for x in json.loads(r.output) if x["problem"] == "own-reverse-dns"}
    assert list(found) == [finding_id]
    facts = found[finding_id]["evidence"]["facts"]
    assert facts["our_addresses"] == ["127.0.0.1"]  # found in the log, not passed in
    assert facts["fcrdns"] == [fcrdns]
    assert facts["fcrdns_unchecked"] == []
    assert found[finding_id]["severity"] == "critical"
    assert "PTR record" in found[finding_id]["remedy"]
    if case != "confirmed":
        assert "127.0.0.1" in found[finding_id]["remedy"]
