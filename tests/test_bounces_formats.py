"""Format decoders added to the registry: one fixture each (tests/fixtures/bounces/), written by
hand from the formats' documentation, plus the MIME repairs they rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtalens.parsers.bounces import Action, ReportKind, decode

FIX = Path(__file__).parent / "fixtures" / "bounces"


def load(name: str) -> bytes:
    return (FIX / name).read_bytes()


def test_sendmail_prose_list_and_transcript() -> None:
    r = decode(load("sendmail-prose.eml"))
    assert (r.kind, r.agent) == (ReportKind.BOUNCE, "sendmail")
    (rc,) = r.recipients
    assert rc.recipient == "erin@example.net"
    assert (rc.status, rc.reply_code) == ("5.1.1", "550")
    assert rc.diagnostic is not None and "User unknown" in rc.diagnostic
    assert r.original is not None and r.original.message_id == "<news-2026-03-b@lists.example.org>"


def test_sendmail_v5_transcript_names_each_failed_address() -> None:
    r = decode(load("sendmail-v5.eml"))
    assert r.agent == "sendmail"
    got = {rc.recipient: rc for rc in r.recipients}
    assert set(got) == {"gina@nowhere.example", "hank@example.com"}
    hank_diag = got["hank@example.com"].diagnostic or ""
    assert "No such user here" in hank_diag and "Host unknown" not in hank_diag
    assert "Host unknown" in (got["gina@nowhere.example"].diagnostic or "")


def test_mail2000_list_without_semicolon_in_content_type() -> None:
    # "Content-Type: text/plain\n   charset=..." (no ";"): still a text/plain part
    r = decode(load("x1-mail2000.eml"))
    assert r.agent == "sendmail"
    (rc,) = r.recipients
    assert rc.recipient == "judy@example.org"
    assert rc.diagnostic is not None and "User unknown" in rc.diagnostic


def test_kddi_mailbox_full() -> None:
    r = decode(load("kddi-mailboxfull.eml"))
    assert (r.kind, r.agent) == (ReportKind.BOUNCE, "kddi")
    (rc,) = r.recipients
    assert rc.recipient == "leo@ezweb.example.ne.jp"
    assert rc.diagnostic == "As their mailbox is full."
    assert r.original is not None and r.original.message_id == "<k1@example.com>"


def test_apache_james_rcpt_to() -> None:
    r = decode(load("apachejames.eml"))
    assert r.agent == "apachejames"
    (rc,) = r.recipients
    assert rc.recipient == "5550100@sms.example.com"
    assert rc.reply_code == "550"
    assert rc.diagnostic is not None and "no such user here" in rc.diagnostic


def test_verizon_mmsc_original_to() -> None:
    r = decode(load("verizon-mmsc.eml"))
    assert r.agent == "verizon"
    (rc,) = r.recipients
    assert rc.recipient == "5550199@mms.example.com"
    assert rc.diagnostic is not None and "No valid recipients" in rc.diagnostic
    assert r.original is not None and r.original.subject == "photo"


def test_amazon_ses_bounce_with_folded_json() -> None:
    r = decode(load("amazonses-bounce.eml"))
    assert (r.kind, r.agent) == (ReportKind.BOUNCE, "amazonses")
    (rc,) = r.recipients
    assert (rc.recipient, rc.status, rc.reply_code) == ("olga@example.net", "5.1.1", "550")
    assert rc.diagnostic_type == "smtp"
    assert r.reporting_mta == "a1.smtp-out.example.amazonses.com"
    assert r.original is not None and r.original.message_id == "<ses-news-1@example.org>"


def test_amazon_ses_complaint_in_sns_envelope() -> None:
    r = decode(load("amazonses-complaint.eml"))
    assert (r.kind, r.agent) == (ReportKind.COMPLAINT, "amazonses")
    assert r.complaint is not None
    assert r.complaint.feedback_type == "abuse"
    assert r.complaint.original_rcpt_to == ("pat@example.net",)
    assert r.complaint.user_agent == "ExampleFBL"


def test_amazon_ses_delivery_is_not_a_failure() -> None:
    r = decode(load("amazonses-delivery.eml"))
    assert r.kind is ReportKind.DELIVERED
    (rc,) = r.recipients
    assert (rc.recipient, rc.action, rc.status) == ("quinn@example.net", Action.DELIVERED, "2.6.0")


def test_google_notice_with_empty_delivery_status() -> None:
    r = decode(load("googleworkspace-empty-dsn.eml"))
    assert r.agent == "googleworkspace"
    (rc,) = r.recipients
    assert rc.recipient == "sam@example.com"
    assert rc.diagnostic is not None and rc.diagnostic.startswith("Unspecified Error")


def test_forwarded_report_is_decoded_from_the_attachment() -> None:
    r = decode(load("forwarded-report.eml"))
    assert r.agent == "rfc3464"
    assert [rc.recipient for rc in r.recipients] == ["uma@example.com"]
    assert r.postfix_queue_id == "3A1B2C0D9E"
    assert r.reporting_mta == "mx9.example.org"


def test_report_whose_boundaries_are_lost() -> None:
    r = decode(load("dsn-without-boundaries.eml"))
    assert r.agent == "rfc3464"
    (rc,) = r.recipients
    assert (rc.recipient, rc.status) == ("wendy@example.org", "5.1.1")
    assert r.reporting_mta == "gw.example.com"


def test_exim_style_flush_left_address() -> None:
    r = decode(load("einsundeins.eml"))
    assert r.agent == "exim"
    (rc,) = r.recipients
    assert (rc.recipient, rc.status, rc.reply_code) == ("yann@example.fr", "5.2.0", "550")


def test_report_without_content_type_header() -> None:
    # a Sendmail DSN whose top-level MIME headers were lost: the boundary is guessed
    raw = (
        b"From: Mail Delivery Subsystem <MAILER-DAEMON>\nTo: a@example.org\n"
        b"Subject: Returned mail: see transcript for details\n\n"
        b"This is a MIME-encapsulated message\n\n--b.1/x\n\nThe original message ...\n\n"
        b"--b.1/x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n"
        b"Final-Recipient: RFC822; b@example.net\nAction: failed\nStatus: 5.1.1\n\n--b.1/x--\n"
    )
    r = decode(raw)
    assert r.agent == "rfc3464"
    assert [(rc.recipient, rc.status) for rc in r.recipients] == [("b@example.net", "5.1.1")]


@pytest.mark.parametrize(
    ("final", "original", "want"),
    [
        ("rfc822;@smtp.example.net:user@server", "rfc822;user@example.net", "user@example.net"),
        ("rfc822;@mx.example.org", "rfc822;user@example.org", "user@example.org"),
        # a Final-Recipient on a public name stays (one on an internal host does not:
        # tests/test_bounces_generalise.py)
        ("rfc822;user@mx.example.net", "rfc822;other@example.org", "user@mx.example.net"),
    ],
)
def test_unusable_final_recipient_falls_back_to_original(
    final: str, original: str, want: str
) -> None:
    raw = (
        "From: MAILER-DAEMON@example.org\nTo: a@example.org\nSubject: failure\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; example.org\n\n"
        f"Original-Recipient: {original}\nFinal-Recipient: {final}\nAction: failed\n"
        "Status: 5.2.2\n\n--b--\n"
    ).encode()
    (rc,) = decode(raw).recipients
    assert rc.recipient == want


def test_report_pasted_inline_after_a_from_line() -> None:
    inner = (
        b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: a@example.org\n"
        b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="z"\n\n'
        b"--z\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; bea@example.net\nOriginal-Recipient: rfc822; al@example.net\n"
        b"Action: failed\nStatus: 4.4.1\n\n--z--\n"
    )
    raw = (
        b"From: MAILER-DAEMON@isp.example.jp\nTo: a@example.org\n"
        b"Subject: Undelivered Mail Returned to Sender\nContent-Type: text/plain\n\n"
        b"For further assistance, please contact <support@isp.example.jp>\n\n"
        b"---------------------------------\n"
        b"From MAILER-DAEMON  Thu Apr 29 23:34:45 2015\n" + inner
    )
    r = decode(raw)
    assert r.agent == "rfc3464"
    (rc,) = r.recipients
    assert (rc.recipient, rc.original_recipient, rc.hint) == (
        "bea@example.net",
        "al@example.net",
        "expired",
    )
