"""One real Postfix configured several ways at once, for `mtalens probe` (issue 17, item 4).

:class:`ProbeLab` is a :class:`ProblemLab` (Cyrus SASL from a sasldb, a self-signed certificate
for ``myhostname``) whose master.cf holds one smtpd(8) listener per server configuration, each on
its own address of a random ``127.N.M.0/24`` block and on the standard port it plays, so `probe`
runs with its default ports (master(5): ``host:port`` service names; ``-o`` overrides per
service, postconf(5) names):

=====  ====  ==================================================================================
host   port  configuration
=====  ====  ==================================================================================
10     25    open relay: ``mynetworks = 0.0.0.0/0`` (with permit_mynetworks in the relay rules),
             STARTTLS with the self-signed certificate
11     587   AUTH offered before TLS: SASL on, ``smtpd_tls_security_level = may``,
             ``smtpd_tls_auth_only = no``
12     587   an expired certificate (from the lab CA), STARTTLS required
13     587   only 587, done right: STARTTLS required, AUTH only after it, TLS >= 1.2, a
             certificate from the lab CA for ``mail.probe.test`` and the address
14     465   implicit TLS (``smtpd_tls_wrappermode = yes``), SASL, TLS >= 1.2, the lab CA's
             certificate
15     465   port 465 without wrappermode: plain SMTP where clients expect TLS
=====  ====  ==================================================================================

Certificates are made here with ``cryptography``: a lab CA (``ca.pem``, passed to probe with
``--cafile``) and leaf certificates it issues. Traffic stays on the block's addresses.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .postfix_lab import PostfixLab
from .problem_lab import LoopbackBlock, ProblemLab

OPEN_RELAY: Final = 10
AUTH_BEFORE_TLS: Final = 11
EXPIRED: Final = 12
GOOD_587: Final = 13
IMPLICIT_465: Final = 14
PLAIN_465: Final = 15
GOOD_NAME: Final = "mail.probe.test"


_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LabCA:
    cert_path: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path) -> LabCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtalens lab CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "ca.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(path, key, cert)

    def issue(
        self,
        directory: Path,
        stem: str,
        *,
        dns_names: tuple[str, ...],
        ips: tuple[str, ...] = (),
        not_before: dt.datetime,
        not_after: dt.datetime,
    ) -> tuple[Path, Path]:
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        os.chmod(key_path, 0o644)
        return cert_path, key_path


class ProbeLab(ProblemLab):
    """The listeners of the module docstring on one Postfix."""

    def __init__(self, tmpdir: Path, *, mx_port: int, block: LoopbackBlock) -> None:
        super().__init__(tmpdir, mx_port=mx_port, block=block, transports={})
        self.ca_dir: Final = Path(tmpdir) / "lab-ca"
        self.ca: LabCA | None = None

    def ip(self, host: int) -> str:
        return self.block.ip(host)

    def _certs(self) -> dict[str, tuple[Path, Path]]:
        if self.ca is None:
            self.ca = LabCA.create(self.ca_dir)
        now = dt.datetime.now(dt.UTC)
        d = self.tls_dir
        d.mkdir(parents=True, exist_ok=True)
        return {
            "expired": self.ca.issue(
                d, "expired", dns_names=(GOOD_NAME,), ips=(self.ip(EXPIRED),),
                not_before=now - dt.timedelta(days=90), not_after=now - dt.timedelta(days=2),
            ),
            "good": self.ca.issue(
                d, "good", dns_names=(GOOD_NAME,), ips=(self.ip(GOOD_587), self.ip(IMPLICIT_465)),
                not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=20),
            ),
        }  # fmt: skip

    def master_cf(self) -> str:
        certs = self._certs()

        def cert(which: str) -> str:
            c, k = certs[which]
            return f" -o smtpd_tls_cert_file={c} -o smtpd_tls_key_file={k}"

        sasl = " -o smtpd_sasl_auth_enable=yes"
        # done right: no TLS below 1.2 (RFC 8996) on the submission ports
        floor = " -o smtpd_tls_protocols=>=TLSv1.2 -o smtpd_tls_mandatory_protocols=>=TLSv1.2"
        submission_relay = (
            " -o smtpd_relay_restrictions=permit_sasl_authenticated,reject_unauth_destination"
        )
        rows = (
            f"{self.ip(OPEN_RELAY)}:25 inet n - n - - smtpd -o mynetworks=0.0.0.0/0"
            " -o smtpd_tls_security_level=may",
            f"{self.ip(AUTH_BEFORE_TLS)}:587 inet n - n - - smtpd{sasl}"
            " -o smtpd_tls_security_level=may -o smtpd_tls_auth_only=no" + submission_relay,
            f"{self.ip(EXPIRED)}:587 inet n - n - - smtpd{sasl}"
            " -o smtpd_tls_security_level=encrypt" + cert("expired") + submission_relay,
            f"{self.ip(GOOD_587)}:587 inet n - n - - smtpd{sasl}"
            " -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes"
            + floor + cert("good") + submission_relay,
            f"{self.ip(IMPLICIT_465)}:465 inet n - n - - smtpd{sasl}"
            " -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt"
            + floor + cert("good") + submission_relay,
            f"{self.ip(PLAIN_465)}:465 inet n - n - - smtpd{sasl}"
            " -o smtpd_tls_security_level=may" + submission_relay,
            "tlsmgr unix - - n 1000? 1 tlsmgr",
        )  # fmt: skip
        return PostfixLab.master_cf(self) + "\n".join(rows) + "\n"
