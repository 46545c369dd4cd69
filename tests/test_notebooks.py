"""The notebooks run headless (nbclient) against a store built from sample_logs/ and the bounce
fixtures, and each draws its plots. They are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline import bounces
from pipeline.ingest import LogIngestor
from pipeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import UTC, datetime

    path = tmp_path_factory.mktemp("nb") / "nb.duckdb"
    with Store.open(path) as store:
        LogIngestor(store, tz=UTC, year=2026).run([ROOT / "sample_logs" / "postfix"])
        bounces.ingest(
            store,
            sorted((ROOT / "tests" / "fixtures" / "bounces").glob("*.eml")),
            now=lambda: datetime(2026, 12, 2, tzinfo=UTC),
        )
    return path


def test_the_three_notebooks_exist_without_outputs() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"overview", "delays", "suppressions"}
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, p.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(
    path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTALENS_DB", str(store_path))
    # the kernel draws with matplotlib-inline: figures become PNG outputs, no display needed
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    # every notebook shows at least one plot and one table
    assert any("image/png" in o.get("data", {}) for o in outputs), path.name
    assert any("text/html" in o.get("data", {}) for o in outputs), path.name
