import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { Clock } from '../src/core/clock.js';
import { createKeapSandboxApp, HOOK_EVENT_KEYS, SEED, startKeapSandbox, type HookDeliveryRecord, type KeapSandbox, type KeapSandboxOptions } from '../tools/keap-sandbox/index.js';
import { assertKeapHookDelivery } from './support/keap-hook-delivery.js';
import { assertKeapRequestMatchesSpec, assertMatchesKeapSpec } from './support/keap-openapi.js';

const API_KEY = 'sandbox-api-key';
const { contacts: C, tags: T } = SEED;
const MINUTE = 60_000;

function manualClock(start = Date.UTC(2025, 0, 15, 10, 30, 0)): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => now, sleep: async () => {}, advance: (ms) => void (now += ms) };
}

async function sandbox(t: TestContext, options: KeapSandboxOptions = {}): Promise<KeapSandbox> {
  // Keap's 10 requests a second is not what these tests are about; some make more.
  const sb = await startKeapSandbox({ limits: { perSecond: 1_000, perMinute: 10_000 }, ...options });
  t.after(() => sb.close());
  return sb;
}

// Answers are checked against Keap's spec before a test reads them.
type Json = any;

interface Answer {
  status: number;
  body: Json;
}

/**
 * One v1 call; the request and the answer are checked against the spec unless `spec: false` (for the 400s and 404s
 * the spec leaves undocumented on some hook operations: those are checked for v1's error shape instead).
 */
async function keap(sb: KeapSandbox, method: string, path: string, options: { body?: unknown; headers?: Record<string, string>; auth?: boolean; spec?: boolean } = {}): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.auth !== false) headers['X-Keap-API-Key'] = API_KEY;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const url = `${sb.url}${path}`;
  if (options.spec !== false) assertKeapRequestMatchesSpec({ method, path: url, body: options.body });
  const res = await fetch(url, { method, headers, ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}) });
  const text = await res.text();
  const body: Json = text === '' ? undefined : JSON.parse(text);
  if (options.spec !== false) assertMatchesKeapSpec({ method, path: url }, res.status, body);
  else if (res.status >= 400) assert.deepEqual(Object.keys(body), ['message'], `v1's error shape: ${text}`);
  return { status: res.status, body };
}

interface Received {
  secret: string | undefined;
  contentType: string | undefined;
  body: Json;
  raw: string;
}

/** `echo`: 200 with the secret echoed; `echo-202`: the echo with a 202; `no-echo`: a bare 200; a number: that status. */
type Behaviour = 'echo' | 'echo-202' | 'no-echo' | number | 'hang';

/** A hook receiver on loopback: answers handshakes and deliveries as `behaviour` says, and keeps what it got. */
async function receiver(t: TestContext, initial: Behaviour = 'echo'): Promise<{ url: string; received: Received[]; deliveries: () => Json[]; set(b: Behaviour): void; close(): Promise<void> }> {
  let behaviour = initial;
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      const secret = req.headers['x-hook-secret'] as string | undefined;
      received.push({ secret, contentType: req.headers['content-type'], raw, body: raw === '' ? undefined : JSON.parse(raw) });
      if (behaviour === 'hang') return void hanging.push(res);
      if (typeof behaviour === 'number') return void res.writeHead(behaviour).end();
      if (secret !== undefined && behaviour !== 'no-echo') res.setHeader('X-Hook-Secret', secret);
      res.writeHead(behaviour === 'echo-202' ? 202 : 200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      for (const res of hanging) res.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  t.after(close);
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/keap/hooks/some-token`,
    received,
    deliveries: () => received.filter((r) => r.secret === undefined).map((r) => r.body),
    set: (b) => void (behaviour = b),
    close,
  };
}

async function subscribe(sb: KeapSandbox, eventKey: string, hookUrl: string): Promise<Json> {
  const created = await keap(sb, 'POST', '/rest/v1/hooks', { body: { eventKey, hookUrl } });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  return created.body;
}

function events(sb: KeapSandbox): HookDeliveryRecord[] {
  return sb.state.hookDeliveries.filter((d) => d.kind === 'event');
}

// ---------------------------------------------------------------------------------------------------------------
// Subscriptions

test('event_keys lists Keap\'s event keys, concrete, as the spec types it', async (t) => {
  const sb = await sandbox(t);
  const answer = await keap(sb, 'GET', '/rest/v1/hooks/event_keys');
  assert.equal(answer.status, 200);
  for (const key of ['contact.add', 'contact.edit', 'contact.delete', 'contact.redact', 'contactGroup.add', 'contactGroup.edit', 'contactGroup.delete',
    'contactGroup.applied', 'contactGroup.removed', 'order.add', 'invoice.edit', 'invoice.payment.add', 'subscription.delete', 'opportunity.stage_move',
    'note.add', 'task.edit', 'product.delete', 'user.add', 'leadsource.edit']) {
    assert.ok(answer.body.includes(key), key);
  }
  assert.ok(answer.body.every((k: string) => /^[a-zA-Z]+(\.[a-z_]+)+$/.test(k) && !k.includes('*')), 'only concrete keys');
  assert.deepEqual(answer.body, [...HOOK_EVENT_KEYS]);
});

test('a receiver that echoes X-Hook-Secret is Verified at once; list, get, update, delete answer as the spec types them', async (t) => {
  const sb = await sandbox(t);
  const echo = await receiver(t, 'echo');
  const silent = await receiver(t, 'no-echo');

  const created = await subscribe(sb, 'contact.edit', echo.url);
  assert.deepEqual(created, { key: created.key, eventKey: 'contact.edit', hookUrl: echo.url, status: 'Verified' });
  assert.equal(echo.received.length, 1, 'the handshake came before the create call answered');
  const [handshake] = echo.received;
  assert.match(handshake!.secret ?? '', /^[A-Za-z0-9_-]{32}$/, 'a random secret');
  assert.equal(handshake!.raw, '', 'the handshake carries no body');

  const accepted = await receiver(t, 'echo-202');
  assert.equal((await subscribe(sb, 'note.add', accepted.url)).status, 'Unverified', 'the echo counts only with a 200');
  await keap(sb, 'DELETE', `/rest/v1/hooks/${(await keap(sb, 'GET', '/rest/v1/hooks')).body[1].key}`);

  const second = await subscribe(sb, 'contact.add', echo.url);
  assert.notEqual(second.key, created.key);
  assert.notEqual(echo.received[1]!.secret, handshake!.secret, 'a new secret each time');
  assert.notEqual(accepted.received[0]!.secret, handshake!.secret);

  const list = await keap(sb, 'GET', '/rest/v1/hooks');
  assert.deepEqual(list.body.map((h: Json) => [h.eventKey, h.status]), [['contact.edit', 'Verified'], ['contact.add', 'Verified']]);
  assert.deepEqual((await keap(sb, 'GET', `/rest/v1/hooks/${created.key}`)).body, created);

  // A new URL must be verified again, at that URL.
  const moved = await keap(sb, 'PUT', `/rest/v1/hooks/${created.key}`, { body: { eventKey: 'contact.edit', hookUrl: silent.url } });
  assert.equal(moved.status, 200);
  assert.deepEqual(moved.body, { key: created.key, eventKey: 'contact.edit', hookUrl: silent.url, status: 'Unverified' });
  assert.equal(silent.received.length, 1);
  const renamed = await keap(sb, 'PUT', `/rest/v1/hooks/${second.key}`, { body: { eventKey: 'contact.delete' } });
  assert.equal(renamed.body.eventKey, 'contact.delete');
  assert.equal(renamed.body.status, 'Verified', 'the same URL stays verified');

  const deleted = await keap(sb, 'DELETE', `/rest/v1/hooks/${created.key}`);
  assert.equal(deleted.status, 204);
  assert.equal(deleted.body, undefined);
  assert.equal((await keap(sb, 'GET', `/rest/v1/hooks/${created.key}`)).status, 404);
  assert.deepEqual((await keap(sb, 'GET', '/rest/v1/hooks')).body.map((h: Json) => h.key), [second.key]);
  assert.deepEqual(
    sb.state.hookDeliveries.map((d) => `${d.kind}:${d.outcome}`),
    ['handshake:verified', 'handshake:unverified', 'handshake:verified', 'handshake:unverified'],
  );
  assert.ok(!JSON.stringify(sb.state.hookDeliveries).includes(handshake!.secret!), 'secrets are not recorded');
});

test('bad hook requests get a 4xx naming what was wrong and change nothing', async (t) => {
  const sb = await sandbox(t);
  const echo = await receiver(t);
  const existing = await subscribe(sb, 'contact.add', echo.url);
  const refused: Array<[string, string, unknown, number, RegExp]> = [
    ['POST', '/rest/v1/hooks', { eventKey: 'contact.explode', hookUrl: echo.url }, 400, /eventKey: "contact.explode" is not an event key/],
    ['POST', '/rest/v1/hooks', { eventKey: 'contact.*', hookUrl: echo.url }, 400, /is not an event key/],
    ['POST', '/rest/v1/hooks', { eventKey: 'contact.edit', hookUrl: 'not a url' }, 400, /hookUrl: .* is not an absolute URL/],
    ['POST', '/rest/v1/hooks', { eventKey: 'contact.edit', hookUrl: 'ftp://example.com/x' }, 400, /hookUrl: must be an http or https URL/],
    ['POST', '/rest/v1/hooks', { hookUrl: echo.url }, 400, /eventKey/],
    ['POST', '/rest/v1/hooks', { eventKey: 'contact.edit' }, 400, /hookUrl/],
    ['POST', '/rest/v1/hooks', { eventKey: 'contact.add', hookUrl: echo.url }, 400, new RegExp(`already a subscription for contact.add \\(key ${existing.key}\\)`)],
    ['PUT', `/rest/v1/hooks/${existing.key}`, {}, 400, /give eventKey, hookUrl or both/],
    ['PUT', `/rest/v1/hooks/${existing.key}`, { hookUrl: 'mailto:x@example.com' }, 400, /hookUrl/],
    ['PUT', '/rest/v1/hooks/999', { hookUrl: echo.url }, 404, /999 not found/],
    ['POST', '/rest/v1/hooks/999/verify', undefined, 404, /999 not found/],
    ['DELETE', '/rest/v1/hooks/999', undefined, 404, /999 not found/],
  ];
  for (const [method, path, body, status, message] of refused) {
    const answer = await keap(sb, method, path, { body, spec: false });
    assert.equal(answer.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`);
    assert.match(answer.body.message, message);
  }
  const noBody = await fetch(`${sb.url}/rest/v1/hooks`, { method: 'POST', headers: { 'X-Keap-API-Key': API_KEY } });
  assert.equal(noBody.status, 400);
  assert.deepEqual((await keap(sb, 'GET', '/rest/v1/hooks')).body, [existing], 'nothing changed');
  assert.equal(echo.received.length, 1, 'no handshake for a refused request');

  const anonymous = await keap(sb, 'GET', '/rest/v1/hooks', { auth: false });
  assert.equal(anonymous.status, 401, 'the hooks API authenticates like the rest of v1');
  assert.equal(typeof anonymous.body.message, 'string');
});

test('a receiver that does not echo stays Unverified and confirms later with delayedVerify', async (t) => {
  const sb = await sandbox(t, { clock: manualClock() });
  const silent = await receiver(t, 'no-echo');
  const created = await subscribe(sb, 'contact.edit', silent.url);
  assert.equal(created.status, 'Unverified');
  const secret = silent.received[0]!.secret!;

  // Nothing is delivered to an Unverified hook.
  sb.state.updateContact(C.ada, { given_name: 'Augusta' });
  assert.deepEqual(await sb.hooks.flush(), []);

  const path = `/rest/v1/hooks/${created.key}/delayedVerify`;
  const missing = await keap(sb, 'POST', path, { spec: false });
  assert.equal(missing.status, 400);
  assert.match(missing.body.message, /X-Hook-Secret/);
  const wrong = await keap(sb, 'POST', path, { headers: { 'X-Hook-Secret': `${secret.slice(1)}x` } });
  assert.equal(wrong.status, 403);
  assert.equal((await keap(sb, 'GET', `/rest/v1/hooks/${created.key}`)).body.status, 'Unverified');

  const confirmed = await keap(sb, 'POST', path, { headers: { 'X-Hook-Secret': secret } });
  assert.equal(confirmed.status, 200);
  assert.deepEqual(confirmed.body, { ...created, status: 'Verified' });
  assert.equal((await keap(sb, 'POST', path, { headers: { 'X-Hook-Secret': secret } })).status, 403, 'a secret confirms once');
  assert.ok(!JSON.stringify(sb.state.requests).includes(secret), 'the secret is not in the request records');

  sb.state.updateContact(C.grace, { given_name: 'Amazing Grace' });
  await sb.hooks.flush();
  assert.deepEqual(silent.deliveries().map((d) => d.object_keys.map((k: Json) => k.id)), [[C.grace]], 'only what changed after verification');
});

// ---------------------------------------------------------------------------------------------------------------
// Deliveries

test('contact and tag changes, through the API or the state, reach the hooks for their event keys in one batch each', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, hookBatchWindowMs: 30_000, hookLateEventDelayMs: 5 * MINUTE });
  const echo = await receiver(t);
  for (const key of ['contact.add', 'contact.edit', 'contact.delete', 'contactGroup.applied', 'contactGroup.removed']) await subscribe(sb, key, echo.url);

  const created = await keap(sb, 'POST', '/rest/v1/contacts', { body: { given_name: 'Katherine', email_addresses: [{ email: 'katherine@nasa.example', field: 'EMAIL1' }] } });
  const katherine = created.body.id as number;
  clock.advance(1_000);
  await keap(sb, 'PATCH', `/rest/v1/contacts/${C.grace}`, { body: { family_name: 'Murray Hopper' } });
  await keap(sb, 'PATCH', `/rest/v2/contacts/${C.alan}`, { body: { given_name: 'Alan M.' } });
  sb.state.updateContact(C.grace, { given_name: 'Grace B.' });
  const editedAt = sb.state.contact(C.grace)!.last_updated;
  sb.state.setCustomField(C.margaret, 'Favorite Color', 'teal');
  await keap(sb, 'POST', `/rest/v1/contacts/${katherine}/tags`, { body: { tagIds: [T.member, T.vip] } });
  sb.state.applyTag(C.margaret, T.member);
  await keap(sb, 'DELETE', `/rest/v1/contacts/${C.ada}/tags/${T.vip}`);
  sb.state.updateContact(C.grace, { tag_ids: [] });
  assert.equal((await keap(sb, 'DELETE', `/rest/v1/contacts/${C.noEmail}`)).status, 204);
  assert.equal(sb.state.contact(C.noEmail), undefined);
  sb.state.addContact({ id: 900, email: 'brief@example.com' });
  assert.equal((await keap(sb, 'DELETE', '/rest/v2/contacts/900')).status, 204);
  assert.equal((await keap(sb, 'DELETE', '/rest/v2/contacts/900')).status, 404);
  assert.equal((await keap(sb, 'DELETE', `/rest/v1/contacts/${C.noEmail}`)).status, 404);

  assert.deepEqual(await sb.hooks.deliverDue(), [], 'nothing before the batch window has passed');
  assert.equal(echo.deliveries().length, 0);
  clock.advance(29_999);
  assert.deepEqual((await sb.hooks.deliverDue()).map((d) => d.eventKey), ['contact.add'], 'the first change\'s batch is due first');
  clock.advance(1);
  const first = [...events(sb).filter((d) => d.eventKey === 'contact.add'), ...(await sb.hooks.deliverDue())];
  assert.deepEqual(first.map((d) => `${d.eventKey}:${d.outcome}`).sort(), ['contact.add:delivered', 'contact.delete:delivered', 'contact.edit:delivered', 'contactGroup.removed:delivered']);
  const byKey = new Map<string, Json>(echo.deliveries().map((d) => [d.event_key, d]));
  for (const body of byKey.values()) assertKeapHookDelivery(body);
  assert.deepEqual(byKey.get('contact.add')!.object_keys.map((k: Json) => k.id), [katherine, 900], 'contact 900 joined the batch still open');
  const edit = byKey.get('contact.edit')!;
  assert.equal(edit.object_type, 'contact');
  assert.deepEqual(edit.object_keys.map((k: Json) => k.id), [C.grace, C.alan, C.margaret], 'one entry per contact, in order of first change');
  assert.deepEqual(edit.object_keys[0], { id: C.grace, apiUrl: '', timestamp: editedAt }, "Grace's entry carries her last change");
  assert.deepEqual(byKey.get('contact.delete')!.object_keys.map((k: Json) => k.id), [C.noEmail, 900]);
  assert.deepEqual(byKey.get('contactGroup.removed')!, { event_key: 'contactGroup.removed', object_type: 'contact', object_keys: byKey.get('contactGroup.removed')!.object_keys });
  assert.deepEqual(byKey.get('contactGroup.removed')!.object_keys.map((k: Json) => k.id), [C.ada, C.grace]);
  assert.ok(echo.received.filter((r) => r.secret === undefined).every((r) => r.contentType === 'application/json'));

  // contactGroup.applied comes late, as at Keap.
  assert.equal(byKey.get('contactGroup.applied'), undefined);
  clock.advance(5 * MINUTE - 30_000 - 1);
  assert.deepEqual(await sb.hooks.deliverDue(), []);
  clock.advance(1);
  const late = await sb.hooks.deliverDue();
  assert.deepEqual(late.map((d) => d.eventKey), ['contactGroup.applied']);
  const applied = echo.deliveries().at(-1);
  assertKeapHookDelivery(applied);
  assert.deepEqual(applied.object_keys.map((k: Json) => k.id), [katherine, C.margaret]);
  assert.equal(sb.hooks.pending().length, 0);

  // Applying a tag a contact already has, or removing one it lacks, is no change.
  await keap(sb, 'POST', `/rest/v1/contacts/${katherine}/tags`, { body: { tagIds: [T.member] } });
  await keap(sb, 'DELETE', `/rest/v1/contacts/${katherine}/tags/${T.paymentFailed}`);
  assert.deepEqual(sb.hooks.pending(), []);
});

test('a burst of 1,500 changes is delivered as 1,000 object_keys and then 500', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, seed: false });
  const echo = await receiver(t);
  await subscribe(sb, 'contact.add', echo.url);
  for (let i = 0; i < 1_500; i++) sb.state.addContact({ email: `c${i}@example.com` });
  clock.advance(1_000);
  const records = await sb.hooks.deliverDue();
  assert.deepEqual(records.map((r) => [r.batch, r.body?.object_keys.length, r.outcome]), [[1, 1000, 'delivered'], [2, 500, 'delivered']]);
  const bodies = echo.deliveries();
  for (const body of bodies) assertKeapHookDelivery(body);
  assert.equal(new Set(bodies.flatMap((b) => b.object_keys.map((k: Json) => k.id))).size, 1_500, 'every contact once');
});

test('a failing receiver is retried on Keap\'s schedule by the sandbox clock, and its hook goes Inactive after the 4th failure', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock });
  const flaky = await receiver(t, 'echo');
  const hook = await subscribe(sb, 'contact.edit', flaky.url);
  flaky.set(500);

  sb.state.updateContact(C.ada, { given_name: 'Augusta' });
  clock.advance(1_000);
  const [first] = await sb.hooks.deliverDue();
  assert.equal(first!.outcome, 'failed');
  assert.equal(first!.status, 500);
  assert.equal(first!.nextAttemptAt, clock.now() + 60_000);

  // A later change is its own batch, with its own schedule.
  sb.state.updateContact(C.grace, { given_name: 'Grace B.' });
  for (const [wait, attempt] of [[60_000, 2], [5 * MINUTE, 3], [30 * MINUTE, 4]] as const) {
    clock.advance(wait - 1);
    const early = await sb.hooks.deliverDue();
    assert.ok(early.every((r) => r.batch !== first!.batch), `attempt ${attempt} not before its time`);
    clock.advance(1);
    const due = (await sb.hooks.deliverDue()).filter((r) => r.batch === first!.batch);
    assert.deepEqual(due.map((r) => [r.attempt, r.outcome]), [[attempt, 'failed']]);
  }
  const last = events(sb).filter((r) => r.batch === first!.batch).at(-1)!;
  assert.equal(last.hookStatus, 'Inactive');
  assert.equal(last.nextAttemptAt, undefined);
  assert.equal((await keap(sb, 'GET', `/rest/v1/hooks/${hook.key}`)).body.status, 'Inactive');
  const grace = events(sb).filter((r) => r.body?.object_keys[0]?.id === C.grace);
  assert.deepEqual(grace.map((r) => r.outcome), ['failed', 'failed', 'failed', 'dropped'], 'the batch waiting behind it is dropped');
  assert.equal(flaky.deliveries().filter((d) => d.object_keys[0].id === C.ada).length, 4, 'four attempts in all');

  // Inactive: changes are not sent (the poller's job) ...
  sb.state.updateContact(C.alan, { given_name: 'Alan M.' });
  clock.advance(HOUR());
  assert.deepEqual(await sb.hooks.deliverDue(), []);
  // ... until verify reactivates it.
  flaky.set('echo');
  const reactivated = await keap(sb, 'POST', `/rest/v1/hooks/${hook.key}/verify`);
  assert.equal(reactivated.status, 200);
  assert.equal(reactivated.body.status, 'Verified');
  sb.state.updateContact(C.margaret, { given_name: 'Maggie' });
  clock.advance(1_000);
  assert.deepEqual((await sb.hooks.deliverDue()).map((r) => r.outcome), ['delivered']);
  assert.deepEqual(flaky.deliveries().at(-1).object_keys.map((k: Json) => k.id), [C.margaret]);
});

test('a 410 makes the hook Inactive at once and drops what was waiting; a failed verify leaves it Inactive', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, hookBatchWindowMs: 10_000 });
  const gone = await receiver(t, 'echo');
  const hook = await subscribe(sb, 'contact.edit', gone.url);
  gone.set(410);
  sb.state.updateContact(C.ada, { given_name: 'Augusta' });
  clock.advance(5_000);
  sb.state.updateContact(C.grace, { given_name: 'Grace B.' });
  clock.advance(5_000);
  const records = await sb.hooks.deliverDue();
  assert.deepEqual(records.map((r) => [r.outcome, r.status, r.hookStatus]), [['gone', 410, 'Inactive']]);
  assert.equal((await keap(sb, 'GET', `/rest/v1/hooks/${hook.key}`)).body.status, 'Inactive');
  clock.advance(HOUR());
  assert.deepEqual(await sb.hooks.deliverDue(), [], 'no retry after a 410');

  gone.set('no-echo');
  const stillInactive = await keap(sb, 'POST', `/rest/v1/hooks/${hook.key}/verify`);
  assert.equal(stillInactive.body.status, 'Inactive', 'a handshake without the echo changes nothing');
  gone.set('echo');
  assert.equal((await keap(sb, 'POST', `/rest/v1/hooks/${hook.key}/verify`)).body.status, 'Verified');

  // The same with a batch waiting behind the one that got the 410: it is dropped, and recorded as such.
  sb.state.updateContact(C.ada, { given_name: 'Ada' });
  clock.advance(10_000);
  sb.hooks.failNextDeliveries(gone.url, 1);
  const failed = await sb.hooks.deliverDue();
  assert.equal(failed[0]!.outcome, 'failed');
  sb.state.updateContact(C.alan, { given_name: 'Alan M.' });
  sb.hooks.failNextDeliveries(gone.url, 1, { status: 410 });
  clock.advance(60_000);
  const outcomes = await sb.hooks.deliverDue();
  assert.deepEqual(outcomes.map((r) => [r.batch, r.outcome]), [[failed[0]!.batch, 'gone'], [failed[0]!.batch! + 1, 'dropped']]);
  assert.deepEqual(outcomes[1]!.body?.object_keys.map((k) => k.id), [C.alan]);
  assert.equal(sb.state.hooks.get(hook.key)!.status, 'Inactive');
});

test('failNextDeliveries fails the next deliveries to a URL without sending them; a receiver that never answers times out', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, hookRetryDelaysMs: [10, 20, 30], hookTimeoutMs: 300 });
  const echo = await receiver(t);
  await subscribe(sb, 'contact.edit', echo.url);
  sb.hooks.failNextDeliveries(echo.url, 2);
  sb.state.updateContact(C.ada, { given_name: 'Augusta' });
  clock.advance(1_000);
  for (const wait of [0, 10, 20]) {
    clock.advance(wait);
    await sb.hooks.deliverDue();
  }
  assert.deepEqual(events(sb).map((r) => [r.attempt, r.outcome, r.status, r.error]), [
    [1, 'failed', 0, 'injected failure'],
    [2, 'failed', 0, 'injected failure'],
    [3, 'delivered', 200, undefined],
  ]);
  assert.equal(echo.deliveries().length, 1, 'the failed attempts never reached the receiver');
  assert.ok(events(sb).at(-1)!.durationMs > 0, 'how long the receiver took, in real time');

  // An answer lost on the way back: the receiver got the batch, and gets it again on the retry.
  sb.hooks.failNextDeliveries(echo.url, 1, { afterDelivery: true });
  sb.state.updateContact(C.alan, { given_name: 'Alan M.' });
  clock.advance(1_000);
  await sb.hooks.deliverDue();
  clock.advance(10);
  await sb.hooks.deliverDue();
  assert.deepEqual(events(sb).slice(-2).map((r) => [r.attempt, r.outcome, r.error]), [[1, 'failed', 'injected failure after delivery'], [2, 'delivered', undefined]]);
  const [lost, again] = echo.deliveries().slice(-2);
  assert.deepEqual(again, lost, 'the same delivery twice');

  echo.set('hang');
  sb.state.updateContact(C.grace, { given_name: 'Grace B.' });
  clock.advance(1_000);
  const [timedOut] = await sb.hooks.deliverDue();
  assert.equal(timedOut!.outcome, 'failed');
  assert.equal(timedOut!.error, 'no answer within 300 ms');
  assert.equal(timedOut!.nextAttemptAt, clock.now() + 10);
  assert.throws(() => sb.hooks.failNextDeliveries(echo.url, 0), /positive integer/);
  assert.throws(() => createKeapSandboxApp({ hookRetryDelaysMs: [60_000, -1] }), /hook option retryDelaysMs must be a number of milliseconds >= 0 \(got -1\)/);
  assert.throws(() => createKeapSandboxApp({ hookBatchWindowMs: Number.NaN }), /batchWindowMs/);
});

test('a receiver that is down fails with the connection error and gets the batch on a retry once it is back', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock });
  const first = await receiver(t);
  const hook = await subscribe(sb, 'contact.edit', first.url);
  await first.close();
  sb.state.updateContact(C.ada, { given_name: 'Augusta' });
  clock.advance(1_000);
  const [down] = await sb.hooks.deliverDue();
  assert.deepEqual([down!.outcome, down!.status], ['failed', 0]);
  // Refused, or the kept-alive connection of the handshake found closed: either way the receiver is gone.
  assert.match(down!.error ?? '', /^(ECONNREFUSED|UND_ERR_SOCKET): /);

  const back = await receiver(t);
  await keap(sb, 'PUT', `/rest/v1/hooks/${hook.key}`, { body: { hookUrl: back.url } });
  clock.advance(60_000);
  assert.deepEqual((await sb.hooks.deliverDue()).map((r) => [r.attempt, r.outcome, r.hookUrl]), [[2, 'delivered', back.url]]);
  assert.deepEqual(back.deliveries().map((d) => d.object_keys.map((k: Json) => k.id)), [[C.ada]]);
});

test('with the system clock the running sandbox delivers by itself after the batch window; flush sends at once', async (t) => {
  const sb = await sandbox(t, { hookBatchWindowMs: 100 });
  const echo = await receiver(t);
  await subscribe(sb, 'contact.edit', echo.url);
  await keap(sb, 'PATCH', `/rest/v1/contacts/${C.ada}`, { body: { given_name: 'Augusta' } });
  const deadline = Date.now() + 5_000;
  while (echo.deliveries().length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(echo.deliveries().map((d) => d.object_keys.map((k: Json) => k.id)), [[C.ada]]);

  const slow = await sandbox(t, { hookBatchWindowMs: 60_000 });
  const other = await receiver(t);
  await subscribe(slow, 'contact.edit', other.url);
  slow.state.updateContact(C.grace, { given_name: 'Grace B.' });
  assert.equal(slow.hooks.pending().length, 1);
  const flushed = await slow.hooks.flush();
  assert.deepEqual(flushed.map((r) => r.outcome), ['delivered']);
  assertKeapHookDelivery(other.deliveries()[0]);
});

function HOUR(): number {
  return 60 * MINUTE;
}
