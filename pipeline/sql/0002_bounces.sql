-- Bounce reports (DSNs, prose bounces), their recipients, and ARF complaints
-- (pipeline/bounces.py writes them; parsers/bounces decodes them).
-- A report is keyed by the SHA-256 of its bytes (line endings normalised): re-ingesting the same
-- message adds nothing.

CREATE TABLE bounce_reports (
    report_hash          VARCHAR PRIMARY KEY,
    source               VARCHAR NOT NULL,
    message_index        INTEGER NOT NULL,      -- 1-based inside an mbox
    "offset"             BIGINT NOT NULL,
    kind                 VARCHAR NOT NULL,      -- bounce | delayed | delivered | complaint | autoreply | not_bounce
    agent                VARCHAR NOT NULL,      -- decoder that read it
    report_message_id    VARCHAR,
    subject              VARCHAR,
    report_from          VARCHAR,
    report_to            VARCHAR,               -- envelope/To of the report (maybe a VERP address)
    verp_recipient       VARCHAR,               -- recipient decoded from a VERP report_to
    report_date          TIMESTAMPTZ,
    reporting_mta        VARCHAR,
    received_from_mta    VARCHAR,
    arrival_date         TIMESTAMPTZ,
    envelope_id          VARCHAR,               -- Original-Envelope-Id (RFC 3464 section 2.2.1)
    postfix_queue_id     VARCHAR,               -- X-Postfix-Queue-ID
    postfix_sender       VARCHAR,               -- X-Postfix-Sender
    original_message_id  VARCHAR,               -- Message-ID of the returned message
    original_from        VARCHAR,
    original_to          VARCHAR,
    original_subject     VARCHAR,
    original_date        TIMESTAMPTZ,
    ingested_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE bounce_recipients (
    report_hash          VARCHAR NOT NULL,
    position             INTEGER NOT NULL,
    recipient            VARCHAR NOT NULL,
    original_recipient   VARCHAR,
    action               VARCHAR,               -- RFC 3464 section 2.3.3
    status               VARCHAR,               -- RFC 3463 enhanced status code
    reply_code           VARCHAR,
    diagnostic_type      VARCHAR,
    diagnostic           VARCHAR,
    remote_mta           VARCHAR,
    last_attempt_date    TIMESTAMPTZ,
    will_retry_until     TIMESTAMPTZ,
    hint                 VARCHAR,               -- decoder finding, e.g. expired
    reason               VARCHAR,               -- pipeline/classify.py
    category             VARCHAR,
    hard                 BOOLEAN,
    rule_id              VARCHAR,
    blocklist            VARCHAR,
    PRIMARY KEY (report_hash, position)
);

CREATE TABLE complaint_reports (
    report_hash          VARCHAR PRIMARY KEY,
    feedback_type        VARCHAR NOT NULL,      -- RFC 5965 section 3.1
    user_agent           VARCHAR,
    version              VARCHAR,
    original_mail_from   VARCHAR,
    original_rcpt_to     VARCHAR[],
    source_ip            VARCHAR,
    reporting_mta        VARCHAR,
    reported_domain      VARCHAR[],
    arrival_date         TIMESTAMPTZ,
    incidents            INTEGER
);

-- Delivery failures, one row per recipient: delay notices and successes are not failures.
CREATE VIEW bounces AS
SELECT r.report_hash, r.source, r.message_index, r.report_date, r.agent, r.reporting_mta,
       c.recipient, coalesce(c.original_recipient, r.verp_recipient) AS original_recipient,
       c.action, c.status, c.reply_code, c.diagnostic_type, c.diagnostic, c.remote_mta,
       c.last_attempt_date, c.hint, c.reason, c.category, c.hard, c.rule_id, c.blocklist,
       r.original_message_id, r.envelope_id, r.postfix_queue_id, r.postfix_sender,
       r.verp_recipient
FROM bounce_recipients c
JOIN bounce_reports r USING (report_hash)
WHERE r.kind = 'bounce' AND c.action = 'failed';

-- Complaints, one row per complained-about recipient (or one with NULL when none is given).
CREATE VIEW complaints AS
SELECT r.report_hash, r.source, r.message_index, r.report_date, q.feedback_type, q.user_agent,
       rcpt.recipient, q.original_mail_from, q.source_ip, q.reporting_mta, q.reported_domain,
       q.arrival_date, q.incidents, r.original_message_id, r.verp_recipient
FROM complaint_reports q
JOIN bounce_reports r USING (report_hash)
LEFT JOIN (SELECT report_hash, unnest(original_rcpt_to) AS recipient FROM complaint_reports) rcpt
       USING (report_hash);
