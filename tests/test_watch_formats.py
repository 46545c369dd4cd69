"""Which format `mtalens watch` reads each log as: detected from its first lines, or forced
for one log (``logs = [{path = ..., format = ...}]``) or every log (``log_format``,
``--log-format``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher, build_watcher
from mtalens.pipeline.watch_config import WatchConfig, WatchConfigError, load_watch_config

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"


def _logs(tmp_path: Path) -> tuple[Path, Path]:
    exim = tmp_path / "mainlog"
    shutil.copy(SAMPLES / "exim/real-exim-4.96.log", exim)
    sendmail = tmp_path / "maillog"
    shutil.copy(SAMPLES / "sendmail/handwritten-8.15.log", sendmail)
    return exim, sendmail


def _by_mta(db: Path) -> dict[str, int]:
    with Store.open(db, read_only=True) as s:
        return dict(s.con.execute("SELECT mta, count(*) FROM deliveries GROUP BY mta").fetchall())


def test_each_log_is_detected(tmp_path: Path) -> None:
    exim, sendmail = _logs(tmp_path)
    db = tmp_path / "w.duckdb"
    w = Watcher(WatchConfig(db=str(db), logs=(str(exim), str(sendmail)), timezone="UTC",
                            year=2026))  # fmt: skip
    w.window()
    w.close()
    got = _by_mta(db)
    assert set(got) == {"exim", "sendmail"} and min(got.values()) > 0


def test_a_forced_format_wins_over_detection(tmp_path: Path) -> None:
    exim, sendmail = _logs(tmp_path)
    db = tmp_path / "w.duckdb"
    cfg = tmp_path / "mtalens.toml"
    # the Sendmail log forced to Postfix: its lines are other programs' to that reader
    cfg.write_text(
        f'[watch]\ndb = "{db}"\ntimezone = "UTC"\nyear = 2026\n'
        f'logs = ["{exim}", {{path = "{sendmail}", format = "postfix"}}]\n'
    )
    c = load_watch_config(cfg)
    assert c.logs == (str(exim), str(sendmail))
    assert c.format_of(str(sendmail)) == "postfix" and c.format_of(str(exim)) is None
    w = build_watcher(cfg)
    w.window()
    w.close()
    assert set(_by_mta(db)) == {"exim"}
    with Store.open(db, read_only=True) as s:
        rules = dict(
            s.con.execute(
                "SELECT rule, sum(lines) FROM line_accounting_log WHERE outcome = 'ignored' "
                "GROUP BY rule"
            ).fetchall()
        )
    assert rules.get("other-program", 0) >= 27


def test_log_format_for_every_log(tmp_path: Path) -> None:
    exim, _ = _logs(tmp_path)
    db = tmp_path / "w.duckdb"
    w = build_watcher(None, db=str(db), logs=[str(exim)], timezone="UTC", log_format="sendmail")
    w.window()
    w.close()
    assert _by_mta(db) == {}  # Exim's lines are no Sendmail lines


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('logs = [{path = "/x", format = "qmail"}]', "unknown log format 'qmail'"),
        ('log_format = "qmail"\nlogs = ["/x"]', "unknown log format 'qmail'"),
        ('logs = [{path = "/x", fmt = "exim"}]', "unknown key 'fmt'"),
        ('logs = [{format = "exim"}]', "paths, or tables"),
    ],
)
def test_bad_formats_are_config_errors(tmp_path: Path, text: str, error: str) -> None:
    cfg = tmp_path / "mtalens.toml"
    cfg.write_text(f"[watch]\n{text}\n")
    with pytest.raises(WatchConfigError, match=error):
        load_watch_config(cfg).checked()


def test_a_young_log_no_format_claims_is_detected_once_it_can_be(tmp_path: Path) -> None:
    # Exim's daemon starts its main log with a warning no sniffer claims (the real 4.96 in
    # tests/lab/exim_lab.py without a TLS certificate); the format follows from later lines
    log = tmp_path / "mainlog"
    log.write_bytes(
        b"2026-12-04 01:45:54 Warning: No server certificate defined; will use a selfsigned one.\n"
        b" Suggested action: either install a certificate or change tls_advertise_hosts option\n"
    )
    db = tmp_path / "w.duckdb"
    w = Watcher(WatchConfig(db=str(db), logs=(str(log),), timezone="UTC", year=2026))
    try:
        w.window()
        with log.open("ab") as fh:
            fh.write((SAMPLES / "exim/real-exim-4.96.log").read_bytes())
        w.window()
    finally:
        w.close()
    got = _by_mta(db)
    assert set(got) == {"exim"} and got["exim"] > 10
    with Store.open(db, read_only=True) as s:
        quarantined = s.con.execute(
            "SELECT count(*) FROM line_accounting_log WHERE outcome = 'quarantined'"
        ).fetchone()
    assert quarantined == (0,)
