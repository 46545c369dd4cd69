"""Rendering tables as text, JSON or CSV for the CLI (and anyone else).

Every text cell, column name and section name of a table is made terminal-safe, every text cell
and column name of a CSV spreadsheet-safe (``pipeline/cells.py``, shared with the exports);
numbers, times and booleans are written as they are."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mtalens.pipeline.cells import spreadsheet_text, terminal_text

if TYPE_CHECKING:
    from mtalens.pipeline.reports import Table


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes | bytearray):
        return v.decode("utf-8", "backslashreplace")
    return v


def cell_text(v: Any) -> str:
    """One value as a table shows it (terminal tables and the HTML report's)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else "nan"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    # terminals: never let log or mail text move the cursor, change colours or reorder the line
    return terminal_text(str(_jsonable(v)))


def text_table(t: Table, *, max_width: int = 60, fit: int | None = None) -> str:
    """Columns padded to their widest cell (at most ``max_width``); with ``fit`` (a terminal's
    width) the widest columns are cut, with an ellipsis, until a line fits (not below 8)."""
    if not t.columns:
        return "(no result)\n"
    cells = [[cell_text(v)[:max_width] for v in row] for row in t.rows]
    columns = [terminal_text(c) for c in t.columns]  # `query` names them from the user's SQL
    widths = [len(c) for c in columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    if fit is not None:
        widths = _fit(widths, fit)
        cells = [[_cut(c, w) for c, w in zip(row, widths, strict=True)] for row in cells]
        columns = [_cut(c, w) for c, w in zip(columns, widths, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not t.rows:
        lines.append("(none)")
    return "\n".join(lines) + "\n"


def _fit(widths: list[int], total: int, floor: int = 8) -> list[int]:
    """Column widths whose line (two spaces between columns) fits ``total``, taking from the
    widest column first; columns never go below ``floor`` (a line may then still be wider)."""
    out = list(widths)
    while sum(out) + 2 * (len(out) - 1) > total:
        i = max(range(len(out)), key=lambda k: out[k])
        if out[i] <= floor:
            break
        out[i] -= 1
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "\u2026"


def terminal_width() -> int | None:
    """The width to fit tables to: the terminal's when standard output is one, else None (a
    pipe or a file gets whole cells). ``$COLUMNS`` wins, as for other tools."""
    import os
    import shutil
    import sys

    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return None
    return shutil.get_terminal_size().columns


def json_records(t: Table) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in zip(t.columns, r, strict=True)} for r in t.rows]


def _csv_cell(v: Any) -> Any:
    """Text neutralised for spreadsheets; numbers (a negative one starts with "-"), booleans and
    times as they are; anything else (lists, structs) is written as its text, neutralised."""
    if v is None:
        return ""
    if isinstance(v, float):
        return _float_text(v)
    if isinstance(v, bool | int | Decimal | datetime | date):
        return _jsonable(v)
    return spreadsheet_text(str(_jsonable(v)))


def _float_text(v: float) -> str:
    """A float as a person reads it: 12 significant digits, so the binary noise of sums
    (374.1900000000023) is gone and any real value a log or a count holds is kept."""
    return format(v, ".12g") if v == v else "nan"


def csv_text(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([spreadsheet_text(c) for c in t.columns])
    for r in t.rows:
        w.writerow([_csv_cell(v) for v in r])
    return buf.getvalue()


def render_tables(tables: list[Table], fmt: Format, *, single: bool = False) -> str:
    """One table (``single``): a JSON array / plain CSV. Several: a JSON object keyed by section
    name / CSV blocks each headed ``# section: NAME``."""
    if fmt is Format.json:
        if single:
            return json.dumps(json_records(tables[0]), ensure_ascii=False) + "\n"
        return json.dumps({t.name: json_records(t) for t in tables}, ensure_ascii=False) + "\n"
    if fmt is Format.csv:
        if single:
            return csv_text(tables[0])
        return "\n".join(f"# section: {t.name}\n{csv_text(t)}" for t in tables)
    fit = terminal_width()
    if single:
        return text_table(tables[0], fit=fit)
    return "\n".join(
        f"== {terminal_text(t.name.replace('_', ' '))} ==\n{text_table(t, fit=fit)}" for t in tables
    )
