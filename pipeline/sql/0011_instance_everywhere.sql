-- The Postfix instance on every log table, as delivery_log has had it since 0001: the part of
-- the syslog tag before the last slash ("postfix-out" of "postfix-out/smtpd[123]",
-- "postfix/submission" of "postfix/submission/smtpd"). On a multi-instance host each instance
-- logs under its own syslog_name (postconf(5) syslog_name; postmulti(1) and
-- MULTI_INSTANCE_README: "postfix-<name>" by convention), so a rejection, a SASL failure or an
-- event can only be told apart by instance with this column.
-- Rows stored before this migration keep NULL (their tag was not kept); new rows always have it
-- (a line is Postfix's only when its tag has a slash: parsers/postfix.py is_postfix_program).
ALTER TABLE rejection_log ADD COLUMN instance VARCHAR;
ALTER TABLE auth_failure_log ADD COLUMN instance VARCHAR;
ALTER TABLE event_log ADD COLUMN instance VARCHAR;
