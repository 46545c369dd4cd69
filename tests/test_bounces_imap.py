"""`mtalens bounces ingest imaps://...` against a real Dovecot (tests/lab/dovecot_lab.py) on
127.0.0.1: real bounce mail APPENDed over IMAP, read over IMAPS and STARTTLS with a test CA,
stored once, flagged or moved only after the commit, UIDVALIDITY changes, wrong CA and wrong
password as one line without the password."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mtalens.parsers.imapurl import parse_imap_url, quoted
from mtalens.pipeline import bounces, imap
from mtalens.pipeline.cli import run
from mtalens.pipeline.store import Store
from tests.conftest import need_binary
from tests.lab.dovecot_lab import DovecotServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_logs" / "bounces").rglob("*.eml")) + sorted(
    (ROOT / "tests" / "fixtures" / "bounces").glob("*.eml")
)
# the ASCII-unsafe characters a password may hold: quotes, backslash, space, non-ASCII
PASSWORD = 'Ju st "a" p\\ss-wörd!'
USERS = ("seen", "move", "again", "fault", "moves", "bad", "config", "pending")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    binary = need_binary("dovecot")
    with DovecotServer({u: PASSWORD for u in USERS}, binary=binary) as server:
        yield server


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter[tuple[object, ...]]]:
    """What `bounces ingest` of the same files stores: the IMAP copy must store the same."""
    with Store.open(tmp_path_factory.mktemp("files") / "files.duckdb") as store:
        bounces.ingest(store, SAMPLES)
        return _contents(store)


def _contents(store: Store) -> dict[str, Counter[tuple[object, ...]]]:
    q = store.con.execute
    return {
        "reports": Counter(q("SELECT report_hash, kind, agent FROM bounce_reports").fetchall()),
        "recipients": Counter(
            q(
                "SELECT report_hash, position, recipient, status, reason, hard "
                "FROM bounce_recipients"
            ).fetchall()
        ),
        "quarantine": Counter(
            (bounces.content_hash(bytes(raw)), reason)
            for raw, reason in q("SELECT raw, reason FROM quarantine").fetchall()
        ),
    }


def _append_samples(dovecot: DovecotServer, user: str, mailbox: str = "INBOX") -> None:
    con = dovecot.client(user, PASSWORD)
    try:
        if mailbox != "INBOX":
            con.create(quoted(mailbox))
        for f in SAMPLES:
            typ, data = con.append(quoted(mailbox), "", "", f.read_bytes())
            assert typ == "OK", data
    finally:
        con.logout()


def _flags(dovecot: DovecotServer, user: str, mailbox: str = "INBOX") -> dict[int, str]:
    """UID -> FLAGS of every message (EXAMINE: looking changes nothing)."""
    con = dovecot.client(user, PASSWORD)
    try:
        typ, _ = con.select(quoted(mailbox), readonly=True)
        assert typ == "OK"
        typ, data = con.uid("FETCH", "1:*", "(UID FLAGS)")
        assert typ == "OK"
        out = {}
        for item in data:
            if isinstance(item, bytes) and (m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item)):
                out[int(m.group(1))] = m.group(2).decode()
        return out
    finally:
        con.logout()


def _hashes(dovecot: DovecotServer, user: str, mailbox: str = "INBOX") -> dict[int, str]:
    """UID -> content hash of each message on the server."""
    con = dovecot.client(user, PASSWORD)
    try:
        typ, _ = con.select(quoted(mailbox), readonly=True)
        assert typ == "OK"
        typ, data = con.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        out = {}
        for item in data:
            if isinstance(item, tuple) and (m := re.search(rb"UID (\d+)", item[0])):
                out[int(m.group(1))] = bounces.content_hash(item[1])
        return out
    finally:
        con.logout()


def _stored_hashes(store: Store) -> set[str]:
    q = store.con.execute
    reports = {h for (h,) in q("SELECT report_hash FROM bounce_reports").fetchall()}
    raws = q("SELECT raw FROM quarantine WHERE raw IS NOT NULL").fetchall()
    return reports | {bounces.content_hash(bytes(r)) for (r,) in raws}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run(["bounces", "ingest", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./mtalens.toml from elsewhere
    monkeypatch.setenv(imap.PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("MTALENS_CONFIG", raising=False)
    monkeypatch.delenv("MTALENS_DB", raising=False)
    return tmp_path


def test_imaps_ingests_everything_once_and_flags_it_seen(
    dovecot: DovecotServer,
    expected: dict[str, Counter[tuple[object, ...]]],
    env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _append_samples(dovecot, "seen")
    assert all("\\Seen" not in f for f in _flags(dovecot, "seen").values())
    db = str(env / "imap.duckdb")
    url = dovecot.url("seen")
    args = [url, "--db", db, "--imap-ca-file", str(dovecot.ca_file)]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    assert f"read {len(SAMPLES)}:" in out
    assert PASSWORD not in out + err
    with Store.open(db, read_only=True) as store:
        assert _contents(store) == expected
        validity, last = store.con.execute(
            "SELECT uidvalidity, last_uid FROM imap_checkpoints WHERE mailbox = ?",
            [parse_imap_url(url).display],
        ).fetchone() or (None, None)
        sources = [s for (s,) in store.con.execute("SELECT source FROM bounce_reports").fetchall()]
    flags = _flags(dovecot, "seen")
    assert len(flags) == len(SAMPLES) and all("\\Seen" in f for f in flags.values())
    assert last == max(flags)
    assert sources and all(
        re.fullmatch(
            re.escape(parse_imap_url(url).display) + rf";UIDVALIDITY={validity}/;UID=\d+", s
        )
        for s in sources
    )
    # a second run reads nothing and adds nothing
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    assert out.startswith("read 0: stored 0, duplicates 0, quarantined 0")
    with Store.open(db, read_only=True) as store:
        assert _contents(store) == expected
    # one new message: read alone
    con = dovecot.client("seen", PASSWORD)
    con.append("INBOX", "", "", SAMPLES[0].read_bytes().replace(b"\n", b"\nX-Again: yes\n", 1))
    con.logout()
    code, out, err = _cli(args, capsys)
    assert code == 0 and out.startswith("read 1: stored 1, duplicates 0"), (out, err)


def test_starttls_and_move_to_a_folder(
    dovecot: DovecotServer,
    expected: dict[str, Counter[tuple[object, ...]]],
    env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _append_samples(dovecot, "move")
    con = dovecot.client("move", PASSWORD)
    assert con.create("Processed")[0] == "OK"
    con.logout()
    before = sorted(_hashes(dovecot, "move").values())
    db = str(env / "imap.duckdb")
    url = dovecot.url("move", starttls=True)
    assert url.startswith("imap://")
    args = [url, "--db", db, "--imap-ca-file", str(dovecot.ca_file), "--imap-move-to", "Processed"]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    assert _flags(dovecot, "move") == {}
    assert sorted(_hashes(dovecot, "move", "Processed").values()) == before
    with Store.open(db, read_only=True) as store:
        assert _contents(store) == expected
    code, out, err = _cli(args, capsys)
    assert code == 0 and out.startswith("read 0: stored 0"), (out, err)
    # a folder that is not there: refused before anything is read
    _append_samples(dovecot, "move")
    code, out, err = _cli([*args[:-1], "Nowhere"], capsys)
    assert code == 2 and "folder 'Nowhere' (--imap-move-to) does not exist" in err
    assert len(_flags(dovecot, "move")) == len(SAMPLES)


def test_move_without_the_move_extension(
    expected: dict[str, Counter[tuple[object, ...]]],
    env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server without MOVE (RFC 6851): COPY, \\Deleted and UID EXPUNGE (UIDPLUS)."""
    binary = need_binary("dovecot")
    caps = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE UIDPLUS"
    with DovecotServer({"nomove": PASSWORD}, binary=binary, imap_capability=caps) as server:
        _append_samples(server, "nomove")
        con = server.client("nomove", PASSWORD)
        assert con.create("Done")[0] == "OK"
        _typ, data = con.capability()
        assert b"MOVE" not in data[0].split() and b"UIDPLUS" in data[0].split()
        con.logout()
        before = sorted(_hashes(server, "nomove").values())
        db = str(env / "imap.duckdb")
        args = [server.url("nomove"), "--db", db, "--imap-ca-file", str(server.ca_file),
                "--imap-move-to", "Done"]  # fmt: skip
        code, _out, err = _cli(args, capsys)
        assert code == 0, err
        assert _flags(server, "nomove") == {}
        assert sorted(_hashes(server, "nomove", "Done").values()) == before
        with Store.open(db, read_only=True) as store:
            assert _contents(store) == expected


def test_uidvalidity_change_rereads_without_duplicates(
    dovecot: DovecotServer,
    expected: dict[str, Counter[tuple[object, ...]]],
    env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = "Bounce Reports"  # a space: the name is quoted on the wire
    _append_samples(dovecot, "again", folder)
    db = str(env / "imap.duckdb")
    url = dovecot.url("again", "Bounce%20Reports")
    args = [url, "--db", db, "--imap-ca-file", str(dovecot.ca_file)]
    assert _cli(args, capsys)[0] == 0
    key = parse_imap_url(url).display
    with Store.open(db, read_only=True) as store:
        (old,) = store.con.execute(
            "SELECT uidvalidity FROM imap_checkpoints WHERE mailbox = ?", [key]
        ).fetchone() or (None,)
    # re-create the folder: same messages, new UIDVALIDITY (RFC 3501 section 2.3.1.1)
    con = dovecot.client("again", PASSWORD)
    assert con.delete(quoted(folder))[0] == "OK"
    con.logout()
    _append_samples(dovecot, "again", folder)
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    assert f"UIDVALIDITY changed from {old}" in err
    assert out.startswith(f"read {len(SAMPLES)}: stored 0, duplicates {len(SAMPLES)}")
    with Store.open(db, read_only=True) as store:
        assert _contents(store) == expected
        (new,) = store.con.execute(
            "SELECT uidvalidity FROM imap_checkpoints WHERE mailbox = ?", [key]
        ).fetchone() or (None,)
    assert new != old
    assert all("\\Seen" in f for f in _flags(dovecot, "again", folder).values())


class _Fault(Exception):
    pass


def _failing_clock(after: int) -> Callable[[], datetime]:
    """A clock that stops the run at its `after`-th reading: every write of the ingest reads
    it once (rows, then each checkpoint), so each `after` stops it at another point."""
    calls = 0

    def now() -> datetime:
        nonlocal calls
        calls += 1
        if calls >= after:
            raise _Fault(f"stopped at clock reading {calls}")
        return datetime.now(UTC)

    return now


@pytest.mark.parametrize("move", [False, True], ids=["seen", "move"])
def test_flagged_or_moved_only_after_commit(
    dovecot: DovecotServer,
    expected: dict[str, Counter[tuple[object, ...]]],
    tmp_path: Path,
    move: bool,
) -> None:
    """A run stopped at any write: every flagged or moved message is stored; the next run
    stores the rest once and flags or moves everything."""
    user = "moves" if move else "fault"
    _append_samples(dovecot, user)
    con = dovecot.client(user, PASSWORD)
    if move:
        con.create("Archive")
    con.logout()
    url = parse_imap_url(dovecot.url(user))
    options = imap.ImapOptions(
        password=PASSWORD, ca_file=str(dovecot.ca_file), batch_size=8,
        move_to="Archive" if move else None,
    )  # fmt: skip
    stopped_somewhere = 0
    for after in range(1, 3 * (len(SAMPLES) // 8 + 1) + 3):
        # the mailbox as new: everything unseen and in INBOX
        con = dovecot.client(user, PASSWORD)
        if move:
            con.select("Archive")
            if con.uid("SEARCH", "ALL")[1][0]:
                assert con.uid("MOVE", "1:*", "INBOX")[0] == "OK"
        con.select("INBOX")
        con.uid("STORE", "1:*", "-FLAGS.SILENT", "(\\Seen)")
        con.logout()
        with Store.open(tmp_path / f"s{after}.duckdb") as store:
            result = bounces.IngestResult()
            try:
                imap.ingest_mailbox(store, url, options, result=result, now=_failing_clock(after))
            except _Fault:
                stopped_somewhere += 1
            stored = _stored_hashes(store)
            if move:
                done = set(_hashes(dovecot, user, "Archive").values())
            else:
                seen = {u for u, f in _flags(dovecot, user).items() if "\\Seen" in f}
                done = {h for u, h in _hashes(dovecot, user).items() if u in seen}
            assert done <= stored, f"flagged before its rows committed (stopped at {after})"
            imap.ingest_mailbox(store, url, options, result=bounces.IngestResult())
            assert _contents(store) == expected
        if move:
            assert _flags(dovecot, user) == {}
        else:
            assert all("\\Seen" in f for f in _flags(dovecot, user).values())
    assert stopped_somewhere >= 6  # the fault did land inside runs, at many points


def test_wrong_ca_is_one_line(
    dovecot: DovecotServer, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(env / "imap.duckdb")
    for starttls in (False, True):
        url = dovecot.url("bad", starttls=starttls)
        for ca in (["--imap-ca-file", str(dovecot.other_ca_file)], []):  # another CA, the system's
            code, _out, err = _cli([url, "--db", db, *ca], capsys)
            assert code == 2, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in err
            assert lines[0].startswith(f"mtalens: {parse_imap_url(url).display}: ")
            assert "certificate verification failed" in lines[0]


def test_wrong_password_is_one_line_without_the_password(
    dovecot: DovecotServer,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = 'Wr0ng "pass" wörd'
    db = str(env / "imap.duckdb")
    monkeypatch.setenv(imap.PASSWORD_ENV, wrong)
    caplog.set_level(logging.DEBUG)
    for starttls in (False, True):
        code, out, err = _cli([dovecot.url("bad", starttls=starttls), "--db", db,
                               "--imap-ca-file", str(dovecot.ca_file)], capsys)  # fmt: skip
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "login failed" in lines[0], err
        assert wrong not in out + err + caplog.text and PASSWORD not in out + err + caplog.text
    # the error itself, as a library caller sees it
    options = imap.ImapOptions(password=wrong, ca_file=str(dovecot.ca_file))
    with Store.open(db) as store, pytest.raises(imap.ImapError) as exc:
        imap.ingest_mailbox(store, parse_imap_url(dovecot.url("bad")), options,
                            result=bounces.IngestResult())  # fmt: skip
    assert wrong not in str(exc.value) and wrong not in repr(exc.value)
    assert wrong not in repr(options)
    # as a user runs it: its own process, password from a file
    pw = env / "password"
    pw.write_text(wrong + "\n", encoding="utf-8")
    pw.chmod(0o600)
    monkeypatch.delenv(imap.PASSWORD_ENV)
    r = subprocess.run(
        [sys.executable, "-m", "mtalens.pipeline.cli", "bounces", "ingest", dovecot.url("bad"),
         "--db", db, "--imap-ca-file", str(dovecot.ca_file), "--imap-password-file", str(pw)],
        capture_output=True, text=True, cwd=env,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "login failed" in r.stderr
    assert wrong not in r.stdout + r.stderr


def test_password_from_a_private_config_file(
    dovecot: DovecotServer, env: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv(imap.PASSWORD_ENV)
    conf = env / "mtalens.toml"
    escaped = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    conf.write_text(f'[imap]\npassword = "{escaped}"\nca_file = "{dovecot.ca_file}"\n')
    conf.chmod(0o644)
    db = str(env / "imap.duckdb")
    code, out, err = _cli([dovecot.url("config"), "--db", db, "--config", str(conf)], capsys)
    assert code == 2 and "chmod 600" in err and PASSWORD not in out + err
    conf.chmod(0o600)
    code, out, err = _cli([dovecot.url("config"), "--db", db, "--config", str(conf)], capsys)
    assert code == 0 and out.startswith("read 0: stored 0"), err


def _plaintext_only_server(received: list[bytes]) -> tuple[socket.socket, threading.Thread]:
    """An IMAP greeting and a CAPABILITY answer without STARTTLS; records what it is sent."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b"* OK IMAP4rev1 ready\r\n")
            f.flush()
            for line in f:
                received.append(line)
                tag = line.split(b" ", 1)[0]
                if b"CAPABILITY" in line.upper():
                    f.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                else:
                    f.write(tag + b" BAD no\r\n")
                f.flush()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_imap_without_starttls_is_refused_before_the_password(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    received: list[bytes] = []
    srv, t = _plaintext_only_server(received)
    port = srv.getsockname()[1]
    try:
        code, _out, err = _cli([f"imap://u@127.0.0.1:{port}/INBOX", "--db",
                               str(env / "x.duckdb")], capsys)  # fmt: skip
    finally:
        t.join(timeout=5)
        srv.close()
    assert code == 2 and "offers no STARTTLS" in err and err.count("\n") == 1
    assert [line.split(b" ", 1)[1].strip() for line in received] == [b"CAPABILITY"]
    assert PASSWORD.encode() not in b"".join(received)


def test_nothing_listening_is_one_line(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _out, err = _cli([f"imaps://u@127.0.0.1:{port}/INBOX", "--db",
                           str(env / "x.duckdb")], capsys)  # fmt: skip
    assert code == 2 and "connection refused" in err and err.count("\n") == 1


def test_pending_flags_of_a_stopped_run_are_finished(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """The checkpoint says stored up to last_uid but flagged only to flagged_uid (a run that
    stopped after its commit): the next run flags those and reads nothing again."""
    user = "pending"
    url = parse_imap_url(dovecot.url(user))
    options = imap.ImapOptions(password=PASSWORD, ca_file=str(dovecot.ca_file))
    _append_samples(dovecot, user)
    with Store.open(tmp_path / "p.duckdb") as store:
        imap.ingest_mailbox(store, url, options, result=bounces.IngestResult())
        uids = sorted(_flags(dovecot, user))
        middle = uids[len(uids) // 2]
        con = dovecot.client(user, PASSWORD)
        con.select("INBOX")
        con.uid("STORE", f"{middle + 1}:*", "-FLAGS.SILENT", "(\\Seen)")
        con.logout()
        store.con.execute("UPDATE imap_checkpoints SET flagged_uid = ?", [middle])
        result = bounces.IngestResult()
        imap.ingest_mailbox(store, url, options, result=result)
        assert result.read == 0
        (flagged,) = store.con.execute("SELECT flagged_uid - last_uid FROM imap_checkpoints"
                                       ).fetchone() or (None,)  # fmt: skip
    assert flagged == 0
    assert all("\\Seen" in f for f in _flags(dovecot, user).values())
    # a message a reader marked unread below the flagged point stays unread
    con = dovecot.client(user, PASSWORD)
    con.select("INBOX")
    con.uid("STORE", str(uids[0]), "-FLAGS.SILENT", "(\\Seen)")
    con.logout()
    with Store.open(tmp_path / "p.duckdb") as store:
        imap.ingest_mailbox(store, url, options, result=bounces.IngestResult())
    assert "\\Seen" not in _flags(dovecot, user)[uids[0]]
