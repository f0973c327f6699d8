-- Outbound webhooks (issue 13): connections (where and how to reach another system), their destinations (what is
-- sent there, for which events), the deliveries recorded for each event (the outbound queue) and every attempt.
-- Secrets (the connection's passwords, tokens and client secrets, the signing secrets) are sealed with the site key
-- (core/secret-box.ts): a copy of this database alone reveals none of them. Scheduling columns are epoch ms.

CREATE TABLE outbound_connections (
  id                 INTEGER PRIMARY KEY,
  name               TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
  description        TEXT NOT NULL DEFAULT '',
  base_url           TEXT NOT NULL,
  -- Overrides the base URL's port when set.
  port               INTEGER CHECK (port IS NULL OR port BETWEEN 1 AND 65535),
  auth_type          TEXT NOT NULL CHECK (auth_type IN ('none', 'basic', 'bearer', 'oauth2')),
  -- The authentication settings without their secrets (user name, client id, token URL, grant, scope), as JSON.
  auth_settings      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(auth_settings)),
  -- The secrets (password, token, client secret, JSON Web Token) as a JSON object, sealed; NULL when there are none.
  auth_secrets       TEXT,
  -- The signing secret (whsec_...), sealed; and the one it replaced, still signing until previous_secret_until.
  signing_secret     TEXT NOT NULL,
  previous_secret    TEXT,
  previous_secret_until INTEGER,
  created_at         TEXT NOT NULL,
  updated_at         TEXT NOT NULL
);

CREATE TABLE outbound_destinations (
  id              INTEGER PRIMARY KEY,
  connection_id   INTEGER NOT NULL REFERENCES outbound_connections (id) ON DELETE CASCADE,
  name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  description     TEXT NOT NULL DEFAULT '',
  method          TEXT NOT NULL CHECK (method IN ('POST', 'GET', 'PUT', 'PATCH')),
  content_type    TEXT NOT NULL,
  -- Appended to the connection's base URL.
  path            TEXT NOT NULL DEFAULT '',
  -- Handlebars; NULL: the default JSON envelope { type, timestamp, data }.
  template        TEXT,
  -- The event types it receives, as a JSON array of names and wildcards (`member.*`, `keap.contact.*`, `*`).
  events          TEXT NOT NULL CHECK (json_valid(events) AND json_type(events) = 'array'),
  -- Only events about a member holding this Keap tag / this role (slug); NULL: any.
  filter_tag_id   INTEGER,
  filter_role     TEXT,
  enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
  disabled_reason TEXT,
  disabled_at     TEXT,
  -- Since when every attempt has failed (NULL: the last one succeeded, or none was made): past the limit it is disabled.
  failing_since   INTEGER,
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  UNIQUE (connection_id, name)
);

-- One row per event and destination: the outbound queue and the delivery log. The body is rendered when the
-- delivery is recorded, so every attempt sends (and signs) the same bytes.
CREATE TABLE outbound_deliveries (
  id              INTEGER PRIMARY KEY,
  destination_id  INTEGER NOT NULL REFERENCES outbound_destinations (id) ON DELETE CASCADE,
  -- The event's id (`webhook-id`), the same on every attempt and every replay: receivers deduplicate on it.
  event_id        TEXT NOT NULL,
  event_type      TEXT NOT NULL,
  body            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('queued', 'delivering', 'delivered', 'failed', 'dead')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  -- When a queued delivery is due; while delivering, until when its dispatcher holds it (then it is queued again).
  next_attempt_at INTEGER,
  lease_until     INTEGER,
  last_status     INTEGER,
  last_error      TEXT,
  -- When the change that caused it committed.
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  delivered_at    TEXT,
  UNIQUE (destination_id, event_id)
);
-- The dispatcher's claim (per destination, due first) and its sleep until the next due one.
CREATE INDEX outbound_deliveries_claim ON outbound_deliveries (destination_id, next_attempt_at) WHERE status = 'queued';
-- Leases that ran out (a dispatcher that died holding them).
CREATE INDEX outbound_deliveries_leased ON outbound_deliveries (lease_until) WHERE status = 'delivering';
-- The delivery log's filters: per destination (and status), newest first; all failures in a time range.
CREATE INDEX outbound_deliveries_log ON outbound_deliveries (destination_id, status, created_at);
CREATE INDEX outbound_deliveries_status ON outbound_deliveries (status, created_at);

-- Every attempt: the request as sent (headers without secrets; the body is the delivery's), the answer (headers and
-- body truncated) or the error, and how long it took.
CREATE TABLE outbound_delivery_attempts (
  id               INTEGER PRIMARY KEY,
  delivery_id      INTEGER NOT NULL REFERENCES outbound_deliveries (id) ON DELETE CASCADE,
  attempt          INTEGER NOT NULL,
  request_method   TEXT NOT NULL,
  request_url      TEXT NOT NULL,
  request_headers  TEXT NOT NULL CHECK (json_valid(request_headers)),
  response_status  INTEGER,
  response_headers TEXT CHECK (response_headers IS NULL OR json_valid(response_headers)),
  response_body    TEXT,
  response_truncated INTEGER NOT NULL DEFAULT 0,
  error            TEXT,
  duration_ms      INTEGER NOT NULL,
  at               TEXT NOT NULL
);
CREATE INDEX outbound_delivery_attempts_delivery ON outbound_delivery_attempts (delivery_id, attempt);
