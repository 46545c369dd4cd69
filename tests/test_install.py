"""The install users get: the sdist and the wheel built as `pip install .` builds them, each
installed into a fresh venv (no `-e`, run from outside the repository), must give a working
`mtalens` whose output equals the editable checkout's. A module or data file missing from
either artefact fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_logs"
TOP = ("parsers", "pipeline")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, f"{cmd} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _shipped_files() -> set[str]:
    """What the wheel must hold: every file of parsers/ and pipeline/, as mtalens/<top>/..."""
    out = set()
    for top in TOP:
        for p in (REPO / top).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".so", ".pyc"}:
                out.add(f"mtalens/{p.relative_to(REPO).as_posix()}")
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build`: the sdist, then the wheel built from that sdist (as pip would)."""
    out = tmp_path_factory.mktemp("dist")
    # a copy without build leftovers: what a fresh clone holds
    src = tmp_path_factory.mktemp("src") / "mtalens"
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO).split("\n")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], cwd=src)
    (sdist,) = out.glob("mtalens-*.tar.gz")
    (wheel,) = out.glob("mtalens-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_wheel_holds_every_module_and_data_file(dist: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    missing = _shipped_files() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert any(n.startswith("mtalens/parsers/_pfscan") and n.endswith(".so") for n in names)
    # one import package: nothing called parsers/ or pipeline/ at the top of site-packages
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"mtalens"}, tops
    assert not any(n.startswith("mtalens/__init__") for n in names)  # a namespace package


def test_the_sdist_holds_what_a_build_needs(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    needed = {f.removeprefix("mtalens/") for f in _shipped_files()}
    needed |= {"pyproject.toml", "setup.py", "README.md"}
    assert not needed - names, sorted(needed - names)


def _venv(where: Path, artefact: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "-c", str(REPO / "requirements.lock"), str(artefact)], cwd=where.parent)
    return where / "bin"


def _session(mtalens: list[str], work: Path) -> dict[str, object]:
    """The README's first job, and then what a user looks at, from a directory of its own."""
    work.mkdir()
    env = {**os.environ, "MTALENS_DB": str(work / "m.duckdb"), "TZ": "UTC"}
    env.pop("PYTHONPATH", None)
    logs, dsns = str(SAMPLES / "postfix"), str(SAMPLES / "bounces")

    def out(*args: str) -> str:
        return _run([*mtalens, *args], cwd=work, env=env)

    return {
        "version": out("--version"),
        "ingest": json.loads(
            out("ingest", "--year", "2026", "--timezone", "UTC", "--format", "json", logs)
        ),
        "bounces parse": [
            json.loads(line)
            for line in out("bounces", "parse", "--format", "json", dsns).splitlines()
        ],
        "bounces ingest": out("bounces", "ingest", dsns),
        "report": json.loads(out("report", "--format", "json")),
        "diagnose": json.loads(out("diagnose", "--format", "json", "--since", "2026-01-01")),
        "query": out("query", "--format", "csv", "SELECT count(*) FROM deliveries"),
        # the lake, with $MTALENS_DB still set: --lake wins over it
        "ingest --lake": json.loads(
            out(
                "ingest",
                "--lake",
                str(work / "lake"),
                "--year",
                "2026",
                "--timezone",
                "UTC",
                "--format",
                "json",
                logs,
            )
        ),
        "lake info": [
            t["rows"]
            for t in json.loads(out("lake", "info", "--format", "json", str(work / "lake")))[
                "tables"
            ]
        ],
        "report --lake": json.loads(
            out("report", "--lake", str(work / "lake"), "--format", "json")
        ),
    }


@pytest.fixture(scope="module")
def editable(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return _session(
        [sys.executable, "-m", "mtalens.pipeline.cli"], tmp_path_factory.mktemp("e") / "w"
    )


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_mtalens_works_like_the_checkout(
    kind: str,
    dist: dict[str, Path],
    editable: dict[str, object],
    tmp_path: Path,
) -> None:
    bin_ = _venv(tmp_path / "venv", dist[kind])
    py = str(bin_ / "python")
    # the installed package, not the checkout: run from elsewhere, without the repo on the path
    where = _run([py, "-c", "import mtalens.pipeline as p; print(p.__file__)"], cwd=tmp_path)
    assert "site-packages" in where and str(REPO) not in where
    for name in TOP:  # no top-level `parsers` / `pipeline` to collide with users' own
        r = subprocess.run([py, "-c", f"import {name}"], cwd=tmp_path, capture_output=True)
        assert r.returncode != 0 and b"ModuleNotFoundError" in r.stderr
    fast = _run([py, "-c", "from mtalens.pipeline import fastpath; print(fastpath.enabled())"],
                cwd=tmp_path)  # fmt: skip
    assert fast.strip() == "True"  # the C scanner was built and shipped
    got = _session([str(bin_ / "mtalens")], tmp_path / "w")
    assert got["version"] == editable["version"] and str(got["version"]).startswith("mtalens ")
    ingest = got["ingest"]
    assert isinstance(ingest, dict) and ingest["lines_read"] > 0
    for key in editable:
        assert got[key] == editable[key], key
