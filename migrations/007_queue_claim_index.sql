-- The claim's index. events_runnable (status, run_after) was partial on status IN ('queued', 'processing'), and
-- SQLite uses a partial index only when the query's WHERE clause says its condition in so many words: the claim's
-- `status = 'queued'` does not, so every claim walked all queued rows of events_status_id and sorted them. This
-- one holds the queued rows in the claim's own order (run_after, then arrival), so a claim reads only the jobs it
-- takes plus those it must pass over, however deep the queue.
DROP INDEX IF EXISTS events_runnable;
CREATE INDEX events_queued ON events (run_after, id) WHERE status = 'queued';
