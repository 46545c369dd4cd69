"""End to end: a real Exim 4.96 writes its main log and DSNs while a real `mtalens watch` tails both.

The lab (tests/lab/exim_lab.py) runs Debian's exim4-daemon-light, unpacked by
``.ci/unpack-exim.sh`` under ``$MTALENS_EXIM_ROOT``, as a daemon on 127.0.0.1 in a private mount
namespace, and routes example.com to a fake MX (tests/lab/fake_mx.py) that answers by recipient
local part: 250, 550 5.1.1, 552 5.2.2, 554 5.7.1 "blocked using" a DNSBL, 450 and 421 deferrals
that Exim gives up after its retry rule's cutoff ("retry timeout exceeded"), 552 5.3.4 after the
message data, a greylisting 450 that is accepted on the retry, and a slow 250 after DATA. Exim's
own bounces (RFC 3464 reports, ``<= <> R=<id>`` in the log) are delivered by an appendfile
transport with ``maildir_format`` into the sender's Maildir. `mtalens watch` runs as a separate
process on the main log and that Maildir; the test reads the store through `mtalens query
--format json` while the daemon runs and checks, per recipient, the final status, enhanced status
code, reply code, SMTP stage, reason and delays (the ``QT=``/``DT=`` of Exim's lines, and the
times between the lines), the refused RCPT in `rejections`, that every DSN became `bounces` rows
linked (`bounce_deliveries`) to the attempts of the message it reports, and that every bounce
Exim logged is linked to the message it is about. Finally SIGTERM stops the daemon cleanly.

Under CI (``CI=true``) a missing Exim fails the test (``need``). About 40 seconds: the retry rule
``F,20s,5s`` gives the deferred recipients up after 20 s.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mtalens.parsers.eximlog import parse_duration
from tests.conftest import need, need_binary
from tests.lab.e2e import CLI, CLI_ENV, msgid, query, rcpt
from tests.lab.exim_lab import EximLab, exim_binary
from tests.lab.fake_mx import FakeMX
from tests.lab.postfix_lab import SendResult

pytestmark = [pytest.mark.slow, pytest.mark.exim]

SENDER = "sender@example.net"
RETRY_CUTOFF = 20  # seconds: the lab's retry rule F,20s,5s
RETRY_INTERVAL = 5
SLOW_DATA = 3.0  # seconds the fake MX waits before answering a slow* message's data
GREYLIST = 2.0  # seconds the fake MX greylists a grey* recipient

# local part -> what recipient_outcomes must say: (status, dsn, reply_code, smtp_stage, reason).
# The replies are the fake MX's; the reasons pipeline/classify.py's; a recipient Exim gave up is
# "expired" with the codes of its last deferral (pipeline/sql/0019_exim_expiry.sql).
EXPECTED: dict[str, tuple[str, str, int, str | None, str]] = {
    "ok": ("sent", "2.0.0", 250, None, "delivered"),
    "unknown": ("bounced", "5.1.1", 550, "RCPT TO", "userunknown"),
    "full": ("bounced", "5.2.2", 552, "RCPT TO", "mailboxfull"),
    "listed": ("bounced", "5.7.1", 554, "RCPT TO", "blocked"),
    "bigdata": ("bounced", "5.3.4", 552, "end of DATA", "mesgtoobig"),
    "defer": ("expired", "4.2.0", 450, "RCPT TO", "expired"),
    "busy": ("expired", "4.7.0", 421, "RCPT TO", "expired"),
    "grey": ("sent", "2.0.0", 250, None, "delivered"),
    "slow": ("sent", "2.0.0", 250, None, "delivered"),
}
EXPIRING = ("defer", "busy")
FAILED = tuple(k for k, v in EXPECTED.items() if v[0] != "sent")
# the recipient the lab's ACL refuses at RCPT, and the one accepted beside it
REFUSED = "reject1@example.net"
BESIDE = "ok2@example.com"


Q_OUTCOMES = (
    "SELECT recipient, queue_id, message_key, status, dsn, reply_code, smtp_stage, reason,"
    " remote_host, delay, delay_before_queue, delay_in_queue, delay_connect, delay_transmit,"
    " logged_at, last_attempt_status, mta FROM recipient_outcomes"
    " WHERE recipient_domain = 'example.com'"
)
# attempts that met the remote server (a reply); Exim's queue runs also log "retry time not
# reached" deferrals that tried nothing, and its expiry line
Q_ATTEMPTS = (
    "SELECT recipient, count(*) FILTER (WHERE reply_code IS NOT NULL) AS tried,"
    " count(*) FILTER (WHERE status = 'expired') AS expiries FROM deliveries"
    " WHERE recipient_domain = 'example.com' GROUP BY recipient"
)
Q_LINKS = (
    "SELECT recipient, status, reply_code, reason, link_method, message_key, queue_id,"
    " mta_queue_id, original_message_id, delivery_status, delivery_dsn, delivery_reply_code,"
    " is_last_attempt, source FROM bounce_deliveries"
)
Q_REPORTS = "SELECT source, kind, reporting_mta, original_message_id FROM bounce_reports"
Q_NOTIFICATIONS = (
    "SELECT m.queue_id, m.notification_kind, m.origin, o.queue_id AS about_queue_id"
    " FROM messages m JOIN messages o ON o.message_key = m.bounce_of_key"
)
Q_BOUNCE_DELIVERIES = (
    "SELECT queue_id, recipient, status, relay FROM recipient_outcomes"
    " WHERE recipient = 'sender@example.net'"
)
Q_REJECTIONS = (
    "SELECT action, stage, client_ip, sender, recipient, reason, mta FROM rejections"
    f" WHERE recipient = '{REFUSED}'"
)


@dataclass(slots=True)
class Snapshot:
    """What the store showed (through `mtalens query`) once every outcome was final."""

    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, dict[str, int]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    bounce_deliveries: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    accounting: dict[str, int] = field(default_factory=dict)
    quarantined: int = -1


@dataclass(slots=True)
class E2E:
    lab_log: str
    dsns: dict[str, bytes]  # Maildir name (cur/, without ":2,") -> the message
    sent: dict[str, SendResult]
    refusal: SendResult
    snap: Snapshot
    moved_before_commit: list[str]
    waited_s: float
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
    acc = query(db, "SELECT outcome, sum(lines) AS n FROM line_accounting GROUP BY 1")
    return Snapshot(
        outcomes={r["recipient"]: r for r in query(db, Q_OUTCOMES)},
        attempts={r["recipient"]: r for r in query(db, Q_ATTEMPTS)},
        links=query(db, Q_LINKS),
        reports=query(db, Q_REPORTS),
        notifications=query(db, Q_NOTIFICATIONS),
        bounce_deliveries=query(db, Q_BOUNCE_DELIVERIES),
        rejections=query(db, Q_REJECTIONS),
        accounting={r["outcome"]: int(r["n"]) for r in acc},
        quarantined=int(query(db, "SELECT count(*) AS n FROM quarantine")[0]["n"]),
    )


def start_watch(db: Path, log: Path, maildir: Path, err: Path) -> subprocess.Popen[bytes]:
    # No --timezone: the daemon reads the log in the local zone, the one Exim writes it in.
    # The Maildir does not exist before Exim's first bounce: the daemon waits for it.
    with open(err, "ab") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--maildir", str(maildir),
             "--poll-interval", "0.5", "--commit-interval", "0.5", "--drain-grace", "1"],
            stdout=subprocess.DEVNULL, stderr=fh, env=CLI_ENV,
        )  # fmt: skip


def send_kind(lab: EximLab, kind: str) -> SendResult:
    return lab.send(
        SENDER, [rcpt(kind)], f"e2e {kind}", f"kind {kind}\n", {"Message-ID": msgid(kind)}
    )


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    need(exim_binary().is_file(), f"Exim unpacked at {exim_binary()} (.ci/unpack-exim.sh)")
    need_binary("unshare")
    need_binary("ldconfig")
    need(os.geteuid() == 0, "root (the Exim lab runs in a private mount namespace)")
    tmp = tmp_path_factory.mktemp("e2e-exim")
    db, err = tmp / "watch.duckdb", tmp / "watch.err"
    with (
        FakeMX(greylist_delay=GREYLIST, slow_data_seconds=SLOW_DATA) as mx,
        EximLab(mx_port=mx.port, retry_rule=f"F,{RETRY_CUTOFF}s,{RETRY_INTERVAL}s") as lab,
    ):
        maildir = lab.maildir_path
        proc = start_watch(db, lab.log_path, maildir, err)
        try:
            # the daemon has read Exim's start-up lines once it has committed a checkpoint
            wait_until(
                lambda: None if db.exists() and query(db, "SELECT * FROM checkpoints") else "no",
                30, "the daemon's first commit",
            )  # fmt: skip
            sent = {kind: send_kind(lab, kind) for kind in EXPECTED}
            assert all(r.queue_id and not r.refused for r in sent.values()), sent
            refusal = lab.send(SENDER, [REFUSED, BESIDE], "e2e refused", "refused\n")
            moved_before_commit: list[str] = []

            def all_final() -> str | None:
                assert proc.poll() is None, err.read_text()
                # the daemon moves a message to cur/ only after its rows are committed, so
                # whatever is in cur/ *before* this query must already be in the store
                cur = maildir_names(maildir, "cur")
                stored = {Path(r["source"]).name for r in query(db, Q_REPORTS)}
                moved_before_commit.extend(n for n in cur if n.removesuffix(":2,") not in stored)
                final = {
                    r["recipient"]
                    for r in query(db, Q_OUTCOMES)
                    if r["status"] in ("sent", "bounced", "expired")
                }
                lacking = sorted({*map(rcpt, EXPECTED), BESIDE} - final)
                if lacking:
                    return f"no final outcome for {lacking}"
                new = maildir_names(maildir, "new")
                if new or len(cur) != len(FAILED):
                    return f"Maildir: {len(new)} in new/, {len(cur)} in cur/"
                if len(stored) != len(cur):
                    return f"{len(stored)} bounce reports for {len(cur)} DSNs"
                if len(query(db, Q_NOTIFICATIONS)) != len(FAILED):
                    return "not every bounce arrival linked yet"
                delivered = [r for r in query(db, Q_BOUNCE_DELIVERIES) if r["status"] == "sent"]
                if len(delivered) != len(FAILED):
                    return f"{len(delivered)} bounces delivered to {SENDER} in the store"
                if lab.queue_ids():
                    return f"still queued: {lab.queue_ids()}"
                return None

            waited = wait_until(all_final, 120, "every outcome and DSN in the store")
            snap = snapshot(db)
            dsns = {n.removesuffix(":2,"): (maildir / "cur" / n).read_bytes()
                    for n in maildir_names(maildir, "cur")}  # fmt: skip
            # with Exim stopped the log is complete: the daemon reads it to the end
            lab.stop_daemon()
            lines = len(lab.log_text().splitlines())

            def all_read() -> str | None:
                acc = query(db, "SELECT sum(lines) AS n FROM line_accounting")[0]["n"]
                return None if acc == lines else f"{acc} of {lines} lines accounted for"

            wait_until(all_read, 30, "the whole log in the store")
            snap.accounting = {
                r["outcome"]: int(r["n"])
                for r in query(
                    db, "SELECT outcome, sum(lines) AS n FROM line_accounting GROUP BY 1"
                )
            }
            run = E2E(lab_log=lab.log_text(), dsns=dsns, sent=sent, refusal=refusal, snap=snap,
                      moved_before_commit=moved_before_commit, waited_s=waited)  # fmt: skip
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


# -- what Exim logged, read here without mtalens ----------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+) (<=|=>|->|\*\*|==) (\S+)(.*)$")


@dataclass(frozen=True, slots=True)
class Line:
    at: datetime
    flag: str
    address: str
    rest: str


def lines_of(log: str, queue_id: str) -> list[Line]:
    out = []
    for text in log.splitlines():
        m = _LINE.match(text)
        if m and m[2] == queue_id:
            # "** a@b: retry timeout exceeded": the address ends with the colon
            out.append(Line(datetime.fromisoformat(m[1]), m[3], m[4].removesuffix(":"), m[5]))
    return out


def field_of(line: Line, key: str) -> float | None:
    m = re.search(rf" {key}=(\S+?)(?::|$| )", line.rest)
    return parse_duration(m[1]) if m else None


# -- the log side -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_final_status_codes_stage_and_reason(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    got = (row["status"], row["dsn"], row["reply_code"], row["smtp_stage"], row["reason"])
    assert got == EXPECTED[kind]
    assert row["queue_id"] == e2e.sent[kind].queue_id
    assert row["mta"] == "exim"
    # the reply came from the fake MX, named by its address (host_lookup is off)
    assert row["remote_host"] == (None if row["status"] == "sent" else "127.0.0.1")


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_delays_follow_the_log(e2e: E2E, kind: str) -> None:
    row = e2e.snap.outcomes[rcpt(kind)]
    lines = lines_of(e2e.lab_log, e2e.sent[kind].queue_id or "")
    arrival = next(x for x in lines if x.flag == "<=")
    final = [x for x in lines if x.flag != "<=" and x.address == rcpt(kind)][-1]
    # the delay is Exim's QT= where it logs one (deliveries), else the message's age when the
    # line was written (** lines): both within a second of the time between the two lines
    qt = field_of(final, "QT")
    age = (final.at - arrival.at).total_seconds()
    assert row["delay"] is not None
    if qt is not None:
        assert row["delay"] == qt
    assert abs(row["delay"] - age) <= 1.0, (row, final)
    # DT= is the delivery attempt (connection and transmission: Exim does not split them)
    dt = field_of(final, "DT")
    assert row["delay_transmit"] == dt
    if dt is not None:
        assert row["delay_in_queue"] == pytest.approx(row["delay"] - dt)
    assert row["delay_before_queue"] is None and row["delay_connect"] is None


def test_delays_are_what_the_fake_mx_and_the_retry_rule_made(e2e: E2E) -> None:
    out = e2e.snap.outcomes
    # the slow receiver answered the data after SLOW_DATA seconds: the attempt took that long
    assert out[rcpt("slow")]["delay_transmit"] >= SLOW_DATA
    assert out[rcpt("slow")]["delay"] >= SLOW_DATA
    # greylisted once, accepted at the first retry RETRY_INTERVAL seconds later: it waited
    # (Exim keeps retry times, QT= and DT= in whole seconds: up to one second less is seen)
    assert out[rcpt("grey")]["delay_in_queue"] >= RETRY_INTERVAL - 1
    for kind in EXPIRING:  # given up after the cutoff, not before
        assert out[rcpt(kind)]["delay"] >= RETRY_CUTOFF
    for kind in ("ok", "unknown", "full", "listed", "bigdata"):
        assert out[rcpt(kind)]["delay"] < RETRY_INTERVAL


def test_attempts(e2e: E2E) -> None:
    tried = {k: e2e.snap.attempts[rcpt(k)]["tried"] for k in EXPECTED}
    once = {k: n for k, n in tried.items() if k not in (*EXPIRING, "grey")}
    assert once == dict.fromkeys(once, 1)
    assert tried["grey"] == 2  # 450 4.7.1 greylisted, then 250
    for kind in EXPIRING:  # retried every RETRY_INTERVAL until the cutoff, then given up once
        assert tried[kind] >= RETRY_CUTOFF // RETRY_INTERVAL
        assert e2e.snap.attempts[rcpt(kind)]["expiries"] == 1
        assert e2e.snap.outcomes[rcpt(kind)]["last_attempt_status"] == "expired"


def test_refused_rcpt_is_a_rejection_and_the_other_recipient_was_sent(e2e: E2E) -> None:
    code, text = e2e.refusal.refused[REFUSED]
    assert code == 550 and text.startswith("5.1.1 lab policy")
    assert [(r["action"], r["stage"], r["client_ip"], r["sender"], r["mta"])
            for r in e2e.snap.rejections] == [("reject", "RCPT", "127.0.0.1", SENDER, "exim")]  # fmt: skip
    assert e2e.snap.rejections[0]["reason"] == text
    beside = e2e.snap.outcomes[BESIDE]
    assert (beside["status"], beside["queue_id"]) == ("sent", e2e.refusal.queue_id)


def test_exim_bounces_are_linked_to_their_messages_in_the_log(e2e: E2E) -> None:
    # "<= <> R=<id>": every bounce Exim made names the message it is about
    got = sorted((n["about_queue_id"], n["notification_kind"], n["origin"])
                 for n in e2e.snap.notifications)  # fmt: skip
    want = sorted((e2e.sent[k].queue_id, "non-delivery", "bounce") for k in FAILED)
    assert got == want
    # ... and each was delivered to the sender's Maildir by the maildir transport
    bounce_ids = {n["queue_id"] for n in e2e.snap.notifications}
    delivered = {r["queue_id"] for r in e2e.snap.bounce_deliveries if r["status"] == "sent"}
    assert delivered == bounce_ids
    assert {r["relay"] for r in e2e.snap.bounce_deliveries} == {"maildir"}


# -- the Maildir side ---------------------------------------------------------------------------


def test_every_dsn_is_a_stored_report_and_was_moved_to_cur(e2e: E2E) -> None:
    assert len(e2e.dsns) == len(FAILED)
    stored = sorted(Path(r["source"]).name for r in e2e.snap.reports)
    assert stored == sorted(e2e.dsns)
    assert {r["kind"] for r in e2e.snap.reports} == {"bounce"}
    assert {r["reporting_mta"] for r in e2e.snap.reports} == {"mx1.example.net"}
    assert e2e.moved_before_commit == []


def test_each_dsn_is_the_bounce_the_log_shows(e2e: E2E) -> None:
    # Exim's bounce has Message-Id <E<its id>@primary_hostname>: the DSNs in the Maildir are the
    # bounce messages whose arrival the log linked to the original
    ids = set()
    for raw in e2e.dsns.values():
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        ids.add(str(msg["Message-Id"]).strip("<>").split("@")[0].removeprefix("E"))
    assert ids == {n["queue_id"] for n in e2e.snap.notifications}


def test_each_bounce_is_linked_to_its_delivery(e2e: E2E) -> None:
    links = e2e.snap.links
    assert sorted(link["recipient"] for link in links if link["is_last_attempt"]) == sorted(
        map(rcpt, FAILED)
    )
    for kind in FAILED:
        rows = [link for link in links if link["recipient"] == rcpt(kind)]
        outcome = e2e.snap.outcomes[rcpt(kind)]
        status, dsn, code, _stage, reason = EXPECTED[kind]
        # one row per logged line for the recipient, all of the one message the DSN is about
        for link in rows:
            assert link["message_key"] == outcome["message_key"], link
            assert link["queue_id"] == e2e.sent[kind].queue_id
            assert link["original_message_id"] == msgid(kind)
            # Exim's DSN has no queue id field, but its returned message has the Received:
            # Exim added, "id <its message id>": that links it (parsers/bounces/received.py)
            assert link["link_method"] == "queue_id"
            assert link["mta_queue_id"] == e2e.sent[kind].queue_id
        last = [link for link in rows if link["is_last_attempt"]]
        assert len(last) == 1, rows
        # the DSN's own word: Diagnostic-Code has the remote reply; an address given up is
        # "Status: 5.0.0" with the last deferral's reply and "retry timeout exceeded"
        assert last[0]["reply_code"] == str(code)
        assert last[0]["reason"] == reason
        if status == "expired":
            assert last[0]["status"] == "5.0.0"
            assert last[0]["delivery_status"] == "expired"
            assert last[0]["delivery_dsn"] is None  # the "** a@b: retry timeout exceeded" line
            deferred = [link for link in rows if link["delivery_reply_code"] == code]
            assert deferred and {d["delivery_dsn"] for d in deferred} == {dsn}
        else:
            assert last[0]["status"] == dsn == last[0]["delivery_dsn"]
            assert last[0]["delivery_status"] == "bounced"
            assert last[0]["delivery_reply_code"] == code


# -- the daemon itself --------------------------------------------------------------------------


def test_watch_stops_cleanly_on_sigterm(e2e: E2E) -> None:
    assert e2e.exit_code == 0
    msgs = [r["msg"] for r in e2e.watch_log]
    assert msgs and msgs[0] == "watch started" and msgs[-1] == "watch stopped"
    assert [r for r in e2e.watch_log if r["level"] in ("error", "critical")] == []


def test_store_is_balanced_and_nothing_quarantined(e2e: E2E) -> None:
    by = e2e.snap.accounting
    assert by.get("stored", 0) > 0 and by.get("quarantined", 0) == 0, by
    assert e2e.snap.quarantined == 0
    # every line of the main log was read and accounted for
    assert sum(by.values()) == len(e2e.lab_log.splitlines())
