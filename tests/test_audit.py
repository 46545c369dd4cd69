"""`mtalens audit postfix`: the rules over hand-written postconf output (edge cases), and the
real `postconf -c DIR -n` / `-M` of two configurations: the probe lab's (tests/lab/probe_lab.py,
the same listeners `probe` finds problems on) and a hardened one."""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtalens.parsers.errors import ParseError
from mtalens.parsers.postconf import parse_postconf, time_seconds
from mtalens.parsers.postfix_audit import AuditContext, audit, enabled_protocols
from mtalens.pipeline.cli import run
from tests.conftest import need_binary
from tests.lab.fake_mx import free_loopback_port
from tests.lab.probe_lab import AUTH_BEFORE_TLS, OPEN_RELAY, PLAIN_465, ProbeLab
from tests.lab.problem_lab import LoopbackBlock

GOOD_MAIN = """\
compatibility_level = 3.6
myhostname = mail.example.org
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination
smtpd_tls_cert_file = /etc/ssl/certs/mail.pem
smtpd_tls_key_file = /etc/ssl/private/mail.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_security_level = may
smtp_tls_mandatory_protocols = >=TLSv1.2
disable_vrfy_command = yes
postscreen_dnsbl_sites = zen.spamhaus.org*3
"""
GOOD_MASTER = """\
smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
smtps     inet  n       -       y       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
pickup    unix  n       -       y       60      1       pickup
"""


def rules_of(text: str, rdns: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    found = audit(AuditContext(config=parse_postconf(text), myhostname_rdns=rdns))
    return {f.id: f for f in found}


def test_hardened_configuration_has_no_findings() -> None:
    assert rules_of(GOOD_MAIN + GOOD_MASTER, {"192.0.2.10": ("mail.example.org",)}) == {}


@pytest.mark.parametrize(
    ("change", "finding_id", "severity", "suggested"),
    [
        ("mynetworks = 0.0.0.0/0", "mynetworks-wide:main.cf:mynetworks", "critical", "127.0.0.0/8"),
        ("mynetworks = 127.0.0.0/8 8.8.0.0/16", "mynetworks-wide:main.cf:mynetworks", "warning", "127.0.0.0/8"),
        ("smtpd_relay_restrictions = permit, reject_unauth_destination",
         "relay-restrictions-open:smtpd:smtpd_relay_restrictions", "critical", "reject_unauth_destination"),
        ("smtpd_tls_auth_only = no\nsmtpd_sasl_auth_enable = yes", "auth-before-tls:smtpd:smtpd_tls_auth_only", "warning", "yes"),
        ("smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3", "tls-protocol-floor:main.cf:smtpd_tls_mandatory_protocols", "warning", ">=TLSv1.2"),
        ("smtp_tls_protocols = !SSLv2", "tls-protocol-floor:main.cf:smtp_tls_protocols", "warning", ">=TLSv1"),
        ("smtp_tls_security_level = none", "outbound-tls-off:main.cf:smtp_tls_security_level", "warning", "may"),
        ("maximal_queue_lifetime = 12h", "queue-lifetime:main.cf:maximal_queue_lifetime", "warning", "5d"),
        ("maximal_queue_lifetime = 2w", "queue-lifetime:main.cf:maximal_queue_lifetime", "notice", "5d"),
        ("bounce_queue_lifetime = 10d", "queue-lifetime:main.cf:bounce_queue_lifetime", "notice", "5d"),
        ("message_size_limit = 0", "size-limits:main.cf:message_size_limit", "warning", "52428800 (50 MB)"),
        ("mailbox_size_limit = 1000", "size-limits:main.cf:mailbox_size_limit", "critical", "0, or more"),
        ("myhostname = localhost", "myhostname:main.cf:myhostname", "warning", "FQDN"),
        ("postscreen_dnsbl_sites =", "dnsbl:main.cf:postscreen_dnsbl_sites", "notice", "zen.spamhaus.org"),
        ("disable_vrfy_command = no", "vrfy-enabled:main.cf:disable_vrfy_command", "notice", "yes"),
        ("smtpd_tls_security_level =", "inbound-tls-off:smtpd:smtpd_tls_security_level", "warning", "may"),
    ],
)  # fmt: skip
def test_each_rule_on_a_hand_written_change(
    change: str, finding_id: str, severity: str, suggested: str
) -> None:
    found = rules_of(GOOD_MAIN + change + "\n" + GOOD_MASTER, None)
    assert finding_id in found, sorted(found)
    f = found[finding_id]
    assert f.severity == severity and suggested in f.suggested
    assert f.reference.startswith("postconf(5) ")
    assert not f.default


def test_inbound_tls_judged_where_port_25_is_served() -> None:
    # behind postscreen, port 25 sessions are the "smtpd pass" service's
    main = GOOD_MAIN.replace("smtpd_tls_security_level = may\n", "")
    found = rules_of(main + GOOD_MASTER)
    assert [k for k in found if k.startswith("inbound-tls-off")] == [
        "inbound-tls-off:smtpd:smtpd_tls_security_level"
    ]
    master = GOOD_MASTER.replace("smtp      inet  n       -       y       -       1       postscreen",
                                 "smtp      inet  n       -       y       -       -       smtpd")  # fmt: skip
    found = rules_of(main + master)
    assert "inbound-tls-off:smtp:smtpd_tls_security_level" in found
    assert found["inbound-tls-off:smtp:smtpd_tls_security_level"].default


def test_master_overrides_and_defaults() -> None:
    master = GOOD_MASTER.replace("  -o smtpd_tls_security_level=encrypt\n", "").replace(
        "  -o smtpd_tls_wrappermode=yes\n", ""
    )
    found = rules_of(GOOD_MAIN.replace("smtpd_tls_auth_only = yes\n", "") + master)
    assert found["submission-tls-optional:submission:smtpd_tls_security_level"].current == "may"
    smtps = found["smtps-no-wrappermode:smtps:smtpd_tls_wrappermode"]
    assert smtps.severity == "critical" and smtps.default and smtps.current == "no"
    # AUTH before TLS on the submission service (TLS no longer required there)
    auth = found["auth-before-tls:submission:smtpd_tls_auth_only"]
    assert auth.default and auth.service == "master.cf submission"
    # a default that is unsafe is reported as a default
    floor = rules_of(GOOD_MAIN.replace("smtpd_tls_mandatory_protocols = >=TLSv1.2\n", "")
                     + GOOD_MASTER)  # fmt: skip
    f = floor["tls-protocol-floor:main.cf:smtpd_tls_mandatory_protocols"]
    assert f.default and f.current == ">=TLSv1" and "TLSv1.1" in f.title


def test_relay_restrictions_both_lists_and_compatibility_level() -> None:
    base = GOOD_MAIN.replace(
        "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated "
        "reject_unauth_destination\n",
        "",
    )
    # the default (compatibility_level >= 1) guards with defer_unauth_destination
    assert not any(k.startswith("relay-") for k in rules_of(base + GOOD_MASTER))
    old = base.replace("compatibility_level = 3.6", "compatibility_level = 0")
    found = rules_of(old + GOOD_MASTER)
    assert "relay-restrictions-open:smtpd:smtpd_relay_restrictions" in found
    # with the old empty default, smtpd_recipient_restrictions must guard, and then does
    guarded = old + "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
    assert not any(k.startswith("relay-") for k in rules_of(guarded + GOOD_MASTER))
    assert "mynetworks-wide" not in " ".join(rules_of(guarded + GOOD_MASTER))  # explicit list


def test_myhostname_reverse_dns() -> None:
    found = rules_of(GOOD_MAIN + GOOD_MASTER, {"192.0.2.10": ("host-10.provider.example",)})
    f = found["myhostname-rdns:main.cf:myhostname"]
    assert f.suggested == "host-10.provider.example" and "192.0.2.10" in f.title
    assert "myhostname-rdns:main.cf:myhostname" in rules_of(GOOD_MAIN + GOOD_MASTER, {})


def test_postconf_syntax() -> None:
    config = parse_postconf(textwrap.dedent("""\
        # main.cf style, with comments and continuation lines
        relayhost = [smtp.example.org]:587
        extra = $relayhost
        both = ${relayhost?{set}} ${nothing:empty} $$literal
        smtpd_recipient_restrictions = permit_mynetworks,
            reject_unauth_destination
        smtp      inet  n - y - - smtpd -o {smtpd_tls_security_level = may} -o smtpd_sasl_auth_enable=yes
        """))  # fmt: skip
    assert config.expand("$extra") == "[smtp.example.org]:587"
    assert config.expand(config.main["both"]) == "{set} empty $literal"
    assert config.main["smtpd_recipient_restrictions"].endswith("reject_unauth_destination")
    (svc,) = config.services
    assert svc.port == "smtp" and svc.override("smtpd_tls_security_level") == "may"
    assert svc.override("smtpd_sasl_auth_enable") == "yes"
    assert (
        time_seconds("5d") == 432000 and time_seconds("30s") == 30 and time_seconds("2") == 172800
    )
    assert time_seconds("soon") is None
    assert enabled_protocols(">=TLSv1.2") == {"TLSv1.2", "TLSv1.3"}
    assert enabled_protocols("!SSLv2, !SSLv3, !TLSv1") == {"TLSv1.1", "TLSv1.2", "TLSv1.3"}
    assert enabled_protocols("TLSv1.2 TLSv1.3") == {"TLSv1.2", "TLSv1.3"}
    assert enabled_protocols("") is None
    for bad in ("this is not postconf", "", "smtp inet n - y"):
        with pytest.raises(ParseError):
            parse_postconf(bad)


# --------------------------------------------------------------------------------------------
# The real postconf, through the CLI


@pytest.fixture(scope="module")
def lab_config() -> Iterator[Path]:
    """The probe lab's configuration directory (written, not started: postconf reads it)."""
    need_binary("postconf")
    need_binary("saslpasswd2")
    tmp = Path(tempfile.mkdtemp(prefix="mtalens-audit-lab-"))
    try:
        lab = ProbeLab(tmp, mx_port=free_loopback_port(), block=LoopbackBlock("127.77.1"))
        lab.write_config()
        yield lab.config_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = run(["audit", "postfix", "--no-dns", "--format", "json", *args])
    out, err = capsys.readouterr()
    assert out, (code, err)
    return code, {f["id"]: f for f in json.loads(out)}


def test_real_postconf_of_the_probe_lab(
    lab_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, found = audit_json(capsys, "--config-dir", str(lab_config))
    block = LoopbackBlock("127.77.1")
    relay, auth, plain465 = (f"{block.ip(h)}:{p}" for h, p in
                             ((OPEN_RELAY, 25), (AUTH_BEFORE_TLS, 587), (PLAIN_465, 465)))  # fmt: skip
    assert code == 1
    mynet = found[f"mynetworks-wide:{relay}:mynetworks"]
    assert mynet["severity"] == "critical"
    assert mynet["evidence"]["facts"]["current"] == "0.0.0.0/0"
    assert "postconf(5) mynetworks" in mynet["evidence"]["facts"]["reference"]
    a = found[f"auth-before-tls:{auth}:smtpd_tls_auth_only"]
    assert (
        a["evidence"]["facts"]["current"] == "no" and a["evidence"]["facts"]["suggested"] == "yes"
    )
    assert f"submission-tls-optional:{auth}:smtpd_tls_security_level" in found
    assert found[f"smtps-no-wrappermode:{plain465}:smtpd_tls_wrappermode"]["severity"] == "critical"
    # the lab's 30-second queue lifetime (postfix_lab.LabTimings)
    q = found["queue-lifetime:main.cf:maximal_queue_lifetime"]
    assert q["evidence"]["facts"]["current"] == "30s"
    assert (
        found["outbound-tls-off:main.cf:smtp_tls_security_level"]["evidence"]["facts"]["default"]
        == "yes"
    )
    # the listeners done right have nothing against them
    good = {block.ip(13) + ":587", block.ip(14) + ":465"}
    assert not [k for k in found if k.split(":", 1)[1].rsplit(":", 1)[0] in good]
    # the same text through a file gives the same findings
    import subprocess

    postconf = need_binary("postconf")
    text = "".join(subprocess.run([postconf, "-c", str(lab_config), flag], capture_output=True,
                                  text=True, check=True).stdout for flag in ("-n", "-M"))  # fmt: skip
    saved = lab_config.parent / "postconf.txt"
    saved.write_text(text)
    code2, found2 = audit_json(capsys, "--postconf", str(saved))
    assert code2 == 1 and set(found2) == set(found)


def test_real_postconf_of_a_hardened_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_binary("postconf")
    (tmp_path / "main.cf").write_text(GOOD_MAIN)
    (tmp_path / "master.cf").write_text(GOOD_MASTER)
    code, found = audit_json(capsys, "--config-dir", str(tmp_path))
    assert (code, found) == (0, {})
    capsys.readouterr()
    assert run(["audit", "postfix", "--no-dns", "--config-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no findings\n"


def test_table_output_neutralises_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "conf.txt"
    f.write_text("myhostname = evil\x1b[2Jhost\nmessage_size_limit = 0\n")
    capsys.readouterr()
    assert run(["audit", "postfix", "--no-dns", "--postconf", str(f)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\\x1b[2jhost" in out  # (host names are lower-cased)
    assert "[warning] message_size_limit = 0: messages of any size are accepted" in out
