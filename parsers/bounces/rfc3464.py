"""Generic RFC 3464 delivery status notifications (``multipart/report; report-type=delivery-status``).

Reads the ``message/delivery-status`` part (RFC 3464 section 2: one per-message field group, then
one group per recipient, groups separated by blank lines, header folding as in RFC 5322) and
``message/global-delivery-status`` (RFC 6533). Any MTA that follows the RFC lands here: Postfix
(bounce(8), with its X-Postfix-* extension fields), Sendmail, Exim, Exchange, OpenSMTPD, Courier...
Samples: tests/fixtures/bounces/postfix-*.eml, rfc3464-*.eml.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from mtalens.parsers.bounces.diagnostic import (
    RETURNED_TYPES,
    base_report,
    clean_address,
    command_from_transcript,
    command_near,
    complete_reply,
    find_address,
    find_command,
    find_reply_code,
    find_status,
    original_from_part,
    original_from_text,
    returned_headers,
    squeeze,
)
from mtalens.parsers.bounces.mime import Mail, Part, decode_text, parse_date
from mtalens.parsers.bounces.plaintext import prose_recipients
from mtalens.parsers.bounces.received import reporting_queue_id
from mtalens.parsers.bounces.records import (
    MAX_RECIPIENTS,
    Action,
    BounceRecipient,
    BounceReport,
    ReportKind,
)
from mtalens.parsers.bounces.textbounce import is_delay, split_returned

NAME: Final = "rfc3464"

DSN_TYPES: Final = ("message/delivery-status", "message/global-delivery-status")
_RECIPIENT_KEYS: Final = ("final-recipient", "original-recipient")
_ACTIONS: Final = {a.value: a for a in Action}


HUMAN_WINDOW: Final = 20_000
DIAGNOSTIC_CHARS: Final = 8000  # a multi-line SMTP reply is a few kB; the rest is not read
CONTEXT_RECIPIENTS: Final = 50

_DSN_START_RE: Final = re.compile(
    rb"^(?:reporting-mta|original-envelope-id|final-recipient|original-recipient):",
    re.IGNORECASE | re.MULTILINE,
)
_FINAL_RE: Final = re.compile(rb"^final-recipient:", re.IGNORECASE | re.MULTILINE)


# Where the next line that does not start with a space or tab begins: a field and all its
# continuation lines (RFC 5322 section 2.2.3 folding) are found by one search in C, so a field
# folded over a million lines costs a split and a strip per line, not a Python loop step each
# (issue 12, item 1: <= 50 ms per MB whatever the shape).
_NEXT_FIELD_RE: Final = re.compile(r"\n(?![ \t])")


def split_groups(text: str) -> list[list[tuple[str, str]]]:
    """Field groups of a delivery-status body, unfolded, names lower-cased. A blank line ends a
    group; continuation lines after a blank line belong to nothing, those after a line without
    a colon extend the field before it.

    Some MTAs omit the blank line between groups: a repeated Final-Recipient also starts one.
    """
    groups: list[list[tuple[str, str]]] = []
    # a field's lines are joined once, when its group ends (appending each continuation line to
    # the value copied it every time: quadratic in the number of lines)
    cur: list[tuple[str, list[str]]] = []

    def close() -> None:
        if cur:
            groups.append([(n, "\n".join(v)) for n, v in cur])
            cur.clear()

    pos, n = 0, len(text)
    while pos <= n:
        m = _NEXT_FIELD_RE.search(text, pos)
        end = m.start() if m else n
        first, _, rest = text[pos:end].partition("\n")
        pos = end + 1
        more = [x.strip() for x in rest.split("\n")] if rest else []
        if "" in more:  # a blank line among the continuations: the group ends there
            cut = more.index("")
            _field(first, more[:cut], cur, close)
            close()
            continue
        _field(first, more, cur, close)
    close()
    return groups


def _field(
    line: str,
    more: list[str],
    cur: list[tuple[str, list[str]]],
    close: Callable[[], None],
) -> None:
    """One line that starts a field (or is blank, or, at the very start, a continuation) with
    its stripped continuation lines."""
    if not line.strip():
        close()  # a blank line; what follows it is not continued
        return
    if line[0] in " \t":  # a continuation with nothing before it
        if cur:
            cur[-1][1].extend([line.strip(), *more])
        return
    name, sep, value = line.partition(":")
    if not sep:
        if cur:
            cur[-1][1].extend(more)
        return
    name = name.strip().lower()
    if name in _RECIPIENT_KEYS and any(k == name for k, _ in cur):
        close()
    cur.append((name, [value.strip(), *more]))


def _get(group: list[tuple[str, str]], name: str) -> str | None:
    for n, v in group:
        if n == name:
            return v
    return None


def split_typed(value: str | None) -> tuple[str | None, str | None]:
    """``type; text`` (RFC 3464 sections 2.2.2, 2.3.5, 2.3.6) -> (type, unfolded text)."""
    if value is None:
        return None, None
    typ, sep, rest = value.partition(";")
    if sep and typ.strip() and " " not in typ.strip() and len(typ.strip()) < 20:
        return typ.strip().lower(), squeeze(rest) or None
    return None, squeeze(value) or None


def better_status(status: str | None, *texts: str | None) -> str | None:
    """Exim and others send a generic X.0.0: the real code sits in the diagnostic text."""
    if status and not status.endswith(".0.0") and status[:1] in "245":
        return status
    for text in texts:
        if not text:
            continue
        found = find_status(text)
        if found and not found.endswith(".0.0") and (status is None or found[0] == status[0]):
            return found
    return status


def recipient_from_group(group: list[tuple[str, str]], human: str) -> BounceRecipient | None:
    final = _get(group, "final-recipient") or _get(group, "original-recipient")
    if not final:
        return None
    addr = clean_address(final)
    orig = _get(group, "original-recipient")
    if (not usable_address(addr) or internal_address(addr)) and orig:
        # A Final-Recipient rewritten to an internal route ("@smtp.example.net:user@server",
        # Sun ONE Messaging Server's LMTP hop), with its local part lost ("@mx.example.org")
        # or to an internal host ("user@mailstore01.localdomain" after alias expansion): the
        # Original-Recipient (RFC 3464 section 2.3.1) is the address that was sent to.
        cleaned = clean_address(orig)
        if usable_address(cleaned) and not internal_address(cleaned):
            addr = cleaned
    if internal_address(addr) and human:
        # Postfix bounce(8) names the address before alias expansion in its explanation:
        # "<user@internal.host> (expanded from <user@example.com>): ..."
        before = expanded_from(human, addr)
        if before is not None:
            addr = before
    if not addr:
        return None
    action_raw = (_get(group, "action") or "").strip().lower().split(" ")[0]
    action = _ACTIONS.get(action_raw)
    status_raw = _get(group, "status")
    status = find_status(status_raw) if status_raw else None
    diag_type, diag = split_typed((_get(group, "diagnostic-code") or "")[:DIAGNOSTIC_CHARS] or None)
    if diag and "\x1b" in diag:
        diag = _iso2022(diag)
    if diag:
        diag = complete_reply(diag, human)
    elif status_raw and _STATUS_COMMENT_RE.search(status_raw):
        # No Diagnostic-Code but a comment after the code (RFC 3464 section 2.3.4 fields are
        # RFC 822 structured fields, which allow comments): "4.0.0 (example.net: host name
        # lookup failure)" is the reporting MTA's own explanation.
        m = _STATUS_COMMENT_RE.search(status_raw)
        diag = squeeze(m.group(1)) if m else None
    elif human:
        # No Diagnostic-Code: the human-readable part is the only explanation (RFC 3464
        # section 2.1 / RFC 6522 section 3: the first part "describes the condition(s)").
        diag = _paragraph(human, addr) or None
        if not (diag and find_reply_code(diag)):
            diag = _transcript(human) or diag
    _, remote = split_typed(_get(group, "remote-mta"))
    status = better_status(status, diag, _near(human, addr))
    if action is None:
        action = (
            Action.DELAYED if status and status.startswith("4.") and not diag else Action.FAILED
        )
        if status and status.startswith("2."):
            action = Action.DELIVERED
    reply = find_reply_code(diag) if diag else None
    hint = None
    if action is Action.FAILED and status and status.startswith("4."):
        # Postfix bounce(8): a message that timed out in the queue is returned as "failed"
        # with the last temporary status (postconf(5) maximal_queue_lifetime).
        hint = "expired"
    # The command the failure answered: the diagnostic may say it (Exim puts "SMTP error ...
    # after RCPT TO" there), else the human-readable part's paragraph or transcript about this
    # recipient, else the transcript's first failing command (Sendmail writes a transcript of
    # the failed dialogue only; its replies to DATA name no recipient).
    command = (
        (find_command(diag) if diag else None)
        or command_near(human, addr)
        or command_from_transcript(human, None)
    )
    return BounceRecipient(
        recipient=addr,
        original_recipient=clean_address(orig) if orig else None,
        command=command,
        action=action,
        status=status,
        reply_code=reply,
        diagnostic_type=diag_type,
        diagnostic=diag,
        remote_mta=remote,
        last_attempt_date=parse_date(_get(group, "last-attempt-date")),
        will_retry_until=parse_date(_get(group, "will-retry-until")),
        hint=hint,
    )


# A human-readable part that lists the failed recipients as bullets when the DSN part has
# only per-message fields ("Delivery to the following recipients failed permanently:
#    * user@example.org", the layout of Google's and some appliances' notices).
_BULLET_RE: Final = re.compile(r"^[ \t]*[*\-][ \t]+<?([^\s<>@]+@[^\s<>]+?)>?[ \t]*$", re.M)
_PERMANENT_RE: Final = re.compile(r"failed permanently|could not be delivered", re.IGNORECASE)


def listed_in_text(human: str) -> tuple[BounceRecipient, ...]:
    head = human[:8000]
    if not _PERMANENT_RE.search(head):
        return ()
    return tuple(
        BounceRecipient(recipient=clean_address(m.group(1)), action=Action.FAILED,
                        diagnostic=_squeezed_tail(head, m.start(), 500) or None)
        for m in _BULLET_RE.finditer(head)
    )  # fmt: skip


def _squeezed_tail(text: str, end: int, n: int) -> str:
    """``squeeze(text[:end])[-n:]`` without squeezing all of ``text[:end]`` for every caller."""
    width = 2 * n
    while True:
        start = max(0, end - width)
        tail = squeeze(text[start:end])
        # past the cut, the squeezed tail is exact once it is longer than n (the cut only
        # strips or joins white space at its start)
        if start == 0 or len(tail) > n:
            return tail[-n:]
        width *= 4


def usable_address(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    return bool(at and local and domain and not local.startswith(("@", "/", "|")))


# Names that are not Internet mail domains: a single label, or a name under a suffix reserved
# for local use (RFC 6761 section 6.3 "localhost", RFC 6762 ".local", RFC 8375 "home.arpa",
# ICANN's 2024 reservation of ".internal") or the private suffixes MTAs are commonly given
# (".localdomain", ".lan", ".intranet", ".corp"). A Final-Recipient there is the address after
# an internal rewrite, not the one that was sent to.
_INTERNAL_SUFFIXES: Final = (
    ".localhost",
    ".localdomain",
    ".local",
    ".internal",
    ".home.arpa",
    ".lan",
    ".intranet",
    ".corp",
)


def internal_address(addr: str) -> bool:
    _, at, domain = addr.rpartition("@")
    if not at or not domain:
        return False
    d = "." + domain.lower().rstrip(".")
    return "." not in d[1:] or d.endswith(_INTERNAL_SUFFIXES)


_EXPANDED_FROM_RE: Final = re.compile(r"\(expanded from:? *<?([^\s<>()]+@[^\s<>()]+?)>?\)", re.I)


def expanded_from(human: str, addr: str) -> str | None:
    """The "(expanded from <x>)" address right after ``addr`` in the explanation, if usable."""
    idx = human.lower().find(addr.lower())
    if idx < 0:
        return None
    m = _EXPANDED_FROM_RE.search(human, idx + len(addr), idx + len(addr) + 300)
    if m is None:
        return None
    got = clean_address(m.group(1))
    return got if usable_address(got) and not internal_address(got) else None


def qualify_local_part(addr: str, domain: str | None) -> str:
    """A bare local part ("Final-Recipient: rfc822; bob") is an address of the reporting
    system: an MTA qualifies unqualified addresses with its own domain (RFC 5321 section
    2.3.5 requires fully qualified names; Sendmail appends $j, Postfix $myorigin)."""
    return f"{addr}@{domain}" if domain and local_part(addr) else addr


def local_part(addr: str) -> bool:
    """A bare local part: no "@", and not a file or pipe delivery ("/var/mail/x", "|prog")."""
    return bool(addr) and "@" not in addr and not any(c in addr for c in ' /|"<>')


def _near(human: str, addr: str) -> str | None:
    """The human-readable text around an address (Exim puts the real reason there)."""
    if not human:
        return None
    idx = human.lower().find(addr.lower())
    if idx < 0:
        return None
    # up to the end of this recipient's paragraph: the next one is another recipient's
    near = human[idx : idx + 1200]
    gap = _BLANK_LINE_RE.search(near)
    return near[: gap.start()] if gap else near


_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")


_RAW_ESC_RE: Final = re.compile(r"\x1b[$(][@ABJ]")


def _iso2022(text: str) -> str:
    """A header value sent as raw ISO-2022-JP (RFC 1468 escape sequences, no RFC 2047 words)."""
    if not _RAW_ESC_RE.search(text):
        return text
    try:
        return text.encode("ascii").decode("iso-2022-jp")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


# Sendmail savemail.c: "----- Transcript of session follows -----", then the dialogue or the
# local mailer's complaint ("mail.local: unknown user: x", "554 <x>... Service unavailable").
_TRANSCRIPT_RE: Final = re.compile(
    r"^[ \t]*-{3,}[ \t]*Transcript of session follows[ \t-]*$", re.I | re.M
)


def _transcript(human: str) -> str:
    """The first paragraph of a Sendmail transcript section, squeezed ("" if none)."""
    m = _TRANSCRIPT_RE.search(human, 0, 20_000)
    if m is None:
        return ""
    rest = human[m.end() : m.end() + 2000].lstrip("\n")
    end = rest.find("\n\n")
    return squeeze(rest[: end if end >= 0 else len(rest)])


def _paragraph(human: str, addr: str) -> str:
    """The paragraph of the human-readable part that names ``addr`` (else its first 600
    characters when it names no address at all), squeezed, at most about 1200 characters."""
    low = human[:20_000].lower()
    idx = low.find(addr.lower())
    if idx < 0:
        return "" if "@" in low[:2000] else squeeze(human[:600])
    start = max(low.rfind("\n\n", 0, idx), idx - 400, 0)
    end = low.find("\n\n", idx)
    end = end if 0 <= end < idx + 1000 else idx + 1000
    # a list of recipients without blank lines: stop at the next line naming another address
    eol = low.find("\n", idx)
    while 0 <= eol < end:
        nxt = low.find("\n", eol + 1)
        line = low[eol + 1 : nxt if nxt >= 0 else end]
        if "@" in line and addr.lower() not in line:
            end = eol
            break
        eol = nxt
    para = squeeze(human[start:end])
    # a short paragraph just above is the notice's summary of the condition ("The user(s)
    # account is disabled." above the per-recipient lines)
    above = low[:start].rstrip()
    lead = above[above.rfind("\n\n") + 1 :].strip() if above else ""
    if lead and len(lead) < 200 and "@" not in lead:
        para = squeeze(lead) + " " + para
    return para


def kind_of(recipients: tuple[BounceRecipient, ...]) -> ReportKind:
    actions = {r.action for r in recipients}
    if Action.FAILED in actions:
        return ReportKind.BOUNCE
    if Action.DELAYED in actions:
        return ReportKind.DELAYED
    if actions:
        return ReportKind.DELIVERED
    return ReportKind.NOT_BOUNCE


# "Status: 4.0.0 (cat.example.net: host name lookup failure)": a comment that says more than the
# class ("(permanent failure)", Sendmail's usual comment, says nothing of its own).
_STATUS_COMMENT_RE: Final = re.compile(
    r"^\s*[245]\.\d{1,3}\.\d{1,3}\s*\((?!\s*(?:permanent|temporary|transient)\s+failure\s*\))"
    r"([^()]{4,})\)"
)


def dsn_part(mail: Mail) -> Part | None:
    part = mail.find(*DSN_TYPES)
    if part is not None:
        return part
    root = mail.root
    if root.content_type == "multipart/report" and not root.children:
        # The boundary lines are gone (a report re-saved without them): the status fields are
        # still there, starting at the first per-message or per-recipient field at column 0.
        m = _DSN_START_RE.search(root.body, 0, 200_000)
        if m is not None and _FINAL_RE.search(root.body, m.start()):
            return Part([], "message/delivery-status", {}, root.body[m.start() :])
    # Some MTAs label the status fields text/plain inside a multipart/report.
    if mail.root.content_type == "multipart/report":
        for p in mail.parts:
            if p.content_type == "text/plain" and not p.children:
                head = p.payload()[:4000].lower()
                if b"final-recipient:" in head or b"original-recipient:" in head:
                    return p
    return None


def human_text(mail: Mail, dsn: Part | None) -> str:
    for p in mail.parts:
        if p is dsn or p.children:
            continue
        if p.content_type == "text/plain":
            return p.text()
    root = mail.root
    if dsn is not None and root.content_type == "multipart/report" and not root.children:
        # boundaries lost (see dsn_part): the explanation is the text before the status fields
        m = _DSN_START_RE.search(root.body, 0, 200_000)
        if m is not None:
            return decode_text(root.body[: m.start()], None)
    return ""


def _reporting_domain(reporting: str | None, mail: Mail) -> str | None:
    """The reporting MTA's name (Reporting-MTA, RFC 3464 section 2.2.2), else the domain of
    the report's From: address."""
    if reporting and " " not in reporting.strip() and "." in reporting:
        return reporting.strip().lower().rstrip(".")
    sender = find_address(mail.header("from") or "")
    return sender.rpartition("@")[2].lower() or None if sender else None


def decode(mail: Mail) -> BounceReport | None:
    dsn = dsn_part(mail)
    if dsn is None:
        return None
    groups = split_groups(dsn.text())
    if not groups:
        return None
    per_message: list[tuple[str, str]] = []
    rcpt_groups: list[list[tuple[str, str]]] = []
    for g in groups:
        if any(n in _RECIPIENT_KEYS for n, _ in g):
            if len(rcpt_groups) > MAX_RECIPIENTS:
                continue  # decode() refuses the report; the per-message fields still count
            rcpt_groups.append(g)
        else:
            per_message.extend(g)
    human = human_text(mail, dsn)
    # what each recipient looks up in the explanation is bounded: its first HUMAN_WINDOW
    # characters, for the first CONTEXT_RECIPIENTS recipients (the others keep their own fields)
    context = human[:HUMAN_WINDOW]
    recipients = tuple(
        r
        for i, g in enumerate(rcpt_groups)
        if (r := recipient_from_group(g, context if i < CONTEXT_RECIPIENTS else "")) is not None
    )
    if not recipients:
        recipients = listed_in_text(human)
    if not recipients and not rcpt_groups and human:
        # Only per-message fields (RFC 3464 section 2.2): the explanation (section 2.1, the
        # first part "describes the condition(s)") names the recipients; it is read like a
        # prose bounce, up to the returned message.
        head, _ = split_returned(human[:HUMAN_WINDOW])
        action = (
            Action.DELAYED if is_delay(mail.subject[:2000] + "\n" + head[:2000]) else Action.FAILED
        )
        recipients = prose_recipients(mail, head, [], action)
    merged = per_message + [f for g in rcpt_groups for f in g]
    _, reporting = split_typed(_get(merged, "reporting-mta"))
    _, received_from = split_typed(_get(merged, "received-from-mta"))
    original = None
    returned = mail.find(*RETURNED_TYPES)
    if returned is not None:
        original = original_from_part(returned)
    if original is None or original.message_id is None:
        original = original_from_text(human) or original
    if len(recipients) == 1 and not usable_address(recipients[0].recipient):
        # No local part and no Original-Recipient: the returned message's To: is the
        # recipient; a bare local part only when the To: has the same one.
        to = find_address(original.to) if original and original.to else None
        bare = recipients[0].recipient
        if to and (not local_part(bare) or to.rpartition("@")[0].lower() == bare.lower()):
            recipients = (replace(recipients[0], recipient=to),)
    domain = _reporting_domain(reporting, mail)
    recipients = tuple(
        r if "@" in r.recipient else replace(r, recipient=qualify_local_part(r.recipient, domain))
        for r in recipients
    )
    env = _get(merged, "original-envelope-id")
    postfix_qid = (_get(merged, "x-postfix-queue-id") or "").strip() or None
    # The reporting MTA's own queue id: Postfix names it in a field of its own; Exim and
    # Sendmail name it only in the Received: they added to the message they return
    # (received.py); the id is one the MTA logged, so bounce_deliveries links by it.
    mta_qid = postfix_qid
    if mta_qid is None and returned is not None:
        mta_qid = reporting_queue_id(returned_headers(returned), reporting)
    return base_report(
        mail,
        kind=kind_of(recipients),
        agent=NAME,
        reporting_mta=reporting,
        received_from_mta=received_from,
        arrival_date=parse_date(_get(merged, "arrival-date")),
        envelope_id=env.strip() if env else None,
        postfix_queue_id=postfix_qid,
        mta_queue_id=mta_qid,
        postfix_sender=clean_address(_get(merged, "x-postfix-sender") or "") or None,
        recipients=recipients,
        original=original,
    )
