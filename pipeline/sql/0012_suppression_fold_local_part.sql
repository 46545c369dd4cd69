-- Suppression addresses compare case-insensitively in their ASCII letters, local part included
-- (issue 10: `suppressions add Spammy.Person@Example.COM` kept `Spammy.Person@example.com`, and
-- `remove spammy.person@example.com` then named another address). pipeline/suppressions.py
-- (normalize_address and the module docstring) says why; this is its SQL fast path again and
-- the stored forms brought into line with it.


-- An address normalised before: the ASCII letters of its local part (everything before the last
-- '@': a quoted local part may hold one) lower-cased, the domain (already normalised) kept.
CREATE TEMP MACRO mtalens_fold_local(address) AS
    translate(regexp_extract(address, '^(.*)@[^@]*$', 1),
              'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
    || '@' || regexp_extract(address, '^.*@([^@]*)$', 1);

-- Python's normal forms of the addresses SQL does not read.
UPDATE suppression_addresses SET address = mtalens_fold_local(address) WHERE address IS NOT NULL;

-- Never-suppress entries and export targets' contents are keyed by normal form: two spellings
-- become one entry (the earliest added; a target holds the address once, as last exported).
-- '@domain' entries are unchanged (nothing before the '@').
CREATE TEMP TABLE mtalens_never_folded AS
SELECT mtalens_fold_local(entry) AS entry, arg_min(note, added_at) AS note,
       min(added_at) AS added_at
FROM suppression_never GROUP BY 1;
DELETE FROM suppression_never;
INSERT INTO suppression_never SELECT entry, note, added_at FROM mtalens_never_folded;
DROP TABLE mtalens_never_folded;

CREATE TEMP TABLE mtalens_export_state_folded AS
SELECT name, mtalens_fold_local(address) AS address, arg_max(kind, exported_at) AS kind,
       max(exported_at) AS exported_at
FROM suppression_export_state GROUP BY 1, 2;
DELETE FROM suppression_export_state;
INSERT INTO suppression_export_state
SELECT name, address, kind, exported_at FROM mtalens_export_state_folded;
DROP TABLE mtalens_export_state_folded;

DROP MACRO mtalens_fold_local;

-- The per-address summary (0010) is keyed by the old forms: dropped, so the next refresh
-- rebuilds it (until then the policy is evaluated without it, 0009's staged evaluation).
-- suppression_manual keeps the addresses as they were typed: they are normalised when read.
DELETE FROM suppression_summary_state;
DELETE FROM suppression_summary;
DELETE FROM suppression_summary_evidence;
DELETE FROM suppression_summary_resets;
DELETE FROM suppression_summary_expired;
DELETE FROM suppression_summary_addresses;
