"""Suppression lists: which addresses to stop mailing, and why.

The policy is evaluated in the store by the table macros of ``pipeline/sql/0004_suppressions.sql``
(``suppression_decisions``, ``sender_side_problems``, ``suppression_invalid``; since 0009 the
decisions are computed in stages, see ``staged_decisions``), so the CLI, the exporters
(pipeline/exports.py) and notebooks share one definition; this module passes them the
parameters from ``[suppressions]`` (pipeline/config.py) and a clock value, normalises the
addresses SQL cannot, and records manual decisions.

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
RFC 2142 role addresses are flagged (``role``). Addresses are normalised: domain lower-cased and
IDNA-encoded (RFC 5891, UTS #46 mapping), local part kept as is (RFC 5321 section 2.4);
unusable ones are reported by ``invalid_addresses`` and never exported.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

import idna
import polars as pl

from pipeline.config import SuppressionsConfig
from pipeline.reports import Table
from pipeline.store import Store


class SuppressionError(ValueError):
    """A request the policy cannot carry out (an unusable address, a read-only store)."""


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
        local, _, domain = text.partition("@")
        return NormalizedAddress(raw=raw, address=f"{local}@{domain.lower()}", problem=None)
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


def _finish(raw: str, local: str, domain: str) -> NormalizedAddress:
    def bad(problem: str) -> NormalizedAddress:
        return NormalizedAddress(raw=raw, address=None, problem=problem)

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


def refresh_addresses(store: Store, *, now: datetime) -> int:
    """Normalise, in Python, raw addresses the SQL fast path leaves alone; returns how many."""
    rows = store.con.execute(
        "SELECT DISTINCT raw FROM suppression_raw_addresses r "
        "WHERE raw IS NOT NULL AND suppression_simple_address(raw) IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM suppression_addresses n WHERE n.raw = r.raw)"
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


def prepare(store: Store, *, now: datetime) -> int:
    """Bring address normalisation up to date when the store is writable; returns how many
    raw addresses are still waiting (they count as invalid until normalised)."""
    if not store.read_only:
        # everything waiting is normalised and stored now (one scan of all raw addresses,
        # 3.6 s at 10 M deliveries: not a second one to count what is left)
        refresh_addresses(store, now=now)
        return 0
    row = store.con.execute(
        "SELECT count(DISTINCT raw) FROM suppression_raw_addresses r "
        "WHERE raw IS NOT NULL AND suppression_simple_address(raw) IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM suppression_addresses n WHERE n.raw = r.raw)"
    ).fetchall()
    return int(row[0][0]) if row else 0


# --- the policy ------------------------------------------------------------------------------


def _args(policy: SuppressionsConfig) -> list[Any]:
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
# The straightforward definition (0004), kept as the specification the fast one is checked
# against (tests/test_suppressions_fast.py) and as the benchmark's baseline.
REFERENCE_SQL: Final = "SELECT * FROM suppression_decisions_reference(?, ?, ?, ?, ?, ?, ?, ?)"

# The staged evaluation (0009): each stage materialised in a temp table of this connection
# (temp tables work on a read-only store too, and DuckDB spills them under memory pressure).
_STAGE_IDS: Final = "mtalens_suppression_final_ids"
_STAGE_SUCCESSES: Final = "mtalens_suppression_successes"
_STAGE_EVIDENCE: Final = "mtalens_suppression_evidence"
_STAGE_EVIDENCE_SEQ: Final = "mtalens_suppression_evidence_seq"
STAGED_SQL: Final = f"SELECT * FROM suppression_decide(?, ?, ?, ?, ?, '{_STAGE_EVIDENCE_SEQ}')"


@contextmanager
def _setting(store: Store, name: str, value: str) -> Iterator[None]:
    """Run the body with DuckDB setting ``name`` at ``value``, then put it back."""
    row = store.con.execute("SELECT current_setting(?)", [name]).fetchone()
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
    con = store.con
    args = _args(policy)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_STAGE_IDS} AS "
            "SELECT * FROM suppression_final_failure_ids(?)",
            [now],
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_STAGE_SUCCESSES} AS "
            "SELECT * FROM suppression_latest_successes(?)",
            [now],
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
                "SELECT * FROM suppression_graded_evidence(?, ?, ?, ?, "
                f"'{_STAGE_IDS}', '{_STAGE_SUCCESSES}') ORDER BY occurred_at, event_id",
                [now, *args[4:]],
            )
        con.execute(f"DROP TABLE {_STAGE_IDS}")
        con.execute(f"DROP TABLE {_STAGE_SUCCESSES}")
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {_STAGE_EVIDENCE_SEQ} AS "
            f"SELECT *, rowid AS seq FROM {_STAGE_EVIDENCE}"
        )
        yield STAGED_SQL, [now, *args[:4]]
    finally:
        con.execute(f"DROP VIEW IF EXISTS {_STAGE_EVIDENCE_SEQ}")
        for table in (_STAGE_EVIDENCE, _STAGE_SUCCESSES, _STAGE_IDS):
            con.execute(f"DROP TABLE IF EXISTS {table}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _also_disabled(store: Store, optimizer: str) -> str:
    row = store.con.execute("SELECT current_setting('disabled_optimizers')").fetchone()
    current = [o.strip() for o in str(row[0] if row and row[0] else "").split(",") if o.strip()]
    return ",".join([*current, optimizer] if optimizer not in current else current)


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
    with staged_decisions(store, policy, now=now) as (staged, params):
        sql = staged + (" WHERE suppressed" if suppressed_only else "") + " ORDER BY address"
        table = store.con.sql(sql, params=params).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def one_query_decisions_frame(
    store: Store, policy: SuppressionsConfig, *, now: datetime, suppressed_only: bool = True
) -> pl.DataFrame:
    """``decisions_frame`` by the one-query macro (what notebooks and ad hoc SQL use)."""
    sql = DECISIONS_SQL + (" WHERE suppressed" if suppressed_only else "") + " ORDER BY address"
    table = store.con.sql(sql, params=[now, *_args(policy)]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def reference_decisions_frame(
    store: Store, policy: SuppressionsConfig, *, now: datetime, suppressed_only: bool = True
) -> pl.DataFrame:
    """``decisions_frame`` by the straightforward definition (slow; for tests and the bench)."""
    sql = REFERENCE_SQL + (" WHERE suppressed" if suppressed_only else "") + " ORDER BY address"
    table = store.con.sql(sql, params=[now, *_args(policy)]).to_arrow_table()
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
    with staged_decisions(store, policy, now=now) as (staged, params):
        sql = staged + ("" if include_all else " WHERE suppressed") + " ORDER BY address"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = store.con.execute(sql, params)
        cols = [d[0] for d in cur.description or []]
        rows = cur.fetchall()
    return [_to_suppression(dict(zip(cols, r, strict=True))) for r in rows]


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
    decision = None
    if key is not None:
        cur = store.con.execute(DECISIONS_SQL + " WHERE address = ?", [now, *_args(policy), key])
        cols = [d[0] for d in cur.description or []]
        found = cur.fetchall()
        if found:
            decision = _to_suppression(dict(zip(cols, found[0], strict=True)))
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


def _require_address(store: Store, address: str, now: datetime) -> str:
    if store.read_only:
        raise SuppressionError("the store is open read-only")
    norm = normalize_address(address)
    if norm.address is None:
        raise SuppressionError(f"{address!r} is not a usable address: {norm.problem}")
    if not _SIMPLE.fullmatch(norm.address):
        # the SQL fast path will not recognise it: record its normal form as its own raw form
        _remember(
            store, [NormalizedAddress(raw=norm.address, address=norm.address, problem=None)], now
        )
    return norm.address


def add(
    store: Store,
    address: str,
    *,
    now: datetime,
    note: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Suppress ``address`` from ``now`` (until ``expires_at``); returns the normalised form."""
    key = _require_address(store, address, now)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO suppression_manual (address, action, note, occurred_at, expires_at) "
            "VALUES (?, 'add', ?, ?, ?)",
            [key, note, now, expires_at],
        )
    return key


def remove(store: Store, address: str, *, now: datetime, note: str | None = None) -> str:
    """Set aside every piece of evidence about ``address`` up to ``now``."""
    key = _require_address(store, address, now)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO suppression_manual (address, action, note, occurred_at) "
            "VALUES (?, 'remove', ?, ?)",
            [key, note, now],
        )
    return key


def never_add(store: Store, entry: str, *, now: datetime, note: str | None = None) -> str:
    """Never suppress ``entry``: an address, or ``@domain`` for a whole domain."""
    if entry.startswith("@"):
        norm = normalize_address("x" + entry)
        if norm.address is None:
            raise SuppressionError(f"{entry!r} is not a usable domain: {norm.problem}")
        key = "@" + norm.address.partition("@")[2]
    else:
        key = _require_address(store, entry, now)
    if store.read_only:
        raise SuppressionError("the store is open read-only")
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
    if entry.startswith("@"):
        norm = normalize_address("x" + entry)
        key = "@" + (norm.address or entry).partition("@")[2]
    else:
        key = normalize_address(entry).address or entry
    with store.transaction() as con:
        gone = con.execute(
            "DELETE FROM suppression_never WHERE entry = ? RETURNING entry", [key]
        ).fetchall()
    return bool(gone)


def never_list(store: Store) -> Table:
    cur = store.con.execute("SELECT entry, note, added_at FROM suppression_never ORDER BY entry")
    return Table("never_suppress", [d[0] for d in cur.description or []], cur.fetchall())
