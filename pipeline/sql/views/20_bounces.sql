-- Views and macros are not migrations: pipeline/store.py runs the files of this folder, in
-- name order, after the migrations whenever their text changed (schema_views keeps the
-- checksum). Each object has this one definition; change it here. Every definition starts a
-- line with CREATE OR REPLACE VIEW or CREATE OR REPLACE MACRO (a read-only open of an older
-- store makes them TEMP).
--
-- The bounce views: failed recipients of decoded bounce mail and of sending platforms' events
-- (bounces, complaints, provider_events, provider_deliveries), and bounce_deliveries, each
-- failed recipient with the logged message and attempts it is about.

-- Delivery failures, one row per recipient: delay notices and successes are not failures.
CREATE OR REPLACE VIEW bounces AS
SELECT r.report_hash, r.source, r.message_index, r.report_date, r.agent, r.reporting_mta,
       c.recipient, coalesce(c.original_recipient, r.verp_recipient) AS original_recipient,
       c.action, c.status, c.reply_code, c.diagnostic_type, c.diagnostic, c.remote_mta,
       c.last_attempt_date, c.hint, c.reason, c.category, c.hard, c.rule_id, c.blocklist,
       r.original_message_id, r.envelope_id, r.postfix_queue_id, r.postfix_sender,
       r.verp_recipient, r.provider_event, c.provider_category, r.provider_event_id,
       r.mta_queue_id
FROM bounce_recipients c
JOIN bounce_reports r USING (report_hash)
WHERE r.kind = 'bounce' AND c.action = 'failed';

-- Complaints, one row per complained-about recipient (or one with NULL when none is given).
CREATE OR REPLACE VIEW complaints AS
SELECT r.report_hash, r.source, r.message_index, r.report_date, q.feedback_type, q.user_agent,
       rcpt.recipient, q.original_mail_from, q.source_ip, q.reporting_mta, q.reported_domain,
       q.arrival_date, q.incidents, r.original_message_id, r.verp_recipient, r.provider_event,
       r.provider_event_id
FROM complaint_reports q
JOIN bounce_reports r USING (report_hash)
LEFT JOIN (SELECT report_hash, unnest(original_rcpt_to) AS recipient FROM complaint_reports) rcpt
       USING (report_hash);

-- Every provider event, one row per recipient, whatever its kind (deliveries, deferrals,
-- unsubscribes and the provider's own suppressions included).
CREATE OR REPLACE VIEW provider_events AS
SELECT r.source AS provider, r.provider_event, r.kind, r.provider_event_id, r.provider_message_id,
       r.report_date AS occurred_at, c.recipient, c.action, c.status, c.reply_code, c.diagnostic,
       c.remote_mta, c.provider_category, c.reason, c.category, c.hard, c.rule_id,
       r.original_message_id, r.original_from AS sender, r.input_path, r.message_index,
       r.report_hash
FROM bounce_reports r
JOIN bounce_recipients c USING (report_hash)
WHERE r.provider_event_id IS NOT NULL;

-- Deliveries and deferrals reported by providers (what the suppression policy reads as
-- successes, and deferrals, which it does not count).
CREATE OR REPLACE VIEW provider_deliveries AS
SELECT * FROM provider_events WHERE kind IN ('delivered', 'delayed');

-- Bounces linked to what the logs saw: each failed recipient of a bounce report (the rows of
-- the `bounces` view, 0002) with the logged message it is about and that message's delivery
-- attempt(s) for the same recipient.
--
-- Which message (first match wins, `link_method` says which):
--   1. queue_id: the reporting MTA's queue id (coalesce(postfix_queue_id, mta_queue_id):
--      X-Postfix-Queue-ID, which Postfix bounce(8) adds to the per-message DSN fields, else the
--      "id" of the returned message's topmost Received: by the Reporting-MTA, where Exim and
--      Sendmail name theirs, migration 0021) equals messages.queue_id on the host named by
--      Reporting-MTA (Postfix writes $myhostname there, Sendmail $j, Exim primary_hostname;
--      syslog usually logs the short name, so the first DNS labels are compared; Exim's own
--      main log names no host at all: its messages have host '' and match any), and the
--      report's Arrival-Date (RFC 3464 section 2.2.5: when the message entered that MTA; else
--      the report's Date, as in Exim's DSNs, which have no Arrival-Date) falls in the
--      message's lifetime, within an hour: Postfix reuses short queue IDs. Exim's and
--      Sendmail's ids are unique by construction (Exim's encodes the arrival's second, its
--      fraction and the receiving process id: spec chapter "How Exim receives and delivers
--      mail", section "Message identification"; Sendmail's, queue.c assign_queueid, the
--      arrival's year (modulo 60) to second, a sequence number and the process id), so for
--      their messages (messages.mta) the window is a day on either side: a log read with the
--      wrong --timezone (zone offsets are at most 14 hours) still links.
--   2. message_id: the returned message's Message-ID equals messages.message_id (angle
--      brackets ignored: the log drops them); when several
--      logged messages carry it (relayed through two hosts), the one with a delivery row for the
--      recipient, then the latest, is taken.
-- Which deliveries: every row of `deliveries` of that message whose recipient (or orig_to) is
-- the bounced address or its Original-Recipient; one output row per attempt, the last attempt
-- flagged `is_last_attempt`: the one read last (`seq`; Exim logs a deferral and the expiry
-- after it in the same second). A bounce with no logged message keeps one row with NULL links.
CREATE OR REPLACE VIEW bounce_deliveries AS
WITH failed AS (
    SELECT r.report_hash, c.position, r.source, r.message_index, r.report_date, r.agent,
           r.reporting_mta, c.recipient,
           coalesce(c.original_recipient, r.verp_recipient) AS original_recipient,
           c.status, c.reply_code, c.diagnostic, c.reason, c.category, c.hard, c.rule_id,
           r.original_message_id, r.postfix_queue_id, r.envelope_id, r.arrival_date,
           r.mta_queue_id
    FROM bounce_recipients c
    JOIN bounce_reports r USING (report_hash)
    WHERE r.kind = 'bounce' AND c.action = 'failed'
),
candidates AS (
    SELECT f.report_hash, f.position, m.message_key, m.first_seen, 'queue_id' AS link_method,
           1 AS preference
    FROM failed f
    JOIN messages m
      ON m.queue_id = coalesce(f.postfix_queue_id, f.mta_queue_id)
     AND (f.reporting_mta IS NULL
          OR (m.mta = 'exim' AND coalesce(m.host, '') = '')
          OR lower(split_part(f.reporting_mta, '.', 1)) = lower(split_part(m.host, '.', 1)))
     AND coalesce(f.arrival_date, f.report_date) IS NOT NULL
     AND coalesce(f.arrival_date, f.report_date)
         BETWEEN m.first_seen - CASE WHEN m.mta IN ('exim', 'sendmail')
                                     THEN INTERVAL 1 DAY ELSE INTERVAL 1 HOUR END
             AND coalesce(m.removed_at, m.last_seen)
                 + CASE WHEN m.mta IN ('exim', 'sendmail')
                        THEN INTERVAL 1 DAY ELSE INTERVAL 1 HOUR END
    UNION ALL
    SELECT f.report_hash, f.position, m.message_key, m.first_seen, 'message_id', 2
    FROM failed f
    JOIN messages m ON trim(m.message_id, '<> ') = trim(f.original_message_id, '<> ')
),
delivered AS (
    -- the candidates' messages with a delivery row for the bounced recipient (a join rather
    -- than a correlated EXISTS in the select list, which Spark cannot plan: pipeline/spark.py)
    SELECT DISTINCT c.report_hash, c.position, c.message_key
    FROM candidates c
    JOIN failed f ON f.report_hash = c.report_hash AND f.position = c.position
    JOIN delivery_log d
      ON d.message_key = c.message_key AND lower(d.recipient) = lower(f.recipient)
),
scored AS (
    SELECT c.*, h.message_key IS NOT NULL AS has_delivery
    FROM candidates c
    LEFT JOIN delivered h
           ON h.report_hash = c.report_hash AND h.position = c.position
          AND h.message_key = c.message_key
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
