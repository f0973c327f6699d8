/**
 * The benchmark's inline mode (`npm run bench:inline`, scripts/support/inline-mode.ts): the HTTP Post's request runs
 * the job and its follow-ups before it answers, the way WordPress + WP Fusion does. These tests keep the comparison
 * honest: if the mode stopped doing the work in the request, the benchmark would silently measure the queue twice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { runJobsInline } from '../scripts/support/inline-mode.js';
import { verifyPassword } from '../src/features/members/passwords.js';
import { startHarness, type Harness } from './support/harness.js';

async function withInlineHarness(fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = await startHarness({ start: { worker: { start: false } } });
  runJobsInline(h.server.ctx);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

const jobsAfter = (h: Harness, eventId: number) =>
  h.server.ctx.db.prepare<[number], { action: string; status: string }>('SELECT action, status FROM events WHERE id >= ? ORDER BY id').all(eventId);

test('inline mode: when the 200 arrives the member exists, Keap has the password and the welcome email is sent', () =>
  withInlineHarness(async (h) => {
    const { ctx } = h.server;
    const res = await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.ada), send_notification: 'true' });
    // Checked at once, without settle(): everything below must already have happened inside the request.
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const member = ctx.members.findByContactId(SEED.contacts.ada);
    assert.ok(member, 'the member exists when the answer arrives');
    assert.deepEqual(jobsAfter(h, res.body.event_id as number).map((j) => [j.action, j.status]), [['add', 'done'], ['keap_password_writeback', 'done'], ['welcome_email', 'done']]);
    const written = h.sandbox.state.customFieldValue(SEED.contacts.ada, SEED.fields.password);
    assert.equal(await verifyPassword(written as string, ctx.members.passwordHash(member.id)), true, 'the password was written back in the request');
    assert.equal(h.smtp.messages.length, 1, 'the welcome email was sent in the request');
    assert.equal(ctx.db.prepare("SELECT count(*) FROM events WHERE status IN ('queued', 'processing')").pluck().get(), 0, 'nothing left for a worker');
    // The same event rows and attempt bookkeeping as the queued path.
    const event = ctx.events.get(res.body.event_id as number)!;
    assert.equal(event.source, 'http_post');
    assert.deepEqual(ctx.events.attempts(event.id).map((a) => a.outcome), ['done']);
  }));

test('inline mode: no background worker runs, and an update for an unknown contact is skipped in the request', () =>
  withInlineHarness(async (h) => {
    const { ctx } = h.server;
    // A job queued behind the webhook's back is not picked up: only requests run jobs in this mode.
    const { id } = ctx.jobs.enqueue('update_tags', { contact_id: SEED.contacts.grace });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(ctx.events.get(id)!.status, 'queued');

    const res = await h.post({ wpf_action: 'update', contactId: String(SEED.contacts.alan) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(ctx.events.get(res.body.event_id as number)!.status, 'skipped');
  }));
