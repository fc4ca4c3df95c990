-- Token-signing keys, several at once during a rotation: a new key is published (JWKS, every
-- node verifies it) before it signs, and an old one is kept for verification until every token
-- it signed has expired, then deleted.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    -- Ed25519 seed, base64.
    seed         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- From when it signs; the newest key whose time has come is the one that signs.
    signs_from   BIGINT NOT NULL,
    -- Set when a newer key takes over: tokens it signed are accepted until then.
    verify_until BIGINT
);
