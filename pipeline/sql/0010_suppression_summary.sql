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

-- The candidates per address and verdict from `evidence` (a relation shaped like 0009's
-- suppression_graded_evidence plus `seq`, the rank by (occurred_at, event_id)): the first part
-- of 0009's suppression_decide, with the standing event ids of every verdict (the deciding one
-- depends on as_of, so it is picked later).
CREATE MACRO suppression_candidates(soft_threshold, soft_window_days, soft_expiry_days,
                                    hard_expiry_days, evidence) AS TABLE
WITH graded AS NOT MATERIALIZED (
    SELECT * FROM query_table(evidence)
),
soft_days AS (
    -- soft failures count once per address and UTC day (as GNU Mailman's bounce score does)
    SELECT address, date_trunc('day', occurred_at) AS day, max(occurred_at) AS last_at
    FROM graded WHERE live AND verdict = 'soft' GROUP BY ALL
),
soft_trigger AS (
    SELECT address, max(last_at) AS triggered_at
    FROM (SELECT address, last_at, count(*) OVER (
              PARTITION BY address ORDER BY day
              RANGE BETWEEN to_days(CAST(soft_window_days AS INTEGER) - 1) PRECEDING AND CURRENT ROW) AS n
          FROM soft_days)
    WHERE n >= soft_threshold
    GROUP BY address
),
summary AS (
    SELECT address, verdict,
           max(removed_at) AS removed_at, max(success_at) AS success_at,
           min(occurred_at) FILTER (WHERE live) AS first_evidence,
           max(occurred_at) FILTER (WHERE live) AS last_evidence,
           count(*) FILTER (WHERE live) AS evidence_count,
           max(occurred_at) AS max_event_at,
           max(seq) FILTER (WHERE live AND reason IS NOT NULL) AS seq_reason,
           max(seq) FILTER (WHERE live AND category IS NOT NULL) AS seq_category,
           max(seq) FILTER (WHERE live AND rule_id IS NOT NULL) AS seq_rule_id,
           max(seq) FILTER (WHERE live AND status_code IS NOT NULL) AS seq_status_code,
           max(seq) FILTER (WHERE live AND reply_code IS NOT NULL) AS seq_reply_code,
           max(seq) FILTER (WHERE live AND diagnostic IS NOT NULL) AS seq_diagnostic,
           max(seq) FILTER (WHERE live AND expires_at IS NOT NULL) AS seq_expires_at,
           max(seq) FILTER (WHERE live AND note IS NOT NULL) AS seq_note
    FROM graded GROUP BY address, verdict
),
picked AS (
    SELECT seq, reason, category, rule_id, status_code, reply_code, diagnostic, expires_at, note
    FROM graded
    WHERE seq IN (SELECT unnest([seq_reason, seq_category, seq_rule_id, seq_status_code,
                                 seq_reply_code, seq_diagnostic, seq_expires_at, seq_note])
                  FROM summary)
),
ids AS (
    SELECT address, verdict,
           list_transform(list_sort(list({'s': seq, 'id': event_id})), lambda r: r.id) AS event_ids
    FROM graded WHERE live GROUP BY address, verdict
)
SELECT g.address, g.verdict, g.removed_at, g.success_at, g.first_evidence, g.last_evidence,
       g.evidence_count, g.max_event_at,
       CASE g.verdict WHEN 'complaint' THEN 1 WHEN 'hard' THEN 2 WHEN 'manual_add' THEN 3 ELSE 4 END AS priority,
       CASE g.verdict WHEN 'soft' THEN t.triggered_at ELSE g.first_evidence END AS suppressed_at,
       CASE g.verdict
            WHEN 'complaint' THEN NULL
            WHEN 'hard' THEN CASE WHEN hard_expiry_days > 0
                                  THEN g.last_evidence + to_days(CAST(hard_expiry_days AS INTEGER)) END
            WHEN 'manual_add' THEN p_expires_at.expires_at
            ELSE t.triggered_at + to_days(CAST(soft_expiry_days AS INTEGER)) END AS expires_at,
       p_reason.reason, p_category.category, p_rule_id.rule_id,
       p_status_code.status_code, p_reply_code.reply_code, p_diagnostic.diagnostic,
       p_note.note, i.event_ids
FROM summary g
LEFT JOIN soft_trigger t ON g.verdict = 'soft' AND t.address = g.address
LEFT JOIN picked p_reason ON p_reason.seq = g.seq_reason
LEFT JOIN picked p_category ON p_category.seq = g.seq_category
LEFT JOIN picked p_rule_id ON p_rule_id.seq = g.seq_rule_id
LEFT JOIN picked p_status_code ON p_status_code.seq = g.seq_status_code
LEFT JOIN picked p_reply_code ON p_reply_code.seq = g.seq_reply_code
LEFT JOIN picked p_diagnostic ON p_diagnostic.seq = g.seq_diagnostic
LEFT JOIN picked p_expires_at ON p_expires_at.seq = g.seq_expires_at
LEFT JOIN picked p_note ON p_note.seq = g.seq_note
LEFT JOIN ids i ON i.address = g.address AND i.verdict = g.verdict;

-- The decision per address (columns as suppression_decisions_reference) from `candidates`
-- (shaped like suppression_candidates' result): the deciding verdict is an active candidate
-- first, then by priority (complaint, hard, manual, soft), then the latest evidence, as in
-- 0009's suppression_decide.
CREATE MACRO suppression_pick(as_of, candidates) AS TABLE
WITH c AS NOT MATERIALIZED (
    SELECT *, suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of) AS active
    FROM query_table(candidates)
),
chosen AS (
    SELECT address, max(removed_at) AS removed_at, max(success_at) AS success_at,
           arg_max(verdict, (active, -priority, last_evidence))
               FILTER (WHERE evidence_count > 0) AS verdict
    FROM c GROUP BY address
)
SELECT a.address,
       split_part(a.address, '@', -1) AS domain,
       coalesce(k.active, false) AND nv.entry IS NULL AND nd.entry IS NULL AS suppressed,
       CASE k.verdict WHEN 'manual_add' THEN 'manual' ELSE k.verdict END AS kind,
       k.reason, k.category, k.rule_id,
       CASE k.verdict WHEN 'complaint' THEN 'policy.complaint' WHEN 'hard' THEN 'policy.hard'
            WHEN 'manual_add' THEN 'policy.manual' WHEN 'soft' THEN 'policy.soft' END AS policy_rule,
       k.first_evidence, k.last_evidence, k.evidence_count, k.suppressed_at, k.expires_at,
       k.event_ids, k.status_code, k.reply_code, k.diagnostic, k.note,
       rn_.local_part IS NOT NULL AS role,
       coalesce(nv.entry, nd.entry) AS never_entry,
       CASE WHEN nv.entry IS NOT NULL OR nd.entry IS NOT NULL THEN 'on the never-suppress list'
            WHEN k.address IS NULL AND a.removed_at IS NOT NULL THEN 'removed manually'
            WHEN k.address IS NULL THEN 'cleared by a later delivery'
            WHEN k.active THEN NULL
            WHEN k.suppressed_at IS NULL THEN 'soft failures below the threshold'
            ELSE 'suppression expired' END AS not_suppressed_because,
       a.removed_at, a.success_at
FROM chosen a
LEFT JOIN c k ON k.address = a.address AND k.verdict = a.verdict
LEFT JOIN suppression_never nv ON nv.entry = a.address
LEFT JOIN suppression_never nd ON nd.entry = '@' || split_part(a.address, '@', -1)
LEFT JOIN suppression_role_names rn_
       ON rn_.local_part = lower(split_part(split_part(a.address, '@', 1), '+', 1));

-- The graded events (0009's `ev`: verdict, usable address; no successes or removes) of the
-- final failed delivery attempts in `finals` (delivery_log columns), the failed DSN recipients
-- in `dsn_failures` (bounce_recipients columns plus the report's verp_recipient, report_date,
-- arrival_date, ingested_at), the complaints in `complaints` (report_hash, recipient,
-- arrival_date, report_date, feedback_type, ingested_at) and the manual adds with an id above
-- `manual_after`, up to as_of.
CREATE MACRO suppression_graded_events(as_of, hard_reasons, sender_side_reasons,
                                       local_network_phrases, finals, dsn_failures,
                                       complaints, manual_after) AS TABLE
WITH log_failures AS (
    SELECT f.message_key, f.recipient, f.logged_at, f.line_offset, f.status, f.dsn,
           f.reply_code, f.diagnostic, f.reason, f.category, f.rule_id,
           m.expired_at IS NOT NULL AS expired,
           CASE WHEN m.expired_at IS NOT NULL THEN 'expired' ELSE f.status END AS final_status
    FROM query_table(finals) f
    LEFT JOIN (SELECT message_key, expired_at FROM message_log WHERE expired_at IS NOT NULL) m
           ON f.status = 'deferred' AND m.message_key = f.message_key
    WHERE f.logged_at <= as_of
      AND (f.status IN ('bounced', 'expired') OR m.expired_at IS NOT NULL)
),
expired_attempts AS (
    -- the deferrals logged at an expired outcome's (message, line offset), of any recipient
    -- (0004's attempt_reason); 0009 narrows delivery_log to messages that expired first, which
    -- the join on the outcome's own message implies
    SELECT dl.message_key, dl.line_offset, dl.reason
    FROM delivery_log dl
    SEMI JOIN (SELECT message_key, line_offset FROM log_failures WHERE final_status = 'expired') x
           ON x.message_key = dl.message_key AND x.line_offset = dl.line_offset
    WHERE dl.status = 'deferred'
),
log_events AS (
    SELECT 'log:' || f.message_key || ':' || coalesce(f.line_offset::VARCHAR, '') AS event_id,
           f.recipient AS raw_address, f.logged_at AS occurred_at, 'failure' AS outcome,
           CASE WHEN f.expired THEN 'expired' ELSE f.reason END AS reason,
           CASE WHEN f.expired THEN 'message-expired' ELSE f.category END AS category,
           CASE WHEN f.expired THEN 'postfix-queue-expired' ELSE f.rule_id END AS rule_id,
           f.dsn AS status_code, f.reply_code, f.diagnostic,
           (f.final_status = 'bounced'
            AND coalesce(left(f.dsn, 1), left(f.reply_code::VARCHAR, 1), '5') = '5') AS permanent,
           CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
           dl.reason AS attempt_reason
    FROM log_failures f
    LEFT JOIN expired_attempts dl
           ON f.final_status = 'expired' AND dl.message_key = f.message_key
          AND dl.line_offset = f.line_offset
),
other_events AS (
    SELECT 'dsn:' || c.report_hash || ':' || c.position AS event_id,
           coalesce(c.original_recipient, c.verp_recipient, c.recipient) AS raw_address,
           coalesce(c.last_attempt_date, c.report_date, c.arrival_date, c.ingested_at) AS occurred_at,
           'failure' AS outcome,
           c.reason, c.category, c.rule_id, c.status AS status_code,
           TRY_CAST(c.reply_code AS INTEGER) AS reply_code, c.diagnostic,
           coalesce(left(c.status, 1), left(c.reply_code, 1), '5') = '5' AS permanent,
           CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
           CAST(NULL AS VARCHAR) AS attempt_reason
    FROM query_table(dsn_failures) c
    UNION ALL
    SELECT 'arf:' || c.report_hash, c.recipient,
           coalesce(c.arrival_date, c.report_date, c.ingested_at),
           'complaint', 'feedback', 'complaint', 'arf:' || c.feedback_type, NULL, NULL,
           c.feedback_type, true, NULL, NULL, NULL
    FROM query_table(complaints) c
    WHERE c.recipient IS NOT NULL AND lower(c.feedback_type) <> 'not-spam'
    UNION ALL
    SELECT 'manual:' || m.id, m.address, m.occurred_at,
           'manual_add', 'manual', 'manual', 'manual:add', NULL, NULL,
           NULL, true, m.expires_at, m.note, NULL
    FROM suppression_manual m
    WHERE m.action = 'add' AND m.id > manual_after
)
SELECT e.event_id, e.occurred_at, e.verdict, e.reason, e.category, e.rule_id,
       e.status_code, e.reply_code, e.diagnostic, e.expires_at, e.note,
       suppression_usable_address(e.raw_address, n.address, n.problem) AS address
FROM (SELECT *,
             suppression_verdict(outcome, reason, attempt_reason, diagnostic, permanent,
                                 hard_reasons, sender_side_reasons,
                                 local_network_phrases) AS verdict
      FROM (SELECT * FROM log_events
            UNION ALL
            SELECT * FROM other_events WHERE occurred_at <= as_of)) e
LEFT JOIN suppression_addresses n ON n.raw = e.raw_address
WHERE e.verdict NOT IN ('ignored', 'sender_side')
  AND suppression_usable_address(e.raw_address, n.address, n.problem) IS NOT NULL;

-- The latest success and manual remove of each address of `scope` (a relation with columns
-- `address` and `key` = lower(address)), from `deliveries`: the delivery_log rows (all columns,
-- plus `row_id`) whose recipient may normalise to one of them, that is every row with
-- lower(recipient) = key (the SQL fast path only lower-cases the domain of an ASCII address,
-- 0004) or with a raw text suppression_addresses maps to the address. That set holds every
-- attempt for each (message, recipient) it holds, which is all that finding a final attempt
-- needs. As 0009's suppression_latest_successes and removals, over those rows.
CREATE MACRO suppression_scoped_resets(as_of, deliveries, scope) AS TABLE
WITH d AS NOT MATERIALIZED (
    SELECT * FROM query_table(deliveries)
),
special AS (
    SELECT n.raw FROM suppression_addresses n
    SEMI JOIN query_table(scope) s ON s.address = n.address
),
log_successes AS (
    SELECT s.recipient AS raw_address, max(s.logged_at) AS success_at
    FROM d s
    ANTI JOIN (SELECT message_key, recipient, logged_at, coalesce(line_offset, -1) AS line_order
               FROM d
               WHERE recipient IS NOT NULL AND (status <> 'sent' OR logged_at > as_of)) l
           ON l.message_key = s.message_key AND l.recipient = s.recipient
          AND (l.logged_at > s.logged_at
               OR (l.logged_at = s.logged_at AND l.line_order > coalesce(s.line_offset, -1)))
    WHERE s.status = 'sent' AND s.recipient IS NOT NULL AND s.logged_at <= as_of
    GROUP BY s.recipient
),
dsn_successes AS (
    SELECT coalesce(c.original_recipient, r.verp_recipient, c.recipient) AS raw_address,
           coalesce(c.last_attempt_date, r.report_date, r.arrival_date, r.ingested_at) AS success_at
    FROM bounce_recipients c
    JOIN bounce_reports r USING (report_hash)
    WHERE r.kind = 'delivered' AND c.action = 'delivered'
      AND (lower(coalesce(c.original_recipient, r.verp_recipient, c.recipient))
               IN (SELECT key FROM query_table(scope))
           OR coalesce(c.original_recipient, r.verp_recipient, c.recipient)
               IN (SELECT raw FROM special))
),
successes AS (
    SELECT address, max(success_at) AS success_at
    FROM (SELECT suppression_usable_address(s.raw_address, n.address, n.problem) AS address,
                 s.success_at
          FROM (SELECT * FROM log_successes
                UNION ALL
                SELECT * FROM dsn_successes WHERE success_at <= as_of) s
          LEFT JOIN suppression_addresses n ON n.raw = s.raw_address)
    WHERE address IN (SELECT address FROM query_table(scope))
    GROUP BY address
),
removals AS (
    SELECT suppression_usable_address(m.address, n.address, n.problem) AS address,
           max(m.occurred_at) AS removed_at
    FROM suppression_manual m
    LEFT JOIN suppression_addresses n ON n.raw = m.address
    WHERE m.action = 'remove' AND m.occurred_at <= as_of
      AND suppression_usable_address(m.address, n.address, n.problem)
          IN (SELECT address FROM query_table(scope))
    GROUP BY ALL
)
SELECT coalesce(s.address, r.address) AS address, s.success_at, r.removed_at
FROM successes s FULL OUTER JOIN removals r ON r.address = s.address;

-- Every piece of evidence about the addresses of `scope`, shaped like 0009's
-- suppression_graded_evidence, from `deliveries` (as above) and `resets` (shaped like
-- suppression_scoped_resets' result). Each step is 0009's, over those rows.
CREATE MACRO suppression_scoped_evidence(as_of, hard_reasons, sender_side_reasons,
                                         local_network_phrases, deliveries, scope,
                                         resets) AS TABLE
WITH d AS NOT MATERIALIZED (
    SELECT * FROM query_table(deliveries)
),
special AS (
    SELECT n.raw FROM suppression_addresses n
    SEMI JOIN query_table(scope) s ON s.address = n.address
),
final_failures AS (
    SELECT f.*
    FROM d f
    ANTI JOIN d l
           ON l.message_key = f.message_key AND l.recipient = f.recipient
          AND (l.logged_at > f.logged_at
               OR (l.logged_at = f.logged_at
                   AND coalesce(l.line_offset, -1) > coalesce(f.line_offset, -1)))
    WHERE f.recipient IS NOT NULL AND f.status IN ('bounced', 'expired', 'deferred')
      AND f.logged_at <= as_of
),
dsn_failures AS (
    SELECT c.*, r.verp_recipient, r.report_date, r.arrival_date, r.ingested_at
    FROM bounce_recipients c
    JOIN bounce_reports r USING (report_hash)
    WHERE r.kind = 'bounce' AND c.action = 'failed'
      AND (lower(coalesce(c.original_recipient, r.verp_recipient, c.recipient))
               IN (SELECT key FROM query_table(scope))
           OR coalesce(c.original_recipient, r.verp_recipient, c.recipient)
               IN (SELECT raw FROM special))
),
complaint_rows AS (
    SELECT q.report_hash, q.recipient, q.arrival_date, q.report_date, q.feedback_type,
           r.ingested_at
    FROM (SELECT report_hash, coalesce(recipient, verp_recipient) AS recipient, arrival_date,
                 report_date, feedback_type
          FROM complaints) q
    JOIN bounce_reports r USING (report_hash)
    WHERE lower(q.recipient) IN (SELECT key FROM query_table(scope))
       OR q.recipient IN (SELECT raw FROM special)
),
ev AS (
    SELECT * FROM suppression_graded_events(as_of, hard_reasons, sender_side_reasons,
                                            local_network_phrases, 'final_failures',
                                            'dsn_failures', 'complaint_rows', 0)
    WHERE address IN (SELECT address FROM query_table(scope))
)
SELECT ev.*, w.removed_at, w.success_at,
       ev.occurred_at > coalesce(w.removed_at, '-infinity'::TIMESTAMPTZ)
       AND (ev.verdict = 'complaint'
            OR ev.occurred_at > coalesce(w.success_at, '-infinity'::TIMESTAMPTZ)) AS live
FROM ev
LEFT JOIN query_table(resets) w ON w.address = ev.address;

-- What rows past the watermarks add (the caller has checked that they only add: see
-- pipeline/suppressions.py, _stage_delta): graded events of `finals` (the new final attempts)
-- and of the DSN, complaint and manual rows past the watermarks, plus successes
-- (verdict 'success') and manual removes ('manual_remove') with their address and time.
CREATE MACRO suppression_new_evidence(as_of, hard_reasons, sender_side_reasons,
                                      local_network_phrases, finals, reports_from,
                                      recipients_from, complaints_from, manual_after) AS TABLE
WITH new_reports AS (
    SELECT report_hash FROM bounce_reports WHERE rowid >= reports_from
),
dsn AS (
    -- the new recipients first, then their reports (not the other way round: the whole join)
    SELECT c.*, r.kind, r.verp_recipient, r.report_date, r.arrival_date, r.ingested_at
    FROM (SELECT * FROM bounce_recipients
          WHERE rowid >= recipients_from
             OR report_hash IN (SELECT report_hash FROM new_reports)) c
    JOIN bounce_reports r USING (report_hash)
),
dsn_failures AS (
    SELECT * EXCLUDE (kind) FROM dsn WHERE kind = 'bounce' AND action = 'failed'
),
complaint_rows AS (
    SELECT q.report_hash, coalesce(rcpt.recipient, r.verp_recipient) AS recipient,
           q.arrival_date, r.report_date, q.feedback_type, r.ingested_at
    FROM (SELECT * FROM complaint_reports
          WHERE rowid >= complaints_from
             OR report_hash IN (SELECT report_hash FROM new_reports)) q
    JOIN bounce_reports r USING (report_hash)
    LEFT JOIN (SELECT report_hash, unnest(original_rcpt_to) AS recipient
               FROM complaint_reports) rcpt USING (report_hash)
),
resets AS (
    SELECT f.recipient AS raw_address, f.logged_at AS occurred_at, 'success' AS verdict
    FROM query_table(finals) f
    WHERE f.status = 'sent' AND f.logged_at <= as_of
    UNION ALL
    SELECT coalesce(original_recipient, verp_recipient, recipient),
           coalesce(last_attempt_date, report_date, arrival_date, ingested_at), 'success'
    FROM dsn
    WHERE kind = 'delivered' AND action = 'delivered'
      AND coalesce(last_attempt_date, report_date, arrival_date, ingested_at) <= as_of
    UNION ALL
    SELECT address, occurred_at, 'manual_remove'
    FROM suppression_manual
    WHERE action = 'remove' AND id > manual_after AND occurred_at <= as_of
)
SELECT * FROM suppression_graded_events(as_of, hard_reasons, sender_side_reasons,
                                        local_network_phrases, finals, 'dsn_failures',
                                        'complaint_rows', manual_after)
UNION ALL
SELECT NULL, r.occurred_at, r.verdict, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       suppression_usable_address(r.raw_address, n.address, n.problem)
FROM resets r
LEFT JOIN suppression_addresses n ON n.raw = r.raw_address
WHERE suppression_usable_address(r.raw_address, n.address, n.problem) IS NOT NULL;
