-- What the webhook pipeline needs beyond the foundation: attempt history, passwords waiting to be delivered,
-- member sessions and login throttling.

-- One row per run of a job, so the admin sees every attempt and its error, not only the last.
CREATE TABLE event_attempts (
  id          INTEGER PRIMARY KEY,
  event_id    INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  started_at  TEXT NOT NULL,
  finished_at TEXT,
  outcome     TEXT,   -- done, skipped, retry, failed, dead, crashed
  error       TEXT
);
CREATE INDEX event_attempts_event ON event_attempts (event_id, attempt);

-- A generated password has to reach two places after the member row commits: Keap's password field and the
-- welcome email. It waits here (and only here) until both have it, so a retried write-back sends the same
-- value and a crash never produces a second password. Deleted as soon as nothing needs it.
CREATE TABLE pending_passwords (
  member_id         INTEGER PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
  password          TEXT NOT NULL,
  awaiting_keap     INTEGER NOT NULL DEFAULT 0 CHECK (awaiting_keap IN (0, 1)),
  awaiting_email    INTEGER NOT NULL DEFAULT 0 CHECK (awaiting_email IN (0, 1)),
  created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Member login sessions. Only a SHA-256 of the cookie value is stored, so a copy of the database opens no session.
CREATE TABLE sessions (
  id_hash     TEXT PRIMARY KEY,
  member_id   INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  expires_at  INTEGER NOT NULL,
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
CREATE INDEX sessions_member ON sessions (member_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Failed logins per key ("ip:1.2.3.4", "account:ann@example.com") in the current window, for brute-force limits
-- that survive restarts and apply across every form that checks a password.
CREATE TABLE login_failures (
  key          TEXT PRIMARY KEY,
  failures     INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  locked_until INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Identical posts folded into a queued job, and how often a job was put back because Keap throttled us
-- (throttling is not the job's failure, so it does not use up attempts; this caps it all the same).
ALTER TABLE events ADD COLUMN coalesced INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0;
-- What a finished job did, in words ("created member 12", "no member is linked to contact 7").
ALTER TABLE events ADD COLUMN result TEXT;
