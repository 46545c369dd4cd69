"""IMAP mailbox URLs: ``imaps://user@host[:port]/MAILBOX`` and ``imap://...`` (pure).

The syntax is RFC 5092's ``imap://`` URL (section 3, ``iserver "/" enc-mailbox``) for a whole
mailbox: the user and the mailbox are percent-encoded UTF-8. ``imaps://`` is not in RFC 5092; it
is the name clients (curl, Thunderbird, mutt's ``imaps://``) use for IMAP over implicit TLS
(RFC 8314, port 993). Here ``imap://`` means STARTTLS (RFC 3501 section 6.2.1) on port 143, never
plaintext: the caller refuses a server that does not offer it.

Refused, with a ParseError: a password in the URL (credentials come from elsewhere, and a URL
ends up in shell history, process lists and logs), ``;AUTH=``, ``;UIDVALIDITY=``, ``;UID=`` and
other RFC 5092 parameters, search queries (``?``), fragments, a missing user or host, and
mailbox names with control characters.

On the wire a mailbox name is modified UTF-7 (RFC 3501 section 5.1.3) inside a quoted string
(RFC 3501 section 4.3): :func:`mailbox_wire_name` and :func:`quoted`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from mtalens.parsers.errors import ParseError

DEFAULT_PORTS: Final = {"imaps": 993, "imap": 143}
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapUrl:
    scheme: str  # "imaps" (implicit TLS) or "imap" (STARTTLS)
    user: str
    host: str  # lower-cased; an IPv6 address without brackets
    port: int
    mailbox: str  # decoded (UTF-8); "INBOX" when the URL names none

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "imaps"

    @property
    def display(self) -> str:
        """The canonical form, with the port: the key of the mailbox's checkpoint and what
        messages and errors are named by. It never holds a password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = quote(self.user, safe="")
        return f"{self.scheme}://{user}@{host}:{self.port}/{quote(self.mailbox, safe='/')}"

    def message_source(self, uidvalidity: int, uid: int) -> str:
        """RFC 5092's name for one message: ``...;UIDVALIDITY=v/;UID=u``."""
        return f"{self.display};UIDVALIDITY={uidvalidity}/;UID={uid}"


def is_imap_url(text: str) -> bool:
    """Whether a command-line argument is meant as an IMAP URL rather than a path."""
    return text[:8].lower().startswith(("imap://", "imaps://"))


def redacted(text: str) -> str:
    """An argument as it may be shown: a password written into a URL replaced by ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", text)


def parse_imap_url(text: str) -> ImapUrl:
    """Parse one URL; ParseError("bad-imap-url", why) for anything refused (see module doc).
    The detail never repeats the URL (it could hold a password)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ParseError("bad-imap-url", f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ParseError("bad-imap-url", "the scheme must be imaps:// or imap://")
    if parts.password is not None:
        raise ParseError(
            "bad-imap-url",
            "a password in the URL is refused (use $MTALENS_IMAP_PASSWORD, "
            "--imap-password-file or [imap] password in mtalens.toml)",
        )
    if parts.query or "?" in text:
        raise ParseError("bad-imap-url", "IMAP searches (?...) are not supported")
    if parts.fragment or "#" in text:
        raise ParseError("bad-imap-url", "a URL fragment (#...) is not supported")
    netloc = parts.netloc
    if "@" not in netloc:
        raise ParseError("bad-imap-url", "no user: write imaps://USER@HOST/MAILBOX")
    raw_user = netloc.rsplit("@", 1)[0]
    if ";" in raw_user:
        raise ParseError("bad-imap-url", "';AUTH=' in the URL is not supported")
    try:
        user = unquote(raw_user, errors="strict")
    except UnicodeDecodeError as exc:
        raise ParseError("bad-imap-url", "the user is not percent-encoded UTF-8") from exc
    if not user or _CONTROL_RE.search(user):
        raise ParseError("bad-imap-url", "the user is empty or has control characters")
    host = (parts.hostname or "").lower()
    if not host or _CONTROL_RE.search(host) or " " in host:
        raise ParseError("bad-imap-url", "no host")
    if port == 0:
        raise ParseError("bad-imap-url", "port 0")
    raw_mailbox = parts.path[1:] if parts.path.startswith("/") else parts.path
    if raw_mailbox.endswith("/"):
        raw_mailbox = raw_mailbox[:-1]
    if ";" in raw_mailbox:
        raise ParseError(
            "bad-imap-url", "RFC 5092 parameters (;UIDVALIDITY=, ;UID=, ...) are not supported"
        )
    try:
        mailbox = unquote(raw_mailbox, errors="strict") if raw_mailbox else "INBOX"
    except UnicodeDecodeError as exc:
        raise ParseError("bad-imap-url", "the mailbox is not percent-encoded UTF-8") from exc
    if _CONTROL_RE.search(mailbox):
        raise ParseError("bad-imap-url", "the mailbox name has control characters")
    if mailbox.upper() == "INBOX":
        mailbox = "INBOX"  # RFC 3501 section 5.1: INBOX is case-insensitive
    return ImapUrl(
        scheme=scheme, user=user, host=host, port=port or DEFAULT_PORTS[scheme], mailbox=mailbox
    )


def mailbox_wire_name(name: str) -> str:
    """Modified UTF-7 (RFC 3501 section 5.1.3): printable US-ASCII as itself ("&" as "&-"),
    any other run as "&" + modified BASE64 of its UTF-16BE + "-" (no padding, "," for "/")."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            encoded = base64.b64encode("".join(run).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.decode("ascii").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501 section 4.3): backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
