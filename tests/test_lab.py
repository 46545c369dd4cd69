"""End to end against a real Postfix: one message per fake-MX reply kind, until each is final.

The lab (tests/lab/) runs Debian's Postfix on 127.0.0.1 and relays to a fake MX that answers by
recipient local part. These tests check the raw material mtalens reads: the maillog lines
(postfix ``status=``/``dsn=`` fields, smtp(8)/qmgr(8)/bounce(8) logging) and the DSNs (RFC 3464
``multipart/report; report-type=delivery-status``) that reach the sender's Maildir.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tests.conftest import need_binary
from tests.lab.fake_mx import FakeMX
from tests.lab.postfix_lab import LabTimings, PostfixLab, SendResult

SENDER = "sender@example.net"
# local part -> (final status, dsn) in the smtp(8) delivery line. Deferred kinds end "expired".
KINDS: dict[str, tuple[str, str]] = {
    "ok": ("sent", "2.0.0"),
    "unknown": ("bounced", "5.1.1"),
    "full": ("bounced", "5.2.2"),
    "listed": ("bounced", "5.7.1"),
    "bigdata": ("bounced", "5.3.4"),
    "defer": ("deferred", "4.2.0"),
    "busy": ("deferred", "4.7.0"),
}
EXPIRING = ("defer", "busy")
TIMINGS = LabTimings(
    queue_run_delay=3,
    minimal_backoff_time=3,
    maximal_backoff_time=6,
    maximal_queue_lifetime=25,
    bounce_queue_lifetime=25,
    delay_warning_time=6,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    lab: PostfixLab
    mx: FakeMX
    sent: dict[str, SendResult]
    rejected: SendResult
    log: str
    dsns: list[Message]


def delivery_lines(log: str, queue_id: str) -> list[str]:
    return [line for line in log.splitlines() if f": {queue_id}: to=<" in line]


def dsn_parts(msg: Message) -> tuple[Message, list[Message]]:
    """(per-message fields, per-recipient field groups) of a delivery-status part."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            groups = [g for g in part.get_payload() if isinstance(g, Message)]
            return groups[0], groups[1:]
    raise AssertionError("no message/delivery-status part")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    need_binary("postfix")
    tmp = tmp_path_factory.mktemp("lab")
    with FakeMX() as mx, PostfixLab(tmp, mx_port=mx.port, timings=TIMINGS) as lab:
        sent = {
            kind: lab.send(SENDER, [f"{kind}@example.com"], f"lab {kind}", f"kind {kind}\n")
            for kind in KINDS
        }
        rejected = lab.send(SENDER, ["reject@example.net"], "lab reject", "refused at RCPT\n")
        expired = [
            rf": {sent[k].queue_id}: from=<{re.escape(SENDER)}>, status=expired" for k in EXPIRING
        ]
        lab.wait_until_idle(timeout=150, expect=expired)
        dsns = [
            email.message_from_bytes(raw, policy=email.policy.compat32)
            for raw in lab.maildir_messages()
        ]
        yield Run(lab=lab, mx=mx, sent=sent, rejected=rejected, log=lab.log_text(), dsns=dsns)


# Tests taking ``run`` share one real-Postfix run (module-scoped fixture, about 35 s).
@pytest.mark.slow
@pytest.mark.postfix
@pytest.mark.parametrize("kind", list(KINDS))
def test_log_has_final_status_and_dsn(run: Run, kind: str) -> None:
    status, dsn = KINDS[kind]
    queue_id = run.sent[kind].queue_id
    assert queue_id is not None
    lines = delivery_lines(run.log, queue_id)
    assert lines, f"no delivery line for {kind}"
    pattern = re.compile(
        rf"postfix/smtp\[\d+\]: {queue_id}: to=<{kind}@example\.com>, "
        rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{run.mx.port}, .*dsn={re.escape(dsn)}, "
        rf"status={status} \("
    )
    assert any(pattern.search(line) for line in lines), lines
    if status != "deferred":
        assert len(lines) == 1, lines


@pytest.mark.slow
@pytest.mark.postfix
@pytest.mark.parametrize("kind", EXPIRING)
def test_deferred_mail_retries_then_expires(run: Run, kind: str) -> None:
    queue_id = run.sent[kind].queue_id
    assert queue_id is not None
    assert len(delivery_lines(run.log, queue_id)) >= 2, "expected at least one retry"
    assert re.search(
        rf"qmgr\[\d+\]: {queue_id}: from=<{re.escape(SENDER)}>, status=expired, returned to sender",
        run.log,
    )
    assert re.search(rf"bounce\[\d+\]: {queue_id}: sender delay notification: \w+", run.log)
    assert re.search(rf"bounce\[\d+\]: {queue_id}: sender non-delivery notification: \w+", run.log)


@pytest.mark.slow
@pytest.mark.postfix
def test_fake_mx_received_only_the_accepted_message(run: Run) -> None:
    assert [r.rcpt_tos for r in run.mx.received] == [("ok@example.com",)]
    assert b"Subject: lab ok" in run.mx.received[0].data


@pytest.mark.slow
@pytest.mark.postfix
def test_noqueue_reject_is_logged(run: Run) -> None:
    assert run.rejected.queue_id is None
    code, reply = run.rejected.refused["reject@example.net"]
    assert code == 554
    assert reply.startswith("5.7.1 <reject@example.net>: Recipient address rejected")
    assert re.search(
        r"smtpd\[\d+\]: NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
        r"<reject@example\.net>: Recipient address rejected: .*; from=<sender@example\.net> "
        r"to=<reject@example\.net> proto=ESMTP helo=<client\.example\.net>",
        run.log,
    )


@pytest.mark.slow
@pytest.mark.postfix
def test_dsns_arrive_in_maildir_as_rfc3464_reports(run: Run) -> None:
    # RFC 3464 section 2 / RFC 6522: multipart/report with report-type=delivery-status.
    by_queue_id: dict[str, list[tuple[str, str, str]]] = {}
    for msg in run.dsns:
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "delivery-status"
        assert msg["Return-Path"] == "<>"
        per_message, per_recipient = dsn_parts(msg)
        assert per_message["Reporting-MTA"] == "dns; mx1.example.net"
        qid = per_message["X-Postfix-Queue-ID"]
        for rcpt in per_recipient:
            by_queue_id.setdefault(qid, []).append(
                (rcpt["Final-Recipient"], rcpt["Action"], rcpt["Status"])
            )
    expected: dict[str, list[tuple[str, str, str]]] = {}
    for kind, (status, dsn) in KINDS.items():
        qid = run.sent[kind].queue_id
        assert qid is not None
        final = f"rfc822; {kind}@example.com"
        if status == "bounced":
            expected[qid] = [(final, "failed", dsn)]
        elif status == "deferred":
            # A delay warning (RFC 3464 2.3.3 "delayed") first, then the expiry "failed".
            expected[qid] = [(final, "delayed", dsn), (final, "failed", dsn)]
    assert by_queue_id == expected


@pytest.mark.slow
@pytest.mark.postfix
def test_lab_stays_under_tmpdir_and_on_loopback(run: Run) -> None:
    root = run.lab.root
    for path in (run.lab.config_dir, run.lab.queue_dir, run.lab.log_path, run.lab.maildir_path):
        assert Path(path).is_relative_to(root)
    relays = set(re.findall(r" relay=([^,]+),", run.log))
    assert relays == {f"127.0.0.1[127.0.0.1]:{run.mx.port}", "virtual"}
    assert "connect to" not in run.log  # smtp(8) logs failed connections so


# The fake MX alone (no Postfix): its reply table and the 421 channel close.
@pytest.mark.parametrize(
    ("rcpt", "code", "text"),
    [
        ("ok@example.com", 250, "2.1.5 Ok"),
        ("Unknown7@example.com", 550, "5.1.1 user unknown"),
        ("full@example.com", 552, "5.2.2 mailbox full"),
        ("listed@example.com", 554, "5.7.1 Service unavailable; client [127.0.0.1] blocked"),
        ("defer@example.com", 450, "4.2.0 temporarily deferred"),
        ("bigdata@example.com", 250, "2.1.5 Ok"),
        ("anyone@example.com", 250, "2.1.5 Ok"),
    ],
)
def test_fake_mx_rcpt_replies(rcpt: str, code: int, text: str) -> None:
    with FakeMX() as mx, smtplib.SMTP("127.0.0.1", mx.port, local_hostname="c.example") as s:
        s.ehlo()
        s.mail("a@example.net")
        got_code, got_text = s.rcpt(rcpt)
        assert (got_code, got_text.decode().startswith(text)) == (code, True)


def test_fake_mx_data_reply_and_421_close() -> None:
    with FakeMX() as mx:
        with smtplib.SMTP("127.0.0.1", mx.port, local_hostname="c.example") as s:
            s.ehlo()
            s.mail("a@example.net")
            s.rcpt("bigdata@example.com")
            assert s.data(b"Subject: x\r\n\r\nbody\r\n") == (552, b"5.3.4 message too big")
            s.mail("a@example.net")
            assert s.rcpt("busy@example.com") == (421, b"4.7.0 try later")
            with pytest.raises(smtplib.SMTPServerDisconnected):
                s.noop()
        assert mx.received == []
