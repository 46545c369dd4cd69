"""Writing a generator's lines in large chunks (the log generators of this folder)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

CHUNK_LINES = 20_000


def write_chunked(lines: Iterable[str], out: IO[bytes]) -> tuple[int, int]:
    """Write ``lines`` (each with its newline) to ``out``; returns (lines, bytes) written."""
    total = n = 0
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= CHUNK_LINES:
            data = "".join(chunk).encode()
            out.write(data)
            total += len(data)
            n += len(chunk)
            chunk.clear()
    if chunk:
        data = "".join(chunk).encode()
        out.write(data)
        total += len(data)
        n += len(chunk)
    return n, total
