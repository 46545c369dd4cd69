-- A recipient still deferred when qmgr gave its message up ("status=expired, returned to
-- sender") has expired: its final reason is `expired` (soft), whatever its last deferral said;
-- the last deferral's classification stays available as last_attempt_*.
CREATE OR REPLACE VIEW recipient_outcomes AS
SELECT * EXCLUDE (rn, status, reason, category, hard, rule_id, expired_at),
       CASE WHEN expired THEN 'expired' ELSE status END AS status,
       CASE WHEN expired THEN 'expired' ELSE reason END AS reason,
       CASE WHEN expired THEN 'message-expired' ELSE category END AS category,
       CASE WHEN expired THEN false ELSE hard END AS hard,
       CASE WHEN expired THEN 'postfix-queue-expired' ELSE rule_id END AS rule_id,
       status AS last_attempt_status, reason AS last_attempt_reason,
       rule_id AS last_attempt_rule_id, expired_at
FROM (
    SELECT d.*, m.expired_at,
           (d.status = 'deferred' AND m.expired_at IS NOT NULL) AS expired,
           row_number() OVER (
               PARTITION BY d.message_key, d.recipient
               ORDER BY d.logged_at DESC, d.line_offset DESC) AS rn
    FROM deliveries d LEFT JOIN message_log m USING (message_key)
) WHERE rn = 1;
