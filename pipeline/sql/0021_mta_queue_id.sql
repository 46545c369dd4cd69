-- The reporting MTA's queue id of a bounce's returned message (issue 11, item 5), whatever the
-- MTA: X-Postfix-Queue-ID where Postfix's bounce(8) gives one (postfix_queue_id, kept as it
-- was), else the "id" clause (RFC 5321 section 4.4) of the topmost Received: of the returned
-- message whose "by" host is the Reporting-MTA: Exim and Sendmail name their queue id only
-- there (parsers/bounces/received.py). bounce_deliveries (pipeline/sql/views/20_bounces.sql)
-- links a bounce to the logged message by it.
-- Reports stored before this migration: Postfix's get their X-Postfix-Queue-ID; the others
-- stay NULL (the report's bytes are not kept, and ingesting the same message again adds
-- nothing), and are linked by Message-ID as before.
ALTER TABLE bounce_reports ADD COLUMN mta_queue_id VARCHAR;
UPDATE bounce_reports SET mta_queue_id = postfix_queue_id WHERE postfix_queue_id IS NOT NULL;
