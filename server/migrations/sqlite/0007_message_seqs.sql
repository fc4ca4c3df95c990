-- Broadcasts to tens of thousands: the per-person message counter moves out of the wide
-- `users` row into a narrow table (a 50,000-person alert rewrote ~15 MB of user rows to bump
-- it), and an alert's copy in a person's stream is its ledger row, not a second row in
-- `user_messages`: the stream is `user_messages` ∪ `alert_recipients`, ordered by `seq`.
CREATE TABLE message_seqs (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO message_seqs (user_id, seq) SELECT id, msg_seq FROM users;
ALTER TABLE users DROP COLUMN msg_seq;
CREATE TRIGGER users_message_seq AFTER INSERT ON users
BEGIN
    INSERT INTO message_seqs (user_id, seq) VALUES (NEW.id, 0);
END;

-- The ledger keyed by (alert, person) without a separate rowid b-tree; a person's copies by
-- their sequence number, which is how a resuming device reads them.
CREATE TABLE alert_recipients_new (
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
    -- Left NULL at insert: the alert's `fallback_at` arms the copies still undelivered then.
    next_attempt_at INTEGER,
    push_attempts   INTEGER NOT NULL DEFAULT 0,
    sms_messages    INTEGER NOT NULL DEFAULT 0,
    sms_segments    INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    PRIMARY KEY (alert_id, user_id)
) WITHOUT ROWID;
INSERT INTO alert_recipients_new SELECT alert_id, user_id, reasons, seq, state, channel, sent_at, delivered_at,
    read_at, acknowledged_at, next_attempt_at, push_attempts, sms_messages, sms_segments, last_error
    FROM alert_recipients;
DROP TABLE alert_recipients;
ALTER TABLE alert_recipients_new RENAME TO alert_recipients;
CREATE INDEX alert_recipients_stream ON alert_recipients (user_id, seq);
CREATE INDEX alert_recipients_due ON alert_recipients (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
DELETE FROM user_messages WHERE kind = 'alert';

-- When the fallback sweeper arms this alert's undelivered copies; NULL once armed.
ALTER TABLE alerts ADD COLUMN fallback_at INTEGER;
CREATE INDEX alerts_fallback ON alerts (fallback_at) WHERE fallback_at IS NOT NULL;
