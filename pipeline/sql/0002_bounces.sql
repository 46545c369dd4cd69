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
