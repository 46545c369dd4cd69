"""`mtalens probe`: test a mail server's ports the way the troubleshooting guides do by hand
(``telnet host 25``, ``openssl s_client -starttls smtp -connect host:587``, ``openssl s_client
-connect host:465``), and judge what it answered.

Per port, one session: connect (timed), the greeting, EHLO, STARTTLS (or implicit TLS from the
first byte on port 465, RFC 8314 section 3.3) and EHLO again, then the open-relay test, which
never sends a message: ``MAIL FROM`` an outside address, ``RCPT TO`` an outside address, ``RSET``,
``QUIT`` (no DATA, RFC 5321 section 4.1.1.5). The TLS session of the first run does not verify
the certificate, so that everything about it can be recorded; a second short session does the
handshake the way a verifying client does (system CAs or ``--cafile``, the host name) and records
whether it passed. Further short sessions pin each TLS version to learn which ones the server
accepts. Every command sent and every reply is kept as a :class:`Step`.

It connects only to the address ``HOST`` resolves to (resolved once) and the ports asked for;
the reverse-DNS lookup of that address goes to the system resolver. The judging is a pure
function of the observations (:func:`judge`), with the clock passed in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from mtalens.parsers.certificate import CertificateInfo, parse_certificate
from mtalens.parsers.errors import ParseError
from mtalens.parsers.smtp import Ehlo, Reply, banner_hostname, is_hostname, parse_ehlo, parse_reply
from mtalens.pipeline.diagnose import Evidence, Finding, Severity
from mtalens.pipeline.exitcodes import ExitCode, InputError

DEFAULT_PORTS: Final = (25, 465, 587)
IMPLICIT_TLS_PORTS: Final = frozenset({465})  # RFC 8314 section 7.3: "submissions"
SUBMISSION_PORTS: Final = frozenset({465, 587})  # RFC 8314, RFC 6409
DEFAULT_RELAY_FROM: Final = "mtalens-relay-test@example.org"  # RFC 2606 names: outside anyone
DEFAULT_RELAY_TO: Final = "mtalens-relay-test@example.com"
EXPIRY_WARNING_DAYS: Final = 14
MAX_LINE: Final = 4096  # RFC 5321 4.5.3.1.5: reply lines are at most 512 octets; be lenient
MAX_LINES: Final = 200
TLS_VERSIONS: Final = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
OLD_TLS: Final = frozenset({"SSLv3", "TLSv1", "TLSv1.1"})  # RFC 8996


class ProbeError(InputError):
    """A bad host or port, or a host that does not resolve: nothing was probed."""


class Mode(StrEnum):
    STARTTLS = "starttls"
    IMPLICIT = "implicit-tls"


class Outcome(StrEnum):
    OK = "ok"  # the session ran (whatever the server answered)
    REFUSED = "refused"  # connection refused (RST)
    TIMEOUT = "timeout"  # no answer to the SYN, or no greeting in time
    UNREACHABLE = "unreachable"  # no route, network down
    ERROR = "error"  # the connection broke, or the server spoke no SMTP


@dataclass(frozen=True, slots=True, kw_only=True)
class PortSpec:
    port: int
    mode: Mode


def parse_ports(text: str) -> tuple[PortSpec, ...]:
    """``25,465,587`` or ``2525/starttls,4650/tls``: ports with the TLS mode; 465 is implicit
    TLS unless said otherwise."""
    specs: list[PortSpec] = []
    for item in text.split(","):
        item = item.strip()
        number, _, mode = item.partition("/")
        if not number.isdigit() or not 0 < int(number) < 65536:
            raise ProbeError(f"bad port {item!r}: ports are numbers 1-65535, e.g. 25,465,587")
        port = int(number)
        if mode in ("", "auto"):
            m = Mode.IMPLICIT if port in IMPLICIT_TLS_PORTS else Mode.STARTTLS
        elif mode in ("tls", "implicit"):
            m = Mode.IMPLICIT
        elif mode == "starttls":
            m = Mode.STARTTLS
        else:
            raise ProbeError(f"bad port mode {mode!r} in {item!r}: use PORT/tls or PORT/starttls")
        if all(s.port != port for s in specs):
            specs.append(PortSpec(port=port, mode=m))
    if not specs:
        raise ProbeError("no port to probe")
    return tuple(specs)


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a valid host name (no lookup yet)."""
    bare = host.strip("[]") if host.startswith("[") else host
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(bare))
    if not is_hostname(host):
        raise ProbeError(f"bad host {host!r}: give a host name or an IP address")
    return host.rstrip(".")


def is_mailbox(address: str) -> bool:
    """``local@domain`` with a host-name domain and no characters that break an SMTP line."""
    local, at, domain = address.rpartition("@")
    if not at or not local or any(c in address for c in " <>\r\n\t\x00"):
        return False
    return is_hostname(domain) and "." in domain


def check_cafile(path: str) -> None:
    """A usable --cafile, or a one-line error before anything is probed."""
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot use --cafile {path}: {exc}") from exc


def resolve(host: str) -> str:
    """The one address every session of a probe goes to."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    addresses = [str(i[4][0]) for i in infos]
    # IPv4 first: what most sending hosts reach (and what Postfix's smtp(8) prefers by default)
    return sorted(addresses, key=lambda a: ":" in a)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One exchange: what was sent (None for the greeting, or a TLS handshake's note) and what
    came back (None when nothing did; ``note`` says why)."""

    sent: str | None
    reply: Reply | None
    note: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "code": self.reply.code if self.reply else None,
            "enhanced": self.reply.enhanced if self.reply else None,
            "reply": list(self.reply.lines) if self.reply else None,
            "note": self.note,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsInfo:
    version: str | None
    cipher: str | None
    bits: int | None
    certificate: CertificateInfo | None
    name: str  # the name the certificate was checked against
    name_matches: bool | None
    verified: bool | None  # None: the verifying handshake could not be made
    verify_error: str | None
    versions: dict[str, bool | None] = field(default_factory=dict)  # None: could not test
    trailing_plaintext: bool = False  # bytes after "220 ready" (a STARTTLS injection)

    def as_dict(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "version": self.version,
            "cipher": self.cipher,
            "bits": self.bits,
            "name": self.name,
            "name_matches": self.name_matches,
            "verified": self.verified,
            "verify_error": self.verify_error,
            "versions": self.versions,
            "trailing_plaintext": self.trailing_plaintext,
            "certificate": None
            if cert is None
            else {
                "subject": cert.subject,
                "issuer": cert.issuer,
                "dns_names": list(cert.dns_names),
                "ip_addresses": list(cert.ip_addresses),
                "not_before": cert.not_before.isoformat(),
                "not_after": cert.not_after.isoformat(),
                "self_signed": cert.self_signed,
                "key": cert.key,
                "serial": cert.serial,
                "sha256": cert.sha256,
            },
        }


class Relay(StrEnum):
    REFUSED = "refused"  # RCPT answered 5xx: not an open relay
    ACCEPTED = "accepted"  # RCPT answered 2xx without authentication: an open relay
    INCONCLUSIVE = "inconclusive"  # 4xx, MAIL refused, or the session ended first
    NOT_TESTED = "not-tested"


@dataclass(frozen=True, slots=True, kw_only=True)
class PortProbe:
    port: int
    mode: Mode
    outcome: Outcome
    error: str | None = None
    connect_seconds: float | None = None
    banner: Reply | None = None
    banner_host: str | None = None
    ehlo: Ehlo | None = None  # before TLS (None on an implicit-TLS port)
    ehlo_tls: Ehlo | None = None
    tls: TlsInfo | None = None
    tls_error: str | None = None
    relay: Relay = Relay.NOT_TESTED
    relay_reply: Reply | None = None
    steps: tuple[Step, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        def ext(e: Ehlo | None) -> dict[str, Any] | None:
            if e is None:
                return None
            return {
                "hostname": e.hostname,
                "extensions": {k: v for k, v in e.extensions},
                "auth": list(e.auth),
                "size": e.size,
            }

        return {
            "port": self.port,
            "mode": str(self.mode),
            "outcome": str(self.outcome),
            "error": self.error,
            "connect_seconds": None
            if self.connect_seconds is None
            else round(self.connect_seconds, 4),
            "banner": self.banner.show() if self.banner else None,
            "banner_host": self.banner_host,
            "ehlo": ext(self.ehlo),
            "ehlo_tls": ext(self.ehlo_tls),
            "tls": self.tls.as_dict() if self.tls else None,
            "tls_error": self.tls_error,
            "relay": str(self.relay),
            "steps": [s.as_dict() for s in self.steps],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReport:
    host: str
    address: str
    rdns: tuple[str, ...] | None  # None: not looked up, or the lookup failed
    ports: tuple[PortProbe, ...]
    findings: tuple[Finding, ...]
    outbound: bool = False

    def exit_code(self) -> ExitCode:
        """1 when something is wrong with what answered (or, with --outbound, when port 25
        cannot be reached); 3 when the only findings are ports that could not be probed."""
        if not self.findings:
            return ExitCode.OK
        if self.outbound:
            return ExitCode.FINDINGS
        if any(f.problem not in UNREACHABLE_PROBLEMS for f in self.findings):
            return ExitCode.FINDINGS
        return ExitCode.PARTIAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "address": self.address,
            "rdns": list(self.rdns) if self.rdns is not None else None,
            "outbound": self.outbound,
            "ports": [p.as_dict() for p in self.ports],
            "findings": [f.as_dict() for f in self.findings],
        }


# --------------------------------------------------------------------------------------------
# The SMTP client: a line reader with limits, and the session.


class _Broken(Exception):
    """The session cannot go on (connection closed, timed out, not SMTP)."""


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket = sock
        self.buffer = b""

    def readline(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise _Broken(f"a reply line longer than {MAX_LINE} bytes")
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError as exc:
                raise _Broken("timed out waiting for a reply") from exc
            except OSError as exc:
                raise _Broken(f"connection broken: {exc}") from exc
            if not chunk:
                raise _Broken("the server closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self) -> Reply:
        lines: list[str] = []
        while True:
            line = self.readline()
            lines.append(line)
            if len(line) < 4 or line[3] != "-" or len(lines) >= MAX_LINES:
                break
        try:
            return parse_reply(lines)
        except ParseError as exc:
            raise _Broken(f"not an SMTP reply ({exc})") from exc

    def send(self, command: str) -> None:
        try:
            self.sock.sendall(command.encode("ascii") + b"\r\n")
        except OSError as exc:
            raise _Broken(f"connection broken: {exc}") from exc


def _tls_context(verify: bool, cafile: str | None) -> ssl.SSLContext:
    if verify:
        ctx = ssl.create_default_context(cafile=cafile)
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _pinned_context(version: str) -> ssl.SSLContext | None:
    ctx = _tls_context(False, None)
    # Python warns that TLS 1.0/1.1 are deprecated: testing whether the server still accepts
    # them is the point (RFC 8996)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        v = {
            "TLSv1": ssl.TLSVersion.TLSv1,
            "TLSv1.1": ssl.TLSVersion.TLSv1_1,
            "TLSv1.2": ssl.TLSVersion.TLSv1_2,
            "TLSv1.3": ssl.TLSVersion.TLSv1_3,
        }[version]
        try:
            if version in ("TLSv1", "TLSv1.1"):
                # OpenSSL 3 allows them only at security level 0
                ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = v
            ctx.maximum_version = v
        except (ssl.SSLError, ValueError):
            return None
    return ctx


@dataclass(slots=True)
class _Session:
    """One SMTP session's state while it runs; becomes a PortProbe."""

    host: str
    address: str
    spec: PortSpec
    timeout: float
    helo: str
    steps: list[Step] = field(default_factory=list)
    conn: _Conn | None = None
    tls_sock: ssl.SSLSocket | None = None
    trailing: bool = False

    def connect(self) -> float:
        t0 = time.monotonic()
        sock = socket.create_connection((self.address, self.spec.port), timeout=self.timeout)
        self.conn = _Conn(sock)
        return time.monotonic() - t0

    def read(self, sent: str | None) -> Reply:
        assert self.conn is not None
        t0 = time.monotonic()
        try:
            reply = self.conn.reply()
        except _Broken as exc:
            self.steps.append(Step(sent=sent, reply=None, note=str(exc)))
            raise
        self.steps.append(Step(sent=sent, reply=reply, seconds=time.monotonic() - t0))
        return reply

    def command(self, line: str) -> Reply:
        assert self.conn is not None
        try:
            self.conn.send(line)
        except _Broken as exc:
            self.steps.append(Step(sent=line, reply=None, note=str(exc)))
            raise
        return self.read(line)

    def handshake(self, ctx: ssl.SSLContext, server_name: str | None) -> ssl.SSLSocket:
        assert self.conn is not None
        self.trailing = bool(self.conn.buffer)  # plaintext sent after "220 ready"
        t0 = time.monotonic()
        try:
            # Python sends no SNI for an IP address, and checks it against iPAddress SANs
            tls = ctx.wrap_socket(self.conn.sock, server_hostname=server_name or None)
        except (ssl.SSLError, OSError) as exc:
            self.steps.append(Step(sent=None, reply=None, note=f"TLS handshake failed: {exc}"))
            raise
        self.tls_sock = tls
        self.conn = _Conn(tls)
        self.steps.append(
            Step(
                sent=None,
                reply=None,
                note=f"TLS handshake: {tls.version()} {(tls.cipher() or ('?',))[0]}",
                seconds=time.monotonic() - t0,
            )
        )
        return tls

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.close()
            self.conn = None

    def quit(self) -> None:
        with contextlib.suppress(_Broken):
            self.command("QUIT")
        self.close()


def _connect_failure(exc: OSError) -> tuple[Outcome, str]:
    if isinstance(exc, ConnectionRefusedError):
        return Outcome.REFUSED, "connection refused"
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT, "connection timed out"
    return Outcome.UNREACHABLE, exc.strerror or str(exc)


def _ehlo(session: _Session) -> Ehlo | None:
    reply = session.command(f"EHLO {session.helo}")
    if reply.code != 250:
        session.command(f"HELO {session.helo}")
        return None
    return parse_ehlo(reply)


def _probe_port(
    host: str,
    address: str,
    spec: PortSpec,
    *,
    timeout: float,
    helo: str,
    tls_name: str,
    cafile: str | None,
    relay_from: str,
    relay_to: str,
    relay_test: bool,
    tls_versions: bool,
) -> PortProbe:
    s = _Session(host=host, address=address, spec=spec, timeout=timeout, helo=helo)
    try:
        seconds = s.connect()
    except OSError as exc:
        outcome, why = _connect_failure(exc)
        return PortProbe(port=spec.port, mode=spec.mode, outcome=outcome, error=why)
    result: dict[str, Any] = {"connect_seconds": seconds}
    try:
        if spec.mode is Mode.IMPLICIT:
            try:
                s.handshake(_tls_context(False, None), tls_name)
            except (ssl.SSLError, OSError) as exc:
                result["tls_error"] = str(exc)
                raise _Broken("no TLS on an implicit-TLS port") from exc
        banner = s.read(None)
        result["banner"] = banner
        result["banner_host"] = banner_hostname(banner)
        if banner.code != 220:
            s.quit()
            return PortProbe(port=spec.port, mode=spec.mode, outcome=Outcome.OK, **result,
                             steps=tuple(s.steps))  # fmt: skip
        ehlo = _ehlo(s)
        result["ehlo" if spec.mode is Mode.STARTTLS else "ehlo_tls"] = ehlo
        if spec.mode is Mode.STARTTLS and ehlo is not None and ehlo.has("STARTTLS"):
            reply = s.command("STARTTLS")
            if reply.code == 220:
                try:
                    s.handshake(_tls_context(False, None), tls_name)
                except (ssl.SSLError, OSError) as exc:
                    result["tls_error"] = str(exc)
                    raise _Broken("the TLS handshake after STARTTLS failed") from exc
                result["ehlo_tls"] = _ehlo(s)
            else:
                result["tls_error"] = f"STARTTLS answered {reply.code}"
        if s.tls_sock is not None:
            result["tls"] = _tls_facts(s, tls_name)
        if relay_test:
            result["relay"], result["relay_reply"] = _relay_test(s, relay_from, relay_to)
        s.quit()
    except _Broken as exc:
        s.close()
        result.setdefault("relay", Relay.NOT_TESTED)
        if "tls" not in result and s.tls_sock is not None:
            result["tls"] = _tls_facts(s, tls_name)
        return PortProbe(port=spec.port, mode=spec.mode, outcome=Outcome.ERROR, error=str(exc),
                         **result, steps=tuple(s.steps))  # fmt: skip
    tls: TlsInfo | None = result.get("tls")
    steps = list(s.steps)
    if tls is not None:
        verified, error = _verify(host, address, spec, timeout, helo, tls_name, cafile, steps)
        versions = _versions(host, address, spec, timeout, helo, tls_name) if tls_versions else {}
        if tls.version and tls.version not in versions:
            versions[tls.version] = True
        result["tls"] = _replace_tls(tls, verified=verified, verify_error=error, versions=versions)
    return PortProbe(port=spec.port, mode=spec.mode, outcome=Outcome.OK, **result,
                     steps=tuple(steps))  # fmt: skip


def _replace_tls(tls: TlsInfo, **changes: Any) -> TlsInfo:
    from dataclasses import replace

    return replace(tls, **changes)


def _tls_facts(s: _Session, tls_name: str) -> TlsInfo:
    tls = s.tls_sock
    assert tls is not None
    der = tls.getpeercert(binary_form=True)
    cert = None
    if der:
        with contextlib.suppress(ParseError):
            cert = parse_certificate(der)
    cipher = tls.cipher()
    return TlsInfo(
        version=tls.version(),
        cipher=cipher[0] if cipher else None,
        bits=cipher[2] if cipher else None,
        certificate=cert,
        name=tls_name,
        name_matches=cert.matches(tls_name) if cert is not None else None,
        verified=None,
        verify_error=None,
        trailing_plaintext=s.trailing,
    )


def _tls_session(
    host: str, address: str, spec: PortSpec, timeout: float, helo: str, name: str,
    ctx: ssl.SSLContext,
) -> _Session:  # fmt: skip
    """Connect and get to a TLS session (raises ssl.SSLError, OSError or _Broken)."""
    s = _Session(host=host, address=address, spec=spec, timeout=timeout, helo=helo)
    s.connect()
    try:
        if spec.mode is Mode.STARTTLS:
            s.read(None)
            s.command(f"EHLO {helo}")
            if s.command("STARTTLS").code != 220:
                raise _Broken("STARTTLS refused")
        s.handshake(ctx, name)
    except BaseException:
        s.close()
        raise
    return s


def _verify(
    host: str, address: str, spec: PortSpec, timeout: float, helo: str, name: str,
    cafile: str | None, steps: list[Step],
) -> tuple[bool | None, str | None]:  # fmt: skip
    """A handshake as a verifying client makes it: the chain to a trusted CA, the name."""
    ctx = _tls_context(True, cafile)
    try:
        s = _tls_session(host, address, spec, timeout, helo, name, ctx)
    except ssl.SSLCertVerificationError as exc:
        steps.append(Step(sent=None, reply=None, note=f"verifying handshake: {exc.verify_message}"))
        return False, exc.verify_message or str(exc)
    except (ssl.SSLError, OSError, _Broken) as exc:
        steps.append(Step(sent=None, reply=None, note=f"verifying handshake not made: {exc}"))
        return None, None
    steps.append(Step(sent=None, reply=None, note="verifying handshake: certificate verified"))
    if spec.mode is Mode.IMPLICIT:
        with contextlib.suppress(_Broken):
            s.read(None)
    s.quit()
    return True, None


def _versions(
    host: str, address: str, spec: PortSpec, timeout: float, helo: str, name: str
) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for version in TLS_VERSIONS:
        ctx = _pinned_context(version)
        if ctx is None:
            out[version] = None
            continue
        try:
            s = _tls_session(host, address, spec, timeout, helo, name, ctx)
        except ssl.SSLError:
            out[version] = False
            continue
        except (OSError, _Broken):
            out[version] = None
            continue
        s.close()
        out[version] = True
    return out


def _relay_test(s: _Session, sender: str, rcpt: str) -> tuple[Relay, Reply | None]:
    reply = s.command(f"MAIL FROM:<{sender}>")
    if reply.code != 250:
        return Relay.INCONCLUSIVE, reply
    reply = s.command(f"RCPT TO:<{rcpt}>")
    s.command("RSET")  # never DATA: nothing is sent
    if reply.code in (250, 251):
        return Relay.ACCEPTED, reply
    if 500 <= reply.code < 600:
        return Relay.REFUSED, reply
    return Relay.INCONCLUSIVE, reply


def reverse_dns(address: str, timeout: float) -> tuple[str, ...] | None:
    """PTR names of ``address`` by the system resolver, or None (no answer within timeout)."""
    result: list[tuple[str, ...]] = []

    def lookup() -> None:
        try:
            name, aliases, _ = socket.gethostbyaddr(address)
        except OSError:
            return
        result.append(tuple(n.rstrip(".").lower() for n in (name, *aliases)))

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else None


def probe(
    host: str,
    ports: Sequence[PortSpec] | None = None,
    *,
    now: Callable[[], datetime],
    timeout: float = 10.0,
    helo: str | None = None,
    tls_name: str | None = None,
    cafile: str | None = None,
    relay_from: str = DEFAULT_RELAY_FROM,
    relay_to: str = DEFAULT_RELAY_TO,
    relay_test: bool = True,
    tls_versions: bool = True,
    rdns: bool = True,
) -> ProbeReport:
    """Probe ``host`` on ``ports`` (default 25, 465, 587), one after the other, and judge it."""
    ports = ports if ports is not None else parse_ports(",".join(map(str, DEFAULT_PORTS)))
    host = check_host(host)
    address = resolve(host)
    helo_name = helo or _helo_name()
    results = tuple(
        _probe_port(host, address, spec, timeout=timeout, helo=helo_name,
                    tls_name=tls_name or host, cafile=cafile, relay_from=relay_from,
                    relay_to=relay_to, relay_test=relay_test, tls_versions=tls_versions)
        for spec in ports
    )  # fmt: skip
    names = reverse_dns(address, timeout) if rdns else None
    report = ProbeReport(host=host, address=address, rdns=names, ports=results, findings=())
    return _with_findings(report, judge(report, now()))


def probe_outbound(
    host: str, port: int = 25, *, now: Callable[[], datetime], timeout: float = 10.0
) -> ProbeReport:
    """Can this machine reach ``host:port`` (port 25 by default) and get a greeting?"""
    host = check_host(host)
    address = resolve(host)
    spec = PortSpec(port=port, mode=Mode.STARTTLS)
    s = _Session(host=host, address=address, spec=spec, timeout=timeout, helo=_helo_name())
    try:
        seconds = s.connect()
    except OSError as exc:
        outcome, why = _connect_failure(exc)
        result = PortProbe(port=port, mode=spec.mode, outcome=outcome, error=why)
    else:
        try:
            banner = s.read(None)
        except _Broken as exc:
            s.close()
            outcome = Outcome.TIMEOUT if "timed out" in str(exc) else Outcome.ERROR
            result = PortProbe(port=port, mode=spec.mode, outcome=outcome, error=str(exc),
                               connect_seconds=seconds, steps=tuple(s.steps))  # fmt: skip
        else:
            s.quit()
            result = PortProbe(port=port, mode=spec.mode, outcome=Outcome.OK,
                               connect_seconds=seconds, banner=banner,
                               banner_host=banner_hostname(banner), steps=tuple(s.steps))  # fmt: skip
    report = ProbeReport(host=host, address=address, rdns=None, ports=(result,), findings=(),
                         outbound=True)  # fmt: skip
    return _with_findings(report, judge(report, now()))


def _helo_name() -> str:
    # the machine's own name, without a DNS lookup (socket.getfqdn would ask the resolver)
    name = socket.gethostname()
    return name if is_hostname(name) and "." in name else f"{name}.invalid"


def _with_findings(report: ProbeReport, findings: tuple[Finding, ...]) -> ProbeReport:
    from dataclasses import replace

    return replace(report, findings=findings)


# --------------------------------------------------------------------------------------------
# Judging: a pure function of the observations and the time.

UNREACHABLE_PROBLEMS: Final = frozenset({"port-refused", "port-timeout", "port-unreachable"})

_RELAY_REMEDY: Final = (
    "Postfix: smtpd_relay_restrictions must end in reject_unauth_destination after the permit_* "
    "rules for your own clients (permit_mynetworks, permit_sasl_authenticated), and mynetworks "
    "must list only your own networks (postconf(5) smtpd_relay_restrictions, mynetworks). "
    "`mtalens audit postfix` checks both."
)
_AUTH_TLS_REMEDY: Final = (
    "Offer AUTH only inside TLS: smtpd_tls_auth_only = yes (postconf(5)), or "
    "smtpd_tls_security_level = encrypt on the submission service; clients then STARTTLS first "
    "(RFC 4954 section 4, RFC 8314)."
)


def _finding(
    problem: str,
    report: ProbeReport,
    port: PortProbe | None,
    severity: Severity,
    title: str,
    remedy: str,
    when: datetime,
    examples: Sequence[str] = (),
    facts: Sequence[tuple[str, Any]] = (),
) -> Finding:
    subject = f"{report.host}:{port.port}" if port else report.host
    base: list[tuple[str, Any]] = [("host", report.host), ("address", report.address)]
    if port is not None:
        base += [("port", port.port), ("mode", str(port.mode))]
    return Finding(
        id=f"{problem}:{subject}",
        problem=problem,
        title=title,
        severity=severity,
        evidence=Evidence(
            count=1,
            first_seen=when,
            last_seen=when,
            examples=tuple(examples),
            destinations=(subject,),
            facts=tuple(base + list(facts)),
        ),
        remedy=remedy,
    )


def _unreachable(report: ProbeReport, p: PortProbe, when: datetime) -> Finding:
    problem = {
        Outcome.REFUSED: "port-refused",
        Outcome.TIMEOUT: "port-timeout",
        Outcome.UNREACHABLE: "port-unreachable",
    }[p.outcome]
    what = {
        Outcome.REFUSED: "refused the connection (nothing listens there, or a firewall resets)",
        Outcome.TIMEOUT: "did not answer (a firewall drops the packets, or the host is down)",
        Outcome.UNREACHABLE: f"cannot be reached ({p.error})",
    }[p.outcome]
    if report.outbound:
        if p.outcome is Outcome.REFUSED:
            remedy = (
                f"{report.host} refuses port {p.port}: if it is a mail exchanger, its server is "
                "down or filters you; if every destination refuses, a firewall on your side "
                "resets port-25 connections. Try another host you know accepts mail."
            )
        else:
            remedy = (
                "Many ISPs and cloud providers block outbound port 25 (connections time out). "
                "Send through a relay on the submission ports instead: relayhost = "
                "[smtp.your-provider.example]:587 with STARTTLS (or :465 with "
                "smtp_tls_wrappermode = yes, RFC 8314), smtp_sasl_auth_enable = yes and "
                "smtp_tls_security_level = encrypt; or ask the provider to lift the block."
            )
        severity = Severity.CRITICAL if p.outcome is Outcome.TIMEOUT else Severity.WARNING
        title = f"outbound port {p.port} to {report.host} {what}"
        return _finding(problem, report, p, severity, title, remedy, when,
                        facts=[("error", p.error)])  # fmt: skip
    if p.port == 25:
        remedy = (
            "If this host receives mail for a domain, port 25 must be open to the Internet "
            "(check master.cf's smtp service, inet_interfaces and the firewall). If the probe "
            "runs from a home or cloud network, your ISP may block outbound port 25: probe from "
            "elsewhere, or check with `mtalens probe --outbound`."
        )
    elif p.port == 465:
        remedy = (
            "Port 465 is submission over implicit TLS (RFC 8314 section 3.3), the port RFC 8314 "
            "prefers for mail clients; to offer it, enable the smtps service in master.cf with "
            "-o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes. Port 587 with STARTTLS "
            "is the alternative (RFC 6409)."
        )
    elif p.port == 587:
        remedy = (
            "Port 587 is message submission with STARTTLS (RFC 6409, RFC 8314): enable the "
            "submission service in master.cf with -o smtpd_tls_security_level=encrypt -o "
            "smtpd_sasl_auth_enable=yes, or have clients use 465 (implicit TLS)."
        )
    else:
        remedy = "Check that the service listens on this port and that the firewall allows it."
    return _finding(problem, report, p, Severity.WARNING, f"port {p.port} {what}", remedy, when,
                    facts=[("error", p.error)])  # fmt: skip


def judge(report: ProbeReport, when: datetime) -> tuple[Finding, ...]:
    """The findings of a probe (pure: the observations and the time of judging)."""
    out: list[Finding] = []
    for p in report.ports:
        if p.outcome in (Outcome.REFUSED, Outcome.TIMEOUT, Outcome.UNREACHABLE):
            out.append(_unreachable(report, p, when))
            continue
        if report.outbound:
            if p.banner is not None and p.banner.code != 220:
                out.append(_finding(
                    "outbound-greeting-refused", report, p, Severity.WARNING,
                    f"{report.host} answered port {p.port} but refused the session "
                    f"({p.banner.code})",
                    "The path is open; the server turns you away (often a blocklisted IP "
                    "address: `mtalens dns blocklist YOUR-IP`).", when,
                    examples=[p.banner.show()]))  # fmt: skip
            elif p.outcome is Outcome.ERROR:
                out.append(_finding(
                    "outbound-no-greeting", report, p, Severity.WARNING,
                    f"{report.host}:{p.port} accepted the connection but sent no greeting",
                    "Something between you and the host (a proxy, a firewall doing SMTP "
                    "inspection) or an overloaded server holds the session.", when,
                    facts=[("error", p.error)]))  # fmt: skip
            continue
        out.extend(_judge_port(report, p, when))
    if report.rdns is not None:
        out.extend(_judge_names(report, when))
    return tuple(sorted(out, key=lambda f: (f.severity.rank, f.id)))


def _judge_names(report: ProbeReport, when: datetime) -> list[Finding]:
    out: list[Finding] = []
    rdns = report.rdns or ()
    for p in report.ports:
        if p.banner_host and p.banner_host not in rdns and not p.banner_host.startswith("["):
            out.append(_finding(
                "banner-rdns-mismatch", report, p, Severity.NOTICE,
                f"greeting name {p.banner_host} is not the reverse DNS of {report.address} "
                f"({', '.join(rdns) or 'none'})",
                "Receivers compare the name a server gives with its reverse DNS: set myhostname "
                "(postconf(5)) to the address's PTR name, and the PTR to a name whose A/AAAA "
                "record is this address (forward-confirmed, `mtalens dns fcrdns`).",
                when, examples=[p.banner.show()] if p.banner else [],
                facts=[("banner_host", p.banner_host), ("rdns", tuple(rdns))]))  # fmt: skip
    return out


def _judge_port(report: ProbeReport, p: PortProbe, when: datetime) -> list[Finding]:
    out: list[Finding] = []

    def add(problem: str, severity: Severity, title: str, remedy: str,
            examples: Sequence[str] = (), facts: Sequence[tuple[str, Any]] = ()) -> None:  # fmt: skip
        out.append(_finding(problem, report, p, severity, title, remedy, when, examples, facts))

    submission = p.port in SUBMISSION_PORTS
    if p.mode is Mode.IMPLICIT and p.tls is None:
        add("implicit-tls-failed", Severity.CRITICAL,
            f"port {p.port} answers, but no TLS handshake from the first byte (implicit TLS)",
            "Port 465 speaks TLS from the first byte (RFC 8314 section 3.3): in master.cf the "
            "smtps service needs -o smtpd_tls_wrappermode=yes and a certificate "
            "(smtpd_tls_cert_file, smtpd_tls_key_file); a server speaking STARTTLS belongs on "
            "587. (Probe PORT/starttls if this port deliberately uses STARTTLS.)",
            facts=[("error", p.tls_error or p.error)])  # fmt: skip
        return out
    if p.banner is None:
        add("no-greeting", Severity.CRITICAL,
            f"port {p.port} accepted the connection but sent no SMTP greeting",
            "A server must greet with 220 (RFC 5321 section 4.3.1); check that smtpd runs on "
            "this port (not another service), and that it is not overloaded "
            "(process limits in master.cf, default_process_limit).",
            facts=[("error", p.error)])  # fmt: skip
        return out
    if p.banner.code != 220:
        add("greeting-refused", Severity.CRITICAL,
            f"port {p.port} greets with {p.banner.code}: sessions are refused",
            "A 554 greeting refuses every client (RFC 5321 section 3.1); if that is not meant, "
            "look at postscreen or smtpd_client_restrictions, and at the server's load.",
            examples=[p.banner.show()])  # fmt: skip
        return out
    first = p.ehlo if p.mode is Mode.STARTTLS else p.ehlo_tls
    if first is None:
        add("ehlo-refused", Severity.WARNING, f"port {p.port} refuses EHLO (no ESMTP)",
            "Without EHLO there is no STARTTLS, AUTH, SIZE or 8BITMIME (RFC 5321 section "
            "4.1.1.1); check smtpd_helo_restrictions and what answers on this port.",
            examples=[s.reply.show() for s in p.steps if s.sent and s.sent.startswith("EHLO")
                      and s.reply])  # fmt: skip
    if p.mode is Mode.STARTTLS and p.ehlo is not None:
        if p.ehlo.cleartext_auth:
            add("auth-before-tls", Severity.CRITICAL if submission else Severity.WARNING,
                f"port {p.port} offers AUTH {' '.join(p.ehlo.cleartext_auth)} before TLS: "
                "passwords can cross the network in clear text",
                _AUTH_TLS_REMEDY,
                examples=[_ehlo_line(p, "AUTH")],
                facts=[("auth_before_tls", p.ehlo.auth)])  # fmt: skip
        if not p.ehlo.has("STARTTLS"):
            add("no-starttls", Severity.CRITICAL if submission else Severity.WARNING,
                f"port {p.port} does not offer STARTTLS",
                "Set smtpd_tls_cert_file and smtpd_tls_key_file and smtpd_tls_security_level = "
                "may (port 25, opportunistic TLS: RFC 3207, RFC 7435) or = encrypt (submission, "
                "RFC 8314 section 3.3) (postconf(5)).",
                facts=[("extensions", p.ehlo.keywords)])  # fmt: skip
    if p.tls_error and p.tls is None and p.mode is Mode.STARTTLS:
        add("starttls-failed", Severity.CRITICAL,
            f"port {p.port} offers STARTTLS but the TLS handshake fails",
            "Senders that try TLS fall back or defer: check smtpd_tls_cert_file/key_file (the "
            "key must match the certificate) and the server's log for the TLS error.",
            facts=[("error", p.tls_error)])  # fmt: skip
    if p.tls is not None:
        out.extend(_judge_tls(report, p, when))
    after = p.ehlo_tls
    if submission and p.tls is not None and after is not None and not after.auth:
        add("submission-no-auth", Severity.NOTICE,
            f"port {p.port} (submission) offers no AUTH even after TLS",
            "Mail clients authenticate on submission ports (RFC 6409 section 4.3, RFC 4954): "
            "smtpd_sasl_auth_enable = yes on this service, unless it relays by client address "
            "only.", facts=[("extensions", after.keywords)])  # fmt: skip
    if p.relay is Relay.ACCEPTED:
        add("open-relay", Severity.CRITICAL,
            f"port {p.port} is an open relay: it accepted mail from an outside sender to an "
            "outside recipient without authentication",
            _RELAY_REMEDY,
            examples=[s.reply.show() for s in p.steps if s.reply and s.sent
                      and s.sent.startswith(("MAIL", "RCPT"))],
            facts=[("relay_reply", p.relay_reply.show() if p.relay_reply else None)])  # fmt: skip
    elif p.relay is Relay.INCONCLUSIVE:
        add("relay-test-inconclusive", Severity.NOTICE,
            f"port {p.port}: the open-relay test got no clear answer",
            "A 4xx to RCPT (greylisting, defer_unauth_destination) or a refused MAIL FROM "
            "leaves it open; repeat later, or check `mtalens audit postfix`.",
            examples=[p.relay_reply.show()] if p.relay_reply else [])  # fmt: skip
    if p.outcome is Outcome.ERROR and p.error and not out:
        add("session-broken", Severity.WARNING, f"port {p.port}: the session broke off",
            "The server closed or stalled the session; its log says why (smtpd's "
            "\"lost connection\" or a fatal error).", facts=[("error", p.error)])  # fmt: skip
    return out


def _ehlo_line(p: PortProbe, keyword: str) -> str:
    ehlo = p.ehlo
    if ehlo is None:
        return ""
    return next((f"250-{k} {v}".rstrip() for k, v in ehlo.extensions if k == keyword),
                f"250-{keyword}")  # fmt: skip


def _judge_tls(report: ProbeReport, p: PortProbe, when: datetime) -> list[Finding]:
    tls = p.tls
    assert tls is not None
    out: list[Finding] = []
    submission = p.port in SUBMISSION_PORTS
    cert = tls.certificate

    def add(problem: str, severity: Severity, title: str, remedy: str,
            facts: Sequence[tuple[str, Any]] = ()) -> None:  # fmt: skip
        out.append(_finding(problem, report, p, severity, title, remedy, when, (), facts))

    cert_facts: list[tuple[str, Any]] = []
    if cert is not None:
        cert_facts = [("subject", cert.subject), ("issuer", cert.issuer),
                      ("not_after", cert.not_after.isoformat()),
                      ("dns_names", cert.dns_names)]  # fmt: skip
    renew = (
        "Renew it (e.g. certbot renew, then `postfix reload`: smtpd reads smtpd_tls_cert_file "
        "when it starts) and automate renewal."
    )
    if cert is not None and cert.not_after <= when:
        add("cert-expired", Severity.CRITICAL,
            f"port {p.port}: the certificate expired on {cert.not_after:%Y-%m-%d}",
            "Verifying senders (DANE, MTA-STS, smtp_tls_security_level = verify) and mail "
            f"clients refuse it. {renew}", cert_facts)  # fmt: skip
    elif cert is not None and cert.days_left(when) < EXPIRY_WARNING_DAYS:
        add("cert-expiring", Severity.WARNING,
            f"port {p.port}: the certificate expires in {cert.days_left(when):.0f} days",
            renew, cert_facts)  # fmt: skip
    if cert is not None and cert.not_before > when:
        add("cert-not-yet-valid", Severity.CRITICAL,
            f"port {p.port}: the certificate is valid only from {cert.not_before:%Y-%m-%d}",
            "Check the server's clock and the certificate's dates.", cert_facts)  # fmt: skip
    if cert is not None and cert.self_signed:
        add("cert-self-signed", Severity.WARNING if submission else Severity.NOTICE,
            f"port {p.port}: the certificate is self-signed",
            "Mail clients warn or refuse, and senders that verify (MTA-STS, RFC 8461) cannot "
            "use it; opportunistic senders still encrypt. Use a certificate from a public CA "
            "(Let's Encrypt) for smtpd_tls_cert_file, with the intermediate certificates in "
            "the same file (smtpd_tls_chain_files).", cert_facts)  # fmt: skip
    elif tls.verified is False and not (cert is not None and cert.not_after <= when):
        add("cert-untrusted", Severity.WARNING,
            f"port {p.port}: the certificate does not verify ({tls.verify_error})",
            "Install the full chain (the server certificate, then its intermediates) in "
            "smtpd_tls_chain_files or smtpd_tls_cert_file, issued by a CA clients trust.",
            [*cert_facts, ("verify_error", tls.verify_error)])  # fmt: skip
    if cert is not None and tls.name_matches is False:
        add("cert-name-mismatch", Severity.WARNING,
            f"port {p.port}: the certificate is not valid for {tls.name}",
            "Clients check the name they connect to against the certificate's subjectAltName "
            "(RFC 6125); get a certificate that names this host (the MX name, the name clients "
            "are configured with), or probe with --tls-name NAME if you connected by another "
            "name.", cert_facts)  # fmt: skip
    old = sorted(v for v, ok in tls.versions.items() if ok and v in OLD_TLS)
    if tls.version in OLD_TLS or (old and submission):
        add("tls-old-versions", Severity.WARNING,
            f"port {p.port} accepts {', '.join(old or [tls.version or '?'])}",
            "TLS 1.0 and 1.1 are deprecated (RFC 8996); for submission set "
            "smtpd_tls_mandatory_protocols = >=TLSv1.2 (postconf(5)). On port 25 old "
            "versions beat plain text for old senders (opportunistic TLS, RFC 7435): leave "
            "smtpd_tls_protocols alone unless you need to.", [("versions", tuple(old))])  # fmt: skip
    if tls.trailing_plaintext:
        add("starttls-injection", Severity.CRITICAL,
            f"port {p.port} sent plain-text data after its STARTTLS 220 reply",
            "A server (or a box in the path) that writes after '220 Ready to start TLS' "
            "allows command injection (CVE-2011-0411): upgrade the server, and look for an "
            "SMTP-inspecting firewall in between.")  # fmt: skip
    return out
