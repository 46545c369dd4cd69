"""A directory of many small files (one log per host or per hour, shipped by a collector):
one transaction for many files on the fast path (each file's checkpoint row in it), the same
rows as the pure path's file-by-file commits, and nothing read twice when a source comes
again in the same run."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_fastpath import ROOT, _assert_same, _run_paths


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("many")
    log = root / "gen.log"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_postfix_logs.py"), "--lines", "1500",
         "--out", str(log), "--seed", "7", "--style", "rfc3164"],
        check=True, capture_output=True,
    )  # fmt: skip
    lines = log.read_bytes().splitlines(keepends=True)
    out = []
    for i in range(0, len(lines), 3):  # 500 files of 3 lines, in log order
        f = root / "d" / f"part-{i // 3:05d}.log"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"".join(lines[i : i + 3]))
        out.append(f)
    return out


def test_small_files_share_a_transaction_and_match_the_pure_path(
    small_files: list[Path],
) -> None:
    pure, _ = _run_paths(small_files, fast=False)
    fast, ing = _run_paths(small_files, fast=True)
    _assert_same(pure, fast)
    assert len(fast["checkpoints"]) == len(small_files)
    assert ing._fast_path.commits == 1  # not one per file
    assert ing.stats.sources == len(small_files) and ing.stats.skipped_sources == 0


def test_a_source_read_twice_in_one_run_adds_nothing(
    small_files: list[Path], tmp_path: Path
) -> None:
    first = small_files[10]
    copy = tmp_path / "part.log.1.gz"  # the same stream, rotated and compressed
    copy.write_bytes(gzip.compress(first.read_bytes()))
    once, _ = _run_paths(small_files[:20], fast=True)
    twice, ing = _run_paths([*small_files[:20], first, copy], fast=True)
    # a checkpoint follows its source's latest name and inode; its key and offset stay
    a, b = (sorted((r[0], r[6]) for r in t.pop("checkpoints")) for t in (once, twice))
    assert a == b
    _assert_same(once, twice)
    assert ing.stats.skipped_sources == 2
