"""`mtalens probe HOST`: a mail server's ports tested as the guides do by hand, and judged.

Thin: check the arguments, one call to ``mtalens.pipeline.probe`` (imported inside the command,
with ssl and the findings' module), render. Exit codes in the command's help.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mtalens.pipeline.probe import PortProbe, ProbeReport


class ProbeFormat(StrEnum):
    table = "table"
    json = "json"


def _now() -> datetime:
    return datetime.now(UTC)


def probe(
    host: Annotated[str, typer.Argument(help="Host name or IP address of the mail server.")],
    port: Annotated[
        str | None,
        typer.Option(
            "--port",
            help="Ports, comma-separated (default 25,465,587; with --outbound 25). 465 is "
            "implicit TLS, the others STARTTLS; PORT/tls or PORT/starttls says otherwise.",
        ),
    ] = None,
    fmt: Annotated[ProbeFormat, typer.Option("--format", "-f", help="Output format.")] = (
        ProbeFormat.table
    ),
    outbound: Annotated[
        bool,
        typer.Option(
            "--outbound",
            help="Only test whether this machine reaches HOST's port 25 and gets a greeting "
            "(an ISP blocking outbound port 25 shows as a timeout).",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per connect/reply.")] = 10.0,
    helo: Annotated[
        str | None, typer.Option("--helo", help="Name to send in EHLO (default: this host's).")
    ] = None,
    tls_name: Annotated[
        str | None,
        typer.Option("--tls-name", help="Name the certificate must match (default: HOST)."),
    ] = None,
    cafile: Annotated[
        Path | None,
        typer.Option("--cafile", help="Trust these CA certificates (PEM) instead of the system's."),
    ] = None,
    relay_from: Annotated[
        str | None, typer.Option("--relay-from", help="Outside sender for the open-relay test.")
    ] = None,
    relay_to: Annotated[
        str | None, typer.Option("--relay-to", help="Outside recipient for the open-relay test.")
    ] = None,
    relay_test: Annotated[
        bool, typer.Option("--relay-test/--no-relay-test", help="Run the open-relay test.")
    ] = True,
    tls_versions: Annotated[
        bool,
        typer.Option(
            "--tls-versions/--no-tls-versions",
            help="Try each TLS version in a short session of its own.",
        ),
    ] = True,
    rdns: Annotated[
        bool,
        typer.Option("--rdns/--no-rdns", help="Compare the greeting name with reverse DNS."),
    ] = True,
) -> None:
    """Connect to HOST's SMTP ports as `telnet host 25` and `openssl s_client -starttls smtp`
    do: time to connect, the greeting, EHLO extensions, STARTTLS or implicit TLS (version,
    cipher, certificate, expiry, name, self-signed, which TLS versions are accepted), AUTH
    mechanisms before and after TLS, and an open-relay test that never sends a message (MAIL
    FROM and RCPT TO outside addresses, then RSET and QUIT). Every step's reply is shown. It
    connects only to the address HOST resolves to, on the ports given.

    Exit codes: 0 nothing wrong; 1 findings on a port that answered (with --outbound: the
    port cannot be reached); 2 bad host, port or option, or HOST does not resolve; 3 nothing
    wrong where the server answered, but some ports refused or timed out (each is a finding,
    with its remedy)."""
    from mtalens.pipeline import probe as lib

    if not timeout > 0:
        raise lib.ProbeError(f"--timeout must be more than 0 seconds, not {timeout:g}")
    lib.check_host(host)
    for name, address in (("--relay-from", relay_from), ("--relay-to", relay_to)):
        if address is not None and not lib.is_mailbox(address):
            raise lib.ProbeError(f"bad {name} {address!r}: give an address like user@example.org")
    if cafile is not None:
        lib.check_cafile(str(cafile))
    if outbound:
        specs = lib.parse_ports(port or "25")
        if len(specs) != 1:
            raise lib.ProbeError("--outbound tests one port")
        report = lib.probe_outbound(host, specs[0].port, now=_now, timeout=timeout)
    else:
        specs = lib.parse_ports(port or ",".join(map(str, lib.DEFAULT_PORTS)))
        report = lib.probe(
            host,
            specs,
            now=_now,
            timeout=timeout,
            helo=helo,
            tls_name=tls_name,
            cafile=str(cafile) if cafile else None,
            relay_from=relay_from or lib.DEFAULT_RELAY_FROM,
            relay_to=relay_to or lib.DEFAULT_RELAY_TO,
            relay_test=relay_test,
            tls_versions=tls_versions,
            rdns=rdns,
        )
    if fmt is ProbeFormat.json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        typer.echo(_text(report), nl=False)
    raise typer.Exit(int(report.exit_code()))


def _text(report: ProbeReport) -> str:
    from mtalens.parsers.smtp import printable
    from mtalens.pipeline.finding_text import findings_text

    what = "outbound reachability of" if report.outbound else "probe of"
    lines = [printable(f"{what} {report.host} ({report.address})")]
    if report.rdns is not None:
        lines.append(printable(f"reverse DNS: {', '.join(report.rdns) or '(none)'}"))
    for p in report.ports:
        lines.append("")
        lines.extend(_port_text(p))
    lines.append("")
    lines.append("findings:")
    return "\n".join(lines) + "\n" + findings_text(report.findings, skip_facts=_SKIP)


_SKIP = frozenset({"host", "address", "mode"})


def _port_text(p: PortProbe) -> list[str]:
    from mtalens.parsers.smtp import printable

    head = f"port {p.port} ({p.mode}): {p.outcome}"
    if p.connect_seconds is not None:
        head += f", connected in {p.connect_seconds * 1000:.1f} ms"
    if p.error:
        head += f" ({p.error})"
    out = [printable(head)]
    for step in p.steps:
        if step.sent is not None:
            out.append(printable(f"  C: {step.sent}"))
        if step.reply is not None:
            out.extend(printable(f"  S: {line}") for line in step.reply.show().splitlines())
        if step.note:
            out.append(printable(f"  -- {step.note}"))
    for label, ehlo in (("before TLS", p.ehlo), ("after TLS", p.ehlo_tls)):
        if ehlo is not None:
            out.append(printable(f"  EHLO {label}: {' '.join(ehlo.keywords) or '(none)'}"))
            out.append(printable(f"  AUTH {label}: {' '.join(ehlo.auth) or '(none)'}"))
    tls = p.tls
    if tls is not None:
        out.append(printable(f"  TLS: {tls.version} {tls.cipher} ({tls.bits} bits)"))
        accepted = [v for v, ok in tls.versions.items() if ok]
        if tls.versions:
            out.append(printable(f"  TLS versions accepted: {', '.join(accepted) or '(none)'}"))
        cert = tls.certificate
        if cert is not None:
            out.append(printable(f"  certificate: {cert.subject} (issuer {cert.issuer})"))
            names = ", ".join((*cert.dns_names, *cert.ip_addresses)) or "(no subjectAltName)"
            out.append(printable(f"  names: {names}; matches {tls.name}: {tls.name_matches}"))
            out.append(
                printable(
                    f"  valid {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}; "
                    f"self-signed: {cert.self_signed}; key {cert.key}"
                )
            )
        verdict = {True: "verified", False: f"NOT verified: {tls.verify_error}", None: "unknown"}
        out.append(printable(f"  verification: {verdict[tls.verified]}"))
    if p.relay.value != "not-tested":
        out.append(f"  open-relay test: {p.relay}")
    return out
