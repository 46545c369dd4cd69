-- Suppression policy, fast evaluation (issue 5: 10 M deliveries and 1 M bounces in < 10 s).
--
-- suppression_decisions_reference is the definition of 0004 unchanged, except that the
-- "latest evidence" fields break ties between events of the same instant by event id (0004's
-- arg_max(..., occurred_at) picked one at random). It stays as the specification:
-- tests/test_suppressions_fast.py checks that suppression_decisions below gives exactly the
-- same rows on a synthetic store, and bench/bench_suppressions.py --reference times both.
CREATE OR REPLACE MACRO suppression_decisions_reference(as_of, soft_threshold, soft_window_days, soft_expiry_days,
                                   hard_expiry_days, hard_reasons, sender_side_reasons,
                                   local_network_phrases) AS TABLE
WITH ev AS (
    SELECT * FROM suppression_verdicts(as_of, hard_reasons, sender_side_reasons, local_network_phrases)
    WHERE address IS NOT NULL AND problem IS NULL AND verdict NOT IN ('ignored', 'sender_side')
),
resets AS (
    SELECT address,
           max(occurred_at) FILTER (WHERE verdict = 'manual_remove') AS removed_at,
           max(occurred_at) FILTER (WHERE verdict = 'success') AS success_at,
           bool_or(verdict NOT IN ('success', 'manual_remove')) AS interesting
    FROM ev GROUP BY address
),
live AS (
    -- evidence still standing: after the last manual removal; hard, soft and manual evidence
    -- also after the last success (a delivery proves the mailbox works now)
    SELECT ev.*, r.success_at, r.removed_at
    FROM ev JOIN resets r USING (address)
    WHERE r.interesting
      AND ev.verdict IN ('complaint', 'hard', 'soft', 'manual_add')
      AND ev.occurred_at > coalesce(r.removed_at, '-infinity'::TIMESTAMPTZ)
      AND (ev.verdict = 'complaint' OR ev.occurred_at > coalesce(r.success_at, '-infinity'::TIMESTAMPTZ))
),
soft_days AS (
    -- soft failures count once per address and UTC day (as GNU Mailman's bounce score does),
    -- so a burst of retries or one failure seen in both the log and its DSN counts once
    SELECT address, date_trunc('day', occurred_at) AS day, max(occurred_at) AS last_at
    FROM live WHERE verdict = 'soft' GROUP BY ALL
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
grounds AS (
    SELECT address, verdict,
           min(occurred_at) AS first_evidence, max(occurred_at) AS last_evidence, count(*) AS evidence_count,
           list(event_id ORDER BY occurred_at, event_id) AS event_ids,
           arg_max(reason, (occurred_at, event_id)) AS reason, arg_max(category, (occurred_at, event_id)) AS category,
           arg_max(rule_id, (occurred_at, event_id)) AS rule_id, arg_max(status_code, (occurred_at, event_id)) AS status_code,
           arg_max(reply_code, (occurred_at, event_id)) AS reply_code, arg_max(diagnostic, (occurred_at, event_id)) AS diagnostic,
           arg_max(expires_at, (occurred_at, event_id)) AS manual_expires_at, arg_max(note, (occurred_at, event_id)) AS note
    FROM live GROUP BY address, verdict
),
candidates AS (
    SELECT g.*,
           CASE g.verdict WHEN 'complaint' THEN 1 WHEN 'hard' THEN 2 WHEN 'manual_add' THEN 3 ELSE 4 END AS priority,
           CASE g.verdict WHEN 'soft' THEN t.triggered_at ELSE g.first_evidence END AS suppressed_at,
           CASE g.verdict
                WHEN 'complaint' THEN NULL
                WHEN 'hard' THEN CASE WHEN hard_expiry_days > 0
                                      THEN g.last_evidence + to_days(CAST(hard_expiry_days AS INTEGER)) END
                WHEN 'manual_add' THEN g.manual_expires_at
                ELSE t.triggered_at + to_days(CAST(soft_expiry_days AS INTEGER)) END AS expires_at
    FROM grounds g
    LEFT JOIN soft_trigger t ON g.verdict = 'soft' AND t.address = g.address
),
ranked AS (
    SELECT *,
           suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of) AS active,
           row_number() OVER (PARTITION BY address
                              ORDER BY (suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of)) DESC,
                                       priority, last_evidence DESC) AS rn
    FROM candidates
),
addresses AS (
    SELECT r.address, r.removed_at, r.success_at FROM resets r WHERE r.interesting
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
FROM addresses a
LEFT JOIN ranked k ON k.address = a.address AND k.rn = 1
LEFT JOIN suppression_never nv ON nv.entry = a.address
LEFT JOIN suppression_never nd ON nd.entry = '@' || split_part(a.address, '@', -1)
LEFT JOIN suppression_role_names rn_
       ON rn_.local_part = lower(split_part(split_part(a.address, '@', 1), '+', 1));

-- The usable normal form of a raw address, or NULL: the SQL fast path, else what
-- suppressions.refresh_addresses() stored (NULL when it found a problem or has not run yet);
-- the same test as suppression_evidence's "address IS NOT NULL AND problem IS NULL".
CREATE OR REPLACE MACRO suppression_usable_address(raw, stored_address, stored_problem) AS
    coalesce(suppression_simple_address(raw),
             CASE WHEN stored_problem IS NULL THEN stored_address END);

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
CREATE OR REPLACE MACRO suppression_decisions(as_of, soft_threshold, soft_window_days,
                                              soft_expiry_days, hard_expiry_days, hard_reasons,
                                              sender_side_reasons, local_network_phrases) AS TABLE
WITH later_candidates AS (
    -- the attempts that can stand after a success and so take its place as the final word:
    -- anything but a success, and anything after as_of (whose outcome is not evidence yet)
    SELECT message_key, recipient, logged_at, coalesce(line_offset, -1) AS line_order
    FROM delivery_log
    WHERE recipient IS NOT NULL AND (status <> 'sent' OR logged_at > as_of)
),
log_successes AS (
    -- a message's recipient counts as delivered when its final attempt (recipient_outcomes:
    -- latest logged_at, then line_offset, NULL first) is a success; no later attempt other
    -- than a success means exactly that, and the latest success of the group is then final
    SELECT s.recipient AS raw_address, max(s.logged_at) AS success_at
    FROM delivery_log s
    ANTI JOIN later_candidates l
           ON l.message_key = s.message_key AND l.recipient = s.recipient
          AND (l.logged_at > s.logged_at
               OR (l.logged_at = s.logged_at AND l.line_order > coalesce(s.line_offset, -1)))
    WHERE s.status = 'sent' AND s.recipient IS NOT NULL AND s.logged_at <= as_of
    GROUP BY s.recipient
),
final_failures AS (
    -- the other final attempts: no later attempt at all for the message and recipient
    SELECT f.message_key, f.recipient, f.logged_at, f.line_offset, f.status, f.dsn,
           f.reply_code, f.diagnostic, f.reason, f.category, f.rule_id
    FROM delivery_log f
    ANTI JOIN delivery_log l
           ON l.message_key = f.message_key AND l.recipient = f.recipient
          AND (l.logged_at > f.logged_at
               OR (l.logged_at = f.logged_at
                   AND coalesce(l.line_offset, -1) > coalesce(f.line_offset, -1)))
    WHERE f.recipient IS NOT NULL AND f.status IN ('bounced', 'expired', 'deferred')
      AND f.logged_at <= as_of
),
log_failures AS (
    -- final attempts recipient_outcomes calls bounced or expired (a last deferral in a
    -- message qmgr gave up on, 0006, or a logged "status=expired")
    SELECT f.*, m.expired_at IS NOT NULL AS expired,
           CASE WHEN m.expired_at IS NOT NULL THEN 'expired' ELSE f.status END AS final_status
    FROM final_failures f
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
    -- suppression_events (0004) for DSNs, complaints and manual decisions
    SELECT 'dsn:' || c.report_hash || ':' || c.position AS event_id,
           coalesce(c.original_recipient, r.verp_recipient, c.recipient) AS raw_address,
           coalesce(c.last_attempt_date, r.report_date, r.arrival_date, r.ingested_at) AS occurred_at,
           CASE c.action WHEN 'delivered' THEN 'success' ELSE 'failure' END AS outcome,
           c.reason, c.category, c.rule_id, c.status AS status_code,
           TRY_CAST(c.reply_code AS INTEGER) AS reply_code, c.diagnostic,
           (c.action = 'failed'
            AND coalesce(left(c.status, 1), left(c.reply_code, 1), '5') = '5') AS permanent,
           CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
           CAST(NULL AS VARCHAR) AS attempt_reason
    FROM bounce_recipients c
    JOIN bounce_reports r USING (report_hash)
    WHERE (r.kind = 'bounce' AND c.action = 'failed')
       OR (r.kind = 'delivered' AND c.action = 'delivered')
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
           'manual_' || m.action, 'manual', 'manual', 'manual:' || m.action, NULL, NULL,
           NULL, true, m.expires_at, m.note, NULL
    FROM suppression_manual m
),
all_events AS (
    SELECT *,
           suppression_verdict(outcome, reason, attempt_reason, diagnostic, permanent,
                               hard_reasons, sender_side_reasons, local_network_phrases) AS verdict
    FROM (SELECT * FROM log_events
          UNION ALL
          SELECT * FROM other_events WHERE occurred_at <= as_of AND outcome <> 'success')
),
ev AS (
    SELECT e.event_id, e.occurred_at, e.verdict, e.reason, e.category, e.rule_id,
           e.status_code, e.reply_code, e.diagnostic, e.expires_at, e.note,
           suppression_usable_address(e.raw_address, n.address, n.problem) AS address
    FROM all_events e
    LEFT JOIN suppression_addresses n ON n.raw = e.raw_address
    WHERE e.verdict NOT IN ('ignored', 'sender_side', 'success')
      AND suppression_usable_address(e.raw_address, n.address, n.problem) IS NOT NULL
),
successes AS (
    -- the latest success per address: log outcomes, and "delivered" DSNs
    SELECT address, max(success_at) AS success_at
    FROM (SELECT suppression_usable_address(s.raw_address, n.address, n.problem) AS address,
                 s.success_at
          FROM (SELECT * FROM log_successes
                UNION ALL
                SELECT raw_address, occurred_at FROM other_events
                WHERE outcome = 'success' AND occurred_at <= as_of) s
          LEFT JOIN suppression_addresses n ON n.raw = s.raw_address)
    WHERE address IS NOT NULL
    GROUP BY address
),
resets AS (
    SELECT g.address, g.removed_at, w.success_at, g.interesting
    FROM (SELECT address,
                 max(occurred_at) FILTER (WHERE verdict = 'manual_remove') AS removed_at,
                 bool_or(verdict <> 'manual_remove') AS interesting
          FROM ev GROUP BY address) g
    LEFT JOIN successes w ON w.address = g.address
    WHERE g.interesting
),
live AS (
    -- evidence still standing: after the last manual removal; hard, soft and manual evidence
    -- also after the last success (a delivery proves the mailbox works now)
    SELECT ev.*, r.success_at, r.removed_at
    FROM ev JOIN resets r USING (address)
    WHERE r.interesting
      AND ev.verdict IN ('complaint', 'hard', 'soft', 'manual_add')
      AND ev.occurred_at > coalesce(r.removed_at, '-infinity'::TIMESTAMPTZ)
      AND (ev.verdict = 'complaint' OR ev.occurred_at > coalesce(r.success_at, '-infinity'::TIMESTAMPTZ))
),
soft_days AS (
    -- soft failures count once per address and UTC day (as GNU Mailman's bounce score does),
    -- so a burst of retries or one failure seen in both the log and its DSN counts once
    SELECT address, date_trunc('day', occurred_at) AS day, max(occurred_at) AS last_at
    FROM live WHERE verdict = 'soft' GROUP BY ALL
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
grounds AS (
    SELECT address, verdict,
           min(occurred_at) AS first_evidence, max(occurred_at) AS last_evidence, count(*) AS evidence_count,
           list(event_id ORDER BY occurred_at, event_id) AS event_ids,
           arg_max(reason, (occurred_at, event_id)) AS reason, arg_max(category, (occurred_at, event_id)) AS category,
           arg_max(rule_id, (occurred_at, event_id)) AS rule_id, arg_max(status_code, (occurred_at, event_id)) AS status_code,
           arg_max(reply_code, (occurred_at, event_id)) AS reply_code, arg_max(diagnostic, (occurred_at, event_id)) AS diagnostic,
           arg_max(expires_at, (occurred_at, event_id)) AS manual_expires_at, arg_max(note, (occurred_at, event_id)) AS note
    FROM live GROUP BY address, verdict
),
candidates AS (
    SELECT g.*,
           CASE g.verdict WHEN 'complaint' THEN 1 WHEN 'hard' THEN 2 WHEN 'manual_add' THEN 3 ELSE 4 END AS priority,
           CASE g.verdict WHEN 'soft' THEN t.triggered_at ELSE g.first_evidence END AS suppressed_at,
           CASE g.verdict
                WHEN 'complaint' THEN NULL
                WHEN 'hard' THEN CASE WHEN hard_expiry_days > 0
                                      THEN g.last_evidence + to_days(CAST(hard_expiry_days AS INTEGER)) END
                WHEN 'manual_add' THEN g.manual_expires_at
                ELSE t.triggered_at + to_days(CAST(soft_expiry_days AS INTEGER)) END AS expires_at
    FROM grounds g
    LEFT JOIN soft_trigger t ON g.verdict = 'soft' AND t.address = g.address
),
ranked AS (
    SELECT *,
           suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of) AS active,
           row_number() OVER (PARTITION BY address
                              ORDER BY (suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of)) DESC,
                                       priority, last_evidence DESC) AS rn
    FROM candidates
),
addresses AS (
    SELECT r.address, r.removed_at, r.success_at FROM resets r WHERE r.interesting
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
FROM addresses a
LEFT JOIN ranked k ON k.address = a.address AND k.rn = 1
LEFT JOIN suppression_never nv ON nv.entry = a.address
LEFT JOIN suppression_never nd ON nd.entry = '@' || split_part(a.address, '@', -1)
LEFT JOIN suppression_role_names rn_
       ON rn_.local_part = lower(split_part(split_part(a.address, '@', 1), '+', 1));
