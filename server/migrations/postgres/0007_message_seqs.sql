-- Broadcasts to tens of thousands: the per-person message counter moves out of the wide
-- `users` row into a narrow table, and an alert's copy in a person's stream is its ledger
-- row, not a second row in `user_messages`: the stream is `user_messages` ∪
-- `alert_recipients`, ordered by `seq`.
CREATE TABLE message_seqs (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL DEFAULT 0
);
INSERT INTO message_seqs (user_id, seq) SELECT id, msg_seq FROM users;
ALTER TABLE users DROP COLUMN msg_seq;
CREATE FUNCTION users_message_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_seqs (user_id, seq) VALUES (NEW.id, 0);
    RETURN NEW;
END;
$$;
CREATE TRIGGER users_message_seq AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION users_message_seq();

DROP INDEX alert_recipients_user;
CREATE INDEX alert_recipients_stream ON alert_recipients (user_id, seq);
DELETE FROM user_messages WHERE kind = 'alert';

-- When the fallback sweeper arms this alert's undelivered copies; NULL once armed.
ALTER TABLE alerts ADD COLUMN fallback_at BIGINT;
CREATE INDEX alerts_fallback ON alerts (fallback_at) WHERE fallback_at IS NOT NULL;
