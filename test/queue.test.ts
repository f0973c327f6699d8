import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { openDatabase } from '../src/core/db.js';
import { systemClock } from '../src/core/clock.js';
import { z } from 'zod';
import { AppError } from '../src/core/errors.js';
import { FilterError } from '../src/core/hooks.js';
import { PermanentJobError } from '../src/core/jobs/failures.js';
import { MailError } from '../src/core/mail.js';
import { JobQueue, type Job, type JobOutcome } from '../src/core/jobs/queue.js';
import { claimSql, EventStore } from '../src/core/jobs/store.js';
import { QueueWorker, retryDelayMs, DEFAULT_RETRY_POLICY, type RetryPolicy } from '../src/core/jobs/worker.js';
import { captureLogs } from './support/logs.js';

/** Keap's 429, as the Keap client's errors say it: wait this long, without using up an attempt. */
class Throttled extends Error {
  readonly throttled = true;
  constructor(message: string, readonly retryAfterMs: number) {
    super(message);
  }
}

const FAST_RETRY: RetryPolicy = { maxAttempts: 3, baseDelayMs: 20, factor: 2, maxDelayMs: 200, maxThrottled: 5 };

function setup(options: { concurrency?: number; retry?: RetryPolicy } = {}) {
  const { db } = openDatabase({ filename: ':memory:' });
  const store = new EventStore(db);
  const queue = new JobQueue(store);
  const logs = captureLogs();
  const worker = new QueueWorker({ store, queue, logger: logs.logger, clock: systemClock, pollMs: 20, retry: FAST_RETRY, ...options });
  // Rows written straight into the table, as an older version or another process would have left them.
  const enqueue = (action: string, contactId: number | null, dedupeKey?: string) =>
    store.enqueue({ source: 'test', action, contactId, params: {}, dedupeKey: dedupeKey ?? null }).id;
  const register = (type: string, run: (job: Job<Record<string, unknown>>) => Promise<JobOutcome | void>) =>
    queue.define({ type, params: z.looseObject({}), run });
  return { db, store, queue, worker, logs, enqueue, register };
}

test('jobs for one contact run one at a time and in arrival order; other contacts run alongside', async () => {
  const { worker, enqueue, register } = setup({ concurrency: 4 });
  const log: string[] = [];
  let runningFor7 = 0;
  let maxParallelFor7 = 0;
  let maxParallel = 0;
  let running = 0;
  register('step', async (job) => {
    running++;
    maxParallel = Math.max(maxParallel, running);
    if (job.contactId === 7) maxParallelFor7 = Math.max(maxParallelFor7, ++runningFor7);
    await delay(15);
    if (job.contactId === 7) runningFor7--;
    log.push(`${job.contactId}:${job.id}`);
    running--;
    return { status: 'done' };
  });
  const ids7 = [enqueue('step', 7), enqueue('step', 7), enqueue('step', 7)];
  enqueue('step', 8);
  enqueue('step', 9);
  worker.start();
  await worker.whenIdle();
  await worker.stop();
  assert.equal(maxParallelFor7, 1, 'never two jobs of contact 7 at once');
  assert.ok(maxParallel >= 2, 'different contacts ran side by side');
  assert.deepEqual(log.filter((l) => l.startsWith('7:')), ids7.map((id) => `7:${id}`));
});

test('an identical pending job is coalesced into the first; a running one is not', () => {
  const { store, enqueue, worker, register } = setup();
  const first = enqueue('add', 5, 'add|5');
  assert.deepEqual(store.enqueue({ source: 'test', action: 'add', contactId: 5, params: {}, dedupeKey: 'add|5' }), { id: first, coalesced: true });
  assert.equal(store.get(first)!.coalesced, 1);
  const other = enqueue('add', 5, 'add|5|role');
  assert.notEqual(other, first, 'different parameters are a different job');
  const claimed = store.claimNext(worker.id, Date.now(), 60_000);
  assert.equal(claimed?.id, first);
  const afterClaim = enqueue('add', 5, 'add|5');
  assert.notEqual(afterClaim, first, 'once running, an identical post queues a new job (it may carry newer data)');
});

test('a retryable failure is retried with back-off and then succeeds; every attempt is recorded', async () => {
  const { worker, enqueue, store, register } = setup();
  let calls = 0;
  register('flaky', async () => {
    calls++;
    if (calls < 3) throw new Error(`Keap said 503 (call ${calls})`);
    return { status: 'done', result: 'finally' };
  });
  const id = enqueue('flaky', 1);
  const started = Date.now();
  worker.start();
  while (store.get(id)!.status !== 'done') await delay(10);
  await worker.stop();
  assert.ok(Date.now() - started >= 20 * 0.8 + 40 * 0.8, 'waited for the back-off');
  const event = store.get(id)!;
  assert.equal(event.attempts, 3);
  assert.equal(event.result, 'finally');
  assert.deepEqual(store.attempts(id).map((a) => [a.attempt, a.outcome]), [[1, 'retry'], [2, 'retry'], [3, 'done']]);
  assert.match(store.attempts(id)[0]!.error!, /call 1/);
});

test('a permanent failure fails at once with its reason and is not retried', async () => {
  const { worker, enqueue, store, register } = setup();
  let calls = 0;
  register('hopeless', async () => {
    calls++;
    throw new PermanentJobError('contact 404 has no email address');
  });
  const id = enqueue('hopeless', 404);
  worker.start();
  await worker.whenIdle();
  await delay(100);
  await worker.stop();
  assert.equal(calls, 1);
  assert.equal(store.get(id)!.status, 'failed');
  assert.equal(store.get(id)!.error, 'contact 404 has no email address');
});

test('a job that keeps failing is dead after the configured attempts', async () => {
  const { worker, enqueue, store, register } = setup();
  register('broken', async () => { throw new Error('still down'); });
  const id = enqueue('broken', 2);
  worker.start();
  while (!['dead', 'failed', 'done'].includes(store.get(id)!.status)) await delay(10);
  await worker.stop();
  const event = store.get(id)!;
  assert.equal(event.status, 'dead');
  assert.equal(event.attempts, FAST_RETRY.maxAttempts);
  assert.match(event.error!, /gave up after 3 attempts: still down/);
});

test('a throttled job waits the hinted window and does not use up its attempts', async () => {
  const { worker, enqueue, store, register } = setup();
  let calls = 0;
  register('throttled', async () => {
    calls++;
    if (calls <= 4) throw new Throttled('Keap 429', 30);
    return { status: 'done' };
  });
  const id = enqueue('throttled', 3);
  worker.start();
  while (store.get(id)!.status !== 'done') await delay(10);
  await worker.stop();
  const event = store.get(id)!;
  assert.equal(calls, 5, 'four throttles, more than maxAttempts (3), and still done');
  assert.equal(event.attempts, 1);
  assert.equal(event.throttled, 4);
});

test('jobs left processing by a process that died are picked up again at start', async () => {
  const { worker, enqueue, store, db, register } = setup();
  const id = enqueue('resume', 11);
  const claimed = store.claimNext('worker-of-a-dead-process', Date.now(), 60_000);
  assert.equal(claimed?.id, id);
  assert.equal(store.get(id)!.status, 'processing');
  let ran = 0;
  register('resume', async () => { ran++; return { status: 'done' }; });
  worker.start();
  await worker.whenIdle();
  await worker.stop();
  assert.equal(ran, 1);
  assert.equal(store.get(id)!.status, 'done');
  const outcomes = db.prepare('SELECT outcome FROM event_attempts WHERE event_id = ? ORDER BY attempt').pluck().all(id);
  assert.deepEqual(outcomes, ['crashed', 'done']);
});

test('a skipped job keeps its reason and a replay runs it again from scratch', async () => {
  const { worker, enqueue, store, register } = setup();
  let linked = false;
  register('update', async () => (linked ? { status: 'done', result: 'updated' } : { status: 'skipped', result: 'no member is linked to contact 9' }));
  const id = enqueue('update', 9);
  worker.start();
  await worker.whenIdle();
  assert.equal(store.get(id)!.status, 'skipped');
  assert.equal(store.get(id)!.result, 'no member is linked to contact 9');
  linked = true;
  assert.equal(store.replay(id), true);
  worker.notify();
  while (store.get(id)!.status !== 'done') await delay(10);
  await worker.stop();
  assert.equal(store.get(id)!.attempts, 1);
});

test('a job whose type is not defined fails with a reason instead of staying queued', async () => {
  const { worker, enqueue, store, register } = setup();
  const id = enqueue('from_removed_plugin', 4);
  worker.start();
  await worker.whenIdle();
  await worker.stop();
  assert.equal(store.get(id)!.status, 'failed');
  assert.match(store.get(id)!.error!, /no job type "from_removed_plugin" is defined \(was a plugin removed\?\)/);
});

test('the default retry policy spreads about 8 runs over roughly a day', () => {
  const gaps = Array.from({ length: DEFAULT_RETRY_POLICY.maxAttempts - 1 }, (_, i) => retryDelayMs(DEFAULT_RETRY_POLICY, i + 1, () => 0.5));
  const hours = gaps.reduce((a, b) => a + b, 0) / 3_600_000;
  assert.equal(DEFAULT_RETRY_POLICY.maxAttempts, 8);
  assert.ok(hours > 12 && hours < 30, `total ${hours.toFixed(1)} h`);
  assert.ok(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]!), 'never shorter than the gap before');
  assert.ok(retryDelayMs(DEFAULT_RETRY_POLICY, 1, () => 0) < retryDelayMs(DEFAULT_RETRY_POLICY, 1, () => 1), 'jittered');
});

test('a job retried while an identical one waits does not collide with it; both run, in order', async () => {
  const { worker, store, register } = setup();
  let calls = 0;
  register('add', async () => {
    calls++;
    if (calls === 1) {
      // Keap resends the same post while the first run is in flight.
      const again = store.enqueue({ source: 'test', action: 'add', contactId: 21, params: {}, dedupeKey: 'add|21' });
      assert.equal(again.coalesced, false, 'a running job is not pending work to fold into');
      throw new Error('Keap 503');
    }
    return { status: 'done' };
  });
  const first = store.enqueue({ source: 'test', action: 'add', contactId: 21, params: {}, dedupeKey: 'add|21' }).id;
  worker.start();
  while (store.countByStatus().done !== 2) await delay(10);
  await worker.stop();
  assert.equal(store.get(first)!.attempts, 2);
  assert.equal(calls, 3);
});

test("a job's onCommit work lands in the transaction that records it finished: both or neither", async () => {
  const { db, store, worker, enqueue, register } = setup();
  db.exec('CREATE TABLE delivered (job INTEGER)');
  const mark = db.prepare('INSERT INTO delivered (job) VALUES (?)');
  register('deliver', async (job) => ({ status: 'done', onCommit: () => void mark.run(job.id) }));
  const id = enqueue('deliver', 1);
  worker.start();
  await worker.whenIdle();
  await worker.stop();
  assert.equal(store.get(id)!.status, 'done');
  assert.deepEqual(db.prepare('SELECT job FROM delivered').pluck().all(), [id]);

  // A job no longer processing (an admin or another run settled it meanwhile) records nothing, and its onCommit does not run.
  const stale = enqueue('deliver', 2);
  const claimed = store.claimNext('run-a', Date.now(), 60_000)!;
  assert.equal(claimed.id, stale);
  db.prepare("UPDATE events SET status = 'failed', locked_by = NULL WHERE id = ?").run(stale);
  store.finish(claimed, 'done', {}, () => void mark.run(stale));
  assert.equal(store.get(stale)!.status, 'failed');
  assert.deepEqual(db.prepare('SELECT job FROM delivered').pluck().all(), [id], 'no onCommit for a job not finished');

  // onCommit failing rolls the finish back: the job is still processing, to be re-run, not half recorded.
  const third = enqueue('deliver', 3);
  const running = store.claimNext('run-b', Date.now(), 60_000)!;
  assert.equal(running.id, third);
  assert.throws(() => store.finish(running, 'done', {}, () => { throw new Error('disk full'); }), /disk full/);
  assert.equal(store.get(third)!.status, 'processing');
});

test('a job type checks its params when queued, and names what is wrong; nothing is written for a bad one', () => {
  const { queue, store, db } = setup();
  queue.define({ type: 'greet', params: z.object({ member_id: z.number().int().positive() }), dedupeKey: (p) => String(p.member_id), contactId: () => 9, async run() {} });
  assert.throws(() => queue.enqueue('greet', { member_id: -1 }), /job "greet" has invalid params: member_id: /);
  assert.throws(() => queue.enqueue('nope', {}), /no job type "nope" is defined/);
  assert.equal(db.prepare('SELECT count(*) FROM events').pluck().get(), 0);
  const first = queue.enqueue('greet', { member_id: 4 });
  assert.deepEqual(queue.enqueue('greet', { member_id: 4 }), { id: first.id, coalesced: true }, 'the same key coalesces');
  assert.equal(store.get(first.id)!.contactId, 9);
  assert.equal(store.queueState(first.id)!.dedupeKey, 'greet|4', 'keys of different types never collide');
});

test('enqueueing wakes the worker by itself, after the transaction it is in commits; a rolled-back one leaves nothing', async () => {
  const { queue, store, db } = setup();
  const ran: number[] = [];
  queue.define({ type: 'note', params: z.object({ n: z.number() }), async run(job) { ran.push(job.params.n); } });
  // A long poll: only a wake-up gets the job run in time.
  const patient = new QueueWorker({ store, queue, logger: captureLogs().logger, clock: systemClock, pollMs: 60_000, retry: FAST_RETRY });
  patient.start();
  try {
    await patient.whenIdle();
    assert.throws(() => db.transaction(() => {
      queue.enqueue('note', { n: 1 });
      throw new Error('changed my mind');
    })());
    db.transaction(() => queue.enqueue('note', { n: 2 }))();
    const deadline = Date.now() + 2_000;
    while (ran.length === 0 && Date.now() < deadline) await delay(5);
  } finally {
    await patient.stop();
  }
  assert.deepEqual(ran, [2]);
  assert.equal(db.prepare("SELECT count(*) FROM events WHERE action = 'note'").pluck().get(), 1);
});

test("a plugin's jobs wait while it is not running, and do not hold up their contact's other jobs", async () => {
  const { queue, worker, store } = setup();
  const ran: string[] = [];
  queue.define({ type: 'plug.step', params: z.object({ contact_id: z.number() }), contactId: (p) => p.contact_id, async run() { ran.push('plugin'); } }, 'plug');
  queue.define({ type: 'core.step', params: z.object({ contact_id: z.number() }), contactId: (p) => p.contact_id, async run() { ran.push('core'); } });
  const waiting = queue.enqueue('plug.step', { contact_id: 5 });
  const behind = queue.enqueue('core.step', { contact_id: 5 });
  worker.start();
  try {
    while (store.get(behind.id)!.status !== 'done') await delay(5);
    await delay(50);
    assert.equal(store.get(waiting.id)!.status, 'queued', 'the plugin is not running: its job waits');
    assert.equal(store.get(waiting.id)!.plugin, 'plug');
    queue.setPluginRunning('plug', true);
    while (store.get(waiting.id)!.status !== 'done') await delay(5);
  } finally {
    await worker.stop();
  }
  assert.deepEqual(ran, ['core', 'plugin']);
});

test('whether a failed job runs again comes from the error it threw', async () => {
  const { worker, store, register, enqueue } = setup();
  const thrown: Record<string, unknown> = {
    plain_object_permanent: Object.assign(new Error('contact has no email'), { retryable: false }),
    app_error_4xx: new AppError(409, 'that email belongs to member 3'),
    filter_error: new FilterError('member.username', 'some-plugin', new Error('bad')),
    mail_rejected: new MailError('550 mailbox unavailable', { transient: false }),
    mail_later: new MailError('421 try later', { transient: true }),
    unknown: new Error('something odd'),
  };
  for (const [type, err] of Object.entries(thrown)) register(type, async () => { throw err; });
  const ids = Object.fromEntries(Object.keys(thrown).map((type) => [type, enqueue(type, null)]));
  worker.start();
  try {
    await worker.whenIdle();
  } finally {
    await worker.stop();
  }
  const statuses = Object.fromEntries(Object.entries(ids).map(([type, id]) => [type, store.get(id)!.status]));
  assert.deepEqual(statuses, { plain_object_permanent: 'failed', app_error_4xx: 'failed', filter_error: 'failed', mail_rejected: 'failed', mail_later: 'queued', unknown: 'queued' });
  assert.equal(store.get(ids.app_error_4xx!)!.error, 'that email belongs to member 3');
  assert.match(store.get(ids.filter_error!)!.error!, /filter "member.username" failed in plugin "some-plugin"/);
});

test('a claim reads only the queued jobs in its own order, however deep the queue: no sort of every queued row', () => {
  const { db } = openDatabase({ filename: ':memory:' });
  const store = new EventStore(db);
  const later = Date.now() + 3_600_000;
  // A deep backlog waiting out a retry (as after a Keap outage), then a few jobs that may run now.
  db.transaction(() => {
    for (let i = 0; i < 5_000; i++) store.enqueue({ source: 'test', action: 'add', contactId: 100_000 + i, params: {}, runAfter: later });
  })();
  const runnable = [1, 2, 3].map((n) => store.enqueue({ source: 'test', action: 'update', contactId: n, params: {} }).id);
  const blocked = store.enqueue({ source: 'test', action: 'update', contactId: 1, params: {} }).id;
  for (const withPlugins of [false, true]) {
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${claimSql(withPlugins)}`).all({ now: 0, worker: 'w', leaseUntil: 0, nowIso: '', limit: 1, ...(withPlugins ? { running: '[]' } : {}) }) as Array<{ detail: string }>;
    const steps = plan.map((row) => row.detail).join('\n');
    assert.match(steps, /SEARCH e USING (COVERING )?INDEX events_queued \(run_after<\?\)/, steps);
    assert.doesNotMatch(steps, /TEMP B-TREE|SCAN e\b/, steps);
  }
  // Oldest first, one job per contact, none of the backlog: contact 1's second job waits for its first.
  assert.deepEqual(store.claimBatch('w', Date.now(), 60_000, [], 10).map((job) => job.id), runnable);
  assert.equal(store.get(blocked)!.status, 'queued');
  assert.deepEqual(store.claimBatch('w', Date.now(), 60_000, ['some-plugin'], 10), []);
});
