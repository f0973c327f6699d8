/**
 * Keap misbehaving while a burst of HTTP Posts is worked off: 429 storms, 5xx answers, answers slower than the
 * client's timeout, dropped connections, access tokens expiring mid-burst, and all of them at random (seeded).
 *
 * Whatever Keap does, these must hold (checked after every scenario by `assertTroubleProperties`):
 * - every job ends `done`/`skipped`, or `failed`/`dead` with a readable last_error that holds no secret;
 * - nothing stays `queued` or `processing`;
 * - one member per contact at most, one welcome email per created member, and the password Keap holds for a
 *   created member is the one that logs in;
 * - the client never sends faster than the configured limits: in the sandbox's log of arrival times no 1 s window
 *   holds more than KEAP_RATE_PER_SECOND requests and no 60 s window more than KEAP_RATE_PER_MINUTE, Keap's own
 *   limiter (set to the same figures) never had to answer 429, and every request that reached Keap is one the
 *   client logged (nothing sent behind the limiter's back).
 *
 * Kept short for CI (each scenario a few seconds; they run side by side). By hand:
 *   KEAP_TROUBLE_SCALE=5    five times the contacts per burst (the per-minute limit then binds on real time)
 *   KEAP_TROUBLE_SEED=1234  another chaos seed (the seed in use is printed)
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Clock } from '../src/core/clock.js';
import { SEED, type SandboxFault } from '../tools/keap-sandbox/index.js';
import { SqliteKeapTokenStore } from '../src/features/keap/token-store.js';
import { verifyPassword } from '../src/features/members/passwords.js';
import { SANDBOX_API_KEY, startHarness, TEST_ACCESS_KEY, TEST_API_TOKEN, type Harness } from './support/harness.js';
import { busiestWindow } from './support/waiting.js';

const SCALE = Math.max(1, Number(process.env.KEAP_TROUBLE_SCALE ?? '1') || 1);
const CHAOS_SEED = Number(process.env.KEAP_TROUBLE_SEED ?? '20251123') >>> 0;
const OAUTH_CLIENT = { id: 'sandbox-client', secret: 'sandbox-secret' };
const REDIRECT_URI = 'https://members.example.test/admin/keap/callback';
const CONTACTS = '/crm/rest/v2/contacts';
/** The password write-back's path (v1's PATCH, which changes only the fields it lists). */
const WRITE_BACK = '/crm/rest/v1/contacts';
/** Low, so slow answers cost little time; high enough that a busy CI machine does not time out healthy calls. */
const TIMEOUT_MS = 800;
const SLOW_MS = 2_000;

interface Limits {
  perSecond: number;
  perMinute: number;
}

/** Fast enough for CI, low enough that the limiter is what paces a burst. */
const LIMITS: Limits = { perSecond: 8, perMinute: 240 };

interface ScenarioOptions {
  limits?: Limits;
  env?: Record<string, string>;
  oauth?: boolean;
  clock?: Clock;
}

/** memberhook against the sandbox, both held to `limits`, with quick job retries and a short Keap timeout. */
async function scenario(t: TestContext, options: ScenarioOptions = {}): Promise<Harness> {
  const limits = options.limits ?? LIMITS;
  // Leases far longer than any scenario: a warped clock must not make running jobs look abandoned.
  const worker = { pollMs: 50, leaseMs: 3_600_000 };
  const h = await startHarness({
    sandbox: { limits: { ...limits, perDay: 30_000 }, ...(options.clock ? { clock: options.clock } : {}) },
    env: {
      KEAP_RATE_PER_SECOND: String(limits.perSecond),
      KEAP_RATE_PER_MINUTE: String(limits.perMinute),
      KEAP_TIMEOUT_MS: String(TIMEOUT_MS),
      JOB_RETRY_BASE_MS: '50',
      JOB_MAX_ATTEMPTS: '4',
      WORKER_CONCURRENCY: '4',
      ...(options.oauth ? { KEAP_API_KEY: '', KEAP_CLIENT_ID: OAUTH_CLIENT.id, KEAP_CLIENT_SECRET: OAUTH_CLIENT.secret } : {}),
      ...options.env,
    },
    start: { worker, ...(options.clock ? { clock: options.clock } : {}) },
  });
  t.after(() => h.close());
  if (options.oauth) await h.server.ctx.keap.exchangeAuthorizationCode(h.sandbox.issueAuthorizationCode(REDIRECT_URI), REDIRECT_URI);
  // Warm up before the clock starts mattering: the first requests of a fresh process are slow to arrive.
  await h.server.ctx.keap.testConnection();
  return h;
}

/** `count` new contacts in the sandbox, each with an email and a tag. */
function addContacts(h: Harness, count: number, prefix: string): number[] {
  return Array.from({ length: count }, (_, i) =>
    h.sandbox.state.addContact({ given_name: `${prefix}${i}`, family_name: 'Trouble', email: `${prefix}-${i}@example.com`, tag_ids: [SEED.tags.member] }).id,
  );
}

/**
 * Keap's campaign posting for every contact: `add` (every other one asking for the welcome email), then `update`
 * after Keap changed the contact, then `update_tags` after a tag was applied. Each post must be acknowledged at once.
 */
async function burst(h: Harness, contactIds: number[]): Promise<void> {
  const postAll = async (params: (id: number, i: number) => Record<string, string>) => {
    const answers = await Promise.all(contactIds.map((id, i) => h.post({ contactId: String(id), ...params(id, i) })));
    for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
  };
  await postAll((_id, i) => ({ wpf_action: 'add', ...(i % 2 === 0 ? { send_notification: 'true' } : {}) }));
  for (const id of contactIds) h.sandbox.state.updateContact(id, { family_name: 'Updated' });
  await postAll(() => ({ wpf_action: 'update', role: 'member' }));
  for (const id of contactIds) h.sandbox.state.applyTag(id, SEED.tags.vip);
  await postAll(() => ({ wpf_action: 'update_tags' }));
}

interface EventRow {
  id: number;
  action: string;
  contact_id: number | null;
  status: string;
  attempts: number;
  last_error: string | null;
}

const events = (h: Harness) => h.server.ctx.db.prepare('SELECT id, action, contact_id, status, attempts, last_error FROM events ORDER BY id').all() as EventRow[];

interface Observed {
  requests: number;
  maxPerSecond: number;
  maxPerMinute: number;
  arrivalMaxPerSecond: number;
  arrivalMaxPerMinute: number;
  faults: number;
  statuses: Record<string, number>;
}

/** The properties every scenario must end with (see the file comment). */
async function assertTroubleProperties(
  t: TestContext,
  h: Harness,
  limits: Limits,
  options: { createdContacts?: number[]; clockOffset?: (realTime: number) => number } = {},
): Promise<Observed> {
  const { ctx } = h.server;
  const rows = events(h);
  const final = new Set(['done', 'skipped', 'failed', 'dead']);
  const unfinished = rows.filter((e) => !final.has(e.status));
  assert.deepEqual(unfinished, [], 'every job finished: none queued, none processing');

  const tokens = new SqliteKeapTokenStore(ctx.db, ctx.secretBox).load();
  const passwords = [...h.sandbox.state.contacts.keys()].map((id) => h.sandbox.state.customFieldValue(id, SEED.fields.password)).filter((p): p is string => typeof p === 'string');
  const secrets = [TEST_ACCESS_KEY, TEST_API_TOKEN, SANDBOX_API_KEY, OAUTH_CLIENT.secret, ...(tokens ? [tokens.accessToken, tokens.refreshToken] : []), ...passwords];
  for (const e of rows.filter((r) => r.status === 'failed' || r.status === 'dead')) {
    const error = e.last_error ?? '';
    assert.ok(error.length > 10 && error.length < 1_000, `event ${e.id} (${e.status}) has a readable last_error: ${JSON.stringify(error)}`);
    assert.match(error, /^[\x20-\x7e]+$/, `event ${e.id}'s last_error is one printable line`);
    assert.doesNotMatch(error, /\[object Object\]|undefined|TypeError|at \S+ \(/, `event ${e.id}'s last_error is meant for people: ${error}`);
  }
  const stored = JSON.stringify([ctx.db.prepare('SELECT * FROM events').all(), ctx.db.prepare('SELECT * FROM event_attempts').all()]);
  const logText = h.logs.text();
  for (const secret of secrets) {
    assert.equal(stored.includes(secret), false, 'no secret in the event log or its attempts');
    assert.equal(logText.includes(secret), false, 'no secret in the logs');
  }

  // No duplicates: one member per contact, one welcome email per member, and the password Keap holds works.
  const perContact = ctx.db.prepare('SELECT keap_contact_id AS id, count(*) AS n FROM members WHERE keap_contact_id IS NOT NULL GROUP BY keap_contact_id HAVING n > 1').all();
  assert.deepEqual(perContact, [], 'one member per Keap contact');
  const recipients = h.smtp.messages.flatMap((m) => m.to);
  assert.equal(new Set(recipients).size, recipients.length, 'one welcome email per member');
  for (const id of options.createdContacts ?? []) {
    const member = ctx.members.findByContactId(id);
    assert.ok(member, `contact ${id} became a member: ${JSON.stringify(events(h).filter((e) => e.contact_id === id))}`);
    const inKeap = h.sandbox.state.customFieldValue(id, SEED.fields.password);
    assert.equal(typeof inKeap, 'string', `contact ${id}'s generated password was written back: ${JSON.stringify(events(h).filter((e) => e.contact_id === id))}`);
    assert.equal(await verifyPassword(inKeap as string, ctx.members.passwordHash(member.id)), true, `the password Keap holds for contact ${id} logs in`);
  }

  // The rate. The client's contract is on its own send times (every call it logs, started `ms` before the line): no
  // 1 s window holds more than perSecond, no 60 s window more than perMinute. Keap counts arrivals: its own limiter in
  // the sandbox (fixed windows, the same figures) must never have had to answer 429, and the busiest arrival windows
  // are reported. (Arrival can lag a send by hundreds of ms on a busy CI machine, which the limiter's safety margin
  // covers only in part; see the report in the issue.)
  const api = h.sandbox.state.requests.filter((r) => r.path.startsWith('/crm/'));
  const calls = h.logs.lines().filter((l) => l.msg === 'keap call' && typeof l.path === 'string' && (l.path as string).startsWith('/rest/'));
  const sent = calls.map((l) => {
    const real = (l.time as number) - (l.ms as number);
    return real + (options.clockOffset?.(real) ?? 0);
  });
  const arrived = api.map((r) => r.time);
  const observed: Observed = {
    requests: api.length,
    maxPerSecond: busiestWindow(sent, 1_000),
    maxPerMinute: busiestWindow(sent, 60_000),
    arrivalMaxPerSecond: busiestWindow(arrived, 1_000),
    arrivalMaxPerMinute: busiestWindow(arrived, 60_000),
    faults: api.filter((r) => r.fault !== undefined).length,
    statuses: Object.fromEntries([...h.sandbox.state.statusCounts].sort(([a], [b]) => a - b).map(([s, n]) => [String(s), n])),
  };
  t.diagnostic(
    `keap requests ${observed.requests}; busiest 1 s window sent ${observed.maxPerSecond} / arrived ${observed.arrivalMaxPerSecond} (limit ${limits.perSecond}); ` +
      `busiest 60 s window sent ${observed.maxPerMinute} / arrived ${observed.arrivalMaxPerMinute} (limit ${limits.perMinute}); injected faults ${observed.faults}; statuses ${JSON.stringify(observed.statuses)}`,
  );
  // Every request Keap saw is one the client sent through its limiter and logged (no hidden retries below it).
  assert.equal(api.length, calls.length, 'every request that reached Keap was a call the client made and logged');
  assert.ok(observed.maxPerSecond <= limits.perSecond, `at most ${limits.perSecond} calls sent in any 1 s window (saw ${observed.maxPerSecond})`);
  assert.ok(observed.maxPerMinute <= limits.perMinute, `at most ${limits.perMinute} calls sent in any 60 s window (saw ${observed.maxPerMinute})`);
  const realThrottles = api.filter((r) => r.status === 429 && r.fault === undefined);
  assert.equal(realThrottles.length, 0, "Keap's own limiter never had to throttle the client");
  return observed;
}

function statusOf(h: Harness, action: string, contactId: number): EventRow {
  const row = events(h).find((e) => e.action === action && e.contact_id === contactId);
  assert.ok(row, `a ${action} job for contact ${contactId}`);
  return row;
}

/** Waits until the sandbox has seen `count` API requests (to expire tokens "mid-burst"). */
async function untilRequests(h: Harness, count: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (h.sandbox.state.requests.filter((r) => r.path.startsWith('/crm/')).length < count) {
    if (Date.now() > deadline) throw new Error(`the sandbox never saw ${count} requests`);
    await delay(2);
  }
}

/**
 * Waits until no Keap call has been sent for `quietMs`, so that the clock can be moved with no call being sent in the
 * same instant. The rate check places each logged call on the moved clock by its send time, known only to the
 * millisecond: a call sent within that millisecond of a warp could be placed on the wrong side of it (CI once saw
 * nine calls in one second that way, while the limiter had counted, and Keap had received, eight).
 */
async function untilQuiet(h: Harness, quietMs = 300, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const sent = () => h.logs.lines().filter((l) => l.msg === 'keap call').length;
  let seen = -1;
  let since = Date.now();
  for (;;) {
    const now = sent() + h.sandbox.state.requests.length;
    if (now !== seen) [seen, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) return;
    if (Date.now() > deadline) throw new Error(`Keap calls never paused for ${quietMs} ms`);
    await delay(10);
  }
}

/** Real time that a test can move forward; sleeps end when the moved time reaches them. */
function warpClock(): Clock & { warp(ms: number): void; offsetAt(realTime: number): number } {
  let offset = 0;
  const history: Array<{ from: number; offset: number }> = [];
  const now = () => Date.now() + offset;
  return {
    now,
    async sleep(ms) {
      const until = now() + ms;
      while (now() < until) await delay(Math.min(25, until - now()));
    },
    warp(ms) {
      offset += ms;
      history.push({ from: Date.now(), offset });
    },
    /** How far the clock had been moved at a real time (to put log times, which are real, on the moved clock). */
    offsetAt: (realTime) => history.filter((w) => w.from <= realTime).at(-1)?.offset ?? 0,
  };
}

const N = 6 * SCALE;

// Two scenarios at a time, not all eight: each is a sandbox, an SMTP server and memberhook in this one process, and
// eight at once on a busy 2-core machine delayed requests between send and arrival past the limiter's safety margin
// (CI once saw Keap's own limiter throttle a client that had kept to 8 a second). The limits are about the client.
describe('Keap trouble during a burst of posts', { concurrency: 2 }, () => {
  test('a 429 storm, with and without Retry-After, is waited out without using attempts', async (t) => {
    const h = await scenario(t);
    const ids = addContacts(h, N, 'storm');
    h.sandbox.failNext(10, 429);
    h.sandbox.failNext(1, 429, { retryAfterSeconds: 2 });
    h.sandbox.failNext(6, 429);
    await burst(h, ids);
    await h.settle(60_000);
    await assertTroubleProperties(t, h, LIMITS, { createdContacts: ids });
    const rows = events(h);
    assert.ok(rows.every((e) => e.status === 'done'), `every job done: ${JSON.stringify(rows.filter((e) => e.status !== 'done'))}`);
    // Throttling used up no attempts (a run cut short by a 429 is recorded as throttled, never as a retry).
    const attempts = h.server.ctx.db.prepare("SELECT outcome, error FROM event_attempts WHERE error LIKE '%429%'").all() as Array<{ outcome: string }>;
    assert.ok(attempts.length > 0 && attempts.every((a) => a.outcome === 'throttled'), JSON.stringify(attempts));
    assert.equal(h.sandbox.state.statusCounts.get(429), 17, 'each injected 429 answered once');
    // After the 429 carrying Retry-After: 2, Keap heard nothing for two seconds.
    // (Requests already on their way when it arrived are let by: they left before the client could know.)
    const api = h.sandbox.state.requests.filter((r) => r.path.startsWith('/crm/'));
    const withRetryAfter = api.filter((r) => r.status === 429)[10]!;
    const next = api.find((r) => r.time > withRetryAfter.time + 200);
    assert.ok(next, 'requests went on after the Retry-After');
    assert.ok(next.time - withRetryAfter.time >= 1_950, `the next request waited for Retry-After (${next.time - withRetryAfter.time} ms)`);
  });

  test('500, 502 and 503 answers are retried until done; a contact Keap keeps failing ends dead with the reason', async (t) => {
    const h = await scenario(t, { env: { JOB_MAX_ATTEMPTS: '2' } });
    const ids = addContacts(h, N, 'err');
    const broken = ids[0]!;
    // Keap fails every read of one contact (3 tries per run, 2 runs).
    h.sandbox.troubleNext(6, { kind: 'status', status: 503 }, { path: `${CONTACTS}/${broken}` });
    // A careless gateway quoting the key in its error: the key must not reach the event log.
    // Three in a row fail the first run, so the message lands in the attempts log.
    h.sandbox.troubleNext(3, { kind: 'status', status: 500, echoCredential: true }, { path: `${CONTACTS}/${ids[1]}` });
    // Then whatever comes next (queued after the faults above, which their own paths take first).
    for (const status of [500, 502, 503, 500, 503, 502]) h.sandbox.troubleNext(1, { kind: 'status', status }, { path: new RegExp(`^(?!${CONTACTS}/(${broken}|${ids[1]})$)`) });
    await burst(h, ids);
    await h.settle(60_000);
    await assertTroubleProperties(t, h, LIMITS, { createdContacts: ids.slice(1) });
    const dead = statusOf(h, 'add', broken);
    assert.equal(dead.status, 'dead');
    assert.equal(dead.attempts, 2);
    assert.equal(dead.last_error, `gave up after 2 attempts: Keap GET /rest/v2/contacts/${broken} failed with 503: Injected failure (sandbox failNext 503)`);
    assert.equal(h.server.ctx.members.findByContactId(broken), undefined);
    for (const id of ids.slice(1)) for (const action of ['add', 'update', 'update_tags']) assert.equal(statusOf(h, action, id).status, 'done', `${action} ${id}`);
    const echoed = h.server.ctx.events.attempts(statusOf(h, 'add', ids[1]!).id);
    assert.deepEqual(echoed.map((a) => a.outcome), ['retry', 'done']);
    assert.match(echoed[0]!.error!, /failed with 500: .*credential presented: \[redacted\]/, 'the quoted key was scrubbed');
  });

  test('answers slower than KEAP_TIMEOUT_MS time out and are retried; a write that landed late is written again, the same', async (t) => {
    const h = await scenario(t, { env: { JOB_MAX_ATTEMPTS: '2' } });
    const ids = addContacts(h, N, 'slow');
    const stuck = ids[0]!;
    h.sandbox.troubleNext(2, { kind: 'slow', delayMs: SLOW_MS }, { path: `${CONTACTS}/${stuck}` });
    h.sandbox.troubleNext(1, { kind: 'slow', delayMs: SLOW_MS }, { path: `${CONTACTS}/${ids[1]}` });
    h.sandbox.troubleNext(1, { kind: 'slow', delayMs: SLOW_MS, phase: 'mid-body' }, { path: `/crm/rest/v1/contacts/${ids[2]}/tags` });
    // The write-back PATCH is carried out, but its answer comes too late: the client cannot know it landed.
    h.sandbox.troubleNext(1, { kind: 'slow', delayMs: SLOW_MS }, { method: 'PATCH', path: `${WRITE_BACK}/${ids[3]}` });
    await burst(h, ids);
    await h.settle(60_000);
    await assertTroubleProperties(t, h, LIMITS, { createdContacts: ids.slice(1) });
    const dead = statusOf(h, 'add', stuck);
    assert.equal(dead.status, 'dead');
    assert.equal(dead.last_error, `gave up after 2 attempts: Keap GET /rest/v2/contacts/${stuck} did not answer within ${TIMEOUT_MS} ms`);
    for (const id of ids.slice(1)) assert.equal(statusOf(h, 'add', id).status, 'done');
    const timedOut = h.sandbox.state.requests.filter((r) => r.fault?.startsWith('slow'));
    assert.equal(timedOut.length, 5);
  });

  test('connections dropped before the request is carried out, after it, and half-way through the answer are retried', async (t) => {
    const h = await scenario(t);
    const ids = addContacts(h, N, 'drop');
    const phases = ['before-processing', 'after-processing', 'mid-body'] as const;
    phases.forEach((phase, i) => {
      h.sandbox.troubleNext(1, { kind: 'drop', phase }, { path: `${CONTACTS}/${ids[i]}` });
      h.sandbox.troubleNext(1, { kind: 'drop', phase }, { path: `/crm/rest/v1/contacts/${ids[i + 3]}/tags` });
    });
    // The write-back lands in Keap and the connection dies before the answer; then a second PATCH is dropped unheard.
    h.sandbox.troubleNext(1, { kind: 'drop', phase: 'after-processing' }, { method: 'PATCH', path: `${WRITE_BACK}/${ids[4]}` });
    h.sandbox.troubleNext(2, { kind: 'drop', phase: 'before-processing' }, { method: 'PATCH', path: `${WRITE_BACK}/${ids[5]}` });
    await burst(h, ids);
    await h.settle(60_000);
    await assertTroubleProperties(t, h, LIMITS, { createdContacts: ids });
    const rows = events(h);
    assert.ok(rows.every((e) => e.status === 'done'), `every job done: ${JSON.stringify(rows.filter((e) => e.status !== 'done'))}`);
    assert.equal(h.sandbox.state.requests.filter((r) => r.fault?.startsWith('drop')).length, 9);
  });

  test('OAuth: access tokens expiring twice mid-burst cost one refresh each, and every job is done', async (t) => {
    // A generous timeout: a refresh answer lost to a timeout after Keap rotated the refresh token loses the connection
    // for good (seen under heavy CI load with 800 ms; see the report), which is not what this scenario is about.
    const h = await scenario(t, { oauth: true, env: { KEAP_TIMEOUT_MS: '5000' } });
    const ids = addContacts(h, N, 'oauth');
    const oauth = h.server.ctx.keap.oauth!;
    const posted = burst(h, ids);
    await untilRequests(h, 6);
    h.sandbox.expireAccessTokens();
    // The second expiry once the first is behind every call (a call meeting both within one try is the todo below).
    const deadline = Date.now() + 60_000;
    const refreshedAt = () => h.sandbox.state.requests.filter((r) => r.path === '/token').at(1)?.time;
    while (!(refreshedAt() !== undefined && h.sandbox.state.requests.filter((r) => r.path.startsWith('/crm/') && r.time > refreshedAt()! && r.status === 200).length >= 10)) {
      if (Date.now() > deadline) {
        const tokenCalls = h.sandbox.state.requests.filter((r) => r.path === '/token').map((r) => `${r.status} in ${r.durationMs} ms`);
        throw new Error(`the burst never got past the first expiry: /token ${JSON.stringify(tokenCalls)}, jobs ${JSON.stringify(events(h).map((e) => [e.action, e.status, e.last_error]))}`);
      }
      await delay(5);
    }
    h.sandbox.expireAccessTokens();
    await posted;
    await h.settle(60_000);
    await assertTroubleProperties(t, h, LIMITS, { createdContacts: ids });
    const rows = events(h);
    assert.ok(rows.every((e) => e.status === 'done'), `every job done: ${JSON.stringify(rows.filter((e) => e.status !== 'done'))}`);
    assert.equal(oauth.refreshes, 2, 'one refresh per expiry, however many calls met it');
    const expired = h.sandbox.state.requests.filter((r) => r.status === 401);
    assert.ok(expired.length >= 2 && expired.length <= 2 * 4, `a few calls met each expiry (${expired.length})`);
    const tokenCalls = h.sandbox.state.requests.filter((r) => r.path === '/token');
    assert.deepEqual(tokenCalls.map((r) => r.status), [200, 200, 200], 'the code exchange and two refreshes, all accepted (the rotated refresh token was kept)');
  });

  test(
    'OAuth: a token Keap rejects once more right after the refresh is retried, not failed for good',
    async (t) => {
      const h = await scenario(t, { oauth: true });
      const ids = addContacts(h, 2, 'reject');
      // Keap's freshly refreshed token not valid everywhere yet (or expired again): two 401s for one call.
      h.sandbox.troubleNext(2, { kind: 'status', status: 401, message: 'Access token expired' }, { path: `${CONTACTS}/${ids[0]}` });
      await burst(h, ids);
      await h.settle(60_000);
      await assertTroubleProperties(t, h, LIMITS, { createdContacts: ids });
      const add = statusOf(h, 'add', ids[0]!);
      assert.equal(add.status, 'done', `add ended ${add.status}: ${add.last_error}`);
    },
  );

  test(`a seeded mix of every misbehaviour (seed ${CHAOS_SEED}) ends with every job settled and the limits kept`, async (t) => {
    const h = await scenario(t, { oauth: true, env: { JOB_MAX_ATTEMPTS: '3', KEAP_TIMEOUT_MS: '1500' } });
    const ids = addContacts(h, N + 2, 'chaos');
    h.sandbox.chaos({
      seed: CHAOS_SEED,
      rates: {
        status429: 0.06,
        status500: 0.03,
        status502: 0.03,
        status503: 0.03,
        slow: 0.03,
        slowBody: 0.02,
        dropBeforeProcessing: 0.03,
        dropAfterProcessing: 0.03,
        dropMidBody: 0.03,
      },
      expireTokens: 0.02,
      slowMs: 2_500,
      retryAfterSeconds: 1,
    });
    await burst(h, ids);
    await h.settle(90_000);
    h.sandbox.chaos(null);
    const observed = await assertTroubleProperties(t, h, LIMITS);
    const rows = events(h);
    const byStatus = new Map<string, number>();
    for (const e of rows) byStatus.set(e.status, (byStatus.get(e.status) ?? 0) + 1);
    t.diagnostic(`jobs: ${[...byStatus].map(([status, n]) => `${status} ${n}`).join(', ')}; faults injected ${observed.faults}`);
    assert.ok(observed.faults > 0, 'chaos did strike');
    // A created member's password is in Keap unless its write-back itself was given up.
    for (const id of ids) {
      const member = h.server.ctx.members.findByContactId(id);
      const writeBack = rows.find((e) => e.action === 'keap_password_writeback' && e.contact_id === id);
      if (!member || writeBack?.status !== 'done') continue;
      const inKeap = h.sandbox.state.customFieldValue(id, SEED.fields.password) as string;
      assert.equal(await verifyPassword(inKeap, h.server.ctx.members.passwordHash(member.id)), true, `the password Keap holds for contact ${id} logs in`);
    }
    // Failures are only ever what chaos can cause: transient trouble given up on, never a wrong permanent verdict.
    for (const e of rows.filter((r) => r.status === 'failed')) assert.fail(`job ${e.id} (${e.action}) failed for good under transient trouble: ${e.last_error}`);
  });

  test('the per-minute limit holds a burst back until the minute has passed (on a clock the test moves)', async (t) => {
    const clock = warpClock();
    const limits: Limits = { perSecond: 8, perMinute: 20 };
    const h = await scenario(t, { limits, clock });
    const ids = addContacts(h, 6, 'minute');
    await burst(h, ids);
    // 6 contacts need 6 × 6 + 1 calls: the first 20 go, then the limiter holds the rest.
    await untilRequests(h, limits.perMinute);
    await delay(1_500);
    const api = () => h.sandbox.state.requests.filter((r) => r.path.startsWith('/crm/'));
    assert.equal(api().length, limits.perMinute, 'nothing more was sent within the minute');
    assert.ok(h.server.ctx.keap.limiter.waiting > 0 || events(h).some((e) => e.status === 'processing'), 'work is waiting for the limiter');
    const first = api()[0]!.time;
    clock.warp(first + 60_000 - clock.now() - 500);
    await untilRequests(h, limits.perMinute + 1);
    // The calls whose minute has just ended go one by one as their slots free up; the next slot is a second away.
    await untilQuiet(h);
    clock.warp(60_000);
    await h.settle(30_000);
    const observed = await assertTroubleProperties(t, h, limits, { createdContacts: ids, clockOffset: clock.offsetAt });
    assert.equal(observed.maxPerMinute, limits.perMinute, 'the minute was filled, and no more');
  });
});
