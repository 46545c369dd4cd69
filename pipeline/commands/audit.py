"""`mtalens audit postfix`: the configuration checked against the guides' advice.

Thin: read the settings (a file, or postconf), one library call, render. Exit codes in the
command's help."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mtalens.pipeline.exitcodes import ExitCode

audit_app = typer.Typer(
    name="audit", help="Audit an MTA's configuration (Postfix).", no_args_is_help=True
)


class AuditFormat(StrEnum):
    table = "table"
    json = "json"


@audit_app.command("postfix")
def audit_postfix(
    postconf: Annotated[
        Path | None,
        typer.Option(
            "--postconf",
            help="A file of `postconf -n` and/or `postconf -M` output (or main.cf/master.cf "
            "text) (default: run postconf here).",
        ),
    ] = None,
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="Run postconf -c DIR (another Postfix instance)."),
    ] = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", "-f", help="Output format.")] = (
        AuditFormat.table
    ),
    dns: Annotated[
        bool,
        typer.Option("--dns/--no-dns", help="Compare myhostname with its reverse DNS."),
    ] = True,
) -> None:
    """Check Postfix's settings: open-relay risks (mynetworks, smtpd_relay_restrictions),
    submission without SASL or required TLS, AUTH before TLS (smtpd_tls_auth_only), TLS
    protocol floors, outbound and inbound TLS, queue lifetimes, size limits, myhostname and its
    reverse DNS, postscreen and DNSBL use, VRFY. Each finding names the parameter, its current
    and suggested value and the postconf(5) entry.

    Exit codes: 0 nothing found; 1 findings; 2 no usable configuration (a missing file, text
    that is not postconf output, postconf not installed or failing)."""
    from mtalens.pipeline import audit as lib

    if postconf is not None and config_dir is not None:
        raise lib.AuditError("give --postconf FILE or --config-dir DIR, not both")
    config = lib.read_postconf_file(postconf) if postconf else lib.run_postconf(config_dir)
    rdns = lib.myhostname_rdns(config) if dns and "myhostname" in config.main else None
    findings = lib.audit_postfix(config, now=lambda: datetime.now(UTC), rdns=rdns)
    if fmt is AuditFormat.json:
        typer.echo(json.dumps([f.as_dict() for f in findings], indent=2, default=str))
    else:
        from mtalens.pipeline.finding_text import findings_text

        typer.echo(findings_text(findings, skip_facts=frozenset({"service"})), nl=False)
    raise typer.Exit(int(ExitCode.FINDINGS if findings else ExitCode.OK))
