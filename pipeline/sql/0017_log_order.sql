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
