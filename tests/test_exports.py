"""Every export format, parsed back field by field; Postfix maps compiled with the real postmap."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from mtalens.pipeline import exports as X
from mtalens.pipeline import suppressions as S
from mtalens.pipeline.cli import app
from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.store import Store
from tests.conftest import need_binary
from tests.test_suppressions_data import complaint, day, log

POLICY = SuppressionsConfig()
NOW = day(10)
EVIL_DIAG = '=HYPERLINK("http://evil.example","x")\r\nsecond line,"quoted"'


@pytest.fixture
def store() -> Store:
    return _store()


def _store() -> Store:
    s = Store.memory()
    log(s, "hard@example.com", day(0), diagnostic=EVIL_DIAG)
    log(s, "host@nowhere.example", day(1), reason="hostunknown", dsn="5.4.4", reply_code=None)
    complaint(s, "angry@example.com", day(2))
    for n in (3, 4, 5):
        log(s, "full@example.com", day(n), reason="mailboxfull", dsn="5.2.2", reply_code=552)
    S.add(s, "manual@example.com", now=day(6), note="=cmd|' /C calc'!A0")
    # attacker-shaped addresses that are valid but unsafe to export
    log(s, "=1+2@example.com", day(0))
    log(s, "-x@example.com", day(0))
    log(s, "#x@example.com", day(0))
    log(s, '"a\\"b,c"@example.com', day(0))
    log(s, "jörg@example.com", day(0))
    S.prepare(s, now=NOW)
    return s


SAFE = {"hard@example.com", "host@nowhere.example", "angry@example.com", "full@example.com",
        "manual@example.com", "#x@example.com"}  # fmt: skip
FORMULAS = {"=1+2@example.com", "-x@example.com"}  # refused by CSV formats only
KIND = {"hard@example.com": "hard", "host@nowhere.example": "hard", "angry@example.com": "complaint",
        "full@example.com": "soft", "manual@example.com": "manual", "#x@example.com": "hard"}  # fmt: skip


def run(
    store: Store, fmt: str, out: Path | None = None, since: str | None = None
) -> X.ExportResult:
    return X.export_suppressions(store, POLICY, fmt, now=NOW, out=out, since_last=since)


def skipped(r: X.ExportResult) -> dict[str, str]:
    return dict(r.skipped)


def test_registry_names_are_unique_and_each_has_a_test() -> None:
    names = [e.name for e in X.EXPORTERS]
    assert len(names) == len(set(names))
    tested = Path(__file__).read_text()
    for name in names:
        assert f'"{name}"' in tested, f"no test exports {name}"


def test_generic_csv_parses_back_and_neutralises_formulas(store: Store) -> None:
    r = run(store, "csv")
    ((_name, text),) = r.contents
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["address"] for row in rows} == SAFE
    assert {row["address"]: row["kind"] for row in rows} == KIND
    hard = next(row for row in rows if row["address"] == "hard@example.com")
    assert hard["reason"] == "userunknown" and hard["rule_id"] == "rule-userunknown"
    assert hard["first_evidence"] == "2026-03-01T12:00:00Z" and hard["reply_code"] == "550"
    assert hard["diagnostic"].startswith("'=HYPERLINK") and "\n" not in hard["diagnostic"]
    assert hard["diagnostic"].endswith('second line,"quoted"')
    for row in rows:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", row
    assert len(text.splitlines()) == len(rows) + 1
    bad = skipped(r)
    assert bad["=1+2@example.com"] == X.FORMULA and bad["-x@example.com"] == X.FORMULA
    assert bad['"a\\"b,c"@example.com'] == X.UNSAFE_ADDRESS
    assert bad["jörg@example.com"] == X.UNSAFE_ADDRESS


def test_generic_jsonl_parses_back(store: Store) -> None:
    ((_, text),) = run(store, "jsonl").contents
    objs = [json.loads(line) for line in text.splitlines()]
    by = {o["address"]: o for o in objs}
    assert set(by) == SAFE | FORMULAS
    assert by["hard@example.com"]["diagnostic"] == EVIL_DIAG
    assert by["full@example.com"]["event_ids"][0].startswith("log:")
    assert len(by["full@example.com"]["event_ids"]) == 3
    assert by["manual@example.com"]["kind"] == "manual"


def test_ses_csv_and_jsonl(store: Store, tmp_path: Path) -> None:
    r = run(store, "ses-csv", tmp_path / "csv")
    rows = list(csv.reader((tmp_path / "csv" / "ses-put-0001.csv").read_text().splitlines()))
    assert {a: reason for a, reason in rows} == {
        a: ("COMPLAINT" if k == "complaint" else "BOUNCE") for a, k in KIND.items()
    }
    assert len(r.files) == 1
    run(store, "ses-jsonl", tmp_path / "js")
    lines = (tmp_path / "js" / "ses-put-0001.jsonl").read_text().splitlines()
    objs = [json.loads(x) for x in lines]
    assert all(set(o) == {"emailAddress", "reason"} for o in objs)
    assert {o["emailAddress"] for o in objs} >= SAFE


def test_ses_splits_at_100000() -> None:
    n = X.SES_FILE_LIMIT + 1
    frame = pl.DataFrame({"address": [f"u{i}@example.com" for i in range(n)], "kind": ["hard"] * n,
                          "diagnostic": [None] * n, "reason": ["userunknown"] * n},
                         schema_overrides={"diagnostic": pl.String})  # fmt: skip
    files, outcome = X.export_frame(X.exporter("ses-csv"), frame)
    assert [name for name, _ in files] == ["ses-put-0001.csv", "ses-put-0002.csv"]
    assert [t.count("\n") for _, t in files] == [X.SES_FILE_LIMIT, 1]
    assert outcome.added == n and outcome.skipped.height == 0


def test_mailgun_bounces_complaints_unsubscribes(store: Store) -> None:
    ((_, text),) = run(store, "mailgun-bounces").contents
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["address", "code", "error", "created_at"]
    by = {row["address"]: row for row in rows}
    assert set(by) == {
        "hard@example.com",
        "host@nowhere.example",
        "full@example.com",
        "#x@example.com",
    }
    assert by["hard@example.com"]["code"] == "550" and by["full@example.com"]["code"] == "552"
    assert by["host@nowhere.example"]["code"] == "550"  # no reply code: a hard default
    assert by["hard@example.com"]["error"].startswith("'=")
    assert parsedate_to_datetime(by["hard@example.com"]["created_at"]) == day(0)
    assert parsedate_to_datetime(by["full@example.com"]["created_at"]) == day(5)
    ((_, text),) = run(store, "mailgun-complaints").contents
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["address"], parsedate_to_datetime(r["created_at"])) for r in rows] == [
        ("angry@example.com", day(2))
    ]
    ((_, text),) = run(store, "mailgun-unsubscribes").contents
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["address"], r["tags"]) for r in rows] == [("manual@example.com", "*")]


def test_sendgrid_bodies_at_most_1000(store: Store, tmp_path: Path) -> None:
    for i in range(1500):
        S.add(store, f"bulk{i:04d}@example.com", now=day(7))
    run(store, "sendgrid", tmp_path, since="sg")
    bodies = [
        json.loads(p.read_text()) for p in sorted(tmp_path.glob("sendgrid-global-add-*.json"))
    ]
    assert [len(b["recipient_emails"]) for b in bodies] == [1000, 500 + len(SAFE) + len(FORMULAS)]
    assert set(bodies[0]) == {"recipient_emails"}
    S.remove(store, "bulk0001@example.com", now=day(8))
    out2 = tmp_path / "2"
    r = run(store, "sendgrid", out2, since="sg")
    assert (r.added, r.removed) == (0, 1)
    (line,) = (out2 / "sendgrid-global-delete.jsonl").read_text().splitlines()
    req = json.loads(line)
    assert req["method"] == "DELETE"
    assert urllib.parse.unquote(req["path"].rsplit("/", 1)[1]) == "bulk0001@example.com"


def test_postmark_bodies_at_most_50(store: Store, tmp_path: Path) -> None:
    for i in range(60):
        S.add(store, f"pm{i:02d}@example.com", now=day(7))
    run(store, "postmark", tmp_path)
    bodies = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("postmark-add-*.json"))]
    assert [len(b["Suppressions"]) for b in bodies] == [50, 10 + len(SAFE) + len(FORMULAS)]
    assert all(set(s) == {"EmailAddress"} for b in bodies for s in b["Suppressions"])
    assert {s["EmailAddress"] for b in bodies for s in b["Suppressions"]} >= SAFE


def test_listmonk_csv(store: Store) -> None:
    ((_, text),) = run(store, "listmonk").contents
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["email", "name", "attributes"]
    by = {r["email"]: json.loads(r["attributes"]) for r in rows}
    assert set(by) == SAFE
    assert by["angry@example.com"] == {"mtalens_kind": "complaint", "mtalens_reason": "feedback"}


def _postmap(tmp_path: Path, table: Path, key: str) -> str | None:
    postmap = need_binary("postmap")
    (tmp_path / "main.cf").touch()
    q = subprocess.run([postmap, "-c", str(tmp_path), "-q", key, f"hash:{table}"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    return q.stdout.strip() if q.returncode == 0 else None


@pytest.mark.postfix
@pytest.mark.parametrize("fmt", ["postfix-access", "postfix-transport"])
def test_postfix_maps_compile_and_answer(store: Store, tmp_path: Path, fmt: str) -> None:
    postmap = need_binary("postmap")
    (tmp_path / "main.cf").touch()
    table = tmp_path / "map"
    r = run(store, fmt, table)
    assert skipped(r)["#x@example.com"] == X.COMMENT
    subprocess.run([postmap, "-c", str(tmp_path), f"hash:{table}"], check=True)
    lines = table.read_text().splitlines()
    assert len(lines) == len(SAFE) - 1 + len(FORMULAS)  # no #x@; =1+2@ and -x@ are fine in a map
    if fmt == "postfix-access":
        assert (
            _postmap(tmp_path, table, "hard@example.com")
            == "REJECT suppressed by mtalens: hard userunknown"
        )
        assert (
            _postmap(tmp_path, table, "ANGRY@EXAMPLE.COM")
            == "REJECT suppressed by mtalens: complaint feedback"
        )
    else:
        assert (
            _postmap(tmp_path, table, "hard@example.com")
            == "error:5.1.1 suppressed by mtalens: hard userunknown"
        )
        assert (
            _postmap(tmp_path, table, "host@nowhere.example")
            == "error:5.1.2 suppressed by mtalens: hard hostunknown"
        )
        assert (
            _postmap(tmp_path, table, "full@example.com")
            == "error:5.2.2 suppressed by mtalens: soft mailboxfull"
        )
    assert _postmap(tmp_path, table, "fine@example.com") is None
    assert _postmap(tmp_path, table, "#x@example.com") is None


def test_incremental_target_emits_additions_then_removals(store: Store, tmp_path: Path) -> None:
    r1 = run(store, "ses-csv", tmp_path / "1", since="ses")
    assert r1.added == len(SAFE) and r1.removed == 0
    r2 = run(store, "ses-csv", tmp_path / "2", since="ses")
    assert (r2.added, r2.removed, r2.files) == (0, 0, ())
    S.remove(store, "hard@example.com", now=NOW)
    log(store, "new@example.com", NOW)
    r3 = run(store, "ses-csv", tmp_path / "3", since="ses")
    assert (r3.added, r3.removed) == (1, 1)
    assert list(csv.reader((tmp_path / "3" / "ses-put-0001.csv").read_text().splitlines())) == [
        ["new@example.com", "BOUNCE"]
    ]
    assert list(csv.reader((tmp_path / "3" / "ses-delete-0001.csv").read_text().splitlines())) == [
        ["hard@example.com", "BOUNCE"]
    ]
    with pytest.raises(X.ExportError):
        run(store, "csv", since="ses")


def test_incremental_without_removals_reports_them(store: Store) -> None:
    run(store, "mailgun-complaints", since="mg")
    S.remove(store, "angry@example.com", now=NOW)
    r = run(store, "mailgun-complaints", since="mg")
    assert r.removals_not_expressible == 1 and r.removed == 0
    # the target still holds it: suppressing it again adds nothing
    complaint(store, "angry@example.com", NOW)
    assert run(store, "mailgun-complaints", since="mg").added == 0


def test_cli_list_explain_export(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as s:
        ev = log(s, "cli@example.com", datetime(2026, 3, 1, tzinfo=UTC))
    runner = CliRunner()
    res = runner.invoke(app, ["suppressions", "list", "--db", str(db), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert [r["address"] for r in json.loads(res.stdout)] == ["cli@example.com"]
    res = runner.invoke(
        app, ["suppressions", "explain", "cli@EXAMPLE.com", "--db", str(db), "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    fields = {r["field"]: r["value"] for r in out["decision"]}
    assert fields["suppressed"] is True and fields["event_ids"] == ev
    assert [e["event_id"] for e in out["evidence"]] == [ev]
    res = runner.invoke(app, ["suppressions", "add", "x y@example.com", "--db", str(db)])
    assert res.exit_code == 2 and "not a usable address" in res.output
    res = runner.invoke(
        app, ["suppressions", "export", "--db", str(db), "-f", "csv", "-o", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.csv").read_text().splitlines()[1].startswith("cli@example.com,hard,")
    res = runner.invoke(
        app, ["suppressions", "list", "--db", str(db), "--format", "csv", "--sender-side"]
    )
    assert res.exit_code == 0 and res.stdout.startswith("reason,")


@pytest.fixture(scope="module")
def decisions() -> pl.DataFrame:
    return _decisions(_store())


def _decisions(store: Store) -> pl.DataFrame:
    frame = S.decisions_frame(store, POLICY, now=NOW)
    bulk = pl.concat(
        [frame.head(1).with_columns(pl.lit(f"b{i:04d}@example.com").alias("address"))
         for i in range(120)]
    )  # fmt: skip
    return pl.concat([frame, bulk]).sort("address")


@pytest.mark.parametrize("fmt", [e.name for e in X.EXPORTERS])
@pytest.mark.parametrize("rows", [1, 7, 49])
def test_streamed_in_small_batches_gives_the_same_files(
    decisions: pl.DataFrame, fmt: str, rows: int
) -> None:
    # batches that cut SES files, SendGrid and Postmark bodies and CSV headers anywhere
    frame = decisions
    e = X.exporter(fmt)
    whole, whole_outcome = X.export_frame(e, frame)
    sink = X.Sink()
    outcome = X.export_batches(e, frame.iter_slices(rows), sink)
    sink.commit()
    assert [(n, d.decode()) for n, d in sink.contents] == whole
    assert (outcome.added, outcome.listed) == (whole_outcome.added, whole_outcome.listed)
    assert outcome.skipped.equals(whole_outcome.skipped)
    assert whole and any(text for _, text in whole)


def test_postmark_splits_across_batches(decisions: pl.DataFrame) -> None:
    frame = decisions
    files, _ = X.export_frame(X.exporter("postmark"), frame)
    sink = X.Sink()
    X.export_batches(X.exporter("postmark"), frame.iter_slices(3), sink)
    sink.commit()
    sizes = [len(json.loads(d)["Suppressions"]) for _, d in sink.contents]
    assert sizes == [50, 50, frame.height - 100 - 2]  # the quoted and the non-ASCII one: skipped
    assert [n for n, _ in files] == [n for n, _ in sink.contents]


def test_decision_batches_stream_the_frame(store: Store) -> None:
    with S.decision_batches(store, POLICY, now=NOW, rows=2) as batches:
        parts = list(batches)
    assert len(parts) > 3 and all(b.num_rows <= 2 for b in parts)
    frame = pl.from_arrow(pa.Table.from_batches(parts))
    assert isinstance(frame, pl.DataFrame)
    assert frame.equals(S.decisions_frame(store, POLICY, now=NOW))
    with S.decision_batches(Store.memory(), POLICY, now=NOW) as batches:
        (empty,) = list(batches)  # nothing to export still gives the schema
    assert empty.num_rows == 0 and "address" in empty.schema.names


def test_sendgrid_delete_paths_match_urllib() -> None:
    # every character a safe address may hold (RFC 5322 atext, ".", "@")
    address = "a!#$%&'*+/=?^_`{|}~-.b@ex-ample.com"
    assert re.fullmatch(X._SAFE_ADDRESS, address)
    frame = pl.DataFrame({"address": [address, "plain@example.com"], "kind": ["hard", "hard"]})
    sink = X.Sink()
    X.SendgridGlobal().write_removals(frame, sink)
    sink.commit()
    ((name, data),) = sink.contents
    reqs = [json.loads(line) for line in data.decode().splitlines()]
    assert name == "sendgrid-global-delete.jsonl"
    assert [r["path"] for r in reqs] == [
        "/v3/asm/suppressions/global/" + urllib.parse.quote(a, safe="") for a in frame["address"]
    ]


def test_postmark_and_ses_jsonl_removals(store: Store, tmp_path: Path) -> None:
    run(store, "postmark", tmp_path / "1", since="pm")
    run(store, "ses-jsonl", tmp_path / "s1", since="sj")
    S.remove(store, "full@example.com", now=NOW)
    r = run(store, "postmark", tmp_path / "2", since="pm")
    assert (r.added, r.removed) == (0, 1)
    assert [p.name for p in (tmp_path / "2").iterdir()] == ["postmark-delete-0001.json"]
    body = json.loads((tmp_path / "2" / "postmark-delete-0001.json").read_text())
    assert body == {"Suppressions": [{"EmailAddress": "full@example.com"}]}
    r = run(store, "ses-jsonl", tmp_path / "s2", since="sj")
    assert (r.added, r.removed) == (0, 1)
    lines = (tmp_path / "s2" / "ses-delete-0001.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"emailAddress": "full@example.com", "reason": "BOUNCE"}
    ]


def test_failed_export_leaves_no_file(decisions: pl.DataFrame, tmp_path: Path) -> None:
    frame = decisions

    def frames() -> Iterator[pl.DataFrame]:
        yield frame.head(60)
        raise RuntimeError("the store went away")

    for fmt, out in (("postmark", tmp_path / "dir"), ("csv", tmp_path / "one.csv")):
        e = X.exporter(fmt)
        sink = X.Sink(directory=out) if e.multi_file else X.Sink(file=out)
        with pytest.raises(RuntimeError):
            try:
                X.export_batches(e, frames(), sink)
            except BaseException:
                sink.abort()
                raise
    assert [p.name for p in (tmp_path / "dir").iterdir()] == []
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]


def test_cli_export_streams_to_stdout(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as s:
        for i in range(3):
            log(s, f"out{i}@example.com", datetime(2026, 3, 1, tzinfo=UTC))
        log(s, "=bad@example.com", datetime(2026, 3, 1, tzinfo=UTC))
    res = CliRunner().invoke(app, ["suppressions", "export", "--db", str(db), "-f", "listmonk"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["email"] for r in rows] == [f"out{i}@example.com" for i in range(3)]
    assert "not exported" in res.stderr and "=bad@example.com" in res.stderr
    res = CliRunner().invoke(app, ["suppressions", "export", "--db", str(db), "-f", "ses-csv"])
    assert res.exit_code == 2 and "give -o DIRECTORY" in res.stderr


def test_export_from_a_read_only_store(tmp_path: Path) -> None:
    # the daemon holds the store: `suppressions export` opens it read-only (temp tables only)
    db = tmp_path / "s.duckdb"
    with Store.open(db) as s:
        log(s, "ro@example.com", datetime(2026, 3, 1, tzinfo=UTC))
        S.prepare(s, now=NOW)
    with Store.open(db, read_only=True) as ro:
        r = X.export_suppressions(ro, POLICY, "postfix-access", now=NOW, out=tmp_path / "access")
        with pytest.raises(S.SuppressionError):
            X.export_suppressions(
                ro, POLICY, "ses-csv", now=NOW, out=tmp_path / "x", since_last="t"
            )
    assert r.files == (str(tmp_path / "access"),) and r.exported == 1
    assert (tmp_path / "access").read_text() == (
        "ro@example.com REJECT suppressed by mtalens: hard userunknown\n"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files
