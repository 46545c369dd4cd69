-- Views and macros are not migrations: pipeline/store.py runs the files of this folder, in
-- name order, after the migrations whenever their text changed (schema_views keeps the
-- checksum). Each object has this one definition; change it here. Every definition starts a
-- line with CREATE OR REPLACE VIEW or CREATE OR REPLACE MACRO (a read-only open of an older
-- store makes them TEMP).
--
-- The scheduled checks' history (watch [checks]) over check_log (0016).

CREATE OR REPLACE VIEW check_history AS
SELECT run_at, checked_at, kind, subject, check_name, status, changed, detail, records
FROM check_log;

CREATE OR REPLACE VIEW check_latest AS
SELECT run_at, checked_at, kind, subject, check_name, status, changed, detail, records
FROM check_log
QUALIFY row_number() OVER (PARTITION BY kind, subject, check_name ORDER BY checked_at DESC) = 1;
