"""DNS checks against a real nsd on 127.0.0.1 (tests/lab/dns_server.py), zones written here."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.reversename
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mtalens.pipeline.cli import app, run
from mtalens.pipeline.diagnose import cache_only_client
from mtalens.pipeline.dns import (
    DEFAULT_BLOCKLISTS,
    Answer,
    DnsCache,
    DnsClient,
    Finding,
    Listing,
    ResolverError,
    Severity,
    Status,
    check_blocklists,
    check_dkim,
    check_dmarc,
    check_domain,
    check_fcrdns,
    check_mta_sts,
    check_mx,
    check_spf,
    check_tls_rpt,
    dnsbl_name,
    make_resolver,
    parse_tags,
)
from mtalens.pipeline.exitcodes import ExitCode, InputError
from mtalens.pipeline.store import Store
from tests.conftest import need_binary
from tests.lab.dns_server import NsdServer, free_port

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SOA = "@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n@ NS ns1.{zone}.\n"


def zone(name: str, body: str, ttl: int = 300) -> str:
    head = f"$ORIGIN {name}.\n$TTL {ttl}\n" + SOA.format(zone=name)
    return head + "\n".join(line.strip() for line in body.strip().splitlines()) + "\n"


def txt(value: str) -> str:
    """A TXT rdata, split into 255-octet character-strings (RFC 1035 section 3.3.14)."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


def rsa_key(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def ed25519_key() -> str:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def ptr_zone_name(ip: str, labels: int) -> str:
    name = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
    return ".".join(name.split(".")[labels:])


def zones() -> dict[str, str]:
    v6_origin = ptr_zone_name("2001:db8::10", 24)  # the /32: 8.b.d.0.1.0.0.2.ip6.arpa
    v6_label = ".".join(dns.reversename.from_address("2001:db8::10").to_text().split(".")[:24])
    return {
        "good.test": zone(
            "good.test",
            f"""
            ns1 A 127.0.0.1
            @ MX 10 mx1
            @ MX 20 mx2
            mx1 A 192.0.2.10
            mx1 AAAA 2001:db8::10
            mx2 A 192.0.2.11
            @ TXT "v=spf1 mx ip4:192.0.2.0/24 include:_spf.good.test -all"
            @ TXT "site-verification=abc123"
            _spf TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all"
            _dmarc TXT "v=DMARC1; p=reject; sp=quarantine; pct=100; rua=mailto:dmarc@good.test"
            sel2048._domainkey TXT {txt("v=DKIM1; k=rsa; p=" + rsa_key(2048))}
            sel1024._domainkey TXT {txt("v=DKIM1; k=rsa; p=" + rsa_key(1024))}
            ed._domainkey TXT {txt("v=DKIM1; k=ed25519; p=" + ed25519_key())}
            old._domainkey TXT "v=DKIM1; k=rsa; p="
            junk._domainkey TXT "v=DKIM1; k=rsa; p=bm90IGEga2V5"
            _mta-sts TXT "v=STSv1; id=20240101T000000;"
            _smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@good.test"
            """,
        ),
        "nullmx.test": zone(
            "nullmx.test",
            """
            ns1 A 127.0.0.1
            @ MX 0 .
            @ TXT "v=spf1 -all"
            _dmarc TXT "v=DMARC1; p=reject"
            """,
        ),
        "mixmx.test": zone(
            "mixmx.test",
            """
            ns1 A 127.0.0.1
            @ MX 0 .
            @ MX 10 mx
            mx A 192.0.2.30
            lame MX 10 nowhere.mixmx.test.
            """,
        ),
        "broken.test": zone(
            "broken.test",
            """
            ns1 A 127.0.0.1
            @ A 192.0.2.50
            @ TXT "v=spf1 -all"
            @ TXT "v=spf1 ip4:192.0.2.1 -all"
            _dmarc TXT "v=DMARC1; p=block; pct=150; adkim=x; rua=dmarc-at-broken"
            _mta-sts TXT "v=STSv1; id=not-valid!"
            _smtp._tls TXT "v=TLSRPTv1; rua=ftp://broken.test/reports"
            _dmarc.two TXT "v=DMARC1; p=none"
            """,
        ),
        "toomany.test": zone(
            "toomany.test",
            """
            ns1 A 127.0.0.1
            @ MX 10 mx
            mx A 192.0.2.20
            @ TXT "v=spf1 include:i1.toomany.test include:i2.toomany.test include:i3.toomany.test -all"
            i1 A 192.0.2.21
            i1 MX 10 mx
            i1 TXT "v=spf1 a mx a:mx.toomany.test ~all"
            i2 A 192.0.2.22
            i2 MX 10 mx
            i2 TXT "v=spf1 a mx a:mx.toomany.test ~all"
            i3 A 192.0.2.23
            i3 MX 10 mx
            i3 TXT "v=spf1 a mx a:mx.toomany.test ~all"
            """,
        ),
        "void.test": zone(
            "void.test",
            """
            ns1 A 127.0.0.1
            @ TXT "v=spf1 a:nx1.void.test mx:nx2.void.test exists:nx3.void.test include:nx4.void.test -all"
            """,
        ),
        "syntax.test": zone(
            "syntax.test",
            """
            ns1 A 127.0.0.1
            @ TXT "v=spf1 ip4:300.1.1.1 foo:bar ptr redirect=a.syntax.test redirect=b.syntax.test +all"
            """,
        ),
        # MX hosts in a zone this server refuses: their address lookups fail
        "partial.test": zone(
            "partial.test",
            """
            ns1 A 127.0.0.1
            @ MX 10 mx.unserved.test.
            @ TXT "v=spf1 -all"
            _dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@partial.test"
            _mta-sts TXT "v=STSv1; id=1;"
            _smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@partial.test"
            """,
        ),
        "halfbad.test": zone(
            "halfbad.test",
            """
            ns1 A 127.0.0.1
            @ MX 10 mx.unserved.test.
            @ TXT "v=spf1 -all"
            @ TXT "v=spf1 +all"
            """,
        ),
        "zen.spamhaus.org": zone(
            "zen.spamhaus.org",
            """
            ns1 A 127.0.0.1
            2.0.0.127 A 127.0.0.2
            99.2.0.192 A 127.0.0.2
            99.2.0.192 TXT "https://check.spamhaus.org/listed/?searchterm=192.0.2.99"
            98.2.0.192 A 127.0.0.4
            98.2.0.192 A 127.0.0.10
            77.2.0.192 A 127.255.255.254
            """,
            ttl=60,
        ),
        "bl.test": zone(
            "bl.test",
            """
            ns1 A 127.0.0.1
            99.2.0.192 A 127.0.0.2
            99.2.0.192 TXT "192.0.2.99 listed: spam trap hits"
            55.2.0.192 A 203.0.113.5
            """,
        ),
        "2.0.192.in-addr.arpa": zone(
            "2.0.192.in-addr.arpa",
            """
            ns1 A 127.0.0.1
            10 PTR mx1.good.test.
            66 PTR mx1.good.test.
            66 PTR mx2.good.test.
            77 PTR mx.unserved.test.
            """,
        ),
        v6_origin: zone(
            v6_origin,
            f"""
            ns1 A 127.0.0.1
            {v6_label.removesuffix("." + v6_origin)} PTR mx1.good.test.
            """,
        ),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    binary = need_binary("nsd")
    with NsdServer(tmp_path_factory.mktemp("nsd"), zones(), binary=binary) as srv:
        yield srv


@pytest.fixture
def client(server: NsdServer) -> DnsClient:
    return DnsClient(make_resolver(["127.0.0.1"], port=server.port, timeout=2.0), clock=lambda: NOW)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP socket on 127.0.0.1 that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def pick(findings: list[Finding], severity: Severity, needle: str) -> Finding:
    hits = [f for f in findings if f.severity is severity and needle in f.message]
    assert hits, f"no {severity} finding containing {needle!r} in {findings}"
    return hits[0]


def severities(findings: list[Finding]) -> set[Severity]:
    return {f.severity for f in findings}


# ---------------------------------------------------------------------------- queries, cache


def test_query_statuses(client: DnsClient) -> None:
    mx = client.query("good.test", "MX")
    assert mx.status is Status.NOERROR
    assert sorted(mx.records) == ["10 mx1.good.test.", "20 mx2.good.test."]
    assert mx.ttl == 300
    nodata = client.query("good.test", "AAAA")
    assert nodata.status is Status.NODATA and nodata.void
    nx = client.query("nothing.good.test", "A")
    assert nx.status is Status.NXDOMAIN and nx.void
    assert nx.ttl == 60  # RFC 2308: min(SOA TTL, SOA minimum)
    refused = client.query("example.invalid", "A")  # not served here: nsd refuses
    assert refused.status is Status.REFUSED and refused.failed


def test_long_txt_strings_are_joined(client: DnsClient) -> None:
    ans = client.query("sel2048._domainkey.good.test", "TXT")
    assert len(ans.records) == 1 and len(ans.records[0]) > 255
    assert " " not in ans.records[0].split("p=")[1]


def silent_client(port: int) -> DnsClient:
    return DnsClient(make_resolver(["127.0.0.1"], port=port, timeout=0.3), clock=lambda: NOW)


def test_timeout_is_an_answer_not_an_exception(silent_port: int) -> None:
    ans = silent_client(silent_port).query("good.test", "MX")
    assert ans.status is Status.TIMEOUT and ans.failed
    findings = check_mx(silent_client(silent_port), "good.test")
    assert findings == [
        Finding(
            check="mx",
            severity=Severity.UNKNOWN,  # not checked is not an error found
            message="MX lookup (MX good.test) timed out",
            name="good.test",
        )
    ]


def test_a_silent_resolver_costs_one_timeout(silent_port: int) -> None:
    slow = silent_client(silent_port)
    t0 = time.monotonic()
    report = check_domain(slow, "good.test", selectors=["sel2048"])
    elapsed = time.monotonic() - t0
    assert report.worst is Severity.UNKNOWN and report.unknown == report.findings
    assert "timed out" in report.findings[0].message
    assert all("not sent" in f.message for f in report.findings[1:])
    assert len(report.findings) == 6 and slow.queries_sent == 1
    assert elapsed < 0.3 * 3, elapsed  # one timeout, not one per record (6 x 0.3 s)
    assert slow.trouble() == (
        f"resolver 127.0.0.1 port {silent_port} did not answer within 0.3 s (timeout); "
        "the other 5 lookup(s) were not sent"
    )


def test_make_resolver_never_uses_system_config() -> None:
    res = make_resolver(["127.0.0.1"], port=5300)
    assert [(ns.address, ns.port) for ns in res.nameservers] == [("127.0.0.1", 5300)]
    with pytest.raises(ValueError):
        make_resolver([])
    with pytest.raises(ValueError):
        make_resolver(["dns.example"])


def test_cache_reuses_unexpired_answers(server: NsdServer, silent_port: int) -> None:
    store = Store.memory()
    cache = DnsCache(store)
    live = DnsClient(make_resolver(["127.0.0.1"], port=server.port), clock=lambda: NOW, cache=cache)
    first = live.query("good.test", "MX")
    assert not first.from_cache and live.queries_sent == 1
    again = live.query("GOOD.test.", "MX")
    assert again.from_cache and again.records == first.records and live.queries_sent == 1
    nx = live.query("nothing.good.test", "A")
    assert nx.status is Status.NXDOMAIN
    rows = store.con.execute(
        "SELECT qname, rdtype, ttl, fetched_at, expires_at, answer FROM dns_cache ORDER BY qname"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("good.test", "MX", 300),
        ("nothing.good.test", "A", 60),
    ]
    assert rows[0][3] == NOW and rows[0][4] == NOW + timedelta(seconds=300)
    assert json.loads(rows[0][5])["status"] == "noerror"

    # Same cache, a resolver that never answers: only the cache can answer.
    clock = [NOW + timedelta(seconds=299)]
    dead = DnsClient(
        make_resolver(["127.0.0.1"], port=silent_port, timeout=0.3),
        clock=lambda: clock[0],
        cache=cache,
    )
    hit = dead.query("good.test", "MX")
    assert hit.from_cache and hit.ttl == 1 and sorted(hit.records) == sorted(first.records)
    assert dead.query("nothing.good.test", "A").status is Status.TIMEOUT  # 60 s negative TTL over
    clock[0] = NOW + timedelta(seconds=300)
    # expired, and the resolver has answered nothing and timed out once: not asked again
    assert dead.query("good.test", "MX").status is Status.SKIPPED
    assert dead.queries_sent == 1
    # failures are never cached
    assert store.con.execute("SELECT count(*) FROM dns_cache").fetchone() == (2,)


def test_cache_in_a_read_only_store_is_read_not_written(tmp_path: Path, server: NsdServer) -> None:
    db = tmp_path / "c.duckdb"
    with Store.open(db) as store:
        DnsCache(store).put(
            Answer(
                qname="x.test", rdtype="A", status=Status.NOERROR, records=("192.0.2.1",), ttl=50
            ),
            NOW,
        )
    with Store.open(db, read_only=True) as ro:
        c = DnsClient(
            make_resolver(["127.0.0.1"], port=server.port), clock=lambda: NOW, cache=DnsCache(ro)
        )
        assert c.query("x.test", "A").records == ("192.0.2.1",)
        assert c.query("good.test", "A").status is Status.NODATA  # fetched, not written
        assert ro.con.execute("SELECT count(*) FROM dns_cache").fetchone() == (1,)


# ---------------------------------------------------------------------------- MX


def test_mx_with_addresses(client: DnsClient) -> None:
    findings = check_mx(client, "good.test")
    assert [(f.severity, f.message) for f in findings] == [
        (Severity.OK, "MX 10 mx1.good.test -> 192.0.2.10, 2001:db8::10"),
        (Severity.OK, "MX 20 mx2.good.test -> 192.0.2.11"),
    ]


def test_null_mx(client: DnsClient) -> None:
    [finding] = check_mx(client, "nullmx.test")
    assert finding.severity is Severity.OK and "null MX" in finding.message


def test_null_mx_mixed_with_other_mx_is_an_error(client: DnsClient) -> None:
    [finding] = check_mx(client, "mixmx.test")
    assert finding.severity is Severity.ERROR and "RFC 7505" in finding.message


def test_mx_host_without_address(client: DnsClient) -> None:
    [finding] = check_mx(client, "lame.mixmx.test")
    assert finding.severity is Severity.ERROR
    assert finding.message == "MX 10 nowhere.mixmx.test has no A/AAAA address"


def test_no_mx_falls_back_to_the_domain_address(client: DnsClient) -> None:
    [finding] = check_mx(client, "broken.test")
    assert finding.severity is Severity.WARNING and "implicit MX" in finding.message
    assert "192.0.2.50" in finding.message


def test_nonexistent_domain(client: DnsClient) -> None:
    [finding] = check_mx(client, "missing.good.test")
    assert finding.severity is Severity.ERROR and finding.message == "domain does not exist"


# ---------------------------------------------------------------------------- SPF


def test_good_spf(client: DnsClient) -> None:
    findings = check_spf(client, "good.test")
    assert severities(findings) == {Severity.OK}
    pick(findings, Severity.OK, "v=spf1 mx ip4:192.0.2.0/24 include:_spf.good.test -all")
    pick(findings, Severity.OK, "2 DNS lookups (limit 10)")


def test_two_spf_records(client: DnsClient) -> None:
    [finding] = check_spf(client, "broken.test")
    assert finding.severity is Severity.ERROR
    assert finding.message.startswith("2 SPF records: receivers return permerror")


def test_too_many_lookups_followed_through_includes(client: DnsClient) -> None:
    findings = check_spf(client, "toomany.test")
    pick(findings, Severity.ERROR, "12 DNS lookups, more than 10")
    assert not [f for f in findings if "void" in f.message]


def test_void_lookups(client: DnsClient) -> None:
    findings = check_spf(client, "void.test")
    pick(findings, Severity.ERROR, "4 void lookups, more than 2")
    pick(findings, Severity.ERROR, "include target nx4.void.test has no SPF record")
    pick(findings, Severity.OK, "4 DNS lookups (limit 10)")


def test_spf_syntax_errors(client: DnsClient) -> None:
    findings = check_spf(client, "syntax.test")
    pick(findings, Severity.ERROR, "invalid network in 'ip4:300.1.1.1'")
    pick(findings, Severity.ERROR, "unknown or malformed term 'foo:bar'")
    pick(findings, Severity.WARNING, "the ptr mechanism should not be used")
    pick(findings, Severity.ERROR, "redirect= appears more than once")
    pick(findings, Severity.WARNING, "every host on the Internet passes SPF")
    pick(findings, Severity.WARNING, "redirect= ignored")


def test_no_spf(client: DnsClient) -> None:
    [finding] = check_spf(client, "mixmx.test")
    assert finding.severity is Severity.WARNING and "no SPF record" in finding.message


# ---------------------------------------------------------------------------- DMARC


def test_dmarc_reject(client: DnsClient) -> None:
    findings = check_dmarc(client, "good.test")
    assert severities(findings) == {Severity.OK}
    pick(findings, Severity.OK, "policy p=reject")
    assert findings[0].name == "_dmarc.good.test"


def test_dmarc_broken(client: DnsClient) -> None:
    findings = check_dmarc(client, "broken.test")
    pick(findings, Severity.ERROR, "policy p= is invalid ('block')")
    pick(findings, Severity.ERROR, "invalid pct='150'")
    pick(findings, Severity.ERROR, "invalid adkim='x'")
    pick(findings, Severity.ERROR, "rua entry 'dmarc-at-broken' is not a URI")


def test_dmarc_without_rua_or_with_p_none(client: DnsClient) -> None:
    findings = check_dmarc(client, "two.broken.test")
    pick(findings, Severity.WARNING, "p=none: monitoring only")
    pick(findings, Severity.WARNING, "no rua=")
    nullmx = check_dmarc(client, "nullmx.test")
    assert Severity.ERROR not in severities(nullmx)


def test_no_dmarc(client: DnsClient) -> None:
    [finding] = check_dmarc(client, "syntax.test")
    assert finding.severity is Severity.WARNING and finding.message == "no DMARC record"


# ---------------------------------------------------------------------------- DKIM


@pytest.mark.parametrize(
    ("selector", "severity", "needle"),
    [
        ("sel2048", Severity.OK, "RSA key of 2048 bits"),
        ("sel1024", Severity.WARNING, "RSA key of 1024 bits: use 2048 or more"),
        ("ed", Severity.OK, "ed25519 key"),
        ("old", Severity.WARNING, "key revoked (empty p=)"),
        ("junk", Severity.ERROR, "p= does not hold an RSA public key"),
        ("nosuch", Severity.ERROR, "no DKIM key record"),
    ],
)
def test_dkim(client: DnsClient, selector: str, severity: Severity, needle: str) -> None:
    findings = check_dkim(client, "good.test", selector)
    pick(findings, severity, needle)
    assert all(f.name == f"{selector}._domainkey.good.test" for f in findings)


# ---------------------------------------------------------------------------- MTA-STS, TLS-RPT


def test_mta_sts_and_tls_rpt(client: DnsClient) -> None:
    [sts] = check_mta_sts(client, "good.test")
    assert sts.severity is Severity.OK and "id=20240101T000000" in sts.message
    [rpt] = check_tls_rpt(client, "good.test")
    assert rpt.severity is Severity.OK and "mailto:tlsrpt@good.test" in rpt.message
    [bad_sts] = check_mta_sts(client, "broken.test")
    assert bad_sts.severity is Severity.ERROR and "invalid or missing id=" in bad_sts.message
    [bad_rpt] = check_tls_rpt(client, "broken.test")
    assert bad_rpt.severity is Severity.ERROR and "ftp://" in bad_rpt.message
    [none_sts] = check_mta_sts(client, "nullmx.test")
    assert none_sts.severity is Severity.WARNING


def test_check_domain_collects_every_check(client: DnsClient) -> None:
    report = check_domain(client, "good.test", selectors=["sel2048"])
    assert report.worst is Severity.OK
    assert {f.check for f in report.findings} == {
        "mx",
        "spf",
        "dmarc",
        "dkim",
        "mta-sts",
        "tls-rpt",
    }


# ---------------------------------------------------------------------------- DNSBL


def test_dnsbl_names() -> None:
    assert dnsbl_name("192.0.2.99", "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org"
    v6 = dnsbl_name("2001:db8::1", "bl.test")
    assert v6.startswith("1.0.0.0.") and v6.endswith(".8.b.d.0.1.0.0.2.bl.test")
    assert len(v6.split(".")) == 32 + 2  # RFC 5782 section 2.4: 32 nibbles
    with pytest.raises(ValueError):
        dnsbl_name("not-an-ip", "bl.test")


@given(st.ip_addresses(v=4))
def test_dnsbl_name_reverses_ipv4_octets(ip: object) -> None:
    name = dnsbl_name(str(ip), "Zen.Spamhaus.org.")
    octets = name.removesuffix(".zen.spamhaus.org").split(".")
    assert ".".join(reversed(octets)) == str(ip)


@given(st.text())
def test_parse_tags_is_total(record: str) -> None:
    tags, bad = parse_tags(record)
    assert all(name == name.strip().lower() and name for name, _ in tags)
    assert all("=" not in b or b.startswith("=") for b in bad)


def test_blocklist_listed_unlisted_and_errors(client: DnsClient) -> None:
    zones = ["zen.spamhaus.org", "bl.test", "unserved.test"]
    listed = {r.zone: r for r in check_blocklists(client, "192.0.2.99", zones)}
    zen = listed["zen.spamhaus.org"]
    assert zen.status is Listing.LISTED and zen.codes == ("127.0.0.2",)
    assert zen.meanings == ("SBL (Spamhaus Blocklist)",)
    assert zen.txt == ("https://check.spamhaus.org/listed/?searchterm=192.0.2.99",)
    assert listed["bl.test"].status is Listing.LISTED
    assert listed["bl.test"].txt == ("192.0.2.99 listed: spam trap hits",)
    unserved = listed["unserved.test"]
    assert unserved.status is Listing.UNKNOWN and not unserved.status.checked
    assert unserved.message == "lookup refused by the resolver (REFUSED)"

    clean = check_blocklists(client, "192.0.2.1", zones[:2])
    assert [r.status for r in clean] == [Listing.NOT_LISTED, Listing.NOT_LISTED]

    [both] = check_blocklists(client, "192.0.2.98", ["zen.spamhaus.org"])
    assert both.status is Listing.LISTED
    assert both.meanings == ("XBL (Exploits Blocklist)", "PBL (ISP maintained)")

    [err] = check_blocklists(client, "192.0.2.77", ["zen.spamhaus.org"])
    assert err.status is Listing.QUERY_ERROR and err.codes == ("127.255.255.254",)
    assert "public/open resolver" in err.message and err.txt == ()

    [wild] = check_blocklists(client, "192.0.2.55", ["bl.test"])
    assert wild.status is Listing.QUERY_ERROR and "outside 127.0.0.0/8" in wild.message


def test_rfc5782_test_entry(client: DnsClient) -> None:
    [r] = check_blocklists(client, "127.0.0.2", ["zen.spamhaus.org"])
    assert r.status is Listing.LISTED


# ---------------------------------------------------------------------------- FCrDNS


def test_fcrdns(client: DnsClient) -> None:
    ok = check_fcrdns(client, "192.0.2.10")
    assert ok.confirmed and ok.ptr_names == ("mx1.good.test",)
    assert ok.confirmed_names == ("mx1.good.test",)
    mismatch = check_fcrdns(client, "192.0.2.66")
    assert not mismatch.confirmed
    assert sorted(mismatch.ptr_names) == ["mx1.good.test", "mx2.good.test"]
    assert "no PTR name resolves back" in mismatch.message
    none = check_fcrdns(client, "192.0.2.67")
    assert not none.confirmed and none.message == "no PTR record"
    v6 = check_fcrdns(client, "2001:db8::10")
    assert v6.confirmed and v6.confirmed_names == ("mx1.good.test",)


# ---------------------------------------------------------------------------- CLI


def cli(server: NsdServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["dns", *args, "--resolver", "127.0.0.1", "--port", str(server.port)]
    )
    return result.exit_code, result.output


def test_cli_check_json(server: NsdServer) -> None:
    code, out = cli(server, "check", "good.test", "-s", "sel2048", "--no-cache", "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["domain"] == "good.test" and data["worst"] == "ok"
    assert {
        "check": "dkim",
        "severity": "ok",
        "message": "selector 'sel2048': RSA key of 2048 bits",
        "name": "sel2048._domainkey.good.test",
    } in data["findings"]


def test_cli_check_errors_exit_1_and_cache_in_db(server: NsdServer, tmp_path: Path) -> None:
    db = tmp_path / "dns.duckdb"
    code, out = cli(server, "check", "broken.test", "--db", str(db))
    assert code == 1
    assert "error    spf      2 SPF records" in out
    assert "warning  mx       no MX record" in out
    with Store.open(db, read_only=True) as store:
        cached = store.con.execute(
            "SELECT qname FROM dns_cache WHERE rdtype = 'TXT' ORDER BY qname"
        ).fetchall()
    assert ("_dmarc.broken.test",) in cached and ("broken.test",) in cached


def test_cli_blocklist(server: NsdServer) -> None:
    code, out = cli(
        server, "blocklist", "192.0.2.99", "-z", "zen.spamhaus.org", "-z", "bl.test", "--no-cache"
    )
    assert code == 1
    assert "listed" in out and "SBL (Spamhaus Blocklist)" in out
    code, out = cli(
        server,
        "blocklist",
        "192.0.2.77",
        "-z",
        "zen.spamhaus.org",
        "--no-cache",
        "--format",
        "json",
    )
    assert code == 3  # a query error is no answer to "listed?"
    [row] = json.loads(out)
    assert row["status"] == "query_error" and row["codes"] == ["127.255.255.254"]
    code, out = cli(server, "blocklist", "not-an-ip", "--no-cache")
    assert code == 2 and "bad IP address" in out


def test_cli_fcrdns(server: NsdServer) -> None:
    code, out = cli(server, "fcrdns", "192.0.2.10", "--no-cache")
    assert code == 0 and "confirmed: mx1.good.test -> 192.0.2.10" in out
    code, out = cli(server, "fcrdns", "192.0.2.10", "192.0.2.66", "--no-cache", "--format", "json")
    assert code == 1
    assert [r["confirmed"] for r in json.loads(out)] == [True, False]


# ---------------------------------------------------------------------------- failed lookups
# A lookup that fails is "unknown", never "not listed" or "no record"; exit 3 unless something
# was found (1); a resolver nothing listens on ends the command at once (2). Times are measured
# in this process (run(), not a child): the limits are about lookups, not interpreter start-up.


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    """An nsd serving one zone nothing here asks about: it answers REFUSED to every query."""
    binary = need_binary("nsd")
    only = {"elsewhere.test": zone("elsewhere.test", "ns1 A 127.0.0.1")}
    with NsdServer(tmp_path_factory.mktemp("nsd-refusing"), only, binary=binary) as srv:
        yield srv


def run_dns(
    capsys: pytest.CaptureFixture[str], port: int, *args: str
) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of `mtalens dns ARGS` against 127.0.0.1:port."""
    capsys.readouterr()
    t0 = time.monotonic()
    code = run(["dns", *args, "--no-cache", "--resolver", "127.0.0.1", "--port", str(port)])
    elapsed = time.monotonic() - t0
    captured = capsys.readouterr()
    return code, captured.out, captured.err, elapsed


@pytest.mark.parametrize(
    ("ip", "zones", "expected", "statuses"),
    [
        ("192.0.2.1", ["zen.spamhaus.org", "bl.test"], ExitCode.OK, ["not_listed", "not_listed"]),
        ("192.0.2.99", ["unserved.test", "bl.test"], ExitCode.FINDINGS, ["unknown", "listed"]),
        ("192.0.2.1", ["bl.test", "unserved.test"], ExitCode.PARTIAL, ["not_listed", "unknown"]),
    ],
)
def test_cli_blocklist_exit_codes(
    server: NsdServer,
    capsys: pytest.CaptureFixture[str],
    ip: str,
    zones: list[str],
    expected: ExitCode,
    statuses: list[str],
) -> None:
    zone_args = [a for z in zones for a in ("-z", z)]
    code, out, err, _ = run_dns(
        capsys, server.port, "blocklist", ip, *zone_args, "--format", "json"
    )
    assert code == expected, (out, err)
    assert [r["status"] for r in json.loads(out)] == statuses
    assert err == ""  # some list answered: no "nothing could be checked" line


def test_cli_blocklist_every_lookup_refused(
    refusing: NsdServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, elapsed = run_dns(capsys, refusing.port, "blocklist", "192.0.2.99")
    assert code == ExitCode.PARTIAL, (out, err)
    rows = [line.split(None, 2) for line in out.splitlines()]
    assert [r[1] for r in rows] == list(DEFAULT_BLOCKLISTS)
    assert {(r[0], r[2]) for r in rows} == {("unknown", "lookup refused by the resolver (REFUSED)")}
    assert "not_listed" not in out and "not listed" not in out
    assert err == (
        f"mtalens: resolver 127.0.0.1 port {refusing.port} refused all 5 queries (REFUSED); "
        "nothing could be checked\n"
    )
    assert elapsed < 2, elapsed


@pytest.mark.parametrize(
    ("args", "queries"),
    [(["check", "good.test"], 5), (["fcrdns", "192.0.2.10"], 1)],
)
def test_cli_check_and_fcrdns_every_lookup_refused(
    refusing: NsdServer, capsys: pytest.CaptureFixture[str], args: list[str], queries: int
) -> None:
    code, out, err, elapsed = run_dns(capsys, refusing.port, *args)
    assert code == ExitCode.PARTIAL, (out, err)  # was 1: a refused lookup looked like an error
    assert "unknown" in out and "error" not in out and "FAIL" not in out
    what = "the query" if queries == 1 else f"all {queries} queries"
    assert err == (
        f"mtalens: resolver 127.0.0.1 port {refusing.port} refused {what} (REFUSED); "
        "nothing could be checked\n"
    )
    assert elapsed < 2, elapsed


def test_cli_check_unknown_without_errors_is_partial(
    server: NsdServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, _ = run_dns(capsys, server.port, "check", "partial.test")
    assert code == ExitCode.PARTIAL, out
    assert (
        "  unknown  mx       MX mx.unserved.test address lookup (A mx.unserved.test) "
        "refused by the resolver (REFUSED)"
    ) in out
    assert "  error" not in out and err == ""
    # an error found wins over the unknown MX address
    code, out, _, _ = run_dns(capsys, server.port, "check", "halfbad.test")
    assert code == ExitCode.FINDINGS, out
    assert "  unknown  mx" in out and "  error    spf      2 SPF records" in out


def test_fcrdns_failed_lookups_are_unknown(client: DnsClient) -> None:
    ptr = check_fcrdns(client, "198.51.100.1")  # 100.51.198.in-addr.arpa: refused
    assert ptr.unknown and not ptr.confirmed
    assert ptr.message == "PTR lookup refused by the resolver (REFUSED)"
    forward = check_fcrdns(client, "192.0.2.77")  # PTR mx.unserved.test.: A refused
    assert forward.unknown and not forward.confirmed
    assert forward.ptr_names == ("mx.unserved.test",)
    assert "unknown whether it resolves back" in forward.message
    mismatch = check_fcrdns(client, "192.0.2.66")
    assert not mismatch.unknown and not mismatch.confirmed


def test_cli_fcrdns_exit_codes(server: NsdServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _, _ = run_dns(capsys, server.port, "fcrdns", "192.0.2.10", "192.0.2.77")
    assert code == ExitCode.PARTIAL, out
    assert re.search(r"^192\.0\.2\.77 +unknown ", out, re.MULTILINE), out
    code, out, _, _ = run_dns(capsys, server.port, "fcrdns", "192.0.2.66", "192.0.2.77")
    assert code == ExitCode.FINDINGS, out  # 192.0.2.66 is not confirmed: a finding


@pytest.mark.parametrize(
    "args", [["blocklist", "192.0.2.99"], ["check", "good.test"], ["fcrdns", "192.0.2.10"]]
)
def test_cli_closed_port_fails_fast(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    port = free_port()  # nothing listens: ICMP port unreachable
    code, out, err, elapsed = run_dns(capsys, port, *args)  # default --timeout 3
    assert code == ExitCode.USAGE
    assert out == ""
    assert err == (
        f"mtalens: resolver 127.0.0.1 port {port} cannot be reached (connection refused): "
        "no DNS server listens there; check --resolver and --port\n"
    )
    assert elapsed < 2, elapsed  # an unconnected socket would wait out 3 s per lookup


def test_closed_port_raises_resolver_error_but_no_nameserver_does_not() -> None:
    port = free_port()
    closed = DnsClient(make_resolver(["127.0.0.1"], port=port), clock=lambda: NOW)
    with pytest.raises(ResolverError, match="cannot be reached") as info:
        closed.query("good.test", "MX")
    assert isinstance(info.value, InputError) and info.value.exit_code == ExitCode.USAGE
    # diagnose's cache-only client has no nameserver at all: a cache miss is a failed lookup
    offline = cache_only_client(Store.memory(), lambda: NOW)
    assert offline.query("good.test", "MX").status is Status.SERVFAIL


def test_cli_silent_resolver_gives_up_after_one_timeout(
    silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, elapsed = run_dns(
        capsys, silent_port, "blocklist", "192.0.2.99", "--timeout", "0.5"
    )
    assert code == ExitCode.PARTIAL, (out, err)
    assert [line.split()[0] for line in out.splitlines()] == ["unknown"] * 5
    assert "lookup timed out" in out.splitlines()[0]
    assert err == (
        f"mtalens: resolver 127.0.0.1 port {silent_port} did not answer within 0.5 s (timeout); "
        "the other 4 lookup(s) were not sent; nothing could be checked\n"
    )
    assert elapsed < 1.5, elapsed  # one timeout, not 5 x 0.5 s


def test_trouble_only_when_nothing_answered(client: DnsClient) -> None:
    assert client.trouble() is None  # nothing asked yet
    assert client.query("example.invalid", "A").status is Status.REFUSED
    assert client.trouble() == f"resolver {describe(client)} refused the query (REFUSED)"
    client.query("good.test", "MX")
    assert client.trouble() is None


def describe(client: DnsClient) -> str:
    [ns] = client.resolver.nameservers
    return f"127.0.0.1 port {ns.port}"  # type: ignore[union-attr]


def test_the_process_on_a_closed_port() -> None:
    """As a user runs it: a child process, one line on stderr, exit 2, well before one timeout."""
    port = free_port()
    argv = [sys.executable, "-m", "mtalens.pipeline.cli", "dns", "blocklist", "192.0.2.99"]
    t0 = time.monotonic()
    r = subprocess.run(
        [*argv, "--no-cache", "--resolver", "127.0.0.1", "--port", str(port)],
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - t0
    assert r.returncode == ExitCode.USAGE and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "cannot be reached (connection refused)" in r.stderr
    assert elapsed < 3, elapsed  # start-up included; before: 5 lookups x 3 s


@pytest.mark.parametrize("command", ["check", "blocklist", "fcrdns"])
def test_help_states_exit_codes(command: str) -> None:
    result = CliRunner().invoke(app, ["dns", command, "--help"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert re.search(r"Exit codes: 0 .*; 1 .*; 3 .*; 2 usage error", text), text


def test_dns_commands_import_no_heavy_module() -> None:
    """`mtalens --help` start-up (issue 10): dnspython and the store load inside the commands."""
    heavy = ("dns", "duckdb", "polars", "pyarrow", "mtalens.pipeline.dns", "mtalens.pipeline.store")
    code = (
        "import sys; import mtalens.pipeline.commands.dns; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
