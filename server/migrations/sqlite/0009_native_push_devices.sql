-- Native apps (Android through Firebase Cloud Messaging, iOS through APNs) register their push
-- token per installation; the fallback ladder wakes them beside web push.
CREATE TABLE native_push_devices (
    id                INTEGER PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The app's own id for its installation, stable across token rotations.
    device_id         TEXT NOT NULL,
    -- 'fcm' or 'apns'.
    platform          TEXT NOT NULL,
    token             TEXT NOT NULL,
    -- Android package or iOS bundle id; for APNs it is the apns-topic when set.
    app_id            TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    last_success_at   INTEGER,
    last_failure_at   INTEGER,
    failures_in_a_row INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, device_id),
    -- One token wakes one phone: whoever registered it last receives on it.
    UNIQUE (platform, token)
);
