"""Issue 13, item 3: decoding that generalises to bounce mail it was not developed on.

Each test is one class of behaviour, with messages written here by hand after the documented
format of the MTA or provider named in it (addresses and hosts are example names); none is
taken from the development corpus.
"""

from __future__ import annotations

import pytest

from mtalens.parsers.bounces import Action, ReportKind, decode
from mtalens.parsers.bounces.diagnostic import clean_address, find_status
from mtalens.pipeline.classify import classify


def mail(headers: str, body: str) -> bytes:
    """A message from a header block and a body written with LF line ends."""
    return (headers.strip("\n") + "\n\n" + body.lstrip("\n")).encode()


DAEMON = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: alice@example.org
Subject: Undelivered Mail Returned to Sender
Date: Tue, 3 Mar 2026 10:15:02 +0100
Message-ID: <ndr-1@mx.example.net>
"""


def recipients(raw: bytes) -> list[str]:
    return [r.recipient for r in decode(raw).recipients]


# --- addresses taken from outside the failure notice ---------------------------------------


@pytest.mark.parametrize(
    "marker",
    [
        "------------------------- Your mail follows -------------------------",
        "--- Undelivered message follows ---",
        "Here is the message you sent:",
        "",  # no marker at all: the returned header block itself starts the quoted message
    ],
)
def test_returned_message_behind_an_uncommon_marker_is_not_read_for_recipients(
    marker: str,
) -> None:
    body = f"""\
I was unable to deliver your message to the following address:

  bob@example.net: 550 5.1.1 No such user here

{marker}
Received: from client.example.org (client.example.org [192.0.2.10])
\tby mx.example.org with ESMTP id 4F2A31C0A1; Tue, 3 Mar 2026 10:14:58 +0100
From: Alice <alice@example.org>
To: bob@example.net, carol@example.com
Subject: lunch
Message-ID: <lunch-1@example.org>

Ask dave@example.com, he knows the place.
"""
    assert recipients(mail(DAEMON, body)) == ["bob@example.net"]


def test_quoted_returned_message_lines_are_not_read_for_recipients() -> None:
    body = """\
Delivery to the following recipient failed: bob@example.net
Reason: 550 5.1.1 user unknown

> From: Alice <alice@example.org>
> To: bob@example.net, carol@example.com
> Subject: lunch
>
> Ask dave@example.com.
"""
    assert recipients(mail(DAEMON, body)) == ["bob@example.net"]


def test_exchange_summary_of_the_message_is_not_a_recipient_list() -> None:
    # Exchange 2000/2003 plain-text NDR: "Your message / To: / Cc: / Subject: / Sent: / did
    # not reach the following recipient(s):" then "<address> on <date>" and the reason.
    headers = """\
From: System Administrator <postmaster@mail.example.net>
To: alice@example.org
Subject: Undeliverable: lunch
"""
    body = """\
Your message

  To:      bob@example.net; carol@example.com
  Cc:      dave@example.com
  Subject: lunch
  Sent:    Tue, 3 Mar 2026 10:14:58 +0100

did not reach the following recipient(s):

bob@example.net on Tue, 3 Mar 2026 10:15:02 +0100
    The e-mail account does not exist at the organization this message was sent to.
    <mail.example.net #5.1.1>
"""
    (rc,) = decode(mail(headers, body)).recipients
    assert rc.recipient == "bob@example.net" and rc.status == "5.1.1"


def test_html_only_notice_reads_lines_and_stops_at_the_returned_message() -> None:
    headers = DAEMON + "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n"
    body = (
        "<html><head><title>Delivery failure</title></head><body>"
        "<p>Delivery to the following recipient failed permanently:</p>"
        "<p><b>bob@example.net</b></p><p>Technical details: 550 5.1.1 user unknown</p>"
        "<hr><p>Original message headers:</p>"
        "<p>From: alice@example.org<br>To: bob@example.net, carol@example.com<br>"
        "Subject: lunch</p><p>Ask dave@example.com &amp; friends.</p></body></html>\n"
    )
    (rc,) = decode(mail(headers, body)).recipients
    assert rc.recipient == "bob@example.net" and rc.status == "5.1.1"


def test_the_senders_own_address_in_the_preamble_is_not_a_recipient() -> None:
    # the report goes to a VERP return path, so the sender's address is not the report's To:
    headers = """\
From: MAILER-DAEMON@mx.example.net
To: bounces+alice=example.org@lists.example.org
Subject: failure notice
"""
    body = """\
Your message from alice@example.org to bob@example.net could not be delivered.
Sender: alice@example.org

bob@example.net: 550 5.1.1 mailbox unavailable
"""
    assert recipients(mail(headers, body)) == ["bob@example.net"]


def test_example_addresses_in_explanatory_prose_are_not_recipients() -> None:
    body = """\
The following address failed:

  bob@example.net: 550 5.1.1 user unknown

Please check the spelling of the address; it should look like, for example,
someone@example.com, with no spaces (e.g. not "some one@example.com").
"""
    assert recipients(mail(DAEMON, body)) == ["bob@example.net"]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # X.400 address with an SMTP domain-defined attribute (Exchange legacy NDRs, RFC 2156)
        ("c=US;a= ;p=Example Org;o=Mail;dda:SMTP=bob@example.net;", "bob@example.net"),
        ("SMTP=bob@example.net", "bob@example.net"),
        ("RFC-822=bob@example.net", "bob@example.net"),
        # Sendmail usrerr(): "<addr>... User unknown", brackets lost
        ("bob@example.net...User", "bob@example.net"),
        ("bob@example.net...", "bob@example.net"),
    ],
)
def test_address_tokens_are_cleaned(raw: str, want: str) -> None:
    from mtalens.parsers.bounces.diagnostic import find_address

    assert clean_address(find_address(raw) or "") == want


def test_x400_recipient_in_prose_notice() -> None:
    body = """\
Your message did not reach some or all of the intended recipients.

The following recipient(s) could not be reached:

      c=US;a= ;p=Example Org;o=Mail;dda:SMTP=bob@example.net; on 3/3/2026 10:15 AM
            The recipient name is not recognized
            MSEXCH:IMS:Example:Site:MAIL 0 (000C05A6) Unknown Recipient
"""
    assert recipients(mail(DAEMON, body)) == ["bob@example.net"]


def test_sendmail_dots_after_address_in_prose() -> None:
    body = """\
   ----- Transcript of session follows -----
550 bob@example.net...User unknown
"""
    assert recipients(mail(DAEMON, body)) == ["bob@example.net"]


# --- reasons -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "kwargs"),
    [
        ("spamdetected", {"status": "5.0.0", "diagnostic": "550 5.0.0 Message rejected as spam"}),
        (
            "spamdetected",
            {"reply_code": 554, "diagnostic": "554 Your message was classified as spam"},
        ),
        (
            "blocked",
            {"status": "5.7.1", "diagnostic": "550 5.7.1 Your IP address is on a blocklist"},
        ),
        ("blocked", {"reply_code": 550, "diagnostic": "550 Sending host is blacklisted"}),
        ("blocked", {"reply_code": 554, "diagnostic": "554 you are listed at bl.example.net"}),
        (
            "spamdetected",
            {"status": "5.7.1", "diagnostic": "554 5.7.1 Message rejected: we do not accept spam"},
        ),
        ("spamdetected", {"reply_code": 554, "diagnostic": "554 Denied: spam"}),
        (
            "mailboxfull",
            {
                "reply_code": 554,
                "diagnostic": "554 The recipient mailbox is over its storage limit",
            },
        ),
        ("mailboxfull", {"reply_code": 550, "diagnostic": "550 user has exceeded its quota"}),
        (
            "norelaying",
            {"status": "5.7.1", "diagnostic": "550 5.7.1 Relaying denied for bob@example.net"},
        ),
        ("norelaying", {"reply_code": 550, "diagnostic": "550 relay not permitted"}),
        ("norelaying", {"status": "5.0.0", "diagnostic": "554 Relay access denied"}),
        ("userunknown", {"reply_code": 550, "diagnostic": "550 No such mailbox"}),
        ("userunknown", {"status": "5.0.0", "diagnostic": "550 5.0.0 mailbox does not exist"}),
        ("userunknown", {"status": "5.7.1", "diagnostic": "550 5.7.1 No such recipient here"}),
        ("mailboxfull", {"status": "5.0.0", "diagnostic": "550 5.0.0 User is over quota"}),
        ("mailboxfull", {"reply_code": 554, "diagnostic": "554 mailbox over quota"}),
        ("mailboxfull", {"status": "4.0.0", "diagnostic": "451 quota exceeded, try again later"}),
    ],
)
def test_a_diagnostic_that_names_the_cause_beats_the_code_class(
    want: str, kwargs: dict[str, object]
) -> None:
    got = classify(action="failed", **kwargs)  # type: ignore[arg-type]
    assert got.reason == want, got.rule_id


@pytest.mark.parametrize(
    "text",
    [
        "This notice was sent by Mailman 2.0.12 on behalf of the list",
        "(Exim 4.94.2) could not deliver",
        "ESMTP Postfix 2.11.3 said hello",
        "version 5.1.2 of the filter",
    ],
)
def test_software_version_numbers_are_not_status_codes(text: str) -> None:
    assert find_status(text) is None
    got = classify(diagnostic=text + ": unknown user")
    assert got.reason == "userunknown"


def test_version_number_in_a_prose_bounce_is_not_its_status() -> None:
    body = """\
Your message to bob@example.net could not be delivered: no such member.

-- The Mailman 2.0.12 list manager
"""
    (rc,) = decode(mail(DAEMON, body)).recipients
    assert rc.status in (None, "5.0.0")


@pytest.mark.parametrize(
    "text",
    [
        "This is a permanent error. The following address failed",
        "Permanent failure: the remote system did not accept the message",
        "The message could not be delivered and will not be retried",
    ],
)
def test_hard_is_known_when_the_text_says_the_failure_is_permanent(text: str) -> None:
    got = classify(diagnostic=text, action="failed")
    assert got.hard is False, got
    got = classify(diagnostic=text)
    assert got.hard is False, got


# --- recipients lost -----------------------------------------------------------------------


def _report(status_fields: str, human: str, to: str = "bob@example.net") -> bytes:
    return f"""\
From: MAILER-DAEMON@mx.example.net
To: alice@example.org
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

{human}
--B
Content-Type: message/delivery-status

{status_fields}
--B
Content-Type: text/rfc822-headers

From: alice@example.org
To: {to}
Subject: lunch
Message-ID: <lunch-1@example.org>

--B--
""".encode()


def test_delivery_status_without_recipient_fields_falls_back_to_the_text() -> None:
    raw = _report(
        "Reporting-MTA: dns; mx.example.net\nArrival-Date: Tue, 3 Mar 2026 10:14:58 +0100\n",
        "Delivery to this address failed:\n\n    bob@example.net\n"
        "    550 5.1.1 The email account that you tried to reach does not exist.\n",
    )
    r = decode(raw)
    (rc,) = r.recipients
    assert (rc.recipient, rc.status) == ("bob@example.net", "5.1.1")
    assert r.kind is ReportKind.BOUNCE


def test_internal_final_recipient_reports_the_original_recipient() -> None:
    raw = _report(
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; bob@mailstore01.localdomain\n"
        "Original-Recipient: rfc822; bob@example.net\n"
        "Action: failed\nStatus: 5.1.1\n"
        'Diagnostic-Code: X-Postfix; unknown user: "bob"\n',
        "<bob@mailstore01.localdomain> (expanded from <bob@example.net>): unknown user\n",
    )
    (rc,) = decode(raw).recipients
    assert rc.recipient == "bob@example.net"


def test_internal_final_recipient_reports_the_expanded_from_address() -> None:
    # Postfix bounce(8) names the address before alias expansion: "(expanded from <x>)"
    raw = _report(
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; bob@mailstore01.internal\n"
        "Action: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: X-Postfix; mailbox full\n",
        "<bob@mailstore01.internal> (expanded from <bob@example.net>): mailbox full\n",
    )
    (rc,) = decode(raw).recipients
    assert rc.recipient == "bob@example.net"


@pytest.mark.parametrize(
    ("returned_to", "want"),
    [
        # the returned message was sent to the same local part: that is the address
        ("Bob <bob@example.net>", "bob@example.net"),
        # else the reporting MTA qualified it with its own name (RFC 5321 section 2.3.5)
        ("team@example.net", "bob@mx.example.net"),
    ],
)
def test_bare_local_part_gets_the_reporting_domain(returned_to: str, want: str) -> None:
    raw = _report(
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; bob\nAction: failed\nStatus: 5.1.1\n",
        "bob... User unknown\n",
        to=returned_to,
    )
    (rc,) = decode(raw).recipients
    assert rc.recipient == want


# --- not failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sentence",
    [
        "Delivery attempts will continue to be made for 4 day(s).",
        "Delivery of the message has been postponed.",
        "The server will retry delivery; no action is required on your part.",
    ],
)
def test_plain_text_delay_warning_is_not_a_failure(sentence: str) -> None:
    headers = """\
From: MAILER-DAEMON@mx.example.net
To: alice@example.org
Subject: Delivery Status Notification
"""
    body = f"""\
Your message to bob@example.net has not been delivered yet.
Reason: 451 4.4.1 no answer from host.
{sentence}
"""
    r = decode(mail(headers, body))
    assert r.kind is ReportKind.DELAYED
    assert [x.action for x in r.recipients] == [Action.DELAYED]


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        (
            "Message not delivered: please verify you are a person",
            "bob@example.net uses a challenge-response system to block spam. Your message"
            " to bob@example.net is held until you confirm that you are a real person: visit"
            " https://verify.example.com/c/abc123.",
        ),
        (
            "Returned mail: sender not on the approved senders list",
            "Your message to bob@example.net is waiting for approval because you are not on"
            " the recipient's allow list. Reply to this message to be added to the allowed"
            " senders list.",
        ),
    ],
)
def test_challenge_response_notice_is_not_a_failed_recipient(subject: str, text: str) -> None:
    headers = f"From: postmaster@example.net\nTo: alice@example.org\nSubject: {subject}\n"
    r = decode(mail(headers, text + "\n"))
    assert r.kind in (ReportKind.AUTOREPLY, ReportKind.NOT_BOUNCE)
    assert r.recipients == ()
