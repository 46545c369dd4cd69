"""Diagnose leads with the problem, not with each client: one finding for many subjects (a
table of the top ones inside, the members kept), and no finding that contradicts the store's
own numbers (port 25 is not "blocked" while most destinations get mail over it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mtalens.pipeline.diagnose import Context, Severity, diagnose, render_text
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR = datetime(9999, 1, 1, tzinfo=UTC)


def _diagnose(tmp: Path, lines: list[str]) -> list:  # type: ignore[type-arg]
    log = tmp / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    with Store.open(tmp / "s.duckdb") as store:
        LogIngestor(store, tz=UTC, year=2026).run([log])
        return diagnose(Context(store=store, since=EPOCH, until=FAR))


def _clear_auth(i: int, logins: int) -> str:
    return (f"Dec  1 09:{i // 60:02d}:{i % 60:02d} mx1 postfix/smtpd[{4000 + i}]: disconnect from "
            f"unknown[198.51.{i // 250}.{i % 250 + 1}] ehlo=1 auth={logins} mail=1 rcpt=1 data=1 "
            "quit=1 commands=6")  # fmt: skip


def test_many_clients_sending_auth_without_tls_are_one_finding(tmp_path: Path) -> None:
    lines = [_clear_auth(i, 1 if i % 10 == 0 else 0) for i in range(300)]
    found = _diagnose(tmp_path, lines)
    auth = [f for f in found if f.problem == "auth-without-tls"]
    assert [f.id for f in auth] == ["auth-without-tls:all"]
    (f,) = auth
    assert f.evidence.count == 300 and len(f.members) == 300
    assert f.evidence.fact("clients") == 300
    top = f.evidence.fact("top clients (events)")
    assert isinstance(top, tuple) and len(top) == 10
    assert f.severity is Severity.CRITICAL  # 30 of them logged in over clear text
    assert f.members[0].severity is Severity.CRITICAL  # the worst first
    assert "300 client(s)" in f.title and "30 successful logins" in f.title
    text = render_text(found)
    assert text.count("AUTH without TLS") == 1  # one finding, not 300
    assert len(text.splitlines()) < 40


def _attempt(i: int, domain: str, ok: bool) -> list[str]:
    qid = f"4C{i:08X}"
    at = f"Dec  1 10:{i // 60:02d}:{i % 60:02d}"
    if ok:
        return [f"{at} mx1 postfix/smtp[5{i:03d}]: {qid}: to=<u{i}@{domain}>, relay=mx.{domain}"
                f"[192.0.2.{i % 250 + 1}]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent "
                "(250 2.0.0 Ok)"]  # fmt: skip
    return [f"{at} mx1 postfix/smtp[5{i:03d}]: {qid}: to=<u{i}@{domain}>, relay=none, delay=30,"
            f" delays=0/0/30/0, dsn=4.4.1, status=deferred (connect to mx.{domain}"
            f"[203.0.113.{i % 250 + 1}]:25: Connection timed out)"]  # fmt: skip


def test_port25_is_not_blocked_while_most_destinations_get_mail_over_it(tmp_path: Path) -> None:
    # five destinations time out, sixty others take mail over port 25 in the same minutes
    down = {i for i in range(65) if i % 13 == 0}
    lines = [
        ln
        for i in range(65)
        for ln in _attempt(i, f"{'down' if i in down else 'up'}{i}.example", ok=i not in down)
    ]
    found = _diagnose(tmp_path, lines)
    assert not [f for f in found if f.problem == "port25-blocked"]


def test_port25_blocked_when_nothing_gets_through(tmp_path: Path) -> None:
    lines = [ln for i in range(6) for ln in _attempt(i, f"d{i}.example", ok=False)]
    found = _diagnose(tmp_path, lines)
    (f,) = [f for f in found if f.problem == "port25-blocked"]
    assert f.severity is Severity.CRITICAL and f.evidence.fact("destinations_ok") == 0
