"""Suppression lists: which addresses to stop mailing, and why.

The policy is evaluated in the store by the table macros of
``pipeline/sql/views/30_suppressions.sql``, its one definition (``suppression_decisions``,
``sender_side_problems``, ``suppression_invalid``; the decisions are computed in stages, see
``staged_decisions``, from a per-address summary plus the rows not folded into it yet, see
``evaluated_decisions`` and ``refresh_suppression_summary``), so the CLI, the exporters
(pipeline/exports.py) and notebooks share it; this module passes them the parameters from
``[suppressions]`` (pipeline/config.py) and a clock value, normalises the addresses SQL cannot,
and records manual decisions. Every way of evaluating gives the rows of the straightforward
one-query definition the tests keep (tests/sql/suppression_reference.sql,
tests/test_suppressions_fast.py).

Evidence is every final outcome of a recipient in the Postfix logs (``recipient_outcomes``),
every failed recipient of a decoded DSN, every ARF complaint and every manual add or remove.
The policy, in order of precedence:

1. A complaint (ARF, RFC 5965; not a "not-spam" report) suppresses permanently: only a manual
   remove clears it.
2. A permanent failure (5xx reply, 5.x.x status) for a hard reason (userunknown, hostunknown,
   hasmoved, notaccept) suppresses at once, permanently by default (``hard_expiry_days``).
3. A manual add suppresses until its expiry, if it has one.
4. Soft failures (any other recipient failure: mailboxfull, suspend, expired, undefined, ...)
   suppress once ``soft_threshold`` distinct UTC days with a failure fall within
   ``soft_window_days``; the suppression expires ``soft_expiry_days`` after the last failure
   that triggered it.

A delivery (log ``status=sent`` or a "delivered" DSN) sets aside every hard and soft failure
before it (the mailbox works now); a manual remove sets aside all evidence before it. Failures
that are about the sender (``sender_side_reasons``, and network errors that are local socket
errors) never suppress the recipient; ``sender_side_problems`` counts them for the report and
alerts. Addresses on the never-suppress list (an address or ``@domain``) are never suppressed.
RFC 2142 role addresses are flagged (``role``). Addresses are normalised by
:func:`normalize_address` (and its SQL fast path, the macro ``suppression_simple_address``, for
log and DSN rows): domain lower-cased and IDNA-encoded (RFC 5891, UTS #46 mapping), and the
ASCII letters of the local part lower-cased too (since 0012). RFC 5321 section 2.4 lets a
receiving system treat ``John`` and ``john`` as different mailboxes, but in practice they are
one: the big mailbox providers ignore case, Postfix folds its table lookup keys to lower case
(the postfix-access export relies on it) and Exim lower-cases local parts before routing unless
told not to (``caseful_local_part``). So a bounce for ``John@`` means ``john@`` bounces too, and
one address with two spellings must not be counted, removed or exported as two. Non-ASCII letters are left as they are (SMTPUTF8 case mapping is the receiving
system's business, RFC 6530) and quoted local parts are folded like any other. Every path that
takes an address (add, remove, never-suppress, explain, ingest of logs and DSNs) goes through
this one normalisation. Unusable addresses are reported by ``invalid_addresses`` and never
exported.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

import idna
import polars as pl
import pyarrow as pa

from mtalens.pipeline.config import SuppressionsConfig
from mtalens.pipeline.exitcodes import InputError
from mtalens.pipeline.reports import Table
from mtalens.pipeline.store import Store


class SuppressionError(InputError, ValueError):
    """A request the policy cannot carry out (an unusable address, a read-only store)."""


class NotListedError(SuppressionError):
    """Removing an address (or never-suppress entry) that is not on the list: nothing was
    recorded. Exit code 2 like any request that did nothing (pipeline/exitcodes.py)."""


# Same language as the SQL macro suppression_simple_address (see its comment for the sources).
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_SIMPLE: Final = re.compile(
    rf"{_ATEXT}{{1,64}}(?:\.{_ATEXT}{{1,64}})*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
# RFC 6531 section 3.3: atext extended with any non-ASCII UTF-8 character.
_UTF8_ATOM: Final = re.compile(r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+")
# RFC 5322 section 3.2.4: quoted-string of qtext and quoted-pairs (printable characters only).
_QUOTED: Final = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e]|[^\x00-\x7f])*"')


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalizedAddress:
    raw: str
    address: str | None
    problem: str | None


def normalize_address(raw: str) -> NormalizedAddress:
    """The address the policy keys on, or the problem that makes ``raw`` unusable.

    Simple ASCII addresses take the fast path (the same as in SQL); the rest go to flanker's
    parser, and to our own RFC 5321/5322/6531 reading where flanker raises."""
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        return NormalizedAddress(raw=raw, address=None, problem="empty address")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in "\u2028\u2029\u0085" for c in text):
        return NormalizedAddress(raw=raw, address=None, problem="control characters in address")
    if len(text) <= 254 and _SIMPLE.fullmatch(text) and text.index("@") <= 64:
        # all ASCII: lower() folds the local part's letters and the domain's alike
        return NormalizedAddress(raw=raw, address=text.lower(), problem=None)
    flanker_address = _flanker()
    try:
        parsed = flanker_address.parse(text, addr_spec_only=True)
    except Exception:  # flanker raises on some valid input (non-ASCII local parts, literals)
        return _fallback(raw, text)
    if parsed is None or not isinstance(parsed, flanker_address.EmailAddress):
        return NormalizedAddress(raw=raw, address=None, problem="not an email address")
    local, _, domain = text.rpartition("@")
    if str(parsed.mailbox) != local or str(parsed.hostname).lower() != domain.lower():
        # flanker is lenient ("x y@example.com" reads as "y@example.com"): never guess
        return NormalizedAddress(raw=raw, address=None, problem="ambiguous address")
    return _finish(raw, local, domain)


def _flanker() -> Any:
    """flanker, imported on first use: only unusual addresses need it, and importing it pulls
    in webob, which imports the stdlib ``cgi`` module (deprecated in Python 3.11, PEP 594)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from flanker.addresslib import address

    return address


def _fallback(raw: str, text: str) -> NormalizedAddress:
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return NormalizedAddress(raw=raw, address=None, problem="not an email address")
    dot_atom = all(_UTF8_ATOM.fullmatch(part) for part in local.split("."))
    if not dot_atom and not _QUOTED.fullmatch(local):
        return NormalizedAddress(raw=raw, address=None, problem="invalid local part")
    return _finish(raw, local, domain)


# str.lower() would also map non-ASCII letters (and differently from DuckDB's lower()).
_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _finish(raw: str, local: str, domain: str) -> NormalizedAddress:
    def bad(problem: str) -> NormalizedAddress:
        return NormalizedAddress(raw=raw, address=None, problem=problem)

    local = local.translate(_ASCII_LOWER)
    if len(local.encode()) > 64:  # RFC 5321 section 4.5.3.1.1
        return bad("local part longer than 64 octets")
    if domain.startswith("[") and domain.endswith("]"):
        # address literal, RFC 5321 section 4.1.3
        literal = domain[1:-1]
        try:
            if literal.lower().startswith("ipv6:"):
                ip: Any = ipaddress.IPv6Address(literal[5:])
                norm = f"[IPv6:{ip.compressed}]"
            else:
                ip = ipaddress.IPv4Address(literal)
                norm = f"[{ip}]"
        except ValueError:
            return bad("invalid address literal")
        return NormalizedAddress(raw=raw, address=f"{local}@{norm}", problem=None)
    try:
        ascii_domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return bad("invalid domain")
    if "." not in ascii_domain:
        return bad("domain has no dot")
    address = f"{local}@{ascii_domain}"
    if len(address.encode()) > 254:  # RFC 5321 section 4.5.3.1.3 (256 with the brackets)
        return bad("address longer than 254 octets")
    return NormalizedAddress(raw=raw, address=address, problem=None)


# The raw addresses of the source rows past a summary's watermarks (suppression_raw_addresses,
# 0004, narrowed as suppression_new_evidence narrows its sources, 0010).
_NEW_RAW_ADDRESSES: Final = """
    SELECT recipient AS raw FROM delivery_log WHERE rowid >= $deliveries
    UNION ALL
    SELECT coalesce(c.original_recipient, r.verp_recipient, c.recipient)
    FROM (SELECT * FROM bounce_recipients
          WHERE rowid >= $recipients
             OR report_hash IN (SELECT report_hash FROM bounce_reports WHERE rowid >= $reports)) c
    JOIN bounce_reports r USING (report_hash)
    UNION ALL
    SELECT coalesce(recipient, verp_recipient) FROM complaints
    WHERE report_hash IN (SELECT report_hash FROM complaint_reports WHERE rowid >= $complaints)
       OR report_hash IN (SELECT report_hash FROM bounce_reports WHERE rowid >= $reports)
    UNION ALL
    SELECT address FROM suppression_manual WHERE id > $manual
"""


def refresh_addresses(store: Store, *, now: datetime, since: SummaryState | None = None) -> int:
    """Normalise, in Python, raw addresses the SQL fast path leaves alone; returns how many.
    With ``since`` (a summary's state), only those of the rows past its watermarks: the
    others were looked at before they were folded (upkeep.fold_new_rows normalises, then
    folds)."""
    if since is not None and not _covers(since, _sources(store)):
        since = None  # a source lost rows: row ids past the watermarks may not be the new rows
    if since is None:
        source, params = "suppression_raw_addresses", {}
    else:
        source = f"({_NEW_RAW_ADDRESSES})"
        params = {
            "deliveries": since.delivery_rows,
            "recipients": since.bounce_recipient_rows,
            "reports": since.bounce_report_rows,
            "complaints": since.complaint_rows,
            "manual": since.manual_id,
        }
    rows = store.con.execute(
        f"SELECT DISTINCT raw FROM {source} r "
        "WHERE raw IS NOT NULL AND suppression_simple_address(raw) IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM suppression_addresses n WHERE n.raw = r.raw)",
        params,
    ).fetchall()
    if not rows:
        return 0
    found = [normalize_address(str(r[0])) for r in rows]
    _remember(store, found, now)
    return len(found)


def _remember(store: Store, found: list[NormalizedAddress], now: datetime) -> None:
    frame = pl.DataFrame(
        {
            "raw": [n.raw for n in found],
            "address": [n.address for n in found],
            "problem": [n.problem for n in found],
        },
        schema={"raw": pl.String, "address": pl.String, "problem": pl.String},
    )
    with store.transaction() as con:
        con.register("mtalens_new_addresses", frame.to_arrow())
        try:
            con.execute(
                "INSERT OR REPLACE INTO suppression_addresses "
                "SELECT raw, address, problem, ? FROM mtalens_new_addresses",
                [now],
            )
        finally:
            con.unregister("mtalens_new_addresses")


def prepare(store: Store, *, now: datetime, since: SummaryState | None = None) -> int:
    """Bring address normalisation up to date when the store is writable; returns how many
    raw addresses are still waiting (they count as invalid until normalised). ``since``: only
    look at the rows past that summary state's watermarks (see refresh_addresses)."""
    if not store.read_only:
        # everything waiting is normalised and stored now (one scan of all raw addresses,
        # 3.6 s at 10 M deliveries, or of the new rows' with ``since``: not a second one to
        # count what is left)
        refresh_addresses(store, now=now, since=since)
        return 0
    row = store.con.execute(
        "SELECT count(DISTINCT raw) FROM suppression_raw_addresses r "
        "WHERE raw IS NOT NULL AND suppression_simple_address(raw) IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM suppression_addresses n WHERE n.raw = r.raw)"
    ).fetchall()
    return int(row[0][0]) if row else 0


# --- the policy ------------------------------------------------------------------------------


def policy_args(policy: SuppressionsConfig) -> list[Any]:
    return [
        policy.soft_threshold,
        policy.soft_window_days,
        policy.soft_expiry_days,
        policy.hard_expiry_days,
        list(policy.hard_reasons),
        list(policy.sender_side_reasons),
        [p.lower() for p in policy.local_network_phrases],
    ]


# The decisions in one query (0009's suppression_decisions): what notebooks and `explain` use.
DECISIONS_SQL: Final = "SELECT * FROM suppression_decisions(?, ?, ?, ?, ?, ?, ?, ?)"

# The staged evaluation (0009): each stage materialised in a temp table of this connection
# (temp tables work on a read-only store too, and DuckDB spills them under memory pressure).
_STAGE_IDS: Final = "mtalens_suppression_final_ids"
_STAGE_SUCCESSES: Final = "mtalens_suppression_successes"
_STAGE_EVIDENCE: Final = "mtalens_suppression_evidence"
_STAGE_EVIDENCE_SEQ: Final = "mtalens_suppression_evidence_seq"
STAGED_SQL: Final = f"SELECT * FROM suppression_decide(?, ?, ?, ?, ?, '{_STAGE_EVIDENCE_SEQ}')"


def _one(store: Store, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    """The first row of a query (read to the end: DuckDB refuses new work on a connection
    with an unfinished result)."""
    rows = store.con.execute(sql, params or []).fetchall()
    return tuple(rows[0]) if rows else (None,)


@contextmanager
def _setting(store: Store, name: str, value: str) -> Iterator[None]:
    """Run the body with DuckDB setting ``name`` at ``value``, then put it back."""
    row = _one(store, "SELECT current_setting(?)", [name])
    before = "" if row is None or row[0] is None else str(row[0])
    store.con.execute(f"SET {name} = {_quote(value)}")
    try:
        yield
    finally:
        if before:
            store.con.execute(f"SET {name} = {_quote(before)}")
        else:
            store.con.execute(f"RESET {name}")


@contextmanager
def staged_decisions(
    store: Store, policy: SuppressionsConfig, *, now: datetime
) -> Iterator[tuple[str, list[Any]]]:
    """Materialise the stages of the policy; yields ``STAGED_SQL`` and its parameters, which
    select the same rows as ``DECISIONS_SQL`` (valid inside the ``with`` block only)."""
    try:
        _stage_evidence(store, now, policy_args(policy))
        yield STAGED_SQL, [now, *policy_args(policy)[:4]]
    finally:
        _drop_staged(store)


def _stage_evidence(
    store: Store, as_of: datetime | str, args: list[Any], *, keep_successes: bool = False
) -> None:
    """The 0009 stages up to the graded evidence with its ``seq`` (view ``_STAGE_EVIDENCE_SEQ``;
    ``keep_successes``: and the latest successes, ``_STAGE_SUCCESSES``). ``as_of`` may be
    ``'infinity'``: every piece of evidence (the summary's full build)."""
    con = store.con
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_STAGE_IDS} AS "
        "SELECT * FROM suppression_final_failure_ids(CAST(? AS TIMESTAMPTZ))",
        [as_of],
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_STAGE_SUCCESSES} AS "
        "SELECT * FROM suppression_latest_successes(CAST(? AS TIMESTAMPTZ))",
        [as_of],
    )
    # The planner's build side swap puts the wide evidence rows, not the small lookups
    # (row ids, latest successes, expired messages), in the hash tables of this stage
    # (measured at 10 M deliveries: 3.2 GB instead of 1.4 GB). The rows are stored in
    # (occurred_at, event_id) order, which insertion order preserves, so that the row id
    # is the `seq` suppression_decide needs without a window over all the evidence.
    with (
        _setting(store, "disabled_optimizers", _also_disabled(store, "build_side_probe_side")),
        _setting(store, "preserve_insertion_order", "true"),
    ):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_STAGE_EVIDENCE} AS "
            "SELECT * FROM suppression_graded_evidence(CAST(? AS TIMESTAMPTZ), ?, ?, ?, "
            f"'{_STAGE_IDS}', '{_STAGE_SUCCESSES}') ORDER BY occurred_at, event_id",
            [as_of, *args[4:]],
        )
    con.execute(f"DROP TABLE {_STAGE_IDS}")
    if not keep_successes:
        con.execute(f"DROP TABLE {_STAGE_SUCCESSES}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {_STAGE_EVIDENCE_SEQ} AS "
        f"SELECT *, rowid AS seq FROM {_STAGE_EVIDENCE}"
    )


def _drop_staged(store: Store) -> None:
    con = store.con
    con.execute(f"DROP VIEW IF EXISTS {_STAGE_EVIDENCE_SEQ}")
    for table in (_STAGE_EVIDENCE, _STAGE_SUCCESSES, _STAGE_IDS):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _also_disabled(store: Store, optimizer: str) -> str:
    row = _one(store, "SELECT current_setting('disabled_optimizers')")
    current = [o.strip() for o in str(row[0] if row and row[0] else "").split(",") if o.strip()]
    return ",".join([*current, optimizer] if optimizer not in current else current)


# --- the per-address summary (0010) ----------------------------------------------------------
#
# suppression_summary holds the policy's candidates per address, folded from every source row
# up to a watermark by refresh_suppression_summary(). evaluated_decisions() combines it with
# the rows past the watermark: the addresses those rows name ("the scope") are recomputed from
# scratch (suppression_scoped_evidence, 0010), every other address keeps its summary rows. So
# the result is the reference's whether or not a refresh ran; a refresh only makes the scope
# small. 0010's header says why an address's candidates depend on its own rows only. Of the
# addresses whose evidence the new rows only add to, those whose new rows all come after
# everything folded about them (the common case: mail goes on) are not read again at all: their
# candidates are combined with the new rows (_stage_fast).

_T: Final = "mtalens_suppression_tail"
_F: Final = "mtalens_suppression_tail_folded"
_NEW_FINALS: Final = "mtalens_suppression_new_finals"
_NEW: Final = "mtalens_suppression_new"
_EXPIRED: Final = "mtalens_suppression_expired_changed"
_RECOMPUTE_RAWS: Final = "mtalens_suppression_recompute_raws"
_SCOPE: Final = "mtalens_suppression_scope"
_SCOPE_DELIVERIES: Final = "mtalens_suppression_scope_deliveries"
_SCOPE_RESETS: Final = "mtalens_suppression_scope_resets"
_SCOPE_EVIDENCE: Final = "mtalens_suppression_scope_evidence"
_SCOPE_EVIDENCE_SEQ: Final = "mtalens_suppression_scope_evidence_seq"
_SCOPE_CANDIDATES: Final = "mtalens_suppression_scope_candidates"
_APPEND: Final = "mtalens_suppression_append"
_APPEND_RESETS: Final = "mtalens_suppression_append_resets"
_APPEND_EVIDENCE: Final = "mtalens_suppression_append_evidence"
_APPEND_EVIDENCE_SEQ: Final = "mtalens_suppression_append_evidence_seq"
_APPEND_CANDIDATES: Final = "mtalens_suppression_append_candidates"
_CLEARED: Final = "mtalens_suppression_cleared"
_CLEARED_CANDIDATES: Final = "mtalens_suppression_cleared_candidates"
_FAST: Final = "mtalens_suppression_fast"
_FAST_CANDIDATES: Final = "mtalens_suppression_fast_candidates"
_FAST_NEW: Final = "mtalens_suppression_fast_new"
_FAST_OLD: Final = "mtalens_suppression_fast_old"
_CANDIDATES: Final = "mtalens_suppression_candidates"
PICK_SQL: Final = f"SELECT * FROM suppression_pick(CAST(? AS TIMESTAMPTZ), '{_CANDIDATES}')"
# The summary's candidates hold every piece of evidence (0010: exact for any as_of from the
# latest folded event on).
_ALL: Final = "infinity"
_EVIDENCE_COLUMNS: Final = (
    "event_id, occurred_at, verdict, reason, category, rule_id, status_code, reply_code,"
    " diagnostic, expires_at, note, address"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryState:
    """What suppression_summary covers (0010's suppression_summary_state)."""

    policy: str
    delivery_rows: int
    bounce_report_rows: int
    bounce_recipient_rows: int
    complaint_rows: int
    manual_id: int
    max_evidence_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryRefresh:
    """What one refresh_suppression_summary() call did."""

    full: bool  # rebuilt from every row (first run, another policy, a source not append-only)
    new_deliveries: int  # delivery rows folded in by this call
    addresses: int  # addresses recomputed
    candidates: int  # rows in suppression_summary afterwards
    # of `addresses`, those folded by combining their candidates with the new rows alone
    # (_stage_fast: no folded evidence read again)
    combined: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sources:
    delivery_rows: int
    bounce_report_rows: int
    bounce_recipient_rows: int
    complaint_rows: int
    manual_id: int
    dense: bool  # every append-only table has rowids 0..n-1 (no row was ever deleted)


def _policy_key(policy: SuppressionsConfig) -> str:
    return json.dumps(policy_args(policy))


def summary_state(store: Store) -> SummaryState | None:
    rows = store.con.execute(
        "SELECT policy, delivery_rows, bounce_report_rows, bounce_recipient_rows,"
        " complaint_rows, manual_id, max_evidence_at FROM suppression_summary_state"
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    return SummaryState(
        policy=str(row[0]),
        delivery_rows=int(row[1]),
        bounce_report_rows=int(row[2]),
        bounce_recipient_rows=int(row[3]),
        complaint_rows=int(row[4]),
        manual_id=int(row[5]),
        max_evidence_at=row[6],
    )


def _sources(store: Store) -> _Sources:
    rows = store.con.execute(
        """
        SELECT (SELECT count(*) FROM delivery_log),
               (SELECT coalesce(max(rowid) + 1, 0) FROM delivery_log),
               (SELECT count(*) FROM bounce_reports),
               (SELECT coalesce(max(rowid) + 1, 0) FROM bounce_reports),
               (SELECT count(*) FROM bounce_recipients),
               (SELECT coalesce(max(rowid) + 1, 0) FROM bounce_recipients),
               (SELECT count(*) FROM complaint_reports),
               (SELECT coalesce(max(rowid) + 1, 0) FROM complaint_reports),
               (SELECT coalesce(max(id), 0) FROM suppression_manual)
        """
    ).fetchall()
    n = [int(v) for v in rows[0]]
    return _Sources(
        delivery_rows=n[0],
        bounce_report_rows=n[2],
        bounce_recipient_rows=n[4],
        complaint_rows=n[6],
        manual_id=n[8],
        dense=n[0] == n[1] and n[2] == n[3] and n[4] == n[5] and n[6] == n[7],
    )


def _covers(state: SummaryState, sources: _Sources) -> bool:
    """The summary's watermarks still name a prefix of each source table: the tables were
    only appended to (delivery_log, bounce_* and complaint_reports are append-only; a delete
    would show as a hole in the row ids or fewer rows than were folded)."""
    return (
        sources.dense
        and sources.delivery_rows >= state.delivery_rows
        and sources.bounce_report_rows >= state.bounce_report_rows
        and sources.bounce_recipient_rows >= state.bounce_recipient_rows
        and sources.complaint_rows >= state.complaint_rows
        and sources.manual_id >= state.manual_id
    )


def rows_past_watermark(store: Store, state: SummaryState) -> bool:
    """Whether any source row is not folded into the summary (or a source lost rows): when
    not, no raw address is new since the last fold either (they all come from those rows)."""
    src = _sources(store)
    return not (
        _covers(state, src)
        and src.delivery_rows == state.delivery_rows
        and src.bounce_report_rows == state.bounce_report_rows
        and src.bounce_recipient_rows == state.bounce_recipient_rows
        and src.complaint_rows == state.complaint_rows
        and src.manual_id == state.manual_id
    )


_DELIVERY_COLUMNS: Final = (
    "message_key, recipient, logged_at, line_offset, seq, status, dsn, reply_code, diagnostic,"
    " reason, category, rule_id"
)
# an attempt l after attempt f of the same message and recipient (recipient_outcomes' order:
# seq, the order they were read in; migration 0017)
_LATER: Final = "l.message_key = f.message_key AND l.recipient = f.recipient AND l.seq > f.seq"


def _stage_delta(
    store: Store, as_of: datetime | str, args: list[Any], *, state: SummaryState
) -> tuple[int, int, int]:
    """What the rows past ``state``'s watermarks change, as temp tables: the addresses whose
    evidence they only add to (``_APPEND``: their folded evidence plus the new, evaluated
    again) and those whose history must be read again (``_SCOPE``: a new attempt replaces a
    final outcome that was evidence, a message's expiry changed, an address normalises
    differently, or an event after ``as_of`` was folded); of the first, those whose new rows
    only come after everything folded about them are combined with their folded candidates
    (``_FAST``, see _stage_fast). Returns the (scope, append, fast) sizes."""
    con = store.con
    marks = {
        "deliveries": state.delivery_rows,
        "reports": state.bounce_report_rows,
        "recipients": state.bounce_recipient_rows,
        "complaints": state.complaint_rows,
        "manual": state.manual_id,
    }
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_T} AS SELECT rowid AS row_id, {_DELIVERY_COLUMNS} "
        "FROM delivery_log WHERE rowid >= ?",
        [state.delivery_rows],
    )
    # the folded attempts of the same messages (a message's recipients share its expiry and
    # its deferrals' line offsets)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_F} AS SELECT rowid AS row_id, {_DELIVERY_COLUMNS} "
        f"FROM delivery_log WHERE rowid < ? AND message_key IN (SELECT message_key FROM {_T})",
        [state.delivery_rows],
    )
    # messages whose expiry (message_log.expired_at, rewritten in place) is not what was folded
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_EXPIRED} AS
        SELECT DISTINCT message_key FROM (
            (SELECT message_key, expired_at FROM message_log WHERE expired_at IS NOT NULL
             EXCEPT SELECT message_key, expired_at FROM suppression_summary_expired)
            UNION ALL
            (SELECT message_key, expired_at FROM suppression_summary_expired
             EXCEPT SELECT message_key, expired_at FROM message_log WHERE expired_at IS NOT NULL))
        """
    )
    # the final attempts among the new rows: no later attempt, folded or new
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_NEW_FINALS} AS
        WITH p AS (
            SELECT * FROM {_T} WHERE recipient IS NOT NULL
            UNION ALL
            SELECT x.* FROM {_F} x
            SEMI JOIN {_T} t ON t.message_key = x.message_key AND t.recipient = x.recipient
        )
        SELECT f.* FROM p f ANTI JOIN p l ON {_LATER}
        WHERE f.row_id >= ?
        """,
        [state.delivery_rows],
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_RECOMPUTE_RAWS} AS
        WITH pairs AS (
            SELECT x.* FROM {_F} x
            SEMI JOIN {_T} t ON t.message_key = x.message_key AND t.recipient = x.recipient
        ),
        old_finals AS (
            SELECT f.* FROM pairs f ANTI JOIN pairs l ON {_LATER}
        )
        -- a folded final outcome that was evidence (or could be: a deferral in a message that
        -- expired) and that a new attempt replaces
        SELECT f.recipient AS raw FROM old_finals f
        WHERE (f.status IN ('sent', 'bounced', 'expired')
               OR (f.status = 'deferred'
                   AND (f.message_key IN (SELECT message_key FROM message_log
                                          WHERE expired_at IS NOT NULL)
                        OR f.message_key IN (SELECT message_key
                                             FROM suppression_summary_expired))))
          AND EXISTS (SELECT 1 FROM {_T} l WHERE {_LATER})
        UNION
        -- a folded attempt whose (message, line offset) a new deferral shares: an expired
        -- outcome's attempt_reason reads it
        SELECT f.recipient FROM {_F} f
        SEMI JOIN {_T} t ON t.message_key = f.message_key AND t.line_offset = f.line_offset
                        AND t.status = 'deferred'
        UNION
        SELECT recipient FROM delivery_log
        WHERE message_key IN (SELECT message_key FROM {_EXPIRED})
        UNION
        SELECT raw FROM (
            (SELECT raw, address, problem FROM suppression_addresses
             EXCEPT SELECT raw, address, problem FROM suppression_summary_addresses)
            UNION ALL
            (SELECT raw, address, problem FROM suppression_summary_addresses
             EXCEPT SELECT raw, address, problem FROM suppression_addresses))
        """
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_NEW} AS SELECT * FROM suppression_new_evidence("
        f"CAST($as_of AS TIMESTAMPTZ), $hard, $sender, $phrases, '{_NEW_FINALS}', $reports,"
        " $recipients, $complaints, $manual)",
        {
            "as_of": as_of,
            "hard": args[4],
            "sender": args[5],
            "phrases": args[6],
            "reports": marks["reports"],
            "recipients": marks["recipients"],
            "complaints": marks["complaints"],
            "manual": marks["manual"],
        },
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_SCOPE} AS
        SELECT DISTINCT address, lower(address) AS key FROM (
            SELECT suppression_usable_address(t.raw, n.address, n.problem) AS address
            FROM {_RECOMPUTE_RAWS} t LEFT JOIN suppression_addresses n ON n.raw = t.raw
            UNION ALL
            SELECT o.address FROM suppression_summary_addresses o
            SEMI JOIN {_RECOMPUTE_RAWS} t ON t.raw = o.raw
            WHERE o.problem IS NULL
            UNION ALL
            -- folded evidence after as_of: read again with the real as_of
            SELECT address FROM suppression_summary
            WHERE greatest(max_event_at, success_at, removed_at) > CAST($as_of AS TIMESTAMPTZ)
            UNION ALL
            SELECT w.address FROM suppression_summary_resets w
            SEMI JOIN {_NEW} n ON n.address = w.address
            WHERE greatest(w.success_at, w.removed_at) > CAST($as_of AS TIMESTAMPTZ))
        WHERE address IS NOT NULL
        """,
        {"as_of": as_of},
    )
    # the others the new rows name, when they have evidence (folded or new)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_APPEND} AS
        SELECT DISTINCT n.address FROM {_NEW} n
        WHERE n.address NOT IN (SELECT address FROM {_SCOPE})
          AND (n.verdict NOT IN ('success', 'manual_remove')
               OR n.address IN (SELECT address FROM suppression_summary))
        """
    )
    # Most of them only got a delivery after all their failures and manual adds: everything
    # but complaints stops standing (0004's `live`), so their candidates are the folded ones
    # with nothing standing, as suppression_candidates makes them for a group without live
    # rows: no evidence, no details, no suppression, no event ids.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_CLEARED} AS
        SELECT n.address, n.success_at
        FROM (SELECT address, max(occurred_at) AS success_at
              FROM {_NEW} GROUP BY address HAVING bool_and(verdict = 'success')) n
        JOIN (SELECT address,
                     max(max_event_at) FILTER (WHERE verdict <> 'complaint') AS last_event
              FROM suppression_summary GROUP BY address) s ON s.address = n.address
        WHERE n.address IN (SELECT address FROM {_APPEND})
          AND (s.last_event IS NULL OR n.success_at >= s.last_event)
        """
    )
    con.execute(f"DELETE FROM {_APPEND} WHERE address IN (SELECT address FROM {_CLEARED})")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_CLEARED_CANDIDATES} AS
        SELECT s.* REPLACE (
                   greatest(s.success_at, c.success_at) AS success_at,
                   CASE WHEN s.verdict = 'complaint' THEN s.first_evidence END AS first_evidence,
                   CASE WHEN s.verdict = 'complaint' THEN s.last_evidence END AS last_evidence,
                   CASE WHEN s.verdict = 'complaint' THEN s.evidence_count ELSE 0 END
                       AS evidence_count,
                   CASE WHEN s.verdict = 'complaint' THEN s.suppressed_at END AS suppressed_at,
                   CASE WHEN s.verdict = 'complaint' THEN s.expires_at END AS expires_at,
                   CASE WHEN s.verdict = 'complaint' THEN s.reason END AS reason,
                   CASE WHEN s.verdict = 'complaint' THEN s.category END AS category,
                   CASE WHEN s.verdict = 'complaint' THEN s.rule_id END AS rule_id,
                   CASE WHEN s.verdict = 'complaint' THEN s.status_code END AS status_code,
                   CASE WHEN s.verdict = 'complaint' THEN s.reply_code END AS reply_code,
                   CASE WHEN s.verdict = 'complaint' THEN s.diagnostic END AS diagnostic,
                   CASE WHEN s.verdict = 'complaint' THEN s.note END AS note,
                   CASE WHEN s.verdict = 'complaint' THEN s.event_ids END AS event_ids)
        FROM suppression_summary s
        JOIN {_CLEARED} c ON c.address = s.address
        """
    )
    _stage_fast(store, args)
    _stage_history(store, as_of, args)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_APPEND_RESETS} AS
        SELECT a.address, greatest(w.success_at, n.success_at) AS success_at,
               greatest(w.removed_at, n.removed_at) AS removed_at
        FROM {_APPEND} a
        LEFT JOIN suppression_summary_resets w ON w.address = a.address
        LEFT JOIN (SELECT address,
                          max(occurred_at) FILTER (WHERE verdict = 'success') AS success_at,
                          max(occurred_at) FILTER (WHERE verdict = 'manual_remove') AS removed_at
                   FROM {_NEW} GROUP BY address) n ON n.address = a.address
        """
    )
    with _setting(store, "preserve_insertion_order", "true"):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {_APPEND_EVIDENCE} AS
            SELECT e.*, w.removed_at, w.success_at,
                   e.occurred_at > coalesce(w.removed_at, '-infinity'::TIMESTAMPTZ)
                   AND (e.verdict = 'complaint'
                        OR e.occurred_at > coalesce(w.success_at, '-infinity'::TIMESTAMPTZ))
                       AS live
            FROM (SELECT {_EVIDENCE_COLUMNS} FROM suppression_summary_evidence
                  WHERE address IN (SELECT address FROM {_APPEND})
                  UNION ALL
                  SELECT {_EVIDENCE_COLUMNS} FROM {_NEW}
                  WHERE verdict NOT IN ('success', 'manual_remove')
                    AND address IN (SELECT address FROM {_APPEND})) e
            JOIN {_APPEND_RESETS} w ON w.address = e.address
            ORDER BY e.occurred_at, e.event_id
            """
        )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {_APPEND_EVIDENCE_SEQ} AS "
        f"SELECT *, rowid AS seq FROM {_APPEND_EVIDENCE}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_APPEND_CANDIDATES} AS "
        f"SELECT * FROM suppression_candidates(?, ?, ?, ?, '{_APPEND_EVIDENCE_SEQ}')",
        args[:4],
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW {_CANDIDATES} AS
        SELECT * FROM suppression_summary s
        WHERE s.address NOT IN (SELECT address FROM {_SCOPE})
          AND s.address NOT IN (SELECT address FROM {_APPEND})
          AND s.address NOT IN (SELECT address FROM {_CLEARED})
          AND s.address NOT IN (SELECT address FROM {_FAST})
        UNION ALL SELECT * FROM {_SCOPE_CANDIDATES}
        UNION ALL SELECT * FROM {_APPEND_CANDIDATES}
        UNION ALL SELECT * FROM {_CLEARED_CANDIDATES}
        UNION ALL SELECT * FROM {_FAST_CANDIDATES}
        """
    )
    scope = int(_one(store, f"SELECT count(*) FROM {_SCOPE}")[0])
    append = int(_one(store, f"SELECT count(*) FROM {_APPEND}")[0])
    cleared = int(_one(store, f"SELECT count(*) FROM {_CLEARED}")[0])
    fast = int(_one(store, f"SELECT count(*) FROM {_FAST}")[0])
    return scope, append + cleared, fast


def _stage_fast(store: Store, args: list[Any]) -> None:
    """Move from ``_APPEND`` to ``_FAST`` the addresses whose new rows are all evidence (no
    success, no manual remove) dated strictly after everything folded about them (their
    candidates' latest event, success and manual remove), and compute their candidates
    (``_FAST_CANDIDATES``) from their folded candidates plus the new rows alone.

    Why that is exact (suppression_candidates, 0010): the address's latest success and remove
    do not change, so its folded evidence keeps its `live` flags, and the new rows, being later
    than both, are all live; they are also later than every folded row in (occurred_at,
    event_id) order, so each detail column (latest non-NULL live value) is the new rows'
    latest when they have one and the folded one otherwise, the event ids are the folded ones
    followed by the new in that order, and counts, first and last evidence combine by sum, min
    and max. A soft trigger is a day with at least ``soft_threshold`` failure days in the
    ``soft_window_days`` ending on it: adding later days leaves earlier days' windows alone, so
    the trigger is the later of the folded one and those of the new days, whose windows only
    need the folded live soft days from ``soft_window_days`` before the first new one (read
    from suppression_summary_evidence, which is in time order: the scan skips older blocks)."""
    con = store.con
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_FAST} AS
        SELECT n.address
        FROM (SELECT address, min(occurred_at) AS first_new
              FROM {_NEW}
              WHERE address IN (SELECT address FROM {_APPEND})
              GROUP BY address
              HAVING bool_and(verdict NOT IN ('success', 'manual_remove'))) n
        LEFT JOIN (SELECT address, max(max_event_at) AS last_event
                   FROM suppression_summary
                   WHERE address IN (SELECT address FROM {_APPEND})
                   GROUP BY address) s ON s.address = n.address
        LEFT JOIN suppression_summary_resets w ON w.address = n.address
        WHERE n.first_new > coalesce(greatest(s.last_event, w.success_at, w.removed_at),
                                     '-infinity'::TIMESTAMPTZ)
        """
    )
    con.execute(f"DELETE FROM {_APPEND} WHERE address IN (SELECT address FROM {_FAST})")
    # the earliest folded soft day a new day's window can reach (0010's soft_days: UTC days)
    first_soft = _one(
        store,
        f"SELECT min(occurred_at) FROM {_NEW} "
        f"WHERE verdict = 'soft' AND address IN (SELECT address FROM {_FAST})",
    )[0]
    # the new rows in (occurred_at, event_id) order: the row id is their rank (as in
    # _stage_evidence), a cheap key for the latest value and the order of the event ids
    with _setting(store, "preserve_insertion_order", "true"):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_FAST_NEW} AS SELECT {_EVIDENCE_COLUMNS} "
            f"FROM {_NEW} WHERE address IN (SELECT address FROM {_FAST}) "
            "ORDER BY occurred_at, event_id"
        )
    # their folded candidates, read once
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_FAST_OLD} AS SELECT * FROM suppression_summary "
        f"WHERE address IN (SELECT address FROM {_FAST})"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_FAST_CANDIDATES} AS
        WITH nv AS (
            SELECT *, rowid AS seq FROM {_FAST_NEW}
        ),
        added AS (
            SELECT address, verdict,
                   min(occurred_at) AS first_new, max(occurred_at) AS last_new, count(*) AS n,
                   arg_max(reason, seq) FILTER (WHERE reason IS NOT NULL) AS reason,
                   arg_max(category, seq) FILTER (WHERE category IS NOT NULL) AS category,
                   arg_max(rule_id, seq) FILTER (WHERE rule_id IS NOT NULL) AS rule_id,
                   arg_max(status_code, seq)
                       FILTER (WHERE status_code IS NOT NULL) AS status_code,
                   arg_max(reply_code, seq) FILTER (WHERE reply_code IS NOT NULL) AS reply_code,
                   arg_max(diagnostic, seq) FILTER (WHERE diagnostic IS NOT NULL) AS diagnostic,
                   arg_max(expires_at, seq) FILTER (WHERE expires_at IS NOT NULL) AS expires_at,
                   arg_max(note, seq) FILTER (WHERE note IS NOT NULL) AS note,
                   list(event_id ORDER BY seq) AS event_ids
            FROM nv GROUP BY address, verdict
        ),
        soft_days AS (
            SELECT address, date_trunc('day', occurred_at) AS day, max(occurred_at) AS last_at,
                   bool_or(new) AS new
            FROM (SELECT address, occurred_at, true AS new FROM nv WHERE verdict = 'soft'
                  UNION ALL
                  SELECT e.address, e.occurred_at, false
                  FROM suppression_summary_evidence e
                  LEFT JOIN suppression_summary_resets w ON w.address = e.address
                  WHERE e.verdict = 'soft'
                    AND e.occurred_at >= CAST($first_soft AS TIMESTAMPTZ)
                                         - to_days(CAST($window AS INTEGER) + 1)
                    AND e.address IN (SELECT address FROM nv WHERE verdict = 'soft')
                    AND e.occurred_at > coalesce(w.removed_at, '-infinity'::TIMESTAMPTZ)
                    AND e.occurred_at > coalesce(w.success_at, '-infinity'::TIMESTAMPTZ))
            GROUP BY ALL
        ),
        soft_trigger AS (
            SELECT address, max(last_at) FILTER (WHERE new AND n >= $threshold) AS triggered_at
            FROM (SELECT address, last_at, new, count(*) OVER (
                      PARTITION BY address ORDER BY day
                      RANGE BETWEEN to_days(CAST($window AS INTEGER) - 1) PRECEDING
                                AND CURRENT ROW) AS n
                  FROM soft_days)
            GROUP BY address
        ),
        combined AS (
            SELECT a.address, a.verdict,
                   w.removed_at, w.success_at,
                   coalesce(o.first_evidence, a.first_new) AS first_evidence,
                   a.last_new AS last_evidence,
                   coalesce(o.evidence_count, 0) + a.n AS evidence_count,
                   a.last_new AS max_event_at,
                   greatest(o.suppressed_at, t.triggered_at) AS soft_at,
                   coalesce(a.expires_at, o.expires_at) AS manual_expires_at,
                   coalesce(a.reason, o.reason) AS reason,
                   coalesce(a.category, o.category) AS category,
                   coalesce(a.rule_id, o.rule_id) AS rule_id,
                   coalesce(a.status_code, o.status_code) AS status_code,
                   coalesce(a.reply_code, o.reply_code) AS reply_code,
                   coalesce(a.diagnostic, o.diagnostic) AS diagnostic,
                   coalesce(a.note, o.note) AS note,
                   list_concat(o.event_ids, a.event_ids) AS event_ids
            FROM added a
            LEFT JOIN {_FAST_OLD} o ON o.address = a.address AND o.verdict = a.verdict
            LEFT JOIN (SELECT * FROM suppression_summary_resets
                       WHERE address IN (SELECT address FROM {_FAST})) w ON w.address = a.address
            LEFT JOIN soft_trigger t ON a.verdict = 'soft' AND t.address = a.address
        )
        -- columns as suppression_candidates' (0010), computed the same way
        SELECT address, verdict, removed_at, success_at, first_evidence, last_evidence,
               evidence_count, max_event_at,
               CASE verdict WHEN 'complaint' THEN 1 WHEN 'hard' THEN 2 WHEN 'manual_add' THEN 3
                    ELSE 4 END AS priority,
               CASE verdict WHEN 'soft' THEN soft_at ELSE first_evidence END AS suppressed_at,
               CASE verdict
                    WHEN 'complaint' THEN NULL
                    WHEN 'hard' THEN CASE WHEN $hard_expiry > 0
                                          THEN last_evidence
                                               + to_days(CAST($hard_expiry AS INTEGER)) END
                    WHEN 'manual_add' THEN manual_expires_at
                    ELSE soft_at + to_days(CAST($soft_expiry AS INTEGER)) END AS expires_at,
               reason, category, rule_id, status_code, reply_code, diagnostic, note, event_ids
        FROM combined
        UNION ALL
        -- the verdicts the new rows do not touch keep their folded candidates
        SELECT o.* FROM {_FAST_OLD} o
        ANTI JOIN added a ON a.address = o.address AND a.verdict = o.verdict
        """,
        {
            "first_soft": first_soft,
            "threshold": args[0],
            "window": args[1],
            "soft_expiry": args[2],
            "hard_expiry": args[3],
        },
    )


def _stage_history(store: Store, as_of: datetime | str, args: list[Any]) -> None:
    """The candidates (``_SCOPE_CANDIDATES``), graded evidence and resets of the addresses in
    ``_SCOPE`` (address, key), from all their rows."""
    con = store.con
    if int(_one(store, f"SELECT count(*) FROM {_SCOPE}")[0]) == 0:
        # nothing to read: empty results without a pass over the deliveries
        for table, like in (
            (_SCOPE_CANDIDATES, "suppression_summary"),
            (_SCOPE_EVIDENCE, "suppression_summary_evidence"),
            (_SCOPE_RESETS, "suppression_summary_resets"),
        ):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {like} LIMIT 0")
        return
    # their delivery rows: every raw recipient that may normalise to one of them (0010's
    # suppression_scoped_resets says why lower(recipient) = key finds them)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_SCOPE_DELIVERIES} AS
        SELECT rowid AS row_id, {_DELIVERY_COLUMNS}
        FROM delivery_log
        WHERE recipient IS NOT NULL
          AND (lower(recipient) IN (SELECT key FROM {_SCOPE})
               OR recipient IN (SELECT n.raw FROM suppression_addresses n
                                SEMI JOIN {_SCOPE} s ON s.address = n.address))
        """
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_SCOPE_RESETS} AS SELECT * FROM "
        f"suppression_scoped_resets(CAST(? AS TIMESTAMPTZ), '{_SCOPE_DELIVERIES}', '{_SCOPE}')",
        [as_of],
    )
    with _setting(store, "preserve_insertion_order", "true"):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_SCOPE_EVIDENCE} AS "
            "SELECT * FROM suppression_scoped_evidence(CAST(? AS TIMESTAMPTZ), ?, ?, ?, "
            f"'{_SCOPE_DELIVERIES}', '{_SCOPE}', '{_SCOPE_RESETS}') ORDER BY occurred_at, event_id",
            [as_of, *args[4:]],
        )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {_SCOPE_EVIDENCE_SEQ} AS "
        f"SELECT *, rowid AS seq FROM {_SCOPE_EVIDENCE}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_SCOPE_CANDIDATES} AS "
        f"SELECT * FROM suppression_candidates(?, ?, ?, ?, '{_SCOPE_EVIDENCE_SEQ}')",
        args[:4],
    )


def _drop_scope(store: Store) -> None:
    con = store.con
    for view in (_CANDIDATES, _SCOPE_EVIDENCE_SEQ, _APPEND_EVIDENCE_SEQ):
        con.execute(f"DROP VIEW IF EXISTS {view}")
    for table in (_T, _F, _NEW_FINALS, _NEW, _EXPIRED, _RECOMPUTE_RAWS, _SCOPE,
                  _SCOPE_DELIVERIES, _SCOPE_RESETS, _SCOPE_EVIDENCE, _SCOPE_CANDIDATES, _APPEND,
                  _APPEND_RESETS, _APPEND_EVIDENCE, _APPEND_CANDIDATES, _CLEARED,
                  _CLEARED_CANDIDATES, _FAST, _FAST_NEW, _FAST_OLD,
                  _FAST_CANDIDATES):  # fmt: skip
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _max_evidence_at(store: Store, state: SummaryState | None) -> datetime | None:
    """The latest event time among the rows past ``state``'s watermarks (all rows: None)."""
    w = state or SummaryState(
        policy="",
        delivery_rows=0,
        bounce_report_rows=0,
        bounce_recipient_rows=0,
        complaint_rows=0,
        manual_id=0,
        max_evidence_at=None,
    )
    rows = store.con.execute(
        """
        SELECT greatest(
            (SELECT max(logged_at) FROM delivery_log WHERE rowid >= $deliveries),
            (SELECT max(coalesce(c.last_attempt_date, r.report_date, r.arrival_date,
                                 r.ingested_at))
             FROM bounce_recipients c JOIN bounce_reports r USING (report_hash)
             WHERE c.rowid >= $recipients OR r.rowid >= $reports),
            (SELECT max(coalesce(q.arrival_date, r.report_date, r.ingested_at))
             FROM complaint_reports q JOIN bounce_reports r USING (report_hash)
             WHERE q.rowid >= $complaints OR r.rowid >= $reports),
            (SELECT max(occurred_at) FROM suppression_manual WHERE id > $manual),
            CAST($before AS TIMESTAMPTZ))
        """,
        {
            "deliveries": w.delivery_rows,
            "reports": w.bounce_report_rows,
            "recipients": w.bounce_recipient_rows,
            "complaints": w.complaint_rows,
            "manual": w.manual_id,
            "before": w.max_evidence_at,
        },
    ).fetchall()
    return rows[0][0] if rows else None


def refresh_suppression_summary(store: Store, policy: SuppressionsConfig) -> SummaryRefresh:
    """Fold the rows added since the last refresh into the summary (0010), in one transaction.
    Idempotent, and cheap when nothing is new (a few counts and a comparison of the expired
    messages). The first call, a call with another policy than the summary's, or one after
    rows were deleted from a source table rebuilds the summary from every row. Call it from a
    read-write process after its writes (ingest, bounces ingest, the daemon's write window);
    readers never need it to be current (see evaluated_decisions)."""
    if store.read_only:
        raise SuppressionError("the store is open read-only")
    args = policy_args(policy)
    key = _policy_key(policy)
    con = store.con
    with store.transaction():
        try:
            state = summary_state(store)
            sources = _sources(store)
            full = state is None or state.policy != key or not _covers(state, sources)
            combined = 0
            if full:
                max_at = _max_evidence_at(store, None)
                recomputed = _rebuild(store, args)
                new_deliveries = sources.delivery_rows
            else:
                assert state is not None
                max_at = _max_evidence_at(store, state)
                if not _nothing_new(store, state, sources):
                    recomputed, combined = _fold(store, args, state)
                else:
                    recomputed = 0
                new_deliveries = sources.delivery_rows - state.delivery_rows
            # suppression_addresses is small (only addresses SQL cannot normalise): copied whole
            con.execute("DELETE FROM suppression_summary_addresses")
            con.execute(
                "INSERT INTO suppression_summary_addresses "
                "SELECT raw, address, problem FROM suppression_addresses"
            )
            con.execute("DELETE FROM suppression_summary_state")
            con.execute(
                "INSERT INTO suppression_summary_state VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                [key, sources.delivery_rows, sources.bounce_report_rows,
                 sources.bounce_recipient_rows, sources.complaint_rows, sources.manual_id,
                 max_at],
            )  # fmt: skip
            candidates = int(_one(store, "SELECT count(*) FROM suppression_summary")[0])
        finally:
            _drop_scope(store)
            _drop_staged(store)
    return SummaryRefresh(
        full=full,
        new_deliveries=new_deliveries,
        addresses=recomputed,
        candidates=candidates,
        combined=combined,
    )


def _rebuild(store: Store, args: list[Any]) -> int:
    """The summary from every row (0009's stages, with as_of = infinity)."""
    con = store.con
    for table in ("suppression_summary", "suppression_summary_evidence",
                  "suppression_summary_resets", "suppression_summary_expired"):  # fmt: skip
        con.execute(f"DELETE FROM {table}")
    _stage_evidence(store, _ALL, args, keep_successes=True)
    con.execute(
        f"""
        INSERT INTO suppression_summary_resets
        SELECT coalesce(s.address, r.address), s.success_at, r.removed_at
        FROM {_STAGE_SUCCESSES} s
        FULL OUTER JOIN (
            SELECT suppression_usable_address(m.address, n.address, n.problem) AS address,
                   max(m.occurred_at) AS removed_at
            FROM suppression_manual m
            LEFT JOIN suppression_addresses n ON n.raw = m.address
            WHERE m.action = 'remove'
              AND suppression_usable_address(m.address, n.address, n.problem) IS NOT NULL
            GROUP BY ALL) r ON r.address = s.address
        """
    )
    con.execute(f"DROP TABLE {_STAGE_SUCCESSES}")
    con.execute(
        f"INSERT INTO suppression_summary_evidence BY NAME "
        f"SELECT {_EVIDENCE_COLUMNS} FROM {_STAGE_EVIDENCE}"
    )
    con.execute(
        "INSERT INTO suppression_summary BY NAME SELECT * FROM "
        f"suppression_candidates(?, ?, ?, ?, '{_STAGE_EVIDENCE_SEQ}')",
        args[:4],
    )
    _drop_staged(store)
    con.execute(
        "INSERT INTO suppression_summary_expired SELECT message_key, expired_at "
        "FROM message_log WHERE expired_at IS NOT NULL"
    )
    return int(_one(store, "SELECT count(DISTINCT address) FROM suppression_summary")[0])


def _nothing_new(store: Store, state: SummaryState, sources: _Sources) -> bool:
    """No row past the watermarks, no change of expiry or normalisation: nothing to fold."""
    if (
        sources.delivery_rows,
        sources.bounce_report_rows,
        sources.bounce_recipient_rows,
        sources.complaint_rows,
        sources.manual_id,
    ) != (
        state.delivery_rows,
        state.bounce_report_rows,
        state.bounce_recipient_rows,
        state.complaint_rows,
        state.manual_id,
    ):
        return False
    changed = _one(
        store,
        """
        SELECT EXISTS (SELECT message_key, expired_at FROM message_log WHERE expired_at IS NOT NULL
                       EXCEPT SELECT message_key, expired_at FROM suppression_summary_expired)
            OR EXISTS (SELECT message_key, expired_at FROM suppression_summary_expired
                       EXCEPT SELECT message_key, expired_at FROM message_log
                              WHERE expired_at IS NOT NULL)
            OR EXISTS (SELECT raw, address, problem FROM suppression_addresses
                       EXCEPT SELECT raw, address, problem FROM suppression_summary_addresses)
            OR EXISTS (SELECT raw, address, problem FROM suppression_summary_addresses
                       EXCEPT SELECT raw, address, problem FROM suppression_addresses)
        """,
    )[0]
    return not changed


def _fold(store: Store, args: list[Any], state: SummaryState) -> tuple[int, int]:
    """Fold the rows past the watermarks into the summary tables; returns how many addresses
    were evaluated again, and how many of them by combining (_stage_fast)."""
    con = store.con
    scope, append, fast = _stage_delta(store, _ALL, args, state=state)
    if scope or append or fast:
        con.execute(
            "DELETE FROM suppression_summary "
            f"WHERE address IN (SELECT address FROM {_SCOPE}) "
            f"OR address IN (SELECT address FROM {_APPEND}) "
            f"OR address IN (SELECT address FROM {_CLEARED}) "
            f"OR address IN (SELECT address FROM {_FAST})"
        )
        for table in (_SCOPE_CANDIDATES, _APPEND_CANDIDATES, _CLEARED_CANDIDATES,
                      _FAST_CANDIDATES):  # fmt: skip
            con.execute(f"INSERT INTO suppression_summary BY NAME SELECT * FROM {table}")
    if scope:
        con.execute(
            "DELETE FROM suppression_summary_evidence "
            f"WHERE address IN (SELECT address FROM {_SCOPE})"
        )
        con.execute(
            "INSERT INTO suppression_summary_evidence BY NAME "
            f"SELECT {_EVIDENCE_COLUMNS} FROM {_SCOPE_EVIDENCE}"
        )
    con.execute(
        "INSERT INTO suppression_summary_evidence BY NAME "
        f"SELECT {_EVIDENCE_COLUMNS} FROM {_NEW} "
        "WHERE verdict NOT IN ('success', 'manual_remove') "
        f"AND address NOT IN (SELECT address FROM {_SCOPE})"
    )
    # the latest success and remove: read again for the scope, max() with the new for the rest
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_APPEND_RESETS} AS
        SELECT address, success_at, removed_at FROM {_SCOPE_RESETS}
        UNION ALL
        SELECT n.address, greatest(w.success_at, n.success_at),
               greatest(w.removed_at, n.removed_at)
        FROM (SELECT address,
                     max(occurred_at) FILTER (WHERE verdict = 'success') AS success_at,
                     max(occurred_at) FILTER (WHERE verdict = 'manual_remove') AS removed_at
              FROM {_NEW}
              WHERE verdict IN ('success', 'manual_remove')
                AND address NOT IN (SELECT address FROM {_SCOPE})
              GROUP BY address) n
        LEFT JOIN suppression_summary_resets w ON w.address = n.address
        """
    )
    con.execute(
        "DELETE FROM suppression_summary_resets "
        f"WHERE address IN (SELECT address FROM {_SCOPE}) "
        f"OR address IN (SELECT address FROM {_APPEND_RESETS})"
    )
    con.execute(f"INSERT INTO suppression_summary_resets SELECT * FROM {_APPEND_RESETS}")
    con.execute(
        "DELETE FROM suppression_summary_expired "
        f"WHERE message_key IN (SELECT message_key FROM {_EXPIRED})"
    )
    con.execute(
        "INSERT INTO suppression_summary_expired SELECT message_key, expired_at "
        "FROM message_log WHERE expired_at IS NOT NULL "
        f"AND message_key IN (SELECT message_key FROM {_EXPIRED})"
    )
    return scope + append + fast, fast


def summary_usable(store: Store, policy: SuppressionsConfig) -> bool:
    """Whether evaluated_decisions() can start from the summary: it was built with this
    policy and the sources were only appended to since (as_of need not be after the folded
    evidence: addresses with later events are evaluated again from their rows)."""
    state = summary_state(store)
    return (
        state is not None
        and state.policy == _policy_key(policy)
        and _covers(state, _sources(store))
    )


@contextmanager
def evaluated_decisions(
    store: Store, policy: SuppressionsConfig, *, now: datetime
) -> Iterator[tuple[str, list[Any]]]:
    """The policy's decisions as of ``now``; yields SQL and parameters that select the rows of
    ``DECISIONS_SQL`` (valid inside the ``with`` block only). From the summary plus the rows
    past its watermarks when it can be used (summary_usable), else by the staged evaluation
    (0009) of every row. Works on a read-only store (temp tables only)."""
    state = summary_state(store) if summary_usable(store, policy) else None
    if state is None:
        with staged_decisions(store, policy, now=now) as staged:
            yield staged
        return
    try:
        _stage_delta(store, now, policy_args(policy), state=state)
        yield PICK_SQL, [now]
    finally:
        _drop_scope(store)


@contextmanager
def address_decisions(
    store: Store, policy: SuppressionsConfig, addresses: list[str], *, now: datetime
) -> Iterator[tuple[str, list[Any]]]:
    """The decisions about ``addresses`` (normalised forms) only, computed from their own
    rows (one pass over the deliveries, no summary needed; what ``explain`` shows); yields SQL
    and parameters like evaluated_decisions()."""
    con = store.con
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_SCOPE} AS SELECT DISTINCT address, "
            "lower(address) AS key FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS address)",
            [addresses],
        )
        _stage_history(store, now, policy_args(policy))
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {_CANDIDATES} AS SELECT * FROM {_SCOPE_CANDIDATES}"
        )
        yield PICK_SQL, [now]
    finally:
        _drop_scope(store)


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppression:
    """The policy's decision about one address (suppressed or not, and why)."""

    address: str
    domain: str
    suppressed: bool
    kind: str | None  # complaint | hard | manual | soft
    reason: str | None
    category: str | None
    rule_id: str | None  # classification rule of the latest evidence
    policy_rule: str | None
    first_evidence: datetime | None
    last_evidence: datetime | None
    evidence_count: int | None
    suppressed_at: datetime | None
    expires_at: datetime | None
    event_ids: tuple[str, ...]
    status_code: str | None
    reply_code: int | None
    diagnostic: str | None
    note: str | None
    role: bool
    never_entry: str | None
    not_suppressed_because: str | None


_SUPPRESSION_FIELDS: Final = tuple(f.name for f in fields(Suppression))
LIST_COLUMNS: Final = (
    "address", "kind", "reason", "category", "rule_id", "first_evidence", "last_evidence",
    "evidence_count", "expires_at", "role",
)  # fmt: skip


def decisions_frame(
    store: Store, policy: SuppressionsConfig, *, now: datetime, suppressed_only: bool = True
) -> pl.DataFrame:
    with evaluated_decisions(store, policy, now=now) as (staged, params):
        table = _stream(store, staged + " ORDER BY address", params)
    if suppressed_only:
        table = table.filter(table["suppressed"])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def one_query_decisions_frame(
    store: Store, policy: SuppressionsConfig, *, now: datetime, suppressed_only: bool = True
) -> pl.DataFrame:
    """``decisions_frame`` by the one-query macro (what notebooks and ad hoc SQL use)."""
    sql = DECISIONS_SQL + (" WHERE suppressed" if suppressed_only else "") + " ORDER BY address"
    table = store.con.sql(sql, params=[now, *policy_args(policy)]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _to_suppression(record: dict[str, Any]) -> Suppression:
    values: dict[str, Any] = {k: record.get(k) for k in _SUPPRESSION_FIELDS}
    values["event_ids"] = tuple(record.get("event_ids") or ())
    return Suppression(**values)


def list_suppressions(
    store: Store,
    policy: SuppressionsConfig,
    *,
    now: datetime,
    include_all: bool = False,
    limit: int | None = None,
) -> list[Suppression]:
    """Suppressed addresses (``include_all``: every address with evidence), sorted."""
    with evaluated_decisions(store, policy, now=now) as (staged, params):
        table = _stream(store, staged + " ORDER BY address", params)
    if not include_all:
        table = table.filter(table["suppressed"])
    if limit is not None:
        table = table.slice(0, limit)
    return [_to_suppression(r) for r in table.to_pylist()]


def _stream(store: Store, sql: str, params: list[Any]) -> pa.Table:
    """The result of ``sql`` read in batches: DuckDB's own copy of a materialised result (a
    million decisions with their event ids) counts against its memory limit and cannot spill
    (measured: out of memory at 1 GB, where streaming needs no more than the query). Callers
    filter the decisions afterwards: a WHERE on `suppressed` turns the pick's outer join into
    an inner one whose hash table holds the wide candidate rows (out of memory at 1 GB too)."""
    reader = store.con.sql(sql, params=params).to_arrow_reader(100_000)
    return pa.Table.from_batches(list(reader), schema=reader.schema)


@contextmanager
def decision_batches(
    store: Store,
    policy: SuppressionsConfig,
    *,
    now: datetime,
    suppressed_only: bool = True,
    rows: int = 100_000,
) -> Iterator[Iterator[pa.RecordBatch]]:
    """The rows of ``decisions_frame``, in address order, as Arrow record batches of at most
    ``rows`` rows, read from DuckDB while the caller consumes them (exports write each batch
    and let it go: a million decisions are never all in Python at once). At least one batch
    (maybe empty) comes out, so a consumer always sees the schema. Valid inside the ``with``
    block only; the connection runs no other query until the batches are read or the block
    ends. Filtered on ``suppressed`` batch by batch, not in SQL (see ``_stream``)."""
    with evaluated_decisions(store, policy, now=now) as (sql, params):
        reader = store.con.sql(sql + " ORDER BY address", params=params).to_arrow_reader(rows)

        def batches() -> Iterator[pa.RecordBatch]:
            empty = True
            for batch in reader:
                if suppressed_only:
                    batch = batch.filter(batch.column("suppressed"))
                empty = False
                yield batch
            if empty:
                yield pa.RecordBatch.from_pylist([], schema=reader.schema)

        try:
            yield batches()
        finally:
            reader.close()


def suppressions_table(items: list[Suppression], columns: tuple[str, ...] = LIST_COLUMNS) -> Table:
    rows = [
        tuple(",".join(v) if isinstance(v := getattr(s, c), tuple) else v for c in columns)
        for s in items
    ]
    return Table("suppressions", list(columns), rows)


def sender_side_problems(
    store: Store, policy: SuppressionsConfig, *, now: datetime, since: datetime
) -> Table:
    cur = store.con.execute(
        "SELECT * FROM sender_side_problems(?, ?, ?, ?) ORDER BY failures DESC, reason",
        [
            now,
            since,
            list(policy.sender_side_reasons),
            [p.lower() for p in policy.local_network_phrases],
        ],
    )
    return Table("sender_side_problems", [d[0] for d in cur.description or []], cur.fetchall())


def invalid_addresses(store: Store, *, now: datetime) -> Table:
    cur = store.con.execute("SELECT * FROM suppression_invalid(?) ORDER BY raw_address", [now])
    return Table("invalid_addresses", [d[0] for d in cur.description or []], cur.fetchall())


# --- explain ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    event_id: str
    source: str
    occurred_at: datetime
    verdict: str
    reason: str | None
    category: str | None
    rule_id: str | None
    status_code: str | None
    reply_code: int | None
    diagnostic: str | None
    note: str | None
    raw_address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    query: str
    address: str | None
    problem: str | None
    decision: Suppression | None
    events: tuple[Evidence, ...]


def explain(
    store: Store, policy: SuppressionsConfig, address: str, *, now: datetime
) -> Explanation:
    """The decision about one address and every event behind it, oldest first."""
    norm = normalize_address(address)
    key = norm.address
    decision = None if key is None else _decision(store, policy, key, now=now)
    cur = store.con.execute(
        "SELECT event_id, source, occurred_at, verdict, reason, category, rule_id, status_code,"
        " reply_code, diagnostic, note, raw_address "
        "FROM suppression_verdicts(?, ?, ?, ?) WHERE address = ? OR raw_address = ? "
        "ORDER BY occurred_at, event_id",
        [
            now,
            list(policy.hard_reasons),
            list(policy.sender_side_reasons),
            [p.lower() for p in policy.local_network_phrases],
            key,
            address,
        ],
    )
    cols = [d[0] for d in cur.description or []]
    events = tuple(Evidence(**dict(zip(cols, r, strict=True))) for r in cur.fetchall())
    return Explanation(
        query=address, address=key, problem=norm.problem, decision=decision, events=events
    )


def _decision(
    store: Store, policy: SuppressionsConfig, key: str, *, now: datetime
) -> Suppression | None:
    """The decision about one normalised address (None: no evidence about it at all)."""
    with address_decisions(store, policy, [key], now=now) as (sql, params):
        cur = store.con.execute(sql + " WHERE address = ?", [*params, key])
        cols = [d[0] for d in cur.description or []]
        found = cur.fetchall()
    return _to_suppression(dict(zip(cols, found[0], strict=True))) if found else None


def explanation_tables(e: Explanation) -> list[Table]:
    head: list[tuple[Any, ...]] = [("query", e.query), ("address", e.address)]
    if e.problem:
        head.append(("problem", e.problem))
    d = e.decision
    if d is None:
        head.append(("suppressed", False))
        head.append(("why", "no evidence against this address"))
    else:
        for name in _SUPPRESSION_FIELDS:
            if name in ("address", "event_ids"):
                continue
            head.append((name, getattr(d, name)))
        head.append(("event_ids", " ".join(d.event_ids)))
    evidence = Table(
        "evidence",
        [f.name for f in fields(Evidence)],
        [tuple(getattr(ev, f.name) for f in fields(Evidence)) for ev in e.events],
    )
    return [Table("decision", ["field", "value"], head), evidence]


# --- manual decisions ------------------------------------------------------------------------


def _key(store: Store, address: str) -> str:
    """The normal form of an address given to a manual decision (the store must be writable)."""
    if store.read_only:
        raise SuppressionError("the store is open read-only")
    norm = normalize_address(address)
    if norm.address is None:
        raise SuppressionError(f"{address!r} is not a usable address: {norm.problem}")
    return norm.address


def _require_address(store: Store, address: str, now: datetime) -> str:
    key = _key(store, address)
    if not _SIMPLE.fullmatch(key):
        # the SQL fast path will not recognise it: record its normal form as its own raw form
        _remember(store, [NormalizedAddress(raw=key, address=key, problem=None)], now)
    return key


def add(
    store: Store,
    address: str,
    *,
    now: datetime,
    note: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Suppress ``address`` from ``now`` until ``expires_at`` (None: until removed); returns
    the normalised form."""
    if expires_at is not None and expires_at <= now:
        raise SuppressionError(f"the expiry ({expires_at.isoformat()}) must be after now")
    key = _require_address(store, address, now)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO suppression_manual (address, action, note, occurred_at, expires_at) "
            "VALUES (?, 'add', ?, ?, ?)",
            [key, note, now, expires_at],
        )
    return key


def remove(store: Store, address: str, *, now: datetime, note: str | None = None) -> str:
    """Set aside every piece of evidence about ``address`` up to ``now``, whether or not it is
    suppressed (see :func:`lift`); returns the normalised form."""
    key = _require_address(store, address, now)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO suppression_manual (address, action, note, occurred_at) "
            "VALUES (?, 'remove', ?, ?)",
            [key, note, now],
        )
    return key


def lift(
    store: Store,
    policy: SuppressionsConfig,
    address: str,
    *,
    now: datetime,
    note: str | None = None,
) -> Suppression:
    """Lift the suppression of ``address`` (`suppressions remove`): its evidence up to ``now``
    is set aside (:func:`remove`). Returns the decision that was lifted. An address the policy
    does not suppress as of ``now`` raises :class:`NotListedError` and nothing is recorded: a
    remove would then only hide evidence that has not suppressed anything (yet)."""
    key = _key(store, address)
    decision = _decision(store, policy, key, now=now)
    if decision is None or not decision.suppressed:
        why = "no evidence against it" if decision is None else decision.not_suppressed_because
        spelt = "" if key == address else f" (as {key})"
        raise NotListedError(
            f"{address}{spelt} is not on the suppression list ({why or 'not suppressed'}); "
            "nothing recorded"
        )
    remove(store, key, now=now, note=note)
    return decision


def never_key(entry: str) -> str:
    """The normal form of a never-suppress entry: an address (as :func:`normalize_address`), or
    ``@domain`` for a whole domain (its domain part normalised alike)."""
    if entry.startswith("@"):
        norm = normalize_address("x" + entry)
        if norm.address is None:
            raise SuppressionError(f"{entry!r} is not a usable domain: {norm.problem}")
        return "@" + norm.address.partition("@")[2]
    norm = normalize_address(entry)
    if norm.address is None:
        raise SuppressionError(f"{entry!r} is not a usable address: {norm.problem}")
    return norm.address


def never_add(store: Store, entry: str, *, now: datetime, note: str | None = None) -> str:
    """Never suppress ``entry``: an address, or ``@domain`` for a whole domain."""
    if store.read_only:
        raise SuppressionError("the store is open read-only")
    key = never_key(entry)
    if not key.startswith("@"):
        key = _require_address(store, key, now)
    with store.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO suppression_never (entry, note, added_at) VALUES (?, ?, ?)",
            [key, note, now],
        )
    return key


def never_remove(store: Store, entry: str) -> bool:
    """Take ``entry`` off the never-suppress list; False if it was not there."""
    if store.read_only:
        raise SuppressionError("the store is open read-only")
    key = never_key(entry)
    with store.transaction() as con:
        gone = con.execute(
            "DELETE FROM suppression_never WHERE entry = ? RETURNING entry", [key]
        ).fetchall()
    return bool(gone)


def never_list(store: Store) -> Table:
    cur = store.con.execute("SELECT entry, note, added_at FROM suppression_never ORDER BY entry")
    return Table("never_suppress", [d[0] for d in cur.description or []], cur.fetchall())
