-- Where `mtalens bounces ingest imaps://...` stands in each IMAP mailbox (pipeline/imap.py).
-- `mailbox` is the URL's canonical form (scheme, user, host, port, mailbox; never a password).
-- UIDs are only comparable under one UIDVALIDITY (RFC 3501 section 2.3.1.1): when the server
-- reports another one, the mailbox is read again from the start (the messages already stored
-- are recognised by their content hash). Every message up to `last_uid` is stored; those up to
-- `flagged_uid` have also been flagged \Seen or moved; the ones in between (a run stopped after
-- its commit) are flagged or moved at the start of the next run.
CREATE TABLE imap_checkpoints (
    mailbox      VARCHAR PRIMARY KEY,
    uidvalidity  UBIGINT NOT NULL,
    last_uid     UBIGINT NOT NULL,
    flagged_uid  UBIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
