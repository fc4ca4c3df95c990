-- Device credentials: how third-party trackers (the OwnTracks app, OsmAnd / Traccar Client)
-- prove which person or asset their fixes belong to.
-- Only a SHA-256 hash of each secret is kept: the secret is 256 random bits, shown once at issue.
-- Every integer is a 64-bit INTEGER and every timestamp is Unix milliseconds, as in PostgreSQL.

CREATE TABLE device_credentials (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES organisations (id),
    -- The person (the app on their phone) or the asset (a tracker in a vehicle) it reports for.
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'asset')),
    subject_id   INTEGER NOT NULL,
    label        TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_by   INTEGER REFERENCES users (id),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    revoked_by   INTEGER REFERENCES users (id)
);
CREATE INDEX device_credentials_org ON device_credentials (org_id, created_at);
CREATE INDEX device_credentials_subject ON device_credentials (subject_kind, subject_id);
