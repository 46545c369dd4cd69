-- What a real Exim 4.96 showed (tests/test_e2e_exim.py): two views that assumed Postfix's way.
--
-- 1. An address Exim gives up logs its own line, "** a@b: retry timeout exceeded" (a delivery
--    row with status 'expired' and no reply: parsers/eximlog.py), right after the attempt that
--    failed once more. Postfix gives a whole message up instead (qmgr "status=expired"), and
--    its expired outcome keeps the codes of the last deferral (0006). The Exim outcome now
--    keeps them too: its dsn, reply_code, smtp_stage and remote_host come from the recipient's
--    last deferral that had a reply, as in Exim's own DSN ("Diagnostic-Code: smtp; 450 4.2.0
--    ...: retry timeout exceeded"); the expiry row itself is unchanged in `deliveries`.
-- 2. bounce_deliveries flagged the last attempt by its time, and Exim logs that deferral and the
--    expiry in the same second: both were "last". The log order (seq, 0017) decides, as it
--    does for recipient_outcomes.

-- As 0018, with the codes of an expiry that logged none taken from the last deferral.
CREATE OR REPLACE VIEW recipient_outcomes AS
SELECT * EXCLUDE (rn, status, reason, category, hard, rule_id, expired_at, last_reply)
         REPLACE (
             CASE WHEN gave_up THEN last_reply.dsn ELSE dsn END AS dsn,
             CASE WHEN gave_up THEN last_reply.reply_code ELSE reply_code END AS reply_code,
             CASE WHEN gave_up THEN last_reply.smtp_stage ELSE smtp_stage END AS smtp_stage,
             CASE WHEN gave_up THEN last_reply.remote_host ELSE remote_host END AS remote_host
         ),
       CASE WHEN expired THEN 'expired' ELSE status END AS status,
       CASE WHEN expired THEN 'expired' ELSE reason END AS reason,
       CASE WHEN expired THEN 'message-expired' ELSE category END AS category,
       CASE WHEN expired THEN false ELSE hard END AS hard,
       CASE WHEN expired THEN 'postfix-queue-expired' ELSE rule_id END AS rule_id,
       status AS last_attempt_status, reason AS last_attempt_reason,
       rule_id AS last_attempt_rule_id, expired_at
FROM (
    SELECT *, (status = 'expired' AND reply_code IS NULL AND last_reply IS NOT NULL) AS gave_up
    FROM (
        SELECT d.*, m.expired_at,
               (d.status = 'deferred' AND m.expired_at IS NOT NULL) AS expired,
               row_number() OVER w AS rn,
               first_value(CASE WHEN d.status = 'deferred' AND d.reply_code IS NOT NULL THEN
                   {'dsn': d.dsn, 'reply_code': d.reply_code, 'smtp_stage': d.smtp_stage,
                    'remote_host': d.remote_host} END IGNORE NULLS) OVER (
                   w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last_reply
        FROM deliveries d LEFT JOIN message_log m USING (message_key)
        WINDOW w AS (PARTITION BY d.message_key, d.recipient ORDER BY d.seq DESC)
    )
) WHERE rn = 1;

-- As 0005, with the last attempt the one read last (seq) instead of the latest time.
CREATE OR REPLACE VIEW bounce_deliveries AS
WITH failed AS (
    SELECT r.report_hash, c.position, r.source, r.message_index, r.report_date, r.agent,
           r.reporting_mta, c.recipient,
           coalesce(c.original_recipient, r.verp_recipient) AS original_recipient,
           c.status, c.reply_code, c.diagnostic, c.reason, c.category, c.hard, c.rule_id,
           r.original_message_id, r.postfix_queue_id, r.envelope_id, r.arrival_date
    FROM bounce_recipients c
    JOIN bounce_reports r USING (report_hash)
    WHERE r.kind = 'bounce' AND c.action = 'failed'
),
candidates AS (
    SELECT f.report_hash, f.position, m.message_key, m.first_seen, 'queue_id' AS link_method,
           1 AS preference
    FROM failed f
    JOIN messages m
      ON m.queue_id = f.postfix_queue_id
     AND (f.reporting_mta IS NULL
          OR lower(split_part(f.reporting_mta, '.', 1)) = lower(split_part(m.host, '.', 1)))
     AND coalesce(f.arrival_date, f.report_date) IS NOT NULL
     AND coalesce(f.arrival_date, f.report_date)
         BETWEEN m.first_seen - INTERVAL 1 HOUR
             AND coalesce(m.removed_at, m.last_seen) + INTERVAL 1 HOUR
    UNION ALL
    SELECT f.report_hash, f.position, m.message_key, m.first_seen, 'message_id', 2
    FROM failed f
    JOIN messages m ON trim(m.message_id, '<> ') = trim(f.original_message_id, '<> ')
),
scored AS (
    SELECT c.*, EXISTS (
        SELECT 1 FROM delivery_log d JOIN failed f
          ON f.report_hash = c.report_hash AND f.position = c.position
        WHERE d.message_key = c.message_key AND lower(d.recipient) = lower(f.recipient)
    ) AS has_delivery
    FROM candidates c
),
ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY report_hash, position
        ORDER BY preference, has_delivery DESC, first_seen DESC) AS rn
    FROM scored
)
SELECT f.*, k.link_method, k.message_key, m.host, m.queue_id, m.message_id, m.sender,
       d.logged_at AS delivery_logged_at, d.status AS delivery_status, d.dsn AS delivery_dsn,
       d.reply_code AS delivery_reply_code, d.relay_host AS delivery_relay_host,
       d.diagnostic AS delivery_diagnostic, d.reason AS delivery_reason,
       d.line_offset AS delivery_line_offset,
       d.seq IS NOT NULL AND d.seq = max(d.seq) OVER (
           PARTITION BY f.report_hash, f.position) AS is_last_attempt
FROM failed f
LEFT JOIN ranked k ON k.report_hash = f.report_hash AND k.position = f.position AND k.rn = 1
LEFT JOIN messages m ON m.message_key = k.message_key
LEFT JOIN deliveries d
       ON d.message_key = k.message_key
      AND (lower(d.recipient) = lower(f.recipient)
           OR lower(d.orig_recipient) = lower(f.recipient)
           OR lower(d.recipient) = lower(f.original_recipient));
