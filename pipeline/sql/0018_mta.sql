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
