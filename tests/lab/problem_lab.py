"""A real Postfix that runs into the problems ``mtalens diagnose`` looks for, on loopback only.

``ProblemLab`` is a :class:`PostfixLab` with more of a real site around it, each piece chosen so
that Postfix itself logs the failure (nothing is written into the log by hand):

* two more smtpd(8) listeners on 127.0.0.1 (master.cf ``-o`` overrides, master(5)): a public
  MX port that does not trust ``mynetworks`` (``reject_unauth_destination`` answers "Relay
  access denied" to a client sending to a foreign domain), and a submission port with Cyrus
  SASL (``smtpd_sasl_type = cyrus``, a sasldb made with ``saslpasswd2``, SASL_README "Cyrus
  SASL configuration") and STARTTLS offered but not required, so AUTH works in clear text too
  (the ``smtpd_tls_auth_only`` problem). Clients connect from other 127.0.0.0/8 addresses
  (``source_address``), so each plays a different client IP;
* fake MX hosts on other loopback addresses (``fake_mx.FakeMX(host=...)``), reached through
  transport(5) entries per destination domain: one offering STARTTLS with a self-signed
  certificate behind ``smtp_tls_security_level = verify``, one without STARTTLS behind
  ``encrypt``, one greeting with our own ``myhostname`` (a mail loop), one that rate-limits,
  one that answers DATA slowly;
* DNS for the ``.test`` destinations (RFC 6761 reserved name): a transport ``smtpdns`` that is
  smtp(8) with DNS lookups on and chrooted into the queue directory. A chrooted resolver reads
  ``<queue_directory>/etc/resolv.conf`` (the reason Debian copies resolv.conf into
  /var/spool/postfix/etc), which names only the lab's nsd on a loopback address, port 53: the
  machine's resolver is never asked. MX records point at loopback addresses with nothing on
  port 25 (Connection refused) or at a :class:`Blackhole` (connection timed out); a name
  outside the served zone is refused by nsd (a temporary lookup failure) and a missing name
  in it is NXDOMAIN.

Every per-run address is in one random ``127.N.M.0/24`` block (``LoopbackBlock``), so two runs
on one machine (engineers run tests concurrently) do not compete for port 25 or 53.

Pitfalls met (Debian 12, Postfix 3.7.11, gVisor), in addition to postfix_lab.py's:

8. smtp(8) with TLS wants the tlsmgr(8) service (master.cf), or it logs warnings and waits.
9. A chrooted smtp(8) needs ``etc/services`` in the chroot to turn the service name ``smtp``
   into port 25 for an MX nexthop (``getservbyname``), as Debian's postfix init script copies.
10. A listener with a full accept queue drops further SYNs (Linux ``tcp_conn_request``): with
    ``listen(0)`` and one connection never accepted, connecting clients time out, which gives
    smtp(8)'s "Connection timed out" on loopback without a firewall.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import random
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .dns_server import NsdServer
from .fake_mx import free_loopback_port
from .postfix_lab import LabError, LabTimings, PostfixLab

SASL_PASSWORD: Final = "lab-secret-1"
SASL_USERS: Final = ("alice", "scanner")  # in realm example.net


@dataclass(frozen=True, slots=True)
class LoopbackBlock:
    """One ``127.N.M.0/24`` block of loopback addresses for a run: ``block.ip(7)``."""

    prefix: str  # "127.N.M"

    @classmethod
    def random(cls) -> LoopbackBlock:
        # Avoid 127.0.0.0/16 (127.0.0.1 and 127.0.0.53 are commonly in use).
        return cls(f"127.{random.randint(10, 250)}.{random.randint(0, 255)}")

    def ip(self, host: int) -> str:
        return f"{self.prefix}.{host}"


# Host numbers inside the block (what each address plays).
REFUSED_HOSTS: Final = (2, 3, 4)  # nothing listens on port 25: Connection refused
BLACKHOLE_HOSTS: Final = (6, 7)  # accept queue full: connection timed out
TLS_MX: Final = 21  # fake MX offering STARTTLS with a self-signed certificate
PLAIN_MX: Final = 22  # fake MX without STARTTLS, behind smtp_tls_security_level = encrypt
RATE_MX: Final = 28  # fake MX for rate-limited destinations
LOOP_MX: Final = 31  # fake MX on port 25 greeting with our own hostname (MX of loop.test)
SLOW_MX: Final = 32  # fake MX answering DATA slowly
DNS_HOST: Final = 53  # nsd, port 53
CLIENT_BRUTE: Final = 66  # SASL password guessing
CLIENT_CLEAR: Final = 44  # a device logging in without TLS
CLIENT_TLS: Final = 23  # a user who does STARTTLS first
CLIENT_PROBE: Final = 90  # an open-relay prober
CLIENT_BADTLS: Final = 201  # a client that fails the TLS handshake


def self_signed_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and key for ``name`` (PEM files), made with cryptography."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o644)  # smtpd(8) reads it as root before dropping privileges anyway
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


class Blackhole:
    """A TCP listener on ``host:port`` whose accept queue is full (pitfall 10)."""

    def __init__(self, host: str, port: int = 25) -> None:
        self.host, self.port = host, port
        self._listener: socket.socket | None = None
        self._filler: socket.socket | None = None

    def start(self) -> Blackhole:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(0)
        self._listener = listener
        self._filler = socket.create_connection((self.host, self.port), timeout=5)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect((self.host, self.port))
        except TimeoutError:
            return self
        finally:
            probe.close()
        self.stop()
        raise LabError(f"{self.host}:{self.port} accepted a connection: not a black hole here")

    def stop(self) -> None:
        for sock in (self._filler, self._listener):
            if sock is not None:
                sock.close()
        self._filler = self._listener = None


class LoopbackNsd(NsdServer):
    """tests/lab/dns_server.py's nsd, on a chosen loopback address and port 53 (a stub
    resolver's resolv.conf names no port)."""

    def __init__(self, workdir: Path, zones: dict[str, str], *, address: str) -> None:
        super().__init__(workdir, zones)
        self.address = address

    def _write_config(self) -> Path:
        conf = super()._write_config()
        text = conf.read_text(encoding="utf-8").replace(
            "ip-address: 127.0.0.1", f"ip-address: {self.address}"
        )
        conf.write_text(text, encoding="utf-8")
        return conf

    def _answers(self) -> bool:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        query = dns.message.make_query(next(iter(self.zones)) + ".", "SOA")
        try:
            response = dns.query.udp(query, self.address, port=self.port, timeout=0.2)
        except (dns.exception.Timeout, OSError):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    def start(self) -> LoopbackNsd:
        import time

        self.port = 53
        conf = self._write_config()
        log = self.workdir / "nsd.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise LabError(f"nsd did not start on {self.address}:53:\n{log.read_text()}")


def zone_text(block: LoopbackBlock) -> str:
    """The ``test.`` zone (RFC 6761): MX hosts with nothing (or a black hole) on port 25."""
    lines = [
        "$ORIGIN test.",
        "$TTL 300",
        "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300",
        "@ IN NS ns.test.",
        f"ns IN A {block.ip(DNS_HOST)}",
    ]
    names = {
        "north": REFUSED_HOSTS[0],
        "south": REFUSED_HOSTS[1],
        "east": REFUSED_HOSTS[2],
        "west": BLACKHOLE_HOSTS[0],
        "harbour": BLACKHOLE_HOSTS[1],
        "loop": LOOP_MX,
    }
    for name, host in names.items():
        lines += [f"{name} IN MX 10 mx.{name}.test.", f"mx.{name} IN A {block.ip(host)}"]
    return "\n".join(lines) + "\n"


# Destinations of the DNS transport: (domain, what happens).
DNS_DESTINATIONS: Final = {
    "north.test": "refused",
    "south.test": "refused",
    "east.test": "refused",
    "west.test": "timeout",
    "harbour.test": "timeout",
    "gmial.test": "nxdomain",  # not in the zone: NXDOMAIN from an authoritative server
    "broken-dns.example": "servfail",  # outside nsd's zones: REFUSED, a temporary failure
    # The MX greets with our own myhostname: smtp(8) reports a mail loop. Only for a nexthop
    # found by MX lookup: a [bracketed] nexthop got no loop check here (postfix_lab pitfall 5).
    "loop.test": "loop",
}


class ProblemLab(PostfixLab):
    """PostfixLab plus SASL, more listeners, TLS policies, DNS via nsd; see the docstring."""

    def __init__(
        self,
        tmpdir: Path,
        *,
        mx_port: int,
        block: LoopbackBlock,
        transports: Mapping[str, str],
        timings: LabTimings | None = None,
    ) -> None:
        super().__init__(tmpdir, mx_port=mx_port, timings=timings or LabTimings())
        self.block: Final = block
        self.extra_transports: Final = dict(transports)
        self.mx_listener_port: Final = free_loopback_port()
        self.submission_port: Final = free_loopback_port()
        self.tls_dir: Final = self.config_dir / "tls"
        self.sasl_dir: Final = self.config_dir / "sasl"

    def main_cf(self) -> dict[str, str]:
        cfg = super().main_cf()
        cfg.update(
            {
                # Short connect timeout: the black-holed MX hosts time out quickly (postconf(5)).
                "smtp_connect_timeout": "2s",
                # Cyrus SASL for smtpd, enabled per listener in master.cf (SASL_README).
                "smtpd_sasl_type": "cyrus",
                "smtpd_sasl_path": "smtpd",
                "cyrus_sasl_config_path": str(self.sasl_dir),
                "smtpd_tls_cert_file": str(self.tls_dir / f"{self.hostname}.crt"),
                "smtpd_tls_key_file": str(self.tls_dir / f"{self.hostname}.key"),
                "smtpd_tls_loglevel": "1",
                "smtp_tls_loglevel": "1",
            }
        )
        return cfg

    def master_cf(self) -> str:
        dns_opts = (
            "-o smtp_dns_support_level=enabled -o disable_dns_lookups=no -o smtp_host_lookup=dns"
        )
        rows = (
            # A public MX port: mynetworks not trusted (postconf(5) smtpd_relay_restrictions).
            f"127.0.0.1:{self.mx_listener_port} inet n - n - - smtpd"
            " -o smtpd_relay_restrictions=reject_unauth_destination",
            # Submission with SASL, STARTTLS offered, AUTH allowed without it (the problem).
            f"127.0.0.1:{self.submission_port} inet n - n - - smtpd"
            " -o syslog_name=postfix/submission -o smtpd_sasl_auth_enable=yes"
            " -o smtpd_tls_security_level=may"
            " -o smtpd_relay_restrictions=permit_sasl_authenticated,reject_unauth_destination",
            "tlsmgr unix - - n 1000? 1 tlsmgr",  # pitfall 8
            # DNS-using smtp(8), chrooted so its resolver reads <queue_dir>/etc/resolv.conf.
            f"smtpdns unix - - y - - smtp {dns_opts}",
            "smtpverify unix - - n - - smtp -o smtp_tls_security_level=verify",
            "smtpencrypt unix - - n - - smtp -o smtp_tls_security_level=encrypt",
        )
        return super().master_cf() + "\n".join(rows) + "\n"

    def write_config(self) -> None:
        super().write_config()
        self_signed_cert(self.tls_dir, self.hostname)
        self._write_sasl()
        self._write_chroot_etc()
        transport = self.config_dir / "transport"
        extra = "".join(f"{d} {nexthop}\n" for d, nexthop in self.extra_transports.items())
        transport.write_text(transport.read_text() + extra)
        self.postmap(transport)

    def _write_sasl(self) -> None:
        """A sasldb with the lab users, readable by smtpd(8) (runs as mail_owner)."""
        saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
        if not os.path.exists(saslpasswd2):
            raise LabError("saslpasswd2 not found: install Debian's sasl2-bin package")
        self.sasl_dir.mkdir(parents=True, exist_ok=True)
        db = self.sasl_dir / "sasldb2"
        for user in SASL_USERS:
            subprocess.run(
                [saslpasswd2, "-f", str(db), "-c", "-p", "-u", "example.net", user],
                input=SASL_PASSWORD,
                text=True,
                check=True,
                capture_output=True,
                timeout=30,
            )
        owner = pwd.getpwnam("postfix")
        os.chown(db, owner.pw_uid, owner.pw_gid)
        os.chmod(db, 0o600)
        # Cyrus SASL application config for the "smtpd" service (SASL_README, sasldb auxprop).
        (self.sasl_dir / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\n"
            "auxprop_plugin: sasldb\n"
            "mech_list: PLAIN LOGIN\n"
            f"sasldb_path: {db}\n"
        )

    def _write_chroot_etc(self) -> None:
        """<queue_dir>/etc for the chrooted smtpdns: only the lab's nsd as resolver."""
        etc = self.queue_dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {self.block.ip(DNS_HOST)}\noptions timeout:1 attempts:1\n"
        )
        for name in ("services", "localtime"):  # pitfall 9; localtime for log timestamps
            src = Path("/etc") / name
            if src.exists():
                shutil.copyfile(src, etc / name)
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        (etc / "nsswitch.conf").write_text("hosts: dns\nservices: files\n")

    # -- clients -------------------------------------------------------------------------

    def client(self, port: int, source_host: int) -> smtplib.SMTP:
        """An SMTP session to one of the lab's listeners from ``block.ip(source_host)``."""
        smtp = smtplib.SMTP(
            "127.0.0.1",
            port,
            local_hostname="client.example.net",
            source_address=(self.block.ip(source_host), 0),
            timeout=30,
        )
        smtp.ehlo()
        return smtp


class Services:
    """The lab's helpers around Postfix: fake MX hosts, black holes, nsd; one ``with``."""

    def __init__(self, parts: list[object]) -> None:
        self.parts = parts
        self._started: list[object] = []

    def __enter__(self) -> Services:
        try:
            for part in self.parts:
                part.start()  # type: ignore[attr-defined]
                self._started.append(part)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for part in reversed(self._started):
            part.stop()  # type: ignore[attr-defined]
        self._started.clear()


# --------------------------------------------------------------------------------------------
# The scenario: what is sent, from where, to whom; shared by tests and bench/ scripts.

SENDER: Final = "news@example.net"
SLOW_DATA_SECONDS: Final = 12.0
TIMINGS: Final = LabTimings(
    queue_run_delay=3,
    minimal_backoff_time=3,
    maximal_backoff_time=6,
    maximal_queue_lifetime=30,
    bounce_queue_lifetime=30,
    delay_warning_time=10,
)
# Recipients through the main fake MX (default transport); the local part picks the reply.
MAIN_RECIPIENTS: Final = (
    *(f"ok{i}@{d}" for i, d in enumerate(("example.com", "example.org") * 4, start=1)),
    "unknown1@example.com",
    "unknown2@example.org",
    "unknown3@customer-a.example",
    "full1@example.com",
    "full2@customer-b.example",
    "listed1@corp-a.example",
    "listed2@corp-b.example",
    "listed3@corp-c.example",
    "barracuda1@corp-d.example",
    "barracuda2@corp-e.example",
    "spf1@small-isp.example",
    "dmarc1@mail-b.example",
    "dkim1@bank.example",
    "relaydenied1@far-a.example",
    "relaydenied2@far-b.example",
    "grey1@grey.example",
    "grey2@grey.example",
    "noptr1@ptr-check.example",
)
RATE_RECIPIENTS: Final = (
    "ratelimit1@bulk-a.example",
    "ratelimit2@bulk-a.example",
    "serverbusy1@bulk-b.example",
)
TLS_RECIPIENTS: Final = ("ok@secure-tls.example", "ok@needs-tls.example")
SLOW_RECIPIENTS: Final = tuple(f"slow{i}@slow.example" for i in range(1, 6))
DNS_RECIPIENTS: Final = tuple(
    f"{'team' if kind == 'loop' else 'accounts'}@{d}" for d, kind in DNS_DESTINATIONS.items()
)
BRUTE_USERS: Final = ("admin", "info", "test", "sales", "office", "support")
BRUTE_SESSIONS: Final = 3  # of 4 AUTH attempts each (smtpd_soft_error_limit is 10)
RELAY_PROBES: Final = (
    "victim0@elsewhere.example",
    "victim1@elsewhere.example",
    "victim2@elsewhere.example",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProblemRun:
    log: str
    dsns: list[bytes]
    block: LoopbackBlock
    queue_ids: dict[str, str]  # recipient -> queue id
    mx_ports: dict[str, int]  # role -> fake MX port ("main", "tls", ...)
    lab_paths: dict[str, str]  # path in the log -> what it stands for (for anonymising)


def _sasl_fail(smtp: smtplib.SMTP, mechanism: str, user: str) -> int:
    import base64

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    if mechanism == "PLAIN":  # RFC 4616: authzid NUL authcid NUL password
        code, _ = smtp.docmd("AUTH", "PLAIN " + b64(f"\0{user}@example.net\0guess-{user}"))
        return code
    # AUTH LOGIN (draft-murchison-sasl-login): user name, then password, base64 each
    code, _ = smtp.docmd("AUTH", "LOGIN " + b64(f"{user}@example.net"))
    if code == 334:
        code, _ = smtp.docmd(b64(f"guess-{user}"))
    return code


def _sasl_login(smtp: smtplib.SMTP, user: str) -> None:
    import base64

    token = base64.b64encode(f"\0{user}@example.net\0{SASL_PASSWORD}".encode()).decode()
    code, reply = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise LabError(f"AUTH PLAIN for {user} refused: {code} {reply!r}")


def _message(rcpt: str, subject: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@client.example.net>\r\n\r\nlab\r\n"
    ).encode()


def client_sessions(lab: ProblemLab) -> None:
    """What clients do to the lab's listeners: relay probes, SASL guessing, logins."""
    for rcpt in RELAY_PROBES:  # open-relay probes on the public MX port
        with lab.client(lab.mx_listener_port, CLIENT_PROBE) as s:
            s.mail("spam@probe.example")
            code, _ = s.rcpt(rcpt)
            if code != 554:
                raise LabError(f"relay probe to {rcpt} answered {code}")
    users = iter(BRUTE_USERS * BRUTE_SESSIONS * 4)
    for session in range(BRUTE_SESSIONS):  # password guessing, PLAIN and LOGIN in turn
        with lab.client(lab.submission_port, CLIENT_BRUTE) as s:
            for attempt in range(4):
                mech = "PLAIN" if (session + attempt) % 2 else "LOGIN"
                if _sasl_fail(s, mech, next(users)) != 535:
                    raise LabError("a guessed password was accepted")
    with lab.client(lab.submission_port, CLIENT_CLEAR) as s:  # a device: AUTH in clear text
        _sasl_login(s, "scanner")
        s.sendmail("scanner@example.net", ["ok-scan@example.com"], _message("ok-scan", "scan 1"))
    with lab.client(lab.submission_port, CLIENT_TLS) as s:  # a user: STARTTLS, then AUTH
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo()
        _sasl_login(s, "alice")
        s.sendmail("alice@example.net", ["ok-alice@example.org"], _message("ok-alice", "alice 1"))
    # A client that says STARTTLS and then speaks no TLS: smtpd's handshake fails.
    with socket.create_connection(
        ("127.0.0.1", lab.submission_port),
        timeout=10,
        source_address=(lab.block.ip(CLIENT_BADTLS), 0),
    ) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO scanner.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\n")
        f.readline()
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):  # smtpd drops the failed session
            f.read()


def run_problems(tmpdir: Path, block: LoopbackBlock, *, timeout: float = 150.0) -> ProblemRun:
    """Start everything, make every problem happen, wait until the queue is empty."""
    import re
    import time

    from .fake_mx import FakeMX

    tls_cert, tls_key = self_signed_cert(tmpdir / "mx-tls", "mx.secure-tls.example")
    main = FakeMX()
    mxs = {
        "tls": FakeMX(
            host=block.ip(TLS_MX),
            hostname="mx.secure-tls.example",
            tls_context=server_tls_context(tls_cert, tls_key),
        ),
        "plain": FakeMX(host=block.ip(PLAIN_MX), hostname="mx.needs-tls.example"),
        "rate": FakeMX(host=block.ip(RATE_MX), hostname="mx.bulk.example"),
        "loop": FakeMX(25, host=block.ip(LOOP_MX), hostname="mx1.example.net"),
        "slow": FakeMX(
            host=block.ip(SLOW_MX), hostname="mx.slow.example", slow_data_seconds=SLOW_DATA_SECONDS
        ),
    }
    nexthop = {role: f"[{mx.host}]:{mx.port}" for role, mx in mxs.items()}
    transports = {
        "bulk-a.example": f"smtp:{nexthop['rate']}",
        "bulk-b.example": f"smtp:{nexthop['rate']}",
        "secure-tls.example": f"smtpverify:{nexthop['tls']}",
        "needs-tls.example": f"smtpencrypt:{nexthop['plain']}",
        "slow.example": f"smtp:{nexthop['slow']}",
        **{d: "smtpdns:" for d in DNS_DESTINATIONS},
    }
    nsd = LoopbackNsd(tmpdir / "nsd", {"test": zone_text(block)}, address=block.ip(DNS_HOST))
    holes = [Blackhole(block.ip(h)) for h in BLACKHOLE_HOSTS]
    lab = ProblemLab(tmpdir, mx_port=main.port, block=block, transports=transports, timings=TIMINGS)
    queue_ids: dict[str, str] = {}
    with Services([main, *mxs.values(), nsd, *holes]), lab:
        client_sessions(lab)
        for rcpt in (
            *MAIN_RECIPIENTS,
            *RATE_RECIPIENTS,
            *TLS_RECIPIENTS,
            *DNS_RECIPIENTS,
            *SLOW_RECIPIENTS,
        ):
            local = rcpt.split("@")[0]
            result = lab.send(
                SENDER,
                [rcpt],
                f"lab {local}",
                f"to {rcpt}\n",
                {"Message-ID": f"<lab-{rcpt.replace('@', '.')}@example.net>"},
            )
            if result.queue_id is None:
                raise LabError(f"{rcpt} refused by the lab: {result.refused}")
            queue_ids[rcpt] = result.queue_id
        time.sleep(0.5)
        expect = [rf"{queue_ids[r]}: to=<{re.escape(r)}>.*status=sent" for r in SLOW_RECIPIENTS]
        lab.wait_until_idle(timeout=timeout, expect=expect, settle=2.0)
        log, dsns = lab.log_text(), lab.maildir_messages()
    return ProblemRun(
        log=log,
        dsns=dsns,
        block=block,
        queue_ids=queue_ids,
        mx_ports={"main": main.port, **{r: m.port for r, m in mxs.items()}},
        lab_paths={
            str(lab.log_path): "/var/log/mail.log",
            str(lab.config_dir): "/etc/postfix",
            str(lab.queue_dir): "/var/spool/postfix",
            str(lab.data_dir): "/var/lib/postfix",
            str(lab.root): "/var/lib/postfix-lab",
        },
    )
