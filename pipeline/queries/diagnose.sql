-- Named queries for `mtalens diagnose` (pipeline/diagnose.py): one per detector.
-- Parameters: $since and $until (TIMESTAMPTZ, half-open [since, until)) and the thresholds of
-- pipeline.diagnose.Thresholds ($bf_failures, ...). A query returns one row per finding with the
-- columns subject, count, first_seen, last_seen, examples (VARCHAR[]), destinations (VARCHAR[]);
-- any further column is a fact shown with the evidence. No row: nothing to report.
--
-- The `ex` expression below rebuilds a delivery as Postfix logged it (smtp(8) "to=<...>,
-- relay=..., dsn=..., status=... (reply)"), because the store keeps the parsed fields.

-- name: _delivery_line
-- A delivery attempt as its MTA logs it, rebuilt from its row (the line itself is not kept): the
-- examples of a finding. Postfix (smtp(8) and the other delivery agents): "QUEUEID: to=<rcpt>,
-- relay=..., dsn=..., status=... (...)"; Exim (the spec's chapter "Log files"): "ID => rcpt
-- H=host" delivered, "==" deferred, "**" failed, the error after ": "; Sendmail (op.me, "Log
-- entries"): "QUEUEID: to=<rcpt>, relay=..., dsn=..., stat=...". run_query defines it for the
-- queries that use it.
CREATE OR REPLACE TEMP MACRO delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host,
                                           relay_ip, dsn, status, diagnostic) AS
  strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || CASE mta
    WHEN 'exim' THEN
      queue_id || ' ' || CASE status WHEN 'sent' THEN '=>' WHEN 'deferred' THEN '==' ELSE '**' END
      || ' ' || coalesce(recipient, '') || coalesce(' H=' || relay_host, '')
      || coalesce(' [' || relay_ip || ']', '')
      || CASE WHEN status = 'sent' THEN '' ELSE ': ' || coalesce(diagnostic, status) END
    WHEN 'sendmail' THEN
      queue_id || ': to=<' || coalesce(recipient, '') || '>, relay=' || coalesce(relay, '')
      || ', dsn=' || coalesce(dsn, '') || ', stat='
      || CASE status WHEN 'sent' THEN 'Sent' || coalesce(' (' || diagnostic || ')', '')
                     WHEN 'deferred' THEN 'Deferred: ' || coalesce(diagnostic, '')
                     ELSE coalesce(diagnostic, status) END
    ELSE
      queue_id || ': to=<' || coalesce(recipient, '') || '>, relay=' || coalesce(relay, '')
      || ', dsn=' || coalesce(dsn, '') || ', status=' || status
      || ' (' || coalesce(diagnostic, '') || ')'
  END;

-- name: relay_denied_inbound
-- smtpd(8) refuses to relay for a client that is neither in mynetworks nor authenticated:
-- "554 5.7.1 <rcpt>: Relay access denied" (postconf(5) reject_unauth_destination,
-- relay_domains_reject_code).
SELECT 'inbound' AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen,
       -- the syslog tag as Postfix logs it (instance/service; rows from before 0011: service)
       list(strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || coalesce(instance || '/', '')
            || service || ': ' || action
            || ': ' || coalesce(stage, '') || ' from ' || coalesce(client_name, 'unknown') || '['
            || coalesce(client_ip, '') || ']: ' || coalesce(reason, '') || '; from=<'
            || coalesce(sender, '') || '> to=<' || coalesce(recipient, '') || '> helo=<'
            || coalesce(helo, '') || '>' ORDER BY logged_at)[1:3] AS examples,
       list(DISTINCT lower(split_part(recipient, '@', -1))
            ORDER BY lower(split_part(recipient, '@', -1))) AS destinations,
       count(DISTINCT client_ip) AS clients,
       list(DISTINCT client_ip ORDER BY client_ip)[1:10] AS client_ips
FROM rejections
WHERE logged_at >= $since AND logged_at < $until AND reason ILIKE '%Relay access denied%'
HAVING count(*) > 0;

-- name: relay_denied_outbound
-- Our relayhost (or a destination) refuses to relay for us: the same smtpd(8) reply, received
-- by our smtp(8) client. Classified reason norelaying (pipeline/rules/default.toml).
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM deliveries WHERE logged_at >= $since AND logged_at < $until
)
SELECT coalesce(remote_host, relay_host, relay) AS subject, count(*) AS count,
       min(logged_at) AS first_seen, max(logged_at) AS last_seen,
       list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       min(relay_port) AS port
FROM d
WHERE status IN ('bounced', 'deferred')
  AND (reason = 'norelaying' OR diagnostic ILIKE '%Relay access denied%')
GROUP BY 1 ORDER BY count DESC, 1;

-- name: mail_loop
-- smtp(8)/qmgr: "mail for <domain> loops back to myself"; RFC 3463 X.4.6 "Routing loop detected".
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM deliveries WHERE logged_at >= $since AND logged_at < $until
)
SELECT recipient_domain AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen, list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations
FROM d
WHERE status <> 'sent' AND (diagnostic ILIKE '%loops back to myself%' OR dsn LIKE '_.4.6')
GROUP BY 1 ORDER BY count DESC, 1;

-- name: auth_bruteforce
-- smtpd(8): "warning: host[ip]: SASL LOGIN authentication failed: ..., sasl_username=...".
-- Many failures, or many user names, from one client is password guessing.
SELECT client_ip AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen,
       -- the syslog tag as Postfix logs it (instance/service; rows from before 0011: service)
       list(strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || coalesce(instance || '/', '')
            || service || ': warning: '
            || coalesce(client_name, 'unknown') || '[' || client_ip || ']: SASL '
            || coalesce(mechanism, '') || ' authentication failed: ' || coalesce(reason, '')
            || coalesce(', sasl_username=' || sasl_username, '') ORDER BY logged_at)[1:3] AS examples,
       []::VARCHAR[] AS destinations,
       count(DISTINCT sasl_username) AS usernames,
       list(DISTINCT sasl_username ORDER BY sasl_username)[1:10] AS usernames_tried,
       list(DISTINCT mechanism ORDER BY mechanism) AS mechanisms,
       min(client_name) AS client_name
FROM auth_failures
WHERE logged_at >= $since AND logged_at < $until
GROUP BY client_ip
HAVING count(*) >= $bf_failures OR count(DISTINCT sasl_username) >= $bf_usernames
ORDER BY count DESC, subject;

-- name: auth_without_tls
-- smtpd(8) "disconnect from ..." lists the commands of the session (Postfix 3.0 and later):
-- "auth=N" (or "auth=ok/tried") without "starttls=" and without a TLS handshake logged for that
-- client means the password went over the wire in clear text (RFC 4954 section 4 and 14;
-- RFC 4616 section 6). Wrapper-mode TLS (port 465) logs a handshake and no STARTTLS.
-- Exim: an arrival with A= and no X= (below). Sendmail logs each successful AUTH ("AUTH=server, relay=..., authid=..., mech=PLAIN") and each
-- TLS session ("STARTTLS=server, relay=..."): a login with no TLS session from that client
-- just before it went in clear text.
WITH disc AS (
  SELECT * FROM events
  WHERE kind = 'disconnect' AND logged_at >= $since AND logged_at < $until
    AND regexp_matches(detail, '(^| )auth=') AND NOT regexp_matches(detail, '(^| )starttls=')
), bare AS (
  SELECT d.* FROM disc d
  WHERE NOT EXISTS (
    SELECT 1 FROM events t
    WHERE t.kind LIKE 'tls-%' AND t.kind NOT IN ('tls-error', 'tls-warning')
      AND t.host = d.host AND t.remote_ip = d.remote_ip
      AND t.logged_at <= d.logged_at AND t.logged_at >= d.logged_at - INTERVAL 10 MINUTE)
)
SELECT remote_ip AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen,
       -- the syslog tag as Postfix logs it (instance/service; rows from before 0011: service)
       list(strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || coalesce(instance || '/', '')
            || service || ': disconnect from '
            || coalesce(remote_host, 'unknown') || '[' || remote_ip || '] ' || detail
            ORDER BY logged_at)[1:3] AS examples,
       []::VARCHAR[] AS destinations,
       sum(CAST(regexp_extract(detail, '(^| )auth=([0-9]+)', 2) AS INTEGER)) AS successful_logins,
       min(remote_host) AS client_name
FROM bare
GROUP BY remote_ip
UNION ALL
SELECT remote_ip AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen,
       list(strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || instance || ': AUTH=server, relay='
            || coalesce(remote_host || ' ', '') || '[' || remote_ip || '], ' || detail
            ORDER BY logged_at)[1:3] AS examples,
       []::VARCHAR[] AS destinations, count(*) AS successful_logins,
       min(remote_host) AS client_name
FROM events e
WHERE e.mta = 'sendmail' AND e.kind = 'sasl-server' AND e.remote_ip IS NOT NULL
  AND e.logged_at >= $since AND e.logged_at < $until
  AND NOT EXISTS (
    SELECT 1 FROM events t
    WHERE t.kind LIKE 'tls-%' AND t.kind NOT IN ('tls-error', 'tls-warning')
      AND t.host = e.host AND t.remote_ip = e.remote_ip
      AND t.logged_at <= e.logged_at AND t.logged_at >= e.logged_at - INTERVAL 10 MINUTE)
GROUP BY remote_ip
UNION ALL
-- Exim logs the authenticator on the arrival (A=) and the TLS session (X=, an event of that
-- message): an authenticated arrival without one came in clear text
SELECT m.client_ip AS subject, count(*) AS count, min(m.first_seen) AS first_seen,
       max(m.first_seen) AS last_seen,
       list(strftime(m.first_seen, '%Y-%m-%d %H:%M:%S') || ' ' || m.queue_id || ' <= '
            || coalesce(m.sender, '') || ' [' || m.client_ip || '] A=' || m.sasl_method || ':'
            || m.sasl_username ORDER BY m.first_seen)[1:3] AS examples,
       []::VARCHAR[] AS destinations, count(*) AS successful_logins,
       min(m.client_name) AS client_name
FROM messages m
WHERE m.mta = 'exim' AND m.sasl_username IS NOT NULL AND m.client_ip <> ''
  AND m.first_seen >= $since AND m.first_seen < $until
  AND NOT EXISTS (SELECT 1 FROM events t WHERE t.kind LIKE 'tls-%' AND t.mta = 'exim'
                  AND t.queue_id = m.queue_id AND t.host = m.host)
GROUP BY m.client_ip
ORDER BY successful_logins DESC, count DESC, subject;

-- name: port25_blocked
-- smtp(8): "connect to mx.example[ip]:25: Connection timed out" (or refused, no route). Exim
-- logs the error after the host ("== a@b R=... T=remote_smtp defer (110) H=mx [ip]: Connection
-- timed out"), Sendmail in stat= ("Deferred: Connection timed out with mx.example.",
-- "Connection refused by [ip]"); neither logs the port, which is 25 unless a transport or mailer
-- sets another. The same failure towards many unrelated destinations points at our side:
-- outbound port 25 is filtered by the network provider.
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex,
         CASE WHEN mta = 'postfix'
              THEN regexp_extract(diagnostic, 'connect to \S+\[[^\]]*\]:25: (.+)$', 1)
              ELSE regexp_extract(diagnostic, '^((?:Connection (?:refused|timed out)|Network is unreachable|No route to host)\b.*)$', 1)
         END AS err,
         relay_port = 25 OR (mta <> 'postfix' AND relay_port IS NULL AND relay_ip IS NOT NULL) AS port25
  FROM deliveries WHERE logged_at >= $since AND logged_at < $until
), f AS (SELECT * FROM d WHERE status <> 'sent' AND err <> ''),
span AS (SELECT min(logged_at) AS a, max(logged_at) AS b FROM f),
-- destinations delivered to over port 25 while the failures happened: if most are, port 25
-- is open and the failing destinations are the problem (diagnose.py _port25_severity)
ok AS (SELECT DISTINCT d.recipient_domain FROM d, span WHERE d.status = 'sent'
         AND d.port25 AND d.logged_at BETWEEN span.a AND span.b)
SELECT 'port-25' AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen, list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       count(DISTINCT recipient_domain) AS n_destinations,
       count(*) FILTER (err ILIKE '%timed out%') AS timeouts,
       count(*) FILTER (err ILIKE '%refused%') AS refusals,
       (SELECT count(*) FROM d, span WHERE d.status = 'sent' AND d.port25
          AND d.logged_at BETWEEN span.a AND span.b) AS sent_via_port25_meanwhile,
       (SELECT count(*) FROM ok) AS destinations_ok,
       count(DISTINCT recipient_domain)
         FILTER (recipient_domain NOT IN (SELECT recipient_domain FROM ok))
         AS destinations_failing_only
FROM f
HAVING count(DISTINCT recipient_domain) >= $port25_destinations;

-- name: dns_failures
-- smtp(8): "Host or domain name not found. Name service error for name=D type=MX: Host not
-- found[, try again]". "Host not found" is NXDOMAIN (the domain does not exist); ", try again"
-- is a temporary failure (SERVFAIL, timeout: RFC 1035 section 4.1.1 RCODE 2).
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until AND status <> 'sent'
    AND diagnostic ILIKE '%Name service error for name=%'
)
SELECT CASE WHEN diagnostic ILIKE '%try again%' THEN 'lookup-failing' ELSE 'nxdomain' END AS subject,
       count(*) AS count, min(logged_at) AS first_seen, max(logged_at) AS last_seen,
       list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       list(DISTINCT regexp_extract(diagnostic, 'type=([A-Z]+)', 1)
            ORDER BY regexp_extract(diagnostic, 'type=([A-Z]+)', 1)) AS record_types,
       count(DISTINCT recipient) AS recipients
FROM d GROUP BY 1 ORDER BY count DESC, 1;

-- name: requireptr
-- Destinations refusing us for missing or unconfirmed reverse DNS (RFC 7372 X.7.25, Gmail
-- "does not have a PTR record", Postfix reject_unknown_client_hostname "cannot find your
-- hostname"). Classified reason requireptr.
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM deliveries WHERE logged_at >= $since AND logged_at < $until
)
SELECT 'reverse-dns' AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen, list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations
FROM d WHERE status <> 'sent' AND reason = 'requireptr'
HAVING count(*) > 0;

-- name: our_addresses
-- Our own sending/listening addresses as the logs show them: the IP a remote server quotes in
-- square brackets when it refuses us for who we are (reputation, PTR, rate; the remote's own
-- "host X[ip] said:" prefix removed first), and the local
-- address of postscreen(8) "CONNECT from [client]:port to [server]:25". A quoted address is
-- what the remote saw us connect from, so it is kept even on loopback (a relay or filter on
-- this machine, a lab); postscreen's loopback listener is not a sending address.
SELECT DISTINCT ip FROM (
  SELECT unnest(regexp_extract_all(regexp_replace(diagnostic, '^host \S+\[[^\]]*\] said: ', ''),
                                    '\[([0-9]{1,3}(?:\.[0-9]{1,3}){3})[\] ]', 1)) AS ip
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until
    AND reason IN ('requireptr', 'blocked', 'badreputation', 'toomanyconn', 'speeding', 'authfailure')
  UNION ALL
  SELECT regexp_extract(detail, ' to \[([0-9a-fA-F:.]+)\]', 1) FROM events
  WHERE kind = 'ps-connect' AND logged_at >= $since AND logged_at < $until
    AND regexp_extract(detail, ' to \[([0-9a-fA-F:.]+)\]', 1) NOT LIKE '127.%'
    AND regexp_extract(detail, ' to \[([0-9a-fA-F:.]+)\]', 1) <> '::1'
) WHERE ip <> '' ORDER BY ip;

-- name: blocklisted
-- Refusals naming a blocklist (pipeline/rules/default.toml [[blocklist]] tables), from the
-- delivery log and from bounce reports. One refusal is one recipient of one message: a DSN
-- about a refusal the log also shows (linked by the bounce_deliveries view, 0005: the report's
-- X-Postfix-Queue-ID or Message-ID, then the recipient) is the same refusal, counted once; a
-- DSN counts on its own only when the log has no blocklisted attempt for that message and
-- recipient in the range (the log was not ingested, or the refusal happened elsewhere).
-- Retries of a deferred recipient are one refusal too (`attempts` counts the log lines).
WITH logged AS (
  SELECT logged_at AS ts, blocklist, recipient_domain AS dest, message_key,
         lower(recipient) AS rcpt, lower(orig_recipient) AS orig_rcpt,
         delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until AND status <> 'sent' AND blocklist IS NOT NULL
), reported AS (
  SELECT DISTINCT c.report_hash, c.position, coalesce(c.last_attempt_date, r.report_date) AS ts,
         c.blocklist, lower(split_part(c.recipient, '@', -1)) AS dest, bd.message_key,
         lower(c.recipient) AS rcpt, lower(bd.original_recipient) AS orig_rcpt,
         'bounce report ' || coalesce(strftime(r.report_date, '%Y-%m-%d %H:%M:%S'), '') || ' for <'
         || c.recipient || '>: ' || coalesce(c.status, '') || ' ' || coalesce(c.diagnostic, '') AS ex
  FROM bounce_recipients c
  JOIN bounce_reports r USING (report_hash)
  LEFT JOIN bounce_deliveries bd USING (report_hash, position)
  WHERE r.kind = 'bounce' AND c.action = 'failed' AND c.blocklist IS NOT NULL
    AND coalesce(c.last_attempt_date, r.report_date) >= $since
    AND coalesce(c.last_attempt_date, r.report_date) < $until
), d AS (
  SELECT ts, blocklist, dest, ex, message_key || ' ' || rcpt AS refusal, 1 AS attempt FROM logged
  UNION ALL
  SELECT ts, blocklist, dest, ex, coalesce(message_key || ' ' || rcpt, report_hash || ' ' || position), 0
  FROM reported b
  WHERE NOT EXISTS (
    SELECT 1 FROM logged l
    WHERE l.message_key = b.message_key
      AND (l.rcpt IN (b.rcpt, b.orig_rcpt) OR l.orig_rcpt IN (b.rcpt, b.orig_rcpt)))
)
SELECT blocklist AS subject, count(DISTINCT refusal) AS count, min(ts) AS first_seen,
       max(ts) AS last_seen, list(ex ORDER BY ts, ex)[1:3] AS examples,
       list(DISTINCT dest ORDER BY dest) AS destinations,
       sum(attempt) AS attempts,
       count(DISTINCT refusal) FILTER (attempt = 0) AS from_bounce_reports_only
FROM d GROUP BY 1 ORDER BY count DESC, subject;

-- name: sender_authentication
-- SPF, DKIM and DMARC refusals. Enhanced codes from RFC 7372 section 3: X.7.20-X.7.22 DKIM,
-- X.7.23-X.7.24 SPF, X.7.26 multiple checks failed; DMARC refusals name the policy (RFC 7489
-- section 6.3 p=reject); Microsoft 5.7.509 (https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online).
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex,
         CASE
           WHEN diagnostic ILIKE '%dmarc%' THEN 'DMARC'
           WHEN dsn LIKE '_.7.26' OR (diagnostic ILIKE '%spf%' AND diagnostic ILIKE '%dkim%') THEN 'SPF and DKIM'
           WHEN dsn LIKE '_.7.23' OR dsn LIKE '_.7.24' OR diagnostic ILIKE '%spf%' THEN 'SPF'
           WHEN dsn LIKE '_.7.20' OR dsn LIKE '_.7.21' OR dsn LIKE '_.7.22' OR diagnostic ILIKE '%dkim%' THEN 'DKIM'
           ELSE 'sender authentication'
         END AS mechanism
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until AND status <> 'sent'
    AND (reason = 'authfailure' OR dsn SIMILAR TO '[45]\.7\.2[0-46]'
         OR regexp_matches(diagnostic, '\b(spf|dkim|dmarc)\b', 'i'))
)
SELECT mechanism AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen, list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       list(DISTINCT sender ORDER BY sender)[1:5] AS senders
FROM d GROUP BY 1 ORDER BY count DESC, subject;

-- name: tls_outbound
-- smtp(8): "TLS is required, but was not offered by host ..." (4.7.4), "Cannot start TLS:
-- handshake failure" (4.7.5), "Server certificate not verified" (postconf(5)
-- smtp_tls_security_level, TLS_README "Client-side TLS").
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until AND status <> 'sent'
    AND (reason = 'failedstarttls' OR dsn IN ('4.7.4', '4.7.5', '5.7.4', '5.7.5')
         OR diagnostic ILIKE '%TLS is required%' OR diagnostic ILIKE '%Cannot start TLS%'
         OR diagnostic ILIKE '%certificate not verified%')
)
SELECT coalesce(remote_host, relay_host, relay) AS subject, count(*) AS count,
       min(logged_at) AS first_seen, max(logged_at) AS last_seen,
       list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       min(regexp_replace(diagnostic, ' by host .*$', '')) AS error,
       (SELECT list(DISTINCT e.detail ORDER BY e.detail) FROM events e
         -- our side as client: Postfix's smtp/lmtp, Exim's tls_out ("TLS error on connection
         -- to"), Sendmail's STARTTLS=client
         WHERE e.service IN ('smtp', 'lmtp', 'smtp-out', 'tls-client')
           AND e.kind IN ('tls-warning', 'tls-error')
           AND e.logged_at BETWEEN min(d.logged_at) - INTERVAL 1 MINUTE AND max(d.logged_at)) AS tls_library_errors
FROM d GROUP BY 1 ORDER BY count DESC, subject;

-- name: tls_inbound
-- smtpd(8): "SSL_accept error from client[ip]", "warning: TLS library problem: ..."; Exim's
-- "TLS error on connection from <host> (SSL_accept): ..." (the spec's "Log files"); Sendmail's
-- "STARTTLS=server, error: accept failed=..." (op.me, STARTTLS).
SELECT 'inbound' AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen,
       -- the syslog tag as Postfix logs it (instance/service; rows from before 0011: service)
       list(strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || coalesce(instance || '/', '')
            || service || ': ' || detail
            ORDER BY logged_at)[1:3] AS examples,
       []::VARCHAR[] AS destinations,
       list(DISTINCT remote_ip ORDER BY remote_ip) FILTER (remote_ip IS NOT NULL) AS clients
FROM events
WHERE logged_at >= $since AND logged_at < $until
  AND service IN ('smtpd', 'postscreen', 'tlsproxy', 'smtp-in', 'tls-server')
  AND kind IN ('tls-error', 'tls-warning')
HAVING count(*) > 0;

-- name: throttling
-- Deferrals by destinations that slow us down. Greylisting (RFC 6647; postgrey's "Greylisted,
-- see http://postgrey.schweikert.ch/help/..."); rate limits (RFC 7372 X.7.28 is not rate but
-- Gmail uses 4.7.28 for "unusual rate", https://support.google.com/mail/answer/81126; Microsoft
-- "4.7.500 Server busy", Yahoo "TSS04 ... temporarily deferred due to unexpected volume",
-- https://senders.yahooinc.com/smtp-error-codes/; X.4.6/X.7.0 "too many connections").
WITH d AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex,
         CASE
           WHEN regexp_matches(diagnostic, 'grey ?list|gray ?list', 'i') THEN 'greylisting'
           WHEN reason IN ('speeding', 'toomanyconn')
             OR regexp_matches(diagnostic, 'rate limit|too many (connections|messages|recipients)|server busy|unexpected volume|try again later', 'i')
             THEN 'rate-limiting'
         END AS kind
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until AND status = 'deferred'
)
SELECT kind AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen, list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       count(DISTINCT message_key) AS messages,
       (SELECT count(*) FROM deliveries s
         WHERE s.status = 'sent' AND (s.message_key, s.recipient) IN
               (SELECT (x.message_key, x.recipient) FROM d x WHERE x.kind = d.kind)) AS delivered_later
FROM d WHERE kind IS NOT NULL GROUP BY kind ORDER BY count DESC;

-- name: recipient_failures
-- Final outcomes per recipient whose reason is mailbox full or user unknown, as a share of all
-- remote recipients with a final outcome in the range (RFC 3463 X.2.2 and X.1.1). Remote: mail
-- we send out through smtp(8)/lmtp(8). Not counted, in the numerator or the denominator: local
-- delivery (local(8), virtual(8), pipe) and the null-sender notifications this server makes
-- itself (bounce(8) DSNs and delay warnings, sent from MAIL FROM:<>: RFC 3461 section 6.2,
-- RFC 5321 section 4.5.5), which are not recipients anyone chose to send to.
WITH o AS (
  SELECT *, delivery_line(logged_at, mta, queue_id, recipient, relay, relay_host, relay_ip, dsn, status,
                        diagnostic) AS ex
  FROM recipient_outcomes o
  WHERE logged_at >= $since AND logged_at < $until AND service IN ('smtp', 'lmtp')
    AND coalesce(sender, '') <> ''
    AND NOT EXISTS (SELECT 1 FROM messages m
                    WHERE m.message_key = o.message_key AND m.bounce_of_key IS NOT NULL)
), total AS (SELECT count(*) AS n FROM o)
SELECT reason AS subject, count(*) AS count, min(logged_at) AS first_seen,
       max(logged_at) AS last_seen, list(ex ORDER BY logged_at, ex)[1:3] AS examples,
       list(DISTINCT recipient_domain ORDER BY recipient_domain) AS destinations,
       round(count(*) / any_value(total.n), 4) AS rate,
       any_value(total.n) AS recipients_total,
       count(*) FILTER (status = 'bounced') AS bounced,
       count(*) FILTER (status <> 'bounced') AS still_deferred
FROM o, total
WHERE status <> 'sent' AND reason IN ('mailboxfull', 'userunknown')
GROUP BY reason ORDER BY count DESC;

-- name: delay_growth
-- Postfix logs "delays=a/b/c/d" (Postfix 2.3 and later, RELEASE_NOTES-2.3): a = before the
-- queue manager (arrival, cleanup, content filter), b = in the queue manager (waiting in the
-- active queue), c = connection set-up (DNS, HELO, TLS), d = transmission. Successful deliveries
-- are split in time into an earlier and a recent half; a stage whose p90 grew by a factor and
-- an absolute amount is reported.
WITH s AS (
  SELECT *, ntile(2) OVER (ORDER BY logged_at, line_offset) AS half
  FROM deliveries
  WHERE logged_at >= $since AND logged_at < $until AND status = 'sent' AND delay IS NOT NULL
), long AS (
  SELECT half, logged_at, queue_id, recipient, relay, delay, 'before_queue' AS stage, delay_before_queue AS v FROM s
  UNION ALL SELECT half, logged_at, queue_id, recipient, relay, delay, 'in_queue', delay_in_queue FROM s
  UNION ALL SELECT half, logged_at, queue_id, recipient, relay, delay, 'connect', delay_connect FROM s
  UNION ALL SELECT half, logged_at, queue_id, recipient, relay, delay, 'transmit', delay_transmit FROM s
), agg AS (
  SELECT stage,
         count(v) FILTER (half = 1) AS earlier_n, count(v) FILTER (half = 2) AS recent_n,
         quantile_cont(v, 0.9) FILTER (half = 1) AS earlier_p90,
         quantile_cont(v, 0.9) FILTER (half = 2) AS recent_p90,
         quantile_cont(v, 0.5) FILTER (half = 2) AS recent_p50,
         min(logged_at) FILTER (half = 2) AS first_seen, max(logged_at) FILTER (half = 2) AS last_seen,
         list(strftime(logged_at, '%Y-%m-%d %H:%M:%S') || ' ' || queue_id || ': to=<' || coalesce(recipient, '')
              || '>, relay=' || coalesce(relay, '') || ', delay=' || delay || ', ' || stage || '=' || v
              ORDER BY v DESC, logged_at, queue_id) FILTER (half = 2) AS worst
  FROM long GROUP BY stage
), slow AS (
  -- the destinations behind the growth: recent deliveries above the earlier p90 of that stage
  -- by the same factor and amount the stage as a whole must have grown by (so a local
  -- delivery 0.01 s over a p90 of 0 is not one), the slowest first, then by name
  SELECT l.stage, lower(split_part(l.recipient, '@', -1)) AS dest, max(l.v) AS worst_v
  FROM long l JOIN agg a USING (stage)
  WHERE l.half = 2 AND l.v > a.earlier_p90
    AND l.v >= $delay_factor * greatest(a.earlier_p90, 0.1)
    AND l.v - a.earlier_p90 >= $delay_min_growth
  GROUP BY ALL
), dests AS (
  SELECT stage, list(dest ORDER BY worst_v DESC, dest) AS dests FROM slow GROUP BY stage
)
SELECT stage AS subject, recent_n AS count, first_seen, last_seen, worst[1:3] AS examples,
       coalesce(dests, []::VARCHAR[]) AS destinations,
       round(earlier_p90, 3) AS earlier_p90_s, round(recent_p90, 3) AS recent_p90_s,
       round(recent_p50, 3) AS recent_p50_s, earlier_n
FROM agg LEFT JOIN dests USING (stage)
WHERE earlier_n >= $delay_min_samples AND recent_n >= $delay_min_samples
  AND recent_p90 >= $delay_factor * greatest(earlier_p90, 0.1)
  AND recent_p90 - earlier_p90 >= $delay_min_growth
ORDER BY recent_p90 - earlier_p90 DESC;

-- name: outcomes_by_hour
-- For the HTML report and notebooks: delivery attempts per hour and status.
SELECT date_trunc('hour', logged_at) AS hour,
       count(*) FILTER (status = 'sent') AS sent,
       count(*) FILTER (status = 'deferred') AS deferred,
       count(*) FILTER (status = 'bounced') AS bounced,
       count(*) FILTER (status NOT IN ('sent', 'deferred', 'bounced')) AS other
FROM deliveries WHERE logged_at >= $since AND logged_at < $until
GROUP BY 1 ORDER BY 1;

-- name: delay_stages
-- For the HTML report and notebooks: p50/p90/max of each delay stage of successful deliveries.
WITH s AS (SELECT * FROM deliveries
           WHERE logged_at >= $since AND logged_at < $until AND status = 'sent' AND delay IS NOT NULL),
long AS (
  SELECT 1 AS ord, 'before_queue' AS stage, delay_before_queue AS v FROM s
  UNION ALL SELECT 2, 'in_queue', delay_in_queue FROM s
  UNION ALL SELECT 3, 'connect', delay_connect FROM s
  UNION ALL SELECT 4, 'transmit', delay_transmit FROM s
)
SELECT stage, count(v) AS n, quantile_cont(v, 0.5) AS p50, quantile_cont(v, 0.9) AS p90,
       max(v) AS max
FROM long GROUP BY ord, stage ORDER BY ord;

-- name: bounce_reasons_by_destination
-- For the HTML report and notebooks: failed final outcomes per destination and reason.
WITH o AS (
  SELECT recipient_domain, coalesce(reason, 'unclassified') AS reason FROM recipient_outcomes
  WHERE logged_at >= $since AND logged_at < $until AND status IN ('bounced', 'expired', 'deferred')
), top AS (
  SELECT recipient_domain FROM o GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT $top
)
SELECT recipient_domain AS destination, reason, count(*) AS count
FROM o WHERE recipient_domain IN (SELECT recipient_domain FROM top)
GROUP BY 1, 2 ORDER BY 1, count DESC, 2;

-- name: recent_bounce_reports
-- For the HTML report: the latest bounce reports (subjects are attacker-controlled text).
SELECT r.report_date, r.subject, r.original_subject, c.recipient, c.status, c.reason,
       c.diagnostic
FROM bounce_recipients c JOIN bounce_reports r USING (report_hash)
WHERE coalesce(r.report_date, r.ingested_at) >= $since AND coalesce(r.report_date, r.ingested_at) < $until
ORDER BY r.report_date DESC NULLS LAST LIMIT $top;

-- name: recent_rejections
-- For the HTML report: the latest rejections of clients (HELO names are attacker-controlled).
SELECT logged_at, client_name, client_ip, helo, sender, recipient, reply_code, reason
FROM rejections WHERE logged_at >= $since AND logged_at < $until
ORDER BY logged_at DESC LIMIT $top;

-- name: failures_by_reason
-- For the notebooks: failed recipients by reason and by where they were seen: the final outcome
-- in the MTA log (bounced, expired) and the failed recipients of bounce mail (DSNs).
SELECT seen_in, reason, count(*) AS recipients FROM (
  SELECT 'log' AS seen_in, coalesce(reason, 'unclassified') AS reason FROM recipient_outcomes
  WHERE logged_at >= $since AND logged_at < $until AND status IN ('bounced', 'expired')
  UNION ALL
  SELECT 'bounce mail', coalesce(reason, 'unclassified') FROM bounces
  WHERE report_date IS NULL OR (report_date >= $since AND report_date < $until)  -- undated: kept
) GROUP BY ALL ORDER BY recipients DESC, seen_in, reason;
