"""Golden files: what the pure parsers make of each line of a sample log, as JSON lines."""

from __future__ import annotations

import dataclasses
import json
from datetime import tzinfo
from pathlib import Path
from typing import Any

from mtalens.parsers.lines import Malformed, Skipped, parse_line
from mtalens.parsers.syslog import SyslogClock


def describe_line(raw: bytes, clock: SyslogClock) -> dict[str, Any]:
    v = parse_line(raw, clock)
    if isinstance(v, Skipped):
        return {"outcome": "ignored", "rule": v.rule}
    if isinstance(v, Malformed):
        return {"outcome": "quarantined", "reason": v.code}
    fields = {k: val for k, val in dataclasses.asdict(v.record).items() if val is not None}
    return {
        "outcome": "stored",
        "logged_at": v.envelope.logged_at.isoformat(),
        "host": v.envelope.host,
        "instance": v.instance,
        "service": v.service,
        "record": type(v.record).__name__,
        "fields": json.loads(json.dumps(fields)),
    }


def describe_file(path: Path, *, year: int, tz: tzinfo) -> list[dict[str, Any]]:
    clock = SyslogClock(year=year, tz=tz)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [{"line": i + 1, **describe_line(raw, clock)} for i, raw in enumerate(lines)]
