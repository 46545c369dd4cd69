"""Shared extraction of SMTP facts from free text: enhanced status codes (RFC 3463 section 2),
reply codes (RFC 5321 section 4.2), addresses, and the returned message's headers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Final

from mtalens.parsers.bounces.mime import Mail, Part, decode_words, parse_date, parse_header_block
from mtalens.parsers.bounces.records import BounceReport, OriginalMessage, SmtpCommand

# RFC 3463 section 2: class "." subject "." detail; class is 2, 4 or 5.
STATUS_RE: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# RFC 5321 section 4.2: three digits, first 2-5, at the start of the text or after a separator.
REPLY_RE: Final = re.compile(r"(?:^|[\s:(\[\"'])([245][0-5]\d)(?=[\s\-]|$)")
# The local part starts where the previous character cannot belong to it (the lookbehind): from
# any later position in the same run the match would end at the same "@" or fail the same way, so
# trying there again is what made a long run of local-part characters cost quadratic time.
_LOCAL: Final = r"[^\s<>\"'();:,\[\]@]"
ADDR_RE: Final = re.compile(rf"<?(?<!{_LOCAL})({_LOCAL}+@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9])>?")
_SPACE_RE: Final = re.compile(r"\s+")
RETURNED_TYPES: Final = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global-headers",
)


def squeeze(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


# Software that names its version in banners, Received: lines and notice footers ("ESMTP
# Postfix 2.11.3", "Exim 4.94.2", "Mailman 2.0.12", "Sendmail 8.14.4/8.14.4"): a number right
# after one of these names, or after "version"/"release", is a version, not an RFC 3463 code.
_SOFTWARE_RE: Final = re.compile(
    r"(?:\b(?:version|ver|release|rel|rev|build)\.?|"
    r"\b(?:postfix|sendmail|exim|qmail|netqmail|mailman|majordomo|listserv|lyris|courier|"
    r"exchange|mdaemon|imail|domino|notes|smail|opensmtpd|haraka|zimbra|dovecot|cyrus|"
    r"communigate|kerio|merak|icewarp|spamassassin|amavis|amavisd-new|clamav|postini|"
    r"ironport|mimedefang|milter|james|smtpd|esmtp))[ \t]*[:/]?[ \t]*$",
    re.IGNORECASE,
)


def is_version(text: str, start: int) -> bool:
    """Whether the dotted number at ``start`` of ``text`` is a software version: a letter
    right before it ("v5.1.2"), or a product name or "version" just before (``_SOFTWARE_RE``).
    RFC 3463 section 3 defines the subjects X.0 to X.7 only: "4.94.2" is not a status either
    (callers check the subject)."""
    if start and text[start - 1].isalpha():
        return True
    return _SOFTWARE_RE.search(text, max(0, start - 24), start) is not None


def find_status(text: str) -> str | None:
    """The most specific failure status code in the text (x.0.0 only if nothing better; a
    success code such as "250 2.1.0 Ok" in a quoted dialogue only if no failure code is there:
    RFC 3463 section 3.1, class 2 is success). Software versions are skipped (``is_version``)."""
    generic: str | None = None
    success: str | None = None
    for m in STATUS_RE.finditer(text):
        if len(m.group(2)) > 1 or m.group(2) > "7" or is_version(text, m.start()):
            continue
        code = ".".join(m.groups())
        if m.group(1) == "2":
            success = success or code
            continue
        if m.group(2) == "0" and m.group(3) == "0":
            generic = generic or code
            continue
        return code
    return generic or success


def find_reply_code(text: str) -> str | None:
    """The first failure reply code (4xx/5xx, RFC 5321 section 4.2.1), else the first code."""
    first: str | None = None
    for m in REPLY_RE.finditer(text):
        if m.group(1)[0] in "45":
            return m.group(1)
        first = first or m.group(1)
    return first


# Which SMTP command a failure answered, as the MTAs write it (RFC 5321 section 4.1 names the
# commands; the end of DATA is the "." line of section 4.1.1.4):
#   Postfix smtp(8): "host x said: 550 ... (in reply to end of DATA command)", also RCPT TO,
#     MAIL FROM, DATA, EHLO...; "host x refused to talk to me: 554 ..." at the greeting.
#   Exim (spec, "SMTP error from remote mail server after <command>:"): "after RCPT TO:<a>",
#     "after end of data", "after MAIL FROM:<s> SIZE=n", "after initial connection",
#     "after pipelined end of data".
#   1&1/other Exim rewrites: "SMTP error from remote server for RCPT TO command" / "TEXT command".
#   qmail-remote (qmail 1.03, the texts quoted in qmail-send bounces): "x does not like
#     recipient.", "x failed after I sent the message.", "Connected to x but sender was
#     rejected.", "... but greeting failed.", "... but my name was rejected.", "Sorry, I wasn't
#     able to establish an SMTP connection."
#   m-FILTER: "-------SMTP command" followed by the command on the next line.
#   qmail-remote variants that retry every MX: "Sorry, no SMTP connection got far enough; most
#     progress was RCPT TO response; remote host x said: 550 ...".
#   Postfix smtpd(8) rejects of smtpd_recipient_restrictions say "<a>: Recipient address
#     rejected: ..." (postconf(5), e.g. reject_unlisted_recipient): the answer to RCPT TO, also
#     when a pipelining client logs it after ">>> DATA".
#   Sendmail/Courier transcripts (">>> COMMAND" then "<<< reply") are read by
#   ``command_from_transcript``.
_COMMAND_RE: Final = re.compile(
    r"in reply to (?P<pf>end of data|data|rcpt to|mail from|ehlo|helo|lhlo|starttls|auth)"
    r"\s+command"
    r"|(?P<pfc>refused to talk to me)"
    r"|(?:smtp error from remote (?:mail )?(?:server|mailer)|rejected(?: by [^\n]{0,80}?)?)\s++"
    r"after\s++(?:pipelined\s++)?(?P<ex>end of data|data|rcpt to|mail from|initial connection|"
    r"ehlo|helo|lhlo|starttls|auth)"
    r"|smtp error from remote (?:mail )?server for (?P<oi>rcpt to|mail from|data|text) command"
    r"|(?P<qr>does not like recipient)|(?P<qd>failed after i sent the message)"
    r"|(?P<qm>but sender was rejected)|(?P<qh>but my name was rejected)"
    r"|(?P<qc>but greeting failed|wasn't able to establish an smtp connection)"
    # possessive runs: the separators cannot start a command word, and sharing one long run of
    # blanks between "[ \t:]*", "[ \t]*" and "[ \t]*" was cubic
    r"|smtp command[ \t:]*+\n?[ \t]*+-*+[ \t]*+(?P<mf>data|rcpt to|mail from|ehlo|helo)\b"
    r"|(?:^|[\s(])after (?P<gen>end of data|rcpt to|mail from)\b"
    r"|most progress was (?P<qp>rcpt to|mail from|data|ehlo|helo) response"
    r"|(?P<pr>recipient address rejected)",
    re.IGNORECASE,
)
_COMMAND_WORDS: Final = {
    "end of data": SmtpCommand.DATA,
    "data": SmtpCommand.DATA,
    "text": SmtpCommand.DATA,
    ".": SmtpCommand.DATA,
    "rcpt to": SmtpCommand.RCPT,
    "rcpt": SmtpCommand.RCPT,
    "mail from": SmtpCommand.MAIL,
    "mail": SmtpCommand.MAIL,
    "ehlo": SmtpCommand.HELO,
    "helo": SmtpCommand.HELO,
    "lhlo": SmtpCommand.HELO,
    "starttls": SmtpCommand.HELO,
    "auth": SmtpCommand.HELO,
    "initial connection": SmtpCommand.CONNECT,
    "connect": SmtpCommand.CONNECT,
}
_COMMAND_GROUPS: Final = {
    "pfc": SmtpCommand.CONNECT,
    "qr": SmtpCommand.RCPT,
    "qd": SmtpCommand.DATA,
    "qm": SmtpCommand.MAIL,
    "qh": SmtpCommand.HELO,
    "qc": SmtpCommand.CONNECT,
    "pr": SmtpCommand.RCPT,
}
# Sendmail savemail.c / Courier transcripts: ">>> RCPT To:<a>" sent, "<<< 550 ..." received.
_SENT_RE: Final = re.compile(r"^[ \t]*>>>[ \t]*(\.|[a-z]{4}(?:[ \t]+(?:to|from))?)", re.I)
_ERROR_REPLY_RE: Final = re.compile(r"^[ \t]*<<<[ \t]*[45]\d\d", re.I)


def find_command(text: str) -> SmtpCommand | None:
    """The SMTP command a failure answered, when the text names it (see ``_COMMAND_RE``)."""
    if not text:
        return None
    found = command_from_transcript(text, None)
    if found is not None:
        return found
    m = _COMMAND_RE.search(text)
    if m is None:
        return None
    group = m.lastgroup
    if group in _COMMAND_GROUPS:
        return _COMMAND_GROUPS[group]
    return _COMMAND_WORDS.get(" ".join(m.group(group or 0).lower().split()))


def command_from_transcript(text: str, addr: str | None) -> SmtpCommand | None:
    """The command that the first error reply (about ``addr`` when given) answered.

    A reply answers the last command sent, except under ESMTP pipelining (RFC 2920 section 3.1:
    the client sends RCPT TO and DATA in one batch and the replies come back in command order):
    Sendmail then logs only ">>> DATA", followed by several "<<<" replies. All but the last of
    them answer the pipelined RCPT TO commands, the last one answers DATA.
    """
    if ">>>" not in text or "<<<" not in text:
        return None
    want = addr.lower() if addr else None
    for last, replies in _dialogue(text):
        for i, (error, reply) in enumerate(replies):
            if error and (want is None or want in reply):
                if last is SmtpCommand.DATA and i < len(replies) - 1:
                    return SmtpCommand.RCPT
                return last
    return None


Dialogue = tuple[tuple[SmtpCommand, tuple[tuple[bool, str], ...]], ...]


@lru_cache(maxsize=4)
def _dialogue(text: str) -> Dialogue:
    """A transcript read once (callers ask about each recipient in turn): each command sent,
    with the replies after it as (is an error, the reply's lines lower-cased)."""
    out: list[tuple[SmtpCommand, tuple[tuple[bool, str], ...]]] = []
    last: SmtpCommand | None = None
    replies: list[tuple[bool, list[str]]] = []
    continued = False

    def close() -> None:
        if last is not None:
            out.append((last, tuple((e, "\n".join(lines)) for e, lines in replies)))

    for line in text.split("\n"):
        sent = _SENT_RE.match(line)
        if sent is not None:
            close()
            words = sent.group(1).lower().split()
            last = _COMMAND_WORDS.get(" ".join(words[:2])) or _COMMAND_WORDS.get(words[0])
            replies = []
            continued = False
            continue
        if line.lstrip().startswith("<<<"):
            if continued:  # the next line of a multi-line reply (RFC 5321 section 4.2.1)
                replies[-1][1].append(line.lower())
            else:
                replies.append((_ERROR_REPLY_RE.match(line) is not None, [line.lower()]))
            m = _REPLY_LINE_RE.match(line)
            continued = m is not None and m.group(2) == "-"
    close()
    return tuple(out)


def command_near(text: str, addr: str) -> SmtpCommand | None:
    """The command named in the paragraph about ``addr`` (Postfix and Exim human-readable parts:
    the address, then its reason up to the next blank line) or in a transcript about it."""
    if not text:
        return None
    found = command_from_transcript(text, addr)
    if found is not None:
        return found
    idx = text.lower().find(addr.lower())
    if idx < 0:
        return None
    para = text[idx : idx + 1500]
    gap = _BLANK_RE.search(para)
    return find_command(para[: gap.start()] if gap else para)


_BLANK_RE: Final = re.compile(r"\n[ \t]*\n")
# RFC 5321 section 4.2.1: a multi-line reply repeats the code on each line, "-" after all but the
# last; Sendmail's transcript prefixes the received lines with "<<< ".
_REPLY_LINE_RE: Final = re.compile(r"^[ \t]*(?:<<<[ \t]*)?([245]\d\d)([- ])(.*)$")


def complete_reply(diagnostic: str, text: str) -> str:
    """A Diagnostic-Code holding only the first line of a multi-line reply ("552-5.7.0 This
    message was blocked because ...", Sendmail's DSN) completed from the transcript that has all
    its lines; the diagnostic itself when the text does not have them."""
    first = _REPLY_LINE_RE.match(diagnostic)
    if first is None or first.group(2) != "-" or not text:
        return diagnostic
    # the diagnostic was unfolded and squeezed; match its words across any whitespace (at most
    # NEEDLE_CHARS of them: each place the text starts like the needle costs its length)
    words: list[str] = []
    for w in first.group(3).split():
        if sum(map(len, words)) + len(w) > NEEDLE_CHARS:
            break
        words.append(w)
    if not words:
        return diagnostic
    needle = re.compile(r"\s++".join(re.escape(w) for w in words))
    line_start = scanned = 0  # no newline between line_start and scanned
    tried = -1
    for found in needle.finditer(text):
        idx = found.start()
        line_start = text.rfind("\n", scanned, idx) + 1 or line_start
        scanned = idx
        if line_start == tried:  # another match on a line that did not complete the reply
            continue
        tried = line_start
        parts: list[str] = []
        # the reply's lines one at a time, stopping at the first that is not one of them
        # (splitting 4,000 characters at every match made 2 M matching lines quadratic)
        for line in _lines_from(text, line_start, line_start + 4000):
            m = _REPLY_LINE_RE.match(line)
            if m is None or m.group(1) != first.group(1):
                break
            parts.append(m.group(3).strip())
            if m.group(2) == " ":
                break
        if len(parts) >= 2:
            # the enhanced code is repeated on every line (RFC 2034 section 3): keep it once
            code = STATUS_RE.match(parts[0])
            if code is not None:
                parts[1:] = [p.removeprefix(code.group(0)).strip() for p in parts[1:]]
            return squeeze(f"{first.group(1)} " + " ".join(parts))
    return diagnostic


NEEDLE_CHARS: Final = 200


def _lines_from(text: str, start: int, end: int) -> Iterator[str]:
    """The lines of ``text[start:end]``, lazily."""
    while start < end:
        eol = text.find("\n", start, end)
        if eol < 0:
            yield text[start:end]
            return
        yield text[start:eol]
        start = eol + 1


def find_address(text: str) -> str | None:
    m = ADDR_RE.search(text)
    return clean_address(m.group(1)) if m else None


_DDA_PREFIXES: Final = ("smtp=", "rfc-822=", "rfc822=")


def _unwrap(v: str) -> str:
    """An address with an X.400 attribute type before it or text run into its domain."""
    local, at, domain = v.rpartition("@")
    if not at:
        return v
    # An X.400 O/R address carries the Internet address in a domain-defined attribute:
    # "RFC-822=" (RFC 2156 section 4.2.6) or, in Exchange's legacy NDRs, "dda:SMTP="; the
    # ";" or ":" before it already ended the match, the attribute type is left.
    low = local.lower()
    for prefix in _DDA_PREFIXES:
        if low.startswith(prefix) and len(local) > len(prefix):
            local = local[len(prefix) :]
            break
    # A domain never holds an empty label (RFC 5321 section 4.1.2, Domain = sub-domain
    # *("." sub-domain)): "x@example.net...User unknown" is Sendmail's usrerr() text
    # ("<addr>... User unknown") run into the address.
    cut = domain.find("..")
    if cut >= 0:
        domain = domain[:cut]
    return f"{local}@{domain}" if domain else v


def clean_address(value: str) -> str:
    """Strip the RFC 3464 address type ("rfc822;"), brackets, quotes and trailing dots."""
    v = value.strip()
    if ";" in v:
        typ, _, rest = v.partition(";")
        if typ.strip().lower() in ("rfc822", "rfc/822", "x-unknown", "unknown", "x-local", "utf-8"):
            v = rest.strip()
    if "<" in v and ">" in v:
        inner = v[v.index("<") + 1 : v.rindex(">")]
        if "@" in inner or "@" not in v:
            v = inner
    v = v.strip().strip("<>'").rstrip(".:;,").strip()
    if v.count('"') == 1:
        v = v.replace('"', "")
    if "=" in v or ".." in v:
        v = _unwrap(v)
    if "@" in v and (" " in v or v.startswith(("|", "/"))):
        # Exim names pipe/file deliveries with the address inside: "|/bin/x user@example.com"
        found = ADDR_RE.search(v)
        if found:
            return found.group(1).rstrip(".:;,")
    return v


def original_from_headers(headers: list[tuple[str, str]]) -> OriginalMessage | None:
    got = dict(reversed(headers))  # first occurrence wins
    if not any(k in got for k in ("message-id", "from", "to", "subject")):
        return None
    mid = got.get("message-id")
    return OriginalMessage(
        message_id=mid.strip() if mid else None,
        sender=decode_words(got["from"]) if "from" in got else None,
        to=decode_words(got["to"]) if "to" in got else None,
        subject=decode_words(got["subject"]) if "subject" in got else None,
        date=parse_date(got.get("date")),
    )


def returned_headers(part: Part) -> list[tuple[str, str]]:
    """The header fields of a returned message part, top first: message/rfc822 (those of the
    child) or text/rfc822-headers (RFC 6522 section 4: the body is the header block)."""
    if part.content_type in ("message/rfc822", "message/global") and part.children:
        return part.children[0].headers
    return parse_header_block(part.payload())


def original_from_part(part: Part) -> OriginalMessage | None:
    """message/rfc822 (headers of the child) or text/rfc822-headers (the body is headers)."""
    return original_from_headers(returned_headers(part))


_MID_RE: Final = re.compile(r"^message-id:[ \t]*(<[^>\n]+>)", re.IGNORECASE | re.MULTILINE)
_HDR_RE: Final = re.compile(r"^(from|to|subject|date):[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)


def original_from_text(text: str) -> OriginalMessage | None:
    """Returned headers quoted as plain text after a text bounce's marker line."""
    m = _MID_RE.search(text)
    start = m.start() if m else 0
    block = text[max(0, start - 4000) : start + 4000] if m else text[:8000]
    found: dict[str, str] = {}
    for hm in _HDR_RE.finditer(block):
        found.setdefault(hm.group(1).lower(), hm.group(2).strip())
    if not m and not found:
        return None
    return OriginalMessage(
        message_id=m.group(1) if m else None,
        sender=decode_words(found["from"]) if "from" in found else None,
        to=decode_words(found["to"]) if "to" in found else None,
        subject=decode_words(found["subject"]) if "subject" in found else None,
        date=parse_date(found.get("date")),
    )


def base_report(mail: Mail, **fields: object) -> BounceReport:
    """The report with the message's own header fields filled in where the decoder gave none
    (a field a decoder gave is not read at all)."""
    root = mail.root
    if "message_id" not in fields:
        mid = root.header("message-id")
        fields["message_id"] = mid.strip() if mid else None
    if "subject" not in fields:
        fields["subject"] = mail.subject or None
    if "sender" not in fields:
        fields["sender"] = decode_words(root.header("from") or "") or None
    if "to" not in fields:
        to = root.header("to")
        fields["to"] = (find_address(to) if to else None) or None
    if "date" not in fields:
        fields["date"] = parse_date(root.header("date"))
    if "original" not in fields:
        returned = mail.find(*RETURNED_TYPES)
        fields["original"] = original_from_part(returned) if returned else None
    return BounceReport(**fields)  # type: ignore[arg-type]
