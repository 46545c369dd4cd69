-- Queries over DMARC aggregate and TLS-RPT reports (views of pipeline/sql/0013_dmarc_tlsrpt.sql)
-- for the diagnosis (pipeline/diagnose.py, REPORT_DETECTORS). A report belongs to the range
-- when its date range overlaps [$since, $until).

-- name: dmarc_sources
-- One row per (policy domain, sending IP) with messages failing DMARC (neither DKIM nor SPF
-- aligned and passing, RFC 7489 section 4.2). The diagnosis tells the sources apart in Python:
-- our own servers (they also send aligned mail, or the logs / --our-ip name them), forwarders
-- and mailing lists (the receiver named a policy override reason, RFC 7489 Appendix C
-- PolicyOverrideType, or the mail carries a broken DKIM signature of our domain), and the rest,
-- which looks like spoofing.
WITH r AS (
  SELECT * FROM dmarc_records WHERE end_at >= $since AND begin_at < $until
)
SELECT policy_domain || '/' || source_ip AS subject,
       policy_domain, source_ip,
       sum(count) FILTER (WHERE NOT dmarc_pass)::BIGINT AS count,
       sum(count)::BIGINT AS messages,
       coalesce(sum(count) FILTER (WHERE dmarc_pass), 0)::BIGINT AS aligned_messages,
       coalesce(sum(count) FILTER (WHERE spf_aligned), 0)::BIGINT AS spf_aligned_messages,
       coalesce(sum(count) FILTER (WHERE dkim_aligned), 0)::BIGINT AS dkim_aligned_messages,
       coalesce(sum(count) FILTER (WHERE NOT dmarc_pass AND disposition IN ('reject', 'quarantine')), 0)::BIGINT AS refused_messages,
       coalesce(sum(count) FILTER (WHERE NOT dmarc_pass AND len(list_filter(reasons, lambda x: split_part(x, ':', 1) IN ('forwarded', 'mailing_list', 'trusted_forwarder'))) > 0), 0)::BIGINT AS override_messages,
       coalesce(sum(count) FILTER (WHERE NOT dmarc_pass AND len(list_filter(dkim_domains, lambda d: d = header_from OR d LIKE '%.' || header_from OR header_from LIKE '%.' || d)) > 0), 0)::BIGINT AS own_signature_messages,
       coalesce(sum(count) FILTER (WHERE NOT dmarc_pass AND coalesce(spf, '') <> 'pass'), 0)::BIGINT AS spf_failing_messages,
       coalesce(sum(count) FILTER (WHERE NOT dmarc_pass AND coalesce(dkim, '') <> 'pass'), 0)::BIGINT AS dkim_failing_messages,
       list_sort(list_distinct(flatten(list(spf_domains) FILTER (WHERE NOT dmarc_pass)))) AS spf_domains_failing,
       list_sort(list_distinct(flatten(list(list_transform(list_zip(dkim_domains, dkim_selectors), lambda z: coalesce(z[1], '?') || ' s=' || coalesce(z[2], '?'))) FILTER (WHERE NOT dmarc_pass)))) AS dkim_signatures_failing,
       list_sort(list_distinct(list(header_from) FILTER (WHERE header_from IS NOT NULL))) AS destinations,
       list_sort(list_distinct(list(reporter))) AS reporters,
       min(begin_at) AS first_seen, max(end_at) AS last_seen,
       any_value(policy) AS policy,
       list(reporter || ' report ' || report_id || ': ' || count || ' message(s), disposition '
            || disposition || ', DKIM ' || coalesce(dkim, '-') || ', SPF ' || coalesce(spf, '-')
            || ', envelope ' || coalesce(envelope_from, array_to_string(spf_domains, ',') , '-')
            ORDER BY count DESC)
         FILTER (WHERE NOT dmarc_pass)[1:3] AS examples
FROM r
GROUP BY policy_domain, source_ip
HAVING sum(count) FILTER (WHERE NOT dmarc_pass) > 0
ORDER BY count DESC, subject;

-- name: dmarc_policy_ready
-- Domains whose latest published policy is p=none where every source that sends aligned mail
-- sends only aligned mail: moving to quarantine/reject (RFC 7489 section 6.3, "p") would then
-- only touch mail from sources that never align.
WITH r AS (
  SELECT * FROM dmarc_records WHERE end_at >= $since AND begin_at < $until
), latest AS (
  SELECT domain, arg_max(p, end_at) AS p, arg_max(sp, end_at) AS sp, arg_max(pct, end_at) AS pct,
         list_sort(list_distinct(list(reporter))) AS reporters,
         min(begin_at) AS first_seen, max(end_at) AS last_seen, count(*)::BIGINT AS reports
  FROM dmarc_reports WHERE end_at >= $since AND begin_at < $until
  GROUP BY domain
), src AS (
  SELECT policy_domain, source_ip, sum(count)::BIGINT AS messages,
         coalesce(sum(count) FILTER (WHERE dmarc_pass), 0)::BIGINT AS aligned
  FROM r GROUP BY ALL
)
SELECT l.domain AS subject, l.p AS policy, l.sp AS subdomain_policy, l.reports, l.reporters,
       l.first_seen, l.last_seen,
       sum(s.aligned)::BIGINT AS count,
       count(*) FILTER (WHERE s.aligned > 0)::BIGINT AS aligned_sources,
       coalesce(sum(s.messages - s.aligned) FILTER (WHERE s.aligned > 0), 0)::BIGINT AS unaligned_from_aligned_sources,
       count(*) FILTER (WHERE s.aligned = 0)::BIGINT AS never_aligned_sources,
       coalesce(sum(s.messages) FILTER (WHERE s.aligned = 0), 0)::BIGINT AS never_aligned_messages,
       [l.domain] AS destinations
FROM latest l JOIN src s ON s.policy_domain = l.domain
WHERE l.p = 'none'
GROUP BY ALL
HAVING count(*) FILTER (WHERE s.aligned > 0) > 0
   AND coalesce(sum(s.messages - s.aligned) FILTER (WHERE s.aligned > 0), 0) = 0
ORDER BY subject;

-- name: tlsrpt_failures
-- TLS-RPT failure details (RFC 8460 section 4.3 result types) by policy domain, receiving MX
-- and result type, with the sessions the same reports counted for that policy domain.
WITH f AS (
  SELECT * FROM tlsrpt_failures WHERE end_at >= $since AND begin_at < $until
), totals AS (
  SELECT policy_domain, sum(successful_sessions)::BIGINT AS successful_sessions,
         sum(failed_sessions)::BIGINT AS failed_sessions
  FROM tlsrpt_policies WHERE end_at >= $since AND begin_at < $until
  GROUP BY ALL
)
SELECT f.policy_domain || '/' || coalesce(f.receiving_mx_hostname, f.receiving_ip, '-') || '/' || f.result_type AS subject,
       f.policy_domain, coalesce(f.receiving_mx_hostname, f.receiving_ip, '-') AS mx, f.result_type,
       list_sort(list_distinct(list(f.policy_type))) AS policy_types,
       bool_or(f.policy_type = 'tlsa'
               OR (f.policy_type = 'sts' AND EXISTS (
                   SELECT 1 FROM tlsrpt_policies p
                   WHERE p.report_key = f.report_key AND p.policy_domain = f.policy_domain
                     AND array_to_string(p.policy_string, chr(10)) ILIKE '%mode:%enforce%'))) AS enforced,
       sum(f.failed_session_count)::BIGINT AS count,
       any_value(t.successful_sessions) AS successful_sessions,
       any_value(t.failed_sessions) AS failed_sessions,
       list_sort(list_distinct(list(f.reporter))) AS reporters,
       list_sort(list_distinct(list(f.receiving_ip) FILTER (WHERE f.receiving_ip IS NOT NULL))) AS receiving_ips,
       list_sort(list_distinct(list(f.failure_reason_code) FILTER (WHERE f.failure_reason_code IS NOT NULL))) AS failure_reason_codes,
       count(DISTINCT f.sending_mta_ip)::BIGINT AS sending_ips,
       min(f.begin_at) AS first_seen, max(f.end_at) AS last_seen,
       [f.policy_domain] AS destinations,
       list(f.reporter || ' report ' || f.report_id || ': ' || f.failed_session_count
            || ' session(s) from ' || coalesce(f.sending_mta_ip, '?')
            || coalesce(' (' || f.failure_reason_code || ')', '')
            ORDER BY f.failed_session_count DESC)[1:3] AS examples
FROM f LEFT JOIN totals t USING (policy_domain)
GROUP BY f.policy_domain, coalesce(f.receiving_mx_hostname, f.receiving_ip, '-'), f.result_type
ORDER BY count DESC, subject;
