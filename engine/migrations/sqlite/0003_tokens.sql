-- API tokens (TokenService): only the SHA-256 of a secret is stored, hex-encoded, and a call's
-- token is found by it. Grants are a JSON array of {"role", "namespaces"}. Times are
-- microseconds since the Unix epoch, like every time of the schema; a revoked or expired token
-- stays until deleted by hand, so that it can still be listed.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    grants TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER,
    last_used_us INTEGER,
    revoked_us INTEGER
);
