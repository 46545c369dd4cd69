"""What a cell of mtalens output may hold, once for every renderer.

Addresses, diagnostics and headers come from mail, so they are attacker-controlled.

- On a terminal (``terminal_text``), nothing may move the cursor, change colours, retitle the
  window or reorder what follows: every character that ``str.isprintable`` refuses is replaced —
  C0 and C1 controls (ESC starts ECMA-48 sequences; C1 CSI, U+009B, starts them in one byte),
  DEL, the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069: "Trojan Source",
  CVE-2021-42574) and the other format characters, line and paragraph separators.
- In a spreadsheet (``spreadsheet_text`` for Python values, ``spreadsheet_expr`` for a polars
  column: the same patterns), a text cell that starts with ``=``, ``+``, ``-``, ``@``, tab or CR
  is read as a formula (OWASP "CSV Injection"): control characters become spaces, and a cell that
  then starts with one of ``=+-@`` after any spaces (some importers trim them) gets a leading
  apostrophe. Only text is treated: a number (``-5``) stays a number. ``FORMULA_START`` is also
  what the exports refuse at the start of an address.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # polars only for the exports, not for every CLI start
    import polars as pl

FORMULA_START: Final = r"^[=+\-@\t\r]"
CONTROL: Final = r"[\x00-\x1f\x7f\u0085\u2028\u2029]"
_CELL_FORMULA: Final = r"^ *[=+\-@]"  # after CONTROL became spaces (tab and CR included)
_CELL_FORMULA_RE: Final = re.compile(_CELL_FORMULA)
_CONTROL_RE: Final = re.compile(CONTROL)


def terminal_text(text: str, replacement: str = "?") -> str:
    """``text`` with every non-printable character replaced (see the module docstring)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else replacement for c in text)


def one_line(text: str) -> str:
    """``text`` for one line of a terminal: whitespace runs (newlines too) as one space, and
    terminal-safe (error messages quote paths, subjects and server replies)."""
    return terminal_text(" ".join(text.split()))


def spreadsheet_text(text: str) -> str:
    """A text cell a spreadsheet shows as text: controls to spaces, a formula start quoted."""
    text = _CONTROL_RE.sub(" ", text)
    return "'" + text if _CELL_FORMULA_RE.match(text) else text


def spreadsheet_expr(col: str) -> pl.Expr:
    """``spreadsheet_text`` as a polars expression over a text column (streaming exports)."""
    import polars as pl

    text = pl.col(col).cast(pl.String).str.replace_all(CONTROL, " ")
    return (
        pl.when(text.str.contains(_CELL_FORMULA)).then(pl.lit("'") + text).otherwise(text)
    ).alias(col)
