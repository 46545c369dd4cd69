"""Issue 12 item 10: terminal and spreadsheet safety of every renderer (pipeline/cells.py)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtalens.pipeline.cells import spreadsheet_expr, spreadsheet_text, terminal_text
from mtalens.pipeline.cli import run
from mtalens.pipeline.render import Format, csv_text, render_tables, text_table
from mtalens.pipeline.reports import Table
from mtalens.pipeline.store import Store
from tests.test_suppressions_data import day, dsn

FIX = Path(__file__).parent / "fixtures" / "bounces"
# ECMA-48 CSI (7-bit and the one-byte C1 form), OSC (window title), BEL, backspace, bidi
# override/isolate (CVE-2021-42574), line separator
HOSTILE = "a\x1b[31mred\x9b2J\x1b]0;title\x07\x08\u202egnp.exe\u2066x\u2069\u2028z"
UNSAFE = ("\x1b", "\x9b", "\x07", "\x08", "\u202e", "\u2066", "\u2069", "\u2028")


def test_terminal_text_replaces_every_control_and_keeps_letters() -> None:
    out = terminal_text(HOSTILE)
    assert not any(c in out for c in UNSAFE)
    assert out.startswith("a?[31mred?2J") and out.endswith("?x??z")
    assert terminal_text("Grüße, 東京 <a@b.example>") == "Grüße, 東京 <a@b.example>"
    assert terminal_text("a\tb\nc", " ") == "a b c"


def test_table_cells_columns_and_section_names_are_terminal_safe() -> None:
    t = Table("x\x1b[2J", [f"col{HOSTILE}"], [(HOSTILE,), (b"\x1b[1m",)])
    for out in (text_table(t), render_tables([t, t], Format.table)):
        assert not any(c in out for c in UNSAFE), out


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "' =1"),
        ("\r=1", "' =1"),
        ("a=b", "a=b"),
        (-5, "-5"),
        (Decimal("-1.50"), "-1.5"),  # as before: decimals are written as floats
        (-2.5, "-2.5"),
        (True, "True"),
        (None, ""),
        (datetime(2026, 3, 1, tzinfo=UTC), "2026-03-01T00:00:00+00:00"),
        (b"=x", "'=x"),
        (["=x"], "['=x']"),
    ],
)
def test_csv_neutralises_text_and_leaves_numbers(value: object, cell: str) -> None:
    out = csv_text(Table("t", ["=h", "n"], [(value, 1)]))
    header, row = list(csv.reader(io.StringIO(out)))
    assert header == ["'=h", "n"]
    assert row == [cell, "1"]


@given(st.text(alphabet="=+-@\t\r\n\x00\x1f\x7f\u0085\u2028 ax'", max_size=8))
def test_the_python_and_polars_forms_are_one_rule(text: str) -> None:
    got = pl.DataFrame({"c": [text]}).select(spreadsheet_expr("c"))["c"][0]
    assert got == spreadsheet_text(text)


def test_query_csv_quotes_formulas_but_not_negative_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "q.duckdb"
    Store.open(db).close()
    capsys.readouterr()
    sql = "SELECT '=1+1' AS f, -5 AS n, -1.5::DECIMAL(4,2) AS d, '-2+3' AS s, 'ok' AS t"
    assert run(["query", sql, "--db", str(db), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert list(csv.reader(io.StringIO(out))) == [
        ["f", "n", "d", "s", "t"],
        ["'=1+1", "-5", "-1.5", "'-2+3", "ok"],
    ]


def test_query_table_shows_no_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "q.duckdb"
    Store.open(db).close()
    capsys.readouterr()
    sql = "SELECT chr(27) || '[2J' || chr(8238) || 'x' AS \"a\x1b[1mb\""
    assert run(["query", sql, "--db", str(db), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "?[2J?x" in out


def test_suppressions_list_csv_quotes_a_formula_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        dsn(store, "=cmd|'/c calc'!a0@example.net", day(1))
    capsys.readouterr()
    rc = run(["suppressions", "list", "--invalid", "--db", str(db), "-f", "csv",
              "--as-of", "2026-03-10T00:00:00"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    rows = list(csv.reader(io.StringIO(out)))
    cells = [c for r in rows[1:] for c in r]
    assert any(c.startswith("'=cmd") for c in cells), rows
    assert not any(c.startswith(("=", "+", "@")) for c in cells), rows


def test_bounces_parse_table_prints_no_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = (FIX / "postfix-userunknown.eml").read_bytes()
    hostile = raw.replace(b"carol@example.net", b"carol\x1b]0;pwned\x07\xe2\x80\xae@example.net")
    assert hostile != raw
    (tmp_path / "h.eml").write_bytes(hostile)
    capsys.readouterr()
    assert run(["bounces", "parse", "--format", "table", str(tmp_path / "h.eml")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    # json keeps the value exactly (escaped by the encoder): nothing is lost, only shown safely
    assert run(["bounces", "parse", str(tmp_path / "h.eml")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any("\x1b]0;pwned" in (r["recipient"] or "") for r in rows)
