-- Foundation: organisations, people, roles, sessions, keys, areas, audit.
-- Every integer is a 64-bit INTEGER and every timestamp is Unix milliseconds, as in PostgreSQL.

CREATE TABLE server_keys (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE organisations (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    short_name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE duty_stations (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    country_code TEXT NOT NULL,
    lat          REAL,
    lon          REAL,
    created_at   INTEGER NOT NULL,
    UNIQUE (name, country_code)
);

CREATE TABLE users (
    id                      INTEGER PRIMARY KEY,
    org_id                  INTEGER NOT NULL REFERENCES organisations (id),
    email                   TEXT NOT NULL UNIQUE,
    name                    TEXT NOT NULL,
    phone                   TEXT,
    duty_station_id         INTEGER REFERENCES duty_stations (id),
    emergency_contact_name  TEXT,
    emergency_contact_phone TEXT,
    preferred_language      TEXT NOT NULL DEFAULT 'en',
    password_hash           TEXT,
    active                  BOOLEAN NOT NULL DEFAULT TRUE,
    is_system_admin         BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins           INTEGER NOT NULL DEFAULT 0,
    locked_until            INTEGER,
    msg_seq                 INTEGER NOT NULL DEFAULT 0,
    location_mode           TEXT NOT NULL DEFAULT 'tracking' CHECK (location_mode IN ('tracking', 'location_less')),
    last_seen_at            INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);
CREATE INDEX users_org ON users (org_id);

CREATE TABLE user_roles (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('staff', 'operator', 'adviser', 'org_admin', 'oversight')),
    granted_by INTEGER REFERENCES users (id),
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE dependants (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    relationship  TEXT NOT NULL,
    date_of_birth TEXT
);
CREATE INDEX dependants_user ON dependants (user_id);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE areas (
    id             INTEGER PRIMARY KEY,
    org_id         INTEGER REFERENCES organisations (id),
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    security_level INTEGER CHECK (security_level BETWEEN 1 AND 6),
    parent_id      INTEGER REFERENCES areas (id),
    advisory       TEXT,
    geometry       TEXT NOT NULL,
    radius_m       REAL,
    valid_from     INTEGER,
    valid_until    INTEGER,
    created_by     INTEGER REFERENCES users (id),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX areas_org ON areas (org_id);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor_id INTEGER REFERENCES users (id),
    org_id   INTEGER REFERENCES organisations (id),
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, at);

-- Assets: vehicles, satellite phones, radios, tracked like people.
CREATE TABLE assets (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES organisations (id),
    kind       TEXT NOT NULL CHECK (kind IN ('vehicle', 'satellite_phone', 'radio', 'other')),
    name       TEXT NOT NULL,
    identifier TEXT,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX assets_org ON assets (org_id);

-- The newest fix of every tracked subject (a user in tracking mode, or an asset).
CREATE TABLE last_positions (
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'asset')),
    subject_id   INTEGER NOT NULL,
    lat          REAL NOT NULL,
    lon          REAL NOT NULL,
    accuracy_m   REAL,
    recorded_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    source       TEXT NOT NULL,
    PRIMARY KEY (subject_kind, subject_id)
);

-- Every fix, kept for the retention period; a fix sent twice is stored once.
CREATE TABLE position_history (
    id           INTEGER PRIMARY KEY,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'asset')),
    subject_id   INTEGER NOT NULL,
    lat          REAL NOT NULL,
    lon          REAL NOT NULL,
    accuracy_m   REAL,
    recorded_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    source       TEXT NOT NULL
);
CREATE UNIQUE INDEX position_history_fix ON position_history (subject_kind, subject_id, recorded_at);
CREATE INDEX position_history_recorded ON position_history (recorded_at);

-- Areas a person follows by hand (location-less mode): they get what is targeted at them.
CREATE TABLE followed_areas (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    area_id INTEGER NOT NULL REFERENCES areas (id) ON DELETE CASCADE,
    since   INTEGER NOT NULL,
    PRIMARY KEY (user_id, area_id)
);

-- Every read of a person's location, which that person can read back.
CREATE TABLE location_access_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    viewer_id  INTEGER NOT NULL REFERENCES users (id),
    subject_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL
);
CREATE INDEX location_access_subject ON location_access_log (subject_id, at);

-- Every message sent to a person, numbered per person, so a reconnecting client resumes from
-- the last number it saw and gets the rest in order, none twice.
CREATE TABLE user_messages (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
);
