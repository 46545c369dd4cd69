-- Suppression policy from a per-address summary kept up to date incrementally (issue 5: the
-- policy over 10 M deliveries and 1 M bounces in < 10 s).
--
-- suppression_summary holds, for every address with evidence, the policy's candidates (one row
-- per address and verdict: complaint, hard, manual_add, soft) with their grounds, computed from
-- every source row up to a watermark (suppression_summary_state); suppression_summary_evidence
-- keeps the graded evidence behind them and suppression_summary_resets each address's latest
-- success and manual remove. A candidate depends on its address's own evidence only, so an
-- address no new row names keeps its rows, and one that new rows name is evaluated again:
--   * from its folded evidence plus the new (pipeline/suppressions.py, _stage_delta) when the
--     new rows only add: new final attempts, DSNs, complaints, manual decisions (the live
--     flags, soft days, details and event ids are all computed again from the full list);
--     one that only got a delivery after all its failures keeps its candidates with nothing
--     standing;
--   * from all its rows (suppression_scoped_evidence) when they change the past: a new attempt
--     replaces a final outcome that was evidence (a later attempt for the same message and
--     recipient); an outcome becomes `expired` because message_log.expired_at was set (0006:
--     message_log rows are rewritten, not appended, so a snapshot of (message_key, expired_at),
--     suppression_summary_expired, is compared with message_log); a new deferral shares the
--     (message, line offset) of a folded one (an expired outcome's attempt_reason reads it);
--     an address normalised in Python (suppression_addresses, compared with its snapshot
--     suppression_summary_addresses) maps a raw text elsewhere; or an event of the address was
--     folded with a time after as_of.
-- Nothing here depends on the clock: candidates are computed with as_of = infinity. For an
-- address whose events (standing or not, successes, manual removes) are all at or before
-- as_of, that is exact (a final attempt is final whatever as_of is; as_of only filters
-- events); an address with a later event (max_event_at, success_at, removed_at) is evaluated
-- again from all its rows. Whether a candidate is still active (its expiry) is decided when
-- the policy is evaluated (suppression_pick). Candidates depend on the policy parameters:
-- `policy` records those the summary was built with. pipeline/suppressions.py evaluates the
-- summary plus the rows past the watermarks (so the result never depends on a refresh having
-- run), and falls back to the staged evaluation of 0009 when the summary cannot be used (never
-- built, another policy, a source table that is not append-only any more).
-- tests/test_suppressions_fast.py checks the result against suppression_decisions_reference.

-- One row (id = 1): what the summary covers. Row counts are watermarks on append-only
-- tables: rows with rowid >= the count are not folded yet.
CREATE TABLE suppression_summary_state (
    id                     INTEGER PRIMARY KEY CHECK (id = 1),
    policy                 VARCHAR NOT NULL,     -- JSON of the policy parameters
    delivery_rows          BIGINT NOT NULL,      -- delivery_log
    bounce_report_rows     BIGINT NOT NULL,      -- bounce_reports
    bounce_recipient_rows  BIGINT NOT NULL,      -- bounce_recipients
    complaint_rows         BIGINT NOT NULL,      -- complaint_reports
    manual_id              BIGINT NOT NULL,      -- suppression_manual.id (a sequence)
    max_evidence_at        TIMESTAMPTZ           -- latest event time folded in
);

-- message_log.expired_at as folded (message_log rows are rewritten while a message is open).
CREATE TABLE suppression_summary_expired (
    message_key  VARCHAR NOT NULL,
    expired_at   TIMESTAMPTZ NOT NULL
);

-- suppression_addresses as folded.
CREATE TABLE suppression_summary_addresses (
    raw      VARCHAR NOT NULL,
    address  VARCHAR,
    problem  VARCHAR
);

-- Every piece of evidence folded in, graded (0009's suppression_graded_evidence without the
-- per-address removed_at, success_at and live, which change as evidence arrives): new evidence
-- about an address is evaluated together with these rows, without reading its history again.
CREATE TABLE suppression_summary_evidence (
    event_id     VARCHAR NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    verdict      VARCHAR NOT NULL,
    reason       VARCHAR,
    category     VARCHAR,
    rule_id      VARCHAR,
    status_code  VARCHAR,
    reply_code   INTEGER,
    diagnostic   VARCHAR,
    expires_at   TIMESTAMPTZ,
    note         VARCHAR,
    address      VARCHAR NOT NULL
);

-- Per address: the latest success and the latest manual remove folded in (maxima: new ones
-- combine with max()).
CREATE TABLE suppression_summary_resets (
    address     VARCHAR NOT NULL,
    success_at  TIMESTAMPTZ,
    removed_at  TIMESTAMPTZ
);

-- The candidates: (address, verdict) is unique by construction. No PRIMARY KEY: an ART index
-- over a million rows costs memory and time at every fold for no check the fold needs.
CREATE TABLE suppression_summary (
    address          VARCHAR NOT NULL,
    verdict          VARCHAR NOT NULL,
    removed_at       TIMESTAMPTZ,
    success_at       TIMESTAMPTZ,
    first_evidence   TIMESTAMPTZ,
    last_evidence    TIMESTAMPTZ,
    evidence_count   BIGINT NOT NULL,
    max_event_at     TIMESTAMPTZ,          -- latest event of the verdict, standing or not
    priority         INTEGER NOT NULL,
    suppressed_at    TIMESTAMPTZ,
    expires_at       TIMESTAMPTZ,
    reason           VARCHAR,
    category         VARCHAR,
    rule_id          VARCHAR,
    status_code      VARCHAR,
    reply_code       INTEGER,
    diagnostic       VARCHAR,
    note             VARCHAR,
    event_ids        VARCHAR[]
);
