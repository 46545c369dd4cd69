"""SMTP replies and the EHLO extension list, as a client reads them (sans-IO).

Reads the reply syntax of RFC 5321 section 4.2 (``Reply-line = *( Reply-code "-" [ textstring ]
CRLF ) Reply-code [ SP textstring ] CRLF``), the enhanced status codes of RFC 3463 at the start of
the text (RFC 2034), and the EHLO keywords of RFC 5321 section 4.1.1.1 with the parameters of the
extensions a probe cares about: SIZE (RFC 1870), PIPELINING (RFC 2920), STARTTLS (RFC 3207), AUTH
(RFC 4954), CHUNKING (RFC 3030), SMTPUTF8 (RFC 6531), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES
(RFC 2034), DSN (RFC 3461). Postfix also announces ``AUTH=LOGIN PLAIN`` for old Outlook clients
(smtpd_sasl_broken_clients, postconf(5)); those mechanisms are merged into AUTH's.

Everything here comes from a remote server: :func:`printable` makes it safe to put in a terminal.
Samples: tests/test_probe_parse.py (replies recorded from Debian's Postfix 3.7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mtalens.parsers.errors import ParseError

_REPLY_LINE: Final = re.compile(r"([2-5][0-9][0-9])(?:([ -])(.*))?\Z", re.DOTALL)
_ENHANCED: Final = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?= |\Z)")
# C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators and bidi overrides
# that can rearrange or hide what a terminal shows.
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# Mechanisms that send the password itself (RFC 4616 PLAIN, the LOGIN draft): over a link
# without TLS anyone on the path reads it.
CLEARTEXT_MECHANISMS: Final = frozenset({"PLAIN", "LOGIN"})


def printable(text: str) -> str:
    """``text`` with every control or direction-changing character shown as ``\\xNN`` /
    ``\\uNNNN``: a remote reply cannot move the cursor, clear the screen or fake a line."""

    def escape(m: re.Match[str]) -> str:
        c = ord(m.group(0))
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _UNSAFE.sub(escape, text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One SMTP reply: its code, the enhanced status code if the text starts with one, and the
    text of each line (without the code and separator)."""

    code: int
    lines: tuple[str, ...]
    enhanced: str | None = None

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    def show(self) -> str:
        """The reply as the server sent it, one ``CODE-text`` line per line."""
        last = len(self.lines) - 1
        return "\n".join(
            f"{self.code}{' ' if i == last else '-'}{line}" for i, line in enumerate(self.lines)
        )


def parse_reply(lines: list[str] | tuple[str, ...]) -> Reply:
    """A reply from its lines (CRLF removed). Every line must carry the same code; all but the
    last use ``-`` after it (RFC 5321 section 4.2.1). A last line of just the code is allowed."""
    if not lines:
        raise ParseError("empty-reply", "no reply line")
    code: str | None = None
    texts: list[str] = []
    for i, line in enumerate(lines):
        m = _REPLY_LINE.match(line)
        if m is None:
            raise ParseError("bad-reply", f"not a reply line: {printable(line[:80])!r}")
        this, sep, text = m.group(1), m.group(2) or "", m.group(3) or ""
        if code is not None and this != code:
            raise ParseError("bad-reply", f"reply code changed from {code} to {this}")
        last = i == len(lines) - 1
        if (sep == "-") == last:
            raise ParseError("bad-reply", f"continuation marker misplaced in line {i + 1}")
        code = this
        texts.append(text)
    assert code is not None
    enhanced = None
    m = _ENHANCED.match(texts[0])
    if m is not None and m.group(1) == code[0]:  # RFC 3463: the class matches the reply's
        enhanced = m.group(0)
        texts = [_ENHANCED.sub("", t, count=1).lstrip() for t in texts]
    return Reply(code=int(code), lines=tuple(texts), enhanced=enhanced)


def reply_complete(line: str) -> bool:
    """Whether ``line`` ends a reply (a code followed by a space or nothing)."""
    return len(line) < 4 or line[3] != "-"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ehlo:
    """What an EHLO reply announced: the greeting name and the extensions by keyword."""

    hostname: str
    greeting: str
    extensions: tuple[tuple[str, str], ...]  # (KEYWORD, parameters) in the server's order
    auth: tuple[str, ...] = ()  # SASL mechanisms, upper case, in the server's order
    size: int | None = None  # SIZE's limit; 0 means "no fixed limit" (RFC 1870 section 4)

    def has(self, keyword: str) -> bool:
        return any(k == keyword.upper() for k, _ in self.extensions)

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.extensions)

    @property
    def cleartext_auth(self) -> tuple[str, ...]:
        return tuple(m for m in self.auth if m in CLEARTEXT_MECHANISMS)


def parse_ehlo(reply: Reply) -> Ehlo:
    """The extensions of a positive EHLO reply (RFC 5321 section 4.1.1.1: the first line is the
    server's domain and a greeting; each further line is ``keyword *(SP param)``)."""
    if reply.code != 250:
        raise ParseError("ehlo-refused", f"EHLO answered {reply.code}")
    first = reply.lines[0].split(None, 1)
    hostname = first[0] if first else ""
    greeting = first[1] if len(first) > 1 else ""
    extensions: list[tuple[str, str]] = []
    auth: list[str] = []
    size: int | None = None
    for line in reply.lines[1:]:
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        keyword = parts[0].upper()
        params = parts[1].strip() if len(parts) > 1 else ""
        if keyword.startswith("AUTH="):  # the pre-RFC 4954 form: "AUTH=LOGIN PLAIN"
            mechanisms = [keyword[5:], *params.split()]
            keyword, params = "AUTH=", " ".join(mechanisms)
        else:
            mechanisms = params.split() if keyword == "AUTH" else []
            extensions.append((keyword, params))
        for mech in mechanisms:
            if mech and mech.upper() not in auth:
                auth.append(mech.upper())
        if keyword == "SIZE" and params.isdigit():
            size = int(params)
    return Ehlo(
        hostname=hostname,
        greeting=greeting,
        extensions=tuple(extensions),
        auth=tuple(auth),
        size=size,
    )


_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def is_hostname(name: str) -> bool:
    """Whether ``name`` is a syntactically valid DNS host name (RFC 1123 section 2.1 labels,
    at most 253 characters, an optional final dot)."""
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def banner_hostname(reply: Reply) -> str | None:
    """The domain the greeting starts with (RFC 5321 section 4.3.1: ``220 domain text``), if
    it looks like a host name or an address literal."""
    words = reply.lines[0].split() if reply.lines else []
    if not words:
        return None
    name = words[0]
    if is_hostname(name) or (name.startswith("[") and name.endswith("]")):
        return name.rstrip(".").lower()
    return None
