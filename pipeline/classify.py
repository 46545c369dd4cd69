"""Classify a delivery outcome (Postfix log delivery or decoded DSN) into a bounce reason.

One classifier serves both inputs: a Postfix delivery (``dsn=5.1.1``, the remote reply text, the
relay host) and a decoded RFC 3464 report (Status, Diagnostic-Code, Remote-MTA, Action).

Classification is data. ``pipeline/rules/default.toml`` holds an ordered list of rules; the first
rule whose every given field matches decides. Users add their own rule files (same schema) with
``Classifier.load(extra_rule_files=[...])``; they are evaluated before the defaults. Each result
carries the id of the rule that decided (``rule_id``), which is stored with the row so that
"why was this address suppressed?" always has an answer.

Reasons are Sisimai's taxonomy (https://libsisimai.org/en/reason/). Categories are PowerMTA-style
bounce categories; the mapping and the hard/soft choice per reason are the two tables below.

Rule schema (``[[rule]]`` tables; all match fields optional, at least one required; a rule
matches when every field it gives matches; inside a list, any element may match):

``id``            unique string, stored with each classification
``reason``        one of ``Reason``
``category``      optional override of ``REASON_CATEGORY``
``hard``          optional override of the per-reason hard/soft default
``source``        where the fact comes from (RFC section, provider documentation URL)
``status``        enhanced status code prefixes: "5.1.1", "4.4", "5"; "x.1.1" for any class
``without_status`` status prefixes that must not match (same forms as ``status``)
``reply_code``    basic SMTP reply codes (RFC 5321 section 4.2)
``action``        DSN Action values (RFC 3464 section 2.3.3)
``kind``          decoder hints: delivered, feedback, vacation, autoreply, delayed, expired
``remote_host``   host name suffixes of the remote MTA ("protection.outlook.com")
``diagnostic_type`` RFC 3464 section 2.3.6 diagnostic types ("smtp", "x-unix", ...)
``command``       the SMTP command the failure answered: CONNECT, HELO, MAIL, RCPT, DATA
                  (given by the caller, e.g. Postfix's smtp_stage or a decoder's finding, else
                  read from the diagnostic text: "(in reply to end of DATA command)")
``without_command`` commands that must not be the answered one (an unknown command matches:
                  "not known to be before DATA" is ``["CONNECT", "HELO", "MAIL", "RCPT"]``)
``phrases``       lower-case substrings of the diagnostic (whitespace collapsed to one space)
``regex``         regular expressions searched in the same normalised text
``with_phrases``  at least one of these must also occur
``without_phrases`` none of these may occur
``without_codes`` true: only when no status, reply code and action are known (auto-replies
                  and complaints decoded without a hint)

``[[blocklist]]`` tables name DNSBL/RBL operators (``name``, ``phrases``, ``source``); the first
one whose phrase occurs in a rejection is reported as ``Classification.blocklist``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

import ahocorasick

from mtalens.parsers.bounces.diagnostic import is_version
from mtalens.parsers.bounces.records import SmtpCommand
from mtalens.pipeline.exitcodes import InputError


class Reason(StrEnum):
    """Sisimai's bounce reasons (https://libsisimai.org/en/reason/)."""

    USERUNKNOWN = "userunknown"
    HOSTUNKNOWN = "hostunknown"
    MAILBOXFULL = "mailboxfull"
    BLOCKED = "blocked"
    SPAMDETECTED = "spamdetected"
    POLICYVIOLATION = "policyviolation"
    AUTHFAILURE = "authfailure"
    BADREPUTATION = "badreputation"
    REQUIREPTR = "requireptr"
    EXPIRED = "expired"
    TOOMANYCONN = "toomanyconn"
    SPEEDING = "speeding"
    SECURITYERROR = "securityerror"
    FAILEDSTARTTLS = "failedstarttls"
    NORELAYING = "norelaying"
    MESGTOOBIG = "mesgtoobig"
    EXCEEDLIMIT = "exceedlimit"
    SUSPEND = "suspend"
    HASMOVED = "hasmoved"
    NOTACCEPT = "notaccept"
    REJECTED = "rejected"
    FILTERED = "filtered"
    CONTENTERROR = "contenterror"
    VIRUSDETECTED = "virusdetected"
    NETWORKERROR = "networkerror"
    SYSTEMERROR = "systemerror"
    SYSTEMFULL = "systemfull"
    SYNTAXERROR = "syntaxerror"
    MAILERERROR = "mailererror"
    NOTCOMPLIANTRFC = "notcompliantrfc"
    ONHOLD = "onhold"
    UNDEFINED = "undefined"
    FEEDBACK = "feedback"
    VACATION = "vacation"
    DELIVERED = "delivered"


class Category(StrEnum):
    """PowerMTA-style bounce categories (PowerMTA user's guide, "bounce categories")."""

    BAD_MAILBOX = "bad-mailbox"
    INACTIVE_MAILBOX = "inactive-mailbox"
    QUOTA_ISSUES = "quota-issues"
    BAD_DOMAIN = "bad-domain"
    NO_ANSWER_FROM_HOST = "no-answer-from-host"
    ROUTING_ERRORS = "routing-errors"
    RELAYING_ISSUES = "relaying-issues"
    SPAM_RELATED = "spam-related"
    POLICY_RELATED = "policy-related"
    CONTENT_RELATED = "content-related"
    VIRUS_RELATED = "virus-related"
    MESSAGE_EXPIRED = "message-expired"
    PROTOCOL_ERRORS = "protocol-errors"
    BAD_CONNECTION = "bad-connection"
    INVALID_SENDER = "invalid-sender"
    BAD_CONFIGURATION = "bad-configuration"
    OTHER = "other"


R = Reason
C = Category

# Reason -> category. A rule may override it (connection time-outs are networkerror but
# no-answer-from-host; a dropped connection is bad-connection).
REASON_CATEGORY: Final[Mapping[Reason, Category]] = {
    R.USERUNKNOWN: C.BAD_MAILBOX,
    R.HASMOVED: C.BAD_MAILBOX,  # X.1.6: mailbox moved, no forwarding address
    R.SUSPEND: C.INACTIVE_MAILBOX,
    R.MAILBOXFULL: C.QUOTA_ISSUES,
    R.HOSTUNKNOWN: C.BAD_DOMAIN,
    R.NOTACCEPT: C.BAD_DOMAIN,  # null MX / no SMTP service: the domain takes no mail
    R.BLOCKED: C.SPAM_RELATED,  # the sending IP/host is refused (blocklists, ISP policy)
    R.SPAMDETECTED: C.SPAM_RELATED,
    R.BADREPUTATION: C.SPAM_RELATED,
    R.FILTERED: C.POLICY_RELATED,  # the recipient's own filter refused it
    R.POLICYVIOLATION: C.POLICY_RELATED,
    R.TOOMANYCONN: C.POLICY_RELATED,  # receiver rate/connection limits
    R.SPEEDING: C.POLICY_RELATED,
    R.REJECTED: C.INVALID_SENDER,  # the envelope sender was refused
    R.AUTHFAILURE: C.BAD_CONFIGURATION,  # SPF/DKIM/DMARC: fixed on the sending side
    R.REQUIREPTR: C.BAD_CONFIGURATION,
    R.SECURITYERROR: C.BAD_CONFIGURATION,
    R.FAILEDSTARTTLS: C.BAD_CONNECTION,
    R.NORELAYING: C.RELAYING_ISSUES,
    R.MESGTOOBIG: C.CONTENT_RELATED,
    R.EXCEEDLIMIT: C.CONTENT_RELATED,
    R.CONTENTERROR: C.CONTENT_RELATED,
    R.NOTCOMPLIANTRFC: C.CONTENT_RELATED,
    R.VIRUSDETECTED: C.VIRUS_RELATED,
    R.EXPIRED: C.MESSAGE_EXPIRED,
    R.NETWORKERROR: C.ROUTING_ERRORS,
    R.SYNTAXERROR: C.PROTOCOL_ERRORS,
    R.SYSTEMERROR: C.OTHER,
    R.SYSTEMFULL: C.OTHER,
    R.MAILERERROR: C.OTHER,
    R.ONHOLD: C.OTHER,
    R.UNDEFINED: C.OTHER,
    R.FEEDBACK: C.OTHER,
    R.VACATION: C.OTHER,
    R.DELIVERED: C.OTHER,
}

# Hard = "this address will not work; stop sending" from a demanding sender's view.
# Only failures of the recipient address itself are hard: the mailbox does not exist
# (userunknown), its domain does not exist (hostunknown), it moved without forwarding address
# (hasmoved), or the domain takes no mail at all (notaccept, only when the answer was 5xx: a
# 4xx "no MX" can be a transient DNS problem). Everything else is soft or sender-side:
# a full mailbox empties, a disabled account (suspend) is often re-enabled, blocks and
# reputation are the sender's to fix, expiry says nothing definite about the address.
# None: not a failure (delivered, feedback, vacation) or nothing known (undefined).
HARD_REASONS: Final[frozenset[Reason]] = frozenset({R.USERUNKNOWN, R.HOSTUNKNOWN, R.HASMOVED})
HARD_IF_PERMANENT: Final[frozenset[Reason]] = frozenset({R.NOTACCEPT})
NOT_A_FAILURE: Final[frozenset[Reason]] = frozenset(
    {R.DELIVERED, R.FEEDBACK, R.VACATION, R.UNDEFINED}
)

KINDS: Final[frozenset[str]] = frozenset(
    {"delivered", "feedback", "vacation", "autoreply", "delayed", "expired"}
)

_MAX_TEXT: Final = 8192  # longer diagnostics are noise (attached bodies); keep the cost bounded
# RFC 3463 section 2: class "." subject "." detail; subject and detail of 1-3 digits. The
# context checks (not inside a version number, IP address or URL) are done in Python: a regex
# lookbehind would defeat the engine's first-character scan.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?!\w|\.\d)")
# RFC 5321 section 4.2: a reply code is three digits followed by SP, "-" or the end.
_REPLY = re.compile(r"([245][0-5]\d)(?=[ -]|$)")
_NOT_BEFORE_CODE: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.#/:=-")
# Remote host as Postfix ("host mx.example.com[192.0.2.1] said:"), Exim and others write it.
_BRACKET_IP = re.compile(r"\[(?:ipv6:)?[0-9a-f.:]{3,}\]")
_TRAILING_HOST = re.compile(r"([a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)+)\.? ?$")
# " 550 5.7.1 " / " 550-5.7.1 " inside a text: the next line of a multi-line reply (RFC 5321
# section 4.2.1, RFC 2034 section 3)
# (the text is whitespace-collapsed, so the leading space always follows a word)
_CONTINUATION = re.compile(r" [245]\d\d[ -][245]\.\d{1,3}\.\d{1,3} ")
_BLOCKED_USING = re.compile(r"blocked using ([a-z0-9-]+(?:\.[a-z0-9-]+)+)")


class RuleError(InputError, ValueError):
    """A rule file is malformed (raised at load time: fail fast at start-up)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Classification:
    reason: str
    category: str
    hard: bool | None
    rule_id: str
    blocklist: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    reason: Reason
    source: str
    origin: str
    category: Category | None = None
    hard: bool | None = None
    status: tuple[tuple[str, ...], ...] = ()
    without_status: tuple[tuple[str, ...], ...] = ()
    reply_code: frozenset[int] = frozenset()
    action: frozenset[str] = frozenset()
    kind: frozenset[str] = frozenset()
    remote_host: tuple[str, ...] = ()
    command: frozenset[SmtpCommand] = frozenset()
    without_command: frozenset[SmtpCommand] = frozenset()
    diagnostic_type: frozenset[str] = frozenset()
    phrases: frozenset[str] = frozenset()
    regex: tuple[re.Pattern[str], ...] = ()
    with_phrases: frozenset[str] = frozenset()
    without_phrases: frozenset[str] = frozenset()
    without_codes: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocklist:
    name: str
    phrases: frozenset[str]
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Facts:
    """The inputs, normalised once per call."""

    status: tuple[str, ...] | None
    reply_code: int | None
    klass: str | None
    action: str | None
    kind: str | None
    host: str | None
    command: SmtpCommand | None
    diagnostic_type: str | None
    text: str
    bare: bool
    found: frozenset[str]


_RULE_KEYS: Final = frozenset(
    {
        "id",
        "reason",
        "category",
        "hard",
        "source",
        "status",
        "without_status",
        "reply_code",
        "action",
        "kind",
        "remote_host",
        "command",
        "without_command",
        "diagnostic_type",
        "phrases",
        "regex",
        "with_phrases",
        "without_phrases",
        "without_codes",
    }
)
_MATCH_KEYS: Final = frozenset(
    {
        "status",
        "reply_code",
        "action",
        "kind",
        "remote_host",
        "command",
        "diagnostic_type",
        "phrases",
        "regex",
        "without_codes",
    }
)


def _strings(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def _lower_phrases(raw: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    return frozenset(normalise(p) for p in _strings(raw, key, where))


def _parse_status(prefix: str, where: str) -> tuple[str, ...]:
    parts = tuple(prefix.lower().split("."))
    ok = 1 <= len(parts) <= 3 and (parts[0] in {"2", "4", "5", "x"})
    if not ok or not all(p.isdigit() for p in parts[1:]):
        raise RuleError(f"{where}: bad status prefix {prefix!r}")
    return parts


def _parse_rule(raw: Mapping[str, Any], origin: str) -> Rule:
    rid = raw.get("id")
    where = f"{origin}: rule {rid!r}"
    if not isinstance(rid, str) or not rid:
        raise RuleError(f"{origin}: a rule without an id")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    if not (_MATCH_KEYS & set(raw)):
        raise RuleError(f"{where}: no match field")
    try:
        reason = Reason(str(raw.get("reason")))
        category = Category(raw["category"]) if "category" in raw else None
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from None
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise RuleError(f"{where}: a rule needs a source")
    hard = raw.get("hard")
    if hard is not None and not isinstance(hard, bool):
        raise RuleError(f"{where}: hard must be true or false")
    codes = raw.get("reply_code", [])
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and 200 <= c <= 599 for c in codes
    ):
        raise RuleError(f"{where}: reply_code must be a list of SMTP codes")
    kinds = frozenset(k.lower() for k in _strings(raw, "kind", where))
    if kinds - KINDS:
        raise RuleError(f"{where}: unknown kind {sorted(kinds - KINDS)}")
    try:
        patterns = tuple(re.compile(p) for p in _strings(raw, "regex", where))
    except re.error as exc:
        raise RuleError(f"{where}: bad regex: {exc}") from None
    commands, not_commands = (
        _commands(raw, "command", where),
        _commands(raw, "without_command", where),
    )
    without_codes = raw.get("without_codes", False)
    if not isinstance(without_codes, bool):
        raise RuleError(f"{where}: without_codes must be true or false")
    return Rule(
        id=rid,
        reason=reason,
        source=source.strip(),
        origin=origin,
        category=category,
        hard=hard,
        status=tuple(_parse_status(s, where) for s in _strings(raw, "status", where)),
        without_status=tuple(
            _parse_status(s, where) for s in _strings(raw, "without_status", where)
        ),
        reply_code=frozenset(codes),
        action=frozenset(a.lower() for a in _strings(raw, "action", where)),
        kind=kinds,
        remote_host=tuple(h.lower().lstrip(".") for h in _strings(raw, "remote_host", where)),
        command=commands,
        without_command=not_commands,
        diagnostic_type=frozenset(t.lower() for t in _strings(raw, "diagnostic_type", where)),
        phrases=_lower_phrases(raw, "phrases", where),
        regex=patterns,
        with_phrases=_lower_phrases(raw, "with_phrases", where),
        without_phrases=_lower_phrases(raw, "without_phrases", where),
        without_codes=without_codes,
    )


def _commands(raw: Mapping[str, Any], key: str, where: str) -> frozenset[SmtpCommand]:
    commands: set[SmtpCommand] = set()
    for c in _strings(raw, key, where):
        cmd = command_of(c)
        if cmd is None:
            raise RuleError(f"{where}: unknown SMTP command {c!r}")
        commands.add(cmd)
    return frozenset(commands)


def parse_rule_file(text: str, origin: str) -> tuple[tuple[Rule, ...], tuple[Blocklist, ...]]:
    """Parse one TOML rule file (``[[rule]]`` and ``[[blocklist]]`` tables)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{origin}: {exc}") from None
    unknown = set(doc) - {"rule", "blocklist"}
    if unknown:
        raise RuleError(f"{origin}: unknown top-level keys {sorted(unknown)}")
    rules = tuple(_parse_rule(raw, origin) for raw in doc.get("rule", []))
    lists: list[Blocklist] = []
    for raw in doc.get("blocklist", []):
        name = raw.get("name")
        where = f"{origin}: blocklist {name!r}"
        if not isinstance(name, str) or not name:
            raise RuleError(f"{origin}: a blocklist without a name")
        source = raw.get("source")
        if not isinstance(source, str) or not source.strip():
            raise RuleError(f"{where}: a blocklist needs a source")
        lists.append(
            Blocklist(name=name, phrases=_lower_phrases(raw, "phrases", where), source=source)
        )
    return rules, tuple(lists)


# Postfix smtp_stage / the command names callers pass -> the command (RFC 5321 section 4.1).
_COMMAND_NAMES: Final[Mapping[str, SmtpCommand]] = {
    "connect": SmtpCommand.CONNECT,
    "greeting": SmtpCommand.CONNECT,
    "banner": SmtpCommand.CONNECT,
    "initial connection": SmtpCommand.CONNECT,
    "helo": SmtpCommand.HELO,
    "ehlo": SmtpCommand.HELO,
    "lhlo": SmtpCommand.HELO,
    "starttls": SmtpCommand.HELO,
    "auth": SmtpCommand.HELO,
    "xforward": SmtpCommand.HELO,
    "xclient": SmtpCommand.HELO,
    "mail": SmtpCommand.MAIL,
    "mail from": SmtpCommand.MAIL,
    "rcpt": SmtpCommand.RCPT,
    "rcpt to": SmtpCommand.RCPT,
    "data": SmtpCommand.DATA,
    "end of data": SmtpCommand.DATA,
    "bdat": SmtpCommand.DATA,
    "message body": SmtpCommand.DATA,
}
# How MTAs name the answered command in a reply text (whitespace-collapsed, lower case), found
# by the same phrase scan as the rules; the decoders read it more fully from the whole report
# (parsers/bounces/diagnostic.py: the sources of these texts are cited there).
_COMMAND_PHRASES: Final[tuple[tuple[str, SmtpCommand], ...]] = (
    ("in reply to end of data command", SmtpCommand.DATA),
    ("in reply to data command", SmtpCommand.DATA),
    ("after end of data", SmtpCommand.DATA),
    ("after pipelined end of data", SmtpCommand.DATA),
    ("failed after i sent the message", SmtpCommand.DATA),
    ("smtp command data", SmtpCommand.DATA),
    ("in reply to rcpt to command", SmtpCommand.RCPT),
    ("after rcpt to", SmtpCommand.RCPT),
    ("after pipelined rcpt to", SmtpCommand.RCPT),
    ("does not like recipient", SmtpCommand.RCPT),
    ("most progress was rcpt to response", SmtpCommand.RCPT),
    ("recipient address rejected", SmtpCommand.RCPT),
    ("in reply to mail from command", SmtpCommand.MAIL),
    ("after mail from", SmtpCommand.MAIL),
    ("after pipelined mail from", SmtpCommand.MAIL),
    ("but sender was rejected", SmtpCommand.MAIL),
    ("in reply to ehlo command", SmtpCommand.HELO),
    ("in reply to helo command", SmtpCommand.HELO),
    ("after ehlo", SmtpCommand.HELO),
    ("after helo", SmtpCommand.HELO),
    ("but my name was rejected", SmtpCommand.HELO),
    ("refused to talk to me", SmtpCommand.CONNECT),
    ("after initial connection", SmtpCommand.CONNECT),
    ("but greeting failed", SmtpCommand.CONNECT),
    ("establish an smtp connection", SmtpCommand.CONNECT),
)
_COMMAND_CUES: Final = frozenset(p for p, _ in _COMMAND_PHRASES)


def _command_in(found: frozenset[str]) -> SmtpCommand | None:
    if _COMMAND_CUES.isdisjoint(found):
        return None
    return next(cmd for p, cmd in _COMMAND_PHRASES if p in found)


def command_of(value: str | None) -> SmtpCommand | None:
    """Map a command name ("RCPT TO", "end of DATA", "MAIL FROM", "CONNECT", ...) to a command."""
    if not value:
        return None
    key = " ".join(value.strip().lower().split())
    if key.upper() in SmtpCommand.__members__:
        return SmtpCommand[key.upper()]
    return _COMMAND_NAMES.get(key)


def _status_parts(status: str | None) -> tuple[str, ...] | None:
    if not status:
        return None
    m = _ENHANCED.search(status.strip().lower())
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _generic(parts: tuple[str, ...]) -> bool:
    # X.0.0 says nothing; X.0.9xx are Sisimai-style private details of subject 0 ("Other or
    # undefined", RFC 3463 section 3.1), equally unspecific for a standard reading.
    return parts[1] == "0"


def normalise(text: str) -> str:
    """Lower-case, whitespace collapsed to single spaces (the form phrases are written in)."""
    return " ".join(text[:_MAX_TEXT].lower().split())


def _enhanced_in_text(text: str) -> tuple[str, str, str] | None:
    for m in _ENHANCED.finditer(text):
        start = m.start()
        if start and text[start - 1] in _NOT_BEFORE_CODE:
            continue
        if not _plausible_status(m, text):
            continue
        if m.group(1) != "2" and m.group(2) != "0":
            return (m.group(1), m.group(2), m.group(3))
    return None


def _specific_in_text(text: str) -> tuple[str, str, str] | None:
    for m in _ENHANCED.finditer(text):
        start = m.start()
        if start and text[start - 1] in _NOT_BEFORE_CODE:
            continue
        if not _plausible_status(m, text):
            continue
        if m.group(1) != "2" and m.group(2) != "0" and m.group(3) != "0":
            return (m.group(1), m.group(2), m.group(3))
    return None


def _plausible_status(m: re.Match[str], text: str) -> bool:
    """RFC 3463 section 3 defines subjects X.0 to X.7; a number after a product name or
    "version" is a software version ("mailman 2.0.12", parsers/bounces/diagnostic.py)."""
    subject = m.group(2)
    return len(subject) == 1 and subject <= "7" and not is_version(text, m.start())


def _reply_in_text(text: str) -> int | None:
    for m in _REPLY.finditer(text):
        start, end = m.span()
        if start and text[start - 1] in _NOT_BEFORE_CODE:
            continue
        rest = text[end : end + 2]
        if rest[:1].isdigit() or (rest[:1] in " -" and rest[1:2].isdigit()):
            continue  # a longer number or a number sequence, not a reply code
        return int(m.group(1))
    return None


def _host_in_text(text: str) -> str | None:
    for m in _BRACKET_IP.finditer(text):
        head = text[max(0, m.start() - 256) : m.start()]
        h = _TRAILING_HOST.search(head)
        if h:
            return h.group(1)
    return None


def _facts(
    status: str | None,
    reply_code: int | None,
    diagnostic: str | None,
    remote_host: str | None,
    action: str | None,
    kind: str | None,
    command: str | None,
    diagnostic_type: str | None,
    find: Callable[[str], frozenset[str]],
) -> _Facts:
    text = normalise(diagnostic) if diagnostic else ""
    parts = _status_parts(status)
    if (parts is None or _generic(parts)) and text:
        # A generic status with a specific code in the reply text: the text's code is the
        # server's own word (RFC 3463 section 2; RFC 2034 section 3 puts it in the reply).
        parts = _enhanced_in_text(text) or parts
    elif parts is not None and parts[2] == "0" and text:
        # X.Y.0 is "other or undefined" within its subject (RFC 3463 section 3): a relay that
        # wraps the remote reply ("5.1.0 - Unknown address error 550-'5.7.1 ... Access denied'",
        # Amazon SES) knows less than the remote server's own specific code in the text.
        parts = _specific_in_text(text) or parts
    code = reply_code
    if code is None and text:
        code = _reply_in_text(text)
    klass = parts[0] if parts else (str(code)[0] if code else None)
    host = remote_host.strip().lower().rstrip(".") if remote_host else None
    act = action.strip().lower() if action else None
    # multi-line replies joined into one text repeat their codes mid-sentence ("multiple 550
    # 5.7.1 addresses in From:"); phrases are looked for without those
    found = find(_CONTINUATION.sub(" ", text) if text else text)
    cmd = command_of(command) or _command_in(found)
    return _Facts(
        status=parts,
        reply_code=code,
        klass=klass,
        action=act or None,
        kind=kind.strip().lower() if kind else None,
        host=host or None,
        command=cmd,
        diagnostic_type=diagnostic_type.strip().lower() if diagnostic_type else None,
        text=text,
        bare=parts is None and code is None and not act,
        found=found,
    )


def _status_matches(prefixes: tuple[tuple[str, ...], ...], facts: _Facts) -> bool:
    parts = facts.status
    for prefix in prefixes:
        if parts is None:
            # Only a class prefix ("5", "4") can be answered from the reply code alone.
            if len(prefix) == 1 and prefix[0] == facts.klass:
                return True
            continue
        if all(p == "x" or p == parts[i] for i, p in enumerate(prefix)):
            return True
    return False


def _matches(rule: Rule, f: _Facts) -> bool:
    if rule.without_codes and not f.bare:
        return False
    if rule.kind and f.kind not in rule.kind:
        return False
    if rule.action and f.action not in rule.action:
        return False
    if rule.reply_code and f.reply_code not in rule.reply_code:
        return False
    if rule.status and not _status_matches(rule.status, f):
        return False
    if rule.without_status and _status_matches(rule.without_status, f):
        return False
    if rule.command and f.command not in rule.command:
        return False
    if rule.without_command and f.command in rule.without_command:
        return False
    if rule.diagnostic_type and f.diagnostic_type not in rule.diagnostic_type:
        return False
    if rule.remote_host:
        host = f.host or _host_in_text(f.text)
        if host is None or not any(host == s or host.endswith("." + s) for s in rule.remote_host):
            return False
    found = f.found
    if (rule.phrases or rule.regex) and (
        rule.phrases.isdisjoint(found) and not any(r.search(f.text) for r in rule.regex)
    ):
        return False
    if rule.with_phrases and rule.with_phrases.isdisjoint(found):
        return False
    return not (rule.without_phrases and not rule.without_phrases.isdisjoint(found))


def _hard(reason: Reason, klass: str | None) -> bool | None:
    if reason in NOT_A_FAILURE:
        return None
    if reason in HARD_REASONS:
        return True
    if reason in HARD_IF_PERMANENT:
        return klass == "5"
    return False


# Texts that say a delivery failed for good even when they carry no code: RFC 3463 section
# 3.1's "permanent failure" (class 5) in words, as notices write it ("This is a permanent
# error", qmail's "I'm not going to try again", "will not be retried", "failed permanently").
_PERMANENT_WORDS: Final = (
    "permanent error",
    "permanent failure",
    "permanent fatal",
    "permanently",
    "fatal error",
    "will not be retried",
    "not going to try again",
    "given up",
    "could not be delivered",
    "undeliverable",
    "delivery failed",
)


def _failure_known(f: _Facts) -> bool:
    """Whether the inputs say a delivery failed: a 4xx/5xx code or class, Action: failed, or
    the text in words (``_PERMANENT_WORDS``)."""
    if f.klass in ("4", "5") or f.action == "failed" or f.kind == "expired":
        return True
    return any(w in f.text for w in _PERMANENT_WORDS)


_FALLBACK: Final = Rule(
    id="fallback-undefined",
    reason=R.UNDEFINED,
    source="no rule matched",
    origin="pipeline/classify.py",
)


class Classifier:
    """An ordered rule list; the first matching rule decides.

    Matching is indexed: every phrase of every rule is found in one scan of the text
    (Aho-Corasick), and each rule is filed under one field it cannot match without (a phrase, a kind,
    an action, an SMTP command, a status prefix, a reply code). Only the rules whose key is present are tested,
    in their original order, so first-match-wins is unchanged.
    """

    __slots__ = (
        "_always",
        "_automaton",
        "_by_action",
        "_by_code",
        "_by_command",
        "_by_kind",
        "_by_phrase",
        "_by_status",
        "blocklists",
        "rules",
    )

    def __init__(self, rules: Sequence[Rule], blocklists: Sequence[Blocklist] = ()) -> None:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise RuleError(f"{rule.origin}: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.blocklists: tuple[Blocklist, ...] = tuple(blocklists)
        self._index()

    def _index(self) -> None:
        by_phrase: dict[str, list[int]] = {}
        by_kind: dict[str, list[int]] = {}
        by_action: dict[str, list[int]] = {}
        by_status: dict[tuple[str, ...], list[int]] = {}
        by_code: dict[int, list[int]] = {}
        by_command: dict[SmtpCommand, list[int]] = {}
        always: list[int] = []
        phrases: set[str] = set()
        for i, rule in enumerate(self.rules):
            phrases |= rule.phrases | rule.with_phrases | rule.without_phrases
            if rule.phrases and not rule.regex:
                for p in rule.phrases:
                    by_phrase.setdefault(p, []).append(i)
            elif rule.kind:
                for k in rule.kind:
                    by_kind.setdefault(k, []).append(i)
            elif rule.action:
                for a in rule.action:
                    by_action.setdefault(a, []).append(i)
            elif rule.command:
                for cmd in rule.command:
                    by_command.setdefault(cmd, []).append(i)
            elif rule.status:
                for st in rule.status:
                    by_status.setdefault(st, []).append(i)
            elif rule.reply_code:
                for c in rule.reply_code:
                    by_code.setdefault(c, []).append(i)
            else:
                always.append(i)
        for bl in self.blocklists:
            phrases |= bl.phrases
        phrases |= _COMMAND_CUES
        self._by_phrase = {k: tuple(v) for k, v in by_phrase.items()}
        self._by_kind = {k: tuple(v) for k, v in by_kind.items()}
        self._by_action = {k: tuple(v) for k, v in by_action.items()}
        self._by_status = {k: tuple(v) for k, v in by_status.items()}
        self._by_code = {k: tuple(v) for k, v in by_code.items()}
        self._by_command = {k: tuple(v) for k, v in by_command.items()}
        self._always = tuple(always)
        # Aho-Corasick finds every phrase of every rule, overlapping ones included, in one pass.
        automaton = ahocorasick.Automaton()
        for phrase in phrases:
            automaton.add_word(phrase, phrase)
        if phrases:
            automaton.make_automaton()
        self._automaton = automaton if phrases else None

    def _find(self, text: str) -> frozenset[str]:
        if self._automaton is None or not text:
            return frozenset()
        return frozenset([p for _, p in self._automaton.iter(text)])

    def _candidates(self, f: _Facts) -> list[int]:
        cand: set[int] = set(self._always)
        for p in f.found:
            cand.update(self._by_phrase.get(p, ()))
        if f.kind:
            cand.update(self._by_kind.get(f.kind, ()))
        if f.action:
            cand.update(self._by_action.get(f.action, ()))
        if f.command is not None:
            cand.update(self._by_command.get(f.command, ()))
        if f.reply_code is not None:
            cand.update(self._by_code.get(f.reply_code, ()))
        if f.status is not None:
            c, s, d = f.status
            for key in ((c,), (c, s), (c, s, d), ("x", s), ("x", s, d)):
                cand.update(self._by_status.get(key, ()))
        elif f.klass is not None:
            cand.update(self._by_status.get((f.klass,), ()))
        return sorted(cand)

    @classmethod
    def load(cls, extra_rule_files: Iterable[str | Path] = ()) -> Classifier:
        """Defaults plus user rule files; user rules and blocklists come first."""
        rules: list[Rule] = []
        lists: list[Blocklist] = []
        for path in extra_rule_files:
            p = Path(path)
            try:
                text = p.read_text(encoding="utf-8")
            except OSError as exc:
                raise RuleError(f"{p}: {exc.strerror}") from None
            r, b = parse_rule_file(text, str(p))
            rules.extend(r)
            lists.extend(b)
        r, b = parse_rule_file(default_rules_text(), "pipeline/rules/default.toml")
        return cls([*rules, *r], [*lists, *b])

    def classify(
        self,
        *,
        status: str | None = None,
        reply_code: int | None = None,
        diagnostic: str | None = None,
        remote_host: str | None = None,
        action: str | None = None,
        kind: str | None = None,
        command: str | None = None,
        diagnostic_type: str | None = None,
    ) -> Classification:
        """``command``: the SMTP command the failure answered (Postfix smtp_stage such as
        "RCPT TO" or "end of DATA", or a ``SmtpCommand``); read from the diagnostic if None."""
        f = _facts(
            status,
            reply_code,
            diagnostic,
            remote_host,
            action,
            kind,
            command,
            diagnostic_type,
            self._find,
        )
        rules = self.rules
        rule = next(
            (rules[i] for i in self._candidates(f) if _matches(rules[i], f)),
            _FALLBACK,
        )
        reason = rule.reason
        if reason is R.UNDEFINED and _failure_known(f):
            # a failure whose cause no rule names: not known to be the address's, so soft
            hard: bool | None = False
        elif reason in NOT_A_FAILURE:
            hard = None
        else:
            hard = rule.hard if rule.hard is not None else _hard(reason, f.klass)
        return Classification(
            reason=reason.value,
            category=(rule.category or REASON_CATEGORY[reason]).value,
            hard=hard,
            rule_id=rule.id,
            blocklist=None if reason in NOT_A_FAILURE else self._blocklist(f),
        )

    def _blocklist(self, f: _Facts) -> str | None:
        if not f.text:
            return None
        for bl in self.blocklists:
            if not bl.phrases.isdisjoint(f.found):
                return bl.name
        m = _BLOCKED_USING.search(f.text)
        return m.group(1) if m else None


def default_rules_text() -> str:
    return (
        resources.files("mtalens.pipeline")
        .joinpath("rules/default.toml")
        .read_text(encoding="utf-8")
    )


@cache
def default_classifier() -> Classifier:
    return Classifier.load()


def classify(
    *,
    status: str | None = None,
    reply_code: int | None = None,
    diagnostic: str | None = None,
    remote_host: str | None = None,
    action: str | None = None,
    kind: str | None = None,
    command: str | None = None,
    diagnostic_type: str | None = None,
) -> Classification:
    """Classify with the default rules (see ``Classifier.classify``)."""
    return default_classifier().classify(
        status=status,
        reply_code=reply_code,
        diagnostic=diagnostic,
        remote_host=remote_host,
        action=action,
        kind=kind,
        command=command,
        diagnostic_type=diagnostic_type,
    )
