-- Roll-calls ("are you safe?") and SOS cases. Every answer and every case event is kept;
-- the per-person row holds the latest state the board shows.

CREATE TABLE rollcalls (
    id                  INTEGER PRIMARY KEY,
    org_id              INTEGER NOT NULL REFERENCES organisations (id),
    started_by          INTEGER REFERENCES users (id),
    title               TEXT NOT NULL,
    message             TEXT NOT NULL,
    target              TEXT NOT NULL,
    people_count        INTEGER NOT NULL,
    reminder_every_secs INTEGER,
    max_reminders       INTEGER NOT NULL,
    sms_after_secs      INTEGER,
    conversation_id     INTEGER,
    created_at          INTEGER NOT NULL,
    closed_at           INTEGER,
    closed_by           INTEGER REFERENCES users (id),
    report              TEXT
);
CREATE INDEX rollcalls_org ON rollcalls (org_id, created_at);

-- One row per person asked (dependant_id 0) and per dependant they answer for.
CREATE TABLE rollcall_people (
    rollcall_id      INTEGER NOT NULL REFERENCES rollcalls (id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    dependant_id     INTEGER NOT NULL DEFAULT 0,
    reasons          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('no_answer', 'safe', 'need_help')),
    note             TEXT,
    lat              REAL,
    lon              REAL,
    answered_at      INTEGER,
    answered_via     TEXT,
    accounted_by     INTEGER REFERENCES users (id),
    accounted_how    TEXT,
    delivered_at     INTEGER,
    reminders_sent   INTEGER NOT NULL DEFAULT 0,
    next_reminder_at INTEGER,
    sms_sent         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rollcall_id, user_id, dependant_id)
);
CREATE INDEX rollcall_people_user ON rollcall_people (user_id, rollcall_id);
CREATE INDEX rollcall_people_due ON rollcall_people (next_reminder_at) WHERE next_reminder_at IS NOT NULL;

-- Every answer and every "accounted for by other means", in order.
CREATE TABLE rollcall_answers (
    id           INTEGER PRIMARY KEY,
    rollcall_id  INTEGER NOT NULL REFERENCES rollcalls (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    dependant_id INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL CHECK (status IN ('safe', 'need_help')),
    note         TEXT,
    lat          REAL,
    lon          REAL,
    via          TEXT NOT NULL,
    recorded_by  INTEGER REFERENCES users (id),
    at           INTEGER NOT NULL
);
CREATE INDEX rollcall_answers_rollcall ON rollcall_answers (rollcall_id, user_id);

CREATE TABLE sos_cases (
    id              INTEGER PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES organisations (id),
    user_id         INTEGER NOT NULL REFERENCES users (id),
    status          TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'closed')),
    lat             REAL,
    lon             REAL,
    accuracy_m      REAL,
    position_at     INTEGER,
    location_source TEXT,
    claimed_by      INTEGER REFERENCES users (id),
    claimed_at      INTEGER,
    conversation_id INTEGER,
    opened_at       INTEGER NOT NULL,
    closed_at       INTEGER,
    closed_by       INTEGER REFERENCES users (id),
    outcome         TEXT
);
CREATE INDEX sos_cases_org ON sos_cases (org_id, status, opened_at);
CREATE INDEX sos_cases_user ON sos_cases (user_id, status);

-- The case timeline: opened, pressed again, position, claimed, released, note, closed.
CREATE TABLE sos_events (
    id       INTEGER PRIMARY KEY,
    case_id  INTEGER NOT NULL REFERENCES sos_cases (id) ON DELETE CASCADE,
    at       INTEGER NOT NULL,
    actor_id INTEGER REFERENCES users (id),
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX sos_events_case ON sos_events (case_id, id);
