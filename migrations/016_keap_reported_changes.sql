-- The newest change of each Keap object that memberhook already handed on as a keap.event (from a REST hook
-- delivery or a poll), per kind of change: a poll that sees the same change again (its overlap window, or a hook
-- that got there first) skips it. `reported_at` is ISO 8601 UTC: a delivery's arrival, or the change time a poll read.
-- Rows older than every poller's window are pruned by the polls.
CREATE TABLE keap_reported_changes (
  kind        TEXT NOT NULL,
  object_id   TEXT NOT NULL,
  reported_at TEXT NOT NULL,
  PRIMARY KEY (kind, object_id)
) WITHOUT ROWID;
CREATE INDEX keap_reported_changes_age ON keap_reported_changes (kind, reported_at);
