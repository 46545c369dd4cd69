"""Benchmark: `mtalens reports ingest` over generated DMARC aggregate reports, next to peers timed
in the same run over the same files.

    .venv/bin/python bench/bench_reports.py                  # 100,000 reports (issue 16 target)
    .venv/bin/python bench/bench_reports.py --reports 20000  # fewer
    .venv/bin/python bench/bench_reports.py --parsedmarc /tmp/pdvenv/bin/python --peer-sample 5000

Reports are written by tests/report_samples.py in five receivers' layouts (Google zip 45%,
Microsoft gzip 25%, Yahoo plain XML 15%, Mail.ru-style gzip 5%, DMARCbis zip 10%), one file
each, with a record count drawn from a skewed distribution (60% 1-2 records, 28% 3-8, 10% 9-40,
2% 41-150: most reports are small, a few large senders' reports are long). The corpus is
generated once per (count, seed) under --dir and reused.

Each measurement runs in its own process, which prints its wall time and its peak RSS
(getrusage ru_maxrss):

- mtalens: ``ingest_reports`` into a new store (parse, unpack, dedupe, write).
- stdlib: ``xml.etree.ElementTree.fromstring`` over the same decompressed files (gzip/zipfile),
  counting records: the parsing floor with nothing stored.
- parsedmarc (optional, ``--parsedmarc PYTHON`` of a venv that has it; never a dependency of
  mtalens): ``parse_aggregate_report_file(bytes, offline=True)`` per file, no DNS, over the first
  ``--peer-sample`` files; its rate is given, its time for all files extrapolated and marked so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.report_samples import (  # noqa: E402
    LAYOUTS,
    Rec,
    Report,
    filename,
    gzipped,
    zipped,
)

BEGIN = 1778112000  # 2026-05-07T00:00:00Z
MIXES = (("google", "zip", 45), ("microsoft", "xml.gz", 25), ("yahoo", "xml", 15),
         ("mailru", "xml.gz", 5), ("dmarcbis", "zip", 10))  # fmt: skip


def record_count(rnd: random.Random) -> int:
    x = rnd.random()
    if x < 0.60:
        return rnd.randint(1, 2)
    if x < 0.88:
        return rnd.randint(3, 8)
    if x < 0.98:
        return rnd.randint(9, 40)
    return rnd.randint(41, 150)


def make_record(rnd: random.Random, domain: str) -> Rec:
    ours = rnd.random() < 0.8
    ip = (
        f"192.0.2.{rnd.randint(1, 30)}"
        if ours
        else f"{rnd.randint(11, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
    )
    if ours:
        dkim_ok = rnd.random() < 0.97
        return Rec(
            ip,
            rnd.choice((1, 1, 2, 3, 5, 8, 20, 120)),
            header_from=domain,
            dkim="pass" if dkim_ok else "fail",
            spf="pass",
            envelope_from=f"bounce.{domain}",
            dkim_auth=[(domain, "s2026", "pass" if dkim_ok else "fail")],
            spf_auth=[(f"bounce.{domain}", "mfrom", "pass")],
        )
    return Rec(
        ip,
        rnd.choice((1, 1, 1, 2, 4)),
        header_from=domain,
        disposition=rnd.choice(("none", "quarantine", "reject")),
        dkim="fail",
        spf="fail",
        envelope_from="spoofer.example.net",
        spf_auth=[("spoofer.example.net", "mfrom", rnd.choice(("fail", "softfail", "none")))],
    )


def generate(out: Path, n: int, seed: int) -> tuple[int, int, int]:
    """(reports, records, bytes on disk); skipped when the corpus is already there."""
    stamp = out / "corpus.json"
    if stamp.exists():
        meta = json.loads(stamp.read_text())
        if meta.get("reports") == n and meta.get("seed") == seed:
            return meta["reports"], meta["records"], meta["bytes"]
    rnd = random.Random(seed)
    weights = [w for _, _, w in MIXES]
    records = size = 0
    for i in range(n):
        layout, ext, _ = rnd.choices(MIXES, weights)[0]
        domain = rnd.choice(("example.com", "example.org", "example.net"))
        recs = tuple(make_record(rnd, domain) for _ in range(record_count(rnd)))
        day = BEGIN + 86400 * (i % 30)
        r = Report(
            org=f"{layout}.reporter{i % 40}.example",
            report_id=f"{seed}-{i}",
            begin=day,
            end=day + 86399,
            domain=domain,
            p=rnd.choice(("none", "quarantine", "reject")),
            records=recs,
        )
        xml = LAYOUTS[layout](r)
        data = (
            zipped(filename(r, "xml"), xml)
            if ext == "zip"
            else gzipped(xml)
            if ext == "xml.gz"
            else xml
        )
        d = out / f"{i // 1000:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:06d}_{filename(r, ext).replace('!', '_')}").write_bytes(data)
        records += len(recs)
        size += len(data)
    stamp.write_text(json.dumps({"reports": n, "seed": seed, "records": records, "bytes": size}))
    return n, records, size


MTALENS = """
import json, resource, sys, time
from mtalens.pipeline.aggregate_reports import ingest_reports
from mtalens.pipeline.store import Store
t = time.perf_counter()
with Store.open(sys.argv[2]) as s:
    r = ingest_reports(s, [sys.argv[1]])
    rows = s.con.execute("SELECT count(*), sum(records) FROM dmarc_reports").fetchone()
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "cpu": resource.getrusage(resource.RUSAGE_SELF).ru_utime
                         + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
                  "reports": r.dmarc_reports, "records": r.dmarc_records,
                  "quarantined": r.quarantined, "stored": list(rows)}))
"""

STDLIB = """
import gzip, io, json, resource, sys, time, zipfile
import xml.etree.ElementTree as ET
from pathlib import Path
t = time.perf_counter()
reports = records = 0
for p in sorted(Path(sys.argv[1]).rglob("*")):
    if not p.is_file() or p.name == "corpus.json":
        continue
    data = p.read_bytes()
    if data[:2] == b"\\x1f\\x8b":
        data = gzip.decompress(data)
    elif data[:4] == b"PK\\x03\\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(z.namelist()[0])
    root = ET.fromstring(data)
    reports += 1
    records += sum(1 for el in root if el.tag.rpartition("}")[2] == "record")
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "cpu": resource.getrusage(resource.RUSAGE_SELF).ru_utime
                         + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
                  "reports": reports, "records": records}))
"""

PARSEDMARC = """
import json, resource, sys, time
from pathlib import Path
import parsedmarc
files = [p for p in sorted(Path(sys.argv[1]).rglob("*")) if p.is_file() and p.name != "corpus.json"]
files = files[: int(sys.argv[2])]
t = time.perf_counter()
records = 0
failed = {}
for p in files:
    # given a path string, parsedmarc 11.1 reported "no element found" for every file here;
    # given the file's bytes it parses them
    try:
        r = parsedmarc.parse_aggregate_report_file(
            p.read_bytes(), offline=True, always_use_local_files=True
        )
    except Exception as exc:
        failed[type(exc).__name__ + ": " + str(exc)[:60]] = failed.get(type(exc).__name__ + ": " + str(exc)[:60], 0) + 1
        continue
    records += len(r["records"])
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "cpu": resource.getrusage(resource.RUSAGE_SELF).ru_utime
                         + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
                  "reports": len(files), "records": records, "failed": failed}))
"""


def write_big(path: Path, records: int) -> int:
    """One gzipped report with ``records`` records, written as a stream; returns its XML size."""
    size = 0
    with gzip.open(path, "wb", compresslevel=6) as f:

        def w(text: str) -> None:
            nonlocal size
            data = text.encode()
            size += len(data)
            f.write(data)

        w(
            '<?xml version="1.0" encoding="UTF-8" ?>\n<feedback><report_metadata>'
            "<org_name>big.example</org_name><email>dmarc@big.example</email>"
            f"<report_id>big-{records}</report_id><date_range><begin>{BEGIN}</begin>"
            f"<end>{BEGIN + 86399}</end></date_range></report_metadata><policy_published>"
            "<domain>example.com</domain><p>none</p></policy_published>\n"
        )
        buf = []
        for i in range(records):
            buf.append(
                f"<record><row><source_ip>10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}</source_ip>"
                f"<count>{i % 9 + 1}</count><policy_evaluated><disposition>none</disposition>"
                "<dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><identifiers>"
                "<envelope_from>bounce.example.com</envelope_from>"
                "<header_from>example.com</header_from></identifiers><auth_results><dkim>"
                "<domain>example.com</domain><selector>s2026</selector><result>pass</result>"
                "</dkim><spf><domain>bounce.example.com</domain><scope>mfrom</scope>"
                "<result>fail</result></spf></auth_results></record>\n"
            )
            if len(buf) == 1000:
                w("".join(buf))
                buf = []
        w("".join(buf) + "</feedback>\n")
    return size


def measure(python: str, code: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, cwd=str(ROOT)
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mtalens-bench-reports"))
    ap.add_argument("--parsedmarc", help="python of a venv with parsedmarc installed")
    ap.add_argument("--peer-sample", type=int, default=5000)
    ap.add_argument(
        "--big-records",
        type=int,
        default=0,
        help="instead: one report with this many records (1000000 is about 100 MB of XML)",
    )
    a = ap.parse_args()
    if a.big_records:
        a.dir.mkdir(parents=True, exist_ok=True)
        big = a.dir / f"big-{a.big_records}.xml.gz"
        xml_size = write_big(big, a.big_records)
        db = a.dir / "big.duckdb"
        for f in (db, db.with_name(db.name + ".wal")):
            f.unlink(missing_ok=True)
        m = measure(sys.executable, MTALENS, str(big), str(db))
        print(f"one report: {a.big_records:,} records, {xml_size / 1e6:.0f} MB of XML, "
              f"{big.stat().st_size / 1e6:.1f} MB gzipped; load {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(json.dumps(m))
        return
    corpus = a.dir / f"corpus-{a.reports}-{a.seed}"
    t = time.perf_counter()
    n, records, size = generate(corpus, a.reports, a.seed)
    print(f"corpus: {n:,} reports, {records:,} records, {size / 1e6:.1f} MB on disk "
          f"({time.perf_counter() - t:.1f} s to generate or find)")  # fmt: skip
    db = a.dir / "bench.duckdb"
    for f in (db, db.with_name(db.name + ".wal")):
        f.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    rows = [("mtalens reports ingest", measure(sys.executable, MTALENS, str(corpus), str(db)))]
    rows.append(("stdlib ElementTree.fromstring", measure(sys.executable, STDLIB, str(corpus))))
    if a.parsedmarc:
        rows.append(
            (
                "parsedmarc offline",
                measure(a.parsedmarc, PARSEDMARC, str(corpus), str(a.peer_sample)),
            )
        )
    print(f"load average before the runs: {load:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'what':32} {'reports':>9} {'records':>10} {'wall s':>8} {'CPU s':>8} "
        f"{'reports/s':>10} {'peak RSS':>10}"
    )
    for name, m in rows:
        if "error" in m:
            print(f"{name:32} error: {m['error']}")
            continue
        secs, rep = float(m["seconds"]), int(m["reports"])  # type: ignore[arg-type]
        note = ""
        if rep < n:
            note = f"  (sample; all {n:,}: ~{secs * n / rep:,.0f} s extrapolated)"
        print(
            f"{name:32} {rep:>9,} {int(m['records']):>10,} {secs:>8.1f} "  # type: ignore[call-overload]
            f"{float(m['cpu']):>8.1f} {rep / secs:>10,.0f} "  # type: ignore[arg-type]
            f"{int(m['rss']) / 2**20:>8.0f} MB{note}"  # type: ignore[call-overload]
        )
        for what, count in dict(m.get("failed") or {}).items():  # type: ignore[call-overload]
            print(f"{'':32} failed on {count:,} file(s): {what}")


if __name__ == "__main__":
    main()
