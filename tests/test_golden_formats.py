"""Golden files for the log-format registry: each sample_logs/<format>/<case>.log has
<case>.expected.jsonl next to it, read with that registry row's parser; and every row of
mtalens.parsers.formats.FORMATS has at least one sample (house style, section 2).

sample_logs/exim/real-exim-4.96.log is the main log of a real Exim 4.96 (Debian's
exim4-daemon-light; tests/lab/exim_sample.py recorded it); handwritten-4.97.log is written by
hand after the Exim specification's chapter "Log files" (4.97 message ids, the timezone,
millisec and pid selectors, shapes the lab does not produce). sample_logs/sendmail/
handwritten-8.15.log is written after the sources cited in mtalens.parsers.sendmaillog.
(Postfix's samples have their own golden test, tests/test_golden_postfix.py.)

Regenerate with `pytest tests/test_golden_formats.py --update-golden` and review the diff.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from mtalens.parsers import formats
from tests.golden import describe_file

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
CASES = [
    (fmt, case)
    for fmt in formats.FORMATS
    if fmt is not formats.POSTFIX
    for case in sorted((SAMPLES / fmt.name).glob("*.log"))
]


def _case_id(c: tuple[formats.LogFormat, Path]) -> str:
    return f"{c[0].name}-{c[1].stem}"


@pytest.mark.parametrize("fmt", formats.FORMATS, ids=lambda f: f.name)
def test_every_format_has_a_sample_and_its_expected_file(fmt: formats.LogFormat) -> None:
    cases = sorted((SAMPLES / fmt.name).glob("*.log"))
    assert cases, f"no sample_logs/{fmt.name}/*.log for registry row {fmt.name!r}"
    assert [p.name for p in cases if not p.with_suffix(".expected.jsonl").exists()] == []


@pytest.mark.parametrize("fmt_case", CASES, ids=_case_id)
def test_golden(fmt_case: tuple[formats.LogFormat, Path], update_golden: bool) -> None:
    fmt, case = fmt_case
    got = describe_file(case, year=2026, tz=UTC, parse=fmt.parse)
    expected_path = case.with_suffix(".expected.jsonl")
    if update_golden:
        expected_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in got))
    expected = [json.loads(x) for x in expected_path.read_text().splitlines()]
    assert got == expected


@pytest.mark.parametrize("fmt_case", CASES, ids=_case_id)
def test_samples_are_sniffed_as_their_format(fmt_case: tuple[formats.LogFormat, Path]) -> None:
    fmt, case = fmt_case
    assert formats.detect(case.read_bytes()[:1024]) is fmt


@pytest.mark.parametrize("case", sorted((SAMPLES / "postfix").glob("*.log")), ids=lambda p: p.stem)
def test_postfix_samples_are_taken_for_postfix(case: Path) -> None:
    assert formats.detect(case.read_bytes()[:1024]) is formats.POSTFIX


def test_message_ids_of_both_forms() -> None:
    from mtalens.parsers.eximlog import id_time, is_message_id

    assert is_message_id("1xZIN1-0002xK-2s")  # 4.96
    assert is_message_id("1xYJiU-00000000Bw2-3Xd0")  # 4.97
    assert not is_message_id("3F2A41C0B7")  # a Postfix queue id
    assert not is_message_id("1xZIN1-0002xK-2")
    # the real sample's first message: its id's time is its <= line's (01:45:55 UTC)
    assert id_time("1xZIN1-0002xK-2s") == 1796348755
