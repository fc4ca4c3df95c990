-- Alerts: what an adviser (or an imported CAP alert) broadcasts, who it reached and how far
-- each copy got. An alert and its whole recipient snapshot commit together, before the sender
-- hears 201, so a crash never leaves an alert with a half-known audience.

CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY,
    org_id           INTEGER NOT NULL REFERENCES organisations (id),
    sender_id        INTEGER REFERENCES users (id),
    -- CAP identity: (cap_sender, identifier) is unique; Vigil's own alerts use a UUID.
    identifier       TEXT NOT NULL,
    cap_sender       TEXT NOT NULL,
    cap_sent         TEXT,
    source           TEXT NOT NULL CHECK (source IN ('vigil', 'cap_import')),
    msg_type         TEXT NOT NULL CHECK (msg_type IN ('alert', 'update', 'cancel')),
    references_id    INTEGER REFERENCES alerts (id),
    severity         TEXT NOT NULL,
    urgency          TEXT NOT NULL,
    certainty        TEXT NOT NULL,
    category         TEXT NOT NULL,
    security_level   INTEGER CHECK (security_level BETWEEN 1 AND 6),
    default_language TEXT NOT NULL,
    content          TEXT NOT NULL,
    target           TEXT NOT NULL,
    sms_fallback     BOOLEAN NOT NULL,
    recipient_count  INTEGER NOT NULL,
    -- Ledger counts by state, refreshed by the ledger writer (JSON).
    counts           TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    cancelled_at     INTEGER,
    UNIQUE (cap_sender, identifier)
);
CREATE INDEX alerts_org ON alerts (org_id, created_at);
CREATE INDEX alerts_created ON alerts (created_at);

-- One row per person reached. `state` only moves forward:
-- queued -> sent -> delivered -> read -> acknowledged.
CREATE TABLE alert_recipients (
    alert_id        INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reasons         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'read', 'acknowledged')),
    channel         TEXT,
    sent_at         INTEGER,
    delivered_at    INTEGER,
    read_at         INTEGER,
    acknowledged_at INTEGER,
    -- When the fallback sweeper next looks at this copy (push, then SMS); NULL: nothing due.
    next_attempt_at INTEGER,
    push_attempts   INTEGER NOT NULL DEFAULT 0,
    sms_messages    INTEGER NOT NULL DEFAULT 0,
    sms_segments    INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    PRIMARY KEY (alert_id, user_id)
);
CREATE INDEX alert_recipients_user ON alert_recipients (user_id, alert_id);
CREATE INDEX alert_recipients_due ON alert_recipients (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

CREATE TABLE alert_templates (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES organisations (id),
    name       TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

-- Organisations an adviser may alert beyond their own (org_id NULL: every organisation).
-- Granted only by a system admin.
CREATE TABLE broadcast_grants (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id     INTEGER REFERENCES organisations (id) ON DELETE CASCADE,
    granted_by INTEGER REFERENCES users (id),
    granted_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX broadcast_grants_one ON broadcast_grants (user_id, COALESCE(org_id, 0));
