"""Which SMTP command a failure answered, as the decoders read it (parsers/bounces/diagnostic.py)."""

from __future__ import annotations

import pytest

from mtalens.parsers.bounces import decode
from mtalens.parsers.bounces.diagnostic import command_from_transcript, complete_reply, find_command
from mtalens.parsers.bounces.records import SmtpCommand


@pytest.mark.parametrize(
    ("text", "command"),
    [
        (
            "host mx.example.org[192.0.2.1] said: 550 5.7.1 spam (in reply to end of DATA\n"
            "    command)",
            SmtpCommand.DATA,
        ),
        ("said: 550 5.1.1 unknown (in reply to RCPT TO command)", SmtpCommand.RCPT),
        ("said: 553 sender unknown (in reply to MAIL FROM command)", SmtpCommand.MAIL),
        ("host mx.example.org[192.0.2.1] refused to talk to me: 554 go away", SmtpCommand.CONNECT),
        (
            "SMTP error from remote mail server after RCPT TO:<eve@example.org>:\n"
            "    host mx.example.org [192.0.2.1]: 550 no such user",
            SmtpCommand.RCPT,
        ),
        (
            "SMTP error from remote mail server after end of data:\n    550 rejected",
            SmtpCommand.DATA,
        ),
        (
            "SMTP error from remote mail server after pipelined end of data: 550 no",
            SmtpCommand.DATA,
        ),
        (
            "SMTP error from remote mail server after initial connection: 554 no",
            SmtpCommand.CONNECT,
        ),
        ("SMTP error from remote server for TEXT command, host: mx.example.net", SmtpCommand.DATA),
        ("192.0.2.3 does not like recipient.\nRemote host said: 550 no", SmtpCommand.RCPT),
        ("192.0.2.3 failed after I sent the message.\nRemote host said: 554 no", SmtpCommand.DATA),
        ("Connected to 192.0.2.3 but sender was rejected.", SmtpCommand.MAIL),
        ("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", SmtpCommand.CONNECT),
        ("-------server message\n550 unknown user\n-------SMTP command\nDATA", SmtpCommand.DATA),
        ("550 5.1.1 <eve@example.org>... User unknown", None),
        ("", None),
    ],
)
def test_find_command(text: str, command: SmtpCommand | None) -> None:
    assert find_command(text) is command


def test_transcript_last_command_answers() -> None:
    text = ">>> MAIL From:<a@example.org>\n<<< 250 ok\n>>> DATA\n<<< 554 5.7.1 rejected as spam\n"
    assert command_from_transcript(text, None) is SmtpCommand.DATA


def test_transcript_pipelined_replies_answer_rcpt() -> None:
    # RFC 2920 section 3.1: RCPT TO and DATA sent in one batch, replies in command order.
    text = (
        "... while talking to mx.example.org.:\n>>> DATA\n"
        "<<< 550 5.1.1 <gus@example.org>... User unknown\n"
        "550 5.1.1 <gus@example.org>... User unknown\n"
        "<<< 503 5.0.0 Need RCPT (recipient)\n"
    )
    assert command_from_transcript(text, "gus@example.org") is SmtpCommand.RCPT
    assert command_from_transcript(text, None) is SmtpCommand.RCPT


def test_transcript_multiline_reply_is_one_reply() -> None:
    text = (
        ">>> DATA\n<<< 552-5.7.0 This message was blocked because its content presents a\n"
        "<<< 552 5.7.0 potential security issue.\n554 5.0.0 Service unavailable\n"
    )
    assert command_from_transcript(text, None) is SmtpCommand.DATA


def test_complete_reply_from_transcript() -> None:
    human = (
        "<<< 550-5.7.1 [192.0.2.5      13] Messages with multiple addresses in From:\n"
        "<<< 550 5.7.1 header are not accepted. x1 - gsmtp\n"
    )
    got = complete_reply(
        "550-5.7.1 [192.0.2.5 13] Messages with multiple addresses in From:", human
    )
    assert got == (
        "550 5.7.1 [192.0.2.5 13] Messages with multiple addresses in From: header are not "
        "accepted. x1 - gsmtp"
    )
    assert complete_reply("550 5.1.1 done", human) == "550 5.1.1 done"


DSN = (
    "From: MAILER-DAEMON@mx.example.org\r\nTo: hal@example.org\r\nSubject: Undelivered Mail\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    "--b\r\nContent-Type: text/plain\r\n\r\n"
    "<ida@example.jp>: host mx.example.jp[192.0.2.7] said: 550 Unknown user\r\n"
    "    ida@example.jp (in reply to end of DATA command)\r\n\r\n"
    "<jo@example.jp>: host mx.example.jp[192.0.2.7] said: 550 5.1.1 <jo@example.jp>: Recipient\r\n"
    "    address rejected: User unknown (in reply to RCPT TO command)\r\n\r\n"
    "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.org\r\n\r\n"
    "Final-Recipient: rfc822; ida@example.jp\r\nAction: failed\r\nStatus: 5.0.0\r\n"
    "Diagnostic-Code: smtp; 550 Unknown user ida@example.jp\r\n\r\n"
    "Final-Recipient: rfc822; jo@example.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <jo@example.jp>: Recipient address rejected: User unknown\r\n"
    "\r\n--b--\r\n"
)


def test_rfc3464_recipient_carries_its_own_command() -> None:
    report = decode(DSN.encode())
    got = {r.recipient: r.command for r in report.recipients}
    assert got == {"ida@example.jp": SmtpCommand.DATA, "jo@example.jp": SmtpCommand.RCPT}


def test_pipeline_classifies_with_the_command() -> None:
    from mtalens.pipeline.bounces import Decoded, default_classifier, rows_of
    from mtalens.pipeline.mailbox import MailboxMessage

    report = decode(DSN.encode())
    msg = MailboxMessage(source="t.eml", index=1, offset=0, raw=DSN.encode())
    rows = {r.recipient: r for r in rows_of(Decoded(msg, "", report=report), default_classifier())}
    assert rows["ida@example.jp"].reason == "filtered"
    assert rows["jo@example.jp"].reason == "userunknown"
