-- Login attempts per normalised e-mail, whether or not an account has it: unknown and known
-- addresses must be indistinguishable (same delay, same lockout), and an attempt is counted
-- before the password check so parallel guesses cannot outrun the limit.
CREATE TABLE login_attempts (
    email           TEXT PRIMARY KEY,
    -- Attempts since the last success or the end of the last lock, counted as they start.
    attempts        BIGINT NOT NULL,
    locked_until    BIGINT,
    last_attempt_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_last_attempt ON login_attempts (last_attempt_at);
