"""Golden files: what the pure parsers make of each line of a sample log, as JSON lines."""

from __future__ import annotations

import dataclasses
import json
from datetime import tzinfo
from pathlib import Path
from typing import Any

from mtalens.parsers.formats import LineParser
from mtalens.parsers.lines import Malformed, Skipped, parse_line
from mtalens.parsers.syslog import SyslogClock


def _fields(rec: Any) -> dict[str, Any]:
    fields = {k: val for k, val in dataclasses.asdict(rec).items() if val is not None}
    out: dict[str, Any] = json.loads(json.dumps(fields))
    return out


def describe_line(raw: bytes, clock: SyslogClock, parse: LineParser = parse_line) -> dict[str, Any]:
    v = parse(raw, clock)
    if isinstance(v, Skipped):
        return {"outcome": "ignored", "rule": v.rule}
    if isinstance(v, Malformed):
        return {"outcome": "quarantined", "reason": v.code}
    out: dict[str, Any] = {
        "outcome": "stored",
        "logged_at": v.envelope.logged_at.isoformat(),
        "host": v.envelope.host,
        "instance": v.instance,
        "service": v.service,
        "record": type(v.record).__name__,
        "fields": _fields(v.record),
    }
    if v.extra:  # more records from the same line (an Exim arrival); Postfix lines have none
        out["extra"] = [{"record": type(r).__name__, "fields": _fields(r)} for r in v.extra]
    return out


def describe_file(
    path: Path, *, year: int, tz: tzinfo, parse: LineParser = parse_line
) -> list[dict[str, Any]]:
    clock = SyslogClock(year=year, tz=tz)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [{"line": i + 1, **describe_line(raw, clock, parse)} for i, raw in enumerate(lines)]
