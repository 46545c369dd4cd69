"""Golden files for the log-format registry: each sample_logs/<format>/<case>.log has
<case>.expected.jsonl next to it, read with that registry row's parser; and every row of
mtalens.parsers.formats.FORMATS has at least one sample (house style, section 2).

sample_logs/exim/real-exim-4.96.log is the main log of a real Exim 4.96 (Debian's
exim4-daemon-light; tests/lab/exim_sample.py recorded it); handwritten-4.97.log is written by
hand after the Exim specification's chapter "Log files" (4.97 message ids, the timezone,
millisec and pid selectors, shapes the lab does not produce).

Regenerate with `pytest tests/test_golden_exim.py --update-golden` and review the diff.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from mtalens.parsers import formats
from tests.golden import describe_file

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
EXIM_CASES = sorted((SAMPLES / "exim").glob("*.log"))


@pytest.mark.parametrize("fmt", formats.FORMATS, ids=lambda f: f.name)
def test_every_format_has_a_sample_and_its_expected_file(fmt: formats.LogFormat) -> None:
    cases = sorted((SAMPLES / fmt.name).glob("*.log"))
    assert cases, f"no sample_logs/{fmt.name}/*.log for registry row {fmt.name!r}"
    assert [p.name for p in cases if not p.with_suffix(".expected.jsonl").exists()] == []


@pytest.mark.parametrize("case", EXIM_CASES, ids=lambda p: p.stem)
def test_exim_golden(case: Path, update_golden: bool) -> None:
    got = describe_file(case, year=2026, tz=UTC, parse=formats.EXIM.parse)
    expected_path = case.with_suffix(".expected.jsonl")
    if update_golden:
        expected_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in got))
    expected = [json.loads(x) for x in expected_path.read_text().splitlines()]
    assert got == expected


@pytest.mark.parametrize("case", EXIM_CASES, ids=lambda p: p.stem)
def test_exim_samples_are_sniffed_as_exim(case: Path) -> None:
    assert formats.detect(case.read_bytes()[:1024]) is formats.EXIM


@pytest.mark.parametrize("case", sorted((SAMPLES / "postfix").glob("*.log")), ids=lambda p: p.stem)
def test_postfix_samples_are_not_taken_for_exim(case: Path) -> None:
    assert formats.detect(case.read_bytes()[:1024]) is formats.POSTFIX


def test_message_ids_of_both_forms() -> None:
    from mtalens.parsers.eximlog import id_time, is_message_id

    assert is_message_id("1xZIN1-0002xK-2s")  # 4.96
    assert is_message_id("1xYJiU-00000000Bw2-3Xd0")  # 4.97
    assert not is_message_id("3F2A41C0B7")  # a Postfix queue id
    assert not is_message_id("1xZIN1-0002xK-2")
    # the real sample's first message: its id's time is its <= line's (01:45:55 UTC)
    assert id_time("1xZIN1-0002xK-2s") == 1796348755
