-- Delivery channels. Web Push subscriptions: one row per browser (or installed PWA) that asked
-- to be woken for its signed-in user. The endpoint is the push service's capability URL for that
-- browser and is unique: a browser that signs in as someone else moves its subscription to them.
-- p256dh and auth are the browser's public key and auth secret (base64url), which encrypt every
-- payload (RFC 8291); they are not secrets of ours, but whoever holds the endpoint and them can
-- write to that browser, so they are never returned to anyone but the owner.
-- Every integer is a 64-bit INTEGER and every timestamp Unix milliseconds, as in PostgreSQL.

CREATE TABLE push_subscriptions (
    id                INTEGER PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint          TEXT NOT NULL UNIQUE,
    p256dh            TEXT NOT NULL,
    auth              TEXT NOT NULL,
    label             TEXT,
    -- The browser's own expiry of the subscription (PushSubscription.expirationTime), if any.
    expires_at        INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    last_success_at   INTEGER,
    last_failure_at   INTEGER,
    -- Failures in a row (429, 5xx, unreachable); a success resets it.
    failures_in_a_row INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
