-- Named queries for `mtalens report`. Each section starts with "-- name: <section>".
-- Parameters: $since and $until (TIMESTAMPTZ, half-open [since, until)), $top (row limit).

-- name: totals
WITH d AS (SELECT * FROM deliveries WHERE logged_at >= $since AND logged_at < $until),
     m AS (SELECT * FROM messages WHERE coalesce(arrived_at, first_seen) >= $since
                                    AND coalesce(arrived_at, first_seen) < $until),
     r AS (SELECT * FROM rejections WHERE logged_at >= $since AND logged_at < $until)
SELECT
  (SELECT count(*) FROM m WHERE arrived_at IS NOT NULL AND origin <> 'bounce') AS received,
  (SELECT count(*) FROM d WHERE status = 'sent') AS delivered,
  (SELECT count(*) FROM d WHERE status = 'deferred') AS deferred_attempts,
  (SELECT count(DISTINCT message_key) FROM d WHERE status = 'deferred') AS deferred_messages,
  (SELECT count(*) FROM d WHERE status = 'bounced') AS bounced,
  (SELECT count(*) FROM r WHERE action IN ('reject', 'milter-reject')) AS rejected,
  (SELECT count(*) FROM r WHERE action IN ('defer')) AS reject_deferred,
  (SELECT count(*) FROM messages WHERE expired_at >= $since AND expired_at < $until) AS expired,
  (SELECT count(*) FROM m WHERE held) AS held,
  (SELECT count(*) FROM m WHERE discarded) AS discarded,
  (SELECT count(*) FROM m WHERE origin = 'bounce') AS notifications_sent,
  (SELECT coalesce(sum(size), 0) FROM m WHERE arrived_at IS NOT NULL) AS bytes_received,
  (SELECT coalesce(sum(size), 0) FROM d WHERE status = 'sent') AS bytes_delivered,
  (SELECT count(DISTINCT sender) FROM m WHERE sender IS NOT NULL AND sender <> '') AS senders,
  (SELECT count(DISTINCT recipient) FROM d) AS recipients,
  (SELECT count(*) FROM auth_failures WHERE logged_at >= $since AND logged_at < $until) AS sasl_failures,
  (SELECT count(*) FROM quarantine) AS quarantined_lines,
  -- a message that came back from a content filter (orig_message_key: the copy it was made
  -- from) is the same mail: counted once
  (SELECT count(*) FROM m WHERE arrived_at IS NOT NULL AND origin <> 'bounce'
                              AND orig_message_key IS NULL) AS received_distinct,
  -- pflogsumm's percentages: rejected of what was offered, bounced of the final words
  round(100.0 * (SELECT count(*) FROM r WHERE action IN ('reject', 'milter-reject'))
        / nullif((SELECT count(*) FROM r WHERE action IN ('reject', 'milter-reject'))
                 + (SELECT count(*) FROM m WHERE arrived_at IS NOT NULL AND origin <> 'bounce'), 0),
        1) AS rejected_pct,
  round(100.0 * (SELECT count(*) FROM d WHERE status = 'bounced')
        / nullif((SELECT count(*) FROM d WHERE status IN ('sent', 'bounced')), 0), 1) AS bounced_pct;

-- name: mtas
-- Per MTA (the log format each source was read as: postfix, exim, sendmail), for a store that
-- holds the logs of several.
WITH d AS (SELECT mta, status FROM deliveries WHERE logged_at >= $since AND logged_at < $until),
     m AS (SELECT mta FROM messages WHERE arrived_at >= $since AND arrived_at < $until
                                     AND origin <> 'bounce'),
     r AS (SELECT mta FROM rejections WHERE logged_at >= $since AND logged_at < $until
                                      AND action IN ('reject', 'milter-reject')),
     names AS (SELECT mta FROM d UNION SELECT mta FROM m UNION SELECT mta FROM r)
SELECT n.mta,
       (SELECT count(*) FROM m WHERE m.mta = n.mta) AS received,
       (SELECT count(*) FROM d WHERE d.mta = n.mta AND status = 'sent') AS delivered,
       (SELECT count(*) FROM d WHERE d.mta = n.mta AND status = 'deferred') AS deferred,
       (SELECT count(*) FROM d WHERE d.mta = n.mta AND status = 'bounced') AS bounced,
       (SELECT count(*) FROM r WHERE r.mta = n.mta) AS rejected
FROM names n ORDER BY delivered DESC, n.mta;

-- name: per_day
WITH days AS (
  SELECT CAST(logged_at AS DATE) AS day, status FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until
), rec AS (
  SELECT CAST(arrived_at AS DATE) AS day, count(*) AS received FROM messages
  WHERE arrived_at >= $since AND arrived_at < $until AND origin <> 'bounce' GROUP BY 1
), rej AS (
  SELECT CAST(logged_at AS DATE) AS day, count(*) AS rejected FROM rejections
  WHERE logged_at >= $since AND logged_at < $until AND action IN ('reject', 'milter-reject') GROUP BY 1
), del AS (
  SELECT day, count(*) FILTER (status = 'sent') AS delivered,
         count(*) FILTER (status = 'deferred') AS deferred,
         count(*) FILTER (status = 'bounced') AS bounced
  FROM days GROUP BY 1
)
SELECT day, coalesce(received, 0) AS received, coalesce(delivered, 0) AS delivered,
       coalesce(deferred, 0) AS deferred, coalesce(bounced, 0) AS bounced,
       coalesce(rejected, 0) AS rejected
FROM del FULL OUTER JOIN rec USING (day) FULL OUTER JOIN rej USING (day)
ORDER BY day;

-- name: per_hour
-- $bucket: seconds per row, 3600 for the report (the HTML report and notebooks pick theirs,
-- pipeline/timeline.py); "hour" is the start of the bucket.
WITH del AS (
  SELECT time_bucket(to_seconds($bucket), logged_at) AS hour,
         count(*) FILTER (status = 'sent') AS delivered,
         count(*) FILTER (status = 'deferred') AS deferred,
         count(*) FILTER (status = 'bounced') AS bounced
  FROM deliveries WHERE logged_at >= $since AND logged_at < $until GROUP BY 1
), rec AS (
  SELECT time_bucket(to_seconds($bucket), arrived_at) AS hour, count(*) AS received FROM messages
  WHERE arrived_at >= $since AND arrived_at < $until AND origin <> 'bounce' GROUP BY 1
), rej AS (
  SELECT time_bucket(to_seconds($bucket), logged_at) AS hour, count(*) AS rejected FROM rejections
  WHERE logged_at >= $since AND logged_at < $until AND action IN ('reject', 'milter-reject')
  GROUP BY 1
)
SELECT hour, coalesce(delivered, 0) AS delivered, coalesce(deferred, 0) AS deferred,
       coalesce(bounced, 0) AS bounced, coalesce(received, 0) AS received,
       coalesce(rejected, 0) AS rejected
FROM del FULL OUTER JOIN rec USING (hour) FULL OUTER JOIN rej USING (hour)
ORDER BY hour;

-- name: domains
-- of the recipients whose last word is in: delivered / (delivered + bounced + expired), per
-- domain (joined, not a subquery per group: Spark cannot plan that one, pipeline/spark.py)
WITH rates AS (
  SELECT recipient_domain,
         count(*) FILTER (status = 'sent')
         / nullif(count(*) FILTER (status IN ('sent', 'bounced', 'expired')), 0) AS rate
  FROM recipient_outcomes WHERE logged_at >= $since AND logged_at < $until GROUP BY 1
)
SELECT d.recipient_domain AS domain,
       count(*) FILTER (status = 'sent') AS delivered,
       count(*) FILTER (status = 'deferred') AS deferred,
       count(*) FILTER (status = 'bounced') AS bounced,
       round(avg(delay) FILTER (status = 'sent'), 3) AS avg_delay,
       max(delay) AS max_delay,
       round(r.rate, 4) AS delivery_rate,
       round(quantile_cont(delay, 0.9) FILTER (status = 'sent'), 3) AS p90_delay
FROM deliveries d LEFT JOIN rates r ON r.recipient_domain = d.recipient_domain
WHERE logged_at >= $since AND logged_at < $until
GROUP BY d.recipient_domain, r.rate
ORDER BY delivered + deferred + bounced DESC, domain LIMIT $top;

-- name: deferrals
SELECT coalesce(remote_host, relay_host, relay) AS relay, dsn, reply_code, reason,
       count(*) AS attempts, count(DISTINCT message_key) AS messages,
       min(diagnostic) AS example
FROM deliveries WHERE status = 'deferred' AND logged_at >= $since AND logged_at < $until
GROUP BY ALL ORDER BY attempts DESC, relay, dsn, reply_code, reason LIMIT $top;

-- name: bounces
SELECT coalesce(remote_host, relay_host, relay) AS relay, dsn, reply_code, reason,
       count(*) AS recipients, min(diagnostic) AS example
FROM deliveries WHERE status = 'bounced' AND logged_at >= $since AND logged_at < $until
GROUP BY ALL ORDER BY recipients DESC, relay, dsn, reply_code, reason LIMIT $top;

-- name: rejects
SELECT instance, service, action, stage, reply_code, dsn,
       regexp_replace(regexp_replace(reason, '<[^>]*>', '<*>', 'g'),
                      '\[[0-9a-fA-F:.]+\]', '[*]', 'g') AS reason,
       count(*) AS count
FROM rejections WHERE logged_at >= $since AND logged_at < $until
GROUP BY ALL ORDER BY count DESC, reason, instance, service, action, stage, reply_code, dsn
LIMIT $top;

-- name: top_senders
SELECT coalesce(nullif(sender, ''), '<>') AS sender, count(*) AS messages,
       coalesce(sum(size), 0) AS bytes
FROM messages WHERE arrived_at >= $since AND arrived_at < $until
GROUP BY 1 ORDER BY messages DESC, sender LIMIT $top;

-- name: top_recipients
SELECT recipient, count(*) FILTER (status = 'sent') AS delivered,
       count(*) FILTER (status <> 'sent') AS failed_attempts
FROM deliveries WHERE logged_at >= $since AND logged_at < $until
GROUP BY 1 ORDER BY delivered + failed_attempts DESC, recipient LIMIT $top;

-- name: sasl_failures
SELECT client_ip, min(client_name) AS client_name, count(*) AS failures,
       count(DISTINCT sasl_username) AS usernames, min(logged_at) AS first, max(logged_at) AS last
FROM auth_failures WHERE logged_at >= $since AND logged_at < $until
GROUP BY 1 ORDER BY failures DESC, client_ip LIMIT $top;

-- name: line_accounting
SELECT outcome, rule, sum(lines)::BIGINT AS lines
FROM line_accounting GROUP BY ALL ORDER BY outcome, lines DESC, rule;

-- The sections below are pflogsumm's others ("Host/Domain Summary: Messages Received", "Senders
-- by message size", "Recipients by message size", "Warnings", rejects per client) and mtalens'.

-- name: sending_hosts
SELECT coalesce(client_name, 'unknown') AS client_name, client_ip, count(*) AS messages,
       coalesce(sum(size), 0) AS bytes
FROM messages WHERE arrived_at >= $since AND arrived_at < $until AND origin = 'smtpd'
GROUP BY ALL ORDER BY messages DESC, client_name, client_ip LIMIT $top;

-- name: sender_domains
SELECT coalesce(nullif(lower(split_part(sender, '@', -1)), ''), '<>') AS domain,
       count(*) AS messages, coalesce(sum(size), 0) AS bytes
FROM messages WHERE arrived_at >= $since AND arrived_at < $until AND origin <> 'bounce'
GROUP BY 1 ORDER BY messages DESC, domain LIMIT $top;

-- name: senders_by_size
SELECT coalesce(nullif(sender, ''), '<>') AS sender, coalesce(sum(size), 0) AS bytes,
       count(*) AS messages
FROM messages WHERE arrived_at >= $since AND arrived_at < $until
GROUP BY 1 ORDER BY bytes DESC, sender LIMIT $top;

-- name: recipients_by_size
SELECT recipient, coalesce(sum(size), 0) AS bytes, count(*) AS deliveries
FROM deliveries WHERE status = 'sent' AND logged_at >= $since AND logged_at < $until
GROUP BY 1 ORDER BY bytes DESC, recipient LIMIT $top;

-- name: rejects_by_client
SELECT client_ip, min(client_name) AS client_name, count(*) AS rejects,
       count(DISTINCT stage) AS stages, min(reason) AS example
FROM rejections
WHERE logged_at >= $since AND logged_at < $until AND action IN ('reject', 'milter-reject')
GROUP BY 1 ORDER BY rejects DESC, client_ip LIMIT $top;

-- name: warnings
-- Postfix's "warning:" lines, numbers, addresses and queue IDs masked so that repeats group
SELECT service,
       regexp_replace(regexp_replace(regexp_replace(detail, '\[[0-9a-fA-F:.]+\]', '[*]', 'g'),
                                     '<[^>]*>', '<*>', 'g'), '\b[0-9]+\b', 'N', 'g') AS warning,
       count(*) AS count, min(logged_at) AS first_seen, max(logged_at) AS last_seen
FROM events WHERE kind = 'warning' AND logged_at >= $since AND logged_at < $until
GROUP BY ALL ORDER BY count DESC, service, warning LIMIT $top;

-- Reports receivers send (`mtalens reports ingest`): a report covers [begin_at, end_at); one is
-- in the range when it ends after $since and begins before $until.

-- name: dmarc_sources
SELECT policy_domain, source_ip, sum(count)::BIGINT AS messages,
       round(100.0 * coalesce(sum(count) FILTER (dmarc_pass), 0) / sum(count), 1) AS dmarc_pass_pct,
       round(100.0 * coalesce(sum(count) FILTER (dkim_aligned), 0) / sum(count), 1) AS dkim_aligned_pct,
       round(100.0 * coalesce(sum(count) FILTER (spf_aligned), 0) / sum(count), 1) AS spf_aligned_pct,
       coalesce(sum(count) FILTER (disposition IN ('quarantine', 'reject')), 0)::BIGINT
         AS quarantined_or_rejected,
       count(DISTINCT reporter) AS reporters
FROM dmarc_records WHERE end_at > $since AND begin_at < $until
GROUP BY ALL ORDER BY messages DESC, policy_domain, source_ip LIMIT $top;

-- name: tlsrpt_results
SELECT p.policy_domain, p.policy_type, sum(p.successful_sessions)::BIGINT AS successful_sessions,
       sum(p.failed_sessions)::BIGINT AS failed_sessions,
       round(100.0 * sum(p.failed_sessions)
             / nullif(sum(p.successful_sessions) + sum(p.failed_sessions), 0), 2) AS failed_pct,
       (SELECT list(DISTINCT f.result_type ORDER BY f.result_type) FROM tlsrpt_failures f
        WHERE f.policy_domain = p.policy_domain AND f.policy_type = p.policy_type
          AND f.end_at > $since AND f.begin_at < $until) AS failure_types
FROM tlsrpt_policies p WHERE p.end_at > $since AND p.begin_at < $until
GROUP BY ALL ORDER BY failed_sessions DESC, policy_domain, policy_type LIMIT $top;
