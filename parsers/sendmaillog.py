"""Sendmail 8 log lines (syslog; ``sm-mta``, ``sm-msp-queue``, ``sendmail``) -> the MTA-neutral
records.

Sendmail logs only through syslog, at ``LogLevel`` 9 and above one line per envelope and one per
delivery attempt, most of them ``name=value`` equates separated by ``, ``. The sources are the
equates' descriptions in "sendmail" (Costales et al., 4th edition, chapter 14, "Logging and
Statistics", section "Log lines") and "sendmail 8.13 Companion" chapter 14 (table 14-1), and the
``LogLevel`` section of Sendmail's "Installation and Operation Guide" (``doc/op/op.me``), checked
against the log of a real Sendmail 8.17 (Debian 12's sendmail-bin; tests/lab/sendmail_lab.py):

- ``QID: from=<sender>, size=, class=, nrcpts=, msgid=<>, bodytype=, proto=, daemon=, relay=``:
  the envelope, logged once the message is in the queue (``relay=name [ip]`` for SMTP,
  ``relay=user@localhost`` for a local submission; ``(may be forged)`` when the name does not
  resolve back);
- ``QID: to=<a>,<b>, ctladdr=<c> (uid/gid), delay=, xdelay=, mailer=, pri=, relay=, dsn=,
  stat=``: one delivery attempt of one or more recipients (one SMTP transaction may carry several:
  they share the line). ``delay=[D+]HH:MM:SS`` since the message was queued, ``xdelay=`` of this
  attempt; ``stat=Sent (reply)``, ``stat=Deferred: reply`` or the failure text, ``stat=queued``
  when the message was only queued (``DeliveryMode`` queue or deferred); ``reply=`` when logged;
- ``QID: NEWQID: DSN: subject`` and ``QID: NEWQID: sender notify: subject``: the delivery status
  notification ``NEWQID`` that Sendmail made about ``QID`` (``postmaster notify:`` for the copy
  to the postmaster): its subject says which kind, ``Warning: could not send message for past
  ...`` a delay, ``Return receipt`` a success, ``Cannot send message for ...`` a failure because
  the queue timeout (``Timeout.queuereturn``) ran out (the message expires), anything else a
  failure;
- ``QID: done; delay=, ntries=``: the message left the queue (8.17 logs it; earlier versions log
  no removal line), ``NOQUEUE: connect from``, a line of no message (8.16 and later), and
  ``collect: ... info=, status=tempfail``: the message refused while its data was read (8.17's
  bare-linefeed check, CVE-2023-51765);
- ``[QID: ]ruleset=check_*, arg1=, [arg2=, ]relay=, reject=reply``: a rejection by the check
  rulesets (``check_relay`` at connection, ``check_mail``, ``check_rcpt``, ``check_compat``,
  ``check_eoh`` and ``check_data`` after DATA), and ``Milter: ... reject=`` for a milter's;
- ``AUTH failure (MECH): reason, relay=``, ``AUTH=server, relay=, authid=, mech=``,
  ``STARTTLS=server|client, relay=, version=, verify=, cipher=, bits=``, and the lines about a
  session (``lost input channel from``, ``did not issue MAIL/EXPN/VRFY/ETRN``, ``timeout waiting
  for input``, ``possible SMTP attack``).

Queue ids since 8.12 are eight base-60 characters (``0-9A-Za-x``: year modulo 60, month, day,
hour, minute, second, a two-character sequence) followed by the process id in at least six
digits (``v8Q7t1BT012663``). Where no ``done`` line comes, a message is over when every
recipient has a final status (the ``ends_when_final`` lifecycle of
:data:`mtalens.parsers.formats.SENDMAIL`); a queue id names one message only (it encodes the time
and process), so the records of a message logged before its ``from=`` line (a recipient refused
at RCPT) stay with it. Samples: ``sample_logs/sendmail/real-sendmail-8.17.log`` (the lab's real
Sendmail) and ``handwritten-8.15.log``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mtalens.parsers import postfix as pf
from mtalens.parsers.errors import ParseError
from mtalens.parsers.lines import Malformed, Parsed, Skipped, decode_line
from mtalens.parsers.syslog import SyslogClock, count_programs, parse_envelope

NAME: Final = "sendmail"

# the syslog tags Sendmail logs under: Debian's sm-mta and sm-msp-queue, the upstream default
# "sendmail"; a site's own DaemonPortOptions or -L name keeps the "sm-" prefix by convention
_PROGRAMS: Final = frozenset({"sendmail", "sm-mta", "sm-msp-queue", "sm-msp", "sm-mta-in"})


def is_program(program: str) -> bool:
    return program in _PROGRAMS or program.startswith(("sm-mta", "sm-msp"))


_B60: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx")


def is_queue_id(s: str) -> bool:
    """``v8Q7t1BT012663``: eight base-60 characters and a process id of six or more digits."""
    return 14 <= len(s) <= 18 and _B60.issuperset(s[:8]) and s[8:].isdigit()


# --- equates -------------------------------------------------------------------------------------

# the equates Sendmail writes (the 4th edition's section 14.5 and the 8.13 Companion's table
# 14-1, plus auth=, reply=, tls_verify= and collect's info=, where=, status= of later versions): a ", " followed by one of these names
# starts the next one; any other ", x=" stays in the value it is in (addresses are the sender's)
_KEYS: Final = (
    "action", "arg1", "arg2", "arg3", "auth", "authid", "bits", "bodytype", "cipher", "class",
    "ctladdr", "daemon", "delay", "dsn", "from", "info", "len", "mailer", "mech", "milter",
    "msgid", "nrcpts", "ntries", "pri", "proto", "quarantine", "rcpts", "reject", "relay",
    "reply", "ruleset", "size", "stat", "status", "tls_verify", "to", "verify", "version",
    "where", "xdelay",
)  # fmt: skip
# the last equate of its line: its value runs to the end (a reply text may hold anything)
_LAST: Final = frozenset({"stat", "reject", "quarantine"})
_KEYSET: Final = frozenset(_KEYS)
_KEY_RE: Final = re.compile(r"([a-z][a-z0-9_]*)=")


def equates(text: str) -> dict[str, str]:
    """``a=1, b=<x, y>, stat=...`` -> ``{"a": "1", "b": "<x, y>", "stat": "..."}``. A separator
    inside ``<...>`` is part of the address."""
    # the pieces between ", " in turn: one that starts with a known "key=" begins the next
    # equate, unless the value so far has an unclosed "<" (split and joined rather than
    # searched with a pattern per equate: a third of the time of a line)
    out: dict[str, str] = {}
    if not text:
        return out
    m = _KEY_RE.match(text)
    if m is None:
        out[""] = text
        return out
    key = m.group(1)
    if key in _LAST:
        out[key] = text[m.end() :]
        return out
    parts = text[m.end() :].split(", ")
    value = parts[0]
    keyset = _KEYSET
    for j in range(1, len(parts)):
        part = parts[j]
        eq = part.find("=")
        name = part[:eq] if eq > 0 else ""
        if name in keyset and ("<" not in value or value.count("<") <= value.count(">")):
            out.setdefault(key, value)
            key = name
            if key in _LAST:
                out[key] = ", ".join(parts[j:])[eq + 1 :]
                return out
            value = part[eq + 1 :]
        else:
            value = f"{value}, {part}"
    out.setdefault(key, value)
    return out


_RELAY_RE: Final = re.compile(
    r"^(?:(?P<user>[^@\s\[]+)@)?(?P<name>[^\s\[]+)?\s*(?:\[(?:IPv6:)?(?P<ip>[^\]]*)\])?"
)


# relay= and delay= values repeat (the same MX hosts, the same few seconds): their readings are
# kept, up to a bound, so a busy log reads each once
_CACHE_MAX: Final = 4096
_RELAYS: dict[str, tuple[str | None, str | None, str | None]] = {}
_DELAYS: dict[str, float] = {}


def split_relay(value: str) -> tuple[str | None, str | None, str | None]:
    """``name. [ip] (may be forged)`` -> (name, ip, user); ``[ip] [ip]`` -> (None, ip, None);
    ``root@localhost`` -> ("localhost", None, "root")."""
    got = _RELAYS.get(value)
    if got is None:
        if len(_RELAYS) >= _CACHE_MAX:
            _RELAYS.clear()
        got = _RELAYS[value] = _split_relay(value)
    return got


def _split_relay(value: str) -> tuple[str | None, str | None, str | None]:
    value = value.removesuffix(" (may be forged)").strip()
    if value.startswith("["):  # "[127.0.0.1] [127.0.0.1]": a literal, no name
        end = value.find("]")
        ip = value[1:end] if end > 0 else value[1:]
        return None, ip.removeprefix("IPv6:") or None, None
    m = _RELAY_RE.match(value)
    if m is None:  # pragma: no cover - the pattern matches any string
        return value or None, None, None
    name = m["name"].rstrip(".") if m["name"] else None
    return name or None, m["ip"] or None, m["user"]


_DELAY_RE: Final = re.compile(r"(?:(\d{1,6})\+)?(\d{1,3}):(\d\d):(\d\d)")


def parse_delay(text: str) -> float:
    """``delay=4+02:16:02`` (days+HH:MM:SS) -> seconds."""
    got = _DELAYS.get(text)
    if got is not None:
        return got
    m = _DELAY_RE.fullmatch(text)
    if m is None:
        raise ParseError("sendmail-bad-delay", text[:40])
    d, h, mi, s = int(m[1] or 0), int(m[2]), int(m[3]), int(m[4])
    if len(_DELAYS) >= _CACHE_MAX:
        _DELAYS.clear()
    got = _DELAYS[text] = float(((d * 24 + h) * 60 + mi) * 60 + s)
    return got


_REPLY_RE: Final = re.compile(r"^(?P<code>[2-5]\d\d)[ -](?:(?P<dsn>[2-5]\.\d{1,3}\.\d{1,3})\b)?")


def reply_of(text: str) -> tuple[int | None, str | None]:
    m = _REPLY_RE.match(text)
    return (int(m["code"]), m["dsn"]) if m else (None, None)


def _address(value: str) -> str:
    v = value.strip()
    return v[1:-1] if v.startswith("<") and v.endswith(">") else v


def split_recipients(value: str) -> list[str]:
    """``<a@x>,<b@y>`` or ``root,bob`` -> the addresses (a ``,`` inside ``<>`` or quotes is
    part of the address)."""
    if '"' not in value:
        # the usual line: each comma-separated piece bare or one <address>, so no comma is
        # inside brackets and the scan below would split at every one of them
        parts = value.split(",")
        if all(
            ("<" not in p and ">" not in p)
            or (p[:1] == "<" and p[-1:] == ">" and p.count("<") == 1 and p.count(">") == 1)
            for p in parts
        ):
            return [a for a in (p[1:-1] if p[:1] == "<" else p.strip() for p in parts) if a]
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, c in enumerate(value):
        if c == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            out.append(_address(value[start:i]))
            start = i + 1
    out.append(_address(value[start:]))
    return [a for a in out if a]


# --- lines ---------------------------------------------------------------------------------------

# the mailers that speak SMTP (cf/README "MAILER DEFINITIONS": smtp, esmtp, smtp8, dsmtp and
# relay): a "Sent" there means the server answered the end of data with 250 (RFC 5321 4.3.2)
_SMTP_MAILERS: Final = frozenset({"smtp", "esmtp", "smtp8", "dsmtp", "relay"})


def _from_line(qid: str, f: dict[str, str]) -> tuple[pf.Record, ...]:
    sender = _address(f["from"])
    size_s = f.get("size", "")
    if not size_s.isdigit():
        raise ParseError("sendmail-bad-from", f"size={size_s[:40]}")
    size = pf._bounded(size_s, pf.INT64_MAX, "sendmail-bad-from")
    nrcpts = f.get("nrcpts", "")
    nrcpt = pf._bounded(nrcpts, pf.INT32_MAX, "sendmail-bad-from") if nrcpts.isdigit() else None
    relay = f.get("relay", "")
    name, ip, user = split_relay(relay)
    recs: list[pf.Record] = []
    if ip is not None or "proto" in f or "daemon" in f:
        method = None
        auth = f.get("auth")
        recs.append(
            pf.Client(
                queue_id=qid,
                client_name=name or "unknown",
                client_ip=ip or "",
                client_port=None,
                sasl_method=method,
                sasl_username=auth if auth and auth != "NONE" else None,
                sasl_sender=None,
                orig_queue_id=None,
                orig_client=None,
                protocol=f.get("proto"),
            )
        )
    else:  # "relay=root@localhost": a local submission
        recs.append(pf.Pickup(queue_id=qid, uid=None, sender=sender, user=user))
    recs.append(pf.QueueActive(queue_id=qid, sender=sender, size=size, nrcpt=nrcpt))
    mid = f.get("msgid")
    if mid:
        recs.append(pf.MessageId(queue_id=qid, message_id=_address(mid), resent=False))
    return tuple(recs)


def _status(stat: str, dsn: str | None) -> tuple[str, str]:
    """(status, the text after it) of a ``stat=``."""
    if stat == "Sent" or stat.startswith("Sent "):
        detail = stat[4:].strip()
        if detail.startswith("(") and detail.endswith(")"):
            detail = detail[1:-1]
        return "sent", detail
    if stat == "Deferred" or stat.startswith(("Deferred:", "Deferred ")):
        return "deferred", stat[8:].lstrip(": ").strip()
    cls = dsn[0] if dsn else ""
    if cls == "2":
        return "sent", stat
    if cls == "4":
        return "deferred", stat
    return "bounced", stat


_DSN_RE: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def _to_line(qid: str, f: dict[str, str]) -> tuple[pf.Record, ...] | None:
    stat = f.get("stat", "")
    recipients = split_recipients(f["to"])
    if not recipients:
        raise ParseError("sendmail-bad-to", f["to"][:80])
    if stat == "queued":
        return None
    dsn = f.get("dsn") or None
    if dsn is not None and _DSN_RE.fullmatch(dsn) is None:
        raise ParseError("sendmail-bad-dsn", dsn[:40])
    status, text = _status(stat, dsn)
    reply = f.get("reply")
    detail = reply if reply else text
    code, reply_dsn = reply_of(detail)
    # the server's own enhanced code wins over dsn=, Sendmail's mapping of the reply code
    # (it logs "dsn=5.0.0, reply=554 5.7.1 ..." and "dsn=5.2.2, reply=552 5.3.4 ...")
    mailer = f.get("mailer")
    if code is None and status == "sent" and mailer in _SMTP_MAILERS:
        code = 250
    relay = f.get("relay")
    rhost = rip = None
    if relay:
        rhost, rip, _user = split_relay(relay)
        relay_col = f"{rhost or 'unknown'}[{rip}]" if rip else (rhost or relay)
    else:
        relay_col = mailer or "none"
    delay = parse_delay(f["delay"]) if "delay" in f else None
    xdelay = parse_delay(f["xdelay"]) if "xdelay" in f else None
    remote = status != "sent" and code is not None
    return tuple(
        pf.Delivery(
            queue_id=qid,
            recipient=r,
            orig_recipient=None,
            relay=relay_col,
            relay_host=rhost,
            relay_ip=rip,
            relay_port=None,
            conn_use=None,
            delay=delay,
            delays=None,
            dsn=reply_dsn or dsn,
            status=status,
            detail=detail,
            reply_code=code,
            smtp_stage=None,
            remote_host=rhost if remote else None,
            remote_ip=rip if remote else None,
            delivery_time=xdelay,
            transport=mailer,
        )
        for r in recipients
    )


# check_* rulesets -> the SMTP stage they run at (cf/README "Anti-Spam Configuration Control"
# and "The check_* rulesets"; check_compat runs when a recipient is queued for delivery)
_RULESET_STAGES: Final = {
    "check_relay": "CONNECT",
    "check_mail": "MAIL",
    "check_rcpt": "RCPT",
    "check_compat": "RCPT",
    "check_eoh": "DATA",
    "check_data": "DATA",
    "check_etrn": "ETRN",
    "check_expn": "EXPN",
    "check_vrfy": "VRFY",
    "tls_client": "STARTTLS",
    "tls_server": "STARTTLS",
    "tls_rcpt": "RCPT",
    "trust_auth": "MAIL",  # the AUTH= parameter of MAIL FROM (RFC 4954 section 5)
}


def _rejection(qid: str | None, f: dict[str, str], *, milter: str | None = None) -> pf.Reject:
    if "reject" in f:
        reason, action = f["reject"], "reject"
    elif "quarantine" in f:
        reason, action = f["quarantine"], "hold"
    else:
        reason, action = f.get("", "discard"), "discard"
    if milter is not None:
        action = "milter-" + action
    code, dsn = reply_of(reason)
    ruleset = f.get("ruleset", "")
    stage = _RULESET_STAGES.get(ruleset)
    arg1 = f.get("arg1")
    sender = recipient = None
    if ruleset == "check_mail" and arg1 is not None:
        sender = _address(arg1)
    elif ruleset in ("check_rcpt", "tls_rcpt") and arg1 is not None:
        recipient = _address(arg1)
    if milter is not None:
        stage = milter
        if "from" in f:
            sender = _address(f["from"])
        if "to" in f:
            recipient = _address(f["to"])
    name = ip = None
    if "relay" in f:
        name, ip, _user = split_relay(f["relay"])
    elif ruleset == "check_relay":  # arg1=name, arg2=ip
        name, ip = arg1, f.get("arg2")
    return pf.Reject(
        queue_id=qid,
        action=action,
        stage=stage,
        client_name=name or ("unknown" if ip else None),
        client_ip=ip,
        reply_code=code,
        dsn=dsn,
        reason=reason,
        sender=sender,
        recipient=recipient,
        helo=None,
        proto=None,
    )


# "Milter: from=<a>, reject=..." (envelope stage before the first equate), "Milter: data,
# reject=...", "Milter (name): ..." in later versions
_MILTER_RE: Final = re.compile(r"^Milter(?: \([^)]*\))?: (?:(?P<stage>[a-z]+)(?:, |: |$))?")
_MILTER_STAGES: Final = {"from": "MAIL", "to": "RCPT", "data": "DATA", "connect": "CONNECT",
                         "helo": "HELO", "header": "DATA", "eoh": "DATA", "body": "DATA",
                         "eom": "DATA"}  # fmt: skip
_NOTIFY: Final = (("DSN: ", ""), ("postmaster notify: ", "postmaster-"),
                  ("return to sender: ", ""), ("sender notify: ", ""))  # fmt: skip
_AUTHFAIL_RE: Final = re.compile(r"^AUTH failure \((?P<mech>[^)]*)\): (?P<reason>.*?)"
                                 r"(?:, user=(?P<user>[^,]*))?, relay=(?P<relay>.*)$")  # fmt: skip
_SESSION: Final = (
    ("lost input channel from ", "lost-connection"),
    ("timeout waiting for input from ", "lost-connection"),
    ("collect: premature EOM", "lost-connection"),
    ("collect: unexpected close", "lost-connection"),
)
_NO_MAIL_RE: Final = re.compile(r"^(?P<who>.*?) did not issue (?P<what>\S+) during connection to")
_HOST_IN_RE: Final = re.compile(r"(?:from |on connection from |relay=)?(?P<host>[^\s\[,]*)\s*"
                                r"\[(?:IPv6:)?(?P<ip>[^\]]+)\]")  # fmt: skip


def _session_event(kind: str, text: str, qid: str | None) -> pf.Event:
    m = _HOST_IN_RE.search(text)
    host = m["host"].rstrip(".") or None if m else None
    return pf.Event(kind=kind, queue_id=qid, remote_host=host, remote_ip=m["ip"] if m else None,
                    detail=text)  # fmt: skip


def _tls(text: str, qid: str | None) -> pf.Event:
    side, _, rest = text.partition(",")
    f = equates(rest.strip())
    name = ip = None
    if "relay" not in f and ", relay=" in rest:  # an error line: "error: accept failed=-1, ..."
        f["relay"] = rest.rsplit(", relay=", 1)[1].split(",", 1)[0]
    if "relay" in f:
        name, ip, _u = split_relay(f["relay"])
    if "error" in rest[:20] or "version" not in f:
        kind = "tls-error"
    else:
        # ${verify} (op.me "Macros": OK, NO, NOT, NONE, FAIL, SOFTWARE, PROTOCOL, TEMP)
        verify = f.get("verify", "")
        if verify == "OK":
            kind = "tls-verified"
        elif verify in ("NO", "NOT", "NONE") and side.endswith("server"):
            kind = "tls-anonymous"  # the client showed no certificate (Postfix's word for it)
        else:
            kind = "tls-untrusted"
    detail = ", ".join(f"{k}={f[k]}" for k in ("version", "verify", "cipher", "bits") if k in f)
    return pf.Event(kind=kind, queue_id=qid, remote_host=name, remote_ip=ip,
                    detail=detail or text)  # fmt: skip


_DAEMON_PREFIXES: Final = ("starting daemon", "restarting ", "stopping daemon", "alias database",
                           "started as: ",
                           "/etc/mail/aliases:", "runqueue", "grew WorkList", "Sendmail 8",
                           "rejecting connections on daemon", "accepting connections again",
                           "Authentication-Warning")  # fmt: skip


_ALIASES_RE: Final = re.compile(r"^\S+: \d+ aliases, longest \d+ bytes")  # newaliases' summary
_ADDRESS_NOTE_RE: Final = re.compile(r"^<(?P<addr>[^<>]*)>\.\.\. (?P<text>.+)$")


def _collect(qid: str | None, text: str) -> pf.Record:
    """``collect: relay=, from=<>, info=Bare linefeed (LF) not allowed, where=header,
    status=tempfail``: the message was refused while its data was read; other ``collect:``
    lines say the connection went (``premature EOM``, ``I/O error``)."""
    f = equates(text[9:])
    status = f.get("status", "")
    if "info" in f and status in ("tempfail", "reject", "rejected"):
        name, ip, _u = split_relay(f.get("relay", ""))
        return pf.Reject(queue_id=qid, action="reject", stage="DATA", client_name=name,
                         client_ip=ip, reply_code=None, dsn=None, reason=f["info"],
                         sender=_address(f["from"]) if "from" in f else None, recipient=None,
                         helo=None, proto=None)  # fmt: skip
    return _session_event("lost-connection", text, qid)


def parse_text(qid: str | None, text: str) -> tuple[str, tuple[pf.Record, ...]]:
    """The records of one line's text after ``QID: `` (``qid`` None when it has none), with the
    service name kept for them. Raises ParseError for a malformed line, :class:`_Skip` for a
    line no record comes from."""
    if text.startswith("NOQUEUE: "):  # 8.16 and later: a line of no message
        qid, text = None, text[9:]
    if text.startswith("connect from "):
        return "smtp-in", (_session_event("connect", text, None),)
    if text.startswith(("tls_clt_features=", "tls_srv_features=")):
        raise _Skip("sendmail-tls-features")  # the per-connection TLS feature lookup
    if text.startswith("collect: "):
        rec = _collect(qid, text)
        return ("acl" if isinstance(rec, pf.Reject) else "smtp-in"), (rec,)
    if qid is not None:
        # the commonest lines first ("to=", "from=" and "done;" start no other kind's text)
        if text.startswith("to="):
            f = equates(text)
            recs_to = _to_line(qid, f)
            if recs_to is None:
                detail = f"queued: {f.get('to', '')}"
                return "queue", (pf.Event(kind="queued", queue_id=qid, remote_host=None,
                                          remote_ip=None, detail=detail),)  # fmt: skip
            return f.get("mailer") or "deliver", recs_to
        if text.startswith("from="):
            return "receive", _from_line(qid, equates(text))
        if text.startswith("done;") or text == "done":  # 8.16 and later: the message is gone
            return "queue", (pf.Removed(queue_id=qid, by_admin=False),)
        mn = _ADDRESS_NOTE_RE.match(text)
        if mn is not None:  # "<nosuch@example.net>... User unknown": a recipient refused
            # the log names no reply; for an unknown local user Sendmail answers "550 5.1.1
            # <addr>... User unknown" (seen from the real 8.17 in tests/test_e2e_sendmail.py)
            unknown = mn["text"] == "User unknown"
            return "acl", (pf.Reject(queue_id=qid, action="reject", stage="RCPT",
                                     client_name=None, client_ip=None,
                                     reply_code=550 if unknown else None,
                                     dsn="5.1.1" if unknown else None, reason=mn["text"],
                                     sender=None, recipient=mn["addr"], helo=None,
                                     proto=None),)  # fmt: skip
        # "QID: NEWQID: DSN: ..." names the notification NEWQID made about QID
        colon = text.find(": ")
        if colon > 0 and is_queue_id(text[:colon]):
            new, rest = text[:colon], text[colon + 2 :]
            for prefix, kind_prefix in _NOTIFY:
                if rest.startswith(prefix):
                    subject = rest[len(prefix) :]
                    kind = "non-delivery"
                    if subject.startswith("Warning: could not send message for past"):
                        kind = "delay"
                    elif subject.startswith("Return receipt"):
                        kind = "success"
                    recs: list[pf.Record] = [
                        pf.Notification(queue_id=qid, kind=kind_prefix + kind, new_queue_id=new)
                    ]
                    if subject.startswith("Cannot send message for"):  # Timeout.queuereturn
                        recs.append(pf.Expired(queue_id=qid, sender=None, returned=True))
                    return "dsn", tuple(recs)
            return "queue", (pf.Event(kind="sendmail-message", queue_id=qid, remote_host=None,
                                      remote_ip=None, detail=text),)  # fmt: skip
    if text.startswith("STARTTLS"):  # (no check below reads a line that starts so)
        # "STARTTLS=server" (a client's session with us) or "STARTTLS=client" (ours with a
        # remote server): the service says which way, as Postfix's smtpd and smtp do
        side = "tls-client" if text.startswith("STARTTLS=client") else "tls-server"
        return side, (_tls(text, qid),)
    if text.startswith("ruleset="):
        return "acl", (_rejection(qid, equates(text)),)
    mm = _MILTER_RE.match(text)
    if mm is not None and ("reject=" in text or "quarantine=" in text or "discard" in text):
        f = equates(text[mm.end() :])
        if mm["stage"] in ("from", "to") and mm["stage"] not in f:
            f = equates(text[len(text.split(":", 1)[0]) + 2 :])
        stage = _MILTER_STAGES.get(mm["stage"] or "", "DATA")
        return "milter", (_rejection(qid, f, milter=stage),)
    ma = _AUTHFAIL_RE.match(text)
    if ma is not None:
        name, ip, _u = split_relay(ma["relay"])
        return "auth", (pf.AuthFailure(client_name=name or "unknown", client_ip=ip or "",
                                       mechanism=ma["mech"], reason=ma["reason"],
                                       sasl_username=ma["user"] or None),)  # fmt: skip
    if text.startswith("AUTH="):
        f = equates(text.partition(",")[2].strip())
        name, ip, _u = split_relay(f.get("relay", ""))
        detail = ", ".join(f"{k}={f[k]}" for k in ("authid", "mech", "bits") if k in f)
        return "auth", (pf.Event(kind="sasl-" + text[5:].split(",", 1)[0], queue_id=qid,
                                 remote_host=name, remote_ip=ip, detail=detail),)  # fmt: skip
    for prefix, kind in _SESSION:
        if text.startswith(prefix):
            return "smtp-in", (_session_event(kind, text, qid),)
    mn = _NO_MAIL_RE.match(text)
    if mn is not None:
        return "smtp-in", (_session_event("no-mail", text, qid),)
    if "possible SMTP attack" in text or "SMTP RCPT flood" in text:
        return "smtp-in", (_session_event("smtp-attack", text, qid),)
    if text.startswith(_DAEMON_PREFIXES) or _ALIASES_RE.match(text):
        raise _Skip("sendmail-daemon")
    if qid is not None:
        return "queue", (pf.Event(kind="sendmail-message", queue_id=qid, remote_host=None,
                                  remote_ip=None, detail=text),)  # fmt: skip
    raise _Skip("sendmail-other")


class _Skip(Exception):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


_SOLARIS_ID_RE: Final = re.compile(r"^\[ID \d+ [a-z0-9]+\.[a-z]+\] ")


def parse_line(raw: bytes, clock: SyslogClock) -> Parsed | Skipped | Malformed:
    """Decide one Sendmail syslog line (bytes without its newline)."""
    text = decode_line(raw)
    if not isinstance(text, str):
        return text
    try:
        env = parse_envelope(text, clock)
        if not is_program(env.program):
            return Skipped("other-program")
        body = env.text
        if body.startswith("[ID "):  # Solaris syslog's message id
            m = _SOLARIS_ID_RE.match(body)
            if m is not None:
                body = body[m.end() :]
        qid: str | None = None
        colon = body.find(": ")
        if 0 < colon <= 18 and is_queue_id(body[:colon]):
            qid, body = body[:colon], body[colon + 2 :]
        service, recs = parse_text(qid, body)
    except _Skip as skip:
        return Skipped(skip.rule)
    except ParseError as exc:
        return Malformed(exc.code, exc.detail)
    return Parsed(env, env.program, service, recs[0], recs[1:])


def sniff(sample: Sequence[str]) -> int:
    """How many of a source's first lines Sendmail logged."""
    return count_programs(sample, is_program)


__all__ = [
    "NAME",
    "equates",
    "is_program",
    "is_queue_id",
    "parse_delay",
    "parse_line",
    "parse_text",
    "sniff",
    "split_recipients",
    "split_relay",
]
