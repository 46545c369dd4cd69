-- Which MTA logged each row (issue 11): the log format its source was read as
-- (parsers/formats.py: postfix, exim), kept once per source in checkpoints.log_format and shown
-- as `mta` in the log views. Sources read before this migration: 'exim' where their messages
-- have Exim's queue ids (two '-', RFC-less but unmistakable: Postfix ids never have one),
-- else 'postfix'. Mailbox offsets (mbox:...) have no format.
ALTER TABLE checkpoints ADD COLUMN log_format VARCHAR;
UPDATE checkpoints SET log_format = 'exim'
FROM (SELECT DISTINCT source_key FROM message_log WHERE queue_id LIKE '%-%-%') e
WHERE checkpoints.source_key = e.source_key;
UPDATE checkpoints SET log_format = 'postfix'
WHERE log_format IS NULL AND NOT starts_with(source_key, 'mbox:');

CREATE OR REPLACE VIEW messages AS
SELECT m.message_key, m.host, m.queue_id, m.origin, m.message_id, m.sender, m.size, m.nrcpt,
       m.client_name, m.client_ip, m.client_port, m.sasl_method, m.sasl_username,
       m.orig_queue_id, m.orig_message_key, m.bounce_of_key, m.notification_kind,
       m.first_seen, m.arrived_at, m.removed_at, m.expired_at, m.last_seen,
       m.held, m.discarded, m.rejected, coalesce(c.log_format, 'postfix') AS mta
FROM message_log m
LEFT JOIN checkpoints c ON c.source_key = m.source_key;

CREATE OR REPLACE VIEW deliveries AS
SELECT d.host, d.queue_id, m.message_id, m.sender, d.recipient, d.orig_recipient,
       d.relay, d.relay_host, d.relay_ip, d.relay_port, d.status, d.dsn, d.reply_code,
       d.smtp_stage, d.diagnostic, d.remote_host,
       d.delay, d.delay_before_queue, d.delay_in_queue, d.delay_connect, d.delay_transmit,
       d.conn_use, d.logged_at, d.service, d.instance,
       d.reason, d.category, d.hard, d.rule_id, d.blocklist,
       lower(split_part(coalesce(d.recipient, ''), '@', -1)) AS recipient_domain,
       d.message_key, m.client_ip, m.sasl_username, m.size, d.line_offset, d.seq,
       coalesce(c.log_format, 'postfix') AS mta
FROM delivery_log d
LEFT JOIN message_log m USING (message_key)
LEFT JOIN checkpoints c ON c.source_key = d.source_key;

-- As 0017 (its columns follow deliveries', mta included).
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
           row_number() OVER (PARTITION BY d.message_key, d.recipient ORDER BY d.seq DESC) AS rn
    FROM deliveries d LEFT JOIN message_log m USING (message_key)
) WHERE rn = 1;

CREATE OR REPLACE VIEW rejections AS
SELECT r.* EXCLUDE (source_key, line_offset), coalesce(c.log_format, 'postfix') AS mta
FROM rejection_log r LEFT JOIN checkpoints c ON c.source_key = r.source_key;
CREATE OR REPLACE VIEW auth_failures AS
SELECT a.* EXCLUDE (source_key, line_offset), coalesce(c.log_format, 'postfix') AS mta
FROM auth_failure_log a LEFT JOIN checkpoints c ON c.source_key = a.source_key;
CREATE OR REPLACE VIEW events AS
SELECT e.* EXCLUDE (source_key, line_offset), coalesce(c.log_format, 'postfix') AS mta
FROM event_log e LEFT JOIN checkpoints c ON c.source_key = e.source_key;
