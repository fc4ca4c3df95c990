-- A hash chain per organisation through the audit trail (chain 0: entries of no organisation):
-- each entry carries the hash of the one before it, so an edited, removed or reordered entry
-- breaks every hash after it (`vigil audit verify`).
ALTER TABLE audit_log ADD COLUMN chain_seq INTEGER;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_log_chain ON audit_log (COALESCE(org_id, 0), chain_seq);
-- The newest entry of each chain: updating it takes the row lock that orders writers.
CREATE TABLE audit_heads (
    chain     INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL
);
