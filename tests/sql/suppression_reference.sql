-- The suppression policy by its straightforward definition, in one query: the specification the
-- store's evaluation (pipeline/sql/views/30_suppressions.sql) is checked against
-- (tests/test_suppressions_fast.py, tests/test_suppressions.py) and the baseline
-- bench/bench_suppressions.py --reference times. Not part of mtalens: tests/suppression_reference.py
-- creates it as a temporary macro of a test's connection.
--
-- It is the policy as migration 0004 first defined it, except that the "latest evidence" fields
-- break ties between events of the same instant by event id (0004's arg_max(..., occurred_at)
-- picked one at random). It reads its evidence through suppression_verdicts, as the store does.
CREATE OR REPLACE TEMP MACRO suppression_decisions_reference(as_of, soft_threshold, soft_window_days, soft_expiry_days,
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
