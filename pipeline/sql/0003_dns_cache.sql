-- DNS answers cached with their TTL (pipeline/dns.py). One row per (qname, rdtype); a refresh
-- replaces the row. Negative answers (NXDOMAIN, NODATA) are cached too, for the SOA-derived
-- negative TTL (RFC 2308 section 5); timeouts and server failures are never cached.
-- answer: {"status": "noerror|nxdomain|nodata", "records": [...], "canonical_name": "..."}
CREATE TABLE dns_cache (
    qname      VARCHAR NOT NULL,   -- lower case, no trailing dot
    rdtype     VARCHAR NOT NULL,   -- "A", "MX", "TXT", ...
    answer     JSON NOT NULL,
    ttl        INTEGER NOT NULL,   -- seconds, as received
    fetched_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (qname, rdtype)
);
