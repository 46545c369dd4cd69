-- The checksum of the views files (pipeline/sql/views/) the store last ran: pipeline/store.py
-- runs them again when theirs differs. From here on migrations hold tables and the statements
-- that move data between them; views and macros live in those files.
CREATE TABLE schema_views (
    name        VARCHAR PRIMARY KEY,     -- 'views'
    checksum    VARCHAR NOT NULL,        -- sha256 over the files' names and texts
    applied_at  TIMESTAMPTZ NOT NULL
);
