"""`mtalens watch --reports-maildir`: DMARC and TLS-RPT report mail delivered into a Maildir
is read by the daemon, lands in the views and in diagnose, and moves to cur/ only after its
rows (or its quarantine row) are committed; a second window adds nothing."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from pathlib import Path

from mtalens.pipeline.diagnose import Context, diagnose
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import WatchConfig
from tests.report_samples import gzipped, report_mail
from tests.test_tlsrpt import google_style, microsoft_style


def _views(db: Path) -> tuple[int, int, int]:
    with Store.open(db, read_only=True) as s:
        row = s.con.execute(
            "SELECT (SELECT count(*) FROM tlsrpt_reports), (SELECT count(*) FROM tlsrpt_failures),"
            " (SELECT count(*) FROM quarantine WHERE source_kind = 'mail')"
        ).fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


def test_report_mail_in_a_maildir_is_read_by_the_daemon(tmp_path: Path) -> None:
    md_path = tmp_path / "dmarc"
    md = mailbox.Maildir(md_path, create=True)
    md.add(report_mail(gzipped(google_style()), name="google.com!example.com!1.json.gz",
                       content_type="application/tlsrpt+gzip"))  # fmt: skip
    md.add(report_mail(gzipped(microsoft_style()), name="microsoft.com!example.com!2.json.gz",
                       content_type="application/tlsrpt+gzip"))  # fmt: skip
    md.add(b"From: someone@example.org\nSubject: hello\n\nnot a report\n")
    db = tmp_path / "w.duckdb"
    w = Watcher(WatchConfig(db=str(db), report_maildirs=(str(md_path),), timezone="UTC"))
    w.window()
    assert _views(db) == (2, 3, 1)  # two reports, their three failure rows, one quarantined
    assert not list((md_path / "new").iterdir()) and len(list((md_path / "cur").iterdir())) == 3
    assert w.stats.report_messages == 3
    w.window()  # nothing new, nothing doubled
    assert _views(db) == (2, 3, 1)
    w.close()
    with Store.open(db, read_only=True) as s:
        found = diagnose(Context(store=s, since=datetime(1970, 1, 1, tzinfo=UTC),
                                 until=datetime(9999, 1, 1, tzinfo=UTC)))  # fmt: skip
    assert any(f.problem == "tlsrpt-failures" for f in found)


def test_a_missing_reports_maildir_is_named(tmp_path: Path) -> None:
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"),
                            report_maildirs=(str(tmp_path / "nope"),)))  # fmt: skip
    assert w.unmatched() == [f"--reports-maildir {tmp_path / 'nope'}: not a Maildir (no new/)"]
    w.close()
