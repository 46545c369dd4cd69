-- Views and macros are not migrations: pipeline/store.py runs the files of this folder, in
-- name order, after the migrations whenever their text changed (schema_views keeps the
-- checksum). Each object has this one definition; change it here. Every definition starts a
-- line with CREATE OR REPLACE VIEW or CREATE OR REPLACE MACRO (a read-only open of an older
-- store makes them TEMP).
--
-- DMARC aggregate and TLS-RPT report views over the tables of 0013.

CREATE OR REPLACE VIEW dmarc_reports AS
SELECT org_name AS reporter, email AS reporter_email, report_id, begin_at, end_at,
       domain, p, sp, pct, adkim, aspf, fo, np, testing, discovery_method,
       format, version, generator, errors, records, messages,
       source, member, ingested_at, report_key
FROM dmarc_report_log;

CREATE OR REPLACE VIEW dmarc_records AS
SELECT r.org_name AS reporter, r.report_id, r.begin_at, r.end_at, r.domain AS policy_domain,
       r.p AS policy, c.source_ip, c.count, c.disposition, c.dkim, c.spf,
       c.dkim = 'pass' AS dkim_aligned, c.spf = 'pass' AS spf_aligned,
       (c.dkim = 'pass' OR c.spf = 'pass') AS dmarc_pass,
       c.header_from, c.envelope_from, c.envelope_to,
       c.dkim_domains, c.dkim_selectors, c.dkim_results,
       c.spf_domains, c.spf_scopes, c.spf_results, c.reasons,
       c.report_key, c.position
FROM dmarc_record_log c JOIN dmarc_report_log r USING (report_key);

CREATE OR REPLACE VIEW tlsrpt_reports AS
SELECT organization_name AS reporter, contact_info, report_id, begin_at, end_at, policies,
       successful_sessions, failed_sessions, source, member, ingested_at, report_key
FROM tlsrpt_report_log;

CREATE OR REPLACE VIEW tlsrpt_policies AS
SELECT r.organization_name AS reporter, r.report_id, r.begin_at, r.end_at,
       p.policy_type, p.policy_domain, p.mx_hosts, p.policy_string,
       p.successful_sessions, p.failed_sessions, p.report_key, p.position
FROM tlsrpt_policy_log p JOIN tlsrpt_report_log r USING (report_key);

CREATE OR REPLACE VIEW tlsrpt_failures AS
SELECT r.organization_name AS reporter, r.report_id, r.begin_at, r.end_at,
       p.policy_type, p.policy_domain, p.mx_hosts, f.result_type, f.sending_mta_ip,
       f.receiving_mx_hostname, f.receiving_mx_helo, f.receiving_ip, f.failed_session_count,
       f.failure_reason_code, f.additional_information, f.report_key
FROM tlsrpt_failure_log f
JOIN tlsrpt_policy_log p ON p.report_key = f.report_key AND p.position = f.policy_position
JOIN tlsrpt_report_log r ON r.report_key = f.report_key;
