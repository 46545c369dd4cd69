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
  (SELECT count(*) FROM quarantine) AS quarantined_lines;

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
SELECT date_trunc('hour', logged_at) AS hour,
       count(*) FILTER (status = 'sent') AS delivered,
       count(*) FILTER (status = 'deferred') AS deferred,
       count(*) FILTER (status = 'bounced') AS bounced
FROM deliveries WHERE logged_at >= $since AND logged_at < $until
GROUP BY 1 ORDER BY 1;

-- name: domains
SELECT recipient_domain AS domain,
       count(*) FILTER (status = 'sent') AS delivered,
       count(*) FILTER (status = 'deferred') AS deferred,
       count(*) FILTER (status = 'bounced') AS bounced,
       round(avg(delay) FILTER (status = 'sent'), 3) AS avg_delay,
       max(delay) AS max_delay
FROM deliveries WHERE logged_at >= $since AND logged_at < $until
GROUP BY 1 ORDER BY delivered + deferred + bounced DESC, domain LIMIT $top;

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
