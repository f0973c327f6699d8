import { test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { ConfigError, loadConfig } from '../src/config.js';
import { systemClock } from '../src/core/clock.js';
import { RETENTION_BATCH } from '../src/core/jobs/retention.js';
import type { EventStatus } from '../src/core/jobs/store.js';
import { Maintenance } from '../src/core/maintenance.js';
import type { AppContext } from '../src/server.js';
import { testSite } from './support/admin-site.js';
import { captureLogs } from './support/logs.js';

const DAY = 24 * 60 * 60 * 1000;

/** An event as the queue leaves it, `ageDays` old, with one attempt when it ever ran. */
function eventAt(ctx: AppContext, status: EventStatus, ageDays: number, extra: { clientAddress?: string } = {}): number {
  const createdAt = new Date(ctx.clock.now() - ageDays * DAY).toISOString();
  const id =
    status === 'rejected'
      ? ctx.events.recordRejected({ source: 'http_post', action: 'add', contactId: null, params: {}, clientAddress: extra.clientAddress ?? null }, 'invalid access key')
      : ctx.events.enqueue({ source: 'test', action: 'add', contactId: null, params: {} }).id;
  ctx.db.prepare('UPDATE events SET status = ?, created_at = ?, updated_at = ? WHERE id = ?').run(status, createdAt, createdAt, id);
  if (status !== 'rejected' && status !== 'queued') {
    ctx.db.prepare('INSERT INTO event_attempts (event_id, attempt, started_at, outcome) VALUES (?, 1, ?, ?)').run(id, createdAt, status);
  }
  return id;
}

const ids = (ctx: AppContext) => ctx.db.prepare('SELECT id FROM events ORDER BY id').pluck().all() as number[];
const attemptsOf = (ctx: AppContext) => ctx.db.prepare('SELECT DISTINCT event_id FROM event_attempts ORDER BY event_id').pluck().all() as number[];

test('the daily clean-up deletes finished events past their age with their attempts, and never a queued or running job', async () => {
  const { ctx, logs } = await testSite();
  const old = {
    done: eventAt(ctx, 'done', 120),
    skipped: eventAt(ctx, 'skipped', 100),
    failed: eventAt(ctx, 'failed', 100),
    dead: eventAt(ctx, 'dead', 95),
    queued: eventAt(ctx, 'queued', 95),
    processing: eventAt(ctx, 'processing', 95),
  };
  const oldRefusal = eventAt(ctx, 'rejected', 8);
  const young = { done: eventAt(ctx, 'done', 80), failed: eventAt(ctx, 'failed', 30), refusal: eventAt(ctx, 'rejected', 6) };

  await ctx.maintenance.runAll();

  assert.deepEqual(ids(ctx), [old.queued, old.processing, young.done, young.failed, young.refusal]);
  assert.deepEqual(attemptsOf(ctx), [old.processing, young.done, young.failed], 'attempts went with their events, and only with them');
  assert.ok(logs.text().includes('deleted 4 finished events older than 90 days, 1 refused requests older than 7 days and 0 beyond 1000 from one address'));
  assert.equal(ids(ctx).includes(oldRefusal), false);

  await ctx.maintenance.runAll();
  assert.equal(ids(ctx).length, 5, 'a second run finds nothing more');
});

test('refused posts record their address, and the clean-up keeps only the newest few per address', async () => {
  // The test's requests say which address they come from, as a trusted proxy on loopback would.
  const { ctx, app } = await testSite({ EVENTS_KEEP_REFUSED_PER_ADDRESS: '3', WEBHOOK_REJECTION_LIMIT: '100', TRUST_PROXY: 'loopback' });
  const refuse = (address: string) =>
    request(app).post('/').set('x-forwarded-for', address).type('form').send({ access_key: 'not-the-key', wpf_action: 'add', contactId: '7' });
  for (let i = 0; i < 5; i++) assert.equal((await refuse('203.0.113.7')).status, 403);
  for (let i = 0; i < 2; i++) assert.equal((await refuse('198.51.100.9')).status, 403);
  // Two addresses of one IPv6 /64 are one sender, as for the rejection limit.
  assert.equal((await refuse('2001:db8:abcd:1200::1')).status, 403);
  assert.equal((await refuse('2001:db8:abcd:1200:ffff::2')).status, 403);
  const rows = () => ctx.db.prepare("SELECT id, client_address FROM events WHERE status = 'rejected' ORDER BY id").all() as Array<{ id: number; client_address: string }>;
  const before = rows();
  assert.deepEqual(before.map((r) => r.client_address), [...Array(5).fill('203.0.113.7'), '198.51.100.9', '198.51.100.9', '2001:db8:abcd:1200::/64', '2001:db8:abcd:1200::/64']);

  await ctx.maintenance.runAll();
  const after = rows();
  assert.deepEqual(
    after.map((r) => r.id),
    before.slice(2).map((r) => r.id),
    'the three newest of the busy address, and all of the others',
  );
});

test('the clean-up deletes in batches and lets other work run between them', async () => {
  const { ctx } = await testSite();
  const total = RETENTION_BATCH * 2 + 200;
  const createdAt = new Date(ctx.clock.now() - 200 * DAY).toISOString();
  ctx.db
    .prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO events (source, action, status, created_at, updated_at) SELECT 'test', 'add', 'done', ?, ? FROM n`,
    )
    .run(total, createdAt, createdAt);
  const count = () => ctx.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
  let seenBetween: number | undefined;
  const cleaning = ctx.maintenance.runAll();
  // What a post's commit would find if it came while the clean-up runs: it gets its turn after one batch.
  setImmediate(() => (seenBetween = count()));
  await cleaning;
  assert.equal(seenBetween, total - RETENTION_BATCH, 'other work ran after the first batch');
  assert.equal(count(), 0);
});

test('the retention settings have defaults and refuse what is not a positive whole number, naming the variable', () => {
  assert.deepEqual(loadConfig({}).retention, { finishedDays: 90, refusedDays: 7, refusedPerAddress: 1000 });
  assert.deepEqual(loadConfig({ EVENTS_KEEP_DAYS: '30', EVENTS_KEEP_REFUSED_DAYS: '2', EVENTS_KEEP_REFUSED_PER_ADDRESS: '50' }).retention, {
    finishedDays: 30,
    refusedDays: 2,
    refusedPerAddress: 50,
  });
  assert.throws(() => loadConfig({ EVENTS_KEEP_DAYS: '0' }), (err: Error) => err instanceof ConfigError && err.message === 'Invalid setting EVENTS_KEEP_DAYS: expected a positive whole number of days (got "0")');
});

test('daily tasks run after the first pause and then again, a failing one does not stop the others, and stop waits for a run', async () => {
  const logs = captureLogs();
  const maintenance = new Maintenance(logs.logger, systemClock);
  const ran: string[] = [];
  maintenance.add('breaks', () => {
    throw new Error('disk full');
  });
  maintenance.add('counts', async () => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    ran.push('counts');
    return 'counted';
  });
  assert.throws(() => maintenance.add('counts', () => undefined), /already registered/);
  const running = maintenance.start({ firstAfterMs: 10, everyMs: 20 });
  await new Promise((resolve) => setTimeout(resolve, 75));
  await running.stop();
  const runs = ran.length;
  assert.ok(runs >= 2, `ran ${runs} times`);
  await new Promise((resolve) => setTimeout(resolve, 40));
  assert.equal(ran.length, runs, 'nothing runs after stop');
  assert.ok(logs.lines().some((l) => l.task === 'breaks' && l.msg === 'a daily clean-up failed; it runs again tomorrow'));
  assert.ok(logs.lines().some((l) => l.task === 'counts' && l.msg === 'counted'));
});
