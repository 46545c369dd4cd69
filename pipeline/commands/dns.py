"""`mtalens dns ...`: DNS checks of a mail domain, DNSBL lookups and forward-confirmed rDNS.

Thin: build a client (resolver + optional cache), make one library call, render. The logic is
in ``mtalens.pipeline.dns``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from mtalens.pipeline.dns import (
    DEFAULT_BLOCKLISTS,
    DEFAULT_TIMEOUT,
    DnsCache,
    DnsClient,
    Listing,
    Severity,
    check_blocklists,
    check_domain,
    check_fcrdns,
    make_resolver,
    system_nameservers,
)
from mtalens.pipeline.store import Store, StoreError

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
    float, typer.Option("--timeout", help="Seconds per query before it counts as timed out")
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
    return typer.Exit(2)


@contextmanager
def _client(
    resolver: list[str] | None, port: int, timeout: float, db: str | None, no_cache: bool
) -> Iterator[DnsClient]:
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
    """MX, null MX, SPF, DMARC, DKIM, MTA-STS and TLS-RPT records. Exit 1 if any error."""
    _check_format(fmt)
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
        typer.echo(report.domain)
        for f in report.findings:
            typer.echo(f"  {f.severity:<8} {f.check:<8} {f.message}")
    if report.worst is Severity.ERROR:
        raise typer.Exit(1)


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
    """Look IP up in DNS blocklists. Exit 1 if it is listed anywhere."""
    _check_format(fmt)
    with _client(resolver, port, timeout, db, no_cache) as client:
        try:
            results = check_blocklists(client, ip, zone or DEFAULT_BLOCKLISTS)
        except ValueError as exc:
            raise _fail(f"bad IP address {ip!r}") from exc
    if fmt == "json":
        typer.echo(_json(_rows(results)))
    else:
        for r in results:
            line = f"{r.status:<13} {r.zone:<28} {r.message}"
            if r.txt:
                line += f" ({' | '.join(r.txt)})"
            typer.echo(line)
    if any(r.status is Listing.LISTED for r in results):
        raise typer.Exit(1)


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
    """Forward-confirmed reverse DNS: PTR names and whether one resolves back. Exit 1 if not."""
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
            typer.echo(f"{r.ip:<39} {'ok' if r.confirmed else 'FAIL':<5} {r.message}")
    if not all(r.confirmed for r in results):
        raise typer.Exit(1)
