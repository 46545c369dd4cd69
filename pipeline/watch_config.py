"""The ``[watch]`` and ``[alerts]`` sections of ``mtalens.toml`` for ``mtalens watch``.

Example (every key optional; command-line options win over the file)::

    [watch]
    db = "/var/lib/mtalens/mtalens.duckdb"
    # or a Parquet lake that many hosts write (pipeline/lake.py), instead of db:
    #   lake = "/srv/mtalens-lake"   writer = "mx1"   (writer: default the host name)
    logs = ["/var/log/mail.log", "/var/log/postfix/*.log"]   # files or globs
    # a log's format (postfix, exim, exim-rejectlog, sendmail) is detected from its first lines; to force it:
    #   logs = [{path = "/var/log/exim4/mainlog", format = "exim"}, "/var/log/mail.log"]
    # or log_format = "exim" for every log
    maildirs = ["/var/mail/bounces/Maildir"]                 # new/ is read, then moved to cur/
    report_maildirs = ["/var/mail/dmarc/Maildir"]            # DMARC/TLS-RPT report mail, the same way
    mboxes = []                                              # read by offset
    imap = ["imaps://bounces@mail.example.com/INBOX"]        # password: [imap] or $MTALENS_IMAP_PASSWORD
    imap_poll_interval = 60   # seconds between looks at each mailbox
    imap_move_to = "Processed"   # optional; else stored messages are flagged \\Seen
    poll = false              # true: no inotify, stat every poll_interval seconds
    poll_interval = 1.0       # seconds between checks even when inotify is quiet
    commit_interval = 1.0     # shortest time between two write windows (seconds)
    drain_grace = 5.0         # keep reading a rotated-away file this long (seconds)
    timezone = "UTC"          # IANA zone of timestamps without an offset
    metrics_port = 9154       # Prometheus endpoint; absent = off
    metrics_host = "127.0.0.1"
    decode_workers = 1        # processes decoding bounce mail, off the tailing path

    [alerts]
    webhook = "http://127.0.0.1:9000/hook"   # optional; alerts are always logged as JSON

    [[alerts.rule]]
    id = "bounces"            # unique, names the alert
    kind = "bounce_rate"      # bounce_rate | deferral_rate | sasl_failures | blocklist | queue_delay_p90
    window = 600              # seconds of log time
    threshold = 0.05          # a rate (0..1), a count, or seconds (queue_delay_p90)
    min_events = 20           # rates and p90 need this many events in the window
    domain = "example.com"    # bounce/deferral rate: one domain; absent = every domain

    [checks]                  # DNS and blocklist checks on a schedule (pipeline/checks.py)
    interval = 3600           # seconds between runs
    domains = ["example.com"] # MX, SPF, DMARC, MTA-STS, TLS-RPT (+ DKIM for the selectors)
    dkim_selectors = ["s1"]
    ips = ["192.0.2.10"]      # our sending IPs on every blocklist ...
    ips_from_logs = true      # ... and the ones the logs show as ours
    blocklists = ["zen.spamhaus.org", "bl.spamcop.net"]
    resolvers = ["127.0.0.1"] # your own recursive resolver (Spamhaus refuses public ones)
    resolver_port = 53
    timeout = 3.0
    queries_per_second = 5    # at most, sent
    # alerts: kinds dnsbl_listed, dns_broken, dns_changed; each gets a default rule when absent
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from mtalens.pipeline.dns_defaults import DEFAULT_BLOCKLISTS, DEFAULT_TIMEOUT
from mtalens.pipeline.exitcodes import InputError


class WatchConfigError(InputError):
    """The configuration file is missing, not TOML, or holds a bad value (start-up error)."""


class AlertKind(StrEnum):
    BOUNCE_RATE = "bounce_rate"
    DEFERRAL_RATE = "deferral_rate"
    SASL_FAILURES = "sasl_failures"
    BLOCKLIST = "blocklist"
    QUEUE_DELAY_P90 = "queue_delay_p90"
    # the scheduled checks of [checks] (pipeline/checks.py): state, not a window of log time
    DNSBL_LISTED = "dnsbl_listed"  # one of our IPs is listed on a zone: key "ip zone"
    DNS_BROKEN = "dns_broken"  # a domain check (mx, spf, dmarc, dkim:sel, ...) is in error
    DNS_CHANGED = "dns_changed"  # what a domain check looked up changed since the last run


CHECK_KINDS: Final = frozenset(
    {AlertKind.DNSBL_LISTED, AlertKind.DNS_BROKEN, AlertKind.DNS_CHANGED}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    id: str
    kind: AlertKind
    window: float = 600.0
    threshold: float = 1.0
    min_events: int = 1
    domain: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksConfig:
    """``[checks]``: DNS and blocklist checks ``watch`` runs on a schedule (pipeline/checks.py)."""

    enabled: bool = False  # a [checks] section, or a --check-* option
    interval: float = 3600.0  # seconds between two runs
    domains: tuple[str, ...] = ()  # MX, SPF, DMARC, DKIM (selectors), MTA-STS, TLS-RPT
    dkim_selectors: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()  # our sending IPs, looked up on every blocklist
    ips_from_logs: bool = True  # and the ones the logs show (diagnose's our_addresses)
    blocklists: tuple[str, ...] = DEFAULT_BLOCKLISTS
    resolvers: tuple[str, ...] = ()  # default: /etc/resolv.conf's nameservers
    resolver_port: int = 53
    timeout: float = DEFAULT_TIMEOUT
    queries_per_second: float = 5.0  # lookups sent, at most


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchConfig:
    db: str | None = None
    lake: str | None = None  # a lake directory instead of the store file (pipeline/lake.py)
    writer: str | None = None  # this daemon's writer name in the lake (default: the host's)
    logs: tuple[str, ...] = ()
    log_format: str | None = None  # every log read as this format (parsers/formats.py)
    log_formats: tuple[tuple[str, str], ...] = ()  # (log as configured, its format) overrides
    maildirs: tuple[str, ...] = ()
    mboxes: tuple[str, ...] = ()
    report_maildirs: tuple[str, ...] = ()  # `mtalens reports ingest`'s mail, read as maildirs are
    imap: tuple[str, ...] = ()  # imaps://user@host/INBOX mailboxes of bounces (pipeline/imap.py)
    imap_poll_interval: float = 60.0  # seconds between two looks at each mailbox
    imap_move_to: str | None = None  # a folder for stored messages, else they are flagged \Seen
    poll: bool = False
    poll_interval: float = 1.0
    commit_interval: float = 1.0
    drain_grace: float = 5.0
    timezone: str | None = None
    year: int | None = None
    decode_workers: int = 1  # processes decoding bounce mail (pipeline/decode_pool.py)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    webhook_port: int | None = (
        None  # --webhook-port: the receiver of [webhooks] (pipeline/webhooks.py)
    )
    webhook_host: str | None = None
    webhook: str | None = None
    rules: tuple[AlertRule, ...] = field(default_factory=tuple)
    checks: ChecksConfig = field(default_factory=ChecksConfig)

    def with_overrides(self, **values: Any) -> WatchConfig:
        """Command-line values that were given (not None, not empty) replace the file's."""
        given = {k: v for k, v in values.items() if v is not None and v != () and v != []}
        for k in ("logs", "maildirs", "mboxes", "report_maildirs", "imap"):
            if k in given:
                given[k] = tuple(str(x) for x in given[k])
        return replace(self, **given).checked()

    def checked(self) -> WatchConfig:
        """This config, once the values a file or a command line may get wrong are checked."""
        if self.timezone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise WatchConfigError(
                    f"unknown time zone {self.timezone!r} (an IANA name such as Europe/Berlin)"
                ) from None
        for name in ("poll_interval", "commit_interval", "drain_grace"):
            if getattr(self, name) <= 0:
                raise WatchConfigError(f"{name.replace('_', '-')} must be > 0 seconds")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise WatchConfigError(f"metrics port {self.metrics_port} is not a TCP port")
        if not 1 <= self.decode_workers <= 64:
            raise WatchConfigError("decode_workers must be 1..64")
        if self.lake is not None and self.db is not None:
            raise WatchConfigError("give db or lake, not both")
        from mtalens.parsers.formats import NAMES

        forced = [f for _, f in self.log_formats]
        if self.log_format is not None:
            forced.append(self.log_format)
        for name in forced:
            if name not in NAMES:
                raise WatchConfigError(
                    f"unknown log format {name!r}: expected one of {', '.join(NAMES)}"
                )
        _check_checks(self.checks)
        return self

    def format_of(self, source: str) -> str | None:
        """The format forced for the log configured as ``source``, if any."""
        for s, f in self.log_formats:
            if s == source:
                return f
        return self.log_format

    def alert_rules(self) -> tuple[AlertRule, ...]:
        """The configured rules, plus one default rule per kind of the scheduled checks that
        has none when checks run: a listing, a broken record and a change always alert."""
        if not self.checks.enabled:
            return self.rules
        have = {r.kind for r in self.rules}
        extra = tuple(
            AlertRule(id=kind.value.replace("_", "-"), kind=kind)
            for kind in (AlertKind.DNSBL_LISTED, AlertKind.DNS_BROKEN, AlertKind.DNS_CHANGED)
            if kind not in have
        )
        return self.rules + extra


def _check_checks(c: ChecksConfig) -> None:
    import ipaddress

    if c.interval < 1:
        raise WatchConfigError("checks interval must be >= 1 second")
    if c.timeout <= 0 or c.queries_per_second <= 0:
        raise WatchConfigError("checks timeout and queries_per_second must be > 0")
    if not 0 < c.resolver_port <= 65535:
        raise WatchConfigError(f"checks resolver_port {c.resolver_port} is not a port")
    for what, values in (("ips", c.ips), ("resolvers", c.resolvers)):
        for v in values:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise WatchConfigError(f"checks {what}: {v!r} is not an IP address") from None


_WATCH_KEYS: Final = {
    "db": str,
    "lake": str,
    "writer": str,
    "logs": list,
    "log_format": str,
    "maildirs": list,
    "report_maildirs": list,
    "imap": list,
    "imap_poll_interval": (int, float),
    "imap_move_to": str,
    "mboxes": list,
    "poll": bool,
    "poll_interval": (int, float),
    "commit_interval": (int, float),
    "drain_grace": (int, float),
    "timezone": str,
    "year": int,
    "metrics_port": int,
    "metrics_host": str,
    "decode_workers": int,
}
_RULE_KEYS: Final = {
    "id": str,
    "kind": str,
    "window": (int, float),
    "threshold": (int, float),
    "min_events": int,
    "domain": str,
}


def _check(section: str, data: dict[str, Any], keys: dict[str, Any]) -> None:
    for k, v in data.items():
        if k not in keys:
            raise WatchConfigError(f"[{section}]: unknown key {k!r} (known: {', '.join(keys)})")
        if isinstance(v, bool) and keys[k] is not bool:
            raise WatchConfigError(f"[{section}] {k}: expected {keys[k]}, got a boolean")
        if not isinstance(v, keys[k]):
            raise WatchConfigError(f"[{section}] {k}: wrong type {type(v).__name__}")


_CHECKS_KEYS: Final = {
    "interval": (int, float),
    "domains": list,
    "dkim_selectors": list,
    "ips": list,
    "ips_from_logs": bool,
    "blocklists": list,
    "resolvers": list,
    "resolver_port": int,
    "timeout": (int, float),
    "queries_per_second": (int, float),
}


def parse_checks(raw: Any) -> ChecksConfig:
    if raw is None:
        return ChecksConfig()
    if not isinstance(raw, dict):
        raise WatchConfigError("[checks] must be a table")
    _check("checks", raw, _CHECKS_KEYS)
    values: dict[str, Any] = {"enabled": True}
    for k, v in raw.items():
        if isinstance(v, list):
            if not all(isinstance(x, str) for x in v):
                raise WatchConfigError(f"[checks] {k}: a list of strings")
            values[k] = tuple(x.strip().lower() for x in v if x.strip())
        elif k in ("interval", "timeout", "queries_per_second"):
            values[k] = float(v)
        else:
            values[k] = v
    return ChecksConfig(**values)


def _logs(entries: list[Any]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``logs``: paths, or ``{path = "...", format = "exim"}`` tables."""
    paths: list[str] = []
    forced: list[tuple[str, str]] = []
    for e in entries:
        if isinstance(e, str):
            paths.append(e)
            continue
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise WatchConfigError("[watch] logs: paths, or tables {path = ..., format = ...}")
        unknown = set(e) - {"path", "format"}
        if unknown:
            raise WatchConfigError(f"[watch] logs: unknown key {sorted(unknown)[0]!r}")
        paths.append(e["path"])
        if "format" in e:
            if not isinstance(e["format"], str):
                raise WatchConfigError("[watch] logs: format must be a string")
            forced.append((e["path"], e["format"]))
    return tuple(paths), tuple(forced)


def parse_watch_config(data: dict[str, Any]) -> WatchConfig:
    """Build the config from parsed TOML (other sections are ignored: they belong to others)."""
    watch = data.get("watch", {})
    alerts = data.get("alerts", {})
    if not isinstance(watch, dict) or not isinstance(alerts, dict):
        raise WatchConfigError("[watch] and [alerts] must be tables")
    _check("watch", watch, _WATCH_KEYS)
    values: dict[str, Any] = dict(watch)
    if "logs" in values:
        values["logs"], values["log_formats"] = _logs(values["logs"])
    for k in ("maildirs", "mboxes", "report_maildirs", "imap"):
        if k in values:
            if not all(isinstance(x, str) for x in values[k]):
                raise WatchConfigError(f"[watch] {k}: a list of paths")
            values[k] = tuple(values[k])
    for k in ("poll_interval", "commit_interval", "drain_grace", "imap_poll_interval"):
        if k in values:
            values[k] = float(values[k])
            if values[k] <= 0:
                raise WatchConfigError(f"[watch] {k}: must be > 0")
    port = values.get("metrics_port")
    if port is not None and not 0 <= port <= 65535:
        raise WatchConfigError(f"[watch] metrics_port: {port} is not a TCP port")
    webhook = alerts.get("webhook")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        raise WatchConfigError("[alerts] webhook: an http:// or https:// URL")
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for raw in alerts.get("rule", []):
        if not isinstance(raw, dict):
            raise WatchConfigError("[[alerts.rule]]: must be a table")
        _check("alerts.rule", raw, _RULE_KEYS)
        if "id" not in raw or "kind" not in raw:
            raise WatchConfigError("[[alerts.rule]]: needs `id` and `kind`")
        if raw["id"] in seen:
            raise WatchConfigError(f"[[alerts.rule]]: duplicate id {raw['id']!r}")
        seen.add(raw["id"])
        try:
            kind = AlertKind(raw["kind"])
        except ValueError:
            known = ", ".join(k.value for k in AlertKind)
            raise WatchConfigError(
                f"rule {raw['id']}: unknown kind {raw['kind']!r} ({known})"
            ) from None
        rule = AlertRule(
            id=raw["id"],
            kind=kind,
            window=float(raw.get("window", 600)),
            threshold=float(raw.get("threshold", 1)),
            min_events=int(raw.get("min_events", 1)),
            domain=raw["domain"].lower() if "domain" in raw else None,
        )
        if rule.window <= 0:
            raise WatchConfigError(f"rule {rule.id}: window must be > 0")
        rules.append(rule)
    checks = parse_checks(data.get("checks"))
    return WatchConfig(**values, webhook=webhook, rules=tuple(rules), checks=checks).checked()


def load_watch_config(path: str | Path | None) -> WatchConfig:
    """The file's settings, or the defaults when ``path`` is None."""
    if path is None:
        return WatchConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WatchConfigError(f"{p}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise WatchConfigError(f"{p}: not valid TOML: {exc}") from exc
    try:
        return parse_watch_config(data)
    except WatchConfigError as exc:
        raise WatchConfigError(f"{p}: {exc}") from exc
