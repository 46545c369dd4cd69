-- Suppression policy in stages (issue 5: 10 M deliveries and 1 M bounces in < 10 s, < 2 GB).
--
-- 0008 computed the decisions in one query. At 10 M deliveries DuckDB then holds at once the
-- hash tables of two anti-joins (one carrying every column of the failed attempts), the latest
-- success of 2 M addresses, and 3.3 M evidence rows in ordered-list and arg_max aggregate
-- states, which cannot be spilled: 57 s and 1.9 GB, or out of memory under a 1 GB limit. Here
-- the same definition is cut into stages, each a table macro, so that a caller can materialise
-- each stage (pipeline/suppressions.py does, into temp tables, which DuckDB can spill) and
-- each later stage is planned on exact row counts:
--
--   suppression_final_failure_ids(as_of)        row ids of the final failed attempts in the log
--   suppression_latest_successes(as_of)         the latest success per address
--   suppression_graded_evidence(..., ids, successes)
--                                               every piece of evidence but successes and
--                                               manual removes, with its verdict and whether it
--                                               still stands (`live`)
--   suppression_decide(..., evidence)           the decision per address, from the evidence
--                                               plus `seq`, its rank by (occurred_at, event_id)
--
-- The last two read their inputs by name (query_table), so the same macros serve the staged
-- run and suppression_decisions below, the one-query form for notebooks and ad hoc SQL.
-- tests/test_suppressions_fast.py checks both against suppression_decisions_reference (0008)
-- column by column. What changed from 0008, each step keeping the reference's result:
--   * only row ids cross the anti-join that finds final failed attempts; their columns are
--     read afterwards, by row id;
--   * a manual removal only ever matters as the latest removal per address: it is taken from
--     suppression_manual directly instead of from a grouping of all the evidence;
--   * per address and verdict, one aggregate with fixed-size states only: first and last
--     evidence, count, and for each detail column the seq of the latest standing row where it
--     is not NULL (0004's arg_max(col, (occurred_at, event_id)) skips NULL values, so that row
--     is the one it reads); the values are then fetched by seq;
--   * the deciding verdict per address is arg_max over (active, -priority, last evidence), the
--     order of 0004's row_number() (verdicts are distinct within an address: no ties);
--   * event ids are gathered for the deciding verdict only, as (seq, id) pairs sorted
--     afterwards (list_sort), instead of an ordered aggregate over every verdict.

-- Final attempts that failed: a bounced, expired or deferred attempt of a message's
-- recipient with no later attempt (latest logged_at, then line_offset with NULL first, as
-- recipient_outcomes orders them), up to as_of.
CREATE OR REPLACE MACRO suppression_final_failure_ids(as_of) AS TABLE
SELECT f.rowid AS row_id
FROM delivery_log f
ANTI JOIN delivery_log l
       ON l.message_key = f.message_key AND l.recipient = f.recipient
      AND (l.logged_at > f.logged_at
           OR (l.logged_at = f.logged_at
               AND coalesce(l.line_offset, -1) > coalesce(f.line_offset, -1)))
WHERE f.recipient IS NOT NULL AND f.status IN ('bounced', 'expired', 'deferred')
  AND f.logged_at <= as_of;

-- The latest success per usable address: log outcomes whose final attempt is a success, and
-- "delivered" DSNs.
CREATE OR REPLACE MACRO suppression_latest_successes(as_of) AS TABLE
WITH later_candidates AS (
    -- the attempts that can stand after a success and so take its place as the final word:
    -- anything but a success, and anything after as_of (whose outcome is not evidence yet)
    SELECT message_key, recipient, logged_at, coalesce(line_offset, -1) AS line_order
    FROM delivery_log
    WHERE recipient IS NOT NULL AND (status <> 'sent' OR logged_at > as_of)
),
log_successes AS (
    -- no later attempt other than a success means the final attempt is a success, and the
    -- latest success of the message's recipient is then that final attempt
    SELECT s.recipient AS raw_address, max(s.logged_at) AS success_at
    FROM delivery_log s
    ANTI JOIN later_candidates l
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
)
SELECT address, max(success_at) AS success_at
FROM (SELECT suppression_usable_address(s.raw_address, n.address, n.problem) AS address,
             s.success_at
      FROM (SELECT * FROM log_successes
            UNION ALL
            SELECT * FROM dsn_successes WHERE success_at <= as_of) s
      LEFT JOIN suppression_addresses n ON n.raw = s.raw_address)
WHERE address IS NOT NULL
GROUP BY address;

-- Every piece of evidence with a usable address, except successes (they count through
-- `latest_successes`) and manual removes (they count through the latest removal), with its
-- verdict (suppression_verdict, 0008) and `live`: still standing after the last manual removal
-- and, unless a complaint, after the last success. `final_failure_ids` and `latest_successes`
-- name relations shaped like the results of the two macros above.
CREATE OR REPLACE MACRO suppression_graded_evidence(as_of, hard_reasons, sender_side_reasons,
                                                    local_network_phrases, final_failure_ids,
                                                    latest_successes) AS TABLE
WITH log_failures AS (
    -- final attempts recipient_outcomes calls bounced or expired (a last deferral in a
    -- message qmgr gave up on, 0006, or a logged "status=expired")
    SELECT f.message_key, f.recipient, f.logged_at, f.line_offset, f.status, f.dsn,
           f.reply_code, f.diagnostic, f.reason, f.category, f.rule_id,
           m.expired_at IS NOT NULL AS expired,
           CASE WHEN m.expired_at IS NOT NULL THEN 'expired' ELSE f.status END AS final_status
    FROM (SELECT * FROM delivery_log
          WHERE status IN ('bounced', 'expired', 'deferred')
            AND rowid IN (SELECT row_id FROM query_table(final_failure_ids))) f
    LEFT JOIN (SELECT message_key, expired_at FROM message_log WHERE expired_at IS NOT NULL) m
           ON f.status = 'deferred' AND m.message_key = f.message_key
    WHERE f.status IN ('bounced', 'expired') OR m.expired_at IS NOT NULL
),
expired_attempts AS (
    -- suppression_events' attempt_reason: for an expired outcome, the classification of the
    -- deferrals logged at its (message, line offset); only messages that expired can have one
    SELECT dl.message_key, dl.line_offset, dl.reason
    FROM delivery_log dl
    SEMI JOIN (SELECT message_key FROM message_log WHERE expired_at IS NOT NULL
               UNION
               SELECT message_key FROM delivery_log WHERE status = 'expired') x
           ON x.message_key = dl.message_key
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
    -- suppression_events (0004) for failed DSN recipients, complaints and manual adds
    SELECT 'dsn:' || c.report_hash || ':' || c.position AS event_id,
           coalesce(c.original_recipient, r.verp_recipient, c.recipient) AS raw_address,
           coalesce(c.last_attempt_date, r.report_date, r.arrival_date, r.ingested_at) AS occurred_at,
           'failure' AS outcome,
           c.reason, c.category, c.rule_id, c.status AS status_code,
           TRY_CAST(c.reply_code AS INTEGER) AS reply_code, c.diagnostic,
           coalesce(left(c.status, 1), left(c.reply_code, 1), '5') = '5' AS permanent,
           CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
           CAST(NULL AS VARCHAR) AS attempt_reason
    FROM bounce_recipients c
    JOIN bounce_reports r USING (report_hash)
    WHERE r.kind = 'bounce' AND c.action = 'failed'
    UNION ALL
    SELECT 'arf:' || c.report_hash, c.recipient,
           coalesce(c.arrival_date, c.report_date, r.ingested_at),
           'complaint', 'feedback', 'complaint', 'arf:' || c.feedback_type, NULL, NULL,
           c.feedback_type, true, NULL, NULL, NULL
    FROM (SELECT q.report_hash, coalesce(q.recipient, q.verp_recipient) AS recipient,
                 q.arrival_date, q.report_date, q.feedback_type
          FROM complaints q) c
    JOIN bounce_reports r USING (report_hash)
    WHERE c.recipient IS NOT NULL AND lower(c.feedback_type) <> 'not-spam'
    UNION ALL
    SELECT 'manual:' || m.id, m.address, m.occurred_at,
           'manual_add', 'manual', 'manual', 'manual:add', NULL, NULL,
           NULL, true, m.expires_at, m.note, NULL
    FROM suppression_manual m
    WHERE m.action = 'add'
),
ev AS (
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
      AND suppression_usable_address(e.raw_address, n.address, n.problem) IS NOT NULL
),
removals AS (
    -- the latest manual remove per address: it sets aside all evidence before it
    SELECT suppression_usable_address(m.address, n.address, n.problem) AS address,
           max(m.occurred_at) AS removed_at
    FROM suppression_manual m
    LEFT JOIN suppression_addresses n ON n.raw = m.address
    WHERE m.action = 'remove' AND m.occurred_at <= as_of
      AND suppression_usable_address(m.address, n.address, n.problem) IS NOT NULL
    GROUP BY ALL
)
SELECT ev.*, r.removed_at, s.success_at,
       ev.occurred_at > coalesce(r.removed_at, '-infinity'::TIMESTAMPTZ)
       AND (ev.verdict = 'complaint'
            OR ev.occurred_at > coalesce(s.success_at, '-infinity'::TIMESTAMPTZ)) AS live
FROM ev
LEFT JOIN removals r ON r.address = ev.address
LEFT JOIN query_table(latest_successes) s ON s.address = ev.address;

-- The decision per address (columns as suppression_decisions_reference), from `evidence`,
-- a relation shaped like suppression_graded_evidence's result. Priority when several apply:
-- complaint, hard, manual, soft.
CREATE OR REPLACE MACRO suppression_decide(as_of, soft_threshold, soft_window_days,
                                           soft_expiry_days, hard_expiry_days, evidence) AS TABLE
WITH graded AS NOT MATERIALIZED (
    SELECT * FROM query_table(evidence)
),
soft_days AS (
    -- soft failures count once per address and UTC day (as GNU Mailman's bounce score does),
    -- so a burst of retries or one failure seen in both the log and its DSN counts once
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
    -- one pass per address and verdict, with fixed-size aggregate states only (they spill):
    -- the standing evidence (FILTER live), and for each detail column the position (seq) of
    -- the latest standing row where it is not NULL. The group exists even when nothing
    -- stands: the address then has a decision (not suppressed).
    SELECT address, verdict,
           max(removed_at) AS removed_at, max(success_at) AS success_at,
           min(occurred_at) FILTER (WHERE live) AS first_evidence,
           max(occurred_at) FILTER (WHERE live) AS last_evidence,
           count(*) FILTER (WHERE live) AS evidence_count,
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
    -- the rows those positions name (mostly one per group: its latest)
    SELECT seq, reason, category, rule_id, status_code, reply_code, diagnostic, expires_at, note
    FROM graded
    WHERE seq IN (SELECT unnest([seq_reason, seq_category, seq_rule_id, seq_status_code,
                                 seq_reply_code, seq_diagnostic, seq_expires_at, seq_note])
                  FROM summary)
),
candidates AS (
    SELECT g.address, g.verdict, g.removed_at, g.success_at, g.first_evidence,
           g.last_evidence, g.evidence_count,
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
           p_note.note
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
),
chosen AS (
    -- per address, the verdict that decides: an active candidate first, then by priority,
    -- then the most recent evidence (0004's row_number() = 1; verdicts are distinct within
    -- an address, so there are no ties)
    SELECT address, max(removed_at) AS removed_at, max(success_at) AS success_at,
           arg_max(verdict, (suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of),
                             -priority, last_evidence))
               FILTER (WHERE evidence_count > 0) AS verdict
    FROM candidates GROUP BY address
),
chosen_ids AS (
    -- the standing evidence ids of the deciding verdict, in (occurred_at, event_id) order
    SELECT e.address, e.verdict,
           list_transform(list_sort(list({'s': e.seq, 'id': e.event_id})), lambda r: r.id) AS event_ids
    FROM graded e
    SEMI JOIN chosen c ON c.address = e.address AND c.verdict = e.verdict
    WHERE e.live
    GROUP BY e.address, e.verdict
)
SELECT a.address,
       split_part(a.address, '@', -1) AS domain,
       coalesce(k.active, false) AND nv.entry IS NULL AND nd.entry IS NULL AS suppressed,
       CASE k.verdict WHEN 'manual_add' THEN 'manual' ELSE k.verdict END AS kind,
       k.reason, k.category, k.rule_id,
       CASE k.verdict WHEN 'complaint' THEN 'policy.complaint' WHEN 'hard' THEN 'policy.hard'
            WHEN 'manual_add' THEN 'policy.manual' WHEN 'soft' THEN 'policy.soft' END AS policy_rule,
       k.first_evidence, k.last_evidence, k.evidence_count, k.suppressed_at, k.expires_at,
       i.event_ids, k.status_code, k.reply_code, k.diagnostic, k.note,
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
LEFT JOIN (SELECT *, suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of) AS active
           FROM candidates) k
       ON k.address = a.address AND k.verdict = a.verdict
LEFT JOIN chosen_ids i ON i.address = a.address AND i.verdict = a.verdict
LEFT JOIN suppression_never nv ON nv.entry = a.address
LEFT JOIN suppression_never nd ON nd.entry = '@' || split_part(a.address, '@', -1)
LEFT JOIN suppression_role_names rn_
       ON rn_.local_part = lower(split_part(split_part(a.address, '@', 1), '+', 1));

-- The decisions in one query (same parameters and result as 0008's): the stages above as
-- common table expressions.
CREATE OR REPLACE MACRO suppression_decisions(as_of, soft_threshold, soft_window_days,
                                              soft_expiry_days, hard_expiry_days, hard_reasons,
                                              sender_side_reasons, local_network_phrases) AS TABLE
WITH suppression_stage_final_ids AS (
    SELECT * FROM suppression_final_failure_ids(as_of)
),
suppression_stage_successes AS (
    SELECT * FROM suppression_latest_successes(as_of)
),
suppression_stage_evidence AS (
    SELECT *, row_number() OVER (ORDER BY occurred_at, event_id) AS seq
    FROM suppression_graded_evidence(as_of, hard_reasons, sender_side_reasons,
                                              local_network_phrases,
                                              'suppression_stage_final_ids',
                                              'suppression_stage_successes')
)
SELECT * FROM suppression_decide(as_of, soft_threshold, soft_window_days, soft_expiry_days,
                                 hard_expiry_days, 'suppression_stage_evidence');
