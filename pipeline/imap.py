"""Bounce mail from an IMAP mailbox: ``mtalens bounces ingest imaps://user@host/INBOX``.

The network side of ``mtalens.parsers.imapurl``, with the standard library's ``imaplib``:

- TLS always: ``imaps://`` is implicit TLS (``IMAP4_SSL``), ``imap://`` must offer STARTTLS
  (RFC 3501 section 6.2.1; refused otherwise, before anything is sent). Certificates and the
  host name are verified (``ssl.create_default_context``), against ``ca_file`` when given.
- Login with AUTHENTICATE PLAIN (RFC 4616) where offered, else LOGIN. The password is never
  printed or logged, and a server's error text that repeats it has it replaced by ``***``.
- Messages are read by UID with ``BODY.PEEK[]``, which does not set ``\\Seen`` (RFC 3501 section
  6.4.5), decoded and stored by ``mtalens.pipeline.bounces`` (same rows, counts and quarantine as
  a Maildir message), each under its RFC 5092 URL (``...;UIDVALIDITY=v/;UID=u``).
- The checkpoint (``imap_checkpoints``: mailbox, UIDVALIDITY, last stored UID, last flagged UID)
  is committed right after the batch's rows; only then are the batch's messages flagged
  ``\\Seen`` or moved (MOVE, RFC 6851, else COPY + ``\\Deleted`` + UID EXPUNGE, RFC 4315, else
  EXPUNGE). A run stopped between the commit and the flags leaves ``flagged_uid < last_uid``:
  the next run flags or moves those first and reads them again never.
- A new UIDVALIDITY (the mailbox was re-created, or the server lost its UID list) means UIDs
  cannot be compared: the mailbox is read from its first message again, and the messages already
  stored are found by their content hash (reports) or bytes (quarantine): nothing is added twice.
  The rows and the checkpoint are two transactions because the row writer owns its own; a stop
  between them re-reads one batch, which adds nothing for the same reason.

Every failure (connection, TLS, login, a NO or BAD answer, a lost connection) is an
:class:`ImapError`: one line naming the mailbox URL, never the password.

``watch`` keeps a session per mailbox (:class:`MailboxWatcher`) and, between two looks, waits
with IDLE (RFC 2177) where the server offers it after login: new mail is read as soon as the
server reports it (an untagged EXISTS or RECENT), and ``imap_poll_interval`` is only the longest
wait (capped at 25 minutes, RFC 2177 section 3). Without IDLE, or when the server refuses it,
the watcher polls every ``imap_poll_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import imaplib
import io
import logging
import re
import select
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.imapurl import ImapUrl, mailbox_wire_name, parse_imap_url, quoted, redacted
from mtalens.pipeline import bounces
from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.mailbox import MailboxMessage

if TYPE_CHECKING:
    from mtalens.pipeline.config import ImapConfig
    from mtalens.pipeline.store import Store

log = logging.getLogger(__name__)

PASSWORD_ENV: Final = "MTALENS_IMAP_PASSWORD"
DEFAULT_TIMEOUT: Final = 60.0  # seconds per socket operation
DEFAULT_BATCH: Final = 100  # messages fetched, stored and flagged together
SEARCH_WINDOW: Final = 20_000  # UIDs per UID SEARCH: keeps each answer far below imaplib's
# 1,000,000-byte line limit (imaplib._MAXLINE) on a mailbox of any size
_FETCH_UID_RE: Final = re.compile(rb"\bUID (\d+)")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]+")
# RFC 2177 section 3: a server may log an idle client off when its inactivity timer runs out
# (at least 30 minutes, RFC 3501 section 5.4), so clients re-issue IDLE at least every 29
# minutes; 25 leaves a margin
IDLE_REISSUE: Final = 25 * 60.0
IDLE_TICK: Final = 1.0  # the longest wait inside IDLE before looking at the stop event again
_GREW_RE: Final = re.compile(rb"\* (\d+) (EXISTS|RECENT)\b", re.IGNORECASE)
_LITERAL_RE: Final = re.compile(rb"\{(\d+)\+?\}\r?\n?$")  # RFC 3501 section 4.3 (and LITERAL+)


class ImapError(InputError):
    """A mailbox that could not be read (or flagged): one line, ``URL: what went wrong``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def parse_url(text: str) -> ImapUrl:
    """``parse_imap_url`` for the CLI: an InputError naming the URL (its password masked)."""
    try:
        return parse_imap_url(text)
    except ParseError as exc:
        raise InputError(f"{redacted(text)}: {exc.detail}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapOptions:
    password: str = field(repr=False)
    ca_file: str | None = None
    move_to: str | None = None  # a folder, else messages are flagged \Seen
    timeout: float = DEFAULT_TIMEOUT
    batch_size: int = DEFAULT_BATCH


def read_password_file(path: str) -> str:
    """The first line of a file that only its owner can read (mode 0600 or stricter)."""
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: the IMAP password file is not a regular file")
        if st.st_mode & 0o077:
            raise InputError(
                f"{path}: the IMAP password file is mode {st.st_mode & 0o777:04o}; chmod 600 it"
            )
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the IMAP password file: {_os_reason(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the IMAP password file is not UTF-8") from exc
    password = text.split("\n", 1)[0].removesuffix("\r")
    if not password:
        raise InputError(f"{path}: the IMAP password file's first line is empty")
    return password


def resolve_password(
    *, password_file: str | None, environ: Mapping[str, str], config: ImapConfig
) -> str:
    """``--imap-password-file``, else ``$MTALENS_IMAP_PASSWORD``, else ``[imap] password``, else
    ``[imap] password_file``; InputError when none is set."""
    if password_file:
        return read_password_file(password_file)
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    if config.password:
        return config.password
    if config.password_file:
        return read_password_file(config.password_file)
    raise InputError(
        f"an IMAP mailbox needs a password: set ${PASSWORD_ENV}, --imap-password-file FILE, or "
        "[imap] password in mtalens.toml (mode 0600)"
    )


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying context: the system's CAs, or only those of ``ca_file`` (PEM); TLS >= 1.2."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:  # an OSError too: first
        raise InputError(f"{ca_file}: not a PEM CA certificate file ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"{ca_file}: cannot read the CA file: {_os_reason(exc)}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# -- one session ---------------------------------------------------------------------------------


class _Session:
    """A logged-in, selected mailbox; every server answer is checked here."""

    def __init__(self, url: ImapUrl, options: ImapOptions, ctx: ssl.SSLContext) -> None:
        self.url = url
        self.options = options
        self.con = self._connect(ctx)
        self.capabilities: frozenset[str] = frozenset()

    def fail(self, what: str, data: object = None) -> ImapError:
        text = f"{what}: {self.server_text(data)}" if data else what
        return ImapError(self.url.display, text)

    def server_text(self, data: object) -> str:
        """A server answer as one short line, the password (if it is repeated) masked."""
        items = data if isinstance(data, list) else [data]
        parts = []
        for item in items:
            if isinstance(item, tuple):
                item = item[0]
            if isinstance(item, bytes):
                item = item.decode("utf-8", "replace")
            if item:
                parts.append(str(item))
        text = _CONTROL_RE.sub(" ", " ".join(parts)).strip()
        if self.options.password and self.options.password in text:
            text = text.replace(self.options.password, "***")
        return text[:300]

    def _connect(self, ctx: ssl.SSLContext) -> imaplib.IMAP4:
        host, port, timeout = self.url.host, self.url.port, self.options.timeout
        if self.url.implicit_tls:
            return imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=timeout)
        con = imaplib.IMAP4(host, port, timeout=timeout)
        try:
            if "STARTTLS" not in con.capabilities:
                raise self.fail("the server offers no STARTTLS; refusing to log in without TLS")
            if con.state != "NONAUTH":
                raise self.fail("the server authenticated the connection before TLS; refusing")
            con.starttls(ssl_context=ctx)
        except BaseException:
            with contextlib.suppress(Exception):
                con.shutdown()
            raise
        return con

    def login(self) -> None:
        con, user, password = self.con, self.url.user, self.options.password
        if "AUTH=PLAIN" in con.capabilities:
            plain = f"\0{user}\0{password}".encode()
            try:
                con.authenticate("PLAIN", lambda _challenge: plain)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise self.fail("login failed", str(exc)) from None
        elif "LOGINDISABLED" in con.capabilities:
            raise self.fail("the server allows no login (LOGINDISABLED, no AUTH=PLAIN)")
        else:
            try:
                con.login(user, password)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise self.fail("login failed", str(exc)) from None
        # capabilities change after login (RFC 3501 section 7.2.1): MOVE, UIDPLUS
        typ, data = con.capability()
        if typ != "OK":
            raise self.fail("CAPABILITY failed", data)
        self.capabilities = frozenset(self.server_text(data).upper().split())

    def check_folder(self, folder: str) -> None:
        typ, data = self.con.list('""', quoted(mailbox_wire_name(folder)))
        if typ != "OK":
            raise self.fail(f"cannot list folder {folder!r}", data)
        listed = [d for d in data if d]
        if not listed:
            raise self.fail(f"folder {folder!r} (--imap-move-to) does not exist")
        flags = self.server_text(listed[0]).split(")", 1)[0].lower()
        if "\\noselect" in flags or "\\nonexistent" in flags:
            raise self.fail(f"folder {folder!r} (--imap-move-to) cannot hold messages")

    def select(self) -> tuple[int, int | None]:
        """SELECT the mailbox read-write: (UIDVALIDITY, UIDNEXT or None)."""
        try:
            typ, data = self.con.select(quoted(mailbox_wire_name(self.url.mailbox)))
        except imaplib.IMAP4.readonly:
            raise self.fail("the mailbox is read-only: its messages cannot be flagged") from None
        if typ != "OK":
            raise self.fail("cannot select the mailbox", data)
        validity = self._number("UIDVALIDITY")
        if validity is None:
            raise self.fail("the server sent no UIDVALIDITY")
        return validity, self._number("UIDNEXT")

    def _number(self, code: str) -> int | None:
        _, data = self.con.response(code)
        text = self.server_text(data[-1:]) if data and data[-1] else ""
        return int(text) if text.isdigit() else None

    def uids_after(self, last: int, uidnext: int | None) -> list[int]:
        """UIDs above ``last`` in ascending order, searched in windows."""
        found: list[int] = []
        if uidnext is None:
            found = self._search(f"{last + 1}:*")
        else:
            for start in range(last + 1, uidnext, SEARCH_WINDOW):
                found.extend(self._search(f"{start}:{min(start + SEARCH_WINDOW, uidnext) - 1}"))
        # "n:*" always includes the highest UID, even below n (RFC 3501 section 6.4.8)
        return sorted({u for u in found if u > last})

    def _search(self, uid_range: str) -> list[int]:
        typ, data = self.con.uid("SEARCH", "UID", uid_range)
        if typ != "OK":
            raise self.fail("UID SEARCH failed", data)
        return [int(t) for t in self.server_text(data).split() if t.isdigit()]

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """``BODY.PEEK[]`` of each UID (a UID expunged meanwhile is simply missing)."""
        typ, data = self.con.uid("FETCH", _uid_set(uids), "(UID BODY.PEEK[])")
        if typ != "OK":
            raise self.fail("UID FETCH failed", data)
        out: dict[int, bytes] = {}
        for i, item in enumerate(data):
            if not isinstance(item, tuple) or b"BODY[]" not in item[0].upper():
                continue  # the closing ")" or an unsolicited FLAGS update
            head, body = item
            m = _FETCH_UID_RE.search(head)
            if m is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                m = _FETCH_UID_RE.search(data[i + 1])  # UID after the literal
            if m is not None:
                out[int(m.group(1))] = body
        return out

    def flag(self, uids: list[int]) -> None:
        """After the commit: ``\\Seen``, or moved to ``options.move_to``."""
        if not uids:
            return
        uid_set, folder = _uid_set(uids), self.options.move_to
        if folder is None:
            self._ok(self.con.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Seen)"), "UID STORE")
            return
        target = quoted(mailbox_wire_name(folder))
        if "MOVE" in self.capabilities:
            self._ok(self.con.uid("MOVE", uid_set, target), "UID MOVE")
            return
        # RFC 6851 section 3.3: what a client without MOVE does
        self._ok(self.con.uid("COPY", uid_set, target), "UID COPY")
        self._ok(self.con.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
        if "UIDPLUS" in self.capabilities:
            self._ok(self.con.uid("EXPUNGE", uid_set), "UID EXPUNGE")
        else:
            self._ok(self.con.expunge(), "EXPUNGE")

    def _ok(self, answer: tuple[str, list[object]], what: str) -> None:
        typ, data = answer
        if typ != "OK":
            raise self.fail(f"{what} failed", data)

    def logout(self) -> None:
        """LOGOUT, and the socket closed even when LOGOUT fails (imaplib then leaves it open)."""
        with contextlib.suppress(Exception):
            self.con.logout()
        with contextlib.suppress(Exception):
            self.con.shutdown()

    # -- IDLE (RFC 2177) ------------------------------------------------------------------------

    @property
    def can_idle(self) -> bool:
        """IDLE is offered after login, and imaplib reads through a buffered reader we can peek
        at (Python 3.11 to 3.13; 3.14 has an idle() of its own and deprecates ``file``)."""
        return "IDLE" in self.capabilities and isinstance(self.con.file, io.BufferedReader)

    def changed_since_select(self) -> bool:
        """The server reported a new size after the SELECT's own: mail came in while the last
        commands ran (a server reports it in any command's response, RFC 3501 section 7.3.1),
        and beyond the UIDNEXT those commands searched up to. imaplib collects such untagged
        responses by name; SELECT starts the collection afresh."""
        responses = self.con.untagged_responses
        return len(responses.get("EXISTS", ())) > 1 or len(responses.get("RECENT", ())) > 1

    def idle(self, stop: threading.Event, seconds: float) -> bool:
        """IDLE until the server reports new mail (True), ``seconds`` pass or ``stop`` is set
        (False), then DONE. Raises IdleRefused for a NO or BAD answer to IDLE (the session is
        still usable), ImapError for a failed DONE, imaplib's abort for a BYE or a lost
        connection. The wait is the only one that can be long: it looks at ``stop`` every
        IDLE_TICK seconds; the continuation and DONE's answer come at once from a live server
        and are read within the session's timeout like any other answer."""
        con = self.con
        tag: bytes = con._new_tag()  # registers it in con.tagged_commands: dropped below
        try:
            # RFC 2177 section 3: "+" (a continuation), then untagged updates until DONE
            con.send(tag + b" IDLE\r\n")
            grew = False
            while not (line := self._idle_line()).startswith(b"+"):
                if line.startswith(tag + b" "):
                    if _status(line, tag) != b"OK":
                        raise IdleRefused(self.server_text(line[len(tag) + 1 :]))
                    return grew  # completed without ever idling: nothing to wait for
                grew |= self._grew(line)
            end = time.monotonic() + seconds
            while not grew and not stop.is_set() and (left := end - time.monotonic()) > 0:
                if self._readable(min(left, IDLE_TICK)):
                    grew = self._grew(self._idle_line())
            con.send(b"DONE\r\n")
            while not (line := self._idle_line()).startswith(tag + b" "):
                grew |= self._grew(line)
            if _status(line, tag) != b"OK":
                raise self.fail("IDLE ended with an error", line[len(tag) + 1 :])
            return grew
        finally:
            con.tagged_commands.pop(tag, None)

    def _grew(self, line: bytes) -> bool:
        """An untagged line read while idle: True for EXISTS or a non-zero RECENT (RFC 3501
        sections 7.3.1 and 7.3.2); a BYE ends the session (section 7.1.5)."""
        if line[:5].upper() == b"* BYE":
            raise imaplib.IMAP4.abort(f"the server said BYE: {self.server_text(line[5:])}")
        m = _GREW_RE.match(line)
        return m is not None and (m.group(2).upper() == b"EXISTS" or int(m.group(1)) > 0)

    def _idle_line(self) -> bytes:
        """The first line of the next response; a literal in it (``{n}``) and the lines after
        it are read and dropped, so that the next read starts a response."""
        first = line = self.con.readline()
        while (m := _LITERAL_RE.search(line)) is not None:
            left = int(m.group(1))
            while left > 0:  # in pieces: a huge literal is never held whole
                left -= len(self.con.read(min(left, 65536)))
            line = self.con.readline()
        return first

    def _readable(self, wait: float) -> bool:
        """Whether a response (or its start) can be read, waiting at most ``wait`` seconds.

        select() sees only the kernel's buffer; two more can hold a response that has already
        left it: the TLS layer's decrypted bytes (``SSLSocket.pending()``) and imaplib's own
        buffered reader, which may have read past the last line it returned (an EXISTS sent
        right behind "+ idling"). A peek at the reader with the socket non-blocking sees all
        three and takes nothing: what the reader holds, else what one read from the TLS layer
        or the kernel returns."""
        if self._peek():
            return True
        ready, _, _ = select.select([self.con.sock], [], [], wait)
        if not ready:
            return False
        data = self._peek()
        if data == b"":  # readable, yet nothing to read: the server closed the connection
            raise imaplib.IMAP4.abort("the server closed the connection")
        return data is not None  # None: a TLS record has not arrived whole yet

    def _peek(self) -> bytes | None:
        """The reader's buffered bytes without blocking: b"" at the end of the stream (or, on
        a plain socket, when there is nothing), None when a read would block."""
        reader, sock = self.con.file, self.con.sock
        assert isinstance(reader, io.BufferedReader)  # can_idle checked it
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return reader.peek(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None
        finally:
            sock.settimeout(timeout)


class IdleRefused(Exception):
    """The server answered IDLE with NO or BAD: the session goes on, polling."""


def _status(line: bytes, tag: bytes) -> bytes:
    """``OK``, ``NO`` or ``BAD`` of a tagged response line."""
    words = line[len(tag) + 1 :].split(None, 1)
    return words[0].upper() if words else b""


def _uid_set(uids: list[int]) -> str:
    """``1:3,7`` for [1, 2, 3, 7] (RFC 3501 sequence-set), ascending."""
    ranges: list[str] = []
    start = prev = -1
    for u in sorted(uids):
        if u == prev + 1:
            prev = u
            continue
        if start >= 0:
            ranges.append(f"{start}:{prev}" if prev > start else str(start))
        start = prev = u
    if start >= 0:
        ranges.append(f"{start}:{prev}" if prev > start else str(start))
    return ",".join(ranges)


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


@contextlib.contextmanager
def _one_line_errors(url: ImapUrl, password: str) -> Iterator[None]:
    """Every failure of the network, TLS or protocol as one ImapError line."""

    def fail(text: str) -> ImapError:
        if password and password in text:
            text = text.replace(password, "***")
        return ImapError(url.display, _CONTROL_RE.sub(" ", text))

    try:
        yield
    except ImapError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise fail(f"certificate verification failed: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise fail(f"TLS failed: {exc.reason or exc}") from None
    except imaplib.IMAP4.abort as exc:
        raise fail(f"connection lost: {exc}") from None
    except imaplib.IMAP4.error as exc:
        raise fail(f"IMAP error: {exc}") from None
    except TimeoutError:
        raise fail("timed out") from None
    except socket.gaierror as exc:
        raise fail(f"cannot resolve {url.host}: {exc.strerror}") from None
    except OSError as exc:
        raise fail(f"cannot connect or talk to the server: {_os_reason(exc)}") from None
    except EOFError:
        raise fail("connection closed by the server") from None


# -- the checkpoint ------------------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int = 0
    flagged_uid: int = 0


def read_checkpoint(store: Store, mailbox: str) -> Checkpoint | None:
    row = store.con.execute(
        "SELECT uidvalidity, last_uid, flagged_uid FROM imap_checkpoints WHERE mailbox = ?",
        [mailbox],
    ).fetchone()
    return Checkpoint(int(row[0]), int(row[1]), int(row[2])) if row else None


def _write_checkpoint(store: Store, mailbox: str, cp: Checkpoint, at: datetime) -> None:
    with store.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO imap_checkpoints (mailbox, uidvalidity, last_uid, "
            "flagged_uid, updated_at) VALUES (?, ?, ?, ?, ?)",
            [mailbox, cp.uidvalidity, cp.last_uid, cp.flagged_uid, at],
        )


# -- ingest --------------------------------------------------------------------------------------


def ingest_mailbox(
    store: Store,
    url: ImapUrl,
    options: ImapOptions,
    *,
    result: bounces.IngestResult,
    classifier: bounces.Classifier | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_warning: Callable[[str], None] | None = None,
) -> None:
    """Store every message of the mailbox not stored yet (counted into ``result``), then flag
    or move it. Raises ImapError (after committing whatever batches were complete)."""
    ctx = tls_context(options.ca_file)
    classifier = classifier or bounces.default_classifier()
    with _one_line_errors(url, options.password):
        session = _Session(url, options, ctx)
        try:
            session.login()
            if options.move_to is not None:
                if options.move_to == url.mailbox:
                    raise session.fail("--imap-move-to names the mailbox being read")
                session.check_folder(options.move_to)
            _ingest_selected(lambda fn: fn(store), session, result, classifier, now, on_warning)
        finally:
            session.logout()


# Runs one function with the store: the CLI calls it at once; the daemon queues it for its next
# write window (the store is its own only then) and waits: the network stays in the caller.
StoreRunner = Callable[[Callable[["Store"], Any]], Any]


def _ingest_selected(
    run: StoreRunner,
    session: _Session,
    result: bounces.IngestResult,
    classifier: bounces.Classifier | None,
    now: Callable[[], datetime],
    on_warning: Callable[[str], None] | None,
) -> None:
    url, key = session.url, session.url.display
    validity, uidnext = session.select()
    cp = run(lambda store: read_checkpoint(store, key))
    if cp is not None and cp.uidvalidity != validity:
        message = (
            f"{key}: UIDVALIDITY changed from {cp.uidvalidity} to {validity}; reading the "
            "mailbox again (messages already stored are not stored twice)"
        )
        log.warning("%s", message)
        if on_warning:
            on_warning(message)
        cp = None
    if cp is None:
        cp = Checkpoint(validity)
        run(lambda store: _write_checkpoint(store, key, cp, now()))
    if cp.flagged_uid < cp.last_uid:
        # stored by an earlier run that stopped before flagging them
        pending = [u for u in session.uids_after(cp.flagged_uid, uidnext) if u <= cp.last_uid]
        for start in range(0, len(pending), session.options.batch_size):
            session.flag(pending[start : start + session.options.batch_size])
        cp.flagged_uid = cp.last_uid
        run(lambda store: _write_checkpoint(store, key, cp, now()))
    uids = session.uids_after(cp.last_uid, uidnext)
    seen_quarantine: set[str] | None = None
    for start in range(0, len(uids), session.options.batch_size):
        batch = uids[start : start + session.options.batch_size]
        fetched = session.fetch(batch)
        msgs = [
            MailboxMessage(source=url.message_source(validity, u), index=1, offset=0, raw=raw)
            for u, raw in sorted(fetched.items())
        ]
        decoded = [bounces.decode_message(m) for m in msgs]
        if any(d.report is None for d in decoded):
            if seen_quarantine is None:
                seen_quarantine = run(lambda store: _quarantined_under(store, key, validity))
            decoded = _drop_requarantined(decoded, seen_quarantine, result)
        result.read += len(decoded)
        cp.last_uid = max(batch)

        def store_batch(store: Store, decoded: list[bounces.Decoded] = decoded) -> None:
            if decoded:
                bounces._write_batch(store, decoded, classifier, now(), result)
            _write_checkpoint(store, key, cp, now())

        run(store_batch)
        session.flag(sorted(fetched))
        cp.flagged_uid = cp.last_uid
        run(lambda store: _write_checkpoint(store, key, cp, now()))


def _quarantined_under(store: Store, key: str, validity: int) -> set[str]:
    """Hashes of the messages quarantined from this mailbox under an earlier UIDVALIDITY."""
    rows = store.con.execute(
        f"SELECT raw FROM {store.history('quarantine')} WHERE source_kind = 'mail' "
        "AND starts_with(source, ?) "
        "AND NOT starts_with(source, ?) AND raw IS NOT NULL",
        [f"{key};UIDVALIDITY=", f"{key};UIDVALIDITY={validity}/"],
    ).fetchall()
    return {bounces.content_hash(bytes(raw)) for (raw,) in rows}


def _drop_requarantined(
    decoded: list[bounces.Decoded], seen: set[str], result: bounces.IngestResult
) -> list[bounces.Decoded]:
    """A message that failed to decode under the old UIDVALIDITY is not quarantined again."""
    kept = []
    for d in decoded:
        if d.report is None and d.report_hash in seen:
            result.read += 1
            result.duplicates += 1
            continue
        kept.append(d)
    return kept


# -- the daemon's mailboxes ------------------------------------------------------------------------

WATCH_BACKOFF_MAX: Final = 300.0


class MailboxWatcher:
    """``watch``'s IMAP source: a daemon thread that logs in, stores what is new (through
    ``run``: the watcher's write windows), waits and looks again, keeping the session. The wait
    is IDLE (RFC 2177) where the server offers it: it ends as soon as the server reports new
    mail, else after ``poll_interval`` seconds (at most IDLE_REISSUE); without IDLE, or when the
    server refuses it, a sleep of ``poll_interval`` seconds. A failure (server down, connection
    lost, also while idle, login refused) is logged once and retried after 1, 2, 4 ... up to
    300 s. ``stop()`` is seen within IDLE_TICK seconds. ``kill -9`` at any point is covered by
    the checkpoint: the next start re-reads at most one batch and stores nothing twice."""

    def __init__(
        self,
        url: ImapUrl,
        options: ImapOptions,
        run: StoreRunner,
        *,
        poll_interval: float = 60.0,
        on_result: Callable[[bounces.IngestResult], None] | None = None,
    ) -> None:
        self.url = url
        self.options = options
        self.run = run
        self.poll_interval = poll_interval
        self.on_result = on_result
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"mtalens-imap-{url.host}")  # fmt: skip
        self.failures = 0
        self._delay = 1.0  # the next back-off; 1 s again after each good look

    def start(self) -> MailboxWatcher:
        self._thread.start()
        return self

    def stop(self, wait: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(wait)

    def _watch(self, session: _Session, classifier: bounces.Classifier | None) -> None:
        """Look, wait, look again, in one session until ``stop``."""
        idle = session.can_idle
        log.info("imap mailbox waits with IDLE" if idle else "imap mailbox polls", extra={
            "mailbox": self.url.display, "poll_interval": self.poll_interval})  # fmt: skip
        again = False
        while not self._stop.is_set():
            result = bounces.IngestResult()
            _ingest_selected(self.run, session, result, classifier,
                             lambda: datetime.now(UTC), None)  # fmt: skip
            if self.on_result is not None and result.read:
                self.on_result(result)
            self._delay = 1.0
            if not again and session.changed_since_select():
                again = True  # once: a server that reports sizes with every answer cannot spin us
                continue
            again = False
            if idle:
                try:
                    session.idle(self._stop, min(self.poll_interval, IDLE_REISSUE))
                    continue
                except IdleRefused as exc:
                    idle = False
                    log.warning("imap IDLE refused, polling", extra={
                        "mailbox": self.url.display, "error": exc.args[0]})  # fmt: skip
            self._stop.wait(self.poll_interval)

    def _loop(self) -> None:
        ctx = tls_context(self.options.ca_file)
        classifier = bounces.default_classifier()
        self._delay = 1.0
        while not self._stop.is_set():
            session = None
            try:
                with _one_line_errors(self.url, self.options.password):
                    session = _Session(self.url, self.options, ctx)
                    session.login()
                    if self.options.move_to is not None:
                        session.check_folder(self.options.move_to)
                    self._watch(session, classifier)
            except ImapError as exc:
                self.failures += 1
                log.error("imap mailbox failed, retrying", extra={"mailbox": self.url.display,
                          "error": exc.reason, "retry_in_seconds": self._delay})  # fmt: skip
            except StoreUnavailable:
                return  # the daemon is stopping
            except Exception:  # the daemon never dies on a mailbox
                self.failures += 1
                log.exception("imap mailbox failed, retrying", extra={"mailbox": self.url.display})
            finally:
                if session is not None:
                    with contextlib.suppress(Exception):
                        session.logout()
            self._stop.wait(self._delay)
            self._delay = min(self._delay * 2, WATCH_BACKOFF_MAX)


class StoreUnavailable(Exception):
    """The daemon stopped before running a store job (raised by its runner)."""
