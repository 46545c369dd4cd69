"""What the end-to-end tests of the real MTAs share (tests/test_e2e_postfix.py,
test_e2e_exim.py, test_e2e_sendmail.py): mtalens as a user runs it, in its own process, and the
fake MX's recipients (tests/lab/fake_mx.py answers by local part)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

CLI: Final = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]
CLI_ENV: Final = {**os.environ, "MTALENS_LOCK_WAIT": "20"}


def rcpt(kind: str) -> str:
    """The recipient the fake MX answers as ``kind`` (ok, unknown, full, listed, ...)."""
    return f"{kind}@example.com"


def msgid(kind: str) -> str:
    return f"<e2e-{kind}.1@client.example.net>"


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    """One read-only `mtalens query` in its own process, as a user would run it."""
    out = subprocess.run(
        [*CLI, "query", "--db", str(db), "--format", "json", sql],
        capture_output=True, text=True, env=CLI_ENV, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows
