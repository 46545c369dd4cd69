"""Every command and subcommand, given bad arguments and bad paths, answers with one line on
stderr (`mtalens: ...`), the documented exit code (pipeline/exitcodes.py) and no traceback.

The cases are keyed by command path, and the set of paths must equal the CLI's: a new command
without bad-input cases fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from mtalens.pipeline.cli import app, run
from mtalens.pipeline.exitcodes import ExitCode

SAMPLES = Path(__file__).resolve().parent.parent / "sample_logs"
NOWHERE = "/nonexistent/dir/file"
USAGE = ExitCode.USAGE
# `mtalens: ...`, or `mtalens dns: ...` naming the command
ERROR_LINE = re.compile(r"^mtalens(?: [a-z-]+)*: \S")


def _leaves(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if hasattr(cmd, "commands"):
        return [leaf for n, c in cmd.commands.items() for leaf in _leaves(c, (*path, n))]
    return [path]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("db") / "m.duckdb")
    assert run(["ingest", "--db", path, "--year", "2026", "--timezone", "UTC",
                str(SAMPLES / "postfix" / "mx1-rfc3164.log")]) == 0  # fmt: skip
    return path


def cases(db: str, tmp: Path) -> dict[tuple[str, ...], list[tuple[list[str], int]]]:
    """Per command: (arguments after the command, expected exit code). The store `db` holds a
    sample log; `tmp` is an empty directory."""
    empty = tmp / "empty"  # other cases put files in tmp
    empty.mkdir(exist_ok=True)
    maildir = tmp / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    pw_0644, pw_0600 = tmp / "pw-0644", tmp / "pw-0600"
    for pw, mode in ((pw_0644, 0o644), (pw_0600, 0o600)):
        pw.write_text("not-the-password\n", encoding="utf-8")
        pw.chmod(mode)
    box = "imaps://u@mail.example/INBOX"
    no_db = ["--db", NOWHERE]
    d = ["--db", db]
    w = ["--db", str(tmp / "w.duckdb")]
    return {
        ("ingest",): [
            ([NOWHERE], USAGE),
            ([str(maildir)], USAGE),
            ([str(empty)], USAGE),  # no log files in it
            ([*d, "--timezone", "Mars/Olympus_Mons", str(SAMPLES / "postfix")], USAGE),
            ([*d, "--year", "soon", str(SAMPLES / "postfix")], USAGE),
            ([*d, "--queue-lifetime", "forever", str(SAMPLES / "postfix")], USAGE),
            ([*d, "--format", "xml", str(SAMPLES / "postfix")], USAGE),
            ([*d, "--lake", str(tmp / "lake"), str(SAMPLES / "postfix")], USAGE),  # both
            (["--lake", str(tmp / "lake"), "--writer", "../up", str(SAMPLES / "postfix")], USAGE),
            (["--lake", str(maildir), str(SAMPLES / "postfix")], USAGE),  # not a lake, not empty
            ([], USAGE),
            ([*d, "--log-format", "qmail", str(SAMPLES / "postfix")], USAGE),
        ],
        ("lake", "info"): [
            ([NOWHERE], USAGE),
            ([str(empty)], USAGE),  # not a lake
        ],
        ("lake", "compact"): [
            ([str(empty)], USAGE),
            ([str(empty), "--grace", "a while"], USAGE),
        ],
        ("lake", "expire"): [
            ([str(empty), "--older-than", "90d"], USAGE),
            ([str(empty), "--older-than", "long ago"], USAGE),
            ([str(empty)], USAGE),  # --older-than is required
        ],
        ("report",): [
            (no_db, USAGE),
            (["--lake", str(empty)], USAGE),  # a directory that is not a lake
            ([*d, "--since", "the day before yesterday-ish"], USAGE),
            ([*d, "--section", "nope"], USAGE),
            ([*d, "--top", "many"], USAGE),
        ],
        ("query",): [
            ([*no_db, "SELECT 1"], USAGE),
            ([*d, ""], USAGE),
            ([*d, "   "], USAGE),
            ([*d, "SELEKT 1"], USAGE),
            ([*d, "SELECT * FROM no_such_view"], USAGE),
            ([*d, f"COPY (SELECT 1) TO '{tmp / 'x.csv'}'"], USAGE),
            ([*d, "SELECT * FROM read_text('/etc/hostname')"], USAGE),
            ([*d, "DELETE FROM delivery_log"], USAGE),
            ([d[0]], USAGE),
        ],
        ("diagnose",): [
            (no_db, USAGE),
            ([*d, "--since", "garbage"], USAGE),
            ([*d, "--fail-on", "sometimes"], USAGE),
            ([*d, "--format", "html", "-o", f"{NOWHERE}/r.html"], USAGE),
            ([*d, "--our-ip", "not-an-ip"], USAGE),
        ],
        ("watch",): [
            ([*w, "--once", "--log", f"{NOWHERE}.log"], USAGE),
            ([*w, "--once", "--maildir", NOWHERE], USAGE),
            ([*w, "--once", "--reports-maildir", NOWHERE], USAGE),
            (["--config", f"{NOWHERE}.toml", "--once"], USAGE),
            ([*w, "--once"], USAGE),  # nothing to watch
            ([*w, "--once", "--timezone", "Nowhere/Land", "--log", str(tmp / "x.log")], USAGE),
            (["--poll-interval", "often"], USAGE),
        ],
        ("stats", "delays"): [
            (no_db, USAGE),
            ([*d, "--status", "nope"], USAGE),
            ([*d, "--by", "colour"], USAGE),
            ([*d, "--until", "whenever"], USAGE),
        ],
        ("bounces", "parse"): [
            ([NOWHERE], USAGE),
            ([str(SAMPLES / "bounces"), "--format", "yaml"], USAGE),
            ([], USAGE),
        ],
        ("bounces", "ingest"): [
            ([*d, NOWHERE], USAGE),
            ([*no_db, str(SAMPLES / "bounces")], USAGE),
            # IMAP sources: each refused before a connection is made
            ([*d, "imaps://no-user.example/INBOX"], USAGE),
            ([*d, "imaps://u:secret@mail.example/INBOX"], USAGE),
            ([*d, box, "--imap-password-file", str(pw_0644)], USAGE),
            ([*d, box, "--imap-password-file", NOWHERE], USAGE),
            ([*d, box, "--imap-password-file", str(pw_0600), "--imap-ca-file", NOWHERE], USAGE),
            ([*d, "--imap-move-to", "Done", str(SAMPLES / "bounces")], USAGE),
        ],
        # each fails before a lookup is sent (--no-cache: no store either)
        ("dns", "check"): [
            (["--no-cache", "exa mple..com"], USAGE),
            (["--no-cache", "-.example.org"], USAGE),
            (["--no-cache", "example.org", "--timeout", "soon"], USAGE),
            (["--no-cache", "example.org", "--timeout", "0"], USAGE),
            (["--no-cache", "example.org", "--port", "seventy"], USAGE),
            (["--no-cache", "example.org", "--port", "70000"], USAGE),
            (["--no-cache", "example.org", "--resolver", "not an address"], USAGE),
            (["--no-cache", "example.org", "--format", "yaml"], USAGE),
        ],
        ("audit", "postfix"): [
            (["--postconf", NOWHERE], USAGE),
            (["--postconf", str(tmp)], USAGE),  # a directory
            (["--postconf", str(SAMPLES / "postfix" / "mx1-rfc3164.log")], USAGE),  # not postconf
            (["--config-dir", NOWHERE, "--no-dns"], USAGE),
            (["--postconf", NOWHERE, "--config-dir", str(tmp)], USAGE),
            (["--format", "xml"], USAGE),
        ],
        # each fails before a connection is made
        ("probe",): [
            (["exa mple..com"], USAGE),
            (["-bad.example"], USAGE),
            (["127.0.0.1", "--port", "0"], USAGE),
            (["127.0.0.1", "--port", "70000"], USAGE),
            (["127.0.0.1", "--port", "smtp"], USAGE),
            (["127.0.0.1", "--port", "25/ssl"], USAGE),
            (["127.0.0.1", "--timeout", "0"], USAGE),
            (["127.0.0.1", "--format", "yaml"], USAGE),
            (["127.0.0.1", "--cafile", NOWHERE], USAGE),
            (["127.0.0.1", "--relay-to", "not an address"], USAGE),
            (["--outbound", "127.0.0.1", "--port", "25,587"], USAGE),
            ([], USAGE),
        ],
        ("dns", "blocklist"): [
            (["--no-cache", "--resolver", "127.0.0.1", "not-an-ip"], USAGE),
            (["--no-cache", "192.0.2.1", "--timeout", "-1"], USAGE),
            (["--no-cache", "192.0.2.1", "--zone", "bad zone..example"], USAGE),
        ],
        ("dns", "fcrdns"): [
            (["--no-cache", "--resolver", "127.0.0.1", "999.1.1.1"], USAGE),
            ([], USAGE),
        ],
        ("events", "ingest"): [
            ([*d, NOWHERE], USAGE),
            ([*no_db, str(SAMPLES / "bounces")], USAGE),
            ([*d, "--provider", "hotmail", str(tmp)], USAGE),
            ([*d, "--format", "xml", str(tmp)], USAGE),
            ([*d, str(empty)], USAGE),  # a directory without files
            ([*d], USAGE),
        ],
        ("reports", "ingest"): [
            ([*d, NOWHERE], USAGE),
            ([*d, str(empty)], USAGE),  # a directory without files
            ([*no_db, str(SAMPLES / "bounces")], USAGE),
            ([*d], USAGE),
        ],
        ("suppressions", "list"): [
            (no_db, USAGE),
            ([*d, "--as-of", "someday"], USAGE),
            ([*d, "--config", f"{NOWHERE}.toml"], USAGE),
            ([*d, "--days", "-3"], USAGE),
        ],
        ("suppressions", "add"): [
            ([*d, "not an address"], USAGE),
            ([*d, "someone@example.org", "--days", "0"], USAGE),
            ([*d, "someone@example.org", "--days", "many"], USAGE),
            ([*no_db[:1], f"{NOWHERE}.duckdb", "someone@example.org"], USAGE),
        ],
        ("suppressions", "remove"): [
            ([*d, "not an address"], USAGE),
            ([*no_db, "someone@example.org"], USAGE),
        ],
        ("suppressions", "explain"): [
            ([*d, "@@"], USAGE),
            ([*no_db, "someone@example.org"], USAGE),
        ],
        ("suppressions", "export"): [
            ([*d, "--format", "nope"], USAGE),
            ([*d], USAGE),  # --format is required
            ([*d, "--format", "postfix", "-o", f"{NOWHERE}/access"], USAGE),
            ([*no_db, "--format", "postfix"], USAGE),
        ],
    }


def test_every_command_has_bad_input_cases(db: str, tmp_path: Path) -> None:
    assert set(cases(db, tmp_path)) == set(_leaves(get_command(app)))


@pytest.mark.parametrize("command", _leaves(get_command(app)), ids=" ".join)
def test_bad_input_is_one_line_and_its_exit_code(
    command: tuple[str, ...], db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    all_cases = [(["--no-such-option"], USAGE), *cases(db, tmp_path)[command]]
    for args, expected in all_cases:
        argv = [*command, *args]
        code = run(argv)
        out, err = capsys.readouterr()
        assert code == expected, (argv, code, out, err)
        assert "Traceback" not in out + err, (argv, err)
        lines = err.strip().splitlines()
        assert lines and ERROR_LINE.match(lines[-1]), (argv, err)
        errors = [line for line in lines if not line.startswith(("{", "mtalens: warning"))]
        assert len(errors) == 1, (argv, err)  # (watch logs JSON lines before it stops)


def test_the_process_exit_code_and_an_internal_error(tmp_path: Path) -> None:
    """As a user runs it: the console script's process, not run() in this one."""
    cli = [sys.executable, "-m", "mtalens.pipeline.cli"]
    r = subprocess.run([*cli, "ingest", NOWHERE], capture_output=True, text=True)
    assert r.returncode == USAGE and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    # a store that is not a DuckDB file: the library's error, one line
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    r = subprocess.run([*cli, "report", "--db", str(junk)], capture_output=True, text=True)
    assert r.returncode == USAGE, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run([*cli, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("mtalens ")
