-- The plugin host: which plugins an administrator turned off, each plugin's own schema version, the transactional
-- outbox, and whose job a queued job is.

-- One row per plugin an administrator enabled or disabled; a plugin without a row runs (it was put there to run).
CREATE TABLE plugins (
  name       TEXT PRIMARY KEY CHECK (name GLOB '[a-z0-9]*' AND length(name) BETWEEN 1 AND 64),
  enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- The migrations a plugin's `api.db.migrate` applied, so each runs once.
CREATE TABLE plugin_migrations (
  plugin     TEXT NOT NULL,
  version    INTEGER NOT NULL CHECK (version > 0),
  applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (plugin, version)
) WITHOUT ROWID;

-- Actions recorded in the transaction that caused them, for handlers that asked for durable delivery; each such
-- handler gets a `hook.deliver` job in the same transaction. Arguments as JSON.
CREATE TABLE outbox (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  payload    TEXT NOT NULL CHECK (json_valid(payload)),
  created_at TEXT NOT NULL
);
CREATE INDEX outbox_created ON outbox (created_at);

-- The plugin a job belongs to (NULL: a built-in's). Its jobs wait, rather than fail, while the plugin is disabled.
ALTER TABLE events ADD COLUMN plugin TEXT;
