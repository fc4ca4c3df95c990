-- Login attempts per normalised e-mail, whether or not an account has it: unknown and known
-- addresses must be indistinguishable (same delay, same lockout), and an attempt is counted
-- before the password check so parallel guesses cannot outrun the limit.
CREATE TABLE login_attempts (
    email           TEXT PRIMARY KEY,
    -- Attempts since the last success or the end of the last lock, counted as they start.
    attempts        INTEGER NOT NULL,
    locked_until    INTEGER,
    last_attempt_at INTEGER NOT NULL
);
CREATE INDEX login_attempts_last_attempt ON login_attempts (last_attempt_at);
