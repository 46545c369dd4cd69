"""`mtalens audit postfix`: read Postfix's settings (``postconf -n`` and ``postconf -M``, or a
file of their output) and judge them with the pure rules of ``mtalens.parsers.postfix_audit``.

The effects live here: running postconf (``-c DIR`` for another configuration directory) and
looking up myhostname's addresses and their reverse DNS with the system resolver. Findings have
diagnose's shape; their facts carry the parameter, the current value (and whether it is the
default), the suggested value and the postconf(5) reference.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.postconf import PostfixConfig, parse_postconf
from mtalens.parsers.postfix_audit import AuditContext, AuditFinding, audit
from mtalens.pipeline.diagnose import Evidence, Finding, Severity
from mtalens.pipeline.exitcodes import InputError

POSTCONF_TIMEOUT: Final = 30.0


class AuditError(InputError):
    """No configuration to audit: a missing or unreadable file, text that is not postconf
    output, or postconf that is not installed or fails."""


def read_postconf_file(path: Path) -> PostfixConfig:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return parse_postconf(text)
    except ParseError as exc:
        raise AuditError(f"{path}: not postconf output ({exc.detail or exc.code})") from exc


def run_postconf(config_dir: Path | None = None, binary: str | None = None) -> PostfixConfig:
    """``postconf -n`` and ``postconf -M`` of the installed Postfix (or of ``config_dir``)."""
    postconf = (
        binary
        or shutil.which("postconf")
        or next((p for p in ("/usr/sbin/postconf", "/sbin/postconf") if Path(p).exists()), None)
    )
    if postconf is None:
        raise AuditError("postconf not found: is Postfix installed? (or give --postconf FILE)")
    base = [postconf] + (["-c", str(config_dir)] if config_dir else [])
    texts: list[str] = []
    for flag in ("-n", "-M"):
        try:
            proc = subprocess.run([*base, flag], capture_output=True, text=True,
                                  timeout=POSTCONF_TIMEOUT, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AuditError(f"{postconf} {flag} failed: {exc}") from exc
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise AuditError(f"{' '.join([*base, flag])} exited {proc.returncode}: {why}")
        texts.append(proc.stdout)
    try:
        return parse_postconf("\n".join(texts))
    except ParseError as exc:
        raise AuditError(f"postconf's output could not be read ({exc})") from exc


def myhostname_rdns(config: PostfixConfig, timeout: float = 5.0) -> dict[str, tuple[str, ...]]:
    """myhostname's IPv4/IPv6 addresses and each one's PTR names (system resolver)."""
    name = config.expand(config.main.get("myhostname", "")).strip().rstrip(".")
    if not name:
        return {}
    result: dict[str, tuple[str, ...]] = {}

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError:
            return
        for address in dict.fromkeys(str(i[4][0]) for i in infos):
            try:
                host, aliases, _ = socket.gethostbyaddr(address)
                result[address] = tuple(n.rstrip(".").lower() for n in (host, *aliases))
            except OSError:
                result[address] = ()

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    return dict(result)


def to_finding(f: AuditFinding, when: datetime) -> Finding:
    return Finding(
        id=f.id,
        problem=f.rule,
        title=f.title,
        severity=Severity(f.severity.value),
        evidence=Evidence(
            count=1,
            first_seen=when,
            last_seen=when,
            destinations=(f.service,),
            facts=(
                ("service", f.service),
                ("parameter", f.parameter),
                ("current", f.current),
                ("default", "yes" if f.default else "no"),
                ("suggested", f.suggested),
                ("reference", f.reference),
            ),
        ),
        remedy=f"{f.remedy} ({f.parameter} = {f.suggested}; see {f.reference})",
    )


def audit_postfix(
    config: PostfixConfig,
    *,
    now: Callable[[], datetime],
    rdns: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[Finding, ...]:
    ctx = AuditContext(config=config, myhostname_rdns=rdns)
    when = now()
    return tuple(to_finding(f, when) for f in audit(ctx))
