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
