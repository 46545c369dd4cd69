"""A real IMAP server (Debian's ``dovecot-imapd``, Dovecot 2.3) on 127.0.0.1 for the IMAP tests.

Dovecot runs in the foreground (``dovecot -c CONF -F``) with a config of its own: IMAP with
STARTTLS and IMAPS on free ports, a passwd-file passdb/userdb with the test users, Maildirs under
its work directory, and a server certificate for 127.0.0.1 signed by a test CA made here with
``cryptography``. Plaintext authentication is refused before TLS (``disable_plaintext_auth``).

Users: Dovecot refuses to run its login processes as root and to give mail access to UID 0. As
root, the login and internal processes run as the package's own users (``dovenull``,
``dovecot``: the defaults) and the mail belongs to ``dovecot``; as anyone else, every process
runs as that user. The work directory is made under /tmp with mode 0755 (pytest's own is 0700,
which those users could not enter).

    with DovecotServer({"bounce": "password"}) as server:
        imap = server.client("bounce", "password")
"""

from __future__ import annotations

import datetime
import imaplib
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(
        digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, ip: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ip))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class DovecotServer:
    HOST = "127.0.0.1"

    def __init__(
        self,
        users: dict[str, str],
        *,
        binary: str = "dovecot",
        imap_capability: str | None = None,
    ) -> None:
        self.users = users
        self.binary = binary
        # Dovecot 2.3 imap_capability: replaces the capability list shown after login
        self.imap_capability = imap_capability
        self.workdir = Path(tempfile.mkdtemp(prefix="mtalens-dovecot-"))
        self.workdir.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.ca_file = self.workdir / "ca.pem"
        self.other_ca_file = self.workdir / "other-ca.pem"  # a CA that signed nothing here
        self.proc: subprocess.Popen[bytes] | None = None

    # -- setup ----------------------------------------------------------------------------------

    def _write_files(self) -> Path:
        w = self.workdir
        ca_key, ca = make_ca("mtalens test CA")
        key, cert = make_server_cert(ca_key, ca, self.HOST)
        self.ca_file.write_bytes(_pem(ca))
        self.other_ca_file.write_bytes(_pem(make_ca("mtalens other CA")[1]))
        (w / "cert.pem").write_bytes(_pem(cert))
        key_file = w / "key.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        if os.getuid() == 0:
            mail_user = pwd.getpwnam("dovecot")
            users_conf = ""
        else:
            mail_user = pwd.getpwuid(os.getuid())
            users_conf = (
                f"default_login_user = {mail_user.pw_name}\n"
                f"default_internal_user = {mail_user.pw_name}\n"
            )
        mail = w / "mail"
        mail.mkdir()
        os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
        lines = [
            f"{user}:{{PLAIN}}{password}:{mail_user.pw_uid}:{mail_user.pw_gid}::{mail / user}::"
            for user, password in self.users.items()
        ]
        passwd = w / "passwd"
        passwd.write_text("\n".join(lines) + "\n", encoding="utf-8")
        passwd.chmod(0o644)  # read by the auth process (as dovecot when root)
        capability = f"imap_capability = {self.imap_capability}\n" if self.imap_capability else ""
        conf = w / "dovecot.conf"
        conf.write_text(
            f"""protocols = imap
listen = {self.HOST}
base_dir = {w}/run
state_dir = {w}/state
instance_name = mtalens-test-{w.name}
log_path = {w}/dovecot.log
{users_conf}first_valid_uid = {mail_user.pw_uid}
last_valid_uid = {mail_user.pw_uid}
ssl = required
ssl_cert = <{w}/cert.pem
ssl_key = <{key_file}
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{mail}/%u
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = {self.HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.HOST}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""",
            encoding="utf-8",
        )
        return conf

    def start(self) -> DovecotServer:
        conf = self._write_files()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited: {err}{self.log()}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not start listening: {self.log()}")

    def _answers(self) -> bool:
        for port in (self.imap_port, self.imaps_port):
            try:
                socket.create_connection((self.HOST, port), timeout=0.5).close()
            except OSError:
                return False
        return True

    def log(self) -> str:
        try:
            return (self.workdir / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- a client for the tests' own use ---------------------------------------------------------

    def client(self, user: str, password: str) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        con = imaplib.IMAP4_SSL(self.HOST, self.imaps_port, ssl_context=ctx, timeout=10)
        plain = f"\0{user}\0{password}".encode()  # AUTHENTICATE PLAIN: UTF-8 passwords too
        con.authenticate("PLAIN", lambda _: plain)
        return con

    def url(self, user: str, mailbox: str = "INBOX", *, starttls: bool = False) -> str:
        if starttls:
            return f"imap://{user}@{self.HOST}:{self.imap_port}/{mailbox}"
        return f"imaps://{user}@{self.HOST}:{self.imaps_port}/{mailbox}"
