-- The scheduled checks of `mtalens watch` ([checks] in mtalens.toml, pipeline/checks.py): one row
-- per check per run, append-only, so the history says when a listing appeared or a record changed.
--   kind = 'blocklist': subject is one of our IPs, check_name a DNSBL zone, status listed |
--          not_listed | query_error (the list answered with an error code, e.g. Spamhaus'
--          127.255.255.254 for a public resolver) | unknown (the lookup failed, or was not sent)
--   kind = 'domain': subject is a mail domain, check_name mx | spf | dmarc | dkim:<selector> |
--          mta-sts | tls-rpt, status ok | warning | error | unknown (the worst of its findings)
-- records: what the check's lookups returned ("<qname> <type> <status>: <records>"), sorted;
-- changed: the records (a domain check) or the listing (a blocklist check) differ from the
-- previous run's, both runs having an answer (a failed lookup is not a change).
CREATE TABLE check_log (
    run_at      TIMESTAMPTZ NOT NULL,
    checked_at  TIMESTAMPTZ NOT NULL,
    kind        VARCHAR NOT NULL,
    subject     VARCHAR NOT NULL,
    check_name  VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    changed     BOOLEAN NOT NULL,
    detail      VARCHAR NOT NULL,
    records     VARCHAR[] NOT NULL
);
