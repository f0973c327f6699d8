-- The event log's daily clean-up (core/jobs/retention.ts) keeps at most a set number of refused requests per client
-- address, so one sender cannot fill the table; the address is recorded with each refusal for that (accepted posts
-- leave it NULL). The index is partial: it holds refusals only, so the accepted posts' inserts never touch it.
-- Deleting by age needs no index of its own: it walks events_status_id (status, id) up to an id found by created_at.
ALTER TABLE events ADD COLUMN client_address TEXT;
CREATE INDEX events_rejected_address ON events (client_address, id) WHERE status = 'rejected';
