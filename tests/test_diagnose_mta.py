"""Diagnoses of Exim and Sendmail logs: the same problem classes, remedies in the MTA's own terms
(pipeline/remedies_mta.py); Postfix's stay as they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app
from mtalens.pipeline.remedies_mta import REMEDIES, template_for

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
runner = CliRunner()
# words only Postfix's remedies use
POSTFIX_WORDS = re.compile(r"postconf|postqueue|master\.cf|main\.cf|smtpd_|qshape|relayhost")


def _diagnose(tmp_path: Path, log: Path) -> list[dict[str, object]]:
    db = tmp_path / "s.duckdb"
    r = runner.invoke(app, ["ingest", "--db", str(db), "--year", "2026", "--timezone", "UTC",
                            str(log)])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["diagnose", "--db", str(db), "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    findings: list[dict[str, object]] = json.loads(r.stdout)
    return findings


def test_a_sendmail_blocklisting_gets_sendmail_remedies(tmp_path: Path) -> None:
    found = _diagnose(tmp_path, SAMPLES / "sendmail/real-sendmail-8.17.log")
    listed = [f for f in found if f["problem"] == "blocklisted"]
    assert len(listed) == 1
    remedy = str(listed[0]["remedy"])
    assert "`mailq`" in remedy and "SMART_HOST" in remedy
    assert "check.spamhaus.org" in remedy  # the list's own delisting steps, as for Postfix
    assert not POSTFIX_WORDS.search(remedy)


def test_postfix_remedies_are_unchanged(tmp_path: Path) -> None:
    found = _diagnose(tmp_path, SAMPLES / "postfix/real-problems-3.7.log")
    assert found
    assert any("postconf" in str(f["remedy"]) for f in found)


@pytest.mark.parametrize("mta", sorted(REMEDIES))
def test_every_template_formats_and_speaks_its_mta(mta: str) -> None:
    row = {"subject": "spamhaus", "delisting": "ask", "delivered_later": 3, "names": "192.0.2.1"}
    for key, template in REMEDIES[mta].items():
        text = template.format_map(row)
        assert "{" not in text.replace("${if eq{$tls_in_cipher}{}{}{*}}", ""), key
        assert not POSTFIX_WORDS.search(text), (mta, key)
    # a kind of one problem falls back to the problem's own entry, else to Postfix's remedy
    assert template_for(mta, "throttling", "rate-limiting") is not None
    assert template_for(mta, "mail-loop", "example.com") is None
    assert template_for("postfix", "blocklisted", "spamhaus") is None
