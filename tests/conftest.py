"""Shared test helpers.

`need()` is how a test asks for a real component (Debian's postfix, a DNS server, Chromium).
Under CI (`CI=true`, set by `.ci/run`) a missing component fails the test: CI must not go
green by skipping. On a developer machine it skips with the reason.
"""

from __future__ import annotations

import os
import shutil

import pytest


def need(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"required component missing under CI: {what}")
    pytest.skip(f"component missing: {what}")


def need_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (
            p
            for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}")
            if os.path.exists(p)
        ),
        None,
    )
    need(path is not None, f"binary {name!r} (install its Debian package; .ci/run does)")
    assert path is not None
    return path


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite sample_logs/**/*.expected.jsonl from the current parsers (review the diff!)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
