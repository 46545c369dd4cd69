"""Findings of the live checks (`probe`, `audit`) as terminal text.

Every string that came from a remote server or a configuration file goes through
:func:`mtalens.parsers.smtp.printable` first, so a reply cannot drive the terminal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from mtalens.parsers.smtp import printable
from mtalens.pipeline.diagnose import Finding

_WIDTH = 100


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        printable(text), _WIDTH, initial_indent=indent, subsequent_indent=indent
    ) or [indent]


def findings_text(findings: Sequence[Finding], *, skip_facts: frozenset[str] = frozenset()) -> str:
    """One block per finding: severity, id and title, then facts, examples and the remedy."""
    if not findings:
        return "no findings\n"
    lines: list[str] = []
    for f in findings:
        lines.append(printable(f"[{f.severity}] {f.title}"))
        lines.append(printable(f"    id: {f.id}"))
        for name, value in f.evidence.facts:
            if name in skip_facts or value in (None, "", ()):
                continue
            shown = ", ".join(value) if isinstance(value, tuple) else str(value)
            lines.extend(_wrap(f"{name}: {shown}", "    "))
        for example in f.evidence.examples:
            for line in example.splitlines():
                lines.append("    | " + printable(line))
        lines.extend(_wrap(f"remedy: {f.remedy}", "    "))
    return "\n".join(lines) + "\n"
