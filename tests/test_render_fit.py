"""Tables that fit the terminal, and floats as people read them (table and CSV output)."""

from __future__ import annotations

import csv
import io

import pytest

from mtalens.pipeline.render import Format, render_tables, text_table
from mtalens.pipeline.reports import Table

WIDE = Table("wide", ["ip", "example"], [("192.0.2.1", "x" * 55), ("192.0.2.22", "short")])


def test_a_wide_table_is_cut_to_the_terminal_width() -> None:
    out = text_table(WIDE, fit=40)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 40
    assert lines[2].endswith("\u2026") and "short" in lines[3]  # cut cells say so
    assert text_table(WIDE).splitlines()[2].endswith("x" * 55)  # unfitted: whole


def test_columns_keep_a_floor_when_the_terminal_is_tiny() -> None:
    out = text_table(WIDE, fit=5)
    assert all(len(line.split("  ")[0]) >= 8 for line in out.splitlines()[2:])


def test_piped_output_is_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # pytest's stdout is not a terminal
    assert "x" * 55 in render_tables([WIDE], Format.table, single=True)
    monkeypatch.setenv("COLUMNS", "40")
    assert "x" * 55 not in render_tables([WIDE], Format.table, single=True)


def test_floats_lose_binary_noise_in_csv_and_keep_their_value() -> None:
    t = Table("f", ["sum", "small", "neg", "int"], [(374.19 + 2.3e-12, 1.25e-7, -0.5, 3)])
    (row,) = list(csv.DictReader(io.StringIO(render_tables([t], Format.csv, single=True))))
    assert row == {"sum": "374.19", "small": "1.25e-07", "neg": "-0.5", "int": "3"}
    assert float(row["sum"]) == pytest.approx(374.19 + 2.3e-12, rel=1e-12)
