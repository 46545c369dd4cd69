-- Sending-platform events (Amazon SES, SendGrid, Mailgun, Postmark, SparkPost, Mandrill, Postal)
-- stored on the bounce path: pipeline/events.py writes one bounce_reports row per provider event
-- (report_hash = SHA-256 of provider NUL event id, so re-ingesting an event adds nothing) and one
-- bounce_recipients row per recipient, classified by pipeline/classify.py like any DSN.
--   bounce_reports.source          the provider (amazonses, sendgrid, ...)
--   bounce_reports.agent           the same
--   bounce_reports.kind            bounce | delayed | delivered | complaint, as for mail, and
--                                  unsubscribe | suppressed | rejected, which only events have:
--                                  an unsubscribe; a send the provider refused because the address
--                                  is on its own suppression list (the bounce or complaint that put
--                                  it there was its own event: counting it again would count one
--                                  failure twice); a send the provider refused for another reason
--                                  (a virus, a policy). None of the three is in `bounces`.
--   bounce_reports.message_index   1-based position of the event in its file; "offset" 0-based
--   bounce_recipients.action       failed | delayed | delivered (RFC 3464 section 2.3.3 words)
-- The suppression policy (0004 and later) reads kind = 'bounce' / action = 'failed' as failures
-- and kind = 'delivered' / action = 'delivered' as successes, so a provider's delivery clears an
-- address's soft failures as a delivered DSN does; deferrals are not evidence (as in the log).
ALTER TABLE bounce_reports ADD COLUMN provider_event_id VARCHAR;    -- the provider's event id (or one derived, see pipeline/events.py)
ALTER TABLE bounce_reports ADD COLUMN provider_event VARCHAR;       -- the provider's event type, as it names it
ALTER TABLE bounce_reports ADD COLUMN provider_message_id VARCHAR;  -- the provider's id of the message
ALTER TABLE bounce_reports ADD COLUMN input_path VARCHAR;           -- the file the event was read from
ALTER TABLE bounce_recipients ADD COLUMN provider_category VARCHAR; -- the provider's own classification

CREATE OR REPLACE VIEW bounces AS
SELECT r.report_hash, r.source, r.message_index, r.report_date, r.agent, r.reporting_mta,
       c.recipient, coalesce(c.original_recipient, r.verp_recipient) AS original_recipient,
       c.action, c.status, c.reply_code, c.diagnostic_type, c.diagnostic, c.remote_mta,
       c.last_attempt_date, c.hint, c.reason, c.category, c.hard, c.rule_id, c.blocklist,
       r.original_message_id, r.envelope_id, r.postfix_queue_id, r.postfix_sender,
       r.verp_recipient, r.provider_event, c.provider_category, r.provider_event_id
FROM bounce_recipients c
JOIN bounce_reports r USING (report_hash)
WHERE r.kind = 'bounce' AND c.action = 'failed';

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
CREATE VIEW provider_events AS
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
CREATE VIEW provider_deliveries AS
SELECT * FROM provider_events WHERE kind IN ('delivered', 'delayed');
