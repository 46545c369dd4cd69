"""`mtalens diagnose`: findings with evidence and remedies, as text, JSON or one HTML file.

Thin: open the store read-only, build the context, one library call, render.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mtalens.pipeline.exitcodes import ExitCode


class DiagnoseFormat(StrEnum):
    text = "text"
    json = "json"
    html = "html"


class FailOn(StrEnum):
    never = "never"
    notice = "notice"
    warning = "warning"
    critical = "critical"


# the severities at or above each --fail-on threshold
_FAILING: dict[FailOn, frozenset[str]] = {
    FailOn.never: frozenset(),
    FailOn.notice: frozenset({"notice", "warning", "critical"}),
    FailOn.warning: frozenset({"warning", "critical"}),
    FailOn.critical: frozenset({"critical"}),
}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"mtalens diagnose: {message}", err=True)
    return typer.Exit(ExitCode.USAGE)


def diagnose(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            "--lake",
            envvar="MTALENS_DB",
            help="DuckDB store file (default: ./mtalens.duckdb), or a lake directory.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start (ISO date/time or 24h / 7d back).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End, exclusive (same forms).")
    ] = None,
    fmt: Annotated[
        DiagnoseFormat, typer.Option("--format", "-f", help="Output format.")
    ] = DiagnoseFormat.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
    our_ip: Annotated[
        list[str] | None,
        typer.Option("--our-ip", help="Our sending IP (repeatable), besides those in the logs."),
    ] = None,
    resolver: Annotated[
        list[str] | None,
        typer.Option(
            "--resolver", help="Check FCrDNS live with this nameserver (default: DNS cache only)."
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Nameserver port for --resolver.")] = 53,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding is at least this severe (for cron and monitoring).",
        ),
    ] = FailOn.never,
) -> None:
    """Why mail does not go out: findings with severity, evidence and a remedy.

    Exit codes: 0 done (whatever was found, unless --fail-on says otherwise); 1 a finding at or
    above --fail-on; 2 usage or input error (bad option, no store)."""
    from mtalens.pipeline.diagnose import Context, render_text, summarize
    from mtalens.pipeline.diagnose import diagnose as run_diagnose
    from mtalens.pipeline.dns import DnsCache, DnsClient, make_resolver
    from mtalens.pipeline.html_report import build_report
    from mtalens.pipeline.store import Store, StoreError
    from mtalens.pipeline.timerange import TimeRangeError, time_range

    now = datetime.now(UTC)
    try:
        start, end = time_range(since, until, now=now)
    except TimeRangeError as exc:
        raise _fail(str(exc)) from exc
    try:  # written as the logs write them: compressed IPv6, no zone
        our_ips = tuple(str(ipaddress.ip_address(ip.strip())) for ip in our_ip or ())
    except ValueError as exc:
        raise _fail(f"bad --our-ip: {exc}") from exc
    try:
        store = Store.open(db, read_only=True)
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    with store:
        client = None
        if resolver:
            try:
                client = DnsClient(
                    make_resolver(resolver, port=port),
                    clock=lambda: datetime.now(UTC),
                    cache=DnsCache(store),
                )
            except ValueError as exc:
                raise _fail(f"bad --resolver: {exc}") from exc
        ctx = Context(store=store, since=start, until=end, dns=client, our_ips=our_ips)
        findings = run_diagnose(ctx)
        if fmt is DiagnoseFormat.html:
            text = build_report(ctx, findings, generated_at=now)
        elif fmt is DiagnoseFormat.json:
            text = json.dumps([f.as_dict() for f in findings], indent=2, ensure_ascii=False) + "\n"
        else:
            text = render_text(findings, summary=summarize(ctx))
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            typer.echo(f"mtalens: cannot write {output}: {exc.strerror or exc}", err=True)
            raise typer.Exit(ExitCode.USAGE) from None
        typer.echo(f"{len(findings)} finding(s) written to {output}", err=True)
    if any(str(f.severity) in _FAILING[fail_on] for f in findings):
        raise typer.Exit(ExitCode.FINDINGS)
