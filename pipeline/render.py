"""Rendering tables as text, JSON or CSV for the CLI (and anyone else)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

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


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else "nan"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    s = str(_jsonable(v))
    # terminals: never let log text move the cursor or change colours
    return "".join(c if c.isprintable() else "?" for c in s)


def text_table(t: Table, *, max_width: int = 60) -> str:
    if not t.columns:
        return "(no result)\n"
    cells = [[_cell(v)[:max_width] for v in row] for row in t.rows]
    widths = [len(c) for c in t.columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(c.ljust(w) for c, w in zip(t.columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not t.rows:
        lines.append("(none)")
    return "\n".join(lines) + "\n"


def json_records(t: Table) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in zip(t.columns, r, strict=True)} for r in t.rows]


def csv_text(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.columns)
    for r in t.rows:
        w.writerow([_jsonable(v) if v is not None else "" for v in r])
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
    if single:
        return text_table(tables[0])
    return "\n".join(f"== {t.name.replace('_', ' ')} ==\n{text_table(t)}" for t in tables)
