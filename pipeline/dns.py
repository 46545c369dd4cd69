"""DNS checks for mail domains and sending IPs, with dnspython.

- ``check_domain``: MX and their addresses, null MX (RFC 7505), SPF (RFC 7208), DMARC (RFC 7489),
  DKIM keys for given selectors (RFC 6376, RFC 8301, RFC 8463), MTA-STS (RFC 8461) and TLS-RPT
  (RFC 8460) records. Each result is a ``Finding`` with a severity and a message.
- ``check_blocklists``: DNSBL lookups (RFC 5782), with Spamhaus' return codes.
- ``check_fcrdns``: forward-confirmed reverse DNS.

Every lookup goes through ``DnsClient``: a dnspython resolver built with ``configure=False`` (the
caller names the nameservers; nothing falls back to the system resolver) plus an optional TTL cache
in the store's ``dns_cache`` table. The clock is passed in. Timeouts, refusals and server failures
become answers with a failure status, and then findings of unknown outcome (never "not listed" or
"no record"), not exceptions. Two things keep a broken resolver from costing a timeout per lookup:
a resolver that nothing listens on raises ``ResolverError`` at the first query, and once a
resolver that never answered times out, the client sends it nothing more (``Status.SKIPPED``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import dns.exception
import dns.inet
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.txtbase import TXTBase

# one definition, in a module the CLI can import without dnspython; re-exported here
from mtalens.pipeline.dns_defaults import DEFAULT_BLOCKLISTS as DEFAULT_BLOCKLISTS
from mtalens.pipeline.dns_defaults import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.store import Store

Clock = Callable[[], datetime]


class Severity(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # the check could not be made: its lookup failed
    WARNING = "warning"
    ERROR = "error"


class Status(StrEnum):
    """How a single DNS query ended."""

    NOERROR = "noerror"  # records in the answer
    NODATA = "nodata"  # the name exists, no records of this type
    NXDOMAIN = "nxdomain"
    TIMEOUT = "timeout"
    REFUSED = "refused"  # the nameservers answered REFUSED (RFC 1035 section 4.1.1 RCODE 5)
    SERVFAIL = "servfail"  # every nameserver failed otherwise (SERVFAIL, malformed), or none given
    SKIPPED = "skipped"  # not sent: the resolver never answered and an earlier query timed out


_CACHEABLE: Final = frozenset({Status.NOERROR, Status.NODATA, Status.NXDOMAIN})
_FAILED: Final = frozenset({Status.TIMEOUT, Status.REFUSED, Status.SERVFAIL, Status.SKIPPED})


class ResolverError(InputError):
    """No nameserver can be reached at all (ICMP port or host unreachable, connection refused):
    nothing listens at the address and port given, so no lookup can be made. Raised at the first
    query, so that a wrong ``--resolver``/``--port`` ends a command at once, in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One query's outcome. ``records`` are presentation strings: addresses for A/AAAA,
    ``"preference exchange."`` for MX, the joined character-strings for TXT (RFC 7208 section
    3.3: the strings of one TXT record are concatenated without spaces), the target for PTR."""

    qname: str
    rdtype: str
    status: Status
    records: tuple[str, ...] = ()
    ttl: int = 0
    canonical_name: str = ""
    from_cache: bool = False

    @property
    def failed(self) -> bool:
        return self.status in _FAILED

    @property
    def void(self) -> bool:
        """RFC 7208 section 4.6.4: NOERROR with no answer, or NXDOMAIN."""
        return self.status in (Status.NODATA, Status.NXDOMAIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    check: str  # mx, spf, dmarc, dkim, mta-sts, tls-rpt
    severity: Severity
    message: str
    name: str = ""  # the DNS name the finding is about


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainReport:
    domain: str
    findings: tuple[Finding, ...]

    @property
    def worst(self) -> Severity:
        order = (Severity.OK, Severity.UNKNOWN, Severity.WARNING, Severity.ERROR)
        return max((f.severity for f in self.findings), key=order.index, default=Severity.OK)

    @property
    def unknown(self) -> tuple[Finding, ...]:
        """The checks that could not be made because a lookup failed."""
        return tuple(f for f in self.findings if f.severity is Severity.UNKNOWN)


def normalize_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


# A host or mail domain as RFC 5321 section 4.1.2 writes it (sub-domain = Let-dig [Ldh-str]),
# in labels of at most 63 octets (RFC 1035 section 2.3.4).
_LDH_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def mail_domain(name: str) -> str:
    """``name`` as a domain to look up (A-labels, lower case, no trailing dot), or ValueError
    saying what is wrong: empty labels, spaces, characters a host name cannot hold."""
    import idna

    text = name.strip().rstrip(".")
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii") if text else ""
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{name!r} is not a domain name ({exc})") from None
    labels = ascii_name.lower().split(".")
    if not ascii_name or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{name!r} is not a domain name (letters, digits, hyphens and dots)")
    if len(ascii_name) > 253:
        raise ValueError(f"{name!r} is longer than a domain name may be (253)")
    return ascii_name.lower()


# --------------------------------------------------------------------------------------------
# Resolver and cache


class _ConnectedUdpNameserver(dns.nameserver.Do53Nameserver):
    """Do53 that sends UDP queries from a *connected* socket. dnspython's own socket is not
    connected, and Linux passes an ICMP "port unreachable" only to a connected UDP socket (udp(7),
    "Error handling"): unconnected, a closed port looks like a silent server and each query waits
    out the whole timeout. Connected, ``recv`` fails at once with ConnectionRefusedError, which
    dnspython records as this nameserver's error."""

    def query(
        self,
        request: dns.message.QueryMessage,
        timeout: float,
        source: str | None,
        source_port: int,
        max_size: bool,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        if max_size or source is not None or source_port:
            # TCP (the retry after a truncated answer) reports a closed port at connect() anyway;
            # a source address is never set by make_resolver: leave both to dnspython.
            return super().query(
                request, timeout, source, source_port, max_size, one_rr_per_rrset, ignore_trailing
            )
        family = dns.inet.af_for_address(self.address)
        with dns.query.make_socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((self.address, self.port))
            return dns.query.udp(
                request,
                self.address,
                timeout=timeout,
                port=self.port,
                sock=sock,
                raise_on_truncation=True,
                one_rr_per_rrset=one_rr_per_rrset,
                ignore_trailing=ignore_trailing,
                ignore_errors=True,
                ignore_unexpected=True,
            )


def make_resolver(
    nameservers: Sequence[str], *, port: int = 53, timeout: float = DEFAULT_TIMEOUT
) -> dns.resolver.Resolver:
    """A resolver that only talks to ``nameservers`` (never /etc/resolv.conf). ``timeout`` is the
    time one lookup may take in all, retries to every nameserver included (dnspython's lifetime):
    a silent nameserver costs ``timeout``, not several."""
    if not nameservers:
        raise ValueError("no nameserver given")
    for ns in nameservers:
        ipaddress.ip_address(ns)  # ValueError for a host name: dnspython wants addresses
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [_ConnectedUdpNameserver(ns, port) for ns in nameservers]
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def describe_resolver(resolver: dns.resolver.Resolver) -> str:
    """``127.0.0.1``, ``127.0.0.1 port 5300``, ``192.0.2.1, 192.0.2.2``: for messages."""
    names: list[str] = []
    for ns in resolver.nameservers:
        if isinstance(ns, dns.nameserver.AddressAndPortNameserver):
            names.append(ns.address if ns.port == 53 else f"{ns.address} port {ns.port}")
        elif isinstance(ns, str):
            names.append(ns if resolver.port == 53 else f"{ns} port {resolver.port}")
        else:
            names.append(str(ns))
    return ", ".join(names) or "(no nameserver)"


def system_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameservers listed in resolv.conf, for a CLI run without ``--resolver``."""
    found: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    found.append(parts[1].split("%")[0])
    except OSError:
        return []
    return found


class DnsCache:
    """The ``dns_cache`` table (migration 0003). A read-only store is read but not written."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, qname: str, rdtype: str, now: datetime) -> Answer | None:
        row = self.store.con.execute(
            "SELECT answer, expires_at FROM dns_cache "
            "WHERE qname = ? AND rdtype = ? AND expires_at > ?",
            [qname, rdtype, now],
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        expires_at: datetime = row[1]
        return Answer(
            qname=qname,
            rdtype=rdtype,
            status=Status(data["status"]),
            records=tuple(data["records"]),
            ttl=max(0, int((expires_at - now).total_seconds())),
            canonical_name=str(data.get("canonical_name", "")),
            from_cache=True,
        )

    def put(self, answer: Answer, now: datetime) -> None:
        if self.store.read_only or answer.status not in _CACHEABLE or answer.ttl <= 0:
            return
        payload = json.dumps(
            {
                "status": str(answer.status),
                "records": list(answer.records),
                "canonical_name": answer.canonical_name,
            }
        )
        self.store.con.execute(
            "INSERT OR REPLACE INTO dns_cache "
            "(qname, rdtype, answer, ttl, fetched_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                answer.qname,
                answer.rdtype,
                payload,
                answer.ttl,
                now,
                now + timedelta(seconds=answer.ttl),
            ],
        )


def _rdata_text(rdata: object) -> str:
    if isinstance(rdata, TXTBase):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return str(rdata.to_text())  # type: ignore[attr-defined]


def _unreachable(errors: Sequence[tuple[object, ...]]) -> OSError | None:
    """The socket error if every nameserver failed with one (nothing listens, no route), else
    None. ``errors`` is dnspython's NoNameservers list of (nameserver, tcp, port, error, response)."""
    socket_errors = [x for x in (e[3] for e in errors) if isinstance(x, OSError)]
    return socket_errors[0] if errors and len(socket_errors) == len(errors) else None


def _refused(errors: Sequence[tuple[object, ...]]) -> bool:
    """Every nameserver that answered said REFUSED (dnspython records the rcode as text)."""
    rcodes = [e[3] for e in errors if isinstance(e[3], str)]
    return bool(rcodes) and all(r == "REFUSED" for r in rcodes)


class DnsClient:
    """Queries with a fixed resolver, through the cache when there is one.

    ``outcomes`` counts how every query ended (cache hits included), so a caller can tell "some
    lookups failed" from "no lookup got an answer" (:meth:`trouble`)."""

    def __init__(
        self,
        resolver: dns.resolver.Resolver,
        *,
        clock: Clock,
        cache: DnsCache | None = None,
        queries_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``queries_per_second``: at most this many queries sent (cache hits are free), for
        scheduled checks that must respect a blocklist's usage rules; ``sleep`` waits."""
        self.resolver = resolver
        self.clock = clock
        self.cache = cache
        self.queries_sent = 0
        self.responses = 0  # queries the nameservers answered at all (REFUSED included)
        self.outcomes: Counter[Status] = Counter()
        self._gap = 1.0 / queries_per_second if queries_per_second else 0.0
        self._sleep = sleep
        self._next_send = 0.0  # monotonic time the next query may be sent
        # every answer, in order, while a caller wants to see what a check looked up
        self.journal: list[Answer] | None = None

    def query(self, qname: str, rdtype: str) -> Answer:
        qname = normalize_name(qname)
        now = self.clock()
        answer = None if self.cache is None else self.cache.get(qname, rdtype, now)
        if answer is None:
            answer = self._resolve(qname, rdtype)
            if self.cache is not None:
                self.cache.put(answer, now)
        self.outcomes[answer.status] += 1
        if self.journal is not None:
            self.journal.append(answer)
        return answer

    def trouble(self) -> str | None:
        """One line on why no lookup so far got an answer, or None if one did (or none was
        made): for a command to say that nothing could be checked, and why."""
        if not self.outcomes or any(s not in _FAILED for s in self.outcomes):
            return None
        who = f"resolver {describe_resolver(self.resolver)}"
        skipped = self.outcomes[Status.SKIPPED]
        if self.outcomes[Status.TIMEOUT] and not self.responses:
            line = f"{who} did not answer within {self.resolver.lifetime:g} s (timeout)"
            if skipped:
                line += f"; the other {skipped} lookup(s) were not sent"
            return line
        if set(self.outcomes) == {Status.REFUSED}:
            n = self.outcomes.total()
            return f"{who} refused {'the query' if n == 1 else f'all {n} queries'} (REFUSED)"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.outcomes.items()))
        return f"no lookup through {who} got an answer ({counts})"

    def _resolve(self, qname: str, rdtype: str) -> Answer:
        if self.outcomes[Status.TIMEOUT] and not self.responses:
            # The resolver has answered nothing and let a query time out: it is down or
            # filtered. Asking again would cost a timeout per lookup, for the same answer.
            return Answer(qname=qname, rdtype=rdtype, status=Status.SKIPPED)
        if self._gap:
            now = time.monotonic()
            if now < self._next_send:
                self._sleep(self._next_send - now)
            self._next_send = max(now, self._next_send) + self._gap
        self.queries_sent += 1
        try:
            result = self.resolver.resolve(
                qname + ".", rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            ttl = 0
            try:
                # dnspython's NXDOMAIN.response() is not annotated
                response = exc.response(dns.name.from_text(qname + "."))  # type: ignore[no-untyped-call]
                if isinstance(response, dns.message.QueryMessage):
                    ttl = response.resolve_chaining().minimum_ttl
            except (KeyError, dns.exception.DNSException):
                ttl = 0
            self.responses += 1
            return Answer(qname=qname, rdtype=rdtype, status=Status.NXDOMAIN, ttl=ttl)
        except dns.exception.Timeout:
            return Answer(qname=qname, rdtype=rdtype, status=Status.TIMEOUT)
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors", [])
            unreachable = _unreachable(errors)
            if unreachable is not None:
                who = describe_resolver(self.resolver)
                reason = unreachable.strerror or type(unreachable).__name__
                raise ResolverError(
                    f"resolver {who} cannot be reached ({reason.lower()}): "
                    "no DNS server listens there; check --resolver and --port"
                ) from exc
            if errors:  # else there was no nameserver to ask (a cache-only client)
                self.responses += 1
            status = Status.REFUSED if _refused(errors) else Status.SERVFAIL
            return Answer(qname=qname, rdtype=rdtype, status=status)
        except dns.exception.DNSException:
            # YXDOMAIN, malformed answers
            self.responses += 1
            return Answer(qname=qname, rdtype=rdtype, status=Status.SERVFAIL)
        self.responses += 1
        ttl = int(result.chaining_result.minimum_ttl)
        canonical = normalize_name(result.canonical_name.to_text())
        if result.rrset is None or len(result.rrset) == 0:
            return Answer(
                qname=qname, rdtype=rdtype, status=Status.NODATA, ttl=ttl, canonical_name=canonical
            )
        records = tuple(_rdata_text(rd) for rd in result.rrset)
        return Answer(
            qname=qname,
            rdtype=rdtype,
            status=Status.NOERROR,
            records=records,
            ttl=ttl,
            canonical_name=canonical,
        )


# How a failed lookup ended, for messages: "<what> lookup <verb>"
_FAILURE_TEXT: Final[dict[Status, str]] = {
    Status.TIMEOUT: "timed out",
    Status.REFUSED: "refused by the resolver (REFUSED)",
    Status.SERVFAIL: "failed (server failure)",
    Status.SKIPPED: "not sent (the resolver answered no earlier query)",
}


def _failure(check: str, answer: Answer, what: str) -> Finding:
    """A check that could not be made: its outcome is unknown, which is not an error found."""
    return Finding(
        check=check,
        severity=Severity.UNKNOWN,
        message=f"{what} lookup ({answer.rdtype} {answer.qname}) {_FAILURE_TEXT[answer.status]}",
        name=answer.qname,
    )


def _addresses(client: DnsClient, host: str) -> tuple[list[str], list[Answer]]:
    answers = [client.query(host, "A"), client.query(host, "AAAA")]
    addrs = [r for a in answers if a.status is Status.NOERROR for r in a.records]
    return addrs, answers


# --------------------------------------------------------------------------------------------
# MX (RFC 5321 section 5.1, RFC 7505)


def _parse_mx(record: str) -> tuple[int, str]:
    pref, _, host = record.partition(" ")
    return int(pref), host.strip()


def check_mx(client: DnsClient, domain: str) -> list[Finding]:
    domain = normalize_name(domain)
    ans = client.query(domain, "MX")
    if ans.failed:
        return [_failure("mx", ans, "MX")]
    if ans.status is Status.NXDOMAIN:
        return [
            Finding(
                check="mx", severity=Severity.ERROR, message="domain does not exist", name=domain
            )
        ]
    if ans.status is Status.NODATA:
        # RFC 5321 section 5.1: with no MX, the domain itself is the implicit MX.
        addrs, answers = _addresses(client, domain)
        if addrs:
            return [
                Finding(
                    check="mx",
                    severity=Severity.WARNING,
                    message="no MX record; mail goes to the domain's own address "
                    f"(implicit MX, RFC 5321 section 5.1): {', '.join(addrs)}",
                    name=domain,
                )
            ]
        failed = [a for a in answers if a.failed]
        if failed:
            return [_failure("mx", failed[0], "implicit MX address")]
        return [
            Finding(
                check="mx",
                severity=Severity.ERROR,
                message="no MX record and no A/AAAA address: the domain cannot receive mail",
                name=domain,
            )
        ]
    mxs = sorted(_parse_mx(r) for r in ans.records)
    # RFC 7505 section 3: a null MX is a single MX with preference 0 and exchange "."
    nulls = [m for m in mxs if m[1] == "."]
    if nulls:
        if len(mxs) == 1 and mxs[0][0] == 0:
            return [
                Finding(
                    check="mx",
                    severity=Severity.OK,
                    message="null MX: the domain accepts no mail (RFC 7505)",
                    name=domain,
                )
            ]
        return [
            Finding(
                check="mx",
                severity=Severity.ERROR,
                message="null MX mixed with other MX records or a non-zero preference "
                "(RFC 7505 section 3: a null MX must be the only MX, with preference 0)",
                name=domain,
            )
        ]
    findings: list[Finding] = []
    for pref, host in mxs:
        name = normalize_name(host)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            # RFC 7505 section 3 / RFC 5321 section 5.1: the exchange is a host name.
            findings.append(
                Finding(
                    check="mx",
                    severity=Severity.ERROR,
                    message=f"MX {pref} {name}: exchange is an IP address, not a host name",
                    name=domain,
                )
            )
            continue
        addrs, answers = _addresses(client, name)
        failed = [a for a in answers if a.failed]
        if failed:
            findings.append(_failure("mx", failed[0], f"MX {name} address"))
        if not addrs:
            if not failed:
                findings.append(
                    Finding(
                        check="mx",
                        severity=Severity.ERROR,
                        message=f"MX {pref} {name} has no A/AAAA address",
                        name=name,
                    )
                )
            continue
        aliased = [a for a in answers if a.canonical_name and a.canonical_name != name]
        if aliased:
            # RFC 2181 section 10.3: an MX exchange must not be an alias (CNAME).
            findings.append(
                Finding(
                    check="mx",
                    severity=Severity.WARNING,
                    message=f"MX {pref} {name} is an alias for {aliased[0].canonical_name} "
                    "(RFC 2181 section 10.3)",
                    name=name,
                )
            )
        findings.append(
            Finding(
                check="mx",
                severity=Severity.OK,
                message=f"MX {pref} {name} -> {', '.join(addrs)}",
                name=name,
            )
        )
    return findings


# --------------------------------------------------------------------------------------------
# SPF (RFC 7208)

SPF_LOOKUP_LIMIT: Final = 10  # RFC 7208 section 4.6.4
SPF_VOID_LIMIT: Final = 2  # RFC 7208 section 4.6.4
SPF_MX_LIMIT: Final = 10  # RFC 7208 section 4.6.4: MX names per "mx" mechanism
_SPF_MAX_DEPTH: Final = 20  # stop walking absurd include chains; the count is already > 10

_SPF_VERSION = re.compile(r"^v=spf1(?: |$)", re.IGNORECASE)  # RFC 7208 section 4.5
# RFC 7208 section 12: modifier = name "=" macro-string; name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
_SPF_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
# directive = [ qualifier ] mechanism, qualifier = "+" / "-" / "?" / "~"
_SPF_MECHANISM = re.compile(r"^([+\-?~]?)([a-z][a-z0-9]*)(.*)$", re.IGNORECASE)
_SPF_MECHANISMS: Final = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})


def _is_spf(record: str) -> bool:
    return _SPF_VERSION.match(record) is not None


def _split_cidr(arg: str, default_domain: str) -> tuple[str, str]:
    """``:domain/24//64`` or ``/24`` -> (domain, cidr suffix), RFC 7208 section 5.3/5.4."""
    domain_part, slash, cidr = arg.partition("/")
    domain = domain_part[1:] if domain_part.startswith(":") else ""
    return (domain or default_domain), (slash + cidr)


def _valid_dual_cidr(cidr: str) -> bool:
    # dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ], RFC 7208 section 5.6
    if not cidr:
        return True
    m = re.fullmatch(r"(?:/(\d{1,2}))?(?://(\d{1,3}))?", cidr)
    if m is None:
        return False
    v4, v6 = m.group(1), m.group(2)
    return (v4 is None or int(v4) <= 32) and (v6 is None or int(v6) <= 128)


@dataclass(slots=True)
class _SpfWalk:
    client: DnsClient
    lookups: int = 0
    voids: int = 0
    findings: list[Finding] = field(default_factory=list)

    def note(self, severity: Severity, message: str, name: str) -> None:
        self.findings.append(Finding(check="spf", severity=severity, message=message, name=name))

    def count_void(self, answer: Answer) -> None:
        if answer.void:
            self.voids += 1

    def fetch(self, domain: str, via: str, chain: tuple[str, ...]) -> str | None:
        """The single SPF record of an include/redirect target, or None (with a finding)."""
        ans = self.client.query(domain, "TXT")
        if ans.failed:
            self.findings.append(_failure("spf", ans, f"SPF {via}"))
            return None
        self.count_void(ans)
        spf = [r for r in ans.records if _is_spf(r)]
        if not spf:
            # RFC 7208 section 5.2 (include) and 6.1 (redirect): "none" there is a permerror.
            self.note(
                Severity.ERROR, f"{via} target {domain} has no SPF record (permerror)", domain
            )
            return None
        if len(spf) > 1:
            self.note(
                Severity.ERROR,
                f"{via} target {domain} has {len(spf)} SPF records (permerror, RFC 7208 "
                "section 4.5)",
                domain,
            )
            return None
        if domain in chain:
            self.note(Severity.ERROR, f"{via} loop back to {domain}", domain)
            return None
        return spf[0]

    def walk(self, domain: str, record: str, chain: tuple[str, ...]) -> None:
        if len(chain) > _SPF_MAX_DEPTH:
            self.note(Severity.ERROR, "include/redirect chain too deep; stopped", domain)
            return
        chain = (*chain, domain)
        terms = record.split()[1:]
        redirect: str | None = None
        seen_modifiers: set[str] = set()
        has_all = False
        after_all: list[str] = []
        for term in terms:
            mod = _SPF_MODIFIER.match(term)
            if mod is not None:
                mname, value = mod.group(1).lower(), mod.group(2)
                if mname in ("redirect", "exp"):
                    # RFC 7208 section 6: each may appear at most once.
                    if mname in seen_modifiers:
                        self.note(
                            Severity.ERROR,
                            f"{mname}= appears more than once in {domain}'s SPF record "
                            "(permerror, RFC 7208 section 6)",
                            domain,
                        )
                    seen_modifiers.add(mname)
                    if not value:
                        self.note(Severity.ERROR, f"{mname}= without a domain in {domain}", domain)
                    elif mname == "redirect":
                        redirect = value
                # Unknown modifiers are ignored (RFC 7208 section 6).
                continue
            mech = _SPF_MECHANISM.match(term)
            if mech is None or mech.group(2).lower() not in _SPF_MECHANISMS:
                self.note(
                    Severity.ERROR,
                    f"unknown or malformed term {term!r} in {domain}'s SPF record "
                    "(permerror, RFC 7208 section 4.6.1)",
                    domain,
                )
                continue
            if has_all:
                after_all.append(term)
            self.mechanism(domain, term, mech.group(1), mech.group(2).lower(), mech.group(3), chain)
            if mech.group(2).lower() == "all":
                has_all = True
        if after_all:
            self.note(
                Severity.WARNING,
                f"terms after 'all' are never evaluated in {domain}: {' '.join(after_all)} "
                "(RFC 7208 section 5.1)",
                domain,
            )
        if redirect is not None:
            if has_all:
                self.note(
                    Severity.WARNING,
                    f"redirect= ignored because {domain}'s record has 'all' (RFC 7208 section 6.1)",
                    domain,
                )
            else:
                self.lookups += 1
                if "%" in redirect:
                    self.note(Severity.OK, f"redirect={redirect} uses macros: not followed", domain)
                else:
                    target = normalize_name(redirect)
                    sub = self.fetch(target, "redirect", chain)
                    if sub is not None:
                        self.walk(target, sub, chain)

    def mechanism(
        self, domain: str, term: str, qualifier: str, name: str, arg: str, chain: tuple[str, ...]
    ) -> None:
        if name == "all":
            if arg:
                self.note(Severity.ERROR, f"malformed {term!r} in {domain}", domain)
            elif qualifier in ("", "+"):
                self.note(
                    Severity.WARNING,
                    f"{term!r} in {domain}: every host on the Internet passes SPF",
                    domain,
                )
            return
        if name in ("ip4", "ip6"):
            self.check_ip(domain, term, name, arg)
            return
        # include, a, mx, ptr, exists: each costs one DNS-querying term (RFC 7208 section 4.6.4)
        self.lookups += 1
        if name in ("include", "exists"):
            if not arg.startswith(":") or len(arg) < 2:
                self.note(Severity.ERROR, f"{term!r} in {domain} needs a domain", domain)
                return
            target = arg[1:]
            if "%" in target:
                self.note(Severity.OK, f"{term!r} uses macros: not followed", domain)
                return
            target = normalize_name(target)
            if name == "exists":
                exists = self.client.query(target, "A")
                if exists.failed:
                    self.findings.append(_failure("spf", exists, f"SPF {term}"))
                self.count_void(exists)
                return
            sub = self.fetch(target, "include", chain)
            if sub is not None:
                self.walk(target, sub, chain)
            return
        if name == "ptr":
            # RFC 7208 section 5.5: "ptr" SHOULD NOT be published.
            self.note(
                Severity.WARNING,
                f"{term!r} in {domain}: the ptr mechanism should not be used "
                "(slow, unreliable; RFC 7208 section 5.5)",
                domain,
            )
            return
        if arg and arg[0] not in ":/":
            self.note(Severity.ERROR, f"malformed {term!r} in {domain}", domain)
            return
        target, cidr = _split_cidr(arg, domain)
        if not _valid_dual_cidr(cidr):
            self.note(Severity.ERROR, f"bad CIDR length in {term!r} in {domain}", domain)
            return
        if "%" in target:
            self.note(Severity.OK, f"{term!r} uses macros: not followed", domain)
            return
        target = normalize_name(target)
        if name == "a":
            a = self.client.query(target, "A")
            if a.failed:
                self.findings.append(_failure("spf", a, f"SPF {term}"))
                return
            if a.void:
                aaaa = self.client.query(target, "AAAA")
                if aaaa.void:
                    self.voids += 1
            return
        mx = self.client.query(target, "MX")
        if mx.failed:
            self.findings.append(_failure("spf", mx, f"SPF {term}"))
            return
        self.count_void(mx)
        if len(mx.records) > SPF_MX_LIMIT:
            self.note(
                Severity.ERROR,
                f"{term!r} in {domain}: {target} has {len(mx.records)} MX records, more than "
                f"{SPF_MX_LIMIT} (permerror, RFC 7208 section 4.6.4)",
                domain,
            )

    def check_ip(self, domain: str, term: str, name: str, arg: str) -> None:
        net = arg[1:] if arg.startswith(":") else None
        try:
            if not net:
                raise ValueError("no network")
            network = ipaddress.ip_network(net, strict=False)
            if (name == "ip4") != (network.version == 4):
                raise ValueError("wrong family")
        except ValueError:
            self.note(
                Severity.ERROR,
                f"invalid network in {term!r} in {domain} (permerror, RFC 7208 section 5.6)",
                domain,
            )


def check_spf(client: DnsClient, domain: str) -> list[Finding]:
    domain = normalize_name(domain)
    ans = client.query(domain, "TXT")
    if ans.failed:
        return [_failure("spf", ans, "SPF")]
    spf = [r for r in ans.records if _is_spf(r)]
    if not spf:
        return [
            Finding(
                check="spf",
                severity=Severity.WARNING,
                message="no SPF record (result 'none', RFC 7208 section 4.5)",
                name=domain,
            )
        ]
    if len(spf) > 1:
        return [
            Finding(
                check="spf",
                severity=Severity.ERROR,
                message=f"{len(spf)} SPF records: receivers return permerror "
                "(RFC 7208 section 4.5): " + " | ".join(spf),
                name=domain,
            )
        ]
    walk = _SpfWalk(client)
    walk.walk(domain, spf[0], ())
    findings = [Finding(check="spf", severity=Severity.OK, message=spf[0], name=domain)]
    terms = spf[0].split()[1:]
    if not any(re.match(r"^[+\-?~]?all$", t, re.IGNORECASE) for t in terms) and not any(
        t.lower().startswith("redirect=") for t in terms
    ):
        findings.append(
            Finding(
                check="spf",
                severity=Severity.WARNING,
                message="no 'all' mechanism and no redirect: unmatched hosts get 'neutral' "
                "(RFC 7208 section 4.7)",
                name=domain,
            )
        )
    findings.extend(walk.findings)
    if walk.lookups > SPF_LOOKUP_LIMIT:
        findings.append(
            Finding(
                check="spf",
                severity=Severity.ERROR,
                message=f"{walk.lookups} DNS lookups, more than {SPF_LOOKUP_LIMIT} "
                "(permerror, RFC 7208 section 4.6.4)",
                name=domain,
            )
        )
    else:
        findings.append(
            Finding(
                check="spf",
                severity=Severity.OK,
                message=f"{walk.lookups} DNS lookups (limit {SPF_LOOKUP_LIMIT})",
                name=domain,
            )
        )
    if walk.voids > SPF_VOID_LIMIT:
        findings.append(
            Finding(
                check="spf",
                severity=Severity.ERROR,
                message=f"{walk.voids} void lookups, more than {SPF_VOID_LIMIT} "
                "(permerror, RFC 7208 section 4.6.4)",
                name=domain,
            )
        )
    elif walk.voids:
        findings.append(
            Finding(
                check="spf",
                severity=Severity.WARNING,
                message=f"{walk.voids} void lookup(s) (limit {SPF_VOID_LIMIT})",
                name=domain,
            )
        )
    return findings


# --------------------------------------------------------------------------------------------
# Tag lists: DMARC (RFC 7489 section 6.4), DKIM (RFC 6376 section 3.2), MTA-STS, TLS-RPT


def parse_tags(record: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``tag=value; tag=value`` -> ([(tag, value)], [malformed parts])."""
    tags: list[tuple[str, str]] = []
    bad: list[str] = []
    for part in record.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            bad.append(part)
            continue
        tags.append((name.strip().lower(), value.strip()))
    return tags, bad


def _select_versioned(records: Iterable[str], version: str) -> list[str]:
    # DMARC (RFC 7489 s6.6.3), MTA-STS (RFC 8461 s3.1) and TLS-RPT (RFC 8460 s3) all discard
    # TXT records that do not start with their version tag.
    pattern = re.compile(rf"^v\s*=\s*{re.escape(version)}\s*(;|$)", re.IGNORECASE)
    return [r for r in records if pattern.match(r)]


_DMARC_POLICIES: Final = ("none", "quarantine", "reject")  # RFC 7489 section 6.3


def check_dmarc(client: DnsClient, domain: str) -> list[Finding]:
    domain = normalize_name(domain)
    qname = f"_dmarc.{domain}"
    ans = client.query(qname, "TXT")

    def note(severity: Severity, message: str) -> Finding:
        return Finding(check="dmarc", severity=severity, message=message, name=qname)

    if ans.failed:
        return [_failure("dmarc", ans, "DMARC")]
    records = _select_versioned(ans.records, "DMARC1")
    if not records:
        # The organizational-domain fallback (RFC 7489 section 6.6.3) needs the Public Suffix
        # List; it is not done here.
        return [note(Severity.WARNING, "no DMARC record")]
    if len(records) > 1:
        return [
            note(
                Severity.ERROR,
                f"{len(records)} DMARC records: receivers apply none (RFC 7489 section 6.6.3)",
            )
        ]
    record = records[0]
    tags, bad = parse_tags(record)
    values = dict(tags)
    findings = [note(Severity.OK, record)]
    findings += [note(Severity.ERROR, f"malformed tag {b!r} (RFC 7489 section 6.4)") for b in bad]
    policy = values.get("p")
    rua = [u.strip() for u in values.get("rua", "").split(",") if u.strip()]
    if policy is None or policy.lower() not in _DMARC_POLICIES:
        shown = "missing" if policy is None else f"invalid ({policy!r})"
        # RFC 7489 section 6.6.3: with a valid rua the record counts as p=none, else it is ignored
        effect = "treated as p=none" if rua else "the record is ignored"
        findings.append(note(Severity.ERROR, f"policy p= is {shown}: {effect}"))
    elif policy.lower() == "none":
        findings.append(note(Severity.WARNING, "p=none: monitoring only, nothing is rejected"))
    else:
        findings.append(note(Severity.OK, f"policy p={policy.lower()}"))
    sp = values.get("sp")
    if sp is not None and sp.lower() not in _DMARC_POLICIES:
        findings.append(note(Severity.ERROR, f"invalid subdomain policy sp={sp!r}"))
    pct = values.get("pct")
    if pct is not None:
        if not pct.isdigit() or int(pct) > 100:
            findings.append(
                note(Severity.ERROR, f"invalid pct={pct!r} (0-100, RFC 7489 section 6.3)")
            )
        elif int(pct) < 100:
            findings.append(note(Severity.WARNING, f"pct={pct}: policy applies to {pct}% of mail"))
    for tag in ("adkim", "aspf"):
        mode = values.get(tag)
        if mode is not None and mode.lower() not in ("r", "s"):
            findings.append(note(Severity.ERROR, f"invalid {tag}={mode!r} (r or s)"))
    if not rua:
        findings.append(note(Severity.WARNING, "no rua=: no aggregate reports are sent"))
    for uri in rua:
        # RFC 7489 section 6.2: DMARC URIs; mailto: is what receivers support in practice.
        if not re.match(r"^[a-z][a-z0-9+.-]*:", uri, re.IGNORECASE):
            findings.append(note(Severity.ERROR, f"rua entry {uri!r} is not a URI"))
    return findings


# --------------------------------------------------------------------------------------------
# DKIM (RFC 6376 section 3.6.1; key sizes RFC 8301 section 3.2; ed25519 RFC 8463)


def _rsa_bits(der: bytes) -> int | None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def check_dkim(client: DnsClient, domain: str, selector: str) -> list[Finding]:
    domain = normalize_name(domain)
    qname = f"{normalize_name(selector)}._domainkey.{domain}"
    ans = client.query(qname, "TXT")

    def note(severity: Severity, message: str) -> Finding:
        return Finding(check="dkim", severity=severity, message=message, name=qname)

    if ans.failed:
        return [_failure("dkim", ans, "DKIM")]
    if not ans.records:
        return [note(Severity.ERROR, f"selector {selector!r}: no DKIM key record")]
    findings: list[Finding] = []
    if len(ans.records) > 1:
        # RFC 6376 section 3.6.2.2: which of several records a verifier uses is undefined.
        findings.append(note(Severity.WARNING, f"{len(ans.records)} TXT records at the selector"))
    record = ans.records[0]
    tags, bad = parse_tags(record)
    findings += [note(Severity.ERROR, f"malformed tag {b!r} (RFC 6376 section 3.2)") for b in bad]
    values = dict(tags)
    version = values.get("v")
    if version is not None and (version != "DKIM1" or tags[0][0] != "v"):
        findings.append(note(Severity.ERROR, "v= must be DKIM1 and the first tag"))
    key_type = values.get("k", "rsa").lower()
    if key_type not in ("rsa", "ed25519"):
        findings.append(note(Severity.ERROR, f"unknown key type k={key_type}"))
    if "y" in [f.strip() for f in values.get("t", "").split(":")]:
        findings.append(note(Severity.WARNING, "t=y: the domain is testing DKIM"))
    if "p" not in values:
        findings.append(note(Severity.ERROR, "no p= tag: not a key record"))
        return findings
    p = re.sub(r"\s+", "", values["p"])
    if not p:
        findings.append(note(Severity.WARNING, f"selector {selector!r}: key revoked (empty p=)"))
        return findings
    try:
        raw = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError):
        findings.append(note(Severity.ERROR, "p= is not valid base64"))
        return findings
    if key_type == "ed25519":
        if len(raw) == 32:
            findings.append(note(Severity.OK, f"selector {selector!r}: ed25519 key"))
        else:
            findings.append(note(Severity.ERROR, f"ed25519 key of {len(raw)} bytes, not 32"))
        return findings
    if key_type != "rsa":
        return findings
    bits = _rsa_bits(raw)
    if bits is None:
        findings.append(note(Severity.ERROR, "p= does not hold an RSA public key"))
    elif bits < 1024:
        findings.append(
            note(Severity.ERROR, f"RSA key of {bits} bits: verifiers reject < 1024 (RFC 8301 s3.2)")
        )
    elif bits < 2048:
        findings.append(
            note(Severity.WARNING, f"RSA key of {bits} bits: use 2048 or more (RFC 8301 s3.2)")
        )
    else:
        findings.append(note(Severity.OK, f"selector {selector!r}: RSA key of {bits} bits"))
    return findings


# --------------------------------------------------------------------------------------------
# MTA-STS (RFC 8461 section 3.1) and TLS-RPT (RFC 8460 section 3)


def _one_versioned_txt(
    client: DnsClient, qname: str, check: str, version: str, label: str, rfc: str
) -> str | list[Finding]:
    """The one TXT record of an optional versioned policy (MTA-STS, TLS-RPT), or the findings
    that say why there is none: lookup failure, no record, several records (both RFCs: a
    sender that finds more than one ignores them all)."""
    ans = client.query(qname, "TXT")
    if ans.failed:
        return [_failure(check, ans, label)]
    records = _select_versioned(ans.records, version)
    if not records:
        msg = f"no {label} record (optional, {rfc})"
        return [Finding(check=check, severity=Severity.WARNING, message=msg, name=qname)]
    if len(records) > 1:
        msg = f"{len(records)} {label} records: senders ignore them all"
        return [Finding(check=check, severity=Severity.ERROR, message=msg, name=qname)]
    return records[0]


def check_mta_sts(client: DnsClient, domain: str) -> list[Finding]:
    qname = f"_mta-sts.{normalize_name(domain)}"
    record = _one_versioned_txt(client, qname, "mta-sts", "STSv1", "MTA-STS", "RFC 8461")
    if isinstance(record, list):
        return record

    def note(severity: Severity, message: str) -> Finding:
        return Finding(check="mta-sts", severity=severity, message=message, name=qname)

    values = dict(parse_tags(record)[0])
    sts_id = values.get("id", "")
    # RFC 8461 section 3.1: sts-id = 1*32(ALPHA / DIGIT)
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", sts_id):
        return [note(Severity.ERROR, f"invalid or missing id= ({sts_id!r}): 1-32 letters/digits")]
    return [
        note(
            Severity.OK,
            f"MTA-STS id={sts_id} (policy at https://mta-sts.{normalize_name(domain)}"
            "/.well-known/mta-sts.txt, not fetched)",
        )
    ]


def check_tls_rpt(client: DnsClient, domain: str) -> list[Finding]:
    qname = f"_smtp._tls.{normalize_name(domain)}"
    record = _one_versioned_txt(client, qname, "tls-rpt", "TLSRPTv1", "TLS-RPT", "RFC 8460")
    if isinstance(record, list):
        return record

    def note(severity: Severity, message: str) -> Finding:
        return Finding(check="tls-rpt", severity=severity, message=message, name=qname)

    values = dict(parse_tags(record)[0])
    uris = [u.strip() for u in values.get("rua", "").split(",") if u.strip()]
    if not uris:
        return [note(Severity.ERROR, "no rua= in the TLS-RPT record (required, RFC 8460 s3)")]
    # RFC 8460 section 3: report URIs are mailto: or https:
    bad = [u for u in uris if not u.lower().startswith(("mailto:", "https:"))]
    if bad:
        return [note(Severity.ERROR, f"rua must be mailto: or https: URIs, got {', '.join(bad)}")]
    return [note(Severity.OK, f"TLS-RPT reports to {', '.join(uris)}")]


def check_domain(client: DnsClient, domain: str, *, selectors: Sequence[str] = ()) -> DomainReport:
    """Every check of a mail domain; ValueError (from :func:`mail_domain`) for a bad name."""
    domain = mail_domain(domain)
    findings: list[Finding] = []
    findings += check_mx(client, domain)
    findings += check_spf(client, domain)
    findings += check_dmarc(client, domain)
    for selector in selectors:
        findings += check_dkim(client, domain, selector)
    findings += check_mta_sts(client, domain)
    findings += check_tls_rpt(client, domain)
    return DomainReport(domain=domain, findings=tuple(findings))


# --------------------------------------------------------------------------------------------
# DNSBL (RFC 5782)


class Listing(StrEnum):
    LISTED = "listed"
    NOT_LISTED = "not_listed"
    QUERY_ERROR = "query_error"  # the list answered, but with an error code, not a listing
    UNKNOWN = "unknown"  # the lookup failed (timeout, refused, server failure): not checked

    @property
    def checked(self) -> bool:
        """Whether the list said listed or not; a query error says neither."""
        return self in (Listing.LISTED, Listing.NOT_LISTED)


# https://www.spamhaus.org/faqs/dnsbl-usage/ (return codes) and
# https://www.spamhaus.org/news/article/788/ (the 127.255.255.0/24 error range): errors about the
# query itself, which must never be read as a listing.
SPAMHAUS_ERRORS: Final[dict[str, str]] = {
    "127.255.255.252": "typing error in the DNSBL name",
    "127.255.255.254": "query via a public/open resolver (or generic unattributable rDNS)",
    "127.255.255.255": "excessive number of queries",
}
# Zen return codes, same source: which component list matched.
SPAMHAUS_ZEN_CODES: Final[dict[str, str]] = {
    "127.0.0.2": "SBL (Spamhaus Blocklist)",
    "127.0.0.3": "SBL CSS (Combined Spam Sources)",
    "127.0.0.4": "XBL (Exploits Blocklist)",
    "127.0.0.5": "XBL (Exploits Blocklist)",
    "127.0.0.6": "XBL (Exploits Blocklist)",
    "127.0.0.7": "XBL (Exploits Blocklist)",
    "127.0.0.9": "SBL DROP/EDROP",
    "127.0.0.10": "PBL (ISP maintained)",
    "127.0.0.11": "PBL (Spamhaus maintained)",
}
_LOOPBACK_NET: Final = ipaddress.ip_network("127.0.0.0/8")
_SPAMHAUS_ERROR_NET: Final = ipaddress.ip_network("127.255.255.0/24")


def is_spamhaus(zone: str) -> bool:
    return zone.endswith(("spamhaus.org", "spamhaus.net"))


@dataclass(frozen=True, slots=True, kw_only=True)
class BlocklistResult:
    ip: str
    zone: str
    qname: str
    status: Listing
    codes: tuple[str, ...] = ()
    meanings: tuple[str, ...] = ()
    txt: tuple[str, ...] = ()
    message: str = ""


def dnsbl_name(ip: str, zone: str) -> str:
    """RFC 5782 section 2.1 (IPv4: octets reversed) and 2.4 (IPv6: nibbles reversed)."""
    addr = ipaddress.ip_address(ip)
    reverse = dns.reversename.from_address(str(addr)).to_text(omit_final_dot=True)
    suffix = ".in-addr.arpa" if addr.version == 4 else ".ip6.arpa"
    return f"{reverse.removesuffix(suffix)}.{normalize_name(zone)}"


def check_blocklist(client: DnsClient, ip: str, zone: str) -> BlocklistResult:
    zone = normalize_name(zone)
    qname = dnsbl_name(ip, zone)
    ans = client.query(qname, "A")
    addr = str(ipaddress.ip_address(ip))
    if ans.failed:
        return BlocklistResult(
            ip=addr,
            zone=zone,
            qname=qname,
            status=Listing.UNKNOWN,
            message=f"lookup {_FAILURE_TEXT[ans.status]}",
        )
    if not ans.records:
        return BlocklistResult(
            ip=addr, zone=zone, qname=qname, status=Listing.NOT_LISTED, message="not listed"
        )
    codes = tuple(sorted(ans.records, key=ipaddress.ip_address))
    meanings: list[str] = []
    listed = 0
    for code in codes:
        code_ip = ipaddress.ip_address(code)
        if is_spamhaus(zone) and code_ip in _SPAMHAUS_ERROR_NET:
            meanings.append(SPAMHAUS_ERRORS.get(code, "Spamhaus query error"))
        elif code_ip not in _LOOPBACK_NET:
            # RFC 5782 section 2.3: list entries are in 127.0.0.0/8; anything else means a
            # wildcarded or defunct zone, not a listing.
            meanings.append("answer outside 127.0.0.0/8: zone is wildcarded or defunct")
        else:
            listed += 1
            meanings.append(
                SPAMHAUS_ZEN_CODES.get(code, "listed") if is_spamhaus(zone) else "listed"
            )
    txt: tuple[str, ...] = ()
    if listed:
        txt_ans = client.query(qname, "TXT")
        txt = txt_ans.records if txt_ans.status is Status.NOERROR else ()
        return BlocklistResult(
            ip=addr,
            zone=zone,
            qname=qname,
            status=Listing.LISTED,
            codes=codes,
            meanings=tuple(meanings),
            txt=txt,
            message="listed: " + "; ".join(meanings),
        )
    return BlocklistResult(
        ip=addr,
        zone=zone,
        qname=qname,
        status=Listing.QUERY_ERROR,
        codes=codes,
        meanings=tuple(meanings),
        message="query error, not a listing: " + "; ".join(meanings),
    )


def check_blocklists(
    client: DnsClient, ip: str, zones: Sequence[str] = DEFAULT_BLOCKLISTS
) -> list[BlocklistResult]:
    ipaddress.ip_address(ip)  # ValueError before any query
    return [check_blocklist(client, ip, zone) for zone in zones]


# --------------------------------------------------------------------------------------------
# Forward-confirmed reverse DNS: PTR names of an IP, and which of them resolve back to it.


@dataclass(frozen=True, slots=True, kw_only=True)
class FcrdnsResult:
    ip: str
    ptr_names: tuple[str, ...]
    confirmed_names: tuple[str, ...]
    confirmed: bool
    message: str
    unknown: bool = False  # not confirmed because a lookup failed, not because the DNS says so


def check_fcrdns(client: DnsClient, ip: str) -> FcrdnsResult:
    addr = ipaddress.ip_address(ip)
    reverse = dns.reversename.from_address(str(addr)).to_text(omit_final_dot=True)
    ptr = client.query(reverse, "PTR")
    if ptr.failed:
        return FcrdnsResult(
            ip=str(addr),
            ptr_names=(),
            confirmed_names=(),
            confirmed=False,
            message=f"PTR lookup {_FAILURE_TEXT[ptr.status]}",
            unknown=True,
        )
    names = tuple(normalize_name(n) for n in ptr.records)
    if not names:
        return FcrdnsResult(
            ip=str(addr), ptr_names=(), confirmed_names=(), confirmed=False, message="no PTR record"
        )
    rdtype = "A" if addr.version == 4 else "AAAA"
    confirmed: list[str] = []
    failures: list[str] = []
    for name in names:
        forward = client.query(name, rdtype)
        if forward.failed:
            failures.append(name)
        elif any(ipaddress.ip_address(r) == addr for r in forward.records):
            confirmed.append(name)
    if confirmed:
        message = f"confirmed: {', '.join(confirmed)} -> {addr}"
    elif failures:
        message = (
            f"forward lookup of {', '.join(failures)} failed: unknown whether it resolves back"
        )
    else:
        message = f"no PTR name resolves back to {addr}: {', '.join(names)}"
    return FcrdnsResult(
        ip=str(addr),
        ptr_names=names,
        confirmed_names=tuple(confirmed),
        confirmed=bool(confirmed),
        message=message,
        unknown=not confirmed and bool(failures),
    )
