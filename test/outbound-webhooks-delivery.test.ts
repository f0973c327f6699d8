import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { SEED } from '../tools/keap-sandbox/index.js';
import type { NewMemberInput } from '../src/features/members/service.js';
import { DAY, MAX_ATTEMPTS, RETRY_SCHEDULE_MS, type OutboundDispatcher } from '../src/features/outbound-webhooks/dispatcher.js';
import { dispatcherTuning } from '../src/features/outbound-webhooks/plugin.js';
import type { OutboundWebhooks } from '../src/features/outbound-webhooks/service.js';
import { ManualClock } from './support/clock.js';
import { startHarness, type Harness } from './support/harness.js';
import { csrfFrom } from './support/pages.js';
import { startReceiver, waitUntil, type Receiver } from './support/receiver.js';

/*
 * The dispatcher's schedule and outcomes with a driven clock: time moves only when a test says so, and the test
 * asks the dispatcher to look (`poke`) and waits until it has nothing more to do now (`whenIdle`), so every step
 * is decided, not slept for. Jitter is pinned to zero (random = 0.5).
 */

interface Site {
  h: Harness;
  clock: ManualClock;
  outbound: OutboundWebhooks;
  dispatcher: OutboundDispatcher;
  /** Moves the clock, lets the dispatcher look, and waits until it is done with what is due. */
  advance(ms: number): Promise<void>;
}

async function site(t: TestContext, options: { perDestination?: number } = {}): Promise<Site> {
  const clock = new ManualClock(Date.parse('2026-12-08T00:00:00.000Z'));
  let dispatcher: OutboundDispatcher | undefined;
  dispatcherTuning.options = { random: () => 0.5, ...options };
  dispatcherTuning.created = (d) => (dispatcher = d);
  const h = await startHarness({ env: { OUTBOUND_ALLOW_PRIVATE: '1' }, start: { clock } });
  dispatcherTuning.options = {};
  dispatcherTuning.created = undefined;
  t.after(() => h.close());
  const d = dispatcher!;
  return {
    h,
    clock,
    outbound: h.server.ctx.plugins.service('outboundWebhooks'),
    dispatcher: d,
    async advance(ms) {
      clock.advance(ms);
      d.poke();
      await d.whenIdle();
    },
  };
}

async function receiver(t: TestContext, answer?: Receiver['answer']): Promise<Receiver> {
  const r = await startReceiver(answer);
  t.after(() => r.close());
  return r;
}

function newMember(email: string, extra: Partial<NewMemberInput> = {}): NewMemberInput {
  return { email, username: email, role: 'subscriber', password: 'member password 0123', firstName: 'Ada', lastName: 'Lovelace', fields: {}, tags: [], keapContactId: null, ...extra };
}

/** A connection to the receiver with one destination taking `events`. */
function destinationOn(outbound: OutboundWebhooks, r: Receiver, name: string, events: string[] = ['member.created']) {
  const { connection } = outbound.createConnection({ name: `${name} connection`, base_url: r.url });
  return outbound.createDestination({ connection_id: connection.id, name, path: `/${name}`, events });
}

test('5xx and network errors are retried on the schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), then dead; a replay delivers', async (t) => {
  const s = await site(t);
  let healthy = false;
  const r = await receiver(t, () => (healthy ? { status: 204 } : { status: 500, body: 'down for maintenance' }));
  destinationOn(s.outbound, r, 'crm');
  await s.h.server.ctx.members.create(newMember('ada@example.com'));
  await r.waitFor(1);
  await s.dispatcher.whenIdle();
  const delivery = () => s.outbound.listDeliveries({ per_page: 1 }).deliveries[0]!;
  assert.equal(delivery().status, 'queued');

  for (const [i, wait] of RETRY_SCHEDULE_MS.entries()) {
    assert.equal(Date.parse(delivery().next_attempt_at!) - s.clock.now(), wait, `retry ${i + 1} waits ${wait} ms`);
    await s.advance(wait - 1);
    assert.equal(r.received.length, i + 1, `nothing is sent a millisecond before retry ${i + 1} is due`);
    await s.advance(1);
    assert.equal(r.received.length, i + 2, `retry ${i + 1} is sent when due`);
  }
  assert.equal(r.received.length, MAX_ATTEMPTS);
  const dead = s.outbound.getDelivery(delivery().id);
  assert.equal(dead.status, 'dead');
  assert.equal(dead.attempts, MAX_ATTEMPTS);
  assert.match(dead.last_error!, /500; gave up after 8 attempts/);
  assert.equal(dead.attempts_log.length, MAX_ATTEMPTS);
  assert.equal(dead.attempts_log[0]!.response!.body, 'down for maintenance');
  assert.equal(new Set(r.received.map((q) => q.headers['webhook-id'])).size, 1, 'one webhook-id across every attempt');
  assert.equal(new Set(r.received.map((q) => q.body)).size, 1, 'the same body on every attempt');

  healthy = true;
  s.outbound.replay(dead.id);
  await r.waitFor(MAX_ATTEMPTS + 1);
  await s.dispatcher.whenIdle();
  assert.equal(s.outbound.getDelivery(dead.id).status, 'delivered');
  assert.equal(r.received.at(-1)!.headers['webhook-id'], r.received[0]!.headers['webhook-id'], 'a replay keeps the webhook-id');
  assert.throws(() => s.outbound.replay(dead.id) && s.outbound.replay(dead.id), { status: 409 }, 'a delivery already queued again is not queued twice');
});

test('a 429 waits what Retry-After says (seconds or a date); other 4xx fail at once; a closed port is retried as a network error', async (t) => {
  const s = await site(t);
  const answers: Array<{ status: number; headers?: Record<string, string> }> = [
    { status: 429, headers: { 'retry-after': '120' } },
    { status: 503, headers: { 'retry-after': new Date(Date.parse('2026-12-08T01:00:00.000Z')).toUTCString() } },
    { status: 408 },
    { status: 422 },
  ];
  const r = await receiver(t, (_q, n) => answers[n - 1] ?? { status: 200 });
  destinationOn(s.outbound, r, 'crm');
  await s.h.server.ctx.members.create(newMember('ada@example.com'));
  await r.waitFor(1);
  await s.dispatcher.whenIdle();
  const delivery = () => s.outbound.listDeliveries({ per_page: 1 }).deliveries[0]!;
  assert.equal(Date.parse(delivery().next_attempt_at!) - s.clock.now(), 120_000, 'Retry-After: 120');
  await s.advance(120_000);
  assert.equal(r.received.length, 2);
  assert.equal(delivery().next_attempt_at, '2026-12-08T01:00:00.000Z', 'Retry-After as an HTTP date');
  await s.advance(Date.parse('2026-12-08T01:00:00.000Z') - s.clock.now());
  assert.equal(r.received.length, 3);
  assert.equal(Date.parse(delivery().next_attempt_at!) - s.clock.now(), RETRY_SCHEDULE_MS[2], '408 is retried on the schedule (third wait)');
  await s.advance(RETRY_SCHEDULE_MS[2]!);
  assert.equal(r.received.length, 4);
  assert.equal(delivery().status, 'failed', '422: the request itself is wrong');
  assert.equal(delivery().last_status, 422);

  // Nobody listens on port 1: the connection is refused, a network error.
  const { connection } = s.outbound.createConnection({ name: 'nowhere', base_url: 'http://127.0.0.1:1' });
  s.outbound.createDestination({ connection_id: connection.id, name: 'closed-port', events: ['member.updated'] });
  const member = s.h.server.ctx.members.findByEmail('ada@example.com')!;
  await s.h.server.ctx.members.update(member.id, { profile: { firstName: 'Augusta' } });
  await s.h.settle();
  await waitUntil(() => s.outbound.listDeliveries({ event_type: 'member.updated', per_page: 1 }).deliveries[0]?.attempts === 1);
  await s.dispatcher.whenIdle();
  const refused = s.outbound.getDelivery(s.outbound.listDeliveries({ event_type: 'member.updated', per_page: 1 }).deliveries[0]!.id);
  assert.equal(refused.status, 'queued', 'a refused connection is a network error: retried');
  assert.match(refused.attempts_log[0]!.error!, /^connect/);
});

test('410 disables the destination (dashboard notice, email to the administrators); its deliveries wait until it is enabled', async (t) => {
  const s = await site(t);
  let gone = true;
  const r = await receiver(t, () => (gone ? { status: 410 } : { status: 200 }));
  const destination = destinationOn(s.outbound, r, 'old-crm', ['member.updated']);
  const admin = await s.h.server.ctx.members.createAdministrator({ email: 'owner@example.com', password: 'owner password 2026!' });
  const member = await s.h.server.ctx.members.create(newMember('ada@example.com'));
  await s.h.server.ctx.members.update(member.id, { profile: { firstName: 'Augusta' } });
  await r.waitFor(1);
  await s.dispatcher.whenIdle();
  const disabled = s.outbound.getDestination(destination.id);
  assert.equal(disabled.enabled, false);
  assert.match(disabled.disabled_reason!, /410 Gone/);
  assert.deepEqual(s.outbound.disabledNotices().map((n) => n.destination), ['old-crm']);
  const browser = request.agent(s.h.server.url);
  const form = await browser.get('/admin/login');
  assert.equal((await browser.post('/admin/login').type('form').send({ _csrf: csrfFrom(form.text), login: admin.email, password: 'owner password 2026!' })).status, 303);
  const dashboard = await browser.get('/admin');
  assert.match(dashboard.text, new RegExp(`data-disabled-destination="${destination.id}"[^>]*>[^<]*<a href="/admin/settings/outbound-webhooks/${destination.connection_id}/destinations/${destination.id}">old-crm</a>[\\s\\S]*?410 Gone`));
  await waitUntil(() => s.h.smtp.messages.length > 0);
  assert.deepEqual(s.h.smtp.messages[0]!.to, [admin.email]);
  assert.match(s.h.smtp.messages[0]!.subject, /"old-crm" was disabled/);

  // Still recorded while disabled? No: a disabled destination takes no new events; a queued one waits for it.
  await s.h.server.ctx.members.update(member.id, { profile: { firstName: 'Ada' } });
  await s.h.settle();
  assert.equal(s.outbound.listDeliveries({ destination_id: destination.id, per_page: 10 }).total, 1, 'no delivery for a disabled destination');
  gone = false;
  s.outbound.updateDestination(destination.id, { enabled: true });
  assert.deepEqual(s.outbound.disabledNotices(), []);
  assert.doesNotMatch((await browser.get('/admin')).text, /data-disabled-destination/);
  const [failed] = s.outbound.listDeliveries({ status: 'failed', per_page: 1 }).deliveries;
  s.outbound.replay(failed!.id);
  await r.waitFor(2);
  await s.dispatcher.whenIdle();
  assert.equal(s.outbound.getDelivery(failed!.id).status, 'delivered');
});

test('a destination whose every delivery has failed for 3 days is disabled; replaying failed ones in a time range', async (t) => {
  const s = await site(t);
  const r = await receiver(t, () => ({ status: 500 }));
  const destination = destinationOn(s.outbound, r, 'flaky', ['member.created']);
  await s.h.server.ctx.members.create(newMember('one@example.com'));
  await r.waitFor(1);
  await s.dispatcher.whenIdle();
  // Its retries run out after about 28 hours; the destination has been failing since the first attempt.
  for (const wait of RETRY_SCHEDULE_MS) await s.advance(wait);
  assert.equal(s.outbound.getDestination(destination.id).enabled, true, 'a day of failures is not enough');
  await s.advance(2 * DAY);
  await s.h.server.ctx.members.create(newMember('two@example.com'));
  await s.h.settle();
  await waitUntil(() => r.received.length === MAX_ATTEMPTS + 1);
  await s.dispatcher.whenIdle();
  const disabled = s.outbound.getDestination(destination.id);
  assert.equal(disabled.enabled, false);
  assert.match(disabled.disabled_reason!, /every delivery has failed for 3 days/);

  s.outbound.updateDestination(destination.id, { enabled: true });
  assert.equal(s.outbound.getDestination(destination.id).failing_since, null, 'enabled again: a fresh start');
  const everything = { from: '2026-12-01T00:00:00.000Z', to: '2026-12-31T00:00:00.000Z' };
  assert.deepEqual(s.outbound.replayFailed(destination.id, { from: '2026-12-09T00:00:00.000Z', to: everything.to }), { replayed: 0 }, 'none failed in that range');
  r.answer = () => ({ status: 200 });
  assert.deepEqual(s.outbound.replayFailed(destination.id, everything), { replayed: 1 }, 'the dead one; the other is still queued for its retry');
  await r.waitFor(MAX_ATTEMPTS + 2);
  await s.advance(RETRY_SCHEDULE_MS[0]!);
  assert.equal(s.outbound.listDeliveries({ destination_id: destination.id, status: 'delivered', per_page: 10 }).total, 2);
  assert.throws(() => s.outbound.replayFailed(destination.id, { from: everything.to, to: everything.from }), { status: 400, field: 'to' });
});

test('a slow destination beside a fast one: the fast one gets every delivery at once, and the Keap jobs still run', async (t) => {
  const s = await site(t, { perDestination: 2 });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const slow = await receiver(t, () => ({ status: 200, hold: released }));
  const fast = await receiver(t);
  destinationOn(s.outbound, slow, 'slow');
  destinationOn(s.outbound, fast, 'fast');
  for (let i = 0; i < 10; i++) await s.h.server.ctx.members.create(newMember(`m${i}@example.com`));
  await fast.waitFor(10);
  assert.equal(slow.received.length, 2, 'the slow one holds only its own two slots');
  // A Keap post's job runs meanwhile: the deliveries never take the job worker's slots.
  const post = await s.h.post({ wpf_action: 'add', contactId: String(SEED.contacts.ada) });
  assert.equal(post.status, 200);
  await s.h.settle();
  assert.ok(s.h.server.ctx.members.findByContactId(SEED.contacts.ada), 'the Keap job ran while the slow destination held its slots');
  await fast.waitFor(11);
  release();
  await slow.waitFor(11);
  await s.dispatcher.whenIdle();
  assert.equal(s.outbound.listDeliveries({ status: 'delivered', per_page: 1 }).total, 22);
});

test('a destination deleted while its deliveries are being sent: the others sent at the same time are still recorded', async (t) => {
  const s = await site(t);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const doomed = await receiver(t, () => ({ status: 200, hold: released }));
  const kept = await receiver(t, () => ({ status: 200, hold: released }));
  const gone = destinationOn(s.outbound, doomed, 'doomed');
  const stays = destinationOn(s.outbound, kept, 'stays');
  await s.h.server.ctx.members.create(newMember('ada@example.com'));
  await doomed.waitFor(1);
  await kept.waitFor(1);
  s.outbound.deleteDestination(gone.id);
  release();
  await waitUntil(() => s.outbound.listDeliveries({ destination_id: stays.id, status: 'delivered' }).total === 1);
  assert.equal(s.outbound.listDeliveries({}).total, 1, 'the deleted destination took its delivery with it');
});
