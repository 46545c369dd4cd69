"""The benchmark's Postfix log generator (bench/gen_postfix_logs.py): deterministic, every line
has a shape Postfix writes, queue IDs and counts are consistent per message, and the --truth
file agrees with the delivery lines.

The regexes here are written independently of the generator, from the Postfix manual pages
(smtpd(8), postscreen(8), cleanup(8), qmgr(8), smtp(8), bounce(8)) and postconf(5)."""

from __future__ import annotations

import io
import json
import re
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.benchload import load_bench
from tests.conftest import need_binary

gen = load_bench("gen_postfix_logs")

# ---- shapes ------------------------------------------------------------------------------------
PREFIX_3164 = (
    r"(?P<ts3164>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d)"
)
PREFIX_3339 = r"(?P<ts3339>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00)"
LINE = re.compile(
    rf"^(?:{PREFIX_3164}|{PREFIX_3339}) mx1 "
    r"(?P<prog>postfix(?:-out)?(?:/submission)?/(?P<daemon>[a-z]+))\[(?P<pid>\d+)\]: (?P<body>.*)$"
)
# short: 5 hex digits of microseconds + inode in hex; long: base-52 time (10), 'z', base-51 inode
SAFE = "0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z"
QID = rf"(?:[0-9A-F]{{5}}[0-9A-F]{{1,8}}|[{SAFE}]{{10}}z[{SAFE[:-1]}y]+)"
SHORT_QID = re.compile(r"^[0-9A-F]{6,13}$")
LONG_QID = re.compile(rf"^[{SAFE}]{{10}}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+$")
IP = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
CLIENT = rf"[\w.-]+\[{IP}\]"
ADDR = r"[^<>\s]*"
PS_CLIENT = rf"\[{IP}\]:\d+"
TLS_PARAMS = r"TLSv1\.[23] with cipher [\w-]+ \(\d+/\d+ bits\)(?: key-exchange \w+)?(?: server-signature [\w-]+ \(\d+ bits\) server-digest \w+)?"

DELIVERY = re.compile(
    rf"^(?P<qid>{QID}): to=<(?P<to>{ADDR})>(?:, orig_to=<(?P<orig>{ADDR})>)?, "
    r"relay=(?P<relay>[^,\s]+)(?:, conn_use=(?P<conn_use>\d+))?, "
    r"delay=(?P<delay>\d+(?:\.\d+)?), "
    r"delays=(?P<a>\d+(?:\.\d+)?)/(?P<b>\d+(?:\.\d+)?)/(?P<c>\d+(?:\.\d+)?)/(?P<d>\d+(?:\.\d+)?), "
    r"dsn=(?P<dsn>[245]\.\d{1,3}\.\d{1,3}), status=(?P<status>sent|deferred|bounced) \((?P<text>.+)\)$"
)
SMTPD_REJECT = re.compile(
    rf"^(?P<qid>NOQUEUE|{QID}): reject: (?P<stage>CONNECT|MAIL|RCPT|DATA|END-OF-MESSAGE) from {CLIENT}: "
    r"(?P<code>[45]\d\d) (?P<dsn>[45]\.\d\.\d{1,3}) .+?; (?:from=<(?P<from>[^>]*)> )?"
    r"(?:to=<(?P<to>[^>]*)> )?proto=E?SMTP(?: helo=<[^>]*>)?$"
)
PS_REJECT = re.compile(
    rf"^NOQUEUE: reject: RCPT from {PS_CLIENT}: 550 5\.7\.1 Service unavailable; client \[{IP}\] "
    rf"blocked using [\w.]+; from=<{ADDR}>, to=<(?P<to>{ADDR})>, proto=ESMTP, helo=<[^>]*>$"
)
CONTENT_ACTION = re.compile(
    rf"^(?P<qid>{QID}): (?:milter-reject: END-OF-MESSAGE from {CLIENT}: 5\.7\.1 [^;]+|"
    rf"(?P<act>reject|hold|discard): header [\w-]+: .+ from {CLIENT}); "
    r"from=<[^>]*> to=<(?P<to>[^>]*)> proto=ESMTP helo=<[^>]*>(?:: .+)?$"
)
QMGR_ACTIVE = re.compile(
    rf"^(?P<qid>{QID}): from=<(?P<from>{ADDR})>, size=(?P<size>\d+), nrcpt=(?P<nrcpt>\d+) \(queue active\)$"
)
QMGR_REMOVED = re.compile(rf"^(?P<qid>{QID}): removed$")
QMGR_EXPIRED = re.compile(rf"^(?P<qid>{QID}): from=<{ADDR}>, status=expired, returned to sender$")
CLIENT_LINE = re.compile(
    rf"^(?P<qid>{QID}): client=(?P<client>{CLIENT})"
    r"(?:, sasl_method=(?:PLAIN|LOGIN), sasl_username=\S+@\S+)?"
    rf"(?:, orig_queue_id=(?P<orig_qid>{QID}), orig_client={CLIENT})?$"
)
PICKUP = re.compile(rf"^(?P<qid>{QID}): uid=\d+ from=<[\w-]+>$")
BOUNCE = re.compile(
    rf"^(?P<qid>{QID}): sender (?P<kind>non-delivery|delay|delivery status) notification: (?P<new>{QID})$"
)
CLEANUP_MID = re.compile(rf"^(?P<qid>{QID}): message-id=<[^<>\s]+@[^<>\s]+>$")
CONNECT = re.compile(rf"^connect from (?P<client>{CLIENT})$")
DISCONNECT = re.compile(
    rf"^disconnect from (?P<client>{CLIENT})(?: [a-z]+=\d+(?:/\d+)?)* commands=\d+(?:/\d+)?$"
)

SHAPES: dict[str, tuple[re.Pattern[str], ...]] = {
    "smtpd": (
        CONNECT,
        DISCONNECT,
        CLIENT_LINE,
        SMTPD_REJECT,
        re.compile(rf"^Anonymous TLS connection established from {CLIENT}: {TLS_PARAMS}$"),
        re.compile(rf"^warning: unknown\[{IP}\]: SASL (?:LOGIN|PLAIN) authentication failed: .+$"),
        re.compile(rf"^warning: hostname [\w.-]+ does not resolve to address {IP}: .+$"),
        re.compile(rf"^warning: non-SMTP command from {CLIENT}: .+$"),
        re.compile(
            rf"^(?:lost connection|timeout) after (?:CONNECT|EHLO|STARTTLS|AUTH|RCPT|DATA \(\d+ bytes\)) from {CLIENT}$"
        ),
    ),
    "postscreen": (
        re.compile(rf"^CONNECT from {PS_CLIENT} to \[{IP}\]:25$"),
        re.compile(rf"^PASS (?:NEW|OLD) {PS_CLIENT}$"),
        re.compile(rf"^DNSBL rank \d+ for {PS_CLIENT}$"),
        re.compile(rf"^PREGREET \d+ after \d+(?:\.\d+)? from {PS_CLIENT}: .+\\r\\n$"),
        re.compile(
            rf"^HANGUP after \d+(?:\.\d+)? from {PS_CLIENT} in tests before SMTP handshake$"
        ),
        PS_REJECT,
        re.compile(rf"^DISCONNECT {PS_CLIENT}$"),
    ),
    "dnsblog": (re.compile(rf"^addr {IP} listed by domain [\w.]+ as 127\.0\.0\.\d+$"),),
    "cleanup": (CLEANUP_MID, CONTENT_ACTION),
    "qmgr": (QMGR_ACTIVE, QMGR_REMOVED, QMGR_EXPIRED),
    "smtp": (
        DELIVERY,
        re.compile(rf"^connect to [\w.-]+\[{IP}\]:25: Connection timed out$"),
        re.compile(
            rf"^(?:Trusted|Untrusted|Verified) TLS connection established to [\w.-]+\[{IP}\]:25: {TLS_PARAMS}$"
        ),
        re.compile(r"^warning: TLS library problem: .+$"),
    ),
    "lmtp": (DELIVERY,),
    "local": (DELIVERY,),
    "virtual": (DELIVERY,),
    "pipe": (DELIVERY,),
    "error": (DELIVERY,),
    "bounce": (BOUNCE,),
    "pickup": (PICKUP,),
    "anvil": (
        re.compile(
            r"^statistics: max (?:connection rate \d+/60s for \(smtp:[\d.]+\)|connection count \d+ for \(smtp:[\d.]+\)|cache size \d+) at \w{3} [ \d]\d \d\d:\d\d:\d\d$"
        ),
    ),
    "scache": (re.compile(r"^statistics: .+$"),),
}

# the generator's small-file settings: short queue lifetime so retries, delay warnings and
# expiries fit in a few thousand lines; quick ID reuse so reuse shows up too
SMALL = gen.GenConfig(
    lines=30_000,
    seed=7,
    sessions_per_second=3.0,
    queue_lifetime=300.0,
    delay_warning=120.0,
    min_backoff=30.0,
    max_backoff=120.0,
    queue_run_delay=30.0,
    noise_interval=120.0,
    reuse_after=30.0,
    reuse_share=0.05,
)


def _text(cfg: Any, truth: bool = False) -> tuple[str, list[dict[str, Any]]]:
    out = io.BytesIO()
    tr = io.StringIO() if truth else None
    stats = gen.write_log(cfg, out, tr)
    data = out.getvalue().decode()
    assert stats.lines == cfg.lines == data.count("\n")
    rows = [json.loads(x) for x in tr.getvalue().splitlines()] if tr is not None else []
    return data, rows


@pytest.fixture(scope="module")
def small() -> tuple[list[re.Match[str]], list[dict[str, Any]]]:
    data, rows = _text(SMALL, truth=True)
    matches = []
    for line in data.splitlines():
        m = LINE.match(line)
        assert m, f"bad prefix: {line!r}"
        matches.append(m)
    return matches, rows


def _ts(m: re.Match[str]) -> datetime:
    if m["ts3339"]:
        return datetime.fromisoformat(m["ts3339"])
    return datetime.strptime(f"2026 {m['ts3164']}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)


def _seconds(x: str) -> float:
    return float(x)


# ---- tests -------------------------------------------------------------------------------------
def test_deterministic_for_a_seed() -> None:
    cfg = gen.GenConfig(lines=3000, seed=11)
    a, ta = _text(cfg, truth=True)
    b, tb = _text(cfg, truth=True)
    assert a == b and ta == tb
    c, _ = _text(replace(cfg, seed=12))
    assert c != a


def test_styles() -> None:
    for style, want in (
        (gen.Style.RFC3164, {"ts3164"}),
        (gen.Style.RFC3339, {"ts3339"}),
        (gen.Style.MIXED, {"ts3164", "ts3339"}),
    ):
        data, _ = _text(gen.GenConfig(lines=2000, seed=3, style=style))
        seen = set()
        for line in data.splitlines():
            m = LINE.match(line)
            assert m, line
            seen.add("ts3164" if m["ts3164"] else "ts3339")
        assert seen == want, style


def test_every_line_has_a_known_shape(small: tuple[list[re.Match[str]], Any]) -> None:
    matches, _ = small
    per_shape: Counter[str] = Counter()
    for m in matches:
        shapes = SHAPES.get(m["daemon"])
        assert shapes is not None, f"unexpected daemon: {m.group(0)!r}"
        hit = next((i for i, rx in enumerate(shapes) if rx.match(m["body"])), None)
        assert hit is not None, f"unknown shape: {m.group(0)!r}"
        per_shape[f"{m['daemon']}:{hit}"] += 1
    # every shape the generator claims to write occurs in a 30k-line file
    missing = [
        f"{d}:{i}"
        for d, rxs in SHAPES.items()
        for i in range(len(rxs))
        if not per_shape[f"{d}:{i}"]
    ]
    assert not missing, missing


def test_variety(small: tuple[list[re.Match[str]], Any]) -> None:
    matches, _ = small
    bodies = [m["body"] for m in matches]
    progs = Counter(m["prog"] for m in matches)
    assert progs["postfix-out/qmgr"] > 0 and progs["postfix/submission/smtpd"] > 0
    assert (
        0.005 < sum(v for k, v in progs.items() if k.startswith("postfix-out")) / len(matches) < 0.1
    )
    qids = {m["qid"] for b in bodies if (m := QMGR_ACTIVE.match(b))}
    assert any(SHORT_QID.match(q) for q in qids) and any(LONG_QID.match(q) for q in qids)
    assert all(SHORT_QID.match(q) or LONG_QID.match(q) for q in qids)
    stages = {m["stage"] for b in bodies if (m := SMTPD_REJECT.match(b))}
    assert stages == {"CONNECT", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE"}
    joined = "\n".join(bodies)
    for needle in (
        "sasl_method=PLAIN, sasl_username=",
        ", orig_queue_id=",
        ", orig_to=<",
        ", conn_use=",
        "Connection refused)",
        "Connection timed out)",
        "type=MX: Host not found, try again)",
        "said: 550 5.1.1 ",
        "(in reply to RCPT TO command))",
        "milter-reject: END-OF-MESSAGE",
        ": hold: header ",
        ": discard: header ",
        "status=expired, returned to sender",
        "sender non-delivery notification: ",
        "sender delay notification: ",
        "sender delivery status notification: ",
    ):
        assert needle in joined, needle


def test_time_order_and_delays(small: tuple[list[re.Match[str]], Any]) -> None:
    matches, _ = small
    last = None
    for m in matches:
        ts = _ts(m)
        # RFC 3164 stamps have whole seconds: compare at that resolution
        ts = ts.replace(microsecond=0)
        assert last is None or ts >= last, m.group(0)
        last = ts
        d = DELIVERY.match(m["body"])
        if not d:
            continue
        parts = [_seconds(d[k]) for k in "abcd"]
        total = _seconds(d["delay"])
        # format_tv rounds each value to 2 significant digits (integers from 10 s up)
        tol = 0.03 + sum(0.5 if v >= 10 else 0.05 if v >= 1 else 0.005 for v in [*parts, total])
        assert abs(sum(parts) - total) <= tol, m.group(0)


def test_queue_ids_consistent_per_message(small: tuple[list[re.Match[str]], Any]) -> None:
    matches, _ = small
    live: dict[str, dict[str, Any]] = {}
    finished: list[dict[str, Any]] = []
    reused = 0
    seen_ever: set[str] = set()
    for m in matches:
        body = m["body"]
        opened = None
        if (c := CLIENT_LINE.match(body)) or (c := PICKUP.match(body)):
            opened = c["qid"]
        elif b := BOUNCE.match(body):
            assert b["qid"] in live, body
            opened = b["new"]
        if opened:
            assert opened not in live, f"queue ID reused while in the queue: {body}"
            if opened in seen_ever:
                reused += 1
            seen_ever.add(opened)
            live[opened] = {"nrcpt": set(), "rcpts": set(), "instance": m["prog"].split("/")[0]}
            continue
        qid = None
        for rx in (CLEANUP_MID, QMGR_ACTIVE, QMGR_REMOVED, QMGR_EXPIRED, DELIVERY, CONTENT_ACTION):
            if x := rx.match(body):
                qid = x["qid"]
                break
        else:
            if (x := SMTPD_REJECT.match(body)) and x["qid"] != "NOQUEUE":
                qid = x["qid"]
        if qid is None:
            continue
        msg = live.get(qid)
        assert msg is not None, f"line for a queue ID not in the queue: {m.group(0)}"
        assert msg["instance"] == m["prog"].split("/")[0], m.group(0)
        if a := QMGR_ACTIVE.match(body):
            msg["nrcpt"].add(int(a["nrcpt"]))
        elif d := DELIVERY.match(body):
            msg["rcpts"].add(d["to"])
        elif QMGR_REMOVED.match(body):
            finished.append(live.pop(qid))
        elif act := CONTENT_ACTION.match(body):
            if act["act"] != "hold":
                live.pop(qid)  # rejected or discarded: the queue file is gone
        elif (r := SMTPD_REJECT.match(body)) and r["stage"] == "END-OF-MESSAGE":
            live.pop(qid)  # a RCPT reject after an accepted recipient leaves the message alone
    assert len(finished) > 1000
    for msg in finished:
        assert len(msg["nrcpt"]) == 1, msg  # the same nrcpt on every activation
        assert msg["nrcpt"] == {len(msg["rcpts"])}, msg
    assert reused > 0


def test_smtpd_sessions_do_not_overlap_on_one_pid(
    small: tuple[list[re.Match[str]], Any],
) -> None:
    matches, _ = small
    open_session: dict[str, str] = {}
    for m in matches:
        if m["daemon"] != "smtpd":
            continue
        key = f"{m['prog']}[{m['pid']}]"
        if c := CONNECT.match(m["body"]):
            assert key not in open_session, m.group(0)
            open_session[key] = c["client"]
        elif d := DISCONNECT.match(m["body"]):
            assert open_session.pop(key) == d["client"], m.group(0)
        else:
            assert key in open_session, f"smtpd line outside a session: {m.group(0)}"


def test_truth_agrees_with_the_log(small: tuple[list[re.Match[str]], list[dict[str, Any]]]) -> None:
    matches, rows = small
    last: dict[tuple[str, str], tuple[str, str]] = {}
    noqueue = 0
    expired_qids: set[str] = set()
    for m in matches:
        body = m["body"]
        if d := DELIVERY.match(body):
            last[(d["qid"], d["to"])] = (d["status"], d["dsn"])
        elif (r := SMTPD_REJECT.match(body)) and r["to"]:
            if r["qid"] == "NOQUEUE" or r["stage"] == "RCPT":
                noqueue += r["qid"] == "NOQUEUE"
                last[(r["qid"], r["to"])] = ("rejected", r["dsn"])
        elif r := PS_REJECT.match(body):
            noqueue += 1
            last[("NOQUEUE", r["to"])] = ("rejected", "5.7.1")
        elif e := QMGR_EXPIRED.match(body):
            expired_qids.add(e["qid"])
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        by_key[(row["queue_id"], row["recipient"])] = row
    assert sum(1 for r in rows if r["queue_id"] == "NOQUEUE") == noqueue
    checked = 0
    for (qid, rcpt), (status, dsn) in last.items():
        if qid == "NOQUEUE":
            continue
        row = by_key[(qid, rcpt)]
        if row["status"] == "expired":
            assert qid in expired_qids and status == "deferred" and row["dsn"] == dsn
        else:
            assert (row["status"], row["dsn"]) == (status, dsn), (qid, rcpt)
        checked += 1
    assert checked > 1000
    statuses = Counter(r["status"] for r in rows)
    assert {"sent", "bounced", "deferred", "expired", "rejected"} <= set(statuses)
    # every truth row with a queue ID points at a recipient seen in the log
    for row in rows:
        if row["queue_id"] != "NOQUEUE" and row["status"] in {"sent", "bounced", "deferred"}:
            assert (row["queue_id"], row["recipient"]) in last


def test_cli_writes_log_and_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "x.log", tmp_path / "x.jsonl"
    rc = gen.main(
        [
            "--lines",
            "1500",
            "--out",
            str(out),
            "--seed",
            "5",
            "--style",
            "rfc3339",
            "--truth",
            str(truth),
        ]
    )
    assert rc == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 1500 and all(LINE.match(x) and x[:4] == "2026" for x in lines)
    recs = [json.loads(x) for x in truth.read_text().splitlines()]
    assert recs and {"queue_id", "recipient", "status", "dsn"} <= set(recs[0])


def test_delay_format_matches_postfix_rounding() -> None:
    # postconf(5) delay_logging_resolution_limit=2: 2 significant digits, at most 2 decimals
    cases = {
        0.0: "0",
        0.004: "0",
        0.006: "0.01",
        0.1: "0.1",
        0.123: "0.12",
        1.26: "1.3",
        9.0: "9",
        12.4: "12",
        3600.2: "3600",
    }
    for value, want in cases.items():
        assert gen._fmt_delay(value) == want, value


def test_queue_id_encodings() -> None:
    sim = gen._Sim(gen.GenConfig(lines=1), False)
    t = datetime(2026, 3, 2, 6, 0, 0, 123456, tzinfo=UTC).timestamp()
    short = sim.queue_id(t, t + 10, False)
    assert SHORT_QID.match(short) and int(short[:5], 16) == 123456
    long = sim.queue_id(t, t + 10, True)
    assert LONG_QID.match(long)
    alphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
    sec = 0
    for ch in long[:6]:
        sec = sec * 52 + alphabet.index(ch)
    assert sec == int(t)


def test_default_settings_line_size() -> None:
    data, _ = _text(gen.GenConfig(lines=20_000, seed=1))
    per_line = len(data.encode()) / 20_000
    assert 140 < per_line < 220, per_line
    assert "postfix/postscreen" in data and "status=sent" in data


def test_bench_ingest_end_to_end_on_a_tiny_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_binary("pflogsumm")
    mtalens = Path(sys.executable).parent / "mtalens"
    assert mtalens.exists(), "the mtalens console script is installed in this venv"
    bench = load_bench("bench_ingest")
    rc = bench.main(["--lines", "3000", "--seed", "2", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    record = json.loads(out.strip().splitlines()[-1])
    assert [r["name"] for r in record["runs"]] == ["cat", "pflogsumm", "mtalens ingest"]
    assert all(r["rc"] == 0 and r["seconds"] > 0 for r in record["runs"])
    assert record["ratio_mtalens_to_pflogsumm"] > 0
    summary = record["mtalens"]
    assert summary["lines_read"] == 3000
    assert summary["lines_read"] == (
        summary["lines_stored"] + summary["lines_ignored"] + summary["lines_quarantined"]
    )
    assert record["pflogsumm"]["received"] > 0 and record["pflogsumm"]["delivered"] > 0
    # one cached log, named by its parameters
    logs = list(tmp_path.glob("postfix-3000-s2-mixed-*.log"))
    assert len(logs) == 1
    assert not list(tmp_path.glob("mtalens-bench-*"))  # work dir removed without --keep


def test_pflogsumm_totals_units() -> None:
    bench = load_bench("bench_ingest")
    report = "messages\n\n   4262   received\n    870k  delivered\n      0   forwarded\n      1m  rejected\n"
    assert bench.pflogsumm_totals(report) == {
        "received": 4262,
        "delivered": 870 * 1024,
        "forwarded": 0,
        "rejected": 1024 * 1024,
    }
