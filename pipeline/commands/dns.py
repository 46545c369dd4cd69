"""`mtalens dns ...`: DNS checks of a mail domain, DNSBL lookups and forward-confirmed rDNS.

Thin: build a client (resolver + optional cache), make one library call, render. The logic is
in ``mtalens.pipeline.dns``, imported inside each command with the store: dnspython and duckdb
cost more start-up time than the rest of ``mtalens --help`` (issue 10).

Exit codes, the same for every subcommand: 0 checked, nothing wrong; 1 something wrong found
(findings win over unknowns); 3 some checks could not be made (a lookup timed out, was refused or
failed) and nothing wrong was found in the rest: those are shown as "unknown", never as "not
listed" or "no record"; when no lookup got an answer, also one line on stderr saying why; 2 a
usage error, including a resolver nothing listens on (no lookup can be made at all).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mtalens.pipeline.cells import terminal_text
from mtalens.pipeline.dns_defaults import DEFAULT_BLOCKLISTS, DEFAULT_TIMEOUT
from mtalens.pipeline.exitcodes import ExitCode

if TYPE_CHECKING:
    from mtalens.pipeline.dns import DnsClient

dns_app = typer.Typer(
    name="dns",
    help="DNS checks: mail domain records, DNS blocklists, forward-confirmed reverse DNS.",
    no_args_is_help=True,
)

ResolverOption = Annotated[
    list[str] | None,
    typer.Option(
        "--resolver",
        help="Nameserver IP to query (repeatable) (default: the nameservers in /etc/resolv.conf)",
    ),
]
PortOption = Annotated[int, typer.Option("--port", help="Nameserver port")]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        help="Seconds a lookup may take before it counts as timed out; a resolver that answers "
        "nothing is given up after its first timeout",
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store holding the DNS cache"),
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the DNS cache (no store needed)")
]
FormatOption = Annotated[str, typer.Option("--format", help="text or json")]


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"mtalens dns: {message}", err=True)
    return typer.Exit(ExitCode.USAGE)


def _finish(client: DnsClient, *, found: bool, unknown: bool) -> None:
    """The exit code shared by the dns commands (module docstring): findings over unknowns."""
    trouble = client.trouble()
    if trouble is not None:
        typer.echo(f"mtalens: {trouble}; nothing could be checked", err=True)
    if found:
        raise typer.Exit(ExitCode.FINDINGS)
    if unknown:
        raise typer.Exit(ExitCode.PARTIAL)


@contextmanager
def _client(
    resolver: list[str] | None, port: int, timeout: float, db: str | None, no_cache: bool
) -> Iterator[DnsClient]:
    from mtalens.pipeline.dns import DnsCache, DnsClient, make_resolver, system_nameservers
    from mtalens.pipeline.store import Store, StoreError

    if not timeout > 0:
        raise _fail(f"--timeout must be more than 0 seconds, not {timeout:g}")
    if not 0 < port < 65536:
        raise _fail(f"--port must be a port number (1-65535), not {port}")
    nameservers = resolver or system_nameservers()
    try:
        res = make_resolver(nameservers, port=port, timeout=timeout)
    except ValueError as exc:
        raise _fail(f"bad --resolver: {exc}") from exc
    if no_cache:
        yield DnsClient(res, clock=_now)
        return
    try:
        store = Store.open(db)
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    with store:
        yield DnsClient(res, clock=_now, cache=DnsCache(store))


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


def _rows(items: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(i) for i in items]


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        raise _fail(f"--format must be text or json, not {fmt!r}")


@dns_app.command("check")
def check(
    domain: Annotated[str, typer.Argument(help="Mail domain to check")],
    selector: Annotated[
        list[str] | None, typer.Option("--selector", "-s", help="DKIM selector (repeatable)")
    ] = None,
    resolver: ResolverOption = None,
    port: PortOption = 53,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
    fmt: FormatOption = "text",
) -> None:
    """MX, null MX, SPF, DMARC, DKIM, MTA-STS and TLS-RPT records.

    Exit codes: 0 no error found; 1 an error found; 3 no error found, but some checks are
    "unknown" (their lookup timed out, was refused or failed); 2 usage error, or a resolver
    nothing listens on."""
    from mtalens.pipeline.dns import Severity, check_domain, mail_domain

    _check_format(fmt)
    try:
        domain = mail_domain(domain)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    with _client(resolver, port, timeout, db, no_cache) as client:
        report = check_domain(client, domain, selectors=selector or ())
    if fmt == "json":
        typer.echo(
            _json(
                {
                    "domain": report.domain,
                    "worst": report.worst,
                    "findings": _rows(list(report.findings)),
                }
            )
        )
    else:
        # record texts come from the domain's own zone: never raw onto the terminal
        typer.echo(terminal_text(report.domain))
        for f in report.findings:
            typer.echo(terminal_text(f"  {f.severity:<8} {f.check:<8} {f.message}"))
    _finish(client, found=report.worst is Severity.ERROR, unknown=bool(report.unknown))


@dns_app.command("blocklist")
def blocklist(
    ip: Annotated[str, typer.Argument(help="IPv4 or IPv6 address")],
    zone: Annotated[
        list[str] | None,
        typer.Option(
            "--zone",
            "-z",
            help=f"DNSBL zone (repeatable) (default: {', '.join(DEFAULT_BLOCKLISTS)})",
        ),
    ] = None,
    resolver: ResolverOption = None,
    port: PortOption = 53,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
    fmt: FormatOption = "text",
) -> None:
    """Look IP up in DNS blocklists.

    Exit codes: 0 not listed on any list; 1 listed on at least one; 3 not listed on the lists
    that answered, but "unknown" on others (the lookup timed out, was refused or failed) or a
    list answered with a query error (Spamhaus' 127.255.255.x); 2 usage error, or a resolver
    nothing listens on."""
    from mtalens.pipeline.dns import Listing, check_blocklists, mail_domain

    _check_format(fmt)
    try:
        zones = [mail_domain(z) for z in zone] if zone else list(DEFAULT_BLOCKLISTS)
    except ValueError as exc:
        raise _fail(f"bad --zone: {exc}") from exc
    with _client(resolver, port, timeout, db, no_cache) as client:
        try:
            results = check_blocklists(client, ip, zones)
        except ValueError as exc:
            raise _fail(f"bad IP address {ip!r}") from exc
    if fmt == "json":
        typer.echo(_json(_rows(results)))
    else:
        for r in results:
            line = f"{r.status:<13} {r.zone:<28} {r.message}"
            if r.txt:
                line += f" ({' | '.join(r.txt)})"
            typer.echo(terminal_text(line))
    _finish(
        client,
        found=any(r.status is Listing.LISTED for r in results),
        unknown=not all(r.status.checked for r in results),
    )


@dns_app.command("fcrdns")
def fcrdns(
    ips: Annotated[list[str], typer.Argument(help="IP addresses")],
    resolver: ResolverOption = None,
    port: PortOption = 53,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
    fmt: FormatOption = "text",
) -> None:
    """Forward-confirmed reverse DNS: PTR names and whether one resolves back.

    Exit codes: 0 every IP confirmed; 1 an IP not confirmed (no PTR, or no PTR name resolves back
    to it); 3 none of that, but some IPs "unknown" (a lookup timed out, was refused or failed);
    2 usage error, or a resolver nothing listens on."""
    from mtalens.pipeline.dns import check_fcrdns

    _check_format(fmt)
    with _client(resolver, port, timeout, db, no_cache) as client:
        try:
            results = [check_fcrdns(client, ip) for ip in ips]
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    if fmt == "json":
        typer.echo(_json(_rows(results)))
    else:
        for r in results:
            verdict = "ok" if r.confirmed else "unknown" if r.unknown else "FAIL"
            typer.echo(terminal_text(f"{r.ip:<39} {verdict:<7} {r.message}"))
    _finish(
        client,
        found=any(not r.confirmed and not r.unknown for r in results),
        unknown=any(r.unknown for r in results),
    )
