"""Exim 4 main log lines (``log_file_path``, the ``mainlog`` file) -> the MTA-neutral records.

Reads what Exim 4 writes to its main log, checked against Exim 4.96 (Debian 12's
exim4-daemon-light). The source is the Exim specification, chapter "Log files" (chapter 53 of
the 4.96 spec, ``doc/spec.txt``; https://www.exim.org/exim-html-current/doc/html/spec_html/
ch-log_files.html):

- section "Log line flags": ``<=`` arrival, ``(=`` fakereject (accepted, the client told it was
  rejected), ``=>`` delivery, ``->`` another address of the same delivery, ``>>`` cutthrough
  delivery, ``*>`` delivery suppressed by ``-N``, ``**`` failed (bounced), ``==`` deferred;
- "Logging message reception": the address after ``<=`` is the envelope sender (``<>`` for a
  bounce, followed by ``R=<message id>`` of the message it is about when Exim made it);
  ``H=name (helo) [ip]`` where only the last ``[ip]`` can be relied on, a name without
  parentheses has been verified; ``U=`` the RFC 1413 identity or the local caller; ``P=``
  protocol; ``A=authenticator:id``; ``S=`` size; ``id=`` the Message-ID header;
  ``+received_recipients`` adds ``for a b c`` at the end;
- "Logging deliveries", "Deferred deliveries", "Delivery failures", "Completion", and "Summary
  of Fields in Log Lines" (``C=`` SMTP confirmation, ``QT=`` time on the queue so far,
  ``DT=`` time of the delivery attempt, ``R=`` router, ``T=`` transport);
- "Other log entries" and the rejection lines of ACLs (``H=... F=<> rejected RCPT <to>:
  reason``), which carry no message id.

The line starts with Exim's own timestamp, local time ``2026-12-01 10:00:00`` (with the
``millisec`` selector ``.123``, with ``timezone`` `` +0100``), then ``[pid] `` with the ``pid``
selector, then a message id for lines about a message. Message ids: ``1rABCD-000123-XY``
(16 characters: base-62 seconds, pid, fraction; 4.96 and earlier) and the 23-character form of
4.97 and later (``1rABCD-00000000123-XYZW``, 64-bit pid; exim_id_update(8) "BACKGROUND"). Both
start with the arrival time in base 62 (base 36 on case-insensitive systems, which this reader
does not decode), used for the queue delay when ``QT=`` is not logged.

An entry whose text has newlines continues on lines that start with a space or a tab and have
no timestamp (seen from the 4.96 daemon's TLS warning at start-up); they are ignored
(``exim-continuation``), the first line being the entry.

Through syslog (``log_file_path = syslog``; section "Logging to syslog"): the same text after
syslog's envelope (``exim[pid]:``, or ``exim4``), with or without Exim's timestamp
(``syslog_timestamp``). An entry Exim split into ``[n/m]`` parts (over 870 characters, or with
internal newlines) is joined back by :class:`SyslogJoiner` (the registry row's ``joiner``) and
read as the file's line; a part that cannot be joined is quarantined as ``exim-syslog-split``.
The reject log is its own registry row (``exim-rejectlog``, :func:`parse_rejectlog_line`): its
lines repeat the main log's and add the rejected message's header, so nothing in it is stored.
Not read yet: a ``>>`` cutthrough line that precedes its ``<=`` line.
Samples: ``sample_logs/exim/*.log`` with ``*.expected.jsonl`` next to each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from mtalens.parsers import postfix as pf
from mtalens.parsers.errors import ParseError
from mtalens.parsers.lines import Malformed, Parsed, Skipped, decode_line
from mtalens.parsers.syslog import LogLine, SyslogClock, count_programs, parse_envelope

NAME: Final = "exim"
INSTANCE: Final = "exim"

_B62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# 4.96 and earlier: 6-6-2 base-62 digits; 4.97 and later: 6-11-4
_ID: Final = r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4})"
_ID_RE: Final = re.compile(_ID)
# The timestamp (its first 19 characters are the second), the millisec, timezone and pid
# selectors' parts, then the message id when the text starts with one (followed by a space or
# nothing): one match per line decides all of it.
_HEAD_RE: Final = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.(\d{1,6}))?(?: ([+-]\d{4}))? (?:\[(\d{1,10})\] )?"
    rf"(?:({_ID})(?: |\Z))?"
)


def is_message_id(s: str) -> bool:
    """``1rABCD-000123-XY`` or ``1rABCD-00000000123-XYZW``."""
    return _ID_RE.fullmatch(s) is not None


def id_time(message_id: str) -> int:
    """Seconds since the epoch when Exim made the id: its first six base-62 digits."""
    n = 0
    for c in message_id[:6]:
        n = n * 62 + _B62.index(c)
    return n


_FLAGS: Final = {
    "<=": "arrival",
    "(=": "arrival",  # fakereject: accepted, the client told otherwise
    "=>": "sent",
    "->": "sent",
    ">>": "sent",
    "*>": "suppressed",
    "**": "bounced",
    "==": "deferred",
}

_DURATION_RE: Final = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)


# Small caches of pure functions of a field's text (the same QT=, DT= and H= values recur on
# many lines); cleared when full, so they stay bounded.
_CACHE_MAX: Final = 8192
_DURATIONS: dict[str, float] = {}


def parse_duration(text: str) -> float:
    """Exim's readconf time format as logged in QT=/DT= (``3m45s``, ``0s``, ``1.578s``)."""
    seconds = _DURATIONS.get(text)
    if seconds is not None:
        return seconds
    m = _DURATION_RE.fullmatch(text)
    if m is None or not text:
        raise ParseError("exim-bad-time", text[:40])
    w, d, h, mi = (int(m[k] or 0) for k in "wdhm")
    seconds = ((w * 7 + d) * 24 + h) * 3600 + mi * 60 + float(m["s"] or 0)
    if len(_DURATIONS) >= _CACHE_MAX:
        _DURATIONS.clear()
    _DURATIONS[text] = seconds
    return seconds


# --- fields after the address: KEY=value, quoted values, H= with its parts -------------------


class _Fields:
    """The ``KEY=value`` items of a flagged line, words that are not items, and the error text
    after a ``: `` that ends them (``** a@b R=r T=t: SMTP error ...``)."""

    __slots__ = ("error", "items", "words")

    def __init__(self) -> None:
        self.items: dict[str, str] = {}
        self.words: list[str] = []
        self.error: str | None = None


_KEY_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9]*)=")


def _read_fields(s: str, i: int) -> _Fields:
    out = _Fields()
    items, words = out.items, out.words
    n = len(s)
    find, key_at = s.find, _KEY_RE.match
    while i < n:
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            break
        if s[i] == ":" and (i + 1 == n or s[i + 1] == " "):
            out.error = s[i + 1 :].strip()
            break
        m = key_at(s, i)
        if m is None:
            j = find(" ", i)
            j = n if j < 0 else j
            word = s[i:j]
            if word.endswith(":"):
                words.append(word[:-1])
                out.error = s[j:].strip()
                break
            words.append(word)
            i = j
            continue
        key = m.group(1)
        i = m.end()
        if i < n and s[i] == '"':  # C="250 OK id=..." with backslash escapes
            j = find('"', i + 1)
            plain = s[i + 1 :] if j < 0 else s[i + 1 : j]
            if "\\" not in plain:  # no escapes: the first quote ends it (or the text does)
                items[key] = plain
                i = n + 1 if j < 0 else j + 1
                continue
            j = i + 1
            buf: list[str] = []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(s[j])
                j += 1
            items[key] = "".join(buf)
            i = j + 1
            continue
        if key == "H":
            i = _read_host(s, i, out)
            continue
        j = find(" ", i)
        j = n if j < 0 else j
        value = s[i:j]
        if value.endswith(":") and key != "F":
            items[key] = value[:-1]
            out.error = s[j:].strip()
            break
        items[key] = value
        i = j
    return out


def _read_host(s: str, i: int, out: _Fields) -> int:
    """``H=name (helo) [ip]:port``, any part but the ``[ip]`` optional; a ``:`` right after the
    host ends the items (the error text follows)."""
    n = len(s)
    start = i
    while i < n:
        if s[i] == "[":
            rb = s.find("]", i)
            if rb < 0:
                break
            i = rb + 1
            if i < n and s[i] == ":" and i + 1 < n and s[i + 1].isdigit():
                i += 1
                while i < n and s[i].isdigit():
                    i += 1
            if i < n and s[i] == "*":  # another message down the same connection
                i += 1
            out.items["H"] = s[start:i]
            return i
        if s[i] == "(":
            rp = s.find(")", i)
            if rp < 0:
                break
            i = rp + 1
        else:
            j = i
            while j < n and s[j] not in " :":
                j += 1
            i = j
        if i < n and s[i] == " ":
            i += 1
        elif i < n and s[i] == ":":
            break
    # no [ip]: the host is the first word
    j = start
    while j < n and s[j] != " ":
        j += 1
    value = s[start:j]
    if value.endswith(":"):
        out.items["H"] = value[:-1]
        out.error = s[j:].strip()
        return n
    out.items["H"] = value
    return j


_HOST_RE: Final = re.compile(
    r"^(?P<name>[^\s(\[]+)?\s*(?:\((?P<helo>[^)]*)\))?\s*(?:\[(?P<ip>[^\]]*)\])?(?::(?P<port>\d+))?\*?$"
)


_Host = tuple[str | None, str | None, str | None, int | None]
_HOSTS: dict[str, _Host] = {}


def split_host(value: str) -> _Host:
    """``name (helo) [ip]:port`` -> (verified name, helo, ip, port)."""
    got = _HOSTS.get(value)
    if got is not None:
        return got
    m = _HOST_RE.match(value)
    if m is None:
        return value or None, None, None, None
    port = pf._bounded(m["port"], pf.INT32_MAX, "exim-bad-port") if m["port"] else None
    got = (m["name"], m["helo"], m["ip"], port)
    if len(_HOSTS) >= _CACHE_MAX:
        _HOSTS.clear()
    _HOSTS[value] = got
    return got


# --- reply codes in the error text -------------------------------------------------------------

_REPLY_RE: Final = re.compile(
    r"(?:^|: )(?P<code>[2-5]\d\d)[ -](?:(?P<dsn>[2-5]\.\d{1,3}\.\d{1,3})(?: |$))?"
)
_AFTER_RE: Final = re.compile(r"\bafter (?:pipelined )?(?P<stage>RCPT TO|MAIL FROM|end of data|"
                              r"DATA|initial connection|EHLO|HELO|STARTTLS|AUTH|QUIT)")  # fmt: skip


def reply_of(text: str) -> tuple[int | None, str | None, str | None]:
    """(reply code, enhanced status code, SMTP command answered) named in an error text."""
    code = dsn = stage = None
    m = _REPLY_RE.search(text)
    if m:
        code, dsn = int(m["code"]), m["dsn"]
    ms = _AFTER_RE.search(text)
    if ms:
        stage = "end of DATA" if ms["stage"] == "end of data" else ms["stage"]
    return code, dsn, stage


_TRAILING_TIMES_RE: Final = re.compile(r"(?: (?:DT|QT|RT)=[0-9.wdhms]+)+$")


# --- lines ---------------------------------------------------------------------------------------


def _arrival(qid: str, flag: str, rest: str) -> tuple[pf.Record, ...]:
    sp = rest.find(" ")
    sender = rest if sp < 0 else rest[:sp]
    if not sender:
        raise ParseError("exim-bad-arrival", rest[:120])
    if sender == "<>":
        sender = ""
    tail = "" if sp < 0 else rest[sp + 1 :]
    recipients: list[str] | None = None
    k = tail.find(" for ")
    if tail.startswith("for "):
        k = -1
        recipients, tail = tail[4:].split(), ""
    elif k >= 0:
        recipients, tail = tail[k + 5 :].split(), tail[:k]
    f = _read_fields(tail, 0)
    size = (
        pf._bounded(f.items["S"], pf.INT64_MAX, "exim-bad-arrival")
        if f.items.get("S", "").isdigit()
        else None
    )
    if size is None:
        raise ParseError("exim-bad-arrival", f"no S= in {rest[:100]}")
    auth = f.items.get("A")
    method = user = None
    if auth:
        method, _, user = auth.partition(":")
    recs: list[pf.Record] = []
    host = f.items.get("H")
    if host is not None:
        name, helo, ip, port = split_host(host)
        recs.append(
            pf.Client(
                queue_id=qid,
                client_name=name or "unknown",
                client_ip=ip or "",
                client_port=port,
                sasl_method=method,
                sasl_username=user or None,
                sasl_sender=None,
                orig_queue_id=None,
                orig_client=None,
                helo=helo,
                protocol=f.items.get("P"),
                ident=f.items.get("U"),
            )
        )
    else:
        recs.append(pf.Pickup(queue_id=qid, uid=None, sender=sender, user=f.items.get("U")))
    recs.append(
        pf.QueueActive(
            queue_id=qid,
            sender=sender,
            size=size,
            nrcpt=len(recipients) if recipients is not None else None,
        )
    )
    mid = f.items.get("id")
    if mid:
        recs.append(pf.MessageId(queue_id=qid, message_id=mid.strip("<>"), resent=False))
    tls = f.items.get("X")
    if tls and host is not None:
        # X= the TLS session the message came in over (log_selector tls_cipher, on by default),
        # CV= whether the client's certificate was verified (tls_certificate_verified): Postfix's
        # words for the same, as the TLS views read them
        _name, _helo, ip_tls, _port = split_host(host)
        verified = f.items.get("CV") == "yes"
        recs.append(pf.Event(kind="tls-verified" if verified else "tls-anonymous", queue_id=qid,
                             remote_host=_name, remote_ip=ip_tls, detail=tls))  # fmt: skip
    about = f.items.get("R")
    if sender == "" and about and is_message_id(about):
        recs.append(pf.Notification(queue_id=about, kind="non-delivery", new_queue_id=qid))
    return tuple(recs)


def _delivery(qid: str, flag: str, rest: str, logged_at: datetime) -> pf.Delivery:
    sp = rest.find(" ")
    addr = rest if sp < 0 else rest[:sp]
    tail = "" if sp < 0 else rest[sp:]
    error_now: str | None = None
    if addr.endswith(":"):  # "** a@b: retry timeout exceeded"
        addr, error_now, tail = addr[:-1], tail.strip(), ""
    if not addr:
        raise ParseError("exim-bad-delivery", rest[:120])
    orig: str | None = None
    final: str | None = None
    t = tail.lstrip(" ")
    # "=> marv <marv@hitch.example> R=..." (the original address), "(parent)" for an
    # intermediate one; both may end with ":" before the error text
    for opener, closer in (("(", ")"), ("<", ">")):
        if t.startswith(opener):
            end = t.find(closer)
            if end > 0:
                if opener == "<":
                    orig = t[1:end]
                t = t[end + 1 :]
    if orig is not None:
        # a local delivery logs the final address (a local part, file or pipe) first and the
        # address the message was sent to in <>: that one is the recipient, as on ==/** lines
        final, addr, orig = addr, orig, None
    f = _read_fields(t, 0)
    error = error_now if error_now is not None else f.error
    status = _FLAGS[flag]
    if status == "bounced" and error == "retry timeout exceeded":
        status = "expired"  # Exim gave the address up: spec chapter "Retry configuration"
    host = f.items.get("H")
    rhost = rip = None
    rport: int | None = None
    relay = "none"
    if host is not None:
        name, _helo, rip, rport = split_host(host)
        rhost = name
        relay = f"{name or 'unknown'}[{rip}]" if rip else (name or host)
        if rport is not None:
            relay += f":{rport}"
    elif "T" in f.items:
        relay = f.items["T"]
    detail = f.items.get("C", "") if status == "sent" else (error or "")
    if error and status != "sent":
        detail = _TRAILING_TIMES_RE.sub("", error)
        for m in re.finditer(r" (DT|QT)=([0-9.wdhms]+)", error[len(detail) :]):
            f.items.setdefault(m.group(1), m.group(2))
    code, dsn, stage = reply_of(detail) if detail else (None, None, None)
    qt = f.items.get("QT")
    if qt is not None:
        delay: float | None = parse_duration(qt)
    else:  # from the arrival time in the message id (whole seconds); None if it is later
        since = int(logged_at.timestamp()) - id_time(qid)
        delay = float(since) if since >= 0 else None
    dt = f.items.get("DT")
    return pf.Delivery(
        queue_id=qid,
        recipient=addr,
        orig_recipient=orig,
        relay=relay,
        relay_host=rhost,
        relay_ip=rip,
        relay_port=rport,
        conn_use=None,
        delay=delay,
        delays=None,
        dsn=dsn,
        status=status,
        detail=detail,
        reply_code=code,
        smtp_stage=stage,
        remote_host=rhost if status != "sent" and code is not None else None,
        remote_ip=rip if status != "sent" and code is not None else None,
        delivery_time=parse_duration(dt) if dt is not None else None,
        final_address=final,
        router=f.items.get("R"),
        transport=f.items.get("T"),
    )


_REJECT_RE: Final = re.compile(
    r"^(?P<fields>.*?) ?(?P<temp>temporarily )?rejected (?P<what>.*)$", re.S
)
_REJECT_STAGES: Final = (
    ("RCPT ", "RCPT"),
    ("MAIL ", "MAIL"),
    ("EHLO or HELO ", "HELO"),
    ("EHLO ", "HELO"),
    ("HELO ", "HELO"),
    ("after DATA", "DATA"),
    ("DATA", "DATA"),
    ("connection", "CONNECT"),
    ("VRFY ", "VRFY"),
    ("ETRN ", "ETRN"),
    ("AUTH ", "AUTH"),
)


def _rejection(qid: str | None, text: str) -> pf.Reject | None:
    m = _REJECT_RE.match(text)
    if m is None or not (m["fields"].startswith(("H=", "U=", "F=")) or m["fields"] == ""):
        return None
    f = _read_fields(m["fields"], 0)
    what = m["what"]
    stage = None
    recipient = None
    for prefix, stage_name in _REJECT_STAGES:
        if what.startswith(prefix):
            stage = stage_name
            if stage_name == "RCPT" and what[5:6] == "<":
                end = what.find(">", 5)
                recipient = what[6:end] if end > 0 else None
            break
    colon = what.find(": ")
    reason = what[colon + 2 :] if colon >= 0 else what
    name = ip = helo = None
    if "H" in f.items:
        name, helo, ip, _port = split_host(f.items["H"])
    code, dsn, _stage = reply_of(reason)
    sender = f.items.get("F")
    return pf.Reject(
        queue_id=qid,
        action="defer" if m["temp"] else "reject",
        stage=stage,
        client_name=name or ("unknown" if ip else None),
        client_ip=ip,
        reply_code=code,
        dsn=dsn,
        reason=reason,
        sender=sender.strip("<>") if sender is not None else None,
        recipient=recipient,
        helo=helo,
        proto=None,
    )


_CONN_RE: Final = re.compile(r"^SMTP connection from (?P<who>.*?)(?: \((?P<note>TCP/IP [^)]*)\))?$")
_AUTHFAIL_RE: Final = re.compile(
    r"^(?P<auth>\S+) authenticator failed for (?P<host>.*?): (?P<reason>.*?)"
    r"(?: \(set_id=(?P<user>[^)]*)\))?$"
)
_IGNORED_PREFIXES: Final = (
    ("Start queue run", "exim-queue-run"),
    ("End queue run", "exim-queue-run"),
    # Exim's note when a caller's -C config is not a trusted one (spec "The Exim command line")
    ("exim user lost privilege", "exim-privilege-note"),
    ("exim ", "exim-daemon"),  # "exim 4.96 daemon started: pid=..."
    ("daemon ", "exim-daemon"),
    ("pid ", "exim-daemon"),
    ("Spool file is locked", "exim-spool-locked"),
    ("spool file locked", "exim-spool-locked"),
)


# "TLS error on connection from|to <host> (<library function>): <error>": the host part may hold
# "(helo)", the function is one word right before "): "
_TLS_ERROR_RE: Final = re.compile(
    r"TLS error on connection (?:from|to) (?P<who>.+?) \([A-Za-z_]+\): "
)


def _client_part(text: str) -> str:
    """``host (helo) [ip]:port`` without the ``I=[local ip]:port`` that may follow it."""
    i = text.find(" I=[")
    return (text if i < 0 else text[:i]).strip()


def _host_event(kind: str, hostpart: str, detail: str, qid: str | None = None) -> pf.Event:
    name, _helo, ip, _port = split_host(_client_part(hostpart))
    return pf.Event(kind=kind, queue_id=qid, remote_host=name, remote_ip=ip, detail=detail)


def _no_id_line(text: str) -> pf.Record | None:
    if text.startswith("SMTP connection from "):
        who = text[21:]
        for ending, kind in ((" closed by QUIT", "disconnect"), (" lost", "lost-connection")):
            if who.endswith(ending):
                return _host_event(kind, who[: -len(ending)], "")
        m = _CONN_RE.match(text)
        if m is not None:
            return _host_event("connect", m["who"], m["note"] or "")
    if text.startswith(("unexpected disconnection while reading SMTP command from ",
                        "SMTP command timeout on connection from ")):  # fmt: skip
        return _host_event("lost-connection", text.split(" from ", 1)[1].split(" D=", 1)[0], text)
    if text.startswith("no MAIL in SMTP connection from "):
        return _host_event("no-mail", text[32:].split(" D=", 1)[0], text)
    if text.startswith("TLS error on connection from "):
        # the spec's "Log files": "TLS error on connection from <host> (<function>): <error>"
        # (tls_in failing: a handshake the client could not complete)
        m = _TLS_ERROR_RE.match(text)
        return _host_event("tls-error", m["who"] if m else text[29:], text)
    ma = _AUTHFAIL_RE.match(text)
    if ma is not None:
        name, _helo, ip, _port = split_host(_client_part(ma["host"]))
        return pf.AuthFailure(
            client_name=name or "unknown",
            client_ip=ip or "",
            mechanism=ma["auth"],
            reason=ma["reason"],
            sasl_username=ma["user"],
        )
    return _rejection(None, text)


def parse_text(
    qid: str | None, text: str, logged_at: datetime
) -> tuple[str, tuple[pf.Record, ...]]:
    """The records of one line's text after its timestamp (and message id), with the service
    name the store keeps for it. Raises ParseError for a flagged line that is malformed."""
    if qid is None:
        rec = _no_id_line(text)
        if rec is None:
            for prefix, rule in _IGNORED_PREFIXES:
                if text.startswith(prefix):
                    raise _Skip(rule)
            raise _Skip("exim-other")
        service = "acl" if isinstance(rec, pf.Reject) else "smtp-in"
        return service, (rec,)
    flag = text[:2]
    if flag in _FLAGS and text[2:3] == " ":
        rest = text[3:]
        if _FLAGS[flag] == "arrival":
            return "receive", _arrival(qid, flag, rest)
        d = _delivery(qid, flag, rest, logged_at)
        return d.transport or d.router or "route", (d,)
    if text == "Completed" or text.startswith("Completed "):
        return "queue", (pf.Removed(queue_id=qid, by_admin=False),)
    if text.startswith("removed by ") or text == "removed":  # exim -Mrm
        return "queue", (pf.Removed(queue_id=qid, by_admin=True),)
    if text.startswith(("Frozen", "Message is frozen")):
        return "queue", (pf.Event(kind="frozen", queue_id=qid, remote_host=None, remote_ip=None,
                                  detail=text),)  # fmt: skip
    if text.startswith("TLS error on connection to "):
        # a delivery's TLS session to a remote host failed (tls_out); the attempt follows
        m = _TLS_ERROR_RE.match(text)
        return "smtp-out", (_host_event("tls-error", m["who"] if m else text[27:], text, qid),)
    rej = _rejection(qid, text)
    if rej is not None:
        return "acl", (rej,)
    return "queue", (
        pf.Event(kind="exim-message", queue_id=qid, remote_host=None, remote_ip=None, detail=text),
    )


class _Skip(Exception):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


def _zone(off: str) -> tzinfo:
    sign = -1 if off[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))


# (the stamp's first 19 characters, its offset, the clock's zone) -> that second in UTC: lines
# come in time order, so one conversion serves every line of a second
_SECONDS: dict[tuple[str, str | None, tzinfo], datetime] = {}


def _second(stamp: str, off: str | None, tz_default: tzinfo) -> datetime:
    key = (stamp, off, tz_default)
    at = _SECONDS.get(key)
    if at is None:
        tz = _zone(off) if off else tz_default
        try:
            local = datetime(int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
                             int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19]),
                             tzinfo=tz)  # fmt: skip
        except ValueError as exc:
            raise ParseError("bad-timestamp", str(exc)) from exc
        # the offset is the same for the whole second (zone transitions fall on whole
        # seconds), so the sub-second part is added to the UTC time as it is
        at = local.astimezone(UTC)
        if len(_SECONDS) >= _CACHE_MAX:
            _SECONDS.clear()
        _SECONDS[key] = at
    return at


def parse_line(raw: bytes, clock: SyslogClock) -> Parsed | Skipped | Malformed:
    """Decide one main log line (bytes without its newline): Exim's own file, or Exim's lines
    through syslog (``log_file_path = syslog``)."""
    text = decode_line(raw)
    if not isinstance(text, str):
        return text
    m = _HEAD_RE.match(text)
    if m is None:
        if text[0] in " \t":
            # the second and later lines of an entry whose text has newlines: Exim writes them
            # as they are (the daemon's "Warning: No server certificate defined ..." is followed
            # by " Suggested action: ..."), and every entry's first line starts with its time
            return Skipped("exim-continuation")
        if _REJECTLOG_HEADER_RE.match(text):
            return Skipped("exim-rejectlog-header")
        return _syslog_line(text, clock)
    ms, off, pid_text, qid = m.groups()
    try:
        at = _second(text[:19], off, clock.tz)
        if ms is not None:
            at = at.replace(microsecond=int(ms.ljust(6, "0")))
        body = text[m.end() :]
        service, recs = parse_text(qid, body, at)
    except _Skip as skip:
        return Skipped(skip.rule)
    except ParseError as exc:
        return Malformed(exc.code, exc.detail)
    pid = int(pid_text) if pid_text else None
    env = LogLine(logged_at=at, host="", program=NAME, pid=pid, text=body)
    return Parsed(env, INSTANCE, service, recs[0], recs[1:])


# The reject log (spec chapter "Log files", section "Where Exim writes its logs"): the first line
# of each rejection is a copy of the main log's, then, if the header was read, the envelope and
# the message's header lines as Exim keeps them in its spool (chapter "Format of spool files":
# a flag letter, or "*" for a deleted one, and a space before each; continuations indented).
_REJECTLOG_HEADER_RE: Final = re.compile(
    r"^(?:Envelope-(?:from|to): |Recipients: |[A-Z*] [!-9;-~]{1,76}:(?: |$))"
)


def parse_rejectlog_line(raw: bytes, clock: SyslogClock) -> Parsed | Skipped | Malformed:
    """Decide one reject log line. Every rejection is also in the main log, whose line the
    reject log repeats: nothing here is stored twice (the ``exim`` row reads the main log), and
    each line is ignored by a named rule, or quarantined when it is no reject log's."""
    text = decode_line(raw)
    if not isinstance(text, str):
        return text
    if _HEAD_RE.match(text):
        return Skipped("exim-rejectlog-copy")
    if text[0] in " \t":
        return Skipped("exim-continuation")
    if _REJECTLOG_HEADER_RE.match(text):
        return Skipped("exim-rejectlog-header")
    return Malformed("exim-no-timestamp", text[:80])


def sniff_rejectlog(lines: Sequence[str]) -> int:
    """A reject log claims its lines once one of them is a header line (else it reads as a main
    log, which it then is as far as anyone can tell)."""
    headers = sum(1 for line in lines if _REJECTLOG_HEADER_RE.match(line))
    if not headers:
        return 0
    return headers + sum(1 for line in lines if _SNIFF_RE.match(line))


def is_program(program: str) -> bool:
    """Exim's syslog ident: "exim" by default (``syslog_processname``), Debian's "exim4"."""
    return program in ("exim", "exim4") or program.startswith("exim")


# spec chapter "Log files", section "Logging to syslog": an entry longer than 870 characters,
# or with internal newlines, goes out as several syslog() calls, each starting [n/m] or [n\m]
_SPLIT_RE: Final = re.compile(r"\[(\d{1,4})[/\\](\d{1,4})\] ")


# SyslogJoiner: an entry still open after this many lines, or this many bytes, is given up
JOIN_MAX_LINES: Final = 200
JOIN_MAX_BYTES: Final = 256 * 1024
_JOIN_CLOCK: Final = SyslogClock(year=2000)  # any year: only the envelope's fields are read

# (raw line, its offset, the outcome already decided for it or None: parse it)
Joined = tuple[bytes, int, Skipped | None]


class _Entry:
    __slots__ = ("body", "count", "index", "items", "line_done", "prefix", "size")

    def __init__(self, prefix: str, count: int, index: int) -> None:
        self.prefix, self.count, self.index = prefix, count, index
        self.body: list[str] = []  # the parts of the entry's first line
        self.items: list[int] = []  # positions in SyslogJoiner.pending
        self.line_done = False  # a part ended with "\\": the first line is whole
        self.size = 0


class SyslogJoiner:
    """Joins the ``[n/m]`` parts Exim splits a long entry into when it logs through syslog
    (section "Logging to syslog": after 870 characters ``/``, at an internal newline ``\\``)
    back into one line, so that it is read like the same entry in Exim's own file. Pure: lines
    in, lines out, in file order, nothing read from anywhere.

    :meth:`feed` takes each raw line with its offset and gives back the lines that can be read
    now: the joined entry at its first part's offset, the other parts as ignored
    (``exim-syslog-part``), the parts after an internal newline as continuations (as in the
    file). A line after the first part of an entry still open waits with it (parts of one
    entry are written one after the other, but other processes' lines may come between), so
    :meth:`waiting_from` is the offset a checkpoint must not pass. Parts that cannot be joined
    (no first part, out of order, longer than JOIN_MAX_LINES lines or JOIN_MAX_BYTES) are given
    back as they are: :func:`parse_line` quarantines them as ``exim-syslog-split``."""

    def __init__(self) -> None:
        self.pending: list[Joined] = []
        self.open: dict[tuple[str, str, int | None], _Entry] = {}

    def waiting_from(self) -> int | None:
        return self.pending[0][1] if self.pending else None

    def feed(self, raw: bytes, offset: int) -> list[Joined]:
        part = self._part(raw)
        if part is None:
            if not self.pending:
                return [(raw, offset, None)]
            self.pending.append((raw, offset, None))
            return self._release(len(raw))
        key, n, m, sep, prefix, body = part
        entry = self.open.get(key)
        # a part's separator says how it ends: "/" the next part goes on with its line,
        # "\\" the line ends there (the next part is a line of its own, as in the file)
        if n == 1 and m > 1:
            if entry is not None:  # a new entry while one was open: the old one is given up
                self._give_up(key)
            entry = self.open[key] = _Entry(prefix, m, 0)
        elif entry is None or n != entry.index + 1 or m != entry.count:
            self.pending.append((raw, offset, None))  # a part with no entry: as it is
            return self._release(len(raw))
        entry.index = n
        if entry.line_done:
            self.pending.append((raw, offset, Skipped("exim-continuation")))
        else:
            entry.body.append(body)
            self.pending.append((raw, offset, Skipped("exim-syslog-part")))
        entry.line_done = entry.line_done or sep == "\\"
        entry.items.append(len(self.pending) - 1)
        entry.size += len(raw)
        return self._done_if_complete(key, entry)

    def flush(self) -> list[Joined]:
        """The end of the source: entries still open are given up, everything is given back."""
        for key in list(self.open):
            self._give_up(key)
        out, self.pending = self.pending, []
        return out

    def _done_if_complete(self, key: tuple[str, str, int | None], entry: _Entry) -> list[Joined]:
        if entry.index == entry.count:
            del self.open[key]
            first = entry.items[0]
            off0 = self.pending[first][1]
            self.pending[first] = ((entry.prefix + "".join(entry.body)).encode(), off0, None)
        return self._release(0)

    def _give_up(self, key: tuple[str, str, int | None]) -> None:
        entry = self.open.pop(key)
        for i in entry.items:  # back to the raw part: quarantined as exim-syslog-split
            raw, off, _decided = self.pending[i]
            self.pending[i] = (raw, off, None)

    def _release(self, grew: int) -> list[Joined]:
        for key, entry in list(self.open.items()):
            entry.size += grew
            if entry.size > JOIN_MAX_BYTES or len(self.pending) - entry.items[0] > JOIN_MAX_LINES:
                self._give_up(key)
        if not self.open:
            out, self.pending = self.pending, []
            return out
        start = min(e.items[0] for e in self.open.values())
        out = self.pending[:start]
        if out:
            self.pending = self.pending[start:]
            for e in self.open.values():
                e.items = [i - start for i in e.items]
        return out

    @staticmethod
    def _part(raw: bytes) -> tuple[tuple[str, str, int | None], int, int, str, str, str] | None:
        """(entry key, n, m, separator, the line up to the part's text, the text) of a part."""
        if b"] " not in raw[:200]:
            return None
        text = raw.decode("utf-8", "replace")
        try:
            env = parse_envelope(text, _JOIN_CLOCK)
        except ParseError:
            return None
        m = _SPLIT_RE.match(env.text) if is_program(env.program) else None
        if m is None:
            return None
        prefix = text[: len(text) - len(env.text)]
        sep = env.text[m.start(0) + 1 + len(m[1])]
        return (
            (env.host, env.program, env.pid),
            int(m[1]),
            int(m[2]),
            sep,
            prefix,
            env.text[m.end() :],
        )


def _syslog_line(text: str, clock: SyslogClock) -> Parsed | Skipped | Malformed:
    """An Exim line through syslog: the same text as in the file after syslog's envelope (the
    Exim timestamp left out when ``syslog_timestamp`` is false, the envelope's time then)."""
    try:
        env = parse_envelope(text, clock)
    except ParseError:
        return Malformed("exim-no-timestamp", text[:80])
    if not is_program(env.program):
        return Skipped("other-program")
    body = env.text
    split = _SPLIT_RE.match(body)
    if split is not None:
        # a part SyslogJoiner could not join (its entry incomplete, out of order, or too
        # long): kept in quarantine, part by part, with this reason
        return Malformed(
            "exim-syslog-split",
            f"part {split[1]} of {split[2]} of a split entry that could not be joined (build "
            "Exim with SYSLOG_LONG_LINES=yes or log to a file to keep long entries whole)",
        )
    m = _HEAD_RE.match(body)
    try:
        if m is not None:
            ms, off, _pid, qid = m.groups()
            at = _second(body[:19], off, clock.tz)
            if ms is not None:
                at = at.replace(microsecond=int(ms.ljust(6, "0")))
            body = body[m.end() :]
        else:  # syslog_timestamp = false: the message id, if any, comes first
            at = env.logged_at
            head = body.split(" ", 1)[0]
            qid = head if is_message_id(head) else None
            if qid is not None:
                body = body[len(head) + 1 :]
        service, recs = parse_text(qid, body, at)
    except _Skip as skip:
        return Skipped(skip.rule)
    except ParseError as exc:
        return Malformed(exc.code, exc.detail)
    out = LogLine(logged_at=at, host=env.host, program=env.program, pid=env.pid, text=body)
    return Parsed(out, INSTANCE, service, recs[0], recs[1:])


_SNIFF_RE: Final = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?(?: [+-]\d{4})? (?:\[\d+\] )?"
    r"(?:[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4}) |"
    r"SMTP connection |H=|Start queue run|End queue run|exim \d|TLS error on connection )"
)


def sniff(lines: Sequence[str]) -> int:
    """How many of a source's first lines look like Exim main log lines, in its own file or
    through syslog."""
    own = [line for line in lines if _SNIFF_RE.match(line)]
    return len(own) + count_programs([x for x in lines if not _SNIFF_RE.match(x)], is_program)


__all__ = [
    "NAME",
    "SyslogJoiner",
    "id_time",
    "is_message_id",
    "parse_duration",
    "parse_line",
    "parse_rejectlog_line",
    "parse_text",
    "reply_of",
    "sniff",
    "sniff_rejectlog",
    "split_host",
]
