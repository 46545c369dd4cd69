"""The pure parts of `mtalens probe`: SMTP replies, EHLO extensions, certificates, port specs,
terminal-safe text and the judging of observations (no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mtalens.parsers.certificate import hostname_matches, parse_certificate
from mtalens.parsers.errors import ParseError
from mtalens.parsers.smtp import banner_hostname, parse_ehlo, parse_reply, printable
from mtalens.pipeline import probe as lib
from mtalens.pipeline.probe import Mode, Outcome, PortProbe, ProbeReport, judge
from tests.lab.probe_lab import LabCA

# Postfix 3.7's EHLO reply on the lab's AUTH-before-TLS listener, as received
POSTFIX_EHLO = [
    "250-mx1.example.net",
    "250-PIPELINING",
    "250-SIZE 10240000",
    "250-VRFY",
    "250-ETRN",
    "250-STARTTLS",
    "250-AUTH PLAIN LOGIN",
    "250-AUTH=PLAIN LOGIN",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-DSN",
    "250-SMTPUTF8",
    "250 CHUNKING",
]


def test_multiline_reply_and_enhanced_code() -> None:
    r = parse_reply(["554-5.7.1 <x@example.com>: Relay access denied", "554 5.7.1 try later"])
    assert r.code == 554 and r.enhanced == "5.7.1"
    assert r.lines == ("<x@example.com>: Relay access denied", "try later")
    assert r.show().splitlines()[0].startswith("554-")
    # an enhanced code of another class than the reply's is text, not a status (RFC 3463)
    assert parse_reply(["250 5.0.0 odd"]).enhanced is None
    assert parse_reply(["220"]).lines == ("",)


@pytest.mark.parametrize(
    "lines",
    [[], ["hello"], ["250-a", "251 b"], ["250 a", "250 b"], ["250-a"], ["99 x"], ["2500 x"]],
)
def test_bad_replies_raise_parse_error(lines: list[str]) -> None:
    with pytest.raises(ParseError):
        parse_reply(lines)


def test_ehlo_extensions_and_auth() -> None:
    e = parse_ehlo(parse_reply(POSTFIX_EHLO))
    assert e.hostname == "mx1.example.net"
    assert e.has("starttls") and e.has("CHUNKING") and e.has("SMTPUTF8") and e.has("PIPELINING")
    assert e.auth == ("PLAIN", "LOGIN") and e.cleartext_auth == ("PLAIN", "LOGIN")
    assert e.size == 10240000
    assert "AUTH=" not in e.keywords
    legacy = parse_ehlo(parse_reply(["250-h.example", "250 AUTH=LOGIN CRAM-MD5"]))
    assert legacy.auth == ("LOGIN", "CRAM-MD5") and legacy.cleartext_auth == ("LOGIN",)
    strong = parse_ehlo(parse_reply(["250-h.example", "250 AUTH SCRAM-SHA-256"]))
    assert strong.cleartext_auth == ()
    with pytest.raises(ParseError):
        parse_ehlo(parse_reply(["502 5.5.2 Error: command not recognized"]))


def test_banner_hostname() -> None:
    assert banner_hostname(parse_reply(["220 MX1.Example.NET ESMTP Postfix"])) == "mx1.example.net"
    assert banner_hostname(parse_reply(["220 [192.0.2.1] ready"])) == "[192.0.2.1]"
    assert banner_hostname(parse_reply(["220 \x1b[2J ready"])) is None


def test_printable_neutralises_terminal_controls() -> None:
    hostile = "220 ok\x1b[2J\x07\r\nfake\u202eexe.txt\x9b"
    shown = printable(hostile)
    assert not any(c in shown for c in "\x1b\x07\r\n\u202e\x9b")
    assert shown == "220 ok\\x1b[2J\\x07\\x0d\\x0afake\\u202eexe.txt\\x9b"
    assert printable("plain text, é ü") == "plain text, é ü"


def test_parse_ports() -> None:
    specs = lib.parse_ports("25, 465,587,2525/tls,4650/starttls,25")
    assert [(s.port, s.mode) for s in specs] == [
        (25, Mode.STARTTLS),
        (465, Mode.IMPLICIT),
        (587, Mode.STARTTLS),
        (2525, Mode.IMPLICIT),
        (4650, Mode.STARTTLS),
    ]
    for bad in ("0", "65536", "smtp", "25/ssl", "", "25,,26"):
        with pytest.raises(lib.ProbeError):
            lib.parse_ports(bad)


def test_check_host() -> None:
    assert lib.check_host("Mail.Example.org.") == "Mail.Example.org"
    assert lib.check_host("[192.0.2.7]") == "192.0.2.7"
    assert lib.check_host("::1") == "::1"
    for bad in ("exa mple.com", "-bad.example", "a..b", "x" * 300, ""):
        with pytest.raises(lib.ProbeError):
            lib.check_host(bad)


def test_certificate_facts_and_name_matching(tmp_path: Path) -> None:
    ca = LabCA.create(tmp_path)
    now = dt.datetime.now(dt.UTC)
    crt, _ = ca.issue(tmp_path, "leaf", dns_names=("*.example.net", "mx.example.org"),
                      ips=("192.0.2.5",), not_before=now - dt.timedelta(days=1),
                      not_after=now + dt.timedelta(days=3))  # fmt: skip
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(crt.read_bytes()).public_bytes(serialization.Encoding.DER)
    info = parse_certificate(der)
    assert info.issuer == "CN=mtalens lab CA" and not info.self_signed
    assert 2.9 < info.days_left(now) < 3.1
    assert hostname_matches(info, "mx1.example.net")
    assert not hostname_matches(info, "a.b.example.net")  # a wildcard is one label
    assert not hostname_matches(info, "example.net")
    assert hostname_matches(info, "MX.example.org.")
    assert hostname_matches(info, "192.0.2.5") and not hostname_matches(info, "192.0.2.6")
    ca_der = ca.cert.public_bytes(serialization.Encoding.DER)
    assert parse_certificate(ca_der).self_signed
    with pytest.raises(ParseError):
        parse_certificate(b"not a certificate")


def _report(ports: tuple[PortProbe, ...], rdns: tuple[str, ...] | None = None) -> ProbeReport:
    return ProbeReport(host="mx.example.org", address="192.0.2.1", rdns=rdns, ports=ports,
                       findings=())  # fmt: skip


def test_judge_names_and_exit_codes() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    banner = parse_reply(["220 mail.example.org ESMTP"])
    ehlo = parse_ehlo(parse_reply(["250-mail.example.org", "250 PIPELINING"]))
    answered = PortProbe(port=25, mode=Mode.STARTTLS, outcome=Outcome.OK, banner=banner,
                         banner_host="mail.example.org", ehlo=ehlo)  # fmt: skip
    found = {f.problem: f for f in judge(_report((answered,), rdns=("other.example.org",)), when)}
    assert set(found) == {"banner-rdns-mismatch", "no-starttls"}
    assert found["banner-rdns-mismatch"].evidence.fact("rdns") == ("other.example.org",)
    assert not judge(_report((answered,), rdns=("mail.example.org",)), when)[1:]
    refused = PortProbe(port=587, mode=Mode.STARTTLS, outcome=Outcome.REFUSED, error="refused")
    only_refused = _report((refused,))
    only_refused = ProbeReport(**{**_fields(only_refused), "findings": judge(only_refused, when)})
    assert only_refused.exit_code() == 3  # nothing wrong where it answered
    both = _report((answered, refused))
    both = ProbeReport(**{**_fields(both), "findings": judge(both, when)})
    assert both.exit_code() == 1
    outbound = ProbeReport(**{**_fields(only_refused), "outbound": True})
    assert outbound.exit_code() == 1  # with --outbound, not reaching it is the finding


def _fields(r: ProbeReport) -> dict[str, object]:
    return {f: getattr(r, f) for f in ProbeReport.__dataclass_fields__}
