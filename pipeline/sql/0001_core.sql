-- mtalens core schema: Postfix log ingestion.
-- Tables ending in _log are append-mostly storage; the public contract is the views below
-- (messages, deliveries, recipient_outcomes, rejections, auth_failures, events, quarantine,
-- line_accounting). All timestamps are TIMESTAMPTZ in UTC.

-- One row per input stream, keyed by a fingerprint of its first bytes so a renamed (rotated) or
-- compressed copy of a file is recognised. The offset is committed in the same transaction as
-- the rows it covers.
CREATE TABLE checkpoints (
    source_key   VARCHAR PRIMARY KEY,
    path         VARCHAR NOT NULL,
    device       BIGINT,
    inode        BIGINT,
    fp_len       INTEGER NOT NULL,
    fp_hash      VARCHAR NOT NULL,
    "offset"     BIGINT NOT NULL,
    clock_year   INTEGER,
    clock_month  INTEGER,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- Every line read ends here as stored, ignored (rule) or quarantined (reason), one row per batch.
CREATE TABLE line_accounting_log (
    source_key  VARCHAR NOT NULL,
    outcome     VARCHAR NOT NULL,   -- stored | ignored | quarantined
    rule        VARCHAR NOT NULL,   -- ignore rule or quarantine reason; '' for stored
    lines       BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);

-- One row per message instance: (host, queue_id) within its lifetime (queue IDs are reused).
-- Rewritten (delete + insert) while the message is open; final once removed.
CREATE TABLE message_log (
    message_key        VARCHAR NOT NULL,
    host               VARCHAR NOT NULL,
    queue_id           VARCHAR NOT NULL,
    origin             VARCHAR,          -- smtpd | pickup | bounce | qmqpd | unknown
    message_id         VARCHAR,
    sender             VARCHAR,
    size               BIGINT,
    nrcpt              INTEGER,
    client_name        VARCHAR,
    client_ip          VARCHAR,
    client_port        INTEGER,
    sasl_method        VARCHAR,
    sasl_username      VARCHAR,
    orig_queue_id      VARCHAR,          -- content filter re-injection: queue id before the filter
    orig_message_key   VARCHAR,
    bounce_of_key      VARCHAR,          -- this message is a notification about that message
    notification_kind  VARCHAR,          -- non-delivery | delay | success (when bounce_of_key)
    first_seen         TIMESTAMPTZ NOT NULL,
    arrived_at         TIMESTAMPTZ,      -- qmgr "from=..." (queue active) first time
    removed_at         TIMESTAMPTZ,
    expired_at         TIMESTAMPTZ,
    last_seen          TIMESTAMPTZ NOT NULL,
    held               BOOLEAN NOT NULL DEFAULT false,
    discarded          BOOLEAN NOT NULL DEFAULT false,
    rejected           BOOLEAN NOT NULL DEFAULT false,
    source_key         VARCHAR
);

-- One row per delivery attempt (a delivery agent's "to=<...>, ... status=..." line).
CREATE TABLE delivery_log (
    message_key        VARCHAR NOT NULL,
    host               VARCHAR NOT NULL,
    queue_id           VARCHAR NOT NULL,
    logged_at          TIMESTAMPTZ NOT NULL,
    service            VARCHAR NOT NULL,  -- smtp, lmtp, local, virtual, pipe, error, discard, ...
    instance           VARCHAR,           -- postfix, postfix-out, ...
    recipient          VARCHAR,
    orig_recipient     VARCHAR,
    relay              VARCHAR,           -- as logged: host[ip]:port, local, none, ...
    relay_host         VARCHAR,
    relay_ip           VARCHAR,
    relay_port         INTEGER,
    conn_use           INTEGER,
    delay              DOUBLE,
    delay_before_queue DOUBLE,
    delay_in_queue     DOUBLE,
    delay_connect      DOUBLE,
    delay_transmit     DOUBLE,
    dsn                VARCHAR,
    status             VARCHAR NOT NULL,  -- sent, deferred, bounced, expired, deliverable, undeliverable, ...
    reply_code         INTEGER,
    smtp_stage         VARCHAR,           -- the command the reply answered (RCPT TO, end of DATA, ...)
    diagnostic         VARCHAR,
    remote_host        VARCHAR,           -- the host named in the reply ("host X[ip] said:")
    reason             VARCHAR,
    category           VARCHAR,
    hard               BOOLEAN,
    rule_id            VARCHAR,
    blocklist          VARCHAR,
    source_key         VARCHAR,
    line_offset        BIGINT
);

CREATE TABLE rejection_log (
    logged_at    TIMESTAMPTZ NOT NULL,
    host         VARCHAR NOT NULL,
    service      VARCHAR NOT NULL,        -- smtpd, postscreen, cleanup, ...
    queue_id     VARCHAR,                 -- NULL for NOQUEUE
    action       VARCHAR NOT NULL,        -- reject | defer | hold | discard | warn | filter | redirect | milter-reject
    stage        VARCHAR,                 -- RCPT, MAIL, DATA, CONNECT, HELO, END-OF-MESSAGE, header, body
    client_name  VARCHAR,
    client_ip    VARCHAR,
    reply_code   INTEGER,
    dsn          VARCHAR,
    reason       VARCHAR,                 -- the reply text
    sender       VARCHAR,
    recipient    VARCHAR,
    helo         VARCHAR,
    proto        VARCHAR,
    source_key   VARCHAR,
    line_offset  BIGINT
);

CREATE TABLE auth_failure_log (
    logged_at     TIMESTAMPTZ NOT NULL,
    host          VARCHAR NOT NULL,
    service       VARCHAR NOT NULL,
    client_name   VARCHAR,
    client_ip     VARCHAR,
    mechanism     VARCHAR,
    sasl_username VARCHAR,
    reason        VARCHAR,
    source_key    VARCHAR,
    line_offset   BIGINT
);

-- Everything else worth keeping: connections, TLS, connect/DNS failures, postscreen verdicts,
-- bounce notifications, warnings. `kind` says which.
CREATE TABLE event_log (
    logged_at    TIMESTAMPTZ NOT NULL,
    host         VARCHAR NOT NULL,
    service      VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    queue_id     VARCHAR,
    remote_host  VARCHAR,
    remote_ip    VARCHAR,
    detail       VARCHAR,
    source_key   VARCHAR,
    line_offset  BIGINT
);

-- Input that could not be used, with its raw bytes so a fixed parser can replay it.
CREATE TABLE quarantine (
    source          VARCHAR NOT NULL,
    source_kind     VARCHAR NOT NULL,    -- log | mail
    "offset"        BIGINT,
    reason          VARCHAR NOT NULL,
    detail          VARCHAR,
    raw             BLOB,
    quarantined_at  TIMESTAMPTZ NOT NULL
);
