-- Outcomes follow the log, not the clock (issue 12 item 5). A recipient's attempts were ordered
-- by logged_at, then line_offset: a delivery logged after a deferral but stamped earlier (the
-- repeated hour when daylight saving time ends, with RFC 3164 local times, or an NTP step
-- back) left the final word "deferred" although the mail was delivered. Now `seq` orders them:
-- a number the ingestor gives each delivery row in the order it read them (line order within a
-- source; sources in the order they were read, rotated files before the live one), from one
-- sequence per store, in the transaction of the rows. Rows from before this migration are
-- numbered in their old order (logged_at, line_offset), so their outcomes do not change.
--
-- Re-created with `seq` as the order of attempts: the deliveries view (seq is a new column),
-- recipient_outcomes (0006), and the macros that find a final attempt: 0009's
-- suppression_final_failure_ids and suppression_latest_successes, 0010's
-- suppression_scoped_resets and suppression_scoped_evidence (their bodies otherwise as there).
-- New rows draw from delivery_seq, which starts at 2^40, after any number the backfill gives;
-- rows inserted without a seq (by hand, by other tools) get one from it too.
CREATE SEQUENCE delivery_seq START WITH 1099511627776;
ALTER TABLE delivery_log ADD COLUMN seq BIGINT;
UPDATE delivery_log SET seq = o.n
FROM (SELECT rowid AS rid, row_number() OVER (ORDER BY logged_at, line_offset NULLS FIRST, rowid) AS n
      FROM delivery_log) o
WHERE delivery_log.rowid = o.rid;
ALTER TABLE delivery_log ALTER COLUMN seq SET DEFAULT nextval('delivery_seq');

CREATE OR REPLACE VIEW deliveries AS
SELECT d.host, d.queue_id, m.message_id, m.sender, d.recipient, d.orig_recipient,
       d.relay, d.relay_host, d.relay_ip, d.relay_port, d.status, d.dsn, d.reply_code,
       d.smtp_stage, d.diagnostic, d.remote_host,
       d.delay, d.delay_before_queue, d.delay_in_queue, d.delay_connect, d.delay_transmit,
       d.conn_use, d.logged_at, d.service, d.instance,
       d.reason, d.category, d.hard, d.rule_id, d.blocklist,
       lower(split_part(coalesce(d.recipient, ''), '@', -1)) AS recipient_domain,
       d.message_key, m.client_ip, m.sasl_username, m.size, d.line_offset, d.seq
FROM delivery_log d
LEFT JOIN message_log m USING (message_key);

-- As 0006: a recipient still deferred when qmgr gave its message up has expired.
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

-- Final attempts that failed: no later attempt (a higher seq) of the message's recipient.
CREATE OR REPLACE MACRO suppression_final_failure_ids(as_of) AS TABLE
SELECT f.rowid AS row_id
FROM delivery_log f
ANTI JOIN delivery_log l
       ON l.message_key = f.message_key AND l.recipient = f.recipient
      AND l.seq > f.seq
WHERE f.recipient IS NOT NULL AND f.status IN ('bounced', 'expired', 'deferred')
  AND f.logged_at <= as_of;

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

-- As 0010, later attempts by seq.
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

-- As 0010, later attempts by seq.
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
