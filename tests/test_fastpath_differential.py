"""Both ingest paths classify the same: a Postfix log generated from every classifier rule
(``pipeline/rules/default.toml``) ingested by the pure-Python path and by the C scanner's fast
path must leave stores equal in every column of every table.

The log is built from the rules' own fields (status prefixes, reply codes, phrases, the SMTP
command, remote hosts, blocklist phrases), with the reply texts Postfix smtp(8) logs: ``host
mx[ip] said: ... (in reply to RCPT TO command)``, ``refused to talk to me``, ``connect to``,
``lost connection with``. Each delivery is logged twice, once in ASCII (the C scanner reads it)
and once with a non-ASCII recipient (the scanner hands it to the Python parser), so both of the
fast correlator's entries are compared. Two checks keep the log honest: every rule and
blocklist gets lines, and the stored deliveries of each rule a log delivery can reach meet that
rule (alone: an earlier rule may decide them, first match wins).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtalens.parsers import fastscan
from mtalens.parsers.bounces.records import SmtpCommand
from mtalens.pipeline import fastpath
from mtalens.pipeline.classify import Classifier, Rule, default_rules_text, parse_rule_file
from mtalens.pipeline.correlate import classify_delivery
from mtalens.pipeline.store import Store
from tests.conftest import need
from tests.test_fastpath import _ingestor

RULES, BLOCKLISTS = parse_rule_file(default_rules_text(), "pipeline/rules/default.toml")
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NEUTRAL = "zz"  # a word no rule or blocklist names

# How Postfix smtp(8)/lmtp(8) name the command a reply answered ("in reply to X command"),
# by the command the classifier reads from it (pipeline/classify.py, _COMMAND_NAMES)
STAGES: dict[SmtpCommand, tuple[str, ...]] = {
    SmtpCommand.HELO: ("EHLO", "HELO", "STARTTLS", "XFORWARD"),
    SmtpCommand.MAIL: ("MAIL FROM",),
    SmtpCommand.RCPT: ("RCPT TO",),
    SmtpCommand.DATA: ("end of DATA", "DATA"),
}
# the other shapes of a failure text: (shape, the command it implies or None)
SHAPES: tuple[tuple[str, SmtpCommand | None], ...] = (
    *((f"said:{stage}", cmd) for cmd, stages in STAGES.items() for stage in stages),
    ("said", None),  # no "(in reply to ...)": the command is read from the text, if at all
    ("refused", SmtpCommand.CONNECT),  # smtp(8): "host X[ip] refused to talk to me: 554 ..."
    ("connect", SmtpCommand.CONNECT),  # smtp(8): "connect to X[ip]:25: Connection refused"
    ("lost", None),  # smtp(8): "lost connection with X[ip] while sending RCPT TO"
)


def _reachable(rule: Rule) -> bool:
    """Whether a Postfix log delivery can meet the rule at all: the log path gives the
    classifier no decoder kind, no diagnostic type, always a dsn, and as action only "failed"
    (a bounce) or none (pipeline/correlate.py, classify_delivery)."""
    if rule.kind or rule.diagnostic_type or rule.without_codes:
        return False
    return not rule.action or "failed" in rule.action


def _shapes(rule: Rule) -> list[tuple[str, SmtpCommand | None]]:
    if rule.command:
        return [s for s in SHAPES if s[1] in rule.command]
    return [s for s in SHAPES if s[1] is None or s[1] not in rule.without_command]


def _statuses(rule: Rule) -> tuple[str, ...]:
    if rule.action:  # only a bounce is a final failure (Action: failed) on the log path
        return ("bounced",)
    return ("bounced", "deferred", "expired")


def _dsn(rule: Rule, i: int, status: str) -> str:
    klass = "4" if status != "bounced" else "5"
    prefix: tuple[str, ...] = (klass,)
    if rule.status:
        prefix = rule.status[i % len(rule.status)]
        if prefix[0] != "x":
            klass = prefix[0]
    banned = {p[0] for p in rule.without_status if len(p) == 1}
    if klass in banned:
        klass = ({"4", "5"} - banned or {"2"}).pop()
    if len(prefix) == 2:  # a subject: the first detail no more specific rule names
        named = {p[2] for r in RULES for p in r.status if len(p) == 3 and p[1] == prefix[1]}
        return f"{klass}.{prefix[1]}.{next(str(d) for d in range(1, 1000) if str(d) not in named)}"
    return ".".join([klass, *prefix[1:], "0", "0"][:3])


def _reply_code(rule: Rule, i: int, dsn: str) -> int:
    if rule.reply_code:
        codes = sorted(rule.reply_code)
        return codes[i % len(codes)]
    return int(dsn[0]) * 100 + 50


def _text(rule: Rule, i: int) -> str | None:
    """A reply text the rule's phrases match, or None if the rule needs one this generator
    cannot write (a regular expression alone)."""
    words = []
    if rule.phrases:
        phrases = sorted(rule.phrases)
        words.append(phrases[i % len(phrases)])
    elif rule.regex:
        return None
    else:
        words.append(NEUTRAL)
    if rule.with_phrases:
        extra = sorted(rule.with_phrases)
        words.append(extra[i % len(extra)])
    return " ".join(words)


def _detail(shape: str, host: str, ip: str, code: int, dsn: str, text: str) -> str:
    if shape.startswith("said"):
        reply = f"host {host}[{ip}] said: {code} {dsn} {text}"
        return reply + (f" (in reply to {shape[5:]} command)" if ":" in shape else "")
    if shape == "refused":
        return f"host {host}[{ip}] refused to talk to me: {code} {dsn} {text}"
    if shape == "connect":
        return f"connect to {host}[{ip}]:25: {text}"
    return f"{code} {dsn} {text}: lost connection with {host}[{ip}] while sending RCPT TO"


class LogWriter:
    """RFC 3339 lines, one second apart, with fresh queue IDs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.at = START
        self.qids = (f"{0x3F2A41C000 + n:X}" for n in itertools.count())

    def add(self, program: str, text: str) -> None:
        self.at += timedelta(seconds=1)
        self.lines.append(f"{self.at.isoformat()} mx1 {program}: {text}")

    def message(self, sender: str) -> str:
        qid = next(self.qids)
        self.add("postfix/smtpd[2001]", f"{qid}: client=out.example.org[198.51.100.7]:41234")
        self.add("postfix/cleanup[2002]", f"{qid}: message-id=<{qid}@out.example.org>")
        self.add("postfix/qmgr[2003]", f"{qid}: from=<{sender}>, size=1234, nrcpt=3 (queue active)")
        return qid

    def delivery(self, qid: str, rcpt: str, relay: str, dsn: str, status: str, detail: str) -> None:
        self.add(
            "postfix/smtp[2004]",
            f"{qid}: to=<{rcpt}>, relay={relay}, delay=1.5, delays=0.1/0.01/0.4/1, "
            f"dsn={dsn}, status={status} ({detail})",
        )

    def bounce(self, qid: str, rcpt: str) -> None:
        """The non-delivery notification and its own delivery (RFC 3464 DSN, null sender)."""
        dsn_qid = next(self.qids)
        self.add("postfix/bounce[2005]", f"{qid}: sender non-delivery notification: {dsn_qid}")
        self.add("postfix/cleanup[2002]", f"{dsn_qid}: message-id=<{dsn_qid}@mx1>")
        self.add("postfix/qmgr[2003]", f"{dsn_qid}: from=<>, size=3000, nrcpt=1 (queue active)")
        self.delivery(dsn_qid, rcpt, "local", "2.0.0", "sent", "delivered to maildir")
        self.add("postfix/qmgr[2003]", f"{dsn_qid}: removed")


def _rule_lines(log: LogWriter, rule: Rule) -> str | None:
    """A message with deliveries whose replies the rule matches: its queue ID; None if none
    could be made."""
    shapes, statuses = _shapes(rule), _statuses(rule)
    hosts = [f"mx.{h}" for h in rule.remote_host] or ["mx.example.net"]
    count = max(len(shapes), len(statuses), len(rule.phrases), len(rule.status), 1)
    made = []
    for i in range(count):
        text = _text(rule, i)
        if text is None:
            return None
        shape, _ = shapes[i % len(shapes)]
        status = statuses[i % len(statuses)]
        dsn = _dsn(rule, i, status)
        host = hosts[i % len(hosts)]
        detail = _detail(shape, host, "192.0.2.25", _reply_code(rule, i, dsn), dsn, text)
        relay = "none" if shape == "connect" else f"{host}[192.0.2.25]:25"
        made.append((relay, dsn, status, detail))
    qid = log.message("sender@out.example.org")
    for n, (relay, dsn, status, detail) in enumerate(made):
        for rcpt in (f"user{n}@dest.example", f"usér{n}@dest.example"):  # C scanner, fallback
            log.delivery(qid, rcpt, relay, dsn, status, detail)
    log.add(
        "postfix/smtpd[2001]",
        f"NOQUEUE: reject: RCPT from unknown[192.0.2.9]: {_reply_code(rule, 0, made[0][1])} "
        f"{made[0][1]} <user@dest.example>: {_text(rule, 0)}; from=<s@out.example.org> "
        "to=<user@dest.example> proto=ESMTP helo=<out.example.org>",
    )
    if "bounced" in statuses:
        log.bounce(qid, "sender@out.example.org")
    log.delivery(qid, "last@dest.example", "mx.example.net[192.0.2.25]:25", "2.0.0", "sent",
                 "250 2.0.0 Ok: queued as 4XyZ")  # fmt: skip
    log.add("postfix/qmgr[2003]", f"{qid}: removed")
    return qid


def _blocklist_lines(log: LogWriter) -> None:
    for bl in BLOCKLISTS:
        qid = log.message("sender@out.example.org")
        for n, phrase in enumerate(sorted(bl.phrases)):
            detail = (f"host mx.example.net[192.0.2.25] said: 554 5.7.1 Service unavailable; "
                      f"client blocked using {phrase} (in reply to RCPT TO command)")  # fmt: skip
            for rcpt in (f"bl{n}@dest.example", f"bl{n}é@dest.example"):
                log.delivery(qid, rcpt, "mx.example.net[192.0.2.25]:25", "5.7.1", "bounced",
                             detail)  # fmt: skip
        log.add("postfix/qmgr[2003]", f"{qid}: removed")


def generated_log() -> tuple[bytes, dict[str, str]]:
    """The log, and the queue ID of each rule's message (the rules it has lines for)."""
    log = LogWriter()
    messages = {rule.id: qid for rule in RULES if (qid := _rule_lines(log, rule)) is not None}
    _blocklist_lines(log)
    return ("\n".join(log.lines) + "\n").encode(), messages


def _every_table(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every base table, all columns, in one deterministic order."""
    con = store.con
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"
    ).fetchall()]  # fmt: skip
    return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in names}


def _first_difference(pure: list[tuple[Any, ...]], fast: list[tuple[Any, ...]]) -> str:
    for a, b in itertools.zip_longest(pure, fast):
        if a != b:
            return f"pure: {a}\n  fast: {b}"
    return ""


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    need(fastscan.AVAILABLE, "mtalens.parsers._pfscan built (`pip install -e .` compiles it)")
    tmp = tmp_path_factory.mktemp("differential")
    log = tmp / "mail.log"
    log.write_bytes(generated_log()[0])
    # both stores start as copies of one file, so even schema_migrations.applied_at agrees
    empty = tmp / "empty.duckdb"
    Store.open(empty).close()
    out: dict[str, Store] = {}
    for name in ("pure", "fast"):
        shutil.copy(empty, tmp / f"{name}.duckdb")
        store = Store.open(tmp / f"{name}.duckdb")
        ing = _ingestor(store, name == "fast", batch_lines=97)
        stats = ing.run([log])
        assert isinstance(ing._fast_path, fastpath.FastIngest) == (name == "fast")
        assert stats.read == stats.stored + stats.ignored + stats.quarantined
        assert stats.quarantined == 0  # every generated line is a line Postfix could write
        out[name] = store
    yield out
    for store in out.values():
        store.close()


def test_every_rule_and_blocklist_has_lines() -> None:
    data, messages = generated_log()
    missing = {rule.id for rule in RULES} - set(messages)
    assert not missing, f"rules the generator writes no line for: {sorted(missing)}"
    text = data.decode().lower()
    assert all(any(p in text for p in bl.phrases) for bl in BLOCKLISTS)


def test_both_paths_of_the_fast_correlator_classify() -> None:
    # the ASCII deliveries are read by the C scanner (OP_DELIVERY), the others by the Python
    # parser (FALLBACK): both feed pipeline/fastpath.py's classification
    data, _ = generated_log()
    sc = fastscan.scan(data, 0, max_lines=10**6, final=True, clock_year=2026, clock_month=0,
                       tz_offset=None, base_offset=0)  # fmt: skip
    assert sc.lines == data.count(b"\n")
    ops = [op[0] for op in sc.ops]
    non_ascii = sum(1 for ln in data.split(b"\n") if not ln.isascii())
    failures = data.count(b", status=") - data.count(b", status=sent")
    assert ops.count(fastscan.OP_FALLBACK) == non_ascii
    assert ops.count(fastscan.OP_DELIVERY) == failures - non_ascii


def test_each_rules_deliveries_meet_it(stores: dict[str, Store]) -> None:
    """The stored fields of a rule's deliveries, classified as the log path does by that rule
    alone, are the rule's (else the generator wrote texts that miss it)."""
    _, messages = generated_log()
    con = stores["pure"].con
    missed = []
    for rule in RULES:
        if rule.id not in messages:  # test_every_rule_and_blocklist_has_lines names it
            continue
        rows = con.execute(
            "SELECT status, dsn, reply_code, diagnostic, remote_host, relay_host, smtp_stage"
            " FROM delivery_log WHERE queue_id = ? AND status <> 'sent'",
            [messages[rule.id]],
        ).fetchall()
        alone = Classifier([rule]).classify
        assert rows, rule.id
        if _reachable(rule) and not any(classify_delivery(alone, *r)[3] == rule.id for r in rows):
            missed.append(rule.id)
    assert not missed, f"no generated delivery meets: {missed}"
    named = {r[0] for r in con.execute("SELECT DISTINCT blocklist FROM delivery_log").fetchall()}
    assert {bl.name for bl in BLOCKLISTS} <= named


def test_every_column_of_every_table_is_the_same(stores: dict[str, Store]) -> None:
    pure, fast = _every_table(stores["pure"]), _every_table(stores["fast"])
    assert sorted(pure) == sorted(fast)
    assert pure["delivery_log"] and pure["message_log"] and pure["rejection_log"]
    differ = {t: _first_difference(pure[t], fast[t]) for t in pure if pure[t] != fast[t]}
    assert not differ, "\n".join(f"{t}:\n  {d}" for t, d in differ.items())
