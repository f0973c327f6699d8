-- Foundation schema. Timestamps are ISO-8601 UTC text with milliseconds; scheduling columns are epoch ms.

CREATE TABLE roles (
  id          INTEGER PRIMARY KEY,
  slug        TEXT NOT NULL UNIQUE CHECK (slug GLOB '[a-z0-9_-]*' AND length(slug) BETWEEN 1 AND 64),
  name        TEXT NOT NULL,
  -- Admin rights: may use /admin, and is never assigned or changed by a webhook.
  is_admin    INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
  -- Whether a Keap HTTP Post may assign this role through its `role` parameter.
  webhook_assignable INTEGER NOT NULL DEFAULT 1 CHECK (webhook_assignable IN (0, 1)),
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  CHECK (NOT (is_admin = 1 AND webhook_assignable = 1))
);

INSERT INTO roles (slug, name, is_admin, webhook_assignable) VALUES
  ('administrator', 'Administrator', 1, 0),
  ('subscriber', 'Subscriber', 0, 1),
  ('member', 'Member', 0, 1);

CREATE TABLE members (
  id              INTEGER PRIMARY KEY,
  -- NOCASE on the column makes every comparison and the unique index case-insensitive (ASCII folding).
  email           TEXT NOT NULL COLLATE NOCASE CHECK (length(email) BETWEEN 3 AND 254),
  username        TEXT NOT NULL COLLATE NOCASE CHECK (length(username) BETWEEN 1 AND 254),
  role_id         INTEGER NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
  password_hash   TEXT,
  first_name      TEXT NOT NULL DEFAULT '',
  last_name       TEXT NOT NULL DEFAULT '',
  keap_contact_id INTEGER UNIQUE CHECK (keap_contact_id IS NULL OR keap_contact_id > 0),
  -- Fields pulled from Keap (custom fields by label, plus anything plugins map), as a JSON object.
  fields          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fields) AND json_type(fields) = 'object'),
  created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX members_email_unique ON members (email);
CREATE UNIQUE INDEX members_username_unique ON members (username);
CREATE INDEX members_role ON members (role_id);

CREATE TABLE member_tags (
  member_id  INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
  tag_id     INTEGER NOT NULL,
  name       TEXT NOT NULL DEFAULT '',
  category   TEXT NOT NULL DEFAULT '',
  applied_at TEXT,
  PRIMARY KEY (member_id, tag_id)
) WITHOUT ROWID;
CREATE INDEX member_tags_tag ON member_tags (tag_id, member_id);

CREATE TABLE settings (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- One row per Keap OAuth2 connection (there is one). Refresh tokens rotate on every refresh, so the pair is
-- always written together in one statement.
CREATE TABLE keap_oauth_tokens (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  access_token  TEXT NOT NULL,
  refresh_token TEXT NOT NULL,
  expires_at    INTEGER NOT NULL,
  scope         TEXT,
  updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Everything that arrives (Keap HTTP Posts, REST hook deliveries, polling, admin actions) and the work it asks
-- for: the event log and the job queue are one table, so an accepted request is one durable row.
CREATE TABLE events (
  id           INTEGER PRIMARY KEY,
  source       TEXT NOT NULL,                 -- http_post, rest_hook, poll, admin, api
  action       TEXT NOT NULL,                 -- add, update, update_tags, ... (or what was asked, when rejected)
  contact_id   INTEGER,
  -- Normalized view across sources: what the event is about and what happened to it.
  object_type  TEXT,                          -- contact
  object_id    TEXT,                          -- the contact id, as text
  event_type   TEXT,                          -- contact.add, contact.edit, contactGroup.applied, ...
  params       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),  -- sanitized: never the access key
  status       TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'skipped', 'failed', 'dead', 'rejected')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT,
  -- Queue bookkeeping: when the job may run next, and which worker holds it until when.
  run_after    INTEGER NOT NULL DEFAULT 0,
  locked_by    TEXT,
  locked_until INTEGER,
  -- Identical pending jobs share a key; only one queued row may hold it at a time.
  dedupe_key   TEXT,
  created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX events_runnable ON events (status, run_after) WHERE status IN ('queued', 'processing');
CREATE INDEX events_contact ON events (contact_id, id);
CREATE INDEX events_status_id ON events (status, id);
CREATE UNIQUE INDEX events_pending_dedupe ON events (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL;
