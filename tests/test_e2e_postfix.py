"""End to end: a real Postfix writes its log and DSNs while a real `mtalens watch` tails both.

The lab (tests/lab/) runs Debian's Postfix on 127.0.0.1 with ``maillog_file`` and relays every
remote domain to a fake MX that answers by recipient local part (250, 550 5.1.1, 552 5.2.2,
554 5.7.1 "blocked using" a DNSBL, 450 and 421 deferrals that expire, 552 after DATA). Postfix's
own DSNs (RFC 3464) are delivered by virtual(8) into the sender's Maildir. `mtalens watch` runs
as a separate process on the lab's log and that Maildir; the test reads the store only through
`mtalens query --format json` in other processes while the daemon runs (its short write windows
let read-only readers in between commits) and checks, per recipient, the final status, enhanced
status code, reply code, SMTP stage, delays and expiry, and that every DSN became `bounces` rows
linked through the `bounce_deliveries` view to the delivery it reports.

Then the suppression loop (issue 5): the hard bounce (550 5.1.1) makes its address suppressed,
`mtalens suppressions export --format postfix-access` writes an access(5) table, postmap(1)
compiles it, the lab's smtpd gets it as ``check_recipient_access`` (postconf(5)
``smtpd_recipient_restrictions``), ``postfix reload``, and a new message to that address is
refused at RCPT (smtpd(8) ``NOQUEUE: reject``, access(5) ``REJECT`` answers with
``access_map_reject_code``, default 554) while another recipient of the same message is still
accepted. The daemon stores that reject too. Finally SIGTERM stops the daemon cleanly.

Under CI (``CI=true``) a missing postfix fails the test (``need_binary``). About a minute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need, need_binary
from tests.lab.e2e import CLI, CLI_ENV, msgid, query, rcpt
from tests.lab.fake_mx import FakeMX
from tests.lab.postfix_lab import LabTimings, PostfixLab, SendResult

pytestmark = [pytest.mark.slow, pytest.mark.postfix]

SENDER = "sender@example.net"

# local part -> what the store must say about it in recipient_outcomes:
# (status, dsn, reply_code, smtp_stage, reason). The replies are the fake MX's
# (tests/lab/fake_mx.py); the reasons are pipeline/classify.py's; a recipient still deferred
# when qmgr(8) gives the message up is "expired" (pipeline/sql/0006_expired_outcomes.sql).
EXPECTED: dict[str, tuple[str, str, int | None, str | None, str]] = {
    "ok": ("sent", "2.0.0", 250, None, "delivered"),
    "unknown": ("bounced", "5.1.1", 550, "RCPT TO", "userunknown"),
    "full": ("bounced", "5.2.2", 552, "RCPT TO", "mailboxfull"),
    "listed": ("bounced", "5.7.1", 554, "RCPT TO", "blocked"),
    "bigdata": ("bounced", "5.3.4", 552, "end of DATA", "mesgtoobig"),
    "defer": ("expired", "4.2.0", 450, "RCPT TO", "expired"),
    "busy": ("expired", "4.7.0", 421, "RCPT TO", "expired"),
}
EXPIRING = ("defer", "busy")
# Every kind except "ok" gets a non-delivery DSN; the expiring ones also a delay warning first
# (delay_warning_time is shorter than maximal_queue_lifetime).
FAILED = tuple(k for k in EXPECTED if k != "ok")
TIMINGS = LabTimings(
    queue_run_delay=3,
    minimal_backoff_time=3,
    maximal_backoff_time=6,
    maximal_queue_lifetime=25,
    bounce_queue_lifetime=25,
    delay_warning_time=6,
)
# The address the loop suppresses (hard failure, RFC 3463 X.1.1) and one it must not touch.
SUPPRESSED = "unknown@example.com"
STILL_OK = "ok2@example.com"


def mtalens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=CLI_ENV, timeout=120, check=False
    )


@dataclass(slots=True)
class Snapshot:
    """What the store showed (through `mtalens query`) once every outcome was final."""

    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class E2E:
    lab: PostfixLab
    mx: FakeMX
    db: Path
    maildir: Path
    sent: dict[str, SendResult]
    snap: Snapshot
    moved_before_commit: list[str]
    waited_s: float
    cur_at_snapshot: list[str] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    access_map: str = ""
    refusal: SendResult | None = None
    rejections: list[dict[str, Any]] = field(default_factory=list)
    still_ok_outcome: dict[str, Any] | None = None
    exit_code: int | None = None
    watch_log: list[dict[str, Any]] = field(default_factory=list)


Q_OUTCOMES = (
    "SELECT recipient, queue_id, message_key, status, dsn, reply_code, smtp_stage, reason,"
    " delay, delay_before_queue, delay_in_queue, delay_connect, delay_transmit, expired_at,"
    " last_attempt_status FROM recipient_outcomes WHERE recipient_domain = 'example.com'"
)
Q_ATTEMPTS = (
    "SELECT recipient, count(*) AS n FROM deliveries WHERE recipient_domain = 'example.com'"
    " GROUP BY recipient"
)
Q_LINKS = (
    "SELECT recipient, status, reason, link_method, message_key, queue_id, postfix_queue_id,"
    " original_message_id, delivery_status, delivery_dsn, delivery_reply_code, is_last_attempt,"
    " source FROM bounce_deliveries"
)
Q_REPORTS = "SELECT source, kind, postfix_queue_id FROM bounce_reports"
Q_NOTIFICATIONS = (
    "SELECT m.queue_id, m.notification_kind, o.queue_id AS about_queue_id FROM messages m"
    " JOIN messages o ON o.message_key = m.bounce_of_key WHERE m.origin = 'bounce'"
)


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
    )


def start_watch(db: Path, log: Path, maildir: Path, err: Path) -> subprocess.Popen[bytes]:
    # No --timezone: the daemon reads the log in the local zone, the one Postfix writes it in.
    with open(err, "ab") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--maildir", str(maildir),
             "--poll-interval", "0.5", "--commit-interval", "0.5", "--drain-grace", "1"],
            stdout=subprocess.DEVNULL, stderr=fh, env=CLI_ENV,
        )  # fmt: skip


def wire_suppressions(lab: PostfixLab, access: Path) -> None:
    """Put the exported access(5) table in front of the lab's own recipient restrictions and
    reload (postconf(1) -e edits the lab's main.cf, postfix(1) reload re-reads it)."""
    postconf = need_binary("postconf")
    lab.postmap(access)  # hash:<access> -> <access>.db
    own = lab.main_cf()["smtpd_recipient_restrictions"]
    value = f"check_recipient_access hash:{access}, {own}"
    subprocess.run(
        [postconf, "-c", str(lab.config_dir), "-e", f"smtpd_recipient_restrictions = {value}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    lab.reload()


def send_kind(lab: PostfixLab, kind: str) -> SendResult:
    return lab.send(
        SENDER, [rcpt(kind)], f"e2e {kind}", f"kind {kind}\n", {"Message-ID": msgid(kind)}
    )


def send_until_refused(lab: PostfixLab, deadline_s: float) -> SendResult:
    """After a reload, smtpd(8) processes of the old generation may answer one more session:
    retry (each attempt is a new session) until the new restriction shows."""
    t0 = time.monotonic()
    while True:
        res = lab.send(SENDER, [SUPPRESSED, STILL_OK], "e2e after suppression", "again\n",
                       {"Message-ID": "<e2e-after.1@client.example.net>"})  # fmt: skip
        if SUPPRESSED in res.refused or time.monotonic() - t0 > deadline_s:
            return res
        time.sleep(1.0)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    need_binary("postfix")
    need_binary("postmap")
    need(os.geteuid() == 0, "root (the Postfix lab chowns its spool and starts master(8))")
    tmp = tmp_path_factory.mktemp("e2e")
    db, err = tmp / "watch.duckdb", tmp / "watch.err"
    with FakeMX() as mx, PostfixLab(tmp, mx_port=mx.port, timings=TIMINGS) as lab:
        maildir = lab.maildir_path
        proc = start_watch(db, lab.log_path, maildir, err)
        try:
            # the daemon has read the lab's start-up lines once it has committed a checkpoint
            wait_until(
                lambda: None if db.exists() and query(db, "SELECT * FROM checkpoints") else "no",
                30, "the daemon's first commit",
            )  # fmt: skip
            sent = {kind: send_kind(lab, kind) for kind in EXPECTED}
            assert all(r.queue_id for r in sent.values()), sent
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
                if len(stored) != len(cur):
                    return f"{len(stored)} bounce reports for {len(cur)} DSNs"
                # postlogd(8) writes asynchronously: a DSN can be in the Maildir before bounce(8)'s
                # "sender ... notification: NEWID" line is in the log
                linked = len(query(db, Q_NOTIFICATIONS))
                if linked != len(FAILED) + len(EXPIRING):
                    return f"{linked} notifications linked in the log"
                return None

            waited = wait_until(all_final, 150, "every outcome and DSN in the store")
            cur_at_snapshot = maildir_names(maildir, "cur")  # before: all of it is stored
            snap = snapshot(db)
            run = E2E(lab=lab, mx=mx, db=db, maildir=maildir, sent=sent, snap=snap,
                      moved_before_commit=moved_before_commit,
                      waited_s=waited, cur_at_snapshot=cur_at_snapshot)  # fmt: skip

            # -- the suppression loop (issue 5), still with the daemon running --------------
            run.suppressed = json.loads(
                _ok(mtalens("suppressions", "list", "--db", str(db), "--format", "json"))
            )
            access = lab.config_dir / "mtalens_suppressions"
            _ok(mtalens("suppressions", "export", "--db", str(db), "--format", "postfix-access",
                        "-o", str(access)))  # fmt: skip
            run.access_map = access.read_text()
            wire_suppressions(lab, access)
            run.refusal = send_until_refused(lab, 20)

            def reject_stored() -> str | None:
                run.rejections = query(
                    db,
                    "SELECT recipient, action, stage, reply_code, dsn, reason FROM"
                    f" rejections WHERE recipient = '{SUPPRESSED}'",
                )
                # the refused session's message: an earlier attempt (an smtpd of the old
                # generation, before the reload) may have been accepted and delivered too
                qid = run.refusal.queue_id if run.refusal else None
                ok = [o for o in query(db, Q_OUTCOMES)
                      if o["recipient"] == STILL_OK and o["queue_id"] == qid]  # fmt: skip
                run.still_ok_outcome = ok[0] if ok else None
                if not run.rejections:
                    return "no rejection row yet"
                if not ok or ok[0]["status"] != "sent":
                    return f"{STILL_OK} not delivered yet: {ok}"
                return None

            wait_until(reject_stored, 60, "the RCPT reject and the accepted recipient")
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


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# -- the log side --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_final_status_codes_stage_and_reason(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    got = (row["status"], row["dsn"], row["reply_code"], row["smtp_stage"], row["reason"])
    assert got == EXPECTED[kind]
    assert row["queue_id"] == e2e.sent[kind].queue_id


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_delays_are_stored_and_add_up(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    parts = [row[c] for c in ("delay_before_queue", "delay_in_queue", "delay_connect",
                              "delay_transmit")]  # fmt: skip
    assert row["delay"] is not None and None not in parts, row
    # postconf(5) delay_logging_resolution_limit: each of delays=a/b/c/d is rounded separately
    assert abs(sum(parts) - row["delay"]) <= 0.05 + 0.02 * row["delay"], row


@pytest.mark.parametrize("kind", EXPIRING)
def test_deferred_recipients_were_retried_then_expired(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    assert row["last_attempt_status"] == "deferred"
    assert row["expired_at"] is not None
    # at least one retry after minimal_backoff_time, so the last attempt is that old at least
    assert e2e.snap.attempts[rcpt(kind)] >= 2
    assert row["delay"] >= TIMINGS.minimal_backoff_time


def test_final_kinds_were_tried_once(e2e: E2E) -> None:
    once = {k: e2e.snap.attempts[rcpt(k)] for k in EXPECTED if k not in EXPIRING}
    assert once == dict.fromkeys(once, 1)


def test_postfix_notifications_are_linked_in_the_log(e2e: E2E) -> None:
    # bounce(8) logs "sender non-delivery notification: NEWID" (and "delay notification"):
    # every DSN message the log shows is tied to the message it is about.
    got = sorted((n["about_queue_id"], n["notification_kind"]) for n in e2e.snap.notifications)
    want = sorted(
        [(e2e.sent[k].queue_id, "non-delivery") for k in FAILED]
        + [(e2e.sent[k].queue_id, "delay") for k in EXPIRING]
    )
    assert got == want


# -- the Maildir side ----------------------------------------------------------------------------


def test_every_dsn_is_a_stored_report_and_was_moved_to_cur(e2e: E2E) -> None:
    # as the store was snapshotted (the suppression loop after it may bring one more DSN: a
    # session an old smtpd accepted before the reload)
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
            assert link["queue_id"] == link["postfix_queue_id"] == e2e.sent[kind].queue_id
            assert link["original_message_id"].strip("<>") == msgid(kind).strip("<>")
            assert link["link_method"] in ("queue_id", "message_id")
        last = [link for link in rows if link["is_last_attempt"]]
        assert len(last) == 1
        status, dsn, code, _stage, _reason = EXPECTED[kind]
        assert last[0]["delivery_dsn"] == dsn == last[0]["status"]
        assert last[0]["delivery_reply_code"] == code
        assert last[0]["delivery_status"] == ("deferred" if status == "expired" else status)


# -- suppression -> Postfix refusal (issue 5) ----------------------------------------------------


def test_hard_bounce_is_suppressed_and_exported(e2e: E2E) -> None:
    addresses = {row["address"] for row in e2e.suppressed}
    assert SUPPRESSED in addresses
    # sender-side (a DNSBL listing us) never suppresses the recipient (issue 5)
    assert rcpt("listed") not in addresses
    lines = e2e.access_map.splitlines()
    assert any(re.fullmatch(rf"{re.escape(SUPPRESSED)} REJECT \S.*", line) for line in lines)
    assert not any(line.startswith(rcpt("ok") + " ") for line in lines)


def test_running_postfix_refuses_the_suppressed_address(e2e: E2E) -> None:
    res = e2e.refusal
    assert res is not None
    code, text = res.refused[SUPPRESSED]
    assert code == 554  # postconf(5) access_map_reject_code
    assert text.startswith(f"5.7.1 <{SUPPRESSED}>: Recipient address rejected: suppressed by")
    # the other recipient of the same message was accepted and delivered
    assert STILL_OK not in res.refused and res.queue_id is not None
    assert e2e.still_ok_outcome is not None and e2e.still_ok_outcome["status"] == "sent"
    assert e2e.still_ok_outcome["queue_id"] == res.queue_id
    log = e2e.lab.log_text()
    assert re.search(
        rf"smtpd\[\d+\]: NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
        rf"<{re.escape(SUPPRESSED)}>: Recipient address rejected: suppressed by mtalens",
        log,
    )
    # ... and the daemon stored that reject
    assert [(r["action"], r["stage"], r["reply_code"], r["dsn"]) for r in e2e.rejections] == [
        ("reject", "RCPT", 554, "5.7.1")
    ]


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
