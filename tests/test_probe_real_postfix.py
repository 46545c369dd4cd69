"""`mtalens probe` against Debian's real Postfix on loopback, configured six ways at once
(tests/lab/probe_lab.py: one Postfix, one listener per configuration), plus a hostile fake
server for the terminal output and a black hole for `--outbound`.

Each configuration is probed through the CLI (`--format json`) and its findings, exit code and
observations checked. Traffic goes only to one random 127.N.M.0/24 block."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mtalens.pipeline.cli import run
from tests.conftest import need_binary
from tests.lab.fake_mx import free_loopback_port
from tests.lab.probe_lab import (
    AUTH_BEFORE_TLS,
    EXPIRED,
    GOOD_587,
    IMPLICIT_465,
    OPEN_RELAY,
    PLAIN_465,
    ProbeLab,
)
from tests.lab.problem_lab import Blackhole, LoopbackBlock

pytestmark = [pytest.mark.slow, pytest.mark.postfix]


@dataclass(frozen=True, slots=True)
class Lab:
    lab: ProbeLab
    cafile: str

    def ip(self, host: int) -> str:
        return self.lab.ip(host)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    need_binary("postfix")
    need_binary("saslpasswd2")
    # Not under pytest's base temp: every pytest session that starts (engineers run them
    # concurrently) resets /tmp/pytest-of-<user> to 0700, and Postfix's unprivileged
    # processes must walk down to the lab (postfix_lab.py, pitfall 3).
    tmp = Path(tempfile.mkdtemp(prefix="mtalens-probe-lab-"))
    try:
        lab = ProbeLab(tmp, mx_port=free_loopback_port(), block=LoopbackBlock.random())
        with lab:
            assert lab.ca is not None
            yield Lab(lab, str(lab.ca.cert_path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def probe_json(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    capsys.readouterr()
    code = run(["probe", *args, "--no-rdns", "--timeout", "5", "--format", "json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert out, (code, err)
    doc = json.loads(out)
    return code, doc, {f["problem"]: f for f in doc["findings"]}


def sent(port: dict[str, Any]) -> list[str]:
    return [s["sent"] for s in port["steps"] if s["sent"]]


# (host, ports, the problem classes expected, exit code)
CONFIGS = {
    "open-relay": (OPEN_RELAY, "25", {"open-relay", "cert-self-signed", "cert-expiring",
                                      "cert-name-mismatch"}, 1),
    "auth-before-tls": (AUTH_BEFORE_TLS, "587", {"auth-before-tls", "cert-self-signed",
                                                 "cert-expiring", "cert-name-mismatch",
                                                 "tls-old-versions"}, 1),
    "expired-certificate": (EXPIRED, "587", {"cert-expired", "tls-old-versions"}, 1),
    "only-587-done-right": (GOOD_587, "587", set(), 0),
    "only-587-default-ports": (GOOD_587, "25,465,587", {"port-refused"}, 3),
    "implicit-tls-465": (IMPLICIT_465, "465", set(), 0),
    "465-without-tls": (PLAIN_465, "465", {"implicit-tls-failed"}, 1),
}  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_findings_per_configuration(
    lab: Lab, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    host, ports, expected, exit_code = CONFIGS[config]
    code, doc, found = probe_json(capsys, lab.ip(host), "--port", ports, "--cafile", lab.cafile)
    assert set(found) == expected, doc["findings"]
    assert code == exit_code
    assert doc["address"] == lab.ip(host)
    for port in doc["ports"]:
        assert "DATA" not in sent(port) and "BDAT" not in " ".join(sent(port))
        if port["outcome"] == "ok" and port["relay"] != "not-tested":
            commands = [c.split(":")[0].split()[0] for c in sent(port)]
            # the relay test ends RSET, QUIT; nothing after
            assert commands[-2:] == ["RSET", "QUIT"], commands


def test_open_relay_evidence_and_postfix_saw_no_message(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _, doc, found = probe_json(capsys, lab.ip(OPEN_RELAY), "--port", "25")
    (port,) = doc["ports"]
    assert port["relay"] == "accepted"
    rcpt = next(s for s in port["steps"] if (s["sent"] or "").startswith("RCPT TO:"))
    assert rcpt["code"] == 250 and rcpt["sent"] == "RCPT TO:<mtalens-relay-test@example.com>"
    assert found["open-relay"]["severity"] == "critical"
    assert "reject_unauth_destination" in found["open-relay"]["remedy"]
    # the server's side: the session said MAIL, RCPT, RSET, QUIT and never DATA; nothing queued
    lab.lab.wait_until_idle(timeout=20, settle=0.5)
    sessions = [line for line in lab.lab.log_text().splitlines()
                if "disconnect from" in line and " rcpt=1 " in line]  # fmt: skip
    assert sessions, lab.lab.log_text()[-2000:]
    assert all(" rset=1 " in s and " quit=1 " in s and " data=" not in s for s in sessions)
    assert "queued as" not in lab.lab.log_text() and not lab.lab.queue()


def test_relay_refused_where_restricted(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, doc, _ = probe_json(capsys, lab.ip(AUTH_BEFORE_TLS), "--port", "587")
    (port,) = doc["ports"]
    assert port["relay"] == "refused"
    rcpt = next(s for s in port["steps"] if (s["sent"] or "").startswith("RCPT TO:"))
    assert rcpt["code"] == 554 and rcpt["enhanced"] == "5.7.1"
    assert "Relay access denied" in " ".join(rcpt["reply"])


def test_auth_before_and_after_tls(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, doc, found = probe_json(capsys, lab.ip(AUTH_BEFORE_TLS), "--port", "587")
    (port,) = doc["ports"]
    assert port["ehlo"]["auth"] == ["PLAIN", "LOGIN"]
    assert port["ehlo_tls"]["auth"] == ["PLAIN", "LOGIN"]
    f = found["auth-before-tls"]
    assert f["severity"] == "critical" and "smtpd_tls_auth_only = yes" in f["remedy"]
    # done right: STARTTLS required, AUTH only inside TLS
    _, doc, _ = probe_json(capsys, lab.ip(GOOD_587), "--port", "587", "--cafile", lab.cafile)
    (good,) = doc["ports"]
    assert good["ehlo"]["auth"] == [] and "STARTTLS" in good["ehlo"]["extensions"]
    assert good["ehlo_tls"]["auth"] == ["PLAIN", "LOGIN"]
    assert "STARTTLS" not in good["ehlo_tls"]["extensions"]


def test_tls_facts(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, doc, _ = probe_json(capsys, lab.ip(GOOD_587), "--port", "587", "--cafile", lab.cafile)
    tls = doc["ports"][0]["tls"]
    assert tls["verified"] is True and tls["name_matches"] is True
    assert tls["version"] in ("TLSv1.2", "TLSv1.3") and tls["cipher"]
    assert tls["versions"]["TLSv1.2"] is True and tls["versions"]["TLSv1.3"] is True
    assert tls["versions"]["TLSv1"] is not True and tls["versions"]["TLSv1.1"] is not True
    assert tls["certificate"]["issuer"] == "CN=mtalens lab CA"
    assert datetime.fromisoformat(tls["certificate"]["not_after"]) > datetime.now(UTC)
    # without the lab CA the same certificate does not verify
    code, doc, found = probe_json(capsys, lab.ip(GOOD_587), "--port", "587")
    assert doc["ports"][0]["tls"]["verified"] is False and "cert-untrusted" in found
    assert code == 1
    # the expired one: verification fails for that reason, and the date is in the past
    _, doc, found = probe_json(capsys, lab.ip(EXPIRED), "--port", "587", "--cafile", lab.cafile)
    tls = doc["ports"][0]["tls"]
    assert tls["verified"] is False and "expired" in tls["verify_error"]
    assert datetime.fromisoformat(found["cert-expired"]["evidence"]["facts"]["not_after"]) < (
        datetime.now(UTC)
    )


def test_certificate_for_another_name(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, found = probe_json(capsys, lab.ip(GOOD_587), "--port", "587", "--cafile",
                                  lab.cafile, "--tls-name", "other.example")  # fmt: skip
    assert {"cert-name-mismatch", "cert-untrusted"} <= set(found)
    assert doc["ports"][0]["tls"]["name_matches"] is False and code == 1
    # the name on the certificate is fine
    code, _, found = probe_json(capsys, lab.ip(GOOD_587), "--port", "587", "--cafile",
                                lab.cafile, "--tls-name", "mail.probe.test")  # fmt: skip
    assert not found and code == 0


def test_implicit_tls(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, doc, _ = probe_json(capsys, lab.ip(IMPLICIT_465), "--port", "465", "--cafile", lab.cafile)
    (port,) = doc["ports"]
    assert port["mode"] == "implicit-tls" and port["ehlo"] is None
    assert port["steps"][0]["note"].startswith("TLS handshake: TLSv1.")
    assert port["steps"][1]["code"] == 220  # the greeting comes inside TLS
    assert port["ehlo_tls"]["auth"] == ["PLAIN", "LOGIN"]
    # the same listener probed as STARTTLS speaks no SMTP in clear
    code, doc, found = probe_json(capsys, lab.ip(IMPLICIT_465), "--port", "465/starttls")
    assert doc["ports"][0]["outcome"] == "error" and code == 1 and found


def test_outbound(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, found = probe_json(capsys, "--outbound", lab.ip(OPEN_RELAY))
    assert code == 0 and not found and doc["outbound"] is True
    assert doc["ports"][0]["banner"].startswith("220 mx1.example.net")
    assert sent(doc["ports"][0]) == ["QUIT"]
    code, _, found = probe_json(capsys, "--outbound", lab.ip(GOOD_587))  # nothing on 25
    assert code == 1 and found["port-refused"]["severity"] == "warning"
    hole = Blackhole(lab.lab.block.ip(7))
    hole.start()
    try:
        capsys.readouterr()
        code = run(["probe", "--outbound", lab.lab.block.ip(7), "--timeout", "1", "-f", "json"])
        found = {f["problem"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    finally:
        hole.stop()
    assert code == 1 and found["port-timeout"]["severity"] == "critical"
    assert (
        "587" in found["port-timeout"]["remedy"] and "relayhost" in found["port-timeout"]["remedy"]
    )


class HostileServer:
    """Greets and answers EHLO with terminal escapes, then answers 250 to anything."""

    GREETING = b"220 evil.example \x1b[2J\x1b]0;pwned\x07 ESMTP\r\n"

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.sendall(self.GREETING)
            f = conn.makefile("rb")
            for line in f:
                if line.upper().startswith(b"EHLO"):
                    conn.sendall(b"250-evil.example\r\n250-AUTH PLAIN\r\n250 X\x1b[31mRED\r\n")
                elif line.upper().startswith(b"QUIT"):
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.sock.close()


def test_table_output_neutralises_the_server(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    server = HostileServer(lab.lab.block.ip(99))
    try:
        capsys.readouterr()
        code = run(["probe", lab.lab.block.ip(99), "--port", str(server.port), "--no-rdns",
                    "--timeout", "5"])  # fmt: skip
        out, _ = capsys.readouterr()
    finally:
        server.close()
    assert code == 1  # AUTH before TLS, no STARTTLS, an open relay (it says 250 to RCPT)
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "\\x1b[31mRED" in out
    assert "open relay" in out and "AUTH PLAIN before TLS" in out
