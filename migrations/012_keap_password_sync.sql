-- Password changes pushed to Keap's password field wait in pending_passwords like a generated password. A member
-- whose password changes while a write-back job is already running gets a second job; each job may only release
-- the password it was queued for, so the running one cannot drop the newer password waiting for the next.
-- NULL: a row from before this column, released by whichever write-back job finishes.
ALTER TABLE pending_passwords ADD COLUMN keap_job_id INTEGER;

-- What memberhook last knew Keap's password field to hold for each member (written to it, taken from it, or seen
-- there), as an HMAC keyed with a secret sealed by the site key: never the password. An `update` post takes a
-- password from Keap only when the field holds something else, so a field that is merely stale (password changes
-- not written to Keap) never turns a member's password back.
CREATE TABLE keap_password_seen (
  member_id   INTEGER PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
  fingerprint TEXT NOT NULL,
  seen_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
