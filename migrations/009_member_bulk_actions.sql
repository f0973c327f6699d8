-- An administrator's action on many members at once (change role, resync from Keap, send password reset, delete),
-- run by one job in batches. The members are either the ids ticked on the list (`member_ids`) or every member the
-- list's filters match (`filters`) up to the highest member id when it was confirmed (`through_id`): members who join
-- afterwards are not swept in. `cursor` is the last member id done, so a restart carries on where it stopped.
CREATE TABLE member_bulk_actions (
  id           INTEGER PRIMARY KEY,
  action       TEXT NOT NULL CHECK (action IN ('role', 'resync', 'reset', 'delete')),
  to_role      TEXT,
  member_ids   TEXT CHECK (member_ids IS NULL OR json_valid(member_ids)),
  filters      TEXT CHECK (filters IS NULL OR json_valid(filters)),
  through_id   INTEGER NOT NULL,
  total        INTEGER NOT NULL,
  cursor       INTEGER NOT NULL DEFAULT 0,
  done         INTEGER NOT NULL DEFAULT 0,
  changed      INTEGER NOT NULL DEFAULT 0,
  skipped      INTEGER NOT NULL DEFAULT 0,
  failed       INTEGER NOT NULL DEFAULT 0,
  last_problem TEXT,
  status       TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'cancelled')),
  requested_by INTEGER NOT NULL,
  created_at   TEXT NOT NULL,
  finished_at  TEXT,
  CHECK ((member_ids IS NULL) <> (filters IS NULL))
);
