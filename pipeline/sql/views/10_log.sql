-- Views and macros are not migrations: pipeline/store.py runs the files of this folder, in
-- name order, after the migrations whenever their text changed (schema_views keeps the
-- checksum). Each object has this one definition; change it here. Every definition starts a
-- line with CREATE OR REPLACE VIEW or CREATE OR REPLACE MACRO (a read-only open of an older
-- store makes them TEMP).
--
-- The log views: messages, delivery attempts, each recipient's outcome, rejections, AUTH
-- failures, other events and the line accounting, over the *_log tables (0001 and later).

CREATE OR REPLACE VIEW line_accounting AS
SELECT c.path, a.source_key, a.outcome, a.rule, sum(a.lines)::BIGINT AS lines
FROM line_accounting_log a LEFT JOIN checkpoints c USING (source_key)
GROUP BY ALL;

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

-- The views are SELECT * over their tables; recreated with the same text so that they expose
-- the new column whatever DuckDB does with a view bound before an ALTER.
CREATE OR REPLACE VIEW rejections AS
SELECT r.* EXCLUDE (source_key, line_offset), coalesce(c.log_format, 'postfix') AS mta
FROM rejection_log r LEFT JOIN checkpoints c ON c.source_key = r.source_key;

CREATE OR REPLACE VIEW auth_failures AS
SELECT a.* EXCLUDE (source_key, line_offset), coalesce(c.log_format, 'postfix') AS mta
FROM auth_failure_log a LEFT JOIN checkpoints c ON c.source_key = a.source_key;

CREATE OR REPLACE VIEW events AS
SELECT e.* EXCLUDE (source_key, line_offset), coalesce(c.log_format, 'postfix') AS mta
FROM event_log e LEFT JOIN checkpoints c ON c.source_key = e.source_key;

-- The final word per recipient of each message: its last attempt in log order (`seq`).
-- A recipient still deferred when its MTA gave the message up (Postfix's qmgr "status=expired,
-- returned to sender", Sendmail's "Cannot send message for" DSN: message_log.expired_at) is
-- `expired`: its final reason is `expired` (soft), whatever its last deferral said, and that
-- deferral's classification stays available as last_attempt_*. An address an MTA gave up with
-- a line of its own that logged no code (Exim's "** a@b: retry timeout exceeded", a delivery
-- row with status 'expired' and no dsn or reply) reports the codes of its last deferral that
-- had a reply, as Exim's own DSN does ("Diagnostic-Code: smtp; 450 4.2.0 ...: retry timeout
-- exceeded"); the expiry row itself stays as it is in `deliveries`.
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
    SELECT *, (status = 'expired' AND reply_code IS NULL AND dsn IS NULL
               AND last_reply IS NOT NULL) AS gave_up
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
