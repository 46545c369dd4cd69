"""Benchmark: sending-platform events from files, next to peers timed in the same run over the
same files.

    .venv/bin/python bench/bench_events.py                 # 200,000 events (issue 13 target: >= 50,000/s)
    .venv/bin/python bench/bench_events.py --events 50000

The corpus is generated per run under --dir: events in each provider's documented shape (the
shapes of tests/test_events.py), mixed 30% SendGrid, 20% Amazon SES (SNS envelopes), 15%
Mailgun, 10% each Postmark and SparkPost, 10% Mandrill, 5% Postal, as JSON lines, with unique
event ids and recipients and a spread of replies (unknown user, mailbox full, blocklisted,
deferred, delivered). Half the files are gzipped.

Every measurement runs pinned to one CPU (sched_setaffinity; DuckDB limited to one thread):

- mtalens parse: ``decode_frames`` over every file (gunzip, split, detect, decode), nothing
  stored: the parser's rate.
- mtalens ingest: ``mtalens.pipeline.events.ingest`` into a new store (also classify, dedupe,
  write): the end-to-end rate the target is about.
- json.loads: the stdlib's ``json.loads`` of every line of the same (decompressed) files: the
  floor of any Python reader.
- jq (when installed): ``jq -c .`` over the same decompressed files, output discarded.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

REPLIES = [
    ("550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table", "5.1.1"),
    ("552 5.2.2 The email account that you tried to reach is over quota", "5.2.2"),
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.{n}] blocked using zen.spamhaus.org",
        "5.7.1",
    ),
    ("550 5.7.1 Message rejected due to content restrictions", "5.7.1"),
    ("421 4.7.0 Try again later, closing connection.", "4.7.0"),
]


def _events(n: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    base = 1772445600
    for i in range(n):
        a = f"user{i}@d{i % 997}.example"
        reply, status = REPLIES[rng.randrange(len(REPLIES))]
        reply = reply.format(a=a, n=i % 250)
        ts = base + i
        roll = rng.random()
        if roll < 0.30:
            ev = rng.choice(["bounce", "delivered", "deferred"])
            e: dict[str, Any] = {"email": a, "timestamp": ts, "event": ev, "sg_event_id": f"sg{i}",
                                 "sg_message_id": f"m{i}", "smtp-id": f"<m{i}@s.example>"}  # fmt: skip
            if ev == "bounce":
                e.update(
                    type="bounce",
                    status=status,
                    reason=reply,
                    bounce_classification="Invalid Address",
                )
            else:
                e["response"] = "250 OK" if ev == "delivered" else "451 4.7.1 try later"
            out.append(("sendgrid", e))
        elif roll < 0.50:
            msg = {"notificationType": "Bounce", "mail": {"timestamp": "2026-03-02T10:00:00.000Z",
                   "messageId": f"ses{i}", "source": "n@s.example", "destination": [a]},
                   "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                              "bouncedRecipients": [{"emailAddress": a, "status": status,
                                                     "diagnosticCode": f"smtp; {reply}"}],
                              "timestamp": "2026-03-02T10:00:05.000Z", "feedbackId": f"fb{i}"}}  # fmt: skip
            out.append(
                (
                    "amazonses",
                    {"Type": "Notification", "MessageId": f"sns{i}", "Message": json.dumps(msg)},
                )
            )
        elif roll < 0.65:
            out.append(("mailgun", {"signature": {"timestamp": str(ts), "token": "t", "signature": "s"},
                        "event-data": {"event": "failed", "id": f"mg{i}", "timestamp": ts + 0.5,
                                       "severity": "permanent", "reason": "bounce", "recipient": a,
                                       "log-level": "error", "delivery-status": {"code": int(reply[:3]),
                                       "message": reply[4:], "mx-host": "mx.d.example"}}}))  # fmt: skip
        elif roll < 0.75:
            out.append(("postmark", {"RecordType": "Bounce", "ID": i, "Type": "HardBounce", "TypeCode": 1,
                        "MessageID": f"pm{i}", "Details": f"smtp;{reply}", "Email": a,
                        "BouncedAt": "2026-03-02T10:00:00Z"}))  # fmt: skip
        elif roll < 0.85:
            out.append(("sparkpost", {"msys": {"message_event": {"type": "bounce", "event_id": f"sp{i}",
                        "timestamp": str(ts), "rcpt_to": a, "bounce_class": "10", "raw_reason": reply,
                        "error_code": reply[:3], "message_id": f"spm{i}"}}}))  # fmt: skip
        elif roll < 0.95:
            out.append(("mandrill", {"event": "hard_bounce", "_id": f"md{i}", "ts": ts, "msg": {
                        "ts": ts - 60, "_id": f"md{i}", "email": a, "sender": "s@s.example",
                        "state": "bounced", "bounce_description": "bad_mailbox", "diag": f"smtp;{reply}"}}))  # fmt: skip
        else:
            out.append(("postal", {"event": "MessageDeliveryFailed", "uuid": f"po{i}", "timestamp": ts,
                        "payload": {"status": "HardFail", "output": reply, "timestamp": ts,
                                    "message": {"id": i, "token": f"t{i}", "direction": "outgoing",
                                                "to": a, "from": "s@s.example"}}}))  # fmt: skip
    return out


def make_corpus(directory: Path, n: int, files: int, seed: int) -> tuple[list[Path], list[Path]]:
    rng = random.Random(seed)
    events = _events(n, rng)
    per = (len(events) + files - 1) // files
    paths, plain = [], []
    for k in range(files):
        chunk = events[k * per : (k + 1) * per]
        data = ("\n".join(json.dumps(e) for _, e in chunk) + "\n").encode()
        p = directory / f"events-{k:03d}.jsonl"
        p.write_bytes(data)
        plain.append(p)
        if k % 2:
            g = directory / f"events-{k:03d}.jsonl.gz"
            g.write_bytes(gzip.compress(data, 6))
            paths.append(g)
        else:
            paths.append(p)
    return paths, plain


def _pin() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run_parse(paths: list[str]) -> dict[str, Any]:
    from mtalens.pipeline.events import decode_frames

    t, c = time.perf_counter(), time.process_time()
    n = bad = 0
    for p in paths:
        for d in decode_frames(p, Path(p).read_bytes()):
            n += 1
            bad += d.reason is not None
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - c, "events": n,
            "quarantined": bad}  # fmt: skip


def run_ingest(paths: list[str], db: str) -> dict[str, Any]:
    import pyarrow  # noqa: F401  (imported by the first write: start-up, timed apart)

    from mtalens.pipeline.bounces import default_classifier
    from mtalens.pipeline.events import ingest
    from mtalens.pipeline.store import Store

    t0 = time.perf_counter()
    default_classifier()  # loads the rule files once
    startup = time.perf_counter() - t0
    t = c = 0.0
    with Store.open(db) as store:
        store.con.execute("SET threads = 1")
        t, c = time.perf_counter(), time.process_time()
        r = ingest(store, paths)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
    # closing checkpoints what the last commits left in the WAL: part of the cost of storing
    close = time.perf_counter() - t - seconds
    return {
        "seconds": seconds,
        "cpu": cpu,
        "with_close": seconds + close,
        "cpu_with_close": time.process_time() - c,
        "events": r.events,
        "stored": r.stored,
        "quarantined": r.quarantined,
        "startup": startup,
    }


def run_json(paths: list[str]) -> dict[str, Any]:
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for p in paths:
        data = Path(p).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for line in data.split(b"\n"):
            if line:
                json.loads(line)
                n += 1
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - c, "events": n}


def child(mode: str, paths: list[str], db: str | None) -> None:
    _pin()
    sys.path.insert(0, str(ROOT))
    out = (
        {"parse": run_parse, "json": run_json}[mode](paths)
        if mode != "ingest"
        else run_ingest(paths, db or "")
    )
    print(json.dumps(out))


def measure(mode: str, paths: list[Path], db: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--db", db or "", *map(str, paths)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_jq(plain: list[Path]) -> float | None:
    jq = shutil.which("jq")
    if jq is None:
        return None
    cpu = str(min(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else None
    taskset = shutil.which("taskset")
    prefix = [taskset, "-c", cpu] if taskset and cpu else []
    t = time.perf_counter()
    for p in plain:
        subprocess.run([*prefix, jq, "-c", ".", str(p)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t  # jq is all CPU (the files are in the page cache)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--child")
    ap.add_argument("--db")
    ap.add_argument("paths", nargs="*")
    a = ap.parse_args()
    if a.child:
        child(a.child, a.paths, a.db)
        return
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        paths, plain = make_corpus(Path(tmp), a.events, a.files, a.seed)
        parse = measure("parse", paths)
        ing = measure("ingest", paths, str(Path(tmp) / "bench.duckdb"))
        js = measure("json", paths)
        jq = measure_jq(plain)
    n = parse["events"]
    assert parse["quarantined"] == 0 and ing["stored"] == n, (parse, ing)
    load1, load5, _ = os.getloadavg()
    print(f"{n:,} provider events in {a.files} files (half gzipped), one CPU; "
          f"load average {load1:.1f}/{load5:.1f}")  # fmt: skip
    print(f"{'':42s} {'seconds':>7s} {'cpu s':>7s} {'events/s':>10s}  (by cpu)")

    def row(name: str, seconds: float, cpu: float | None) -> None:
        by_cpu = f"  {n / cpu:>10,.0f}" if cpu else ""
        cpu_s = f"{cpu:7.2f}" if cpu is not None else f"{'':7s}"
        print(f"  {name:40s} {seconds:7.2f} {cpu_s} {n / seconds:>10,.0f}{by_cpu}")

    row("mtalens ingest (parse, classify, store)", ing["seconds"], ing["cpu"])
    row("  and the store's close (checkpoint)", ing["with_close"], ing["cpu_with_close"])
    print(f"    (start-up before it, once per process: rules {ing['startup']:.2f} s)")
    row("mtalens parse only", parse["seconds"], parse["cpu"])
    row("python json.loads per line (peer)", js["seconds"], js["cpu"])
    if jq is not None:
        row("jq -c . (peer, decompressed files)", jq, None)
    else:
        print("  jq: not installed")


if __name__ == "__main__":
    main()
