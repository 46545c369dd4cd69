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
