"""X.509 server certificates as a mail client sees them (DER in, facts out).

Reads a DER certificate (RFC 5280) with ``cryptography`` and answers what an SMTP probe reports:
names (subject CN, subjectAltName DNS names and IP addresses), issuer, validity, whether it is
self-signed (issuer equals subject and its own key verifies its signature), and whether it
matches a host name. Name matching follows RFC 6125 section 6.4: DNS-ID from subjectAltName only
(browsers and RFC 9525 dropped the CN fallback), a wildcard only as the whole left-most label and
matching exactly one label; an IP address matches only an iPAddress SAN (section 6.2.1 of RFC
6125, RFC 5280 section 4.2.1.6). Samples: certificates the tests make (tests/test_probe_parse.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from mtalens.parsers.errors import ParseError


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateInfo:
    subject: str  # RFC 4514 string
    issuer: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: datetime  # UTC
    not_after: datetime  # UTC
    self_signed: bool
    serial: str  # hex
    sha256: str  # fingerprint of the DER, hex
    key: str  # "RSA 2048", "EC secp256r1", ...

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def matches(self, name: str) -> bool:
        return hostname_matches(self, name)


def _key_description(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, or a key type that cannot verify (DSA params...)
        return False
    return True


def parse_certificate(der: bytes) -> CertificateInfo:
    """The facts of one DER certificate; ``ParseError('bad-certificate')`` if it is not one."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ParseError("bad-certificate", str(exc)) from exc
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names, ips = (), ()
    except ValueError as exc:  # a malformed extension
        raise ParseError("bad-certificate", f"subjectAltName: {exc}") from exc
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else None
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=cn if isinstance(cn, str) else None,
        dns_names=dns_names,
        ip_addresses=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=_self_signed(cert),
        serial=f"{cert.serial_number:x}",
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        key=_key_description(cert),
    )


def _dns_match(pattern: str, name: str) -> bool:
    pattern, name = pattern.rstrip(".").lower(), name.rstrip(".").lower()
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        # one whole label, and never a wildcard over a public suffix-like single label
        return bool(head) and rest == pattern[2:] and "." in rest
    return "*" not in pattern and pattern == name


def hostname_matches(info: CertificateInfo, name: str) -> bool:
    """Whether the certificate is valid for ``name`` (a host name or an IP address)."""
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(a) == ip for a in info.ip_addresses)
    return any(_dns_match(p, name) for p in info.dns_names)
