-- Password reset links. Only the SHA-256 of a link's token is stored, so a copy of the database resets no password.
-- A token is good once (used_at), until expires_at (milliseconds since the epoch, from the app's clock).
CREATE TABLE password_resets (
  token_hash  TEXT PRIMARY KEY,
  member_id   INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER,
  created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX password_resets_member ON password_resets (member_id);
CREATE INDEX password_resets_expiry ON password_resets (expires_at);
