"""mtalens.pipeline.bounces and `mtalens bounces`: parse rows, ingest idempotently, quarantine bad input."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.bounces import BounceRow, Decoded, ingest, parse_paths, verp_original
from mtalens.pipeline.cli import app
from mtalens.pipeline.store import Store

FIX = Path(__file__).parent / "fixtures" / "bounces"
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("bounces+carol=example.net@lists.example.org", "carol@example.net"),
        ("bounce-bob=example.com@lists.example.org", "bob@example.com"),
        ("plain@example.org", None),
        (None, None),
    ],
)
def test_verp_original(address: str | None, want: str | None) -> None:
    assert verp_original(address) == want


def test_parse_rows_are_classified() -> None:
    rows = [r for r in parse_paths([FIX / "postfix-userunknown.eml"]) if isinstance(r, BounceRow)]
    assert [r.recipient for r in rows] == ["carol@example.net", "dave@example.com"]
    carol = rows[0]
    assert carol.reason == "userunknown" and carol.hard is True and carol.rule_id
    assert carol.verp_recipient == "carol@example.net"
    assert carol.original_message_id == "<news-2026-03@lists.example.org>"
    assert carol.postfix_queue_id == "4F2A31C0A1"


def test_parse_autoreply_gives_one_row_without_recipient() -> None:
    (row,) = list(parse_paths([FIX / "autoreply.eml"]))
    assert isinstance(row, BounceRow)
    assert row.recipient is None and row.kind == "autoreply"


def test_parse_reports_decode_failures() -> None:
    (item,) = list(parse_paths([FIX / "not-a-report.eml"]))
    assert isinstance(item, Decoded) and item.reason == "missing_boundary"


def test_ingest_is_idempotent_and_quarantines(tmp_path: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(FIX, src)
    (src / "empty.eml").write_bytes(b"")
    store = Store.memory()
    first = ingest(store, [src], now=lambda: NOW)
    n_files = len(list(src.iterdir()))
    assert first.read == n_files
    assert first.read == first.stored + first.duplicates + first.quarantined
    assert first.quarantined == 2 and first.quarantine_reasons == {
        "empty": 1,
        "missing_boundary": 1,
    }
    con = store.con
    assert con.execute("SELECT count(*) FROM bounce_reports").fetchone() == (first.stored,)
    q = con.execute(
        'SELECT reason, source_kind, "offset", raw FROM quarantine ORDER BY reason'
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in q] == [
        ("empty", "mail", 0),
        ("missing_boundary", "mail", 0),
    ]
    assert q[1][3] == (src / "not-a-report.eml").read_bytes()
    failures = con.execute(
        "SELECT recipient, status, reason, original_message_id, postfix_queue_id, original_recipient "
        "FROM bounces ORDER BY recipient"
    ).fetchall()
    recipients = [f[0] for f in failures]
    assert "carol@example.net" in recipients and "frank@slow.example" not in recipients
    assert "dave@example.com" not in recipients  # delayed, not a failure
    carol = failures[recipients.index("carol@example.net")]
    assert carol[1:] == (
        "5.1.1",
        "userunknown",
        "<news-2026-03@lists.example.org>",
        "4F2A31C0A1",
        "carol@example.net",
    )
    assert con.execute(
        "SELECT feedback_type, recipient, source_ip FROM complaints ORDER BY recipient"
    ).fetchall() == [
        ("abuse", "judy@example.net", "192.0.2.44"),  # arf.eml (RFC 5965)
        ("abuse", "pat@example.net", None),  # amazonses-complaint.eml (SES via SNS)
    ]
    second = ingest(store, [src], now=lambda: NOW)
    assert second.stored == 0 and second.duplicates == first.stored
    assert con.execute("SELECT count(*) FROM bounce_reports").fetchone() == (first.stored,)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (2,)


def test_cli_parse_json_and_ingest(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app, ["bounces", "parse", str(FIX / "qmail.eml"), str(FIX / "autoreply.eml")]
    )
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(x["recipient"], x["kind"]) for x in lines] == [
        ("ivan@example.net", "bounce"),
        (None, "autoreply"),
    ]
    for key in ("source", "message", "action", "status", "reply_code", "diagnostic", "reason",
                "category", "hard", "rule_id", "reporting_mta", "remote_mta",
                "original_message_id", "feedback_type"):  # fmt: skip
        assert key in lines[0]
    db = tmp_path / "t.duckdb"
    res = runner.invoke(app, ["bounces", "ingest", "--db", str(db), str(FIX / "qmail.eml")])
    assert res.exit_code == 0, res.output
    assert "stored 1" in res.stdout
    with Store.open(db, read_only=True) as s:
        assert s.con.execute("SELECT recipient FROM bounces").fetchall() == [("ivan@example.net",)]
