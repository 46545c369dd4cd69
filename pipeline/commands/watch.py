"""`mtalens watch`: the tailing daemon (thin; see pipeline/watch.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from mtalens.pipeline.exitcodes import ExitCode


def watch(
    db: Annotated[
        str | None,
        typer.Option(
            "--db", envvar="MTALENS_DB", help="DuckDB store file (default: ./mtalens.duckdb)"
        ),
    ] = None,
    lake: Annotated[
        str | None,
        typer.Option(
            "--lake",
            help="Write a Parquet lake (directory) instead of the store file; see"
            " `mtalens ingest --lake`.",
        ),
    ] = None,
    writer: Annotated[
        str | None,
        typer.Option("--writer", help="With --lake: this daemon's writer name (default: host)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="mtalens.toml with \\[watch] and \\[alerts] sections."),
    ] = None,
    log: Annotated[
        list[str] | None, typer.Option("--log", help="Log file or glob (repeatable).")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Read every log as this format (postfix, exim, exim-rejectlog, sendmail) instead of detecting"
            " each from its first lines.",
        ),
    ] = None,
    maildir: Annotated[
        list[str] | None, typer.Option("--maildir", help="Bounce Maildir (repeatable).")
    ] = None,
    mbox: Annotated[
        list[str] | None, typer.Option("--mbox", help="Bounce mbox (repeatable).")
    ] = None,
    reports_maildir: Annotated[
        list[str] | None,
        typer.Option(
            "--reports-maildir", help="Maildir of DMARC/TLS-RPT report mail (repeatable)."
        ),
    ] = None,
    imap: Annotated[
        list[str] | None,
        typer.Option(
            "--imap",
            help="IMAP mailbox of bounces, imaps://USER@HOST/MAILBOX "
            "(repeatable; password from \\[imap] or $MTALENS_IMAP_PASSWORD).",
        ),
    ] = None,
    poll: Annotated[
        bool | None, typer.Option("--poll/--inotify", help="Poll instead of inotify.")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option("--poll-interval", help="Seconds between checks (default: 1).")
    ] = None,
    commit_interval: Annotated[
        float | None,
        typer.Option("--commit-interval", help="Seconds between write windows (default: 1)."),
    ] = None,
    drain_grace: Annotated[
        float | None,
        typer.Option("--drain-grace", help="Seconds to keep reading a rotated file (default: 5)."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA zone of timestamps without offset.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option("--metrics-host", help="Metrics bind address (default: 127.0.0.1)."),
    ] = None,
    webhook_port: Annotated[
        int | None,
        typer.Option(
            "--webhook-port",
            help="Receive the sending platforms' event webhooks on "
            "this port (POST /events/<provider>; credentials in \\[webhooks]).",
        ),
    ] = None,
    webhook_host: Annotated[
        str | None,
        typer.Option("--webhook-host", help="Webhook bind address (default: 127.0.0.1)."),
    ] = None,
    check_domain: Annotated[
        list[str] | None,
        typer.Option(
            "--check-domain",
            help="Check this mail domain's DNS on a schedule (repeatable; \\[checks] domains).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    check_selector: Annotated[
        list[str] | None,
        typer.Option(
            "--check-selector",
            help="DKIM selector of the checked domains (repeatable).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    check_ip: Annotated[
        list[str] | None,
        typer.Option(
            "--check-ip",
            help="Look up this sending IP on the blocklists on a "
            "schedule (repeatable; those in the logs are added).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    check_blocklist: Annotated[
        list[str] | None,
        typer.Option(
            "--check-blocklist",
            help="DNSBL zone for --check-ip (repeatable; "
            "default: the five of `mtalens dns blocklist`).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    check_interval: Annotated[
        float | None,
        typer.Option(
            "--check-interval",
            help="Seconds between two runs of the checks (default: 3600).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    check_resolver: Annotated[
        list[str] | None,
        typer.Option(
            "--check-resolver",
            help="Resolver IP for the checks (repeatable; default: "
            "resolv.conf; Spamhaus refuses public ones).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    check_resolver_port: Annotated[
        int | None,
        typer.Option(
            "--check-resolver-port",
            help="Port of --check-resolver (default: 53).",
            rich_help_panel="Scheduled checks",
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Process what is there, then exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    r"""Tail logs and bounce mailboxes into the store; readers can query while it runs.

    A source that is not there yet is logged and waited for; with --once it is an error.
    --imap reads IMAP mailboxes of bounces (IDLE where offered); --webhook-port receives the
    sending platforms' event webhooks (authenticated per provider, \[webhooks]).

    With \[checks] in the config or a --check-* option it also looks up our sending IPs on DNS
    blocklists and checks our domains' MX, SPF, DMARC, DKIM, MTA-STS and TLS-RPT records every
    --check-interval seconds: history in the check_history view, metrics, and the alerts
    dnsbl_listed, dns_broken and dns_changed.

    Exit codes: 0 after --once or a signal; 2 for a bad option, config or store, or (--once)
    when no configured source is there; 3 (--once) when some of them are not."""
    from mtalens.pipeline.commands.writing import from_environment
    from mtalens.pipeline.store import StoreError
    from mtalens.pipeline.watch import build_watcher, setup_json_logging
    from mtalens.pipeline.watch_config import WatchConfigError

    setup_json_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        watcher = build_watcher(
            config, db=None if lake and from_environment(db) else db, lake=lake, writer=writer, logs=log, log_format=log_format, maildirs=maildir, mboxes=mbox,
            report_maildirs=reports_maildir, imap=imap, poll=poll,
            poll_interval=poll_interval, commit_interval=commit_interval,
            drain_grace=drain_grace, timezone=timezone, metrics_port=metrics_port,
            metrics_host=metrics_host, webhook_port=webhook_port, webhook_host=webhook_host,
            check_domains=check_domain,
            check_dkim_selectors=check_selector, check_ips=check_ip, check_blocklists=check_blocklist,
            check_interval=check_interval, check_resolvers=check_resolver,
            check_resolver_port=check_resolver_port,
        )  # fmt: skip
        missing = watcher.unmatched() if once else []
        cfg = watcher.config
        n_sources = len(cfg.logs) + len(cfg.maildirs) + len(cfg.mboxes) + len(cfg.report_maildirs)
        if missing and len(missing) == n_sources:
            raise ValueError("nothing to read: " + "; ".join(missing))
        watcher.run(once=once)
        if missing:
            typer.echo("mtalens: not read: " + "; ".join(missing), err=True)
            raise typer.Exit(ExitCode.PARTIAL)
    except (WatchConfigError, ValueError, StoreError, OSError) as exc:
        typer.echo(f"mtalens: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from exc
