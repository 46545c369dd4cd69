"""Golden files: each sample_logs/postfix/<case>.log has <case>.expected.jsonl next to it.

Regenerate with `pytest tests/test_golden_postfix.py --update-golden` and review the diff.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from tests.golden import describe_file

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
CASES = sorted(p for p in SAMPLES.glob("*.log"))


def test_every_sample_has_a_golden_file() -> None:
    assert CASES, "no sample logs found"
    missing = [p.name for p in CASES if not p.with_suffix(".expected.jsonl").exists()]
    assert missing == []


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden(case: Path, update_golden: bool) -> None:
    got = describe_file(case, year=2026, tz=UTC)
    expected_path = case.with_suffix(".expected.jsonl")
    if update_golden:
        expected_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in got))
    expected = [json.loads(x) for x in expected_path.read_text().splitlines()]
    assert got == expected
