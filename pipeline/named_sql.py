"""Named SQL: the ``.sql`` files in ``pipeline/queries/``, split on ``-- name: <name>`` lines."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def named_queries(file: str) -> dict[str, str]:
    text = resources.files("mtalens.pipeline").joinpath("queries", file).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    name: str | None = None
    buf: list[str] = []
    for line in text.splitlines():
        if line.startswith("-- name: "):
            if name is not None:
                out[name] = "\n".join(buf).strip()
            name, buf = line[9:].strip(), []
        elif name is not None:
            buf.append(line)
    if name is not None:
        out[name] = "\n".join(buf).strip()
    return out
