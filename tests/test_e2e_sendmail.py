"""End to end: a real Sendmail 8.17 writes its log and DSNs while a real `mtalens watch` tails both.

The lab (tests/lab/sendmail_lab.py) runs Debian 12's sendmail-bin, unpacked (never installed:
it would remove postfix) by .ci/unpack-sendmail.sh, as ``sm-mta -bd`` on 127.0.0.1 in a mount
namespace. Sendmail logs only through syslog: the lab's receiver writes what reaches its
/dev/log as rsyslog writes /var/log/mail.log, and that file is what the daemon tails. Every
remote domain goes to the fake MX (tests/lab/fake_mx.py), which answers by recipient local part
(250, 550 5.1.1, 552 5.2.2, 554 5.7.1 "blocked using" a DNSBL, 552 5.3.4 after DATA, 450 and
421 deferrals); short ``Timeout.queuewarn`` and ``Timeout.queuereturn`` make the deferred
messages produce a delay warning and then be returned within the test. Sendmail's own DSNs go
through the local mailer into the sender's Maildir, which the daemon reads too.

One message per kind, so each has its own queue id and DSN. The test reads the store only
through `mtalens query --format json` in other processes while the daemon runs, and checks per
recipient the final status, enhanced status code, reply code, reason and delays against what
the fake MX answered and the lab's timeouts; that each DSN became a bounce report linked to the
delivery it reports, and that the log's notification lines tie each DSN to its message; then
the refusals Sendmail itself made (an unknown local user at RCPT, check_rcpt's "Relaying
denied" for a client outside localhost, a failed AUTH) and a clean SIGTERM.

Under CI (``CI=true``) a missing unpacked Sendmail fails the test (``need``). About 40 s.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.lab.e2e import CLI, CLI_ENV, msgid, query, rcpt
from tests.lab.fake_mx import FakeMX
from tests.lab.sendmail_lab import (
    SASL_USER,
    SendmailLab,
    SendmailTimings,
    SendResult,
    missing_reason,
)

pytestmark = [pytest.mark.slow]

SENDER = "sender@example.net"
TIMINGS = SendmailTimings(queue_interval=3, queue_warn=8, queue_return=20)

# local part -> what recipient_outcomes must say: (status, dsn, reply_code, reason). The codes
# are the fake MX's replies (tests/lab/fake_mx.py): its enhanced status code where it sent one,
# even where Sendmail's own dsn= says something coarser (it logs dsn=5.0.0 for the 554 5.7.1,
# dsn=5.2.2 for the 552 5.3.4 after DATA and dsn=4.0.0 for the 421 4.7.0, next to the reply
# itself in reply=). The reasons are pipeline/classify.py's; a recipient still deferred when
# Sendmail returns the message (``Cannot send message for``) is "expired".
EXPECTED: dict[str, tuple[str, str, int, str]] = {
    "ok": ("sent", "2.0.0", 250, "delivered"),
    "unknown": ("bounced", "5.1.1", 550, "userunknown"),
    "full": ("bounced", "5.2.2", 552, "mailboxfull"),
    "listed": ("bounced", "5.7.1", 554, "blocked"),
    "bigdata": ("bounced", "5.3.4", 552, "mesgtoobig"),
    "defer": ("expired", "4.2.0", 450, "expired"),
    "busy": ("expired", "4.7.0", 421, "expired"),
}
EXPIRING = ("defer", "busy")
# Every kind except "ok" gets a non-delivery DSN; the expiring ones also a delay warning first.
FAILED = tuple(k for k in EXPECTED if k != "ok")


Q_OUTCOMES = (
    "SELECT recipient, queue_id, message_key, status, dsn, reply_code, reason, delay,"
    " delay_transmit, expired_at, last_attempt_status, mta FROM recipient_outcomes"
    " WHERE recipient_domain = 'example.com'"
)
Q_ATTEMPTS = (
    "SELECT recipient, count(*) AS n FROM deliveries WHERE recipient_domain = 'example.com'"
    " GROUP BY recipient"
)
Q_LINKS = (
    "SELECT recipient, status, reason, link_method, message_key, queue_id, mta_queue_id,"
    " original_message_id, delivery_status, delivery_dsn, delivery_reply_code, is_last_attempt,"
    " source FROM bounce_deliveries"
)
Q_REPORTS = "SELECT source, kind FROM bounce_reports"
Q_NOTIFICATIONS = (
    "SELECT m.queue_id, m.notification_kind, o.queue_id AS about_queue_id FROM messages m"
    " JOIN messages o ON o.message_key = m.bounce_of_key WHERE m.origin = 'bounce'"
)
Q_REJECTIONS = (
    "SELECT recipient, client_ip, action, stage, reply_code, dsn, mta FROM rejections"
    " ORDER BY recipient"
)
Q_AUTH = "SELECT client_ip, mechanism, sasl_username, mta FROM auth_failures"


@dataclass(slots=True)
class Snapshot:
    """What the store showed (through `mtalens query`) once every outcome was final."""

    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    auth_failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class E2E:
    lab: SendmailLab
    db: Path
    maildir: Path
    sent: dict[str, SendResult]
    refused: dict[str, tuple[int, str]]
    snap: Snapshot
    moved_before_commit: list[str]
    waited_s: float
    cur_at_snapshot: list[str] = field(default_factory=list)
    exit_code: int | None = None
    watch_log: list[dict[str, Any]] = field(default_factory=list)


def maildir_names(maildir: Path, sub: str) -> list[str]:
    d = maildir / sub
    return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def wait_until(check: Callable[[], str | None], timeout: float, what: str) -> float:
    """Poll ``check`` (None = done, else what is missing) until done; the seconds it took."""
    t0 = time.monotonic()
    missing: str | None = "not checked"
    while time.monotonic() - t0 < timeout:
        missing = check()
        if missing is None:
            return time.monotonic() - t0
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {missing}")


def snapshot(db: Path) -> Snapshot:
    return Snapshot(
        outcomes={r["recipient"]: r for r in query(db, Q_OUTCOMES)},
        attempts={r["recipient"]: int(r["n"]) for r in query(db, Q_ATTEMPTS)},
        links=query(db, Q_LINKS),
        reports=query(db, Q_REPORTS),
        notifications=query(db, Q_NOTIFICATIONS),
        rejections=query(db, Q_REJECTIONS),
        auth_failures=query(db, Q_AUTH),
    )


def start_watch(db: Path, log: Path, maildir: Path, err: Path) -> subprocess.Popen[bytes]:
    # No --log-format: the daemon detects Sendmail from the log's first lines. No --timezone:
    # it reads the log in the local zone, the one syslog(3) stamped it in.
    with open(err, "ab") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--maildir", str(maildir),
             "--poll-interval", "0.5", "--commit-interval", "0.5", "--drain-grace", "1"],
            stdout=subprocess.DEVNULL, stderr=fh, env=CLI_ENV,
        )  # fmt: skip


def send_kind(lab: SendmailLab, kind: str) -> SendResult:
    return lab.send(SENDER, [rcpt(kind)], f"e2e {kind}", f"kind {kind}\n",
                    headers={"Message-ID": msgid(kind)})  # fmt: skip


def send_refused(lab: SendmailLab) -> dict[str, tuple[int, str]]:
    """Refusals by Sendmail itself: an unknown local user (from localhost), a relay attempt
    from 127.0.0.2 (no name, so not in $=w), a wrong AUTH password from 127.0.0.3."""
    # the accepted recipient of each is alice, whose Maildir the daemon does not read
    res = lab.send(SENDER, ["nosuch@example.net", "alice@example.net"], "e2e local", "x\n")
    relay = lab.send(SENDER, ["someone@elsewhere.test", "alice@example.net"], "e2e relay", "x\n",
                     client_ip="127.0.0.2", helo="[127.0.0.2]")  # fmt: skip
    with smtplib.SMTP("127.0.0.1", lab.smtp_port, local_hostname="laptop.example.org",
                      source_address=("127.0.0.3", 0)) as s:  # fmt: skip
        s.ehlo()
        if not s.has_extn("auth"):  # no PLAIN/LOGIN plugin: test_auth_failures_are_stored says
            return {**res.refused, **relay.refused}
        try:
            s.login(SASL_USER, "not-the-password")
            raise AssertionError("AUTH with a wrong password succeeded")
        except smtplib.SMTPAuthenticationError as exc:
            auth = (exc.smtp_code, exc.smtp_error.decode())
    return {**res.refused, **relay.refused, "AUTH": auth}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    reason = missing_reason()
    need(reason is None, f"Sendmail lab: {reason}")
    tmp = tmp_path_factory.mktemp("e2e-sendmail")
    db, err = tmp / "watch.duckdb", tmp / "watch.err"
    with FakeMX() as mx, SendmailLab(tmp, mx_port=mx.port, timings=TIMINGS) as lab:
        maildir = lab.maildir("sender")
        for sub in ("tmp", "new", "cur"):  # the local mailer makes it at the first delivery
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        proc = start_watch(db, lab.log_path, maildir, err)
        try:
            # the daemon has read the lab's start-up lines once it has committed a checkpoint
            wait_until(
                lambda: None if db.exists() and query(db, "SELECT * FROM checkpoints") else "no",
                30, "the daemon's first commit",
            )  # fmt: skip
            sent = {kind: send_kind(lab, kind) for kind in EXPECTED}
            assert all(r.queue_id for r in sent.values()), sent
            refused = send_refused(lab)
            moved_before_commit: list[str] = []

            def all_final() -> str | None:
                assert proc.poll() is None, err.read_text()
                # maildir(5) names in cur/ end ":2,"; the daemon moves a message there only
                # after its rows are committed, so whatever is in cur/ *before* this query
                # must already be in the store.
                cur = maildir_names(maildir, "cur")
                stored = {Path(r["source"]).name for r in query(db, Q_REPORTS)}
                moved_before_commit.extend(n for n in cur if n.removesuffix(":2,") not in stored)
                final = {
                    r["recipient"]
                    for r in query(db, Q_OUTCOMES)
                    if r["status"] in ("sent", "bounced", "expired")
                }
                lacking = sorted(set(map(rcpt, EXPECTED)) - final)
                if lacking:
                    return f"no final outcome for {lacking}"
                new = maildir_names(maildir, "new")
                if new or len(cur) != len(FAILED) + len(EXPIRING):
                    return f"Maildir: {len(new)} in new/, {len(cur)} in cur/"
                if len(stored) != len(FAILED) + len(EXPIRING):
                    return f"{len(stored)} bounce reports"
                linked = len(query(db, Q_NOTIFICATIONS))
                if linked != len(FAILED) + len(EXPIRING):
                    return f"{linked} notifications linked in the log"
                return None

            waited = wait_until(all_final, 150, "every outcome and DSN in the store")
            cur_at_snapshot = maildir_names(maildir, "cur")  # before: all of it is stored
            snap = snapshot(db)
            run = E2E(lab=lab, db=db, maildir=maildir, sent=sent, refused=refused, snap=snap,
                      moved_before_commit=moved_before_commit, waited_s=waited,
                      cur_at_snapshot=cur_at_snapshot)  # fmt: skip
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
        run.exit_code = code
        run.watch_log = [
            json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")
        ]
        yield run


# -- the log side --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_final_status_codes_and_reason(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    got = (row["status"], row["dsn"], row["reply_code"], row["reason"])
    assert got == EXPECTED[kind], row
    assert row["queue_id"] == e2e.sent[kind].queue_id
    assert row["mta"] == "sendmail"


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_delays_are_stored(e2e: E2E, kind: str) -> None:
    # delay= counts from the message's arrival, xdelay= (delay_transmit) this attempt alone
    row = e2e.snap.outcomes[rcpt(kind)]
    assert row["delay"] is not None and row["delay_transmit"] is not None, row
    assert 0 <= row["delay_transmit"] <= row["delay"], row
    if kind not in EXPIRING:  # delivered or refused at the first attempt: the MX answers at once
        assert row["delay"] <= 5, row


@pytest.mark.parametrize("kind", EXPIRING)
def test_deferred_recipients_were_retried_then_expired(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    assert row["last_attempt_status"] == "deferred"
    assert row["expired_at"] is not None
    # tried at arrival and at each queue run until Timeout.queuereturn had passed: the last
    # attempt's delay= is at least that old (and not much older: slack for a loaded machine)
    assert e2e.snap.attempts[rcpt(kind)] >= 2
    assert TIMINGS.queue_return <= row["delay"] <= TIMINGS.queue_return + 30, row


def test_final_kinds_were_tried_once(e2e: E2E) -> None:
    once = {k: e2e.snap.attempts[rcpt(k)] for k in EXPECTED if k not in EXPIRING}
    assert once == dict.fromkeys(once, 1)


def test_sendmail_notifications_are_linked_in_the_log(e2e: E2E) -> None:
    # "QID: NEWQID: DSN: User unknown", "QID: NEWQID: sender notify: Warning: could not send
    # message for past 8 seconds", "... sender notify: Cannot send message for 20 seconds"
    got = sorted((n["about_queue_id"], n["notification_kind"]) for n in e2e.snap.notifications)
    want = sorted(
        [(e2e.sent[k].queue_id, "non-delivery") for k in FAILED]
        + [(e2e.sent[k].queue_id, "delay") for k in EXPIRING]
    )
    assert got == want


# -- the Maildir side ----------------------------------------------------------------------------


def test_every_dsn_is_a_stored_report_and_was_moved_to_cur(e2e: E2E) -> None:
    cur = e2e.cur_at_snapshot
    assert cur and all(n.endswith(":2,") for n in cur)
    stored = sorted(Path(r["source"]).name + ":2," for r in e2e.snap.reports)
    assert stored == cur
    kinds = sorted(r["kind"] for r in e2e.snap.reports)
    assert kinds == sorted(["bounce"] * len(FAILED) + ["delayed"] * len(EXPIRING))
    assert e2e.moved_before_commit == []


def test_each_bounce_is_linked_to_its_delivery(e2e: E2E) -> None:
    links = e2e.snap.links
    assert sorted(link["recipient"] for link in links if link["is_last_attempt"]) == sorted(
        map(rcpt, FAILED)
    )
    for kind in FAILED:
        rows = [link for link in links if link["recipient"] == rcpt(kind)]
        assert rows, kind
        outcome = e2e.snap.outcomes[rcpt(kind)]
        # one row per logged attempt, all of the one message the DSN is about
        assert len(rows) == e2e.snap.attempts[rcpt(kind)], rows
        for link in rows:
            assert link["message_key"] == outcome["message_key"], link
            assert link["queue_id"] == e2e.sent[kind].queue_id
            assert link["original_message_id"].strip("<>") == msgid(kind).strip("<>")
            # Sendmail's returned message has the Received: it added, "with ESMTP id <qid>"
            # (parsers/bounces/received.py): the queue id links it, not the Message-ID
            assert link["link_method"] == "queue_id"
            assert link["mta_queue_id"] == e2e.sent[kind].queue_id
        last = [link for link in rows if link["is_last_attempt"]]
        assert len(last) == 1
        status, dsn, code, _reason = EXPECTED[kind]
        assert last[0]["delivery_dsn"] == dsn
        assert last[0]["delivery_reply_code"] == code
        assert last[0]["delivery_status"] == ("deferred" if status == "expired" else status)


# -- what Sendmail refused itself ----------------------------------------------------------------


def test_refusals_by_sendmail_are_stored(e2e: E2E) -> None:
    # the SMTP replies the clients got (Sendmail's texts) ...
    assert e2e.refused["nosuch@example.net"] == (550, "5.1.1 <nosuch@example.net>... User unknown")
    code, text = e2e.refused["someone@elsewhere.test"]
    assert code == 550 and text.startswith("5.7.1 <someone@elsewhere.test>... Relaying denied")
    # ... and the rows the daemon stored from the log: check_rcpt's line names all of it
    rows = {r["recipient"]: r for r in e2e.snap.rejections}
    assert sorted(rows) == ["nosuch@example.net", "someone@elsewhere.test"]
    relay = rows["someone@elsewhere.test"]
    assert (relay["client_ip"], relay["action"], relay["stage"]) == ("127.0.0.2", "reject", "RCPT")
    assert (relay["reply_code"], relay["dsn"]) == (550, "5.7.1")
    # "QID: <nosuch@example.net>... User unknown" names neither the client nor the code
    local = rows["nosuch@example.net"]
    assert (local["action"], local["stage"]) == ("reject", "RCPT")
    assert {r["mta"] for r in e2e.snap.rejections} == {"sendmail"}


def test_auth_failures_are_stored(e2e: E2E) -> None:
    need(
        "AUTH" in e2e.refused,
        "AUTH offered by the lab's Sendmail: Cyrus SASL's PLAIN and LOGIN plugins"
        " (Debian's libsasl2-modules)",
    )
    assert e2e.refused["AUTH"][0] == 535
    # smtplib tries PLAIN, then LOGIN: Sendmail logs one "AUTH failure" per mechanism
    auth = sorted((r["client_ip"], r["mechanism"], r["sasl_username"])
                  for r in e2e.snap.auth_failures)  # fmt: skip
    assert auth == [("127.0.0.3", "LOGIN", SASL_USER), ("127.0.0.3", "PLAIN", SASL_USER)]


def test_local_user_refusal_has_client_and_code(e2e: E2E) -> None:
    # the '<addr>... User unknown' line names neither: the client comes from the session's
    # from= line (same queue id, logged after it), the code is Sendmail's reply to the refusal
    local = next(r for r in e2e.snap.rejections if r["recipient"] == "nosuch@example.net")
    assert (local["client_ip"], local["reply_code"], local["dsn"]) == ("127.0.0.1", 550, "5.1.1")


# -- the daemon itself ---------------------------------------------------------------------------


def test_watch_stops_cleanly_on_sigterm(e2e: E2E) -> None:
    assert e2e.exit_code == 0
    msgs = [r["msg"] for r in e2e.watch_log]
    assert msgs and msgs[0] == "watch started" and msgs[-1] == "watch stopped"
    assert [r for r in e2e.watch_log if r["level"] in ("error", "critical")] == []


def test_store_is_balanced_and_nothing_quarantined(e2e: E2E) -> None:
    rows = query(e2e.db, "SELECT outcome, sum(lines) AS n FROM line_accounting GROUP BY 1")
    by = {r["outcome"]: int(r["n"]) for r in rows}
    assert by.get("stored", 0) > 0 and by.get("quarantined", 0) == 0, by
    q = query(e2e.db, "SELECT count(*) AS n FROM quarantine")
    assert q == [{"n": 0}]
