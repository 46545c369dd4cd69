"""Sources that are not plain logs: rotated copies compressed by the real gzip, bzip2, xz and
zstd tools (what logrotate's `compresscmd` runs), damaged compressed files, binaries, mail and
Maildirs handed to `ingest`. Each is read, or set aside with a reason; none stops the run."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.pipeline.cli import app
from mtalens.pipeline.ingest import IngestError, IngestStats, LogIngestor, expand_paths
from mtalens.pipeline.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs" / "postfix"
FIXED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TOOLS = {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # .ci/run installs them; a machine without one cannot run this test
        pytest.fail(f"{name} is not installed (.ci/run installs it)")
    return path


def compress(src: Path, dest: Path, ext: str) -> Path:
    with dest.open("wb") as out:
        subprocess.run([_tool(TOOLS[ext]), "-c", str(src)], stdout=out, check=True)
    return dest


def ingest(store: Store, *paths: Path) -> IngestStats:
    return LogIngestor(store, tz=UTC, year=2026, clock=lambda: FIXED).run(paths)


def counts(store: Store) -> tuple[int, ...]:
    row = store.con.execute(
        "SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM messages),"
        " (SELECT count(*) FROM rejections)"
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("ext", sorted(TOOLS))
def test_each_compression_reads_like_the_plain_file(tmp_path: Path, ext: str) -> None:
    plain = SAMPLES / "mx1-rfc3164.log"
    packed = compress(plain, tmp_path / f"mail.log.1.{ext}", ext)
    with Store.open(tmp_path / "plain.duckdb") as a, Store.open(tmp_path / "packed.duckdb") as b:
        sa, sb = ingest(a, plain), ingest(b, packed)
        assert (sb.read, sb.stored, sb.ignored, sb.quarantined) == (
            sa.read,
            sa.stored,
            sa.ignored,
            sa.quarantined,
        )
        assert sb.read > 0 and not sb.failed_sources
        assert counts(a) == counts(b)
        # the compressed copy is the same stream: read again after the plain file, it adds nothing
        again = ingest(a, packed)
        assert again.read == 0 and again.skipped_sources == 1


def test_a_rotated_directory_with_every_compression(tmp_path: Path) -> None:
    # six days of one log, split into six files and rotated the way logrotate names them
    lines = (SAMPLES / "real-postfix-3.7.log").read_bytes().splitlines(keepends=True)
    parts = [lines[i::6] for i in range(6)]  # disjoint heads, so six different sources
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "mail.log").write_bytes(b"".join(parts[0]))
    (logs / "mail.log.1").write_bytes(b"".join(parts[1]))
    for n, ext in enumerate(sorted(TOOLS), start=2):
        raw = tmp_path / f"part{n}"
        raw.write_bytes(b"".join(parts[n]))
        compress(raw, logs / f"mail.log.{n}.{ext}", ext)
    names = [p.name for p in expand_paths([logs])]
    assert names == [
        "mail.log.5.zst",
        "mail.log.4.xz",
        "mail.log.3.gz",
        "mail.log.2.bz2",
        "mail.log.1",
        "mail.log",
    ]
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = ingest(store, logs)
    assert stats.sources == 6 and not stats.failed_sources and stats.balanced
    assert stats.read == len(lines)


@pytest.mark.parametrize("ext", sorted(TOOLS))
def test_a_truncated_compressed_file_keeps_what_came_before_and_goes_on(
    tmp_path: Path, ext: str
) -> None:
    big = tmp_path / "big.log"
    # enough distinct lines that the cut falls after several complete decompressed blocks
    body = b"".join(
        b"Nov 29 10:%02d:%02d mx1 postfix/smtp[%d]: 4Bx%06dQ: to=<u%d@example.org>, relay=none,"
        b" delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to example.org[192.0.2.1]"
        b":25: Connection timed out)\n" % (i // 60 % 60, i % 60, 1000 + i, i, i)
        for i in range(20000)
    )
    big.write_bytes(body)
    packed = compress(big, tmp_path / f"mail.log.2.{ext}", ext)
    cut = tmp_path / f"cut.log.2.{ext}"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size * 2 // 3])
    other = SAMPLES / "mx1-rfc3164.log"
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = ingest(store, cut, other)
        assert [(Path(p).name, r) for p, r, _ in stats.failed_sources] == [
            (cut.name, "corrupt-compressed")
        ]
        assert "truncated" in stats.failed_sources[0][2] or "corrupt" in stats.failed_sources[0][2]
        assert stats.balanced
        read_from_cut = stats.read - ingest(Store.memory(), other).read
        assert 0 < read_from_cut < 20000  # the lines before the damage, not all, not none
        rows = store.con.execute(
            "SELECT source, reason FROM quarantine WHERE source_kind = 'source'"
        ).fetchall()
        assert rows == [(str(cut), "corrupt-compressed")]
        # read again: the good part is not read twice, the damage is reported once in the store
        again = ingest(store, cut)
        assert again.read == 0 and again.failed_sources
        n = store.con.execute("SELECT count(*) FROM quarantine WHERE source_kind = 'source'")
        assert n.fetchone() == (1,)


def test_garbage_with_a_gzip_magic_number(tmp_path: Path) -> None:
    bad = tmp_path / "mail.log.1.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not deflate at all" * 50)
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = ingest(store, bad, SAMPLES / "mx1-rfc3164.log")
    assert [r for _, r, _ in stats.failed_sources] == ["corrupt-compressed"]
    assert stats.stored > 0  # the other file was read


def test_binaries_mail_and_text_that_is_not_a_log(tmp_path: Path) -> None:
    binary = tmp_path / "ls"
    shutil.copy("/bin/ls", binary)
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(b"From MAILER-DAEMON Sun Nov 29 10:00:00 2026\nSubject: x\n\nbody\n")
    prose = tmp_path / "notes.txt"
    prose.write_text("shopping list\neggs\nmilk\n")
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = ingest(store, binary, mbox, prose, SAMPLES / "mx1-rfc3164.log")
    assert {(Path(p).name, r) for p, r, _ in stats.failed_sources} == {
        ("ls", "not-a-log:binary"),
        ("bounces.mbox", "not-a-log:mail"),
    }
    assert stats.not_logs == [(str(prose), 3)]  # read and quarantined line by line, and named
    assert stats.balanced and stats.stored > 0


def test_a_log_that_starts_with_nul_bytes_is_still_a_log(tmp_path: Path) -> None:
    # copytruncate while the writer kept its offset leaves a hole of NULs at the start
    log = tmp_path / "mail.log"
    log.write_bytes(b"\0" * 4096 + (SAMPLES / "mx1-rfc3164.log").read_bytes())
    with Store.open(tmp_path / "s.duckdb") as store:
        stats = ingest(store, log)
    assert not stats.failed_sources and stats.stored > 0


def test_directories_that_hold_no_logs_say_so(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    with pytest.raises(IngestError, match=r"Maildir.*bounces ingest"):
        expand_paths([maildir])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="no log files"):
        expand_paths([empty])


runner = CliRunner()


def test_cli_exit_codes_and_formats(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    good = SAMPLES / "mx1-rfc3164.log"
    bad = tmp_path / "mail.log.1.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\0junk" * 100)
    r = runner.invoke(app, ["ingest", "--db", db, "--year", "2026", "--timezone", "UTC", str(bad),
                            str(good)])  # fmt: skip
    assert r.exit_code == 3, r.output  # partial: one file set aside
    r = runner.invoke(app, ["ingest", "--db", db, "--timezone", "UTC", str(bad)])
    assert r.exit_code == 2, r.output  # nothing usable
    r = runner.invoke(app, ["ingest", "--db", db, "--year", "2026", "--format", "csv", str(good)])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0] == "measure,detail,value" and "lines,read,0" in lines  # already read
    r = runner.invoke(app, ["ingest", "--db", db, "--format", "json", str(good)])
    assert r.exit_code == 0 and '"failed_sources": []' in r.output


def test_a_short_fingerprint_names_only_the_file_it_was_taken_from(tmp_path: Path) -> None:
    """A 1-byte file `M` and a real log starting with `M` (every March) are not one source."""
    tiny = tmp_path / "tiny.log"
    tiny.write_bytes(b"M")
    real = tmp_path / "mail.log"
    text = (SAMPLES / "mx1-rfc3164.log").read_bytes()
    real.write_bytes(b"Mar" + text[3:] if text.startswith(b"Nov") else text)
    assert real.read_bytes()[:1] == b"M"
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, tiny)
        stats = ingest(store, real)
        alone = ingest(Store.memory(), real)
        # read from its first byte, not from offset 1 (which quarantined its first line)
        assert (stats.read, stats.stored, stats.quarantined) == (
            alone.read,
            alone.stored,
            alone.quarantined,
        )
        assert stats.sources == 1 and stats.skipped_sources == 0
        # the tiny file itself, grown in place, is still the source it was
        with tiny.open("ab") as fh:
            fh.write(b"ar 29 10:00:00 mx1 postfix/anvil[1]: statistics: max cache size 1 at x\n")
        grown = ingest(store, tiny)
        assert grown.read == 1 and grown.skipped_sources == 0
        # and an exact copy of a short file elsewhere is the same source: nothing read twice
        copy = tmp_path / "copy.log"
        copy.write_bytes(tiny.read_bytes())
        assert ingest(store, copy).read == 0
