/**
 * BENCHMARK ONLY (`npm run bench:inline`): memberhook with the work done inside the HTTP Post's request, the way
 * WordPress + WP Fusion does it, to compare with the queue. Not part of the product: the receiver stores the post
 * as a job as always, then a `webhook.received` handler (which the answer waits for) claims that job, runs it
 * through the worker's own bookkeeping, and then the follow-ups it queued (password write-back, welcome email).
 * The background worker is not started, so only requests run jobs.
 */
import { isoNow } from '../../src/core/db.js';
import type { EventRecord } from '../../src/core/jobs/store.js';
import type { AppContext } from '../../src/server.js';

/** How often, and how long at most, a request looks again at a job its contact's earlier work still holds back. */
const POLL_MS = 10;
const WAIT_MS = 60_000;
const LEASE_MS = 60_000;

export function runJobsInline(ctx: AppContext): void {
  // The worker's claim rules (queued, due, no earlier unfinished job of its contact, none running), for one job.
  const claim = ctx.db.prepare<{ id: number; now: number; worker: string; leaseUntil: number; nowIso: string }, { id: number }>(
    `UPDATE events SET status = 'processing', attempts = attempts + 1, locked_by = @worker, locked_until = @leaseUntil, updated_at = @nowIso,
       dedupe_key = NULL
     WHERE id = (
       SELECT e.id FROM events e
       WHERE e.id = @id AND e.status = 'queued' AND e.run_after <= @now
         AND (e.contact_id IS NULL OR NOT EXISTS (
           SELECT 1 FROM events p WHERE p.contact_id = e.contact_id AND p.id <> e.id
             AND (p.status = 'processing' OR (p.status = 'queued' AND p.id < e.id)))))
     RETURNING id`,
  );
  const startAttempt = ctx.db.prepare('INSERT INTO event_attempts (event_id, attempt, started_at) VALUES (?, (SELECT attempts FROM events WHERE id = ?), ?)');
  // Follow-ups are queued after their cause, so the scan starts at its id.
  const followUps = ctx.db
    .prepare<{ id: number }, number>("SELECT id FROM events WHERE id > @id AND status = 'queued' AND json_extract(params, '$.caused_by_event') = @id ORDER BY id")
    .pluck();

  const claimById = (id: number): EventRecord | undefined => {
    const now = ctx.clock.now();
    const claimed = ctx.db
      .transaction(() => {
        const row = claim.get({ id, now, worker: ctx.worker.id, leaseUntil: now + LEASE_MS, nowIso: isoNow(now) });
        if (row) startAttempt.run(id, id, isoNow(now));
        return row;
      })
      .immediate();
    return claimed ? ctx.events.get(id) : undefined;
  };

  const waitAndClaim = async (id: number): Promise<EventRecord | undefined> => {
    const deadline = performance.now() + WAIT_MS;
    for (;;) {
      const job = claimById(id);
      if (job) return job;
      const current = ctx.events.get(id);
      const waiting = current !== undefined && (current.status === 'processing' || (current.status === 'queued' && current.runAfter <= ctx.clock.now()));
      if (!waiting || performance.now() > deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };

  const runWithFollowUps = async (id: number): Promise<void> => {
    const job = await waitAndClaim(id);
    if (!job) return;
    await ctx.worker.runClaimed(job);
    for (const next of followUps.all({ id })) await runWithFollowUps(next);
  };

  ctx.hooks.addAction('webhook.received', (event) => runWithFollowUps(event.id), { plugin: 'bench-inline' });
}
