"""Diagnoses: why mail does not go out, with evidence and a remedy.

Each problem class is one detector row in ``DETECTORS`` (an explicit, ordered tuple). A detector
runs one named query from ``pipeline/queries/diagnose.sql``; each row it returns becomes a
:class:`Finding` with a severity, its evidence (count, time span, example log lines or bounces,
affected destinations, further facts) and a remedy. The thresholds that decide what counts as a
problem are the policy in :class:`Thresholds`, passed in by the caller.

The one detector that needs more than SQL, our own forward-confirmed reverse DNS, combines
remote refusals for missing PTR records with the FCrDNS results of ``mtalens.pipeline.dns`` for our
addresses found in the logs. It reads the DNS cache kept in the store (``mtalens dns fcrdns``
fills it); a caller may pass a live :class:`mtalens.pipeline.dns.DnsClient` instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

import dns.resolver
import dns.reversename

from mtalens.pipeline.dns import DnsCache, DnsClient, FcrdnsResult, check_fcrdns
from mtalens.pipeline.named_sql import named_queries
from mtalens.pipeline.remedies_mta import template_for
from mtalens.pipeline.store import Store

QUERY_FILE: Final = "diagnose.sql"


class Severity(StrEnum):
    CRITICAL = "critical"  # mail is being lost or refused now; act
    WARNING = "warning"  # degraded delivery or an exposure; plan a fix
    NOTICE = "notice"  # worth knowing; often normal

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK: Final = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.NOTICE: 2}

FactValue = str | int | float | tuple[str, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    examples: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    facts: tuple[tuple[str, FactValue], ...] = ()

    def fact(self, name: str) -> FactValue:
        return dict(self.facts).get(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    id: str  # "<detector>:<subject>", stable across runs
    problem: str  # the problem class (the detector id)
    title: str
    severity: Severity
    evidence: Evidence
    remedy: str
    # a grouped finding's per-subject findings, the most severe and frequent first
    members: tuple[Finding, ...] = ()

    def flat(self) -> tuple[Finding, ...]:
        """This finding and the members it groups."""
        return (self, *self.members)

    def as_dict(self) -> dict[str, Any]:
        ev = self.evidence
        out: dict[str, Any] = {
            "id": self.id,
            "problem": self.problem,
            "title": self.title,
            "severity": str(self.severity),
            "evidence": {
                "count": ev.count,
                "first_seen": ev.first_seen.isoformat() if ev.first_seen else None,
                "last_seen": ev.last_seen.isoformat() if ev.last_seen else None,
                "examples": list(ev.examples),
                "destinations": list(ev.destinations),
                "facts": {k: list(v) if isinstance(v, tuple) else v for k, v in ev.facts},
            },
            "remedy": self.remedy,
        }
        if self.members:
            out["members"] = [m.as_dict() for m in self.members]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """What counts as a problem. House policy, not a standard: tune per site."""

    bf_failures: int = 10  # SASL failures from one IP in the range
    bf_usernames: int = 5  # distinct user names tried from one IP
    port25_destinations: int = 3  # unrelated destinations failing to connect on port 25
    delay_factor: float = 4.0  # recent p90 of a stage vs the earlier p90
    delay_min_growth: float = 10.0  # seconds the p90 must have grown by
    delay_min_samples: int = 5  # deliveries in each half before comparing
    userunknown_warning_rate: float = 0.02  # share of recipients; list hygiene slips above
    userunknown_critical_rate: float = 0.10
    mailboxfull_warning_rate: float = 0.05

    def params(self) -> dict[str, Any]:
        return {
            "bf_failures": self.bf_failures,
            "bf_usernames": self.bf_usernames,
            "port25_destinations": self.port25_destinations,
            "delay_factor": self.delay_factor,
            "delay_min_growth": self.delay_min_growth,
            "delay_min_samples": self.delay_min_samples,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    store: Store
    since: datetime
    until: datetime
    thresholds: Thresholds = field(default_factory=Thresholds)
    dns: DnsClient | None = None  # for FCrDNS; None: read the store's DNS cache only
    our_ips: tuple[str, ...] = ()  # added to the addresses found in the logs
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # the MTA whose words the remedies use (a log format's name); "": the one that logged most
    # of the range's deliveries (diagnose() decides)
    mta: str = ""


Row = Mapping[str, Any]


def run_query(
    ctx: Context, name: str, extra: Mapping[str, Any] | None = None, *, file: str = QUERY_FILE
) -> list[Row]:
    """Run one named query of ``file`` (diagnose.sql, or aggregate_reports.sql for the reports
    receivers send) with the context's range and thresholds."""
    sql = named_queries(file)[name]
    params: dict[str, Any] = {"since": ctx.since, "until": ctx.until, **ctx.thresholds.params()}
    if extra:
        params.update(extra)
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    if "delivery_line(" in sql:  # the examples' macro (a temporary one: read-only stores too)
        ctx.store.con.execute(named_queries(QUERY_FILE)["_delivery_line"])
    cur = ctx.store.con.execute(sql, used)
    cols = [d[0] for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


_EVIDENCE_COLUMNS: Final = frozenset(
    {"subject", "count", "first_seen", "last_seen", "examples", "destinations"}
)


def _fact(v: Any) -> FactValue:
    if v is None or isinstance(v, str | int | float):
        return v
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v if x is not None)
    return str(v)


def evidence_of(row: Row) -> Evidence:
    return Evidence(
        count=int(row["count"]),
        first_seen=row.get("first_seen"),
        last_seen=row.get("last_seen"),
        examples=tuple(row.get("examples") or ()),
        destinations=tuple(d for d in (row.get("destinations") or ()) if d),
        facts=tuple((k, _fact(v)) for k, v in row.items() if k not in _EVIDENCE_COLUMNS),
    )


class Detector(Protocol):
    @property
    def id(self) -> str: ...

    def detect(self, ctx: Context) -> list[Finding]: ...


class _Fmt(dict[str, Any]):
    """str.format_map values: row columns, lists joined, unknown names left visible."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def mta_remedy(ctx: Context, problem: str, row: Row) -> str | None:
    """The remedy of ``problem`` for ``row`` in the terms of the context's MTA, where it has its
    own (pipeline/remedies_mta.py); None: the detector's own remedy stands."""
    template = template_for(ctx.mta, problem, row.get("subject"))
    if template is None:
        return None
    values = dict(row)
    values.setdefault(
        "delisting",
        DELISTING.get(
            str(row.get("subject")),
            "find the list operator's lookup page and follow its delisting steps",
        ),
    )
    return _fmt(template, values)


def dominant_mta(ctx: Context) -> str:
    """The MTA (log format) that logged most of the range's deliveries, or else of its
    messages, or else of its other events (connections, TLS); postfix for none."""
    for view, when in (("deliveries", "logged_at"), ("messages", "first_seen"),
                       ("events", "logged_at")):  # fmt: skip
        row = ctx.store.con.execute(
            f"SELECT mta FROM {view} WHERE {when} >= ? AND {when} < ? "
            "GROUP BY mta ORDER BY count(*) DESC, mta LIMIT 1",
            [ctx.since, ctx.until],
        ).fetchone()
        if row and row[0]:
            return str(row[0])
    return "postfix"


def _fmt(template: str, row: Row) -> str:
    values = _Fmt()
    for k, v in row.items():
        values[k] = ", ".join(map(str, v)) if isinstance(v, list | tuple) else v
    values["n_destinations"] = len(row.get("destinations") or ())
    return template.format_map(values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grouped:
    """One finding for all the rows of a detector whose rows are the same problem from many
    subjects (clients, hosts): a log with 545 clients sending AUTH without TLS is one problem,
    not 545 findings. ``title`` is a template over ``n`` (the subjects), ``count`` and every
    integer column summed over the rows, and ``top`` (the subject with the most events)."""

    title: str
    unit: str  # what a subject is: "client", "relay host"
    top: int = 10  # subjects listed in the finding (all are counted)


def group_findings(detector_id: str, found: Sequence[Finding], rows: Sequence[Row],
                   grouped: Grouped) -> Finding:  # fmt: skip
    """The findings of one detector (one per row of ``rows``, same order) as one finding with
    a stable id (``<detector>:all``): the worst severity, the summed count, a table of the
    ``grouped.top`` subjects with the most events, and the remedy of the worst one."""
    order = sorted(range(len(found)), key=lambda i: (found[i].severity.rank,
                                                      -found[i].evidence.count, found[i].id))  # fmt: skip
    worst = found[order[0]]
    sums: dict[str, int] = {}
    for row in rows:
        for k, v in row.items():
            if isinstance(v, int) and not isinstance(v, bool):
                sums[k] = sums.get(k, 0) + v
    evs = [f.evidence for f in found]
    firsts = [e.first_seen for e in evs if e.first_seen is not None]
    lasts = [e.last_seen for e in evs if e.last_seen is not None]
    subjects = [str(rows[i]["subject"]) for i in order]
    table = tuple(f"{subjects[j]}: {found[i].evidence.count}"
                  for j, i in enumerate(order[: grouped.top]))  # fmt: skip
    total = sum(e.count for e in evs)
    values: dict[str, Any] = {**sums, "n": len(found), "count": total, "top": subjects[0]}
    also = ""
    if len(found) > 1 and subjects[0] in worst.remedy:
        also = f" (Written for {subjects[0]}; it applies to the other {len(found) - 1} too.)"
    return Finding(
        id=f"{detector_id}:all",
        problem=detector_id,
        title=_fmt(grouped.title, values),
        severity=worst.severity,
        evidence=Evidence(
            count=total,
            first_seen=min(firsts) if firsts else None,
            last_seen=max(lasts) if lasts else None,
            examples=tuple(ex for i in order[:3] for ex in found[i].evidence.examples[:1]),
            destinations=tuple(sorted({d for e in evs for d in e.destinations})),
            facts=(
                (f"{grouped.unit}s", len(found)),
                (f"top {grouped.unit}s (events)", table),
            ),
        ),
        remedy=worst.remedy + also,
        members=tuple(found[i] for i in order),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlDetector:
    """One named query; one finding per row (or one for all rows, ``grouped``). ``severity``
    may look at the row (None: skip the row)."""

    id: str
    title: str  # str.format template over the row's columns
    remedy: str | Callable[[Row], str]
    severity: Severity | Callable[[Row, Thresholds], Severity | None]
    query: str = ""  # default: the id with "-" as "_"
    query_file: str = QUERY_FILE  # REPORTS_QUERY_FILE for the reports receivers send
    grouped: Grouped | None = None

    def detect(self, ctx: Context) -> list[Finding]:
        out: list[Finding] = []
        kept: list[Row] = []
        for row in run_query(ctx, self.query or self.id.replace("-", "_"), file=self.query_file):
            sev = self.severity(row, ctx.thresholds) if callable(self.severity) else self.severity
            if sev is None:
                continue
            remedy = mta_remedy(ctx, self.id, row) or (
                self.remedy(row) if callable(self.remedy) else _fmt(self.remedy, row)
            )
            kept.append(row)
            out.append(
                Finding(
                    id=f"{self.id}:{row['subject']}",
                    problem=self.id,
                    title=_fmt(self.title, row),
                    severity=sev,
                    evidence=evidence_of(row),
                    remedy=remedy,
                )
            )
        if self.grouped is not None and out:
            return [group_findings(self.id, out, kept, self.grouped)]
        return out


# --------------------------------------------------------------------------------------------
# Remedies that depend on the row

# How to get off a list. Operators' own pages.
DELISTING: Final[Mapping[str, str]] = {
    "spamhaus": "look the IP up at https://check.spamhaus.org/ and follow the removal steps for "
    "the listing (SBL/XBL/CSS/PBL); a PBL listing means the ISP marks the range as dynamic: "
    "send through your provider's relay or have the ISP/host remove the range",
    "spamcop": "SpamCop listings expire 24 hours after the last report "
    "(https://www.spamcop.net/fom-serve/cache/297.html): stop the source of the reports, then "
    "check https://www.spamcop.net/bl.shtml",
    "microsoft": "request delisting at https://sender.office.com/ (Office 365 delist portal) "
    "and enrol in SNDS/JMRP (https://sendersupport.olc.protection.outlook.com/snds/)",
    "barracuda": "request removal at https://www.barracudacentral.org/rbl/removal-request",
    "sorbs": "see http://www.sorbs.net/lookup.shtml for the listing and its delisting procedure",
    "spamrats": "request removal at https://www.spamrats.com/removal.php",
    "mailspike": "check and request removal at https://mailspike.org/iplookup.html",
    "psbl": "remove the IP at https://psbl.org/ (self-service)",
    "invaluement": "see https://www.invaluement.com/lookup/ for the listing and removal",
    "backscatterer": "backscatterer lists senders of misdirected bounces "
    "(https://www.backscatterer.org/): reject at SMTP time instead of bouncing after accepting",
}


def _blocklist_remedy(row: Row) -> str:
    name = str(row["subject"])
    how = DELISTING.get(name, "find the list operator's lookup page and follow its delisting steps")
    return (
        f"Our sending IP is on the {name} blocklist. First stop the cause (a compromised account "
        "or web form sending spam: check the outgoing queue with `postqueue -p` and the SASL "
        "logins; a shared/dynamic IP range), then " + how + ". Check the listing with "
        "`mtalens dns blocklist <our IP>`. Until delisted, mail to these destinations can go "
        "through a relay with a clean reputation (relayhost in postconf(5))."
    )


_AUTH_REMEDY: Final[Mapping[str, str]] = {
    "SPF": "Publish or extend the SPF record of the envelope sender's domain so it authorises "
    "this server's IP (RFC 7208; `mtalens dns check DOMAIN` shows the record and its lookup "
    "count, which must stay at or under 10).",
    "DKIM": "Sign outgoing mail with DKIM (an OpenDKIM or rspamd milter: smtpd_milters and "
    "non_smtpd_milters in postconf(5)) and publish the public key at "
    "<selector>._domainkey.<domain> (RFC 6376); check it with `mtalens dns check DOMAIN -s "
    "SELECTOR`.",
    "DMARC": "The From: domain's DMARC policy rejects mail that passes neither SPF nor DKIM "
    "aligned with the From: domain (RFC 7489 section 3.1). Sign with DKIM for the From: domain, "
    "or send from an envelope domain aligned with it whose SPF record includes this server.",
    "SPF and DKIM": "Destinations require SPF or DKIM to pass (Gmail and Yahoo sender "
    "requirements, https://support.google.com/mail/answer/81126). Publish SPF for the envelope "
    "domain (RFC 7208) and DKIM-sign (RFC 6376) aligned with the From: domain (RFC 7489).",
}


def _auth_remedy(row: Row) -> str:
    return _AUTH_REMEDY.get(
        str(row["subject"]),
        "Check SPF, DKIM and DMARC for the sending domains with `mtalens dns check DOMAIN`.",
    )


_STAGE_REMEDY: Final[Mapping[str, str]] = {
    "before_queue": "Time before the queue manager grew: arrival, cleanup(8), header/body "
    "checks, milters or a content filter (content_filter in postconf(5)) are slow. Check the "
    "filter's load and timeouts and the disk holding the queue.",
    "in_queue": "Time waiting in the queue manager grew: the active queue is congested (many "
    "deferred messages competing, a slow transport hogging it). Run `qshape active` and "
    "`qshape deferred` (QSHAPE_README), look for qmgr 'is using up N of N active queue "
    "entries' warnings, and raise the slow transport's concurrency or move bulk mail to its "
    "own transport (default_destination_concurrency_limit, qmgr_message_active_limit).",
    "connect": "Connection set-up grew: DNS lookups, TCP connect, HELO or the TLS handshake "
    "towards destinations is slow. Check the resolver this server uses, destinations that "
    "tarpit, and smtp_connect_timeout/smtp_helo_timeout (postconf(5)).",
    "transmit": "Transmission time grew: destinations accept data slowly (tarpitting, "
    "rate limiting) or messages got bigger. Compare the message sizes and the destinations "
    "listed; consider smtp_destination_rate_delay for throttling destinations.",
}


def _delay_remedy(row: Row) -> str:
    return _STAGE_REMEDY.get(str(row["subject"]), "")


def _auth_tls_severity(row: Row, t: Thresholds) -> Severity | None:
    return Severity.CRITICAL if (row.get("successful_logins") or 0) > 0 else Severity.WARNING


def _port25_severity(row: Row, t: Thresholds) -> Severity | None:
    """Blocked only if connections to port 25 mostly fail: no delivery over port 25 in the
    same span is critical; fewer destinations reached than failing, and fewer deliveries than
    failures, a warning; otherwise those destinations are unreachable, not our port."""
    sent = int(row.get("sent_via_port25_meanwhile") or 0)
    ok = int(row.get("destinations_ok") or 0)
    failing = int(row.get("destinations_failing_only") or 0)
    if sent == 0:
        return Severity.CRITICAL
    if failing > ok and int(row.get("count") or 0) > sent:
        return Severity.WARNING
    return None


def _dns_severity(row: Row, t: Thresholds) -> Severity | None:
    return Severity.WARNING if row["subject"] == "lookup-failing" else Severity.NOTICE


def _throttle_severity(row: Row, t: Thresholds) -> Severity | None:
    return Severity.WARNING if row["subject"] == "rate-limiting" else Severity.NOTICE


def _recipient_severity(row: Row, t: Thresholds) -> Severity | None:
    rate = float(row.get("rate") or 0.0)
    if row["subject"] == "userunknown":
        if rate >= t.userunknown_critical_rate:
            return Severity.CRITICAL
        return Severity.WARNING if rate >= t.userunknown_warning_rate else Severity.NOTICE
    return Severity.WARNING if rate >= t.mailboxfull_warning_rate else Severity.NOTICE


_DNS_TITLE: Final = {
    "lookup-failing": "MX/address lookups failing temporarily for {n_destinations} destination(s)",
    "nxdomain": "Recipient domains that do not exist (NXDOMAIN): {n_destinations}",
}
_DNS_REMEDY: Final = {
    "lookup-failing": "Lookups end in 'try again' (SERVFAIL or timeout). If only these domains "
    "fail, their DNS is broken (check with `mtalens dns check DOMAIN`) and mail waits in the "
    "queue until it works or expires (maximal_queue_lifetime). If many unrelated domains fail, "
    "this server's resolver is the problem: check /etc/resolv.conf (and the copy in Postfix's "
    "chroot, /var/spool/postfix/etc/resolv.conf).",
    "nxdomain": "These domains do not exist: usually typos in addresses (gmial, hotmial). "
    "Remove or correct the addresses; they are hard bounces.",
}
_THROTTLE_TITLE: Final = {
    "greylisting": "Greylisting by {n_destinations} destination(s)",
    "rate-limiting": "Rate limiting by {n_destinations} destination(s)",
}
_THROTTLE_REMEDY: Final = {
    "greylisting": "Greylisting defers the first attempt from an unknown sender (RFC 6647); "
    "mail goes through on retry ({delivered_later} already did). Keep the sending IP stable "
    "(smtp_bind_address) and do not shorten minimal_backoff_time much below the greylisting "
    "delay. Nothing to fix unless delays matter; then ask the destination to allowlist you.",
    "rate-limiting": "Destinations throttle us for volume or reputation. Slow down per "
    "destination: a dedicated transport with a low destination concurrency and "
    "smtp_destination_rate_delay (postconf(5)); warm up new IPs gradually; check complaint "
    "rates and follow the providers' sender guidelines "
    "(https://support.google.com/mail/answer/81126, https://senders.yahooinc.com/best-practices/).",
}
_RECIPIENT_TITLE: Final = {
    "userunknown": "Unknown recipients: {count} ({rate_pct} of recipients)",
    "mailboxfull": "Mailbox full: {count} recipient(s) ({rate_pct} of recipients)",
}
_RECIPIENT_REMEDY: Final = {
    "userunknown": "These addresses do not exist (hard bounces). Suppress them (never send "
    "again), confirm sign-ups (double opt-in) and prune old lists: a user-unknown rate above "
    "a few percent harms sending reputation with large mailbox providers.",
    "mailboxfull": "Full mailboxes are soft failures: retry later, and suppress an address only "
    "after it has stayed full for days (an abandoned mailbox).",
}


def _keyed(table: Mapping[str, str]) -> Callable[[Row], str]:
    return lambda row: _fmt(table.get(str(row["subject"]), ""), row)


def _recipient_title(row: Row) -> str:
    r = dict(row)
    r["rate_pct"] = f"{float(row.get('rate') or 0.0):.1%}"
    return _fmt(_RECIPIENT_TITLE.get(str(row["subject"]), "{subject}: {count}"), r)


@dataclass(frozen=True, slots=True, kw_only=True)
class _KeyedDetector:
    """A query whose rows are kinds of one problem, each with its own title and remedy."""

    id: str
    titles: Mapping[str, str] | Callable[[Row], str]
    remedies: Mapping[str, str]
    severity: Callable[[Row, Thresholds], Severity | None]

    def detect(self, ctx: Context) -> list[Finding]:
        out: list[Finding] = []
        for row in run_query(ctx, self.id.replace("-", "_")):
            sev = self.severity(row, ctx.thresholds)
            if sev is None:
                continue
            title = (
                self.titles(row)
                if callable(self.titles)
                else _fmt(self.titles.get(str(row["subject"]), "{subject}"), row)
            )
            out.append(
                Finding(
                    id=f"{self.id}:{row['subject']}",
                    problem=self.id,
                    title=title,
                    severity=sev,
                    evidence=evidence_of(row),
                    remedy=mta_remedy(ctx, self.id, row) or _keyed(self.remedies)(row),
                )
            )
        return out


# --------------------------------------------------------------------------------------------
# Our own reverse DNS: remote refusals plus forward-confirmed reverse DNS from mtalens.pipeline.dns


def cache_only_client(store: Store, clock: Callable[[], datetime]) -> DnsClient:
    """A DnsClient that answers from the store's DNS cache and sends nothing: its resolver has
    no nameservers, so a cache miss is a failed lookup, never a query to anyone."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = []
    return DnsClient(resolver, clock=clock, cache=DnsCache(store))


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnReverseDnsDetector:
    id: str = "own-reverse-dns"

    def _fcrdns(self, ctx: Context, ip: str) -> FcrdnsResult | None:
        if ctx.dns is not None:
            return check_fcrdns(ctx.dns, ip)
        reverse = dns.reversename.from_address(ip).to_text(omit_final_dot=True).lower()
        if DnsCache(ctx.store).get(reverse, "PTR", ctx.clock()) is None:
            return None  # never checked (or expired): say nothing rather than guess
        return check_fcrdns(cache_only_client(ctx.store, ctx.clock), ip)

    def detect(self, ctx: Context) -> list[Finding]:
        refusals = run_query(ctx, "requireptr")
        ips = sorted(
            {str(r["ip"]) for r in run_query(ctx, "our_addresses")} | set(ctx.our_ips),
            key=lambda s: (ipaddress.ip_address(s).version, ipaddress.ip_address(s)),
        )
        results = [r for r in (self._fcrdns(ctx, ip) for ip in ips) if r is not None]
        failed = [r for r in results if not r.confirmed]
        if not refusals and not failed:
            return []
        row: dict[str, Any] = (
            dict(refusals[0])
            if refusals
            else {
                "subject": "reverse-dns",
                "count": 0,
                "first_seen": None,
                "last_seen": None,
                "examples": [],
                "destinations": [],
            }
        )
        row["our_addresses"] = ips
        row["fcrdns"] = [
            f"{r.ip}: {'ok' if r.confirmed else 'FAIL'} ({r.message})" for r in results
        ]
        unchecked = [ip for ip in ips if ip not in {r.ip for r in results}]
        row["fcrdns_unchecked"] = unchecked
        names = ", ".join(f.ip for f in failed) or ", ".join(ips) or "our sending IP"
        remedy = (
            f"Give {names} a PTR record naming this server's host name (set by whoever owns "
            "the IP range: the ISP or hosting provider), and make that name resolve back to the "
            "same IP (an A/AAAA record): forward-confirmed reverse DNS. Use the same name as "
            "myhostname/smtp_helo_name (postconf(5)). Large providers refuse mail without it "
            "(https://support.google.com/mail/answer/81126)."
        )
        remedy = mta_remedy(ctx, self.id, {**row, "names": names, "subject": None}) or remedy
        if unchecked:
            remedy += " Check with `mtalens dns fcrdns " + " ".join(unchecked) + "`."
        n = int(refusals[0]["count"]) if refusals else 0
        title = f"Our reverse DNS is missing or not forward-confirmed ({n} refusals)"
        return [
            Finding(
                id=f"{self.id}:{'+'.join(f.ip for f in failed) or 'refusals'}",
                problem=self.id,
                title=title,
                severity=Severity.CRITICAL,
                evidence=evidence_of(row),
                remedy=remedy,
            )
        ]


# --------------------------------------------------------------------------------------------
# The registry: one row per problem class, in the order a reader wants them.

DETECTORS: Final[tuple[Detector, ...]] = (
    SqlDetector(
        id="relay-denied-outbound",
        title="Relay host {subject} refuses to relay for us ({count} refusals)",
        grouped=Grouped(
            title="Relay hosts refuse to relay for us: {n} host(s), {count} refusals (most: {top})",
            unit="relay host",
        ),
        remedy="{subject} answers 'Relay access denied': it does not know us as a client. If it "
        "is your provider's smarthost, authenticate to it (smtp_sasl_auth_enable = yes, "
        "smtp_sasl_password_maps, smtp_tls_security_level = encrypt in postconf(5)) or use the "
        "host name and port the provider documents; if relayhost points at the wrong host, fix "
        "relayhost.",
        severity=Severity.CRITICAL,
    ),
    SqlDetector(
        id="mail-loop",
        title="Mail for {subject} loops back to this server ({count})",
        grouped=Grouped(
            title="Mail loops back to this server for {n} domain(s) ({count})", unit="domain"
        ),
        remedy="The MX of {subject} points at this server, but Postfix does not treat the domain "
        "as its own. Add it to mydestination, virtual_mailbox_domains or virtual_alias_domains "
        "(or relay_domains with a transport), or correct the MX record. Behind NAT or a "
        "load balancer, list the public address in proxy_interfaces (postconf(5)).",
        severity=Severity.CRITICAL,
    ),
    SqlDetector(
        id="relay-denied-inbound",
        title="Relay attempts refused: {count} from {clients} client(s)",
        remedy="The server correctly refuses to relay for unknown clients (reject_unauth_"
        "destination). If some of these are your own users or devices, they must authenticate "
        "on the submission port 587 or be listed in mynetworks; otherwise these are open-relay "
        "probes: nothing to fix, but postscreen(8) or fail2ban can keep them out.",
        severity=Severity.NOTICE,
    ),
    SqlDetector(
        id="auth-bruteforce",
        title="SASL password guessing from {subject}: {count} failures, {usernames} user names",
        grouped=Grouped(
            title="SASL password guessing from {n} client(s): {count} failures (most from {top})",
            unit="client",
        ),
        remedy="Block {subject} (fail2ban's postfix-sasl jail, or check_client_access in "
        "smtpd_client_restrictions), limit attempts (smtpd_client_auth_rate_limit, anvil(8)), "
        "offer AUTH only on the submission ports (smtpd_sasl_auth_enable = yes in master.cf for "
        "submission/smtps, not in main.cf), and check the targeted accounts for weak passwords.",
        severity=Severity.CRITICAL,
    ),
    SqlDetector(
        id="auth-without-tls",
        title="AUTH without TLS from {subject} ({count} sessions, {successful_logins} logins)",
        grouped=Grouped(
            title="AUTH without TLS from {n} client(s): {count} sessions, "
            "{successful_logins} successful logins",
            unit="client",
        ),
        remedy="Passwords were sent in clear text. Set smtpd_tls_auth_only = yes (postconf(5)) so "
        "AUTH is offered only after STARTTLS, and have clients use port 587 with STARTTLS or "
        "port 465 with implicit TLS (RFC 8314). Change the passwords used in these sessions.",
        severity=_auth_tls_severity,
    ),
    SqlDetector(
        id="port25-blocked",
        title="Outbound port 25 looks blocked: connections to {n_destinations} destinations fail",
        remedy="Connections to port 25 of many unrelated destinations time out or are refused "
        "while nothing else is wrong with them: the network provider filters outbound port 25 "
        "(common on residential lines and cloud hosts). Ask the provider to open it, or relay "
        "through a smarthost on the submission port: relayhost = [smtp.provider.example]:587 "
        "with smtp_sasl_auth_enable = yes, smtp_sasl_password_maps and "
        "smtp_tls_security_level = encrypt (postconf(5), RFC 6409).",
        severity=_port25_severity,
    ),
    _KeyedDetector(
        id="dns-failures", titles=_DNS_TITLE, remedies=_DNS_REMEDY, severity=_dns_severity
    ),
    OwnReverseDnsDetector(),
    SqlDetector(
        id="blocklisted",
        title="Blocklisted by {subject}: {count} refusals from {n_destinations} destination(s)",
        remedy=_blocklist_remedy,
        severity=Severity.CRITICAL,
    ),
    SqlDetector(
        id="sender-authentication",
        title="{subject} rejections by {n_destinations} destination(s) ({count})",
        remedy=_auth_remedy,
        severity=Severity.CRITICAL,
    ),
    SqlDetector(
        id="tls-outbound",
        title="TLS to {subject} fails ({count}): {error}",
        grouped=Grouped(
            title="TLS to {n} destination host(s) fails ({count} attempts; most: {top})",
            unit="host",
        ),
        remedy="For 'TLS is required, but was not offered': a policy (smtp_tls_security_level = "
        "encrypt, or smtp_tls_policy_maps) demands TLS that {subject} does not offer; relax the "
        "policy for that destination or ask its operator to enable STARTTLS. For handshake "
        "failures: the two sides share no protocol version or cipher (see the TLS library "
        "errors); check smtp_tls_protocols and smtp_tls_mandatory_protocols (TLS_README).",
        severity=Severity.WARNING,
    ),
    SqlDetector(
        id="tls-inbound",
        title="Inbound TLS handshakes failing ({count} log lines)",
        remedy="Clients fail the TLS handshake with this server: usually old clients (TLS 1.0 "
        "only) or scanners. If real correspondents are among the clients, compare "
        "smtpd_tls_protocols with what they support; otherwise nothing to do.",
        severity=Severity.NOTICE,
    ),
    _KeyedDetector(
        id="throttling",
        titles=_THROTTLE_TITLE,
        remedies=_THROTTLE_REMEDY,
        severity=_throttle_severity,
    ),
    _KeyedDetector(
        id="recipient-failures",
        titles=_recipient_title,
        remedies=_RECIPIENT_REMEDY,
        severity=_recipient_severity,
    ),
    SqlDetector(
        id="delay-growth",
        title="Queue delay grew in stage {subject}: p90 {earlier_p90_s}s -> {recent_p90_s}s",
        remedy=_delay_remedy,
        severity=Severity.WARNING,
    ),
)


# --------------------------------------------------------------------------------------------
# DMARC aggregate and TLS-RPT reports (`mtalens reports ingest`, pipeline/aggregate_reports.py).
# Queries: pipeline/queries/aggregate_reports.sql. Every policy domain in a report is ours: a
# receiver sends aggregate reports to the domain's own rua address (RFC 7489 section 7.2).

REPORTS_QUERY_FILE: Final = "aggregate_reports.sql"


class SourceKind(StrEnum):
    OWN = "own"  # our server, misconfigured for some of its mail
    FORWARDER = "forwarder"  # forwarders and mailing lists re-sending our mail
    SPOOFING = "spoofing"  # not ours, never aligned: someone using our domain


def classify_dmarc_source(row: Row, our_ips: frozenset[str]) -> SourceKind:
    """Heuristics, in order: an address the logs or --our-ip name is ours; a receiver's
    policy override reason (forwarded, mailing_list, trusted_forwarder; RFC 7489 Appendix C)
    means a forwarder; an IP that passes SPF aligned is in our SPF record, so ours; an IP
    that sends DKIM-aligned mail and also unsigned failing mail is a server of ours that signs
    only part of it; a broken or foreign-aligned signature of ours is mail re-sent by a list or
    forwarder; anything else never aligns and is taken for spoofing."""
    if str(row["source_ip"]) in our_ips:
        return SourceKind.OWN
    if int(row["override_messages"] or 0) > 0:
        return SourceKind.FORWARDER
    if int(row["spf_aligned_messages"] or 0) > 0:
        return SourceKind.OWN
    dkim_aligned = int(row["dkim_aligned_messages"] or 0)
    own_signature = int(row["own_signature_messages"] or 0)
    if dkim_aligned > 0 and own_signature < int(row["count"]):
        return SourceKind.OWN
    if own_signature > 0 or dkim_aligned > 0:
        return SourceKind.FORWARDER
    return SourceKind.SPOOFING


def _list_text(v: Any) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, list | tuple) and v else "-"


def _own_source_remedy(row: Row) -> str:
    ip, domain = row["source_ip"], row["policy_domain"]
    parts = [
        f"{ip} sends mail for {domain} that passes DMARC and mail that fails it: a server of "
        "ours configured for only part of its mail."
    ]
    if int(row["spf_failing_messages"] or 0):
        parts.append(
            f"SPF: authorise {ip} in the SPF record of the envelope domain(s) "
            f"{_list_text(row['spf_domains_failing'])} (RFC 7208 section 5) and use an envelope "
            f"domain aligned with {domain} (same organisational domain, RFC 7489 section 3.1.2)."
        )
    if int(row["dkim_failing_messages"] or 0):
        parts.append(
            f"DKIM: sign every message leaving {ip} with d={domain} or a subdomain (RFC 6376; "
            "an OpenDKIM or rspamd milter in smtpd_milters and non_smtpd_milters, postconf(5)). "
            f"Signatures seen on failing mail: {_list_text(row['dkim_signatures_failing'])}; "
            "check that each selector's key is published (`mtalens dns check DOMAIN -s "
            "SELECTOR`) and that nothing rewrites messages after signing."
        )
    parts.append(
        "Aligned DKIM is the mechanism that survives forwarding; fix it before tightening the "
        "policy."
    )
    return " ".join(parts)


def _forwarder_remedy(row: Row) -> str:
    return (
        f"{row['source_ip']} re-sends mail from {row['policy_domain']}: forwarding breaks SPF "
        "(the forwarder's address is not in our record) and lists that change the subject or "
        "body break DKIM. Sign all our mail with aligned DKIM (it survives plain forwarding); "
        "receivers that honour ARC (RFC 8617) can trust the forwarder's chain. Before moving "
        "to p=reject, expect this mail to be refused: the list or forwarder should rewrite the "
        "From: or keep the message intact."
    )


def _spoofing_remedy(row: Row) -> str:
    policy = str(row.get("policy") or "none")
    domain = row["policy_domain"]
    head = (
        f"{row['source_ip']} is not one of our servers and its mail with From: {domain} passes "
        "neither SPF nor DKIM aligned: likely spoofing, or a service sending for us that was "
        "never set up (then add it to the SPF record and give it a DKIM key for our domain). "
    )
    if policy == "none":
        return head + (
            f"With p=none receivers deliver it anyway: publish p=quarantine, then p=reject at "
            f"_dmarc.{domain} (RFC 7489 section 6.3) once our own sources align."
        )
    return head + f"Receivers already act on it (p={policy}); nothing to change on our side."


def _own_severity(row: Row) -> Severity:
    return Severity.CRITICAL if int(row["refused_messages"] or 0) > 0 else Severity.WARNING


def _spoofing_severity(row: Row) -> Severity:
    return Severity.WARNING if str(row.get("policy") or "none") == "none" else Severity.NOTICE


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcSourceDetector:
    """Sources failing DMARC for our domains, one detector per kind of source."""

    id: str
    kind: SourceKind
    title: str
    remedy: Callable[[Row], str]
    severity: Callable[[Row], Severity]

    def detect(self, ctx: Context) -> list[Finding]:
        rows = run_query(ctx, "dmarc_sources", file=REPORTS_QUERY_FILE)
        if not rows:
            return []
        ours = frozenset({str(r["ip"]) for r in run_query(ctx, "our_addresses")} | set(ctx.our_ips))
        out = []
        for row in rows:
            if classify_dmarc_source(row, ours) is not self.kind:
                continue
            out.append(
                Finding(
                    id=f"{self.id}:{row['subject']}",
                    problem=self.id,
                    title=_fmt(self.title, row),
                    severity=self.severity(row),
                    evidence=evidence_of(row),
                    remedy=self.remedy(row),
                )
            )
        return out


_TLS_REMEDY: Final[Mapping[str, str]] = {
    "starttls-not-supported": "{mx} did not offer STARTTLS to these senders. Enable it "
    "(smtpd_tls_security_level = may with smtpd_tls_chain_files, postconf(5), TLS_README) and "
    "check that no firewall or middlebox strips STARTTLS from the EHLO reply.",
    "certificate-expired": "The certificate {mx} presents has expired. Renew it, make sure "
    "smtpd_tls_chain_files (or smtpd_tls_cert_file) names the renewed file, `postfix reload`, "
    "and automate the renewal.",
    "certificate-host-mismatch": "The certificate {mx} presents does not name {mx}. Issue one "
    "whose subject alternative names include every MX host name (RFC 8461 section 4.1 for "
    "MTA-STS, RFC 7672 section 3.2 for DANE).",
    "certificate-not-trusted": "Senders could not build a chain to a trusted root for {mx} "
    "({failure_reason_codes}). Serve the whole chain (intermediates in smtpd_tls_chain_files); "
    "MTA-STS needs a certificate from a public CA (RFC 8461 section 4.1).",
    "validation-failure": "Certificate validation for {mx} failed ({failure_reason_codes}): "
    "check the chain, the names and the dates of the certificate it presents.",
    "tlsa-invalid": "No TLSA record at _25._tcp.{mx} matches the certificate. Publish a TLSA "
    "record for the new key before changing certificates (RFC 7671 section 8) and keep the "
    "records in step with the key.",
    "dnssec-invalid": "DNSSEC validation of the records for {mx} failed: check the zone's "
    "signatures, their expiry and the DS record at the parent.",
    "dane-required": "The sender requires DANE but found no DNSSEC-validated TLSA records for "
    "{mx}: publish _25._tcp TLSA records in a signed zone (RFC 7672).",
    "sts-policy-fetch-error": "Senders could not fetch "
    "https://mta-sts.{policy_domain}/.well-known/mta-sts.txt (RFC 8461 section 3.3): the "
    "host must resolve and answer HTTPS with a valid certificate, status 200 and text/plain.",
    "sts-policy-invalid": "The MTA-STS policy of {policy_domain} is invalid or does not list "
    "{mx} (RFC 8461 sections 3.2 and 4.1): version, mode, max_age and one mx line per MX "
    "pattern; change the id in the _mta-sts TXT record whenever the policy changes.",
    "sts-webpki-invalid": "The certificate of mta-sts.{policy_domain} does not validate "
    "(RFC 8461 section 3.3): renew it or fix its chain.",
}


def _tls_remedy(row: Row) -> str:
    r = dict(row)
    r["failure_reason_codes"] = _list_text(row.get("failure_reason_codes"))
    text = _fmt(
        _TLS_REMEDY.get(
            str(row["result_type"]),
            "See RFC 8460 section 4.3 for the result type {result_type}.",
        ),
        r,
    )
    domain = row["policy_domain"]
    return f"{text} `mtalens dns check {domain}` shows the MX, MTA-STS and TLS-RPT records."


def _tls_severity(row: Row, t: Thresholds) -> Severity | None:
    # an enforced MTA-STS policy or DANE makes the sender refuse to deliver on failure
    return Severity.CRITICAL if row.get("enforced") else Severity.WARNING


REPORT_DETECTORS: Final[tuple[Detector, ...]] = (
    DmarcSourceDetector(
        id="dmarc-own-servers",
        kind=SourceKind.OWN,
        title="DMARC fails for part of the mail from our server {source_ip} for "
        "{policy_domain} ({count} of {messages} messages)",
        remedy=_own_source_remedy,
        severity=_own_severity,
    ),
    DmarcSourceDetector(
        id="dmarc-spoofing",
        kind=SourceKind.SPOOFING,
        title="Unknown sender {source_ip} uses {policy_domain} and fails DMARC ({count} messages)",
        remedy=_spoofing_remedy,
        severity=_spoofing_severity,
    ),
    DmarcSourceDetector(
        id="dmarc-forwarders",
        kind=SourceKind.FORWARDER,
        title="Forwarder or mailing list {source_ip} breaks DMARC for {policy_domain} "
        "({count} messages)",
        remedy=_forwarder_remedy,
        severity=lambda row: Severity.NOTICE,
    ),
    SqlDetector(
        query_file=REPORTS_QUERY_FILE,
        id="dmarc-policy-ready",
        title="DMARC policy of {subject} is p=none, yet every source with aligned mail aligns "
        "fully ({aligned_sources} sources, {count} messages)",
        remedy="Move _dmarc.{subject} to p=quarantine, then p=reject (RFC 7489 section 6.3; "
        "step up with pct= under RFC 7489 or t=y under DMARCbis), watching these reports "
        "between steps. Only mail from the {never_aligned_sources} source(s) that never align "
        "({never_aligned_messages} messages; see the dmarc-spoofing and dmarc-forwarders "
        "findings) would be refused.",
        severity=Severity.NOTICE,
    ),
    SqlDetector(
        query_file=REPORTS_QUERY_FILE,
        id="tlsrpt-failures",
        title="TLS-RPT: {result_type} delivering to {mx} for {policy_domain} "
        "({count} failed sessions)",
        remedy=_tls_remedy,
        severity=_tls_severity,
    ),
)
ALL_DETECTORS: Final[tuple[Detector, ...]] = DETECTORS + REPORT_DETECTORS


def diagnose(ctx: Context, *, detectors: Sequence[Detector] = ALL_DETECTORS) -> list[Finding]:
    """All findings for the context's range, the most severe first."""
    if not ctx.mta:
        ctx = replace(ctx, mta=dominant_mta(ctx))
    found: list[Finding] = []
    for det in detectors:
        found.extend(det.detect(ctx))
    order = {d.id: i for i, d in enumerate(detectors)}
    found.sort(key=lambda f: (f.severity.rank, order.get(f.problem, 0), -f.evidence.count, f.id))
    return found


def _printable(s: str) -> str:
    # terminals: log text must not move the cursor or change colours
    return "".join(c if c.isprintable() else "?" for c in s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The numbers a diagnosis starts with: what was sent in the range and how it ended."""

    first: datetime | None
    last: datetime | None
    messages: int
    recipients: int
    delivered: int
    bounced: int
    expired: int
    deferred_now: int  # recipients whose last word so far is a deferral

    @property
    def delivery_rate(self) -> float | None:
        return self.delivered / self.recipients if self.recipients else None


def summarize(ctx: Context) -> Summary:
    """Totals over the context's range, from the store's recipient_outcomes view."""
    row = ctx.store.con.execute(
        "SELECT min(logged_at), max(logged_at), count(DISTINCT message_key), count(*),"
        " count(*) FILTER (status = 'sent'), count(*) FILTER (status = 'bounced'),"
        " count(*) FILTER (status = 'expired'), count(*) FILTER (status = 'deferred')"
        " FROM recipient_outcomes WHERE logged_at >= ? AND logged_at < ?",
        [ctx.since, ctx.until],
    ).fetchone()
    assert row is not None
    first, last, messages, recipients, delivered, bounced, expired, deferred = row
    return Summary(first=first, last=last, messages=messages, recipients=recipients,
                   delivered=delivered, bounced=bounced, expired=expired,
                   deferred_now=deferred)  # fmt: skip


def render_summary(summary: Summary, findings: Sequence[Finding], *, worst: int = 3) -> str:
    """Two or three lines before the findings: the range, the totals, the worst problems."""
    out: list[str] = []
    if summary.first is not None and summary.last is not None:
        out.append(f"Range: {summary.first:%Y-%m-%d %H:%M} .. {summary.last:%Y-%m-%d %H:%M} UTC")
    rate = summary.delivery_rate
    out.append(
        f"Recipients: {summary.recipients:,} in {summary.messages:,} messages; delivered "
        f"{summary.delivered:,}"
        + (f" ({rate:.1%})" if rate is not None else "")
        + f", bounced {summary.bounced:,}, expired {summary.expired:,}, still deferred "
        f"{summary.deferred_now:,}"
    )
    if findings:
        counts = {sev: sum(1 for f in findings if f.severity is sev) for sev in Severity}
        out.append(
            f"Findings: {len(findings)} ("
            + ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
            + "); worst: "
            + "; ".join(_printable(f.title) for f in findings[:worst])
        )
    return "\n".join(out) + "\n\n"


def render_text(
    findings: Sequence[Finding], *, examples: int = 2, summary: Summary | None = None
) -> str:
    """Findings for a terminal: a summary (when given), then title, evidence, remedy."""
    head = render_summary(summary, findings) if summary is not None else ""
    if not findings:
        return head + "No problems found in this time range.\n"
    out: list[str] = [head.rstrip("\n")] if head else []
    if head:
        out.append("")
    for f in findings:
        ev = f.evidence
        out.append(f"[{f.severity.upper()}] {_printable(f.title)}  ({f.id})")
        span = ""
        if ev.first_seen and ev.last_seen:
            span = f", {ev.first_seen:%Y-%m-%d %H:%M} .. {ev.last_seen:%Y-%m-%d %H:%M} UTC"
        out.append(f"  evidence: {ev.count} event(s){span}")
        if ev.destinations:
            more = f" (+{len(ev.destinations) - 8} more)" if len(ev.destinations) > 8 else ""
            out.append(f"  destinations: {_printable(', '.join(ev.destinations[:8]))}{more}")
        for k, v in ev.facts:
            if v is None or v == ():
                continue
            shown = ", ".join(v) if isinstance(v, tuple) else str(v)
            out.append(f"  {k.replace('_', ' ')}: {_printable(shown)}")
        for ex in ev.examples[:examples]:
            out.append(f"  e.g. {_printable(ex)}")
        out.append(f"  remedy: {_printable(f.remedy)}")
        out.append("")
    return "\n".join(out)
