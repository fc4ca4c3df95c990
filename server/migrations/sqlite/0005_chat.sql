-- Chat: conversations (an SOS case's chat; a crisis channel for a roll-call, an area or a duty
-- station; a group), who takes part in them, and every message stored once, numbered per
-- conversation without gaps. Each message is also fanned out to every participant as a stored
-- per-person message (`user_messages`, kind `chat`), which is what a reconnecting phone resumes.
-- Every integer is a 64-bit INTEGER and every timestamp Unix milliseconds, as in PostgreSQL.

CREATE TABLE conversations (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES organisations (id),
    kind       TEXT NOT NULL CHECK (kind IN ('sos', 'rollcall', 'area', 'duty_station', 'group')),
    -- The SOS case, roll-call, area or duty station the conversation is about (none for a group).
    ref_id     INTEGER,
    title      TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL,
    closed_at  INTEGER,
    -- The sequence number of the newest message; the next one takes last_seq + 1 in the
    -- transaction that stores it.
    last_seq   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_org ON conversations (org_id, id);
CREATE INDEX conversations_ref ON conversations (kind, ref_id);

-- Members, and how far each has received and read. A row with listed = FALSE only keeps the
-- receipts of someone who takes part through a role (an SOS chat's operators): it grants nothing.
CREATE TABLE conversation_members (
    conversation_id    INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at          INTEGER NOT NULL,
    last_delivered_seq INTEGER NOT NULL DEFAULT 0,
    last_read_seq      INTEGER NOT NULL DEFAULT 0,
    listed             BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id, conversation_id);

-- A message resent with the same client_id (after a network drop) is stored once.
-- fanout_pending: stored, but not yet copied to every participant's message stream; a sweep
-- finishes what a crash or a failed fan-out left.
CREATE TABLE chat_messages (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL REFERENCES users (id),
    client_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    fanout_pending  BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_id)
);
CREATE INDEX chat_messages_fanout ON chat_messages (created_at) WHERE fanout_pending;
