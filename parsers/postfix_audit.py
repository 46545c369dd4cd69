"""Audit rules for a Postfix configuration: a pure function from settings to findings.

Each rule is one function in the ordered ``RULES`` tuple; it reads a :class:`PostfixConfig`
(``postconf -n`` and ``postconf -M``, parsers/postconf.py) with the defaults below for what is
not set, and returns :class:`AuditFinding` rows naming the parameter, its current value, the
suggested value and the postconf(5) entry (plus the RFC behind the advice). smtpd(8) services
in master.cf are judged with their ``-o`` overrides on top of main.cf.

``DEFAULTS`` are Postfix 3.7's (``postconf -d``) at ``compatibility_level`` >= 2 (Debian's
main.cf sets 3.6); below that the two compatibility-dependent ones used here change as
postconf(5) documents (``mynetworks_style`` = subnet, ``smtpd_relay_restrictions`` empty).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from mtalens.parsers.postconf import PostfixConfig, Service, restriction_list, time_seconds


class Level(StrEnum):  # the same words as pipeline.diagnose.Severity
    CRITICAL = "critical"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFinding:
    rule: str
    severity: Level
    title: str
    parameter: str
    current: str
    suggested: str
    reference: str  # "postconf(5) smtpd_tls_auth_only; RFC 4954 section 4"
    remedy: str
    service: str = "main.cf"  # or "master.cf <service name>"
    default: bool = False  # the current value is Postfix's default (not set explicitly)

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.service.removeprefix('master.cf ')}:{self.parameter}"


DEFAULTS: Final[Mapping[str, str]] = {
    "mynetworks_style": "host",
    "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
    "defer_unauth_destination",
    "smtpd_recipient_restrictions": "",
    "smtpd_client_restrictions": "",
    "smtpd_helo_restrictions": "",
    "smtpd_sender_restrictions": "",
    "smtpd_data_restrictions": "",
    "smtpd_sasl_auth_enable": "no",
    "smtpd_tls_auth_only": "no",
    "smtpd_tls_security_level": "",
    "smtpd_use_tls": "no",
    "smtpd_enforce_tls": "no",
    "smtpd_tls_wrappermode": "no",
    "smtpd_tls_protocols": ">=TLSv1",
    "smtpd_tls_mandatory_protocols": ">=TLSv1",
    "smtp_tls_protocols": ">=TLSv1",
    "smtp_tls_mandatory_protocols": ">=TLSv1",
    "smtp_tls_security_level": "",
    "smtp_use_tls": "no",
    "smtp_enforce_tls": "no",
    "maximal_queue_lifetime": "5d",
    "bounce_queue_lifetime": "5d",
    "message_size_limit": "10240000",
    "mailbox_size_limit": "51200000",
    "postscreen_dnsbl_sites": "",
    "disable_vrfy_command": "no",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditContext:
    config: PostfixConfig
    # myhostname's addresses and their PTR names, looked up by the caller; None: not looked up
    myhostname_rdns: Mapping[str, tuple[str, ...]] | None = None
    defaults: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULTS))

    def default(self, name: str) -> str:
        level = self.config.main.get("compatibility_level", "0")
        old = _version(level) < (2,)
        if old and name == "mynetworks_style":
            return "subnet"
        if _version(level) < (1,) and name == "smtpd_relay_restrictions":
            return ""
        return self.defaults.get(name, "")

    def value(self, name: str, service: Service | None = None) -> tuple[str, bool]:
        """(the effective value, expanded; whether it is Postfix's default)."""
        raw = service.override(name) if service is not None else None
        is_default = False
        if raw is None:
            if name in self.config.main:
                raw = self.config.main[name]
            else:
                raw, is_default = self.default(name), True
        merged = {**self.defaults, **{k: v for k, v in (service.overrides if service else ())}}
        return self.config.expand(raw, merged).strip(), is_default


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


def _where(s: Service | None) -> str:
    return "main.cf" if s is None else f"master.cf {s.name}"


def smtpd_services(config: PostfixConfig) -> tuple[Service, ...]:
    return tuple(s for s in config.services if s.command == "smtpd" and s.type in ("inet", "pass"))


def _listeners(config: PostfixConfig) -> tuple[Service | None, ...]:
    """The smtpd services to judge; main.cf alone when no master.cf was given."""
    services = smtpd_services(config)
    return services if services else (None,)


def _is_submission(s: Service | None) -> bool:
    return s is not None and s.port in ("submission", "587")


def _is_smtps(s: Service | None) -> bool:
    return s is not None and s.port in ("smtps", "submissions", "465")


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "true", "1")


def _smtpd_level(ctx: AuditContext, s: Service | None) -> str:
    level, _ = ctx.value("smtpd_tls_security_level", s)
    if level:
        return level
    # the pre-2.3 booleans, used when the level is empty (postconf(5) smtpd_use_tls)
    if _yes(ctx.value("smtpd_enforce_tls", s)[0]):
        return "encrypt"
    return "may" if _yes(ctx.value("smtpd_use_tls", s)[0]) else "none"


Rule = Callable[[AuditContext], list[AuditFinding]]


def rule_mynetworks(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    scopes: list[Service | None] = [None]
    scopes += [s for s in smtpd_services(ctx.config) if s.override("mynetworks") is not None]
    suggested = "127.0.0.0/8 [::1]/128 (and only the addresses of your own hosts)"
    ref = "postconf(5) mynetworks, smtpd_relay_restrictions (permit_mynetworks)"
    for s in scopes:
        value, is_default = ctx.value("mynetworks", s)
        if is_default or not value:
            style, _ = ctx.value("mynetworks_style", None)
            if s is None and style in ("subnet", "class"):
                out.append(AuditFinding(
                    rule="mynetworks-wide", severity=Level.WARNING if style == "class"
                    else Level.NOTICE, title=f"mynetworks_style = {style} trusts every host "
                    f"of this machine's {style}", parameter="mynetworks_style", current=style,
                    suggested="host", reference="postconf(5) mynetworks_style", default=True,
                    remedy="Set mynetworks_style = host (the default from compatibility_level "
                    "2) or list mynetworks explicitly: permit_mynetworks relays for them."))  # fmt: skip
            continue
        worst: Level | None = None
        wide: list[str] = []
        for token in restriction_list(value):
            if token.startswith("!"):
                continue
            try:
                net = ipaddress.ip_network(token.replace("[", "").replace("]", ""), strict=False)
            except ValueError:
                continue  # a lookup table or a host name: not judged
            if net.prefixlen == 0 or (net.is_global and net.num_addresses >= 2**24):
                worst = Level.CRITICAL
                wide.append(token)
            elif net.is_global and net.prefixlen < (24 if net.version == 4 else 48):
                worst = worst or Level.WARNING
                wide.append(token)
        if worst is not None:
            out.append(AuditFinding(
                rule="mynetworks-wide", severity=worst, service=_where(s),
                title=f"mynetworks trusts {', '.join(wide)}: every host there may relay "
                "through this server (permit_mynetworks)",
                parameter="mynetworks", current=value, suggested=suggested, reference=ref,
                remedy="List only your own hosts; clients elsewhere should authenticate "
                "(SASL on the submission port) instead of being trusted by address."))  # fmt: skip
    return out


def _guards(restrictions: tuple[str, ...]) -> bool | None:
    """True if the list refuses relaying before any unconditional permit; False if ``permit``
    comes first; None if the list never decides."""
    for r in restrictions:
        if r in ("reject_unauth_destination", "defer_unauth_destination", "reject"):
            return True
        if r == "permit":
            return False
    return None


def rule_relay(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    for s in _listeners(ctx.config):
        relay, relay_default = ctx.value("smtpd_relay_restrictions", s)
        rcpt, _ = ctx.value("smtpd_recipient_restrictions", s)
        # smtpd evaluates both lists; mail is relayed only when both end in permit
        if _guards(restriction_list(relay)) or _guards(restriction_list(rcpt)):
            continue
        out.append(AuditFinding(
            rule="relay-restrictions-open", severity=Level.CRITICAL, service=_where(s),
            title="neither smtpd_relay_restrictions nor smtpd_recipient_restrictions refuses "
            "unauthorised destinations: an open relay",
            parameter="smtpd_relay_restrictions", current=relay or "(empty)",
            suggested="permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
            reference="postconf(5) smtpd_relay_restrictions, reject_unauth_destination",
            default=relay_default,
            remedy="End the relay rules with reject_unauth_destination after the permits for "
            "your own clients; check it with `mtalens probe HOST`."))  # fmt: skip
    return out


def rule_submission(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    for s in smtpd_services(ctx.config):
        if not (_is_submission(s) or _is_smtps(s)):
            continue
        sasl, sasl_default = ctx.value("smtpd_sasl_auth_enable", s)
        if not _yes(sasl):
            out.append(AuditFinding(
                rule="submission-no-sasl", severity=Level.WARNING, service=_where(s),
                title=f"submission service {s.name} does not offer SASL AUTH",
                parameter="smtpd_sasl_auth_enable", current=sasl, suggested="yes",
                reference="postconf(5) smtpd_sasl_auth_enable; RFC 6409 section 4.3; RFC 4954",
                default=sasl_default,
                remedy="Mail clients authenticate on the submission ports: add -o "
                "smtpd_sasl_auth_enable=yes to this master.cf service (SASL_README)."))  # fmt: skip
        if _is_smtps(s):
            wrap, wrap_default = ctx.value("smtpd_tls_wrappermode", s)
            if not _yes(wrap):
                out.append(AuditFinding(
                    rule="smtps-no-wrappermode", severity=Level.CRITICAL, service=_where(s),
                    title=f"{s.name} is the implicit-TLS port but speaks plain SMTP",
                    parameter="smtpd_tls_wrappermode", current=wrap, suggested="yes",
                    reference="postconf(5) smtpd_tls_wrappermode; RFC 8314 section 3.3",
                    default=wrap_default,
                    remedy="Clients on 465 start TLS with the first byte: add -o "
                    "smtpd_tls_wrappermode=yes to the service."))  # fmt: skip
            continue
        level = _smtpd_level(ctx, s)
        if level not in ("encrypt", "dane", "secure", "verify"):
            out.append(AuditFinding(
                rule="submission-tls-optional", severity=Level.WARNING, service=_where(s),
                title=f"submission service {s.name} does not require TLS",
                parameter="smtpd_tls_security_level", current=level, suggested="encrypt",
                reference="postconf(5) smtpd_tls_security_level; RFC 8314 section 3.3",
                default=s.override("smtpd_tls_security_level") is None
                and "smtpd_tls_security_level" not in ctx.config.main,
                remedy="Add -o smtpd_tls_security_level=encrypt to the submission service: "
                "clients must STARTTLS before anything else."))  # fmt: skip
    return out


def rule_tls_auth_only(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    for s in _listeners(ctx.config):
        if not _yes(ctx.value("smtpd_sasl_auth_enable", s)[0]):
            continue
        if _yes(ctx.value("smtpd_tls_wrappermode", s)[0]) or _smtpd_level(ctx, s) in (
            "encrypt", "dane", "secure", "verify",
        ):  # fmt: skip
            continue  # TLS comes first anyway
        only, only_default = ctx.value("smtpd_tls_auth_only", s)
        if _yes(only):
            continue
        out.append(AuditFinding(
            rule="auth-before-tls", severity=Level.WARNING, service=_where(s),
            title="SASL AUTH is offered before TLS: passwords can cross the network in clear",
            parameter="smtpd_tls_auth_only", current=only, suggested="yes",
            reference="postconf(5) smtpd_tls_auth_only; RFC 4954 section 4", default=only_default,
            remedy="Set smtpd_tls_auth_only = yes (or require TLS on the service): AUTH is then "
            "announced only after STARTTLS."))  # fmt: skip
    return out


_PROTOCOLS: Final = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def enabled_protocols(value: str) -> frozenset[str] | None:
    """The protocols a postconf(5) ``*_tls_*protocols`` value leaves enabled (exclusions with
    ``!``, an inclusion list, or the ``>=``/``<=`` bounds of Postfix 3.6); None if empty."""
    tokens = [t for t in value.replace(":", " ").replace(",", " ").split() if t]
    if not tokens:
        return None
    lo, hi = 0, len(_PROTOCOLS) - 1
    include: set[str] = set()
    exclude: set[str] = set()
    for t in tokens:
        if t.startswith(">=") and t[2:] in _PROTOCOLS:
            lo = max(lo, _PROTOCOLS.index(t[2:]))
        elif t.startswith("<=") and t[2:] in _PROTOCOLS:
            hi = min(hi, _PROTOCOLS.index(t[2:]))
        elif t.startswith("!"):
            exclude.add(t[1:])
        elif t in _PROTOCOLS:
            include.add(t)
    base = include or set(_PROTOCOLS)
    return frozenset(
        p for i, p in enumerate(_PROTOCOLS) if p in base and p not in exclude and lo <= i <= hi
    )


def rule_tls_protocols(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    checks = (
        # (parameter, protocols too old, suggested, severity, why)
        ("smtpd_tls_mandatory_protocols", {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"}, ">=TLSv1.2",
         Level.WARNING, "where TLS is required (submission), TLS 1.0 and 1.1 are deprecated "
         "(RFC 8996)"),
        ("smtp_tls_mandatory_protocols", {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"}, ">=TLSv1.2",
         Level.WARNING, "where TLS is required outbound, TLS 1.0 and 1.1 are deprecated "
         "(RFC 8996)"),
        ("smtpd_tls_protocols", {"SSLv2", "SSLv3"}, ">=TLSv1", Level.WARNING,
         "SSL 2 and 3 are broken (RFC 6176, RFC 7568); opportunistic TLS may keep TLS 1.0 for "
         "old senders (RFC 7435)"),
        ("smtp_tls_protocols", {"SSLv2", "SSLv3"}, ">=TLSv1", Level.WARNING,
         "SSL 2 and 3 are broken (RFC 6176, RFC 7568)"),
    )  # fmt: skip
    scopes: list[Service | None] = [None, *smtpd_services(ctx.config)]
    for parameter, old, suggested, severity, why in checks:
        for s in scopes:
            if s is not None and s.override(parameter) is None:
                continue
            value, is_default = ctx.value(parameter, s)
            enabled = enabled_protocols(value)
            if enabled is None or not enabled & old:
                continue
            weak = ", ".join(p for p in _PROTOCOLS if p in enabled & old)
            out.append(AuditFinding(
                rule="tls-protocol-floor", severity=severity, service=_where(s),
                title=f"{parameter} allows {weak}", parameter=parameter, current=value,
                suggested=suggested, reference=f"postconf(5) {parameter}", default=is_default,
                remedy=f"Raise the floor: {why}."))  # fmt: skip
    return out


def rule_outbound_tls(ctx: AuditContext) -> list[AuditFinding]:
    level, is_default = ctx.value("smtp_tls_security_level", None)
    if not level:
        if _yes(ctx.value("smtp_enforce_tls", None)[0]):
            level = "encrypt"
        elif _yes(ctx.value("smtp_use_tls", None)[0]):
            level = "may"
    if level and level != "none":
        return []
    return [AuditFinding(
        rule="outbound-tls-off", severity=Level.WARNING,
        title="outbound mail is never encrypted (smtp(8) does not use STARTTLS)",
        parameter="smtp_tls_security_level", current=level or "(empty: none)", suggested="may",
        reference="postconf(5) smtp_tls_security_level; RFC 3207; RFC 7435", default=is_default,
        remedy="Set smtp_tls_security_level = may (opportunistic TLS; most receivers offer "
        "STARTTLS), and smtp_tls_CAfile or smtp_tls_CApath for verified destinations.")]  # fmt: skip


def rule_inbound_tls(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    for s in _listeners(ctx.config):
        # port 25: its inet service, or the smtpd that postscreen(8) passes sessions to
        if s is not None and not (s.port in ("smtp", "25") or s.type == "pass"):
            continue
        level = _smtpd_level(ctx, s)
        if level != "none":
            continue
        out.append(AuditFinding(
            rule="inbound-tls-off", severity=Level.WARNING, service=_where(s),
            title="the SMTP server does not offer STARTTLS: mail to you crosses the network in "
            "clear", parameter="smtpd_tls_security_level", current="(empty: none)",
            suggested="may", reference="postconf(5) smtpd_tls_security_level; RFC 3207",
            default="smtpd_tls_security_level" not in ctx.config.main,
            remedy="Set smtpd_tls_cert_file, smtpd_tls_key_file and smtpd_tls_security_level "
            "= may (never encrypt on port 25: senders without TLS would be refused, RFC "
            "3207 section 4)."))  # fmt: skip
    return out


def rule_queue_lifetime(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    value, is_default = ctx.value("maximal_queue_lifetime")
    seconds = time_seconds(value)
    ref = "postconf(5) maximal_queue_lifetime; RFC 5321 section 4.5.4.1"
    if seconds is not None and seconds < 86400:
        out.append(AuditFinding(
            rule="queue-lifetime", severity=Level.WARNING,
            title=f"maximal_queue_lifetime = {value}: mail bounces after a short outage of "
            "the receiver", parameter="maximal_queue_lifetime", current=value, suggested="5d",
            reference=ref, default=is_default,
            remedy="RFC 5321 asks senders to retry for at least 4-5 days; keep 5d unless the "
            "mail is only worth delivering soon."))  # fmt: skip
    elif seconds is not None and seconds > 7 * 86400:
        out.append(AuditFinding(
            rule="queue-lifetime", severity=Level.NOTICE,
            title=f"maximal_queue_lifetime = {value}: senders learn of a failure late",
            parameter="maximal_queue_lifetime", current=value, suggested="5d", reference=ref,
            default=is_default, remedy="Five days is what RFC 5321 suggests."))  # fmt: skip
    bounce, bounce_default = ctx.value("bounce_queue_lifetime")
    b = time_seconds(bounce)
    if b is not None and seconds is not None and b > seconds:
        out.append(AuditFinding(
            rule="queue-lifetime", severity=Level.NOTICE,
            title="bounce_queue_lifetime is longer than maximal_queue_lifetime",
            parameter="bounce_queue_lifetime", current=bounce, suggested=value,
            reference="postconf(5) bounce_queue_lifetime", default=bounce_default,
            remedy="Bounces are worth less than mail: keep their lifetime at most the "
            "mail's."))  # fmt: skip
    return out


def rule_size_limits(ctx: AuditContext) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    msg, msg_default = ctx.value("message_size_limit")
    box, box_default = ctx.value("mailbox_size_limit")
    if msg.isdigit() and int(msg) == 0:
        out.append(AuditFinding(
            rule="size-limits", severity=Level.WARNING,
            title="message_size_limit = 0: messages of any size are accepted",
            parameter="message_size_limit", current=msg, suggested="52428800 (50 MB)",
            reference="postconf(5) message_size_limit; RFC 1870", default=msg_default,
            remedy="One huge message can fill the queue file system; set a limit (SIZE is "
            "announced in EHLO so senders learn it first)."))  # fmt: skip
    if msg.isdigit() and box.isdigit() and int(box) != 0 and int(box) < int(msg or 0):
        out.append(AuditFinding(
            rule="size-limits", severity=Level.CRITICAL,
            title="mailbox_size_limit is smaller than message_size_limit",
            parameter="mailbox_size_limit", current=box,
            suggested=f"0, or more than message_size_limit ({msg})",
            reference="postconf(5) mailbox_size_limit", default=box_default,
            remedy="local(8) and virtual(8) refuse to run when a mailbox cannot hold one "
            "message of the largest accepted size: raise mailbox_size_limit (0: no limit)."))  # fmt: skip
    return out


def rule_myhostname(ctx: AuditContext) -> list[AuditFinding]:
    name = ctx.config.main.get("myhostname")
    out: list[AuditFinding] = []
    if name is None:
        return out
    name = ctx.config.expand(name, ctx.defaults).strip().rstrip(".").lower()
    ref = "postconf(5) myhostname; RFC 5321 sections 2.3.5, 4.1.1.1"
    if "." not in name:
        out.append(AuditFinding(
            rule="myhostname", severity=Level.WARNING,
            title=f"myhostname {name} is not a fully-qualified domain name",
            parameter="myhostname", current=name, suggested="mail.example.com (a FQDN)",
            reference=ref,
            remedy="Postfix greets and says EHLO with myhostname; receivers refuse a HELO "
            "name that is not a FQDN (reject_non_fqdn_helo_hostname)."))  # fmt: skip
    rdns = ctx.myhostname_rdns
    if rdns is None:
        return out
    if not rdns:
        out.append(AuditFinding(
            rule="myhostname-rdns", severity=Level.NOTICE,
            title=f"myhostname {name} has no address in DNS", parameter="myhostname",
            current=name, suggested="a name with an A/AAAA record and a matching PTR",
            reference=ref, remedy="Give myhostname an A record for the sending address, and "
            "that address a PTR back to it (forward-confirmed reverse DNS)."))  # fmt: skip
    for address, names in rdns.items():
        if name not in names:
            out.append(AuditFinding(
                rule="myhostname-rdns", severity=Level.WARNING,
                title=f"the reverse DNS of {address} ({', '.join(names) or 'none'}) is not "
                f"myhostname {name}", parameter="myhostname", current=name,
                suggested=names[0] if names else "(set a PTR record for the address)",
                reference=ref, remedy="Receivers compare the EHLO name with the client's "
                "PTR: set the PTR of the sending address to myhostname (your hosting "
                "provider does it), or myhostname to the PTR name."))  # fmt: skip
    return out


def rule_dnsbl(ctx: AuditContext) -> list[AuditFinding]:
    services = ctx.config.services
    if not services:
        return []  # which daemon answers port 25 is in master.cf
    postscreen = [s for s in services if s.command == "postscreen"]
    sites, sites_default = ctx.value("postscreen_dnsbl_sites")
    if postscreen:
        if sites:
            return []
        return [AuditFinding(
            rule="dnsbl", severity=Level.NOTICE,
            title="postscreen runs without DNS blocklists", parameter="postscreen_dnsbl_sites",
            current="(empty)", suggested="zen.spamhaus.org*3 (and your choice of others)",
            reference="postconf(5) postscreen_dnsbl_sites; POSTSCREEN_README",
            default=sites_default,
            remedy="postscreen scores clients by DNSBL listings; without sites it only checks "
            "protocol behaviour. Query Spamhaus through your own resolver (its usage terms).")]  # fmt: skip
    lists = ("smtpd_client_restrictions", "smtpd_helo_restrictions",
             "smtpd_sender_restrictions", "smtpd_recipient_restrictions",
             "smtpd_relay_restrictions", "smtpd_data_restrictions")  # fmt: skip
    for s in _listeners(ctx.config):
        for name in lists:
            if any(
                r.startswith("reject_rbl_client") for r in restriction_list(ctx.value(name, s)[0])
            ):
                return []
    return [AuditFinding(
        rule="dnsbl", severity=Level.NOTICE,
        title="no postscreen and no reject_rbl_client: no DNS blocklist is consulted",
        parameter="smtpd_recipient_restrictions",
        current=ctx.value("smtpd_recipient_restrictions")[0] or "(empty)",
        suggested="..., reject_unauth_destination, reject_rbl_client zen.spamhaus.org",
        reference="postconf(5) reject_rbl_client, postscreen(8); POSTSCREEN_README",
        remedy="Consult a DNSBL: postscreen with postscreen_dnsbl_sites on port 25, or "
        "reject_rbl_client in smtpd_recipient_restrictions.")]  # fmt: skip


def rule_vrfy(ctx: AuditContext) -> list[AuditFinding]:
    value, is_default = ctx.value("disable_vrfy_command")
    if _yes(value):
        return []
    return [AuditFinding(
        rule="vrfy-enabled", severity=Level.NOTICE,
        title="VRFY is enabled: anyone can test which addresses exist",
        parameter="disable_vrfy_command", current=value, suggested="yes",
        reference="postconf(5) disable_vrfy_command; RFC 5321 section 7.3", default=is_default,
        remedy="Set disable_vrfy_command = yes: address harvesters use VRFY.")]  # fmt: skip


RULES: Final[tuple[Rule, ...]] = (
    rule_mynetworks,
    rule_relay,
    rule_submission,
    rule_tls_auth_only,
    rule_tls_protocols,
    rule_outbound_tls,
    rule_inbound_tls,
    rule_queue_lifetime,
    rule_size_limits,
    rule_myhostname,
    rule_dnsbl,
    rule_vrfy,
)

_RANK: Final = {Level.CRITICAL: 0, Level.WARNING: 1, Level.NOTICE: 2}


def audit(ctx: AuditContext) -> tuple[AuditFinding, ...]:
    """Every rule's findings, the most severe first (then in rule order)."""
    found = [f for rule in RULES for f in rule(ctx)]
    return tuple(sorted(found, key=lambda f: _RANK[f.severity]))
