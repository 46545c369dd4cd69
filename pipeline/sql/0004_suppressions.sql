-- Suppression lists: manual entries, the never-suppress list, export target state, and the
-- policy itself as table macros, so the CLI, the exporters and notebooks share one definition.
-- pipeline/suppressions.py documents the policy and passes its parameters (pipeline/config.py
-- holds the defaults, mtalens.toml overrides them); nothing here reads a clock: `as_of` is a
-- parameter.

-- Normalised forms of raw addresses that the SQL fast path below cannot handle (non-ASCII,
-- quoted local parts, address literals, garbage). Filled by suppressions.refresh_addresses();
-- `address` is NULL and `problem` says why when the raw text is not a usable address.
CREATE TABLE suppression_addresses (
    raw            VARCHAR PRIMARY KEY,
    address        VARCHAR,
    problem        VARCHAR,
    normalised_at  TIMESTAMPTZ NOT NULL
);

-- Manual decisions, append-only (the history is what `explain` prints). The latest `remove`
-- for an address sets aside every piece of evidence before it; an `add` suppresses from
-- `occurred_at` until `expires_at` (NULL: until removed).
CREATE SEQUENCE suppression_manual_seq;
CREATE TABLE suppression_manual (
    id          BIGINT PRIMARY KEY DEFAULT nextval('suppression_manual_seq'),
    address     VARCHAR NOT NULL,
    action      VARCHAR NOT NULL CHECK (action IN ('add', 'remove')),
    note        VARCHAR,
    occurred_at TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ
);

-- Never suppressed, whatever the evidence: an address, or '@domain' for a whole domain.
CREATE TABLE suppression_never (
    entry     VARCHAR PRIMARY KEY,
    note      VARCHAR,
    added_at  TIMESTAMPTZ NOT NULL
);

-- Named export targets (`export --since-last NAME`): which format each is, and which addresses
-- it already holds, so the next export emits only additions and removals.
CREATE TABLE suppression_export_targets (
    name         VARCHAR PRIMARY KEY,
    format       VARCHAR NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_run_at  TIMESTAMPTZ
);
CREATE TABLE suppression_export_state (
    name         VARCHAR NOT NULL,
    address      VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    exported_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, address)
);

-- RFC 2142 mailbox names (section 3: business; section 4: network operations; section 5:
-- support services) plus RFC 5321 section 4.5.1 (postmaster). Role addresses are flagged, not
-- suppressed: they reach a team, and mail to them is rarely marketing.
CREATE TABLE suppression_role_names (
    local_part  VARCHAR PRIMARY KEY,
    source      VARCHAR NOT NULL
);
INSERT INTO suppression_role_names VALUES
    ('info', 'RFC 2142 section 3'), ('marketing', 'RFC 2142 section 3'),
    ('sales', 'RFC 2142 section 3'), ('support', 'RFC 2142 section 3'),
    ('abuse', 'RFC 2142 section 4'), ('noc', 'RFC 2142 section 4'),
    ('security', 'RFC 2142 section 4'),
    ('postmaster', 'RFC 2142 section 5; RFC 5321 section 4.5.1'),
    ('hostmaster', 'RFC 2142 section 5'), ('usenet', 'RFC 2142 section 5'),
    ('news', 'RFC 2142 section 5'), ('webmaster', 'RFC 2142 section 5'),
    ('www', 'RFC 2142 section 5'), ('uucp', 'RFC 2142 section 5'),
    ('ftp', 'RFC 2142 section 5');

-- The fast path of address normalisation, for the overwhelming majority of addresses: an ASCII
-- dot-atom local part (RFC 5322 section 3.2.3 atext) of at most 64 octets (RFC 5321 section
-- 4.5.3.1.1), '@', and a domain of LDH labels (RFC 5890 section 2.3.1) with at least one dot,
-- 254 octets in all (RFC 5321 section 4.5.3.1.3, minus the angle brackets). The domain is
-- lower-cased (RFC 5321 section 2.4: domains are case-insensitive, local parts may not be).
-- Anything else goes to suppressions.normalize_address() in Python, which yields the same
-- result for these addresses (tests/test_suppressions_address.py checks that).
CREATE MACRO suppression_simple_address(raw) AS
    CASE WHEN length(raw) <= 254
          AND regexp_full_match(raw,
              '[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]{1,64}(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]{1,64})*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?')
          AND strpos(raw, '@') <= 65
         THEN split_part(raw, '@', 1) || '@' || lower(split_part(raw, '@', 2))
    END;

-- Every piece of evidence about a recipient, one row per event, with a stable id:
--   log:MESSAGE_KEY:LINE_OFFSET   the final outcome of a recipient of a message in the logs
--                                 (recipient_outcomes: sent, bounced, or expired in the queue;
--                                 a recipient still deferred is not evidence yet)
--   dsn:REPORT_HASH:POSITION      a failed (or delivered) recipient in a decoded DSN
--   arf:REPORT_HASH               an ARF complaint (RFC 5965); "not-spam" reports are not
--   manual:ID                     a manual add or remove
-- `permanent`: the failure was final (5xx / 5.x.x, RFC 5321 section 4.2.1, RFC 3463
-- section 3.1). `message_ref` identifies the message so a failure seen in the log and again in
-- the DSN Postfix sent about it is one failure.
CREATE VIEW suppression_events AS
SELECT 'log:' || o.message_key || ':' || coalesce(o.line_offset::VARCHAR, '') AS event_id,
       'log' AS source,
       o.recipient AS raw_address,
       o.logged_at AS occurred_at,
       CASE o.status WHEN 'sent' THEN 'success' ELSE 'failure' END AS outcome,
       o.reason, o.category, o.rule_id, o.dsn AS status_code, o.reply_code,
       o.diagnostic, o.remote_host,
       (o.status = 'bounced'
        AND coalesce(left(o.dsn, 1), left(o.reply_code::VARCHAR, 1), '5') = '5') AS permanent,
       coalesce(o.message_id, o.message_key) AS message_ref,
       CAST(NULL AS TIMESTAMPTZ) AS expires_at, CAST(NULL AS VARCHAR) AS note,
       -- an expired recipient: what its last deferral was (a block is still the sender's problem)
       dl.reason AS attempt_reason
FROM recipient_outcomes o
LEFT JOIN (SELECT message_key, line_offset, reason FROM delivery_log WHERE status = 'deferred') dl
       ON o.status = 'expired' AND dl.message_key = o.message_key AND dl.line_offset = o.line_offset
WHERE o.status IN ('sent', 'bounced', 'expired') AND o.recipient IS NOT NULL
UNION ALL
SELECT 'dsn:' || c.report_hash || ':' || c.position,
       'dsn',
       coalesce(c.original_recipient, r.verp_recipient, c.recipient),
       coalesce(c.last_attempt_date, r.report_date, r.arrival_date, r.ingested_at),
       CASE c.action WHEN 'delivered' THEN 'success' ELSE 'failure' END,
       c.reason, c.category, c.rule_id, c.status, TRY_CAST(c.reply_code AS INTEGER),
       c.diagnostic, c.remote_mta,
       (c.action = 'failed'
        AND coalesce(left(c.status, 1), left(c.reply_code, 1), '5') = '5'),
       coalesce(r.original_message_id, r.postfix_queue_id, 'dsn:' || c.report_hash),
       NULL, NULL, NULL
FROM bounce_recipients c
JOIN bounce_reports r USING (report_hash)
WHERE (r.kind = 'bounce' AND c.action = 'failed') OR (r.kind = 'delivered' AND c.action = 'delivered')
UNION ALL
SELECT 'arf:' || c.report_hash, 'arf', c.recipient,
       coalesce(c.arrival_date, c.report_date, r.ingested_at),
       'complaint', 'feedback', 'complaint', 'arf:' || c.feedback_type, NULL, NULL,
       c.feedback_type, c.reporting_mta, true,
       coalesce(c.original_message_id, 'arf:' || c.report_hash), NULL, NULL, NULL
FROM (SELECT q.report_hash, coalesce(q.recipient, q.verp_recipient) AS recipient, q.arrival_date,
             q.report_date, q.feedback_type, q.reporting_mta, q.original_message_id
      FROM complaints q) c
JOIN bounce_reports r USING (report_hash)
WHERE c.recipient IS NOT NULL AND lower(c.feedback_type) <> 'not-spam'
UNION ALL
SELECT 'manual:' || m.id, 'manual', m.address, m.occurred_at,
       'manual_' || m.action, 'manual', 'manual', 'manual:' || m.action, NULL, NULL,
       NULL, NULL, true, 'manual:' || m.id, m.expires_at, m.note, NULL
FROM suppression_manual m;

-- Every raw address any evidence may name (cheaper than suppression_events: no window),
-- for suppressions.refresh_addresses().
CREATE VIEW suppression_raw_addresses AS
SELECT recipient AS raw FROM delivery_log WHERE recipient IS NOT NULL
UNION ALL
SELECT coalesce(c.original_recipient, r.verp_recipient, c.recipient)
FROM bounce_recipients c JOIN bounce_reports r USING (report_hash)
UNION ALL
SELECT coalesce(recipient, verp_recipient) FROM complaints
UNION ALL
SELECT address FROM suppression_manual;

-- The same, with the normalised address (NULL with `problem` when unusable).
CREATE VIEW suppression_evidence AS
SELECT e.*,
       coalesce(suppression_simple_address(e.raw_address), n.address) AS address,
       CASE WHEN suppression_simple_address(e.raw_address) IS NOT NULL THEN NULL
            WHEN n.raw IS NULL THEN 'not normalised yet (run a suppressions command on a writable store)'
            ELSE n.problem END AS problem
FROM suppression_events e
LEFT JOIN suppression_addresses n ON n.raw = e.raw_address;

-- Each event with the policy's verdict about it:
--   success | complaint | manual_add | manual_remove   as the event says
--   sender_side  about the sender, not the recipient (configured reasons; a network error that
--                is a local socket error); never suppresses, counted by sender_side_problems
--   ignored      not a failure at all (delivered, feedback, vacation)
--   hard         a permanent failure for a hard reason: suppress at once
--   soft         any other failure (including undefined and expired): suppress when repeated
CREATE MACRO suppression_verdicts(as_of, hard_reasons, sender_side_reasons, local_network_phrases) AS TABLE
SELECT *,
       CASE WHEN outcome <> 'failure' THEN outcome
            WHEN list_contains(sender_side_reasons, reason)
                 OR list_contains(sender_side_reasons, attempt_reason) THEN 'sender_side'
            WHEN 'networkerror' IN (reason, attempt_reason) AND diagnostic IS NOT NULL
                 AND len(list_filter(local_network_phrases,
                                     lambda p: contains(lower(diagnostic), p))) > 0
                 THEN 'sender_side'
            WHEN reason IN ('delivered', 'feedback', 'vacation') THEN 'ignored'
            WHEN permanent AND list_contains(hard_reasons, reason) THEN 'hard'
            ELSE 'soft' END AS verdict
FROM suppression_evidence
WHERE occurred_at <= as_of;

-- One row per address with any evidence other than successes: the decision and its grounds.
-- Priority when several apply: complaint, hard, manual, soft. `suppressed` is the list; the
-- other rows say why an address is not (or no longer) suppressed.
CREATE MACRO suppression_decisions(as_of, soft_threshold, soft_window_days, soft_expiry_days,
                                   hard_expiry_days, hard_reasons, sender_side_reasons,
                                   local_network_phrases) AS TABLE
WITH ev AS (
    SELECT * FROM suppression_verdicts(as_of, hard_reasons, sender_side_reasons, local_network_phrases)
    WHERE address IS NOT NULL AND problem IS NULL AND verdict NOT IN ('ignored', 'sender_side')
),
resets AS (
    SELECT address,
           max(occurred_at) FILTER (WHERE verdict = 'manual_remove') AS removed_at,
           max(occurred_at) FILTER (WHERE verdict = 'success') AS success_at,
           bool_or(verdict NOT IN ('success', 'manual_remove')) AS interesting
    FROM ev GROUP BY address
),
live AS (
    -- evidence still standing: after the last manual removal; hard, soft and manual evidence
    -- also after the last success (a delivery proves the mailbox works now)
    SELECT ev.*, r.success_at, r.removed_at
    FROM ev JOIN resets r USING (address)
    WHERE r.interesting
      AND ev.verdict IN ('complaint', 'hard', 'soft', 'manual_add')
      AND ev.occurred_at > coalesce(r.removed_at, '-infinity'::TIMESTAMPTZ)
      AND (ev.verdict = 'complaint' OR ev.occurred_at > coalesce(r.success_at, '-infinity'::TIMESTAMPTZ))
),
soft_days AS (
    -- soft failures count once per address and UTC day (as GNU Mailman's bounce score does),
    -- so a burst of retries or one failure seen in both the log and its DSN counts once
    SELECT address, date_trunc('day', occurred_at) AS day, max(occurred_at) AS last_at
    FROM live WHERE verdict = 'soft' GROUP BY ALL
),
soft_trigger AS (
    SELECT address, max(last_at) AS triggered_at
    FROM (SELECT address, last_at, count(*) OVER (
              PARTITION BY address ORDER BY day
              RANGE BETWEEN to_days(CAST(soft_window_days AS INTEGER) - 1) PRECEDING AND CURRENT ROW) AS n
          FROM soft_days)
    WHERE n >= soft_threshold
    GROUP BY address
),
grounds AS (
    SELECT address, verdict,
           min(occurred_at) AS first_evidence, max(occurred_at) AS last_evidence, count(*) AS evidence_count,
           list(event_id ORDER BY occurred_at, event_id) AS event_ids,
           arg_max(reason, occurred_at) AS reason, arg_max(category, occurred_at) AS category,
           arg_max(rule_id, occurred_at) AS rule_id, arg_max(status_code, occurred_at) AS status_code,
           arg_max(reply_code, occurred_at) AS reply_code, arg_max(diagnostic, occurred_at) AS diagnostic,
           arg_max(expires_at, occurred_at) AS manual_expires_at, arg_max(note, occurred_at) AS note
    FROM live GROUP BY address, verdict
),
candidates AS (
    SELECT g.*,
           CASE g.verdict WHEN 'complaint' THEN 1 WHEN 'hard' THEN 2 WHEN 'manual_add' THEN 3 ELSE 4 END AS priority,
           CASE g.verdict WHEN 'soft' THEN t.triggered_at ELSE g.first_evidence END AS suppressed_at,
           CASE g.verdict
                WHEN 'complaint' THEN NULL
                WHEN 'hard' THEN CASE WHEN hard_expiry_days > 0
                                      THEN g.last_evidence + to_days(CAST(hard_expiry_days AS INTEGER)) END
                WHEN 'manual_add' THEN g.manual_expires_at
                ELSE t.triggered_at + to_days(CAST(soft_expiry_days AS INTEGER)) END AS expires_at
    FROM grounds g
    LEFT JOIN soft_trigger t ON g.verdict = 'soft' AND t.address = g.address
),
ranked AS (
    SELECT *,
           suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of) AS active,
           row_number() OVER (PARTITION BY address
                              ORDER BY (suppressed_at IS NOT NULL AND (expires_at IS NULL OR expires_at > as_of)) DESC,
                                       priority, last_evidence DESC) AS rn
    FROM candidates
),
addresses AS (
    SELECT r.address, r.removed_at, r.success_at FROM resets r WHERE r.interesting
)
SELECT a.address,
       split_part(a.address, '@', -1) AS domain,
       coalesce(k.active, false) AND nv.entry IS NULL AND nd.entry IS NULL AS suppressed,
       CASE k.verdict WHEN 'manual_add' THEN 'manual' ELSE k.verdict END AS kind,
       k.reason, k.category, k.rule_id,
       CASE k.verdict WHEN 'complaint' THEN 'policy.complaint' WHEN 'hard' THEN 'policy.hard'
            WHEN 'manual_add' THEN 'policy.manual' WHEN 'soft' THEN 'policy.soft' END AS policy_rule,
       k.first_evidence, k.last_evidence, k.evidence_count, k.suppressed_at, k.expires_at,
       k.event_ids, k.status_code, k.reply_code, k.diagnostic, k.note,
       rn_.local_part IS NOT NULL AS role,
       coalesce(nv.entry, nd.entry) AS never_entry,
       CASE WHEN nv.entry IS NOT NULL OR nd.entry IS NOT NULL THEN 'on the never-suppress list'
            WHEN k.address IS NULL AND a.removed_at IS NOT NULL THEN 'removed manually'
            WHEN k.address IS NULL THEN 'cleared by a later delivery'
            WHEN k.active THEN NULL
            WHEN k.suppressed_at IS NULL THEN 'soft failures below the threshold'
            ELSE 'suppression expired' END AS not_suppressed_because,
       a.removed_at, a.success_at
FROM addresses a
LEFT JOIN ranked k ON k.address = a.address AND k.rn = 1
LEFT JOIN suppression_never nv ON nv.entry = a.address
LEFT JOIN suppression_never nd ON nd.entry = '@' || split_part(a.address, '@', -1)
LEFT JOIN suppression_role_names rn_
       ON rn_.local_part = lower(split_part(split_part(a.address, '@', 1), '+', 1));

-- Failures that are about the sender (blocks, reputation, authentication, rate limits, local
-- network errors), grouped for the report and alerts: they never suppress a recipient.
CREATE MACRO sender_side_problems(as_of, since, sender_side_reasons, local_network_phrases) AS TABLE
SELECT reason, category, rule_id,
       lower(split_part(coalesce(address, raw_address), '@', -1)) AS recipient_domain,
       count(*) AS failures, count(DISTINCT coalesce(address, raw_address)) AS recipients,
       min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       arg_max(diagnostic, occurred_at) AS last_diagnostic, arg_max(remote_host, occurred_at) AS last_remote_host
FROM suppression_verdicts(as_of, CAST([] AS VARCHAR[]), sender_side_reasons, local_network_phrases)
WHERE verdict = 'sender_side' AND occurred_at >= since
GROUP BY ALL;

-- Evidence whose address could not be used: reported, never exported.
CREATE MACRO suppression_invalid(as_of) AS TABLE
SELECT raw_address, problem, count(*) AS events, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       list(event_id ORDER BY occurred_at, event_id)[1:20] AS event_ids
FROM suppression_evidence
WHERE problem IS NOT NULL AND occurred_at <= as_of AND outcome <> 'success'
GROUP BY ALL;
