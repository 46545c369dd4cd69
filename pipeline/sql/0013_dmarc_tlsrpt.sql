-- DMARC aggregate reports (RFC 7489 section 7.2 and Appendix C; DMARCbis aggregate reporting)
-- and SMTP TLS reports (RFC 8460 section 4), as `mtalens reports ingest` stores them
-- (pipeline/aggregate_reports.py). The *_log tables are storage; the views at the end are the
-- public contract: dmarc_reports, dmarc_records, tlsrpt_reports, tlsrpt_policies,
-- tlsrpt_failures.
--
-- A report is keyed by its reporter and its report id (RFC 7489 Appendix C: report_id is
-- unique per reporter; RFC 8460 section 4.4: report-id likewise), so the same report read
-- twice, from a mailbox and from a saved file, is stored once.

CREATE TABLE dmarc_report_log (
    report_key          VARCHAR PRIMARY KEY,   -- lower(org_name) || chr(31) || report_id
    org_name            VARCHAR NOT NULL,
    report_id           VARCHAR NOT NULL,
    email               VARCHAR,
    extra_contact_info  VARCHAR,
    format              VARCHAR NOT NULL,      -- rfc7489 | dmarcbis
    version             VARCHAR,
    generator           VARCHAR,               -- DMARCbis report_metadata/generator
    begin_at            TIMESTAMPTZ NOT NULL,
    end_at              TIMESTAMPTZ NOT NULL,
    errors              VARCHAR[],
    domain              VARCHAR NOT NULL,      -- policy_published
    p                   VARCHAR,
    sp                  VARCHAR,
    pct                 INTEGER,               -- RFC 7489 only
    adkim               VARCHAR,
    aspf                VARCHAR,
    fo                  VARCHAR,
    np                  VARCHAR,               -- DMARCbis
    testing             VARCHAR,               -- DMARCbis
    discovery_method    VARCHAR,               -- DMARCbis
    records             INTEGER NOT NULL,
    messages            BIGINT NOT NULL,
    source              VARCHAR NOT NULL,      -- file or mailbox it came from
    source_kind         VARCHAR NOT NULL,      -- mail | file
    "offset"            BIGINT,                -- of the message in an mbox
    member              VARCHAR,               -- attachment / archive member path
    ingested_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE dmarc_record_log (
    report_key      VARCHAR NOT NULL,
    position        INTEGER NOT NULL,          -- 1-based, in report order
    source_ip       VARCHAR NOT NULL,
    count           BIGINT NOT NULL,
    disposition     VARCHAR NOT NULL,          -- none | quarantine | reject (| pass, DMARCbis)
    dkim            VARCHAR,                   -- policy_evaluated: pass only when aligned
    spf             VARCHAR,
    reasons         VARCHAR[],                 -- policy override "type" or "type: comment"
    header_from     VARCHAR,
    envelope_from   VARCHAR,
    envelope_to     VARCHAR,
    dkim_domains    VARCHAR[],                 -- auth_results/dkim, one entry per signature
    dkim_selectors  VARCHAR[],
    dkim_results    VARCHAR[],
    spf_domains     VARCHAR[],                 -- auth_results/spf
    spf_scopes      VARCHAR[],
    spf_results     VARCHAR[]
);

CREATE TABLE tlsrpt_report_log (
    report_key           VARCHAR PRIMARY KEY,  -- lower(organization-name) || chr(31) || report-id
    organization_name    VARCHAR NOT NULL,
    report_id            VARCHAR NOT NULL,
    contact_info         VARCHAR,
    begin_at             TIMESTAMPTZ NOT NULL,
    end_at               TIMESTAMPTZ NOT NULL,
    policies             INTEGER NOT NULL,
    successful_sessions  BIGINT NOT NULL,
    failed_sessions      BIGINT NOT NULL,
    source               VARCHAR NOT NULL,
    source_kind          VARCHAR NOT NULL,
    "offset"             BIGINT,
    member               VARCHAR,
    ingested_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE tlsrpt_policy_log (
    report_key           VARCHAR NOT NULL,
    position             INTEGER NOT NULL,
    policy_type          VARCHAR NOT NULL,     -- tlsa | sts | no-policy-found
    policy_domain        VARCHAR NOT NULL,
    policy_string        VARCHAR[],
    mx_hosts             VARCHAR[],
    successful_sessions  BIGINT NOT NULL,
    failed_sessions      BIGINT NOT NULL
);

CREATE TABLE tlsrpt_failure_log (
    report_key              VARCHAR NOT NULL,
    policy_position         INTEGER NOT NULL,
    position                INTEGER NOT NULL,
    result_type             VARCHAR NOT NULL,  -- RFC 8460 section 4.3
    sending_mta_ip          VARCHAR,
    receiving_mx_hostname   VARCHAR,
    receiving_mx_helo       VARCHAR,
    receiving_ip            VARCHAR,
    failed_session_count    BIGINT NOT NULL,
    additional_information  VARCHAR,
    failure_reason_code     VARCHAR
);
