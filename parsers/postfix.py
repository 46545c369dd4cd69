"""Postfix log messages: the text after ``postfix/<service>[pid]: ``.

Reads what Postfix 2.x and 3.x (checked against 3.7, Debian 12) write for the services a mail
administrator cares about. Where the shapes come from:

- delivery agents smtp, lmtp, local, virtual, pipe, error, retry, discard: ``to=<>, orig_to=<>,
  relay=, conn_use=, delay=, delays=a/b/c/d, dsn=, status=... (text)``; the four delays are
  before-queue, in-queue, connection set-up and transmission (postconf(5) ``delay_logging_
  resolution_limit``; Postfix ``README_FILES/...``, "delays=a/b/c/d" in the 2.3 release notes).
- smtpd: ``connect from``, ``QID: client=host[ip], sasl_method=, sasl_username=, orig_queue_id=,
  orig_client=``, ``NOQUEUE: reject: STAGE from host[ip]: CODE D.S.N text; from=<> to=<>
  proto= helo=<>`` (smtpd_*_restrictions, ``access(5)``), SASL failures, ``lost connection after
  X``, ``timeout after X``, ``disconnect from ... commands=N``.
- postscreen(8): CONNECT, PASS NEW/OLD, DNSBL rank, PREGREET, HANGUP, DISCONNECT, allow/denylist,
  and its ``NOQUEUE: reject`` (fields separated by ", ").
- cleanup(8): ``message-id=<>``, ``resent-message-id=``, header/body_checks and milter actions
  (``reject|hold|discard|warn|redirect|filter|replace|milter-reject: ...``).
- qmgr(8): ``from=<>, size=, nrcpt= (queue active)``, ``removed``, ``from=<>, status=expired,
  returned to sender``; pickup(8) ``uid= from=<>``; postsuper(1) ``removed``.
- bounce(8): ``sender non-delivery notification: NEWID`` and its delay / delivery-status /
  postmaster siblings.
- TLS (``Trusted|Verified|Untrusted|Anonymous TLS connection established``), ``connect to
  host[ip]:port: Connection refused|timed out``, DNS lookup failures, ``warning:`` lines.

Queue IDs: the short hexadecimal form (``3F2A41C0B7``) and the long form of
``enable_long_queue_ids = yes`` (``4Xk2Lm0Rz9z9sTj``: base-52 time, ``z``, inode; postconf(5)).
Samples: ``sample_logs/postfix/*.log`` with ``*.expected.jsonl`` next to each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from mtalens.parsers.errors import ParseError

# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    queue_id: str
    recipient: str
    orig_recipient: str | None
    relay: str
    relay_host: str | None
    relay_ip: str | None
    relay_port: int | None
    conn_use: int | None
    delay: float | None
    delays: tuple[float, float, float, float] | None
    dsn: str | None
    status: str
    detail: str  # the text in parentheses after the status
    reply_code: int | None
    smtp_stage: str | None
    remote_host: str | None
    remote_ip: str | None
    # other MTAs' extras (Exim: DT=, R=, T=, the local part/file/pipe of a local delivery);
    # Postfix leaves them None
    delivery_time: float | None = None
    final_address: str | None = None
    router: str | None = None
    transport: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    queue_id: str
    client_name: str
    client_ip: str
    client_port: int | None
    sasl_method: str | None
    sasl_username: str | None
    sasl_sender: str | None
    orig_queue_id: str | None
    orig_client: str | None
    # other MTAs' extras (Exim's H=(helo), P=, U=); Postfix leaves them None
    helo: str | None = None
    protocol: str | None = None
    ident: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pickup:
    queue_id: str
    uid: int | None
    sender: str
    user: str | None = None  # the caller's login name where logged instead of a uid (Exim U=)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageId:
    queue_id: str
    message_id: str
    resent: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueActive:
    queue_id: str
    sender: str
    size: int
    nrcpt: int | None  # None: not logged (Exim without +received_recipients)


@dataclass(frozen=True, slots=True, kw_only=True)
class Removed:
    queue_id: str
    by_admin: bool  # postsuper -d


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    queue_id: str
    sender: str | None  # None: not logged with it (Sendmail's "Cannot send message for" DSN)
    returned: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    queue_id: str  # the original message
    kind: str  # non-delivery | delay | success | postmaster-non-delivery | ...
    new_queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    queue_id: str | None
    action: str  # reject, defer, hold, discard, warn, filter, redirect, milter-reject, ...
    stage: str | None
    client_name: str | None
    client_ip: str | None
    reply_code: int | None
    dsn: str | None
    reason: str
    sender: str | None
    recipient: str | None
    helo: str | None
    proto: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailure:
    client_name: str
    client_ip: str
    mechanism: str | None
    reason: str
    sasl_username: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: str
    queue_id: str | None
    remote_host: str | None
    remote_ip: str | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    rule: str


Record = (
    Delivery
    | Client
    | Pickup
    | MessageId
    | QueueActive
    | Removed
    | Expired
    | Notification
    | Reject
    | AuthFailure
    | Event
    | Ignored
)

DELIVERY_SERVICES: Final = frozenset(
    {"smtp", "lmtp", "local", "virtual", "pipe", "error", "retry", "discard", "relay"}
)

# --- small scanners ---------------------------------------------------------------------------

_SHORT_QID_CHARS: Final = frozenset("0123456789ABCDEF")
# enable_long_queue_ids: digits and consonants, both cases, with "z" separating time and inode
_LONG_QID_CHARS: Final = frozenset("0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz")


def is_queue_id(s: str) -> bool:
    n = len(s)
    if 5 <= n <= 12 and _SHORT_QID_CHARS.issuperset(s):
        return True
    return 10 <= n <= 20 and "z" in s and _LONG_QID_CHARS.issuperset(s)


def split_qid(text: str) -> tuple[str | None, str]:
    """``3F2A41C0B7: rest`` -> (qid, rest); anything else -> (None, text)."""
    colon = text.find(": ")
    if 5 <= colon <= 20:
        head = text[:colon]
        if is_queue_id(head):
            return head, text[colon + 2 :]
    return None, text


def parse_hostaddr(s: str) -> tuple[str, str | None, int | None]:
    """``mx.example.com[192.0.2.1]:25`` -> (name, ip, port); ``[ip]:port``; ``local``.
    IPv6 addresses appear as ``[2001:db8::1]`` or ``[ipv6:...]``."""
    lb = s.find("[")
    if lb < 0:
        return s, None, None
    rb = s.find("]", lb)
    if rb < 0:
        return s, None, None
    name = s[:lb]
    ip = s[lb + 1 : rb]
    if ip.lower().startswith("ipv6:"):
        ip = ip[5:]
    port: int | None = None
    tail = s[rb + 1 :]
    if tail.startswith(":") and tail[1:].isdigit():
        port = _bounded(tail[1:], INT32_MAX, "bad-port")
    return name, ip, port


INT32_MAX: Final = 2**31 - 1  # the store's INTEGER columns
INT64_MAX: Final = 2**63 - 1  # BIGINT


def _bounded(digits: str, limit: int, code: str) -> int:
    """A logged number that does not fit its column is a malformed line, not a crash."""
    value = int(digits)
    if value > limit:
        raise ParseError(code, f"{digits[:40]} exceeds {limit}")
    return value


_SAID_RE: Final = re.compile(
    r"host (?P<host>[^\s\[]+)\[(?P<ip>[^\]]*)\] said: (?P<code>[2-5]\d\d)[ -]"
)
_CODE_RE: Final = re.compile(r"^(?P<code>[2-5]\d\d)[ -]")
_STAGE_RE: Final = re.compile(r"\(in reply to (?P<stage>[^)]+?)(?: command)?\)\s*$")
_LOST_RE: Final = re.compile(
    r"(?:lost connection with|conversation with) (?P<host>[^\s\[]+)\[(?P<ip>[^\]]*)\]"
    r"(?: timed out)? while (?P<stage>.+)$"
)
_CONNECT_RE: Final = re.compile(
    r"connect to (?P<host>[^\s\[]+)\[(?P<ip>[^\]]*)\](?::(?P<port>\d+))?: (?P<err>.+)$"
)


def parse_status_detail(
    detail: str,
) -> tuple[int | None, str | None, str | None, str | None]:
    """The text after ``status=X`` -> (reply_code, smtp_stage, remote_host, remote_ip).

    ``host mx[ip] said: 550 5.1.1 ... (in reply to RCPT TO command)`` names the remote host, its
    reply code and the command it answered; ``250 2.0.0 Ok`` is the reply of a successful
    delivery; ``lost connection with mx[ip] while sending RCPT TO`` names the stage only.
    """
    code: int | None = None
    stage: str | None = None
    host: str | None = None
    ip: str | None = None
    m = _SAID_RE.search(detail)
    if m:
        code = int(m["code"])
        host, ip = m["host"], m["ip"]
    else:
        m2 = _CODE_RE.match(detail)
        if m2:
            code = int(m2["code"])
    ms = _STAGE_RE.search(detail)
    if ms:
        stage = ms["stage"]
    else:
        ml = _LOST_RE.search(detail)
        if ml:
            host, ip = ml["host"], ml["ip"]
            stage = ml["stage"]
        else:
            mc = _CONNECT_RE.search(detail)
            if mc:
                host, ip, stage = mc["host"], mc["ip"], "CONNECT"
    return code, stage, host, ip


def _angle(s: str, key: str) -> str | None:
    """Value of ``key=<...>`` in s, up to the first ``>`` followed by a separator or the end."""
    i = s.find(key + "=<")
    if i < 0:
        return None
    start = i + len(key) + 2
    j = start
    while True:
        j = s.find(">", j)
        if j < 0:
            return s[start:]
        nxt = s[j + 1 : j + 2]
        if nxt in ("", " ", ",", ";", ":"):
            return s[start:j]
        j += 1


# --- delivery agents ------------------------------------------------------------------------

_DELIVERY_RE: Final = re.compile(
    r"to=<(?P<to>.*?)>, (?:orig_to=<(?P<orig>.*?)>, )?relay=(?P<relay>[^,]*), "
    r"(?:conn_use=(?P<conn_use>\d+), )?delay=(?P<delay>[\d.]+), "
    r"delays=(?P<delays>[\d./]+), dsn=(?P<dsn>[\d.]+), status=(?P<status>[a-z]+)"
    r"(?: \((?P<detail>.*)\))?\s*$",
    re.S,
)


def _parse_delivery(qid: str, rest: str) -> Delivery:
    m = _DELIVERY_RE.match(rest)
    if m is None:
        raise ParseError("bad-delivery", rest[:120])
    relay = m["relay"]
    rhost, rip, rport = parse_hostaddr(relay)
    delays_s = m["delays"].split("/")
    delays: tuple[float, float, float, float] | None = None
    if len(delays_s) == 4:
        try:
            a, b, c, d = (float(x) for x in delays_s)
        except ValueError as exc:
            raise ParseError("bad-delivery", f"delays={m['delays']}") from exc
        delays = (a, b, c, d)
    detail = m["detail"] or ""
    code, stage, host, ip = parse_status_detail(detail)
    try:
        delay = float(m["delay"])
    except ValueError as exc:
        raise ParseError("bad-delivery", f"delay={m['delay']}") from exc
    return Delivery(
        queue_id=qid,
        recipient=m["to"],
        orig_recipient=m["orig"],
        relay=relay,
        relay_host=rhost if relay not in ("none",) else None,
        relay_ip=rip,
        relay_port=rport,
        conn_use=_bounded(m["conn_use"], INT32_MAX, "bad-delivery") if m["conn_use"] else None,
        delay=delay,
        delays=delays,
        dsn=m["dsn"],
        status=m["status"],
        detail=detail,
        reply_code=code,
        smtp_stage=stage,
        remote_host=host,
        remote_ip=ip,
    )


# --- smtpd / postscreen / cleanup rejects ---------------------------------------------------

# "reject: RCPT from host[ip]: 554 5.7.1 <a@b>: Relay access denied; from=<x> to=<y> proto=ESMTP helo=<h>"
_REJECT_RE: Final = re.compile(
    r"(?P<action>[a-z_-]+): (?P<stage>[A-Z][A-Z-]*) "
    r"(?:from (?P<client>[^\s\[]*\[[^\]]*\](?::\d+)?))?(?P<rest>.*)$",
    re.S,
)
_CODE_DSN_RE: Final = re.compile(r"^(?P<code>[2-5]\d\d)(?: (?P<dsn>[2-5]\.\d{1,3}\.\d{1,3}))? ")
_DSN_ONLY_RE: Final = re.compile(r"^(?P<dsn>[2-5]\.\d{1,3}\.\d{1,3}) ")
_KV_TAIL_RE: Final = re.compile(r"[;,] from=<.*$", re.S)
_REJECT_ACTIONS: Final = frozenset(
    {
        "reject",
        "defer",
        "hold",
        "discard",
        "warn",
        "filter",
        "redirect",
        "milter-reject",
        "replace",
        "bcc",
        "prepend",
        "reject_warning",
        "milter-discard",
        "milter-hold",
    }
)


# cleanup(8) header_checks/body_checks: "hold: header Subject: text from host[ip]; from=<a>
# to=<b> proto=ESMTP helo=<h>: optional text" (header_checks(5), cleanup_message.c log format)
_CHECKS_RE: Final = re.compile(
    r"(?P<action>[a-z_-]+): (?P<what>header|body) (?P<content>.*?)"
    r"(?: from (?P<client>[^\s\[]*\[[^\]]*\]|local))?; (?P<tail>from=<.*)$",
    re.S,
)


def _parse_checks(qid: str | None, text: str) -> Reject | None:
    m = _CHECKS_RE.match(text)
    if m is None or m["action"] not in _REJECT_ACTIONS:
        return None
    tail = m["tail"]
    helo = _angle(tail, "helo")
    reason = ""
    h = tail.find("helo=<")
    if h >= 0:
        end = tail.find(">", h)
        if end >= 0 and tail[end + 1 : end + 3] == ": ":
            reason = tail[end + 3 :]
            tail = tail[: end + 1]
    p = tail.find("proto=")
    proto = tail[p + 6 :].split(" ", 1)[0] if p >= 0 else None
    client_name = client_ip = None
    if m["client"]:
        client_name, client_ip, _port = parse_hostaddr(m["client"])
    code: int | None = None
    dsn: str | None = None
    mc = _CODE_DSN_RE.match(reason) or _DSN_ONLY_RE.match(reason)
    if mc and "code" not in mc.groupdict():
        dsn = mc["dsn"]
        mc = None
    if mc:
        code, dsn = int(mc["code"]), mc["dsn"]
    return Reject(
        queue_id=qid,
        action=m["action"],
        stage=m["what"],
        client_name=client_name,
        client_ip=client_ip,
        reply_code=code,
        dsn=dsn,
        reason=(m["content"] + (": " + reason if reason else "")),
        sender=_angle(tail, "from"),
        recipient=_angle(tail, " to"),
        helo=helo,
        proto=proto,
    )


def _parse_reject(qid: str | None, text: str) -> Reject:
    checks = (
        _parse_checks(qid, text) if ": header " in text[:30] or ": body " in text[:30] else None
    )
    if checks is not None:
        return checks
    m = _REJECT_RE.match(text)
    if m is None or m["action"] not in _REJECT_ACTIONS:
        raise ParseError("bad-reject", text[:120])
    client_name = client_ip = None
    if m["client"]:
        client_name, client_ip, _port = parse_hostaddr(m["client"])
    rest = m["rest"]
    if rest.startswith(": "):
        rest = rest[2:]
    elif rest.startswith(" "):
        rest = rest[1:]
    # the envelope fields trail the reason: "; from=<..> to=<..> proto=.. helo=<..>"
    tail_m = _KV_TAIL_RE.search(rest)
    reason = rest[: tail_m.start()] if tail_m else rest
    tail = rest[tail_m.start() :] if tail_m else ""
    code: int | None = None
    dsn: str | None = None
    mc = _CODE_DSN_RE.match(reason)
    if mc:
        code = int(mc["code"])
        dsn = mc["dsn"]
    else:
        md = _DSN_ONLY_RE.match(reason)  # milter-reject: "5.7.1 Spam message rejected"
        if md:
            dsn = md["dsn"]
    proto = helo = None
    if tail:
        p = tail.find("proto=")
        if p >= 0:
            end = p + 6
            while end < len(tail) and tail[end] not in " ,;":
                end += 1
            proto = tail[p + 6 : end]
        helo = _angle(tail, "helo")
    return Reject(
        queue_id=qid,
        action=m["action"],
        stage=m["stage"],
        client_name=client_name,
        client_ip=client_ip,
        reply_code=code,
        dsn=dsn,
        reason=reason,
        sender=_angle(tail, "from") if tail else None,
        recipient=_angle(tail, " to") if tail else None,
        helo=helo,
        proto=proto,
    )


_SASL_RE: Final = re.compile(
    r"(?P<client>[^\s\[]*\[[^\]]*\]): SASL (?P<mech>\S+) authentication failed: ?(?P<reason>.*?)"
    r"(?:, sasl_username=(?P<user>.*))?$",
    re.S,
)


def _parse_client(qid: str, rest: str) -> Client:
    # client=host[ip]:port, sasl_method=PLAIN, sasl_username=u, sasl_sender=, orig_queue_id=, orig_client=
    fields: dict[str, str] = {}
    for part in rest.split(", "):
        eq = part.find("=")
        if eq > 0:
            fields[part[:eq]] = part[eq + 1 :]
    client = fields.get("client")
    if client is None:
        raise ParseError("bad-client", rest[:120])
    name, ip, port = parse_hostaddr(client)
    return Client(
        queue_id=qid,
        client_name=name,
        client_ip=ip or "",
        client_port=port,
        sasl_method=fields.get("sasl_method"),
        sasl_username=fields.get("sasl_username"),
        sasl_sender=fields.get("sasl_sender"),
        orig_queue_id=fields.get("orig_queue_id"),
        orig_client=fields.get("orig_client"),
    )


_SESSION_END_RE: Final = re.compile(
    r"^(?P<kind>lost connection|timeout|too many errors) after (?P<stage>\S+)"
    r"(?: \([^)]*\))? from (?P<client>[^\s\[]*\[[^\]]*\])"
)

_NOTIFICATIONS: Final = {
    "sender non-delivery notification": "non-delivery",
    "sender delay notification": "delay",
    "sender delivery status notification": "success",
    "postmaster non-delivery notification": "postmaster-non-delivery",
    "postmaster delay notification": "postmaster-delay",
    "postmaster delivery status notification": "postmaster-success",
}


def _client_event(kind: str, client: str, detail: str, qid: str | None = None) -> Event:
    name, ip, _port = parse_hostaddr(client)
    return Event(kind=kind, queue_id=qid, remote_host=name or None, remote_ip=ip, detail=detail)


def _parse_smtpd(text: str) -> Record:
    qid, rest = split_qid(text)
    if qid is not None:
        if rest.startswith("client="):
            return _parse_client(qid, rest)
        if rest.startswith(_REJECT_PREFIXES):
            return _parse_reject(qid, rest)
        return Event(
            kind="smtpd-queue", queue_id=qid, remote_host=None, remote_ip=None, detail=rest
        )
    if text.startswith("connect from "):
        return _client_event("connect", text[13:], "")
    if text.startswith("disconnect from "):
        body = text[16:]
        sp = body.find(" ")
        client = body if sp < 0 else body[:sp]
        return _client_event("disconnect", client, "" if sp < 0 else body[sp + 1 :])
    if text.startswith("NOQUEUE: "):
        return _parse_reject(None, text[9:])
    if text.startswith("warning: "):
        w = text[9:]
        ms = _SASL_RE.match(w)
        if ms:
            name, ip, _ = parse_hostaddr(ms["client"])
            return AuthFailure(
                client_name=name,
                client_ip=ip or "",
                mechanism=ms["mech"],
                reason=ms["reason"],
                sasl_username=ms["user"],
            )
        return _warning(w)
    m = _SESSION_END_RE.match(text)
    if m:
        kind = m["kind"].replace(" ", "-")
        return _client_event(kind, m["client"], m["stage"])
    if "TLS connection established from " in text:
        return _tls_event(text)
    if text.startswith(("SSL_accept error from ", "improper command pipelining after ")):
        return _client_event(
            "tls-error" if text.startswith("SSL") else "pipelining",
            text.split(" from ", 1)[1].split(":", 1)[0] if " from " in text else "",
            text,
        )
    return Ignored(rule="smtpd-other")


_REJECT_PREFIXES: Final = tuple(f"{a}: " for a in sorted(_REJECT_ACTIONS))


def _tls_event(text: str) -> Event:
    # "Trusted TLS connection established to mx[ip]:25: TLSv1.3 with cipher ..."
    # "Anonymous TLS connection established from host[ip]: TLSv1.3 with cipher ..."
    level = text.split(" ", 1)[0].lower()
    direction = " to " if " established to " in text else " from "
    after = text.split(direction, 1)[1]
    i = after.find("]")
    hostpart = after[: i + 1] if i >= 0 else after.split(":", 1)[0]
    name, ip, _ = parse_hostaddr(hostpart)
    return Event(
        kind="tls-" + level,
        queue_id=None,
        remote_host=name or None,
        remote_ip=ip,
        detail=after[i + 1 :].lstrip(":0123456789 ") if i >= 0 else after,
    )


def _warning(w: str) -> Event:
    kind = "warning"
    lower = w.lower()
    if "does not resolve to address" in lower or "address not listed for hostname" in lower:
        kind = "fcrdns-failure"
    elif "unable to look up mx host" in lower or "name service error" in lower:
        kind = "dns-failure"
    elif "tls" in lower or "ssl" in lower:
        kind = "tls-warning"
    elif "non-smtp command" in lower:
        kind = "non-smtp-command"
    elif "blocked using" in lower:
        kind = "blocklist"
    return Event(kind=kind, queue_id=None, remote_host=None, remote_ip=None, detail=w)


# --- postscreen ---------------------------------------------------------------------------------

_POSTSCREEN_KINDS: Final = (
    ("CONNECT from ", "ps-connect"),
    ("PASS NEW ", "ps-pass-new"),
    ("PASS OLD ", "ps-pass-old"),
    ("DNSBL rank ", "ps-dnsbl"),
    ("PREGREET ", "ps-pregreet"),
    ("HANGUP ", "ps-hangup"),
    ("DISCONNECT ", "ps-disconnect"),
    ("WHITELISTED ", "ps-allowlisted"),
    ("ALLOWLISTED ", "ps-allowlisted"),
    ("BLACKLISTED ", "ps-denylisted"),
    ("DENYLISTED ", "ps-denylisted"),
    ("WHITELIST VETO ", "ps-allowlist-veto"),
    ("ALLOWLIST VETO ", "ps-allowlist-veto"),
    ("COMMAND PIPELINING ", "ps-pipelining"),
    ("NON-SMTP COMMAND ", "ps-non-smtp"),
    ("BARE NEWLINE ", "ps-bare-newline"),
    ("COMMAND TIME LIMIT ", "ps-time-limit"),
    ("COMMAND COUNT LIMIT ", "ps-count-limit"),
    ("COMMAND LENGTH LIMIT ", "ps-length-limit"),
)
_BRACKET_IP_RE: Final = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::\d+)?")


def _parse_postscreen(text: str) -> Record:
    if text.startswith("NOQUEUE: "):
        return _parse_reject(None, text[9:])
    for prefix, kind in _POSTSCREEN_KINDS:
        if text.startswith(prefix):
            m = _BRACKET_IP_RE.search(text)
            return Event(
                kind=kind,
                queue_id=None,
                remote_host=None,
                remote_ip=m.group(1) if m else None,
                detail=text[len(prefix) :],
            )
    if text.startswith("warning: "):
        return _warning(text[9:])
    return Ignored(rule="postscreen-other")


# --- cleanup / qmgr / pickup / bounce ------------------------------------------------------------


def _parse_cleanup(text: str) -> Record:
    qid, rest = split_qid(text)
    if qid is None:
        if text.startswith("warning: "):
            return _warning(text[9:])
        return Ignored(rule="cleanup-other")
    if rest.startswith("message-id="):
        mid = rest[11:].strip()
        if mid.startswith("<") and mid.endswith(">"):
            mid = mid[1:-1]
        return MessageId(queue_id=qid, message_id=mid, resent=False)
    if rest.startswith("resent-message-id="):
        mid = rest[18:].strip().strip("<>")
        return MessageId(queue_id=qid, message_id=mid, resent=True)
    if rest.startswith(_REJECT_PREFIXES):
        return _parse_reject(qid, rest)
    if rest.startswith("warning: "):
        return Event(
            kind="warning", queue_id=qid, remote_host=None, remote_ip=None, detail=rest[9:]
        )
    return Ignored(rule="cleanup-other")


_QMGR_FROM_RE: Final = re.compile(
    r"^from=<(?P<from>.*?)>, size=(?P<size>\d+), nrcpt=(?P<nrcpt>\d+)(?: \(queue active\))?\s*$",
    re.S,
)


def _parse_qmgr(text: str, service: str) -> Record:
    qid, rest = split_qid(text)
    if qid is None:
        if text.startswith("warning: "):
            return _warning(text[9:])
        return Ignored(rule=f"{service}-other")
    if rest == "removed":
        return Removed(queue_id=qid, by_admin=service == "postsuper")
    if rest.startswith("from=<"):
        m = _QMGR_FROM_RE.match(rest)
        if m:
            return QueueActive(
                queue_id=qid,
                sender=m["from"],
                size=_bounded(m["size"], INT64_MAX, "bad-qmgr"),
                nrcpt=_bounded(m["nrcpt"], INT32_MAX, "bad-qmgr"),
            )
        if ", status=expired" in rest:
            sender = _angle(rest, "from") or ""
            return Expired(queue_id=qid, sender=sender, returned="returned to sender" in rest)
        raise ParseError("bad-qmgr", rest[:120])
    if rest.startswith(("to=<", "to=")) and "status=" in rest:
        # qmgr logs delivery-like lines for recipients it gives up on itself (e.g. expired
        # with "status=deferred"); treat them as deliveries by the queue manager.
        return _parse_delivery(qid, rest)
    return Event(
        kind=f"{service}-queue", queue_id=qid, remote_host=None, remote_ip=None, detail=rest
    )


def _parse_pickup(text: str) -> Record:
    qid, rest = split_qid(text)
    if qid is None:
        return Ignored(rule="pickup-other")
    uid: int | None = None
    if rest.startswith("uid="):
        sp = rest.find(" ")
        u = rest[4:sp] if sp > 0 else rest[4:]
        uid = int(u) if u.isdigit() else None
    sender = _angle(rest, "from")
    if sender is None:
        raise ParseError("bad-pickup", rest[:120])
    return Pickup(queue_id=qid, uid=uid, sender=sender)


def _parse_bounce(text: str) -> Record:
    qid, rest = split_qid(text)
    if qid is None:
        if text.startswith("warning: "):
            return _warning(text[9:])
        return Ignored(rule="bounce-other")
    colon = rest.rfind(": ")
    if colon > 0:
        kind = _NOTIFICATIONS.get(rest[:colon])
        new_qid = rest[colon + 2 :].strip()
        if kind is not None and is_queue_id(new_qid):
            return Notification(queue_id=qid, kind=kind, new_queue_id=new_qid)
    return Event(kind="bounce-queue", queue_id=qid, remote_host=None, remote_ip=None, detail=rest)


def _parse_delivery_agent(text: str, service: str) -> Record:
    qid, rest = split_qid(text)
    if qid is not None:
        if rest.startswith("to=<"):
            return _parse_delivery(qid, rest)
        return Event(
            kind=f"{service}-queue", queue_id=qid, remote_host=None, remote_ip=None, detail=rest
        )
    if text.startswith("connect to "):
        m = _CONNECT_RE.match(text)
        if m:
            return Event(
                kind="connect-failure",
                queue_id=None,
                remote_host=m["host"],
                remote_ip=m["ip"],
                detail=m["err"],
            )
    if "TLS connection established to " in text or "TLS connection established from " in text:
        return _tls_event(text)
    if text.startswith("warning: "):
        return _warning(text[9:])
    if text.startswith(("SSL_connect error to ", "SSL_accept error from ")):
        return Event(kind="tls-error", queue_id=None, remote_host=None, remote_ip=None, detail=text)
    return Ignored(rule=f"{service}-other")


_IGNORED_SERVICES: Final = {
    "master": "master",
    "postfix-script": "postfix-script",
    "anvil": "anvil-statistics",
    "scache": "scache-statistics",
    "tlsmgr": "tlsmgr",
    "verify": "verify",
    "postqueue": "postqueue",
    "postdrop": "postdrop",
    "sendmail": "sendmail",
    "proxymap": "proxymap",
    "trivial-rewrite": "trivial-rewrite",
    "flush": "flush",
    "showq": "showq",
    "dnsblog": "dnsblog",
    "tlsproxy": "tlsproxy",
    "postmap": "postmap",
    "postalias": "postalias",
    "postlog": "postlog",
    "spawn": "spawn",
    "oqmgr": "oqmgr-other",
}


def parse_message(service: str, text: str) -> Record:
    """Parse the text of one Postfix log line, given its service (``smtp``, ``qmgr``...).

    Returns a record, or :class:`Ignored` with the name of the rule that says the line carries
    nothing we keep. Raises :class:`ParseError` for a line of a known shape that is malformed.
    """
    if service in DELIVERY_SERVICES:
        return _parse_delivery_agent(text, service)
    if service == "smtpd" or service == "submission" or service == "smtps":
        return _parse_smtpd(text)
    if service == "qmgr" or service == "oqmgr" or service == "postsuper":
        return _parse_qmgr(text, service)
    if service == "cleanup":
        return _parse_cleanup(text)
    if service == "postscreen":
        return _parse_postscreen(text)
    if service == "pickup":
        return _parse_pickup(text)
    if service == "bounce":
        return _parse_bounce(text)
    if service == "qmqpd":
        qid, rest = split_qid(text)
        if qid is not None and rest.startswith("client="):
            return _parse_client(qid, rest)
        return Ignored(rule="qmqpd-other")
    if service == "dnsblog" and text.startswith("addr "):
        # "addr 192.0.2.1 listed by domain zen.spamhaus.org as 127.0.0.2"
        parts = text.split(" ")
        return Event(
            kind="dnsbl-listed",
            queue_id=None,
            remote_host=parts[5] if len(parts) > 5 else None,
            remote_ip=parts[1] if len(parts) > 1 else None,
            detail=text,
        )
    rule = _IGNORED_SERVICES.get(service)
    if rule is not None:
        if text.startswith(("fatal: ", "panic: ", "error: ")):
            return Event(
                kind=text.split(":", 1)[0],
                queue_id=None,
                remote_host=None,
                remote_ip=None,
                detail=text,
            )
        return Ignored(rule=rule)
    return Ignored(rule="postfix-unknown-service")


def is_postfix_program(program: str) -> bool:
    """``postfix/smtp``, ``postfix-out/smtp``, ``postfix/submission/smtpd``: Postfix's
    ``syslog_name`` is ``postfix`` or starts with it (postconf(5) ``syslog_name``)."""
    return program.startswith("postfix") and "/" in program


# postconf(5), "maximal_queue_lifetime" and every other time parameter: "a non-negative time value
# (an integral value plus an optional one-letter suffix that specifies the time unit). Time
# units: s (seconds), m (minutes), h (hours), d (days), w (weeks)." The default unit is the
# parameter's own (d for maximal_queue_lifetime and bounce_queue_lifetime).
_TIME_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_TIME_RE: Final = re.compile(r"(?P<n>[0-9]{1,6})(?P<unit>[smhdw]?)")


def parse_time_value(text: str, *, default_unit: str = "d") -> timedelta:
    """A Postfix time parameter value (``5d``, ``12h``, ``3600s``, ``7``) as a duration;
    ParseError ``bad-time-value`` for anything else."""
    m = _TIME_RE.fullmatch(text.strip())
    if m is None:
        raise ParseError(
            "bad-time-value",
            f"{text!r}: expected a whole number with an optional unit s, m, h, d or w (5d, 12h)",
        )
    return timedelta(seconds=int(m["n"]) * _TIME_UNITS[m["unit"] or default_unit])


__all__ = [
    "AuthFailure",
    "Client",
    "Delivery",
    "Event",
    "Expired",
    "Ignored",
    "MessageId",
    "Notification",
    "ParseError",
    "Pickup",
    "QueueActive",
    "Record",
    "Reject",
    "Removed",
    "is_postfix_program",
    "is_queue_id",
    "parse_hostaddr",
    "parse_message",
    "parse_status_detail",
    "parse_time_value",
    "split_qid",
]
