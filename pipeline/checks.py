"""Scheduled DNS and blocklist checks for ``mtalens watch`` (``[checks]`` in mtalens.toml).

Every ``interval`` seconds a background thread looks up our sending IPs on the configured DNS
blocklists (the IPs of the config, plus those the logs show as ours: diagnose's
``our_addresses``) and runs the domain checks of ``mtalens dns check`` (MX, SPF, DMARC, DKIM for
the configured selectors, MTA-STS, TLS-RPT) on the configured domains. The checks are the ones
of :mod:`mtalens.pipeline.dns`, through a client of their own: a lookup never runs on the
tailing path, and the thread never touches the store.

The watcher's write window takes each finished run (:meth:`CheckScheduler.finished`), appends it
to ``check_log`` (migration 0016) with whether each check changed since the previous run of the
same check (read from the store, so a restart compares with the last run before it), sets the
metrics and tells the alert engine which listings, broken checks and changes there are now.

Usage rules of the lists:

- Lookups sent are paced (``queries_per_second``) and every run starts with a fresh client, so
  a resolver that failed one run is asked again at the next.
- Spamhaus refuses queries relayed by public resolvers (it answers 127.255.255.254, which
  ``check_blocklist`` reports as a query error, never a listing; see
  https://www.spamhaus.org/faqs/dnsbl-usage/). When a configured resolver is one of the big
  public ones, Spamhaus zones are not queried at all: the result is ``unknown`` with the reason.
- A failed lookup (timeout, REFUSED, SERVFAIL) is ``unknown``: never "not listed", never "no
  record", and never a change.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from mtalens.pipeline import dns as mdns
from mtalens.pipeline.watch_config import AlertKind, ChecksConfig

if TYPE_CHECKING:
    from mtalens.pipeline.alerts import AlertEngine
    from mtalens.pipeline.metrics import Metrics
    from mtalens.pipeline.store import Store

log = logging.getLogger("mtalens.checks")

# The anycast addresses of the large public resolvers, as their operators publish them:
# https://developers.google.com/speed/public-dns/docs/using, https://one.one.one.one/dns/,
# https://www.quad9.net/service/service-addresses-and-features,
# https://www.opendns.com/setupguide/ . Spamhaus answers queries from them with an error code.
PUBLIC_RESOLVERS: Final = frozenset(
    str(ipaddress.ip_address(a))
    for a in (
        "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
        "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",
        "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
        "208.67.222.222", "208.67.220.220",
    )
)  # fmt: skip

BLOCKLIST: Final = "blocklist"
DOMAIN: Final = "domain"
_SEVERITY_ORDER: Final = (mdns.Severity.OK, mdns.Severity.UNKNOWN, mdns.Severity.WARNING,
                          mdns.Severity.ERROR)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One check of one run (a row of ``check_log``)."""

    run_at: datetime
    checked_at: datetime
    kind: str  # BLOCKLIST or DOMAIN
    subject: str  # the IP or the domain
    check_name: str  # the zone, or mx | spf | dmarc | dkim:<selector> | mta-sts | tls-rpt
    status: str
    detail: str
    records: tuple[str, ...] = ()
    changed: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.subject, self.check_name)

    @property
    def answered(self) -> bool:
        """Whether the check got an answer: only then can it be compared with another run."""
        return self.status != mdns.Severity.UNKNOWN.value


def _answer_text(a: mdns.Answer) -> str:
    return f"{a.qname} {a.rdtype} {a.status}: {' '.join(sorted(a.records))}".rstrip()


def _journalled(client: mdns.DnsClient, run: Callable[[], Any]) -> tuple[Any, tuple[str, ...]]:
    """``run()``'s value and what its lookups returned (failed lookups left out: they say
    nothing about the records)."""
    client.journal = []
    try:
        value = run()
        seen = client.journal
    finally:
        client.journal = None
    return value, tuple(sorted({_answer_text(a) for a in seen if not a.failed}))


def _dkim(client: mdns.DnsClient, *, domain: str, selector: str) -> list[mdns.Finding]:
    return mdns.check_dkim(client, domain, selector)


def _domain_checks(
    domain: str, selectors: Sequence[str]
) -> list[tuple[str, Callable[[mdns.DnsClient], list[mdns.Finding]]]]:
    checks: list[tuple[str, Callable[[mdns.DnsClient], list[mdns.Finding]]]] = [
        ("mx", lambda c: mdns.check_mx(c, domain)),
        ("spf", lambda c: mdns.check_spf(c, domain)),
        ("dmarc", lambda c: mdns.check_dmarc(c, domain)),
    ]
    for sel in selectors:
        checks.append((f"dkim:{sel}", partial(_dkim, domain=domain, selector=sel)))
    checks += [
        ("mta-sts", lambda c: mdns.check_mta_sts(c, domain)),
        ("tls-rpt", lambda c: mdns.check_tls_rpt(c, domain)),
    ]
    return checks


def run_checks(
    client: mdns.DnsClient,
    config: ChecksConfig,
    ips: Iterable[str],
    *,
    clock: Callable[[], datetime],
    stop: threading.Event | None = None,
) -> list[CheckResult]:
    """One run: every IP on every blocklist, then every domain check. A ResolverError (nothing
    listens at the resolver) propagates: the run is given up, nothing of it is stored."""
    run_at = clock()
    out: list[CheckResult] = []
    public = sorted(set(resolvers_in_use(config)) & PUBLIC_RESOLVERS)
    for ip in sorted({str(ipaddress.ip_address(i)) for i in ips}):
        for zone in config.blocklists:
            if stop is not None and stop.is_set():
                return out
            if public and mdns.is_spamhaus(zone):
                out.append(CheckResult(
                    run_at=run_at, checked_at=clock(), kind=BLOCKLIST, subject=ip,
                    check_name=mdns.normalize_name(zone), status=mdns.Listing.UNKNOWN.value,
                    detail=f"not queried: Spamhaus refuses queries via public resolvers "
                           f"({', '.join(public)}); set [checks] resolvers to your own resolver",
                ))  # fmt: skip
                continue
            res, records = _journalled(client, partial(mdns.check_blocklist, client, ip, zone))
            out.append(CheckResult(run_at=run_at, checked_at=clock(), kind=BLOCKLIST, subject=ip,
                                   check_name=res.zone, status=res.status.value,
                                   detail=res.message, records=records))  # fmt: skip
    for domain in config.domains:
        try:
            name = mdns.mail_domain(domain)
        except ValueError as exc:
            log.warning("checks: not a mail domain", extra={"domain": domain, "error": str(exc)})
            continue
        for check, fn in _domain_checks(name, config.dkim_selectors):
            if stop is not None and stop.is_set():
                return out
            findings, records = _journalled(client, partial(fn, client))
            worst = max((f.severity for f in findings), key=_SEVERITY_ORDER.index,
                        default=mdns.Severity.OK)  # fmt: skip
            shown = [f for f in findings if f.severity is not mdns.Severity.OK] or findings
            out.append(CheckResult(run_at=run_at, checked_at=clock(), kind=DOMAIN, subject=name,
                                   check_name=check, status=worst.value,
                                   detail="; ".join(f.message for f in shown),
                                   records=records))  # fmt: skip
    return out


def with_changes(
    results: Sequence[CheckResult], previous: Mapping[tuple[str, str, str], CheckResult]
) -> list[CheckResult]:
    """``results`` with ``changed`` set against the previous run of each check: a listing that
    appeared or went (blocklists), other records (domain checks); never when either run failed
    to get an answer, nor for a check seen for the first time."""
    out: list[CheckResult] = []
    for r in results:
        before = previous.get(r.key)
        if before is None or not (r.answered and before.answered):
            out.append(r)
        elif r.kind == BLOCKLIST:
            was, now = before.status == "listed", r.status == "listed"
            out.append(replace(r, changed=was != now))
        else:
            out.append(replace(r, changed=before.records != r.records))
    return out


# -- the store ------------------------------------------------------------------------------


def latest(store: Store) -> dict[tuple[str, str, str], CheckResult]:
    """The last stored run of every check that got an answer (what the next run compares
    with: a run whose lookups failed does not replace the last answer)."""
    rows = store.con.execute(
        "SELECT run_at, checked_at, kind, subject, check_name, status, detail, records "
        "FROM check_log WHERE status <> 'unknown' "
        "QUALIFY row_number() OVER (PARTITION BY kind, subject, check_name "
        "ORDER BY checked_at DESC) = 1"
    ).fetchall()
    return {
        (r[2], r[3], r[4]): CheckResult(
            run_at=r[0],
            checked_at=r[1],
            kind=r[2],
            subject=r[3],
            check_name=r[4],
            status=r[5],
            detail=r[6],
            records=tuple(r[7]),
        )
        for r in rows
    }


def store_run(store: Store, results: Sequence[CheckResult]) -> list[CheckResult]:
    """Append one run to ``check_log`` (in the caller's transaction); returns it with
    ``changed`` set."""
    marked = with_changes(results, latest(store))
    if marked:
        store.con.executemany(
            "INSERT INTO check_log (run_at, checked_at, kind, subject, check_name, status, "
            "changed, detail, records) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[r.run_at, r.checked_at, r.kind, r.subject, r.check_name, r.status, r.changed,
              r.detail, list(r.records)] for r in marked],
        )  # fmt: skip
    return marked


# Our addresses as the logs show them, over this many days (diagnose's our_addresses query).
CHECK_IPS_DAYS: Final = 7


def our_addresses(store: Store, *, now: datetime | None = None) -> list[str]:
    from datetime import timedelta

    from mtalens.pipeline.named_sql import named_queries

    # the logs' own time, not the clock: a replay of last month's log finds its addresses
    last = store.con.execute("SELECT max(logged_at) FROM deliveries").fetchone()
    until = now or (last[0] if last and last[0] is not None else datetime.now(UTC))
    sql = named_queries("diagnose.sql")["our_addresses"]
    rows = store.con.execute(sql, {"since": until - timedelta(days=CHECK_IPS_DAYS),
                                   "until": until + timedelta(days=1)}).fetchall()  # fmt: skip
    return [str(r[0]) for r in rows]


# -- metrics and alerts ---------------------------------------------------------------------

# gauge values: what a dashboard can threshold on without parsing labels
_LISTED_VALUE: Final = {"listed": 1.0, "not_listed": 0.0}
_DOMAIN_VALUE: Final = {"ok": 1.0, "warning": 1.0, "error": 0.0}


def record_metrics(metrics: Metrics, run: Sequence[CheckResult]) -> None:
    for r in run:
        if r.kind == BLOCKLIST:
            metrics.set("mtalens_dnsbl_listed",
                        "1 if our IP is listed on the zone, 0 if not, -1 if the last run could "
                        "not tell (lookup failed or query error).",
                        _LISTED_VALUE.get(r.status, -1.0), ip=r.subject, zone=r.check_name)  # fmt: skip
        else:
            metrics.set("mtalens_dns_check_ok",
                        "1 if the domain check has no error (warnings included), 0 if it has, "
                        "-1 if the last run could not make it.",
                        _DOMAIN_VALUE.get(r.status, -1.0), domain=r.subject, check=r.check_name)  # fmt: skip
        metrics.inc("mtalens_checks_total", "Scheduled checks made, by kind and status.",
                    kind=r.kind, status=r.status)  # fmt: skip
        if r.changed:
            metrics.inc("mtalens_check_changes_total",
                        "Scheduled checks whose answer changed since their previous run.",
                        kind=r.kind)  # fmt: skip
    metrics.inc("mtalens_check_runs_total", "Runs of the scheduled checks stored.")
    metrics.set("mtalens_check_last_run_timestamp_seconds", "When the last stored run started.",
                run[0].run_at.timestamp() if run else time.time())  # fmt: skip


def alert_state(run: Sequence[CheckResult]) -> dict[AlertKind, dict[str, str]]:
    """What is true now, per alert kind: key -> detail. A check without an answer keeps the
    state it had (it is not in the run's keys to resolve): see ``AlertEngine.observe``."""
    state: dict[AlertKind, dict[str, str]] = {k: {} for k in
                                              (AlertKind.DNSBL_LISTED, AlertKind.DNS_BROKEN,
                                               AlertKind.DNS_CHANGED)}  # fmt: skip
    for r in run:
        key = f"{r.subject} {r.check_name}"
        if r.kind == BLOCKLIST and r.status == "listed":
            state[AlertKind.DNSBL_LISTED][key] = r.detail
        if r.kind == DOMAIN and r.status == mdns.Severity.ERROR.value:
            state[AlertKind.DNS_BROKEN][key] = r.detail
        if r.kind == DOMAIN and r.changed:
            state[AlertKind.DNS_CHANGED][key] = "now: " + "; ".join(r.records)
    return state


def unanswered(run: Sequence[CheckResult]) -> set[str]:
    """Keys of the run's checks that got no answer: their alerts neither fire nor resolve."""
    return {f"{r.subject} {r.check_name}" for r in run if not r.answered}


def commit_run(
    store: Store, run: Sequence[CheckResult], *, metrics: Metrics, alerts: AlertEngine
) -> list[CheckResult]:
    """Store a finished run, then set its metrics and alerts (the watcher's write window)."""
    marked = store_run(store, run)
    record_metrics(metrics, marked)
    at = marked[0].run_at if marked else datetime.now(UTC)
    keep = unanswered(marked)
    for kind, active in alert_state(marked).items():
        alerts.observe(kind, active, at=at, keep=keep)
    changed = [f"{r.subject} {r.check_name}" for r in marked if r.changed]
    log.info("checks stored", extra={"checks": len(marked), "changed": changed,
                                     "unknown": sorted(keep)})  # fmt: skip
    return marked


# -- the schedule ---------------------------------------------------------------------------


class CheckScheduler:
    """A daemon thread running :func:`run_checks` every ``config.interval`` seconds, the first
    run at :meth:`start`. Finished runs wait in memory for the watcher's next write window
    (:meth:`finished`); if that window fails they are handed over again at the next."""

    def __init__(
        self,
        config: ChecksConfig,
        *,
        client: Callable[[], mdns.DnsClient],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """``on_finished``: called from the thread when a run is ready (the watcher's wake)."""
        self.config = config
        self._on_finished = on_finished
        self._client = client
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._log_ips: tuple[str, ...] = ()
        self._done: list[list[CheckResult]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def set_log_ips(self, ips: Iterable[str]) -> None:
        """Our addresses as the logs show them (the watcher updates them from the store)."""
        clean: set[str] = set()
        for ip in ips:
            try:
                clean.add(str(ipaddress.ip_address(ip)))
            except ValueError:
                continue
        with self._lock:
            self._log_ips = tuple(sorted(clean))

    def ips(self) -> list[str]:
        with self._lock:
            from_logs = self._log_ips if self.config.ips_from_logs else ()
        return sorted(set(self.config.ips) | set(from_logs))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="mtalens-checks")
            self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)

    def finished(self) -> list[list[CheckResult]]:
        """The runs finished since the last call, oldest first (taken: call once per window)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def pending(self) -> bool:
        """Whether a finished run waits to be stored (a write window must run)."""
        with self._lock:
            return bool(self._done)

    def give_back(self, runs: list[list[CheckResult]]) -> None:
        """Runs a failed write window could not store: handed over again at the next."""
        with self._lock:
            self._done[:0] = runs

    def run_once(self) -> list[CheckResult] | None:
        """One run now (the thread's body; tests call it directly). None if it was given up."""
        try:
            client = self._client()
            results = run_checks(client, self.config, self.ips(), clock=self._clock,
                                 stop=self._stop)  # fmt: skip
        except mdns.ResolverError as exc:
            log.error("checks: run given up", extra={"error": str(exc)})
            self._count("resolver_unreachable")
            return None
        except Exception:  # the daemon never dies on a check
            log.exception("checks: run failed")
            self._count("failed")
            return None
        if self._stop.is_set():
            return None  # a partial run would read as checks that went away
        self.runs += 1
        self._count("finished")
        trouble = client.trouble()
        if trouble is not None:
            log.warning("checks: no lookup got an answer", extra={"error": trouble})
        with self._lock:
            self._done.append(results)
        if self._on_finished is not None:
            self._on_finished()
        return results

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("mtalens_check_runs_attempted_total",
                              "Runs of the scheduled checks, by outcome.", outcome=outcome)  # fmt: skip

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            self._stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))


def make_client_factory(config: ChecksConfig) -> Callable[[], mdns.DnsClient]:
    """A fresh client per run: the configured resolvers (else /etc/resolv.conf's), no store
    cache (the thread has no store), paced."""
    servers = list(resolvers_in_use(config))

    def build() -> mdns.DnsClient:
        if not servers:
            raise mdns.ResolverError("no resolver: set [checks] resolvers (none in resolv.conf)")
        resolver = mdns.make_resolver(servers, port=config.resolver_port, timeout=config.timeout)
        return mdns.DnsClient(resolver, clock=lambda: datetime.now(UTC),
                              queries_per_second=config.queries_per_second)  # fmt: skip

    return build


def resolvers_in_use(config: ChecksConfig) -> tuple[str, ...]:
    """The resolvers the checks ask (and the Spamhaus rule looks at): the configured ones, else
    the system's."""
    return config.resolvers or tuple(mdns.system_nameservers())
