import { AppError } from '../../core/errors.js';
import type { Job, JobOutcome } from '../../core/jobs/queue.js';
import { webhookJobType } from '../http-post/jobs.js';
import type { MembersContext } from './context.js';
import { requestPasswordReset } from './password-reset.js';
import type { BulkAction, BulkActionStore } from './bulk-action-store.js';
import type { Member } from './types.js';

/**
 * An administrator's action on many members at once: change their role, resync them from Keap, send each a
 * password reset, or delete them. Confirmed on a page that says how many it reaches, then run by one job in batches
 * (the admin watches a progress bar and may cancel); each member goes through the same service call as the
 * one-member buttons, so hooks fire and the last administrator is kept.
 */

/** Members per batch: counters and the cursor are saved after each, so a restart repeats at most one batch. */
const BATCH = 50;

/** What one member's turn came to. */
type Outcome = { kind: 'changed' } | { kind: 'skipped'; why?: string } | { kind: 'failed'; why: string };

/** The `member_bulk_action` job: works through the action's members a batch at a time until none are left or it is cancelled. */
export async function runBulkAction(ctx: MembersContext, bulk: BulkActionStore, job: Job<{ bulk_id: number }>): Promise<JobOutcome> {
  const id = job.params.bulk_id;
  for (;;) {
    const action = bulk.get(id);
    if (!action) return { status: 'skipped', result: `bulk action ${id} no longer exists` };
    if (action.status !== 'running') return { status: 'done', result: describeResult(action) };
    const ids = nextBatch(ctx, action);
    if (ids.length === 0) {
      bulk.finish(id, 'done', ctx.clock.now());
      return { status: 'done', result: describeResult(bulk.get(id)!) };
    }
    const counts = { cursor: ids.at(-1)!, done: 0, changed: 0, skipped: 0, failed: 0, lastProblem: undefined as string | undefined };
    for (const memberId of ids) {
      const outcome = await applyTo(ctx, action, memberId);
      counts.done++;
      counts[outcome.kind]++;
      if (outcome.kind === 'failed') counts.lastProblem = `member ${memberId}: ${outcome.why}`;
    }
    // Saved only while still running: a cancel during the batch stops it here, with that batch uncounted.
    if (!bulk.saveBatch(id, counts)) return { status: 'done', result: describeResult(bulk.get(id)!) };
    // Between batches the worker's other jobs (and the site's requests) get their turn.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** The next member ids after the cursor: from the ticked list, or the filter's matches up to `throughId`, by id. */
function nextBatch(ctx: MembersContext, action: BulkAction): number[] {
  if (action.memberIds) return action.memberIds.filter((m) => m > action.cursor).sort((a, b) => a - b).slice(0, BATCH);
  return ctx.members.listIds({ ...action.filters, sort: 'oldest', idAfter: action.cursor, idThrough: action.throughId }, BATCH);
}

async function applyTo(ctx: MembersContext, action: BulkAction, memberId: number): Promise<Outcome> {
  const member = ctx.members.findById(memberId);
  if (!member) return { kind: 'skipped', why: 'no longer exists' };
  // The administrator who asked is never demoted or deleted by their own bulk action (as on the member page).
  if (member.id === action.requestedBy && (action.action === 'delete' || action.action === 'role')) return { kind: 'skipped', why: 'your own account' };
  try {
    switch (action.action) {
      case 'role': {
        const { changed } = await ctx.members.update(member.id, { profile: {}, role: action.toRole! }, { keepAnAdministrator: true });
        return changed.length > 0 ? { kind: 'changed' } : { kind: 'skipped', why: 'has that role already' };
      }
      case 'resync':
        return resync(ctx, member);
      case 'reset':
        requestPasswordReset(ctx, member);
        return { kind: 'changed' };
      case 'delete':
        await ctx.members.delete(member.id, { keepAnAdministrator: true });
        return { kind: 'changed' };
    }
  } catch (err) {
    // The service's refusals (the last administrator, a role removed meanwhile) count against that member only.
    if (err instanceof AppError && err.status < 500) return { kind: 'failed', why: err.publicMessage };
    throw err;
  }
}

function resync(ctx: MembersContext, member: Member): Outcome {
  if (member.keapContactId === null) return { kind: 'skipped', why: 'not linked to a Keap contact' };
  // The same job a Keap post `update` queues, so one already waiting for the contact absorbs this one.
  ctx.jobs.enqueue(webhookJobType('update'), { contact_id: member.keapContactId }, { source: 'admin' });
  return { kind: 'changed' };
}

export function describeBulkAction(action: Pick<BulkAction, 'action' | 'toRole'>): string {
  switch (action.action) {
    case 'role':
      return `Change the role to ${action.toRole}`;
    case 'resync':
      return 'Resync from Keap';
    case 'reset':
      return 'Send a password reset email';
    case 'delete':
      return 'Delete';
  }
}

function describeResult(a: BulkAction): string {
  return `${describeBulkAction(a)}: ${a.done} of ${a.total} done (${a.changed} changed, ${a.skipped} skipped, ${a.failed} failed)${a.status === 'cancelled' ? ', cancelled' : ''}`;
}
