"""The reporting MTA's queue id of a returned message, read from its Received: trace fields.

RFC 5321 section 4.4 defines the time-stamp line an MTA prepends when it takes a message in::

    Stamp     = From-domain By-domain Opt-info [CFWS] ";" FWS date-time
    By-domain = CFWS "BY" FWS Extended-Domain
    Opt-info  = [Via] [With] [ID] [For] [Additional-Registered-Clauses]
    ID        = CFWS "ID" FWS ( Atom / msg-id )

with comments (CFWS, RFC 5322 section 3.2.2: parentheses, nested, with quoted pairs) allowed
between the clauses. MTAs put their queue id in the ID clause:

* Exim 4.96: ``from [127.0.0.1] (helo=client.example.net) by mx1.example.net with esmtp
  (Exim 4.96) (envelope-from <sender@example.net>) id 1xZYgF-0001pH-1p for a@example.com``;
* Sendmail 8.17: ``from client.example.net (localhost [127.0.0.1]) by mx1.example.net
  (8.17.1.9/8.17.1.9/Debian-2+deb12u2) with ESMTP id 6B4JAtnv007216 for <a@example.com>``;
* Postfix: ``by mx1.example.net (Postfix) with ESMTP id 4F2A31C0A1``.

A DSN returns the message (``message/rfc822``) or its headers (``text/rfc822-headers``, RFC
6522) as the reporting MTA had it, so the topmost Received: whose ``by`` host is the
Reporting-MTA (RFC 3464 section 2.2.2) is the one that MTA added, and its id is the queue id the
MTA logged for the message. Samples: tests/fixtures/bounces/exim-4.96-*.eml,
sendmail-8.17-*.eml (real DSNs, tests/lab/dsn_sample.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

# A Received: field is a few hundred characters; a longer one is not read past this (the work
# per field stays bounded whatever the input).
MAX_FIELD_CHARS: Final = 4000
# How many Received: fields of the returned message are looked at, from the top.
MAX_FIELDS: Final = 30
# RFC 5322 section 3.2.3 atext, and the angle brackets and "@" of a msg-id (section 3.6.4):
# anything else in the word after "id" is not an id.
_ID_RE: Final = re.compile(r"<?([A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,100})>?")


def clause_words(value: str) -> list[str]:
    """The words of a Received: value before its ";" (the date), comments and quoted strings
    taken out of the way: a comment is dropped, a quoted string (RFC 5322 section 3.2.4, a
    quoted local part in a "for" clause) stays inside its word."""
    words: list[str] = []
    cur: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value[:MAX_FIELD_CHARS]:
        if escaped:  # a quoted-pair (RFC 5322 section 3.2.1), in a comment or a quoted string
            escaped = False
            if depth == 0:
                cur.append(ch)
            continue
        if ch == "\\" and (depth or quoted):
            escaped = True
            if depth == 0:
                cur.append(ch)
            continue
        if depth:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            continue
        if quoted:
            cur.append(ch)
            quoted = ch != '"'
            continue
        if ch == '"':
            cur.append(ch)
            quoted = True
        elif ch == "(":
            depth = 1
        elif ch == ";":
            break
        elif ch in " \t\r\n":
            if cur:
                words.append("".join(cur))
                cur.clear()
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def by_and_id(value: str) -> tuple[str | None, str | None]:
    """(the ``by`` host, the ``id``) of one Received: value; None for a clause it lacks."""
    words = clause_words(value)
    low = [w.lower() for w in words]
    if "by" not in low:
        return None, None
    at = low.index("by")
    by = words[at + 1].strip("[]").lower().rstrip(".") if at + 1 < len(words) else None
    if by is not None and (by in ("with", "id", "via", "for") or not by):
        by = None  # "by" with no host: a keyword follows
    qid = None
    if "id" in low[at + 1 :]:
        i = low.index("id", at + 1)
        if i + 1 < len(words):
            m = _ID_RE.fullmatch(words[i + 1])
            qid = m.group(1) if m else None
    return by, qid


def first_label(host: str) -> str:
    """The first DNS label, lower-cased: syslog names the host by its short name ("mx1"),
    Reporting-MTA by its full one (Postfix $myhostname, Sendmail $j, Exim primary_hostname);
    pipeline/sql/views/20_bounces.sql compares hosts the same way."""
    return host.strip().strip("[]").lower().rstrip(".").split(".", 1)[0]


def reporting_queue_id(headers: Iterable[tuple[str, str]], reporting_mta: str | None) -> str | None:
    """The ``id`` of the topmost Received: among ``headers`` (the returned message's, names
    lower-cased, top first) whose ``by`` host is ``reporting_mta``; None without a Reporting-MTA
    (a Received: of another host names that host's id, not the reporting MTA's), when no
    Received: of that host is there, or when the one there has no id."""
    if not reporting_mta or not reporting_mta.strip():
        return None
    want = first_label(reporting_mta)
    if not want:
        return None
    seen = 0
    for name, value in headers:
        if name != "received":
            continue
        seen += 1
        if seen > MAX_FIELDS:
            break
        by, qid = by_and_id(value)
        if by is not None and first_label(by) == want:
            return qid
    return None
