-- Singleton work of a cluster (fallback sweeps, reminders, retention): the node named in
-- `holder` does it until `expires_at` (ms); it renews before then, and when it dies another
-- node takes the lease once it has expired. A single node holds them all.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
