"""Diagnoses of Exim and Sendmail logs: the same problem classes, remedies in the MTA's own terms
(pipeline/remedies_mta.py); Postfix's stay as they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app
from mtalens.pipeline.remedies_mta import REMEDIES, template_for

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
runner = CliRunner()
# words only Postfix's remedies use
POSTFIX_WORDS = re.compile(r"postconf|postqueue|master\.cf|main\.cf|smtpd_|qshape|relayhost")


def _diagnose(tmp_path: Path, log: Path) -> list[dict[str, object]]:
    db = tmp_path / "s.duckdb"
    r = runner.invoke(app, ["ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC",
                            str(log)])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["diagnose", "--db", str(db), "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    findings: list[dict[str, object]] = json.loads(r.stdout)
    return findings


def test_a_sendmail_blocklisting_gets_sendmail_remedies(tmp_path: Path) -> None:
    found = _diagnose(tmp_path, SAMPLES / "sendmail/real-sendmail-8.17.log")
    listed = [f for f in found if f["problem"] == "blocklisted"]
    assert len(listed) == 1
    remedy = str(listed[0]["remedy"])
    assert "`mailq`" in remedy and "SMART_HOST" in remedy
    assert "check.spamhaus.org" in remedy  # the list's own delisting steps, as for Postfix
    assert not POSTFIX_WORDS.search(remedy)


def test_postfix_remedies_are_unchanged(tmp_path: Path) -> None:
    found = _diagnose(tmp_path, SAMPLES / "postfix/real-problems-3.7.log")
    assert found
    assert any("postconf" in str(f["remedy"]) for f in found)


@pytest.mark.parametrize("mta", sorted(REMEDIES))
def test_every_template_formats_and_speaks_its_mta(mta: str) -> None:
    row = {"subject": "spamhaus", "delisting": "ask", "delivered_later": 3, "names": "192.0.2.1"}
    for key, template in REMEDIES[mta].items():
        text = template.format_map(row)
        assert "{" not in text.replace("${if eq{$tls_in_cipher}{}{}{*}}", ""), key
        assert not POSTFIX_WORDS.search(text), (mta, key)
    # a kind of one problem falls back to the problem's own entry, else to Postfix's remedy
    assert template_for(mta, "throttling", "rate-limiting") is not None
    assert template_for(mta, "mail-loop", "example.com") is None
    assert template_for("postfix", "blocklisted", "spamhaus") is None


def _timeouts_log(tmp_path: Path, mta: str) -> Path:
    """Four unrelated destinations whose port 25 never answers, in ``mta``'s log lines."""
    lines = []
    for n in range(4):
        if mta == "exim":
            qid = f"1xZIN{n}-0002xK-2s"
            lines.append(
                f"2026-12-04 10:0{n}:00 {qid} <= s@ours.example H=(c) [192.0.2.9] P=esmtp S=300 "
                f"for a@d{n}.example"
            )
            lines.append(
                f"2026-12-04 10:0{n}:31 {qid} == a@d{n}.example R=dnslookup T=remote_smtp "
                f"defer (110) H=mx.d{n}.example [198.51.100.{n + 1}]: Connection timed out"
            )
        else:
            qid = f"6B4Ia{n}aa0194{n}0"
            lines.append(
                f"Dec  4 10:0{n}:00 mx1 sm-mta[1]: {qid}: from=<s@ours.example>, size=300, "
                "class=0, nrcpts=1, msgid=<m@ours.example>, proto=ESMTP, daemon=MTA, "
                "relay=c [192.0.2.9]"
            )
            lines.append(
                f"Dec  4 10:0{n}:31 mx1 sm-mta[2]: {qid}: to=<a@d{n}.example>, delay=00:00:31, "
                f"xdelay=00:00:31, mailer=esmtp, pri=30300, relay=mx.d{n}.example. "
                f"[198.51.100.{n + 1}], dsn=4.0.0, stat=Deferred: Connection timed out with "
                f"mx.d{n}.example."
            )
    log = tmp_path / f"{mta}.log"
    log.write_text("\n".join(lines) + "\n")
    return log


@pytest.mark.parametrize("mta", ["exim", "sendmail"])
def test_port25_blocked_is_found_in_exim_and_sendmail_texts(tmp_path: Path, mta: str) -> None:
    found = _diagnose(tmp_path, _timeouts_log(tmp_path, mta))
    blocked = [f for f in found if f["problem"] == "port25-blocked"]
    assert len(blocked) == 1 and blocked[0]["severity"] == "critical"
    remedy = str(blocked[0]["remedy"])
    assert not POSTFIX_WORDS.search(remedy)
    assert ("hosts_require_auth" if mta == "exim" else "RELAY_MAILER_ARGS") in remedy
    # the examples are in the MTA's own line shape, not Postfix's "to=<...>, status=..."
    example = json.dumps(blocked[0]["evidence"])
    if mta == "exim":
        assert " == a@d0.example H=mx.d0.example [198.51.100.1]: Connection timed out" in example
        assert "status=" not in example
    else:
        assert "to=<a@d0.example>" in example and "stat=Deferred: " in example
        assert "status=" not in example


def test_sendmail_auth_without_tls_is_found(tmp_path: Path) -> None:
    # the real 8.17 log: 127.0.0.3 logged in (AUTH=server, PLAIN) with no STARTTLS=server from it
    found = _diagnose(tmp_path, SAMPLES / "sendmail/real-sendmail-8.17.log")
    bare = [f for f in found if str(f["problem"]) == "auth-without-tls"]
    assert len(bare) == 1 and "127.0.0.3" in json.dumps(bare[0])
    assert "AUTH=server, relay=[127.0.0.3], authid=alice, mech=PLAIN" in json.dumps(bare[0])
    assert bare[0]["severity"] == "critical"  # a login succeeded
    remedy = str(bare[0]["remedy"])
    assert "confAUTH_OPTIONS" in remedy and not POSTFIX_WORDS.search(remedy)


def test_exim_auth_without_tls_is_found(tmp_path: Path) -> None:
    # A= on an arrival is the login; X= the TLS session it came over (log_selector tls_cipher)
    log = tmp_path / "mainlog"
    log.write_text(
        "2026-12-04 10:00:00 1xZIN1-0002xK-2s <= bob@ours.example H=(laptop) [198.51.100.20] "
        "P=esmtpa A=plain:bob S=300 for a@dest.example\n"
        "2026-12-04 10:00:05 1xZIN2-0002xK-2s <= carol@ours.example H=(phone) [198.51.100.21] "
        "P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=plain:carol S=300 "
        "for b@dest.example\n"
    )
    found = _diagnose(tmp_path, log)
    bare = [f for f in found if str(f["problem"]) == "auth-without-tls"]
    assert len(bare) == 1
    text = json.dumps(bare[0])
    assert "198.51.100.20" in text and "198.51.100.21" not in text
    remedy = str(bare[0]["remedy"])
    assert "auth_advertise_hosts" in remedy and not POSTFIX_WORDS.search(remedy)


def _tls_errors_log(tmp_path: Path, mta: str) -> Path:
    """Clients failing the handshake with us, and one of our deliveries failing TLS, in
    ``mta``'s lines."""
    lines = []
    for n in range(5):
        if mta == "exim":
            lines.append(
                f"2026-12-04 10:0{n}:00 TLS error on connection from (scan{n}) "
                f"[198.51.100.{n + 1}]:4000{n} I=[192.0.2.1]:25 (SSL_accept): "
                "error:0A000102:SSL routines::unsupported protocol"
            )
        else:
            lines.append(
                f"Dec  4 10:0{n}:00 mx1 sm-mta[1{n}]: STARTTLS=server, error: accept failed=-1,"
                " reason=unsupported protocol, SSL_error=1, errno=0, retry=-1, "
                f"relay=[198.51.100.{n + 1}]"
            )
    log = tmp_path / f"{mta}-tls.log"
    log.write_text("\n".join(lines) + "\n")
    return log


@pytest.mark.parametrize("mta", ["exim", "sendmail"])
def test_inbound_tls_failures_are_found_in_exim_and_sendmail_texts(
    tmp_path: Path, mta: str
) -> None:
    found = _diagnose(tmp_path, _tls_errors_log(tmp_path, mta))
    tls = [f for f in found if f["problem"] == "tls-inbound"]
    assert len(tls) == 1
    text = json.dumps(tls[0])
    assert "198.51.100.5" in text and "unsupported protocol" in text
    remedy = str(tls[0]["remedy"])
    assert not POSTFIX_WORDS.search(remedy)
    assert ("tls_require_ciphers" if mta == "exim" else "confSERVER_SSL_OPTIONS") in remedy
