-- An import of Keap contacts as members (Members → Import from Keap): every contact with a tag (`tag_id`), or every
-- contact (`tag_id` NULL). Run by a chain of batch jobs; each batch's members, counts and `page_token` (where the next
-- batch starts reading Keap) commit together, so a restart carries on after the last committed batch.
CREATE TABLE keap_imports (
  id               INTEGER PRIMARY KEY,
  tag_id           INTEGER,
  tag_name         TEXT,
  role             TEXT NOT NULL,
  send_welcome     INTEGER NOT NULL CHECK (send_welcome IN (0, 1)),
  on_existing      TEXT NOT NULL CHECK (on_existing IN ('link', 'skip')),
  -- How many contacts Keap counted when the import was confirmed (the progress bar's 100 %).
  total            INTEGER NOT NULL,
  page_token       TEXT,
  batches          INTEGER NOT NULL DEFAULT 0,
  keap_calls       INTEGER NOT NULL DEFAULT 0,
  done             INTEGER NOT NULL DEFAULT 0,
  created          INTEGER NOT NULL DEFAULT 0,
  linked           INTEGER NOT NULL DEFAULT 0,
  already_members  INTEGER NOT NULL DEFAULT 0,
  -- {"reason": {"count": n, "examples": [contact ids]}}
  skipped          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(skipped)),
  -- The account's tags [{id, name, category}], read once at the first batch for every member's tag names.
  tags             TEXT CHECK (tags IS NULL OR json_valid(tags)),
  status           TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'cancelled', 'failed')),
  last_error       TEXT,
  requested_by     INTEGER NOT NULL,
  created_at       TEXT NOT NULL,
  finished_at      TEXT
);
