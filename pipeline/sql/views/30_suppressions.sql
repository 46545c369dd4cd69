-- Views and macros are not migrations: pipeline/store.py runs the files of this folder, in
-- name order, after the migrations whenever their text changed (schema_views keeps the
-- checksum). Each object has this one definition; change it here. Every definition starts a
-- line with CREATE OR REPLACE VIEW or CREATE OR REPLACE MACRO (a read-only open of an older
-- store makes them TEMP).
--
-- The suppression policy (pipeline/suppressions.py says it in words): the evidence views and the
-- table macros that grade it and decide per address, over the tables of 0004, 0010 and 0012.
--
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
-- tests/test_suppressions_fast.py checks both against tests/sql/suppression_reference.sql
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

-- An expiry that logged no code (Exim's "** a@b: retry timeout exceeded") reports its
-- recipient's last deferral that had a reply, as recipient_outcomes does (10_log.sql): those
-- replies, for the evidence macros below.
CREATE OR REPLACE VIEW suppression_expiry_replies AS
SELECT d.message_key, d.recipient,
       arg_max({'dsn': d.dsn, 'reply_code': d.reply_code}, d.seq) AS r
FROM delivery_log d
SEMI JOIN (SELECT message_key, recipient FROM delivery_log
           WHERE status = 'expired' AND dsn IS NULL AND reply_code IS NULL) x
       ON x.message_key = d.message_key AND x.recipient = d.recipient
WHERE d.status = 'deferred' AND d.reply_code IS NOT NULL
GROUP BY d.message_key, d.recipient;

-- Every piece of evidence about a recipient, one row per event, with a stable id:
--   log:MESSAGE_KEY:LINE_OFFSET   the final outcome of a recipient of a message in the logs
--                                 (recipient_outcomes: sent, bounced, or expired in the queue;
--                                 a recipient still deferred is not evidence yet)
--   dsn:REPORT_HASH:POSITION      a failed (or delivered) recipient in a decoded DSN
--   arf:REPORT_HASH               an ARF complaint (RFC 5965); "not-spam" reports are not
--   manual:ID                     a manual add or remove
-- `permanent`: the failure was final (5xx / 5.x.x, RFC 5321 section 4.2.1, RFC 3463
-- section 3.1). `message_ref` identifies the message so a failure seen in the log and again in
-- the DSN Postfix sent about it is one failure.
CREATE OR REPLACE VIEW suppression_events AS
SELECT 'log:' || o.message_key || ':' || coalesce(o.line_offset::VARCHAR, '') AS event_id,
       'log' AS source,
       o.recipient AS raw_address,
       o.logged_at AS occurred_at,
       CASE o.status WHEN 'sent' THEN 'success' ELSE 'failure' END AS outcome,
       o.reason, o.category, o.rule_id, o.dsn AS status_code, o.reply_code,
       o.diagnostic, o.remote_host,
       (o.status = 'bounced'
        AND coalesce(left(o.dsn, 1), left(o.reply_code::VARCHAR, 1), '5') = '5') AS permanent,
       coalesce(o.message_id, o.message_key) AS message_ref,
       CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
       -- an expired recipient: what its last deferral was (a block is still the sender's problem)
       dl.reason AS attempt_reason
FROM recipient_outcomes o
LEFT JOIN (SELECT message_key, line_offset, reason FROM delivery_log WHERE status = 'deferred') dl
       ON o.status = 'expired' AND dl.message_key = o.message_key AND dl.line_offset = o.line_offset
WHERE o.status IN ('sent', 'bounced', 'expired') AND o.recipient IS NOT NULL
UNION ALL
SELECT 'dsn:' || c.report_hash || ':' || c.position,
       'dsn',
       coalesce(c.original_recipient, r.verp_recipient, c.recipient),
       coalesce(c.last_attempt_date, r.report_date, r.arrival_date, r.ingested_at),
       CASE c.action WHEN 'delivered' THEN 'success' ELSE 'failure' END,
       c.reason, c.category, c.rule_id, c.status, TRY_CAST(c.reply_code AS INTEGER),
       c.diagnostic, c.remote_mta,
       (c.action = 'failed'
        AND coalesce(left(c.status, 1), left(c.reply_code, 1), '5') = '5'),
       coalesce(r.original_message_id, r.postfix_queue_id, 'dsn:' || c.report_hash),
       NULL, NULL, NULL
FROM bounce_recipients c
JOIN bounce_reports r USING (report_hash)
WHERE (r.kind = 'bounce' AND c.action = 'failed') OR (r.kind = 'delivered' AND c.action = 'delivered')
UNION ALL
SELECT 'arf:' || c.report_hash, 'arf', c.recipient,
       coalesce(c.arrival_date, c.report_date, r.ingested_at),
       'complaint', 'feedback', 'complaint', 'arf:' || c.feedback_type, NULL, NULL,
       c.feedback_type, c.reporting_mta, true,
       coalesce(c.original_message_id, 'arf:' || c.report_hash), NULL, NULL, NULL
FROM (SELECT q.report_hash, coalesce(q.recipient, q.verp_recipient) AS recipient, q.arrival_date,
             q.report_date, q.feedback_type, q.reporting_mta, q.original_message_id
      FROM complaints q) c
JOIN bounce_reports r USING (report_hash)
WHERE c.recipient IS NOT NULL AND lower(c.feedback_type) <> 'not-spam'
UNION ALL
SELECT 'manual:' || m.id, 'manual', m.address, m.occurred_at,
       'manual_' || m.action, 'manual', 'manual', 'manual:' || m.action, NULL, NULL,
       NULL, NULL, true, 'manual:' || m.id, m.expires_at, m.note, NULL
FROM suppression_manual m;

-- Every raw address any evidence may name (cheaper than suppression_events: no window),
-- for suppressions.refresh_addresses().
CREATE OR REPLACE VIEW suppression_raw_addresses AS
SELECT recipient AS raw FROM delivery_log WHERE recipient IS NOT NULL
UNION ALL
SELECT coalesce(c.original_recipient, r.verp_recipient, c.recipient)
FROM bounce_recipients c JOIN bounce_reports r USING (report_hash)
UNION ALL
SELECT coalesce(recipient, verp_recipient) FROM complaints
UNION ALL
SELECT address FROM suppression_manual;

-- The verdict of suppression_verdicts (0004), as a scalar macro over one event's fields.
CREATE OR REPLACE MACRO suppression_verdict(outcome, reason, attempt_reason, diagnostic, permanent,
                                            hard_reasons, sender_side_reasons,
                                            local_network_phrases) AS
    CASE WHEN outcome <> 'failure' THEN outcome
         WHEN list_contains(sender_side_reasons, reason)
              OR list_contains(sender_side_reasons, attempt_reason) THEN 'sender_side'
         WHEN 'networkerror' IN (reason, attempt_reason) AND diagnostic IS NOT NULL
              AND len(list_filter(local_network_phrases,
                                  lambda p: contains(lower(diagnostic), p))) > 0
              THEN 'sender_side'
         WHEN reason IN ('delivered', 'feedback', 'vacation') THEN 'ignored'
         WHEN permanent AND list_contains(hard_reasons, reason) THEN 'hard'
         ELSE 'soft' END;

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
           coalesce(g.r.dsn, f.dsn) AS status_code,
           coalesce(g.r.reply_code, f.reply_code) AS reply_code, f.diagnostic,
           (f.final_status = 'bounced'
            AND coalesce(left(f.dsn, 1), left(f.reply_code::VARCHAR, 1), '5') = '5') AS permanent,
           CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
           dl.reason AS attempt_reason
    FROM log_failures f
    LEFT JOIN suppression_expiry_replies g
           ON f.status = 'expired' AND f.dsn IS NULL AND f.reply_code IS NULL
          AND g.message_key = f.message_key AND g.recipient = f.recipient
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

-- The candidates per address and verdict from `evidence` (a relation shaped like 0009's
-- suppression_graded_evidence plus `seq`, the rank by (occurred_at, event_id)): the first part
-- of 0009's suppression_decide, with the standing event ids of every verdict (the deciding one
-- depends on as_of, so it is picked later).
CREATE OR REPLACE MACRO suppression_candidates(soft_threshold, soft_window_days, soft_expiry_days,
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
CREATE OR REPLACE MACRO suppression_pick(as_of, candidates) AS TABLE
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
CREATE OR REPLACE MACRO suppression_graded_events(as_of, hard_reasons, sender_side_reasons,
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
           coalesce(g.r.dsn, f.dsn) AS status_code,
           coalesce(g.r.reply_code, f.reply_code) AS reply_code, f.diagnostic,
           (f.final_status = 'bounced'
            AND coalesce(left(f.dsn, 1), left(f.reply_code::VARCHAR, 1), '5') = '5') AS permanent,
           CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
           dl.reason AS attempt_reason
    FROM log_failures f
    LEFT JOIN suppression_expiry_replies g
           ON f.status = 'expired' AND f.dsn IS NULL AND f.reply_code IS NULL
          AND g.message_key = f.message_key AND g.recipient = f.recipient
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

-- What rows past the watermarks add (the caller has checked that they only add: see
-- pipeline/suppressions.py, _stage_delta): graded events of `finals` (the new final attempts)
-- and of the DSN, complaint and manual rows past the watermarks, plus successes
-- (verdict 'success') and manual removes ('manual_remove') with their address and time.
CREATE OR REPLACE MACRO suppression_new_evidence(as_of, hard_reasons, sender_side_reasons,
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

-- The fast path of address normalisation, for the overwhelming majority of addresses: an ASCII
-- dot-atom local part (RFC 5322 section 3.2.3 atext) of at most 64 octets (RFC 5321 section
-- 4.5.3.1.1), '@', and a domain of LDH labels (RFC 5890 section 2.3.1) with at least one dot,
-- 254 octets in all (RFC 5321 section 4.5.3.1.3, minus the angle brackets). The domain is
-- lower-cased (RFC 5321 section 2.4: domains are case-insensitive, local parts may not be).
-- Anything else goes to suppressions.normalize_address() in Python, which yields the same
-- result for these addresses (tests/test_suppressions_address.py checks that).
-- 0004's macro with the local part folded too: for the ASCII addresses it accepts, lower() of
-- the whole text is what normalize_address() returns (tests/test_suppressions.py checks that).
CREATE OR REPLACE MACRO suppression_simple_address(raw) AS
    CASE WHEN length(raw) <= 254
          AND regexp_full_match(raw,
              '[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]{1,64}(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]{1,64})*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?')
          AND strpos(raw, '@') <= 65
         THEN lower(raw)
    END;

-- Final attempts that failed: a bounced, expired or deferred attempt of a message's
-- recipient with no later attempt (latest logged_at, then line_offset with NULL first, as
-- recipient_outcomes orders them), up to as_of.
-- Final attempts that failed: no later attempt (a higher seq) of the message's recipient.
CREATE OR REPLACE MACRO suppression_final_failure_ids(as_of) AS TABLE
SELECT f.rowid AS row_id
FROM delivery_log f
ANTI JOIN delivery_log l
       ON l.message_key = f.message_key AND l.recipient = f.recipient
      AND l.seq > f.seq
WHERE f.recipient IS NOT NULL AND f.status IN ('bounced', 'expired', 'deferred')
  AND f.logged_at <= as_of;

-- The latest success and manual remove of each address of `scope` (a relation with columns
-- `address` and `key` = lower(address)), from `deliveries`: the delivery_log rows (all columns,
-- plus `row_id`) whose recipient may normalise to one of them, that is every row with
-- lower(recipient) = key (the SQL fast path only lower-cases the domain of an ASCII address,
-- 0004) or with a raw text suppression_addresses maps to the address. That set holds every
-- attempt for each (message, recipient) it holds, which is all that finding a final attempt
-- needs. As 0009's suppression_latest_successes and removals, over those rows.
-- A later attempt is one read later (seq).
CREATE OR REPLACE MACRO suppression_scoped_resets(as_of, deliveries, scope) AS TABLE
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
    ANTI JOIN (SELECT message_key, recipient, seq
               FROM d
               WHERE recipient IS NOT NULL AND (status <> 'sent' OR logged_at > as_of)) l
           ON l.message_key = s.message_key AND l.recipient = s.recipient
          AND l.seq > s.seq
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
-- A later attempt is one read later (seq).
CREATE OR REPLACE MACRO suppression_scoped_evidence(as_of, hard_reasons, sender_side_reasons,
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
          AND l.seq > f.seq
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

-- The same, with the normalised address (NULL with `problem` when unusable).
CREATE OR REPLACE VIEW suppression_evidence AS
SELECT e.*,
       coalesce(suppression_simple_address(e.raw_address), n.address) AS address,
       CASE WHEN suppression_simple_address(e.raw_address) IS NOT NULL THEN NULL
            WHEN n.raw IS NULL THEN 'not normalised yet (run a suppressions command on a writable store)'
            ELSE n.problem END AS problem
FROM suppression_events e
LEFT JOIN suppression_addresses n ON n.raw = e.raw_address;

-- Each event with the policy's verdict about it:
--   success | complaint | manual_add | manual_remove   as the event says
--   sender_side  about the sender, not the recipient (configured reasons; a network error that
--                is a local socket error); never suppresses, counted by sender_side_problems
--   ignored      not a failure at all (delivered, feedback, vacation)
--   hard         a permanent failure for a hard reason: suppress at once
--   soft         any other failure (including undefined and expired): suppress when repeated
CREATE OR REPLACE MACRO suppression_verdicts(as_of, hard_reasons, sender_side_reasons, local_network_phrases) AS TABLE
SELECT *,
       CASE WHEN outcome <> 'failure' THEN outcome
            WHEN list_contains(sender_side_reasons, reason)
                 OR list_contains(sender_side_reasons, attempt_reason) THEN 'sender_side'
            WHEN 'networkerror' IN (reason, attempt_reason) AND diagnostic IS NOT NULL
                 AND len(list_filter(local_network_phrases,
                                     lambda p: contains(lower(diagnostic), p))) > 0
                 THEN 'sender_side'
            WHEN reason IN ('delivered', 'feedback', 'vacation') THEN 'ignored'
            WHEN permanent AND list_contains(hard_reasons, reason) THEN 'hard'
            ELSE 'soft' END AS verdict
FROM suppression_evidence
WHERE occurred_at <= as_of;

-- Failures that are about the sender (blocks, reputation, authentication, rate limits, local
-- network errors), grouped for the report and alerts: they never suppress a recipient.
CREATE OR REPLACE MACRO sender_side_problems(as_of, since, sender_side_reasons, local_network_phrases) AS TABLE
SELECT reason, category, rule_id,
       lower(split_part(coalesce(address, raw_address), '@', -1)) AS recipient_domain,
       count(*) AS failures, count(DISTINCT coalesce(address, raw_address)) AS recipients,
       min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       arg_max(diagnostic, occurred_at) AS last_diagnostic, arg_max(remote_host, occurred_at) AS last_remote_host
FROM suppression_verdicts(as_of, CAST([] AS VARCHAR[]), sender_side_reasons, local_network_phrases)
WHERE verdict = 'sender_side' AND occurred_at >= since
GROUP BY ALL;

-- Evidence whose address could not be used: reported, never exported.
CREATE OR REPLACE MACRO suppression_invalid(as_of) AS TABLE
SELECT raw_address, problem, count(*) AS events, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       list(event_id ORDER BY occurred_at, event_id)[1:20] AS event_ids
FROM suppression_evidence
WHERE problem IS NOT NULL AND occurred_at <= as_of AND outcome <> 'success'
GROUP BY ALL;

-- The usable normal form of a raw address, or NULL: the SQL fast path, else what
-- suppressions.refresh_addresses() stored (NULL when it found a problem or has not run yet);
-- the same test as suppression_evidence's "address IS NOT NULL AND problem IS NULL".
CREATE OR REPLACE MACRO suppression_usable_address(raw, stored_address, stored_problem) AS
    coalesce(suppression_simple_address(raw),
             CASE WHEN stored_problem IS NULL THEN stored_address END);

-- One row per address with any evidence other than successes: the decision and its grounds.
-- Priority when several apply: complaint, hard, manual, soft. `suppressed` is the list; the
-- other rows say why an address is not (or no longer) suppressed.
-- The same decisions as suppression_decisions_reference, computed so that the bulk of the
-- evidence (deliveries that succeeded) is reduced early. Why it is the same:
--   * a success only ever matters through the latest success per address (resets.success_at),
--     so successful log outcomes are reduced to max(logged_at) per raw recipient before the
--     address is normalised, and never become event rows (no event id, no verdict);
--   * recipient_outcomes' final attempt per (message, recipient) is taken from delivery_log
--     alone; message_log is joined only for final deferrals (the expired ones), and the
--     deferral's own classification (attempt_reason) only for those;
--   * resets, live, soft_days, soft_trigger, grounds, candidates, ranked and the final SELECT
--     are the reference's, over the non-success evidence, with success_at joined in.
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

-- The latest success per usable address: log outcomes whose final attempt is a success, and
-- "delivered" DSNs.
-- The latest success per usable address (0009), later attempts by seq.
CREATE OR REPLACE MACRO suppression_latest_successes(as_of) AS TABLE
WITH later_candidates AS (
    -- the attempts that can stand after a success and so take its place as the final word:
    -- anything but a success, and anything after as_of (whose outcome is not evidence yet)
    SELECT message_key, recipient, seq
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
          AND l.seq > s.seq
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
