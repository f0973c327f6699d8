-- Bearer tokens for the JSON API, created and revoked in the admin. Only a SHA-256 of each token is kept, so a
-- copy of the database opens nothing; the prefix is the token's first characters, for telling tokens apart.
CREATE TABLE api_tokens (
  id           INTEGER PRIMARY KEY,
  name         TEXT NOT NULL COLLATE NOCASE CHECK (length(name) BETWEEN 1 AND 100),
  token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
  prefix       TEXT NOT NULL,
  created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  last_used_at TEXT,
  revoked_at   TEXT
);
-- Two live tokens with one name could not be told apart in the list when one has to be revoked.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
