"""Golden files: what the pure parsers make of each line of a sample log, as JSON lines."""

from __future__ import annotations

import dataclasses
import json
from datetime import tzinfo
from pathlib import Path
from typing import Any

from parsers import postfix as pf
from parsers.errors import ParseError
from parsers.syslog import SyslogClock, parse_envelope, split_program


def describe_line(raw: bytes, clock: SyslogClock) -> dict[str, Any]:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw:
        return {"outcome": "ignored", "rule": "empty-line"}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"outcome": "quarantined", "reason": "invalid-utf8"}
    if "\x00" in text:
        return {"outcome": "quarantined", "reason": "nul-byte"}
    try:
        env = parse_envelope(text, clock)
        if not pf.is_postfix_program(env.program):
            return {"outcome": "ignored", "rule": "other-program", "program": env.program}
        instance, service = split_program(env.program)
        rec = pf.parse_message(service, env.text)
    except ParseError as exc:
        return {"outcome": "quarantined", "reason": exc.code}
    if isinstance(rec, pf.Ignored):
        return {"outcome": "ignored", "rule": rec.rule}
    fields = {k: v for k, v in dataclasses.asdict(rec).items() if v is not None}
    return {
        "outcome": "stored",
        "logged_at": env.logged_at.isoformat(),
        "host": env.host,
        "instance": instance,
        "service": service,
        "record": type(rec).__name__,
        **{"fields": json.loads(json.dumps(fields))},
    }


def describe_file(path: Path, *, year: int, tz: tzinfo) -> list[dict[str, Any]]:
    clock = SyslogClock(year=year, tz=tz)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [{"line": i + 1, **describe_line(raw, clock)} for i, raw in enumerate(lines)]
