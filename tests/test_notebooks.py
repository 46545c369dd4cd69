"""The notebooks run headless (nbclient) against a store built from sample_logs/ and the bounce
fixtures, and each draws its plots; and again while a real `mtalens watch` process writes to the
store. They are committed without outputs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from mtalens.pipeline import bounces
from mtalens.pipeline.aggregate_reports import ingest_reports
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.store import Store, StoreError
from tests.report_samples import report_mail

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
        got = ingest_reports(store, [ROOT / "sample_logs" / "reports"])
        assert got.dmarc_reports and got.tlsrpt_reports and not got.quarantined
    return path


def test_the_three_notebooks_exist_without_outputs() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"overview", "delays", "suppressions", "reports"}
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, p.name


def assert_drawn(png_b64: str, name: str) -> None:
    """A figure with something on it: bars or lines in colours other than the background and
    the axes' greys (an empty plot, "No delays", is white, black and grey only)."""
    import base64
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(base64.b64decode(png_b64)), format="png")[..., :3]
    assert img.shape[0] > 100 and img.shape[1] > 200, (name, img.shape)
    spread = img.max(axis=2) - img.min(axis=2)  # 0 for white, black and greys
    coloured = float((spread > 0.15).mean())
    assert coloured > 0.001, f"{name}: a plot with nothing drawn ({coloured:.4f} coloured)"


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
    # every notebook shows at least one plot and one table, and no plot is blank
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, path.name
    for png in pngs:
        assert_drawn(png, path.name)
    assert any("text/html" in o.get("data", {}) for o in outputs), path.name


# -- while `mtalens watch` runs -----------------------------------------------------------------

CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]
LIVE_LOG = ROOT / "sample_logs" / "postfix" / "real-problems-3.7.log"
DSNS = sorted((ROOT / "tests" / "fixtures" / "bounces").glob("*.eml"))


def _shown_rows(outputs: list[Any]) -> list[int]:
    """Row counts of the polars frames a notebook displayed ("shape: (rows, cols)")."""
    rows = []
    for o in outputs:
        text = o.get("data", {}).get("text/plain", "")
        m = re.match(r"shape: \((\d+), \d+\)", text)
        if m:
            rows.append(int(m.group(1)))
    return rows


def _committed(db: Path) -> tuple[int, int]:
    """(log bytes committed, bounce reports stored); (-1, -1) before the first window."""
    if not db.exists():
        return -1, -1
    try:
        with Store.open(db, read_only=True) as s:
            row = s.con.execute(
                'SELECT (SELECT coalesce(sum("offset"), 0) FROM checkpoints),'
                " (SELECT count(*) FROM bounce_reports)"
            ).fetchone()
    except StoreError:
        return -1, -1
    assert row is not None
    return int(row[0]), int(row[1])


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# RFC 8460 section 5.3 for TLS-RPT; the archive types receivers use for DMARC (RFC 7489 7.2.1.1)
_REPORT_TYPES = {".json.gz": "application/tlsrpt+gzip", ".json": "application/tlsrpt+json",
                 ".xml.gz": "application/gzip", ".zip": "application/zip"}  # fmt: skip


@pytest.mark.slow
def test_notebooks_run_while_watch_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `mtalens watch` process tails a log that a writer keeps appending to (and a
    Maildir it keeps delivering DSNs into, and a Maildir of report mail) while nbclient
    executes the notebooks against the same store: every notebook runs to completion and shows data, and the daemon keeps
    committing meanwhile (the notebooks never hold the store)."""
    lines = LIVE_LOG.read_bytes().splitlines(keepends=True)
    log, db, err = tmp_path / "mail.log", tmp_path / "live.duckdb", tmp_path / "watch.err"
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)

    def deliver(src: Path) -> None:  # maildir(5): write in tmp/, then rename into new/
        (maildir / "tmp" / src.name).write_bytes(src.read_bytes())
        (maildir / "tmp" / src.name).rename(maildir / "new" / src.name)

    first = len(lines) // 5
    log.write_bytes(b"".join(lines[:first]))
    for src in DSNS[: len(DSNS) // 2]:
        deliver(src)
    # the sample DMARC and TLS-RPT reports, mailed as receivers mail them (for reports.ipynb)
    reports_md = tmp_path / "Reports"
    for sub in ("new", "cur", "tmp"):
        (reports_md / sub).mkdir(parents=True)
    for i, f in enumerate(sorted((ROOT / "sample_logs" / "reports").iterdir())):
        mail = report_mail(f.read_bytes(), name=f.name, content_type=_REPORT_TYPES[
            next(ext for ext in _REPORT_TYPES if f.name.endswith(ext))])  # fmt: skip
        (reports_md / "new" / f"report-{i}").write_bytes(mail)
    env = {**os.environ, "MTALENS_LOCK_WAIT": "20"}
    with open(err, "ab") as fh:
        proc = subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--maildir", str(maildir),
             "--reports-maildir", str(reports_md),
             "--timezone", "UTC", "--poll-interval", "0.1", "--commit-interval", "0.2"],
            stdout=subprocess.DEVNULL, stderr=fh, env=env,
        )  # fmt: skip
    appended_at: list[float] = []
    stop = threading.Event()

    def writer() -> None:  # the rest of the log in small chunks, the other DSNs in between
        rest, mails = lines[first:], list(DSNS[len(DSNS) // 2 :])
        while (rest or mails) and not stop.is_set():
            chunk, rest = rest[:15], rest[15:]
            with open(log, "ab") as out:
                out.write(b"".join(chunk))
            if mails:
                deliver(mails.pop())
            appended_at.append(time.monotonic())
            stop.wait(0.25)

    thread = threading.Thread(target=writer, daemon=True)
    try:
        _wait(lambda: min(_committed(db)) > 0, 60, "the daemon's first commit")
        reports_at_start = _committed(db)[1]
        thread.start()
        monkeypatch.setenv("MTALENS_DB", str(db))
        monkeypatch.setenv("MTALENS_LOCK_WAIT", "20")
        monkeypatch.delenv("MPLBACKEND", raising=False)
        started = time.monotonic()
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            NotebookClient(
                nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
            ).execute()
            outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
            assert [o for o in outputs if o.output_type == "error"] == [], path.name
            assert any("image/png" in o.get("data", {}) for o in outputs), path.name
            rows = _shown_rows(outputs)
            assert rows and max(rows) > 0, (path.name, rows)
            assert proc.poll() is None, err.read_text()
        finished = time.monotonic()
        # the writer was appending while the notebooks ran, and the daemon kept up
        assert any(started < t < finished for t in appended_at)
        thread.join(timeout=120)
        size = log.stat().st_size
        _wait(
            lambda: _committed(db)[0] == size and not any((maildir / "new").iterdir()),
            60,
            "the daemon to commit everything",
        )
        assert _committed(db)[1] > reports_at_start  # the DSNs delivered meanwhile are in
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
