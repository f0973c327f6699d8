import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { test, type TestContext } from 'node:test';
import { systemClock, type Clock } from '../src/core/clock.js';
import { openDatabase } from '../src/core/db.js';
import { SecretBox } from '../src/core/secret-box.js';
import { KeapClient, type KeapClientOptions } from '../src/features/keap/client.js';
import { KeapPermanentError, KeapReauthorizationRequiredError, KeapRetryableError } from '../src/features/keap/errors.js';
import { MemoryKeapTokenStore, SqliteKeapTokenStore } from '../src/features/keap/token-store.js';
import { SEED, startKeapSandbox, type KeapSandbox, type KeapSandboxOptions } from '../tools/keap-sandbox/index.js';
import { captureLogs } from './support/logs.js';
import { validateKeapRequest, validateKeapResponse } from './support/keap-openapi.js';

const API_KEY = 'sandbox-api-key';
const CLIENT = { clientId: 'sandbox-client', clientSecret: 'sandbox-secret' };
const REDIRECT_URI = 'https://members.example.test/admin/keap/callback';
const { contacts: C, fields: F, tags: T } = SEED;

/** What the client sent and what came back, as seen on the wire (a wrapper around the real fetch). */
interface Exchange {
  method: string;
  url: URL;
  body: unknown;
  status: number;
  responseBody: unknown;
}

interface Setup {
  sb: KeapSandbox;
  client: KeapClient;
  exchanges: Exchange[];
  logs: ReturnType<typeof captureLogs>;
  /** Every request to Keap's REST API matches the spec, and so does every 2xx answer. */
  assertSpec(): void;
}

interface SetupOptions {
  sandbox?: KeapSandboxOptions;
  auth?: 'key' | 'oauth';
  client?: Partial<KeapClientOptions>;
}

async function setup(t: TestContext, options: SetupOptions = {}): Promise<Setup> {
  const sb = await startKeapSandbox(options.sandbox);
  t.after(() => sb.close());
  const exchanges: Exchange[] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const sent = typeof init?.body === 'string' ? init.body : undefined;
    const res = await fetch(input, init);
    const text = await res.clone().text();
    const isJson = (res.headers.get('content-type') ?? '').includes('json');
    exchanges.push({
      method: init?.method ?? 'GET',
      url,
      body: sent === undefined ? undefined : url.pathname === '/token' ? Object.fromEntries(new URLSearchParams(sent)) : JSON.parse(sent),
      status: res.status,
      responseBody: isJson && text ? JSON.parse(text) : text,
    });
    return res;
  };
  const logs = captureLogs('debug');
  const auth = options.auth ?? 'key';
  const client = new KeapClient({
    apiUrl: sb.url,
    ...(auth === 'key' ? { apiKey: API_KEY } : { oauth: { ...CLIENT, tokenUrl: sb.tokenUrl } }),
    tokenStore: new MemoryKeapTokenStore(),
    rateLimit: { perSecond: 10, perMinute: 240 },
    timeoutMs: 5_000,
    logger: logs.logger,
    fetch: recordingFetch,
    ...options.client,
  });
  const assertSpec = () => {
    const api = exchanges.filter((e) => e.url.pathname.includes('/rest/'));
    assert.ok(api.length > 0, 'the client sent API requests');
    for (const e of api) {
      const path = `${e.url.pathname}${e.url.search}`;
      assert.deepEqual(validateKeapRequest({ method: e.method, path, body: e.body }), [], `${e.method} ${path} matches Keap's spec`);
      if (e.status >= 200 && e.status < 300) {
        assert.deepEqual(validateKeapResponse({ method: e.method, path }, e.status, e.responseBody), [], `the answer to ${e.method} ${path} matches Keap's spec`);
      }
    }
  };
  return { sb, client, exchanges, logs, assertSpec };
}

/** A clock that runs with real time but can be moved ahead (to age caches and tokens). */
function shiftableClock(): Clock & { shift(ms: number): void } {
  let offset = 0;
  return { now: () => Date.now() + offset, sleep: (ms) => systemClock.sleep(ms), shift: (ms) => void (offset += ms) };
}

/** Tokens for a client connected through the sandbox's OAuth flow, stored in a fresh SQLite database. */
async function connectOAuth(t: TestContext, options: SetupOptions = {}) {
  const { db } = openDatabase({ filename: ':memory:' });
  t.after(() => db.close());
  const tokenStore = new SqliteKeapTokenStore(db, new SecretBox(randomBytes(32), 'a test key'));
  const s = await setup(t, { ...options, auth: 'oauth', client: { tokenStore, ...options.client } });
  const tokens = await s.client.exchangeAuthorizationCode(s.sb.issueAuthorizationCode(REDIRECT_URI), REDIRECT_URI);
  return { ...s, db, tokenStore, tokens };
}

const tokenRequests = (sb: KeapSandbox) => sb.state.requests.filter((r) => r.path === '/token');

async function refreshWith(sb: KeapSandbox, refreshToken: string): Promise<{ status: number; body: { error?: string } }> {
  const res = await fetch(sb.tokenUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT.clientId}:${CLIENT.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
  return { status: res.status, body: (await res.json()) as { error?: string } };
}

async function freePortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/crm`;
}

// -------------------------------------------------------------------------------------------------------------------
// Calls

test('getContact gives the contact normalized: EMAIL1 as the email, numeric ids, custom field values', async (t) => {
  const { client, sb, assertSpec } = await setup(t);
  const ada = await client.getContact(C.ada);
  assert.equal(ada.id, C.ada);
  assert.equal(ada.email, 'ada@example.com');
  assert.deepEqual(ada.emails, [
    { email: 'ada@example.com', field: 'EMAIL1' },
    { email: 'ada.lovelace@example.org', field: 'EMAIL2' },
  ]);
  assert.equal(ada.givenName, 'Ada');
  assert.equal(ada.familyName, 'Lovelace');
  assert.deepEqual(ada.tagIds, [T.member, T.vip, T.newsletter]);
  assert.deepEqual(ada.customFields.find((f) => f.id === String(F.favoriteColor)), { id: String(F.favoriteColor), content: 'Purple' });
  assert.deepEqual(ada.customFields.find((f) => f.id === String(F.password)), { id: String(F.password), content: null });

  // EMAIL1 wins even when listed second; without EMAIL1 the first address; without any, null.
  const swapped = sb.state.addContact({ email_addresses: [{ email: 'second@example.com', field: 'EMAIL2' }, { email: 'first@example.com', field: 'EMAIL1' }] });
  assert.equal((await client.getContact(swapped.id)).email, 'first@example.com');
  const onlySecond = sb.state.addContact({ email_addresses: [{ email: 'only@example.com', field: 'EMAIL2' }] });
  assert.equal((await client.getContact(onlySecond.id)).email, 'only@example.com');
  const nobody = await client.getContact(C.noEmail);
  assert.equal(nobody.email, null);
  assert.equal((await client.getContact(C.margaret)).familyName, '', 'a missing family name is an empty string');

  const sent = sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.ada}`)[0]!;
  assert.deepEqual(String(sent.query.fields).split(',').sort(), ['custom_fields', 'email_addresses', 'family_name', 'given_name', 'tag_ids']);
  assert.equal(sent.credential, 'key');
  assertSpec();
});

test('getContactTags gives tag names and category names, over several pages when there are many', async (t) => {
  const { client, sb, assertSpec } = await setup(t, { sandbox: { limits: { perSecond: 50, perMinute: 1000 } } });
  const tags = await client.getContactTags(C.ada);
  assert.deepEqual(
    [...tags].sort((a, b) => a.id - b.id),
    [
      { id: T.member, name: 'Member', category: 'Membership' },
      { id: T.vip, name: 'VIP', category: 'Membership' },
      { id: T.newsletter, name: 'Newsletter', category: '' },
    ],
  );

  const many = Array.from({ length: 1_203 }, (_, i) => sb.state.addTag({ name: `Bulk ${i}` }).id);
  const busy = sb.state.addContact({ email: 'busy@example.com', tag_ids: many });
  const before = sb.state.requests.length;
  const all = await client.getContactTags(busy.id);
  assert.equal(all.length, 1_203);
  assert.deepEqual(new Set(all.map((tag) => tag.id)), new Set(many));
  assert.equal(sb.state.requests.length - before, 2, 'two pages of up to 1000');
  assertSpec();
});

test('the contact model maps labels (any case) and ids to field ids, from one cached request', async (t) => {
  const clock = shiftableClock();
  const { client, sb, assertSpec } = await setup(t, { client: { clock } });
  const modelRequests = () => sb.state.requestsTo('GET', '/crm/rest/v2/contacts/model').length;

  assert.equal(await client.getCustomFieldIdByLabel('Password'), String(F.password));
  assert.equal(await client.getCustomFieldIdByLabel('USERNAME'), String(F.username));
  assert.equal(await client.getCustomFieldIdByLabel(' favorite color '), String(F.favoriteColor));
  assert.equal(await client.getCustomFieldIdByLabel(String(F.memberSince)), String(F.memberSince));
  assert.equal(await client.getCustomFieldIdByLabel(F.password), String(F.password));
  assert.equal(await client.getCustomFieldIdByLabel('No Such Field'), undefined);
  const fields = await client.getCustomFields();
  assert.ok(fields.some((f) => f.label === 'Password' && f.id === String(F.password) && f.fieldType === 'TEXT'));
  assert.equal(modelRequests(), 1, 'later look-ups come from the cache');

  // Parallel first look-ups share one request too.
  client.invalidateContactModel();
  await Promise.all([client.getContactModel(), client.getContactModel(), client.getCustomFieldIdByLabel('Password')]);
  assert.equal(modelRequests(), 2, 'invalidating makes the next look-up fetch again, once');

  // A field created in Keap since: a miss refetches, but not more than once a minute.
  sb.state.addCustomField({ label: 'Level' });
  assert.equal(await client.getCustomFieldIdByLabel('Level'), undefined, 'a fresh model is trusted');
  clock.shift(61_000);
  assert.ok(await client.getCustomFieldIdByLabel('Level'), 'an older model is refetched on a miss');
  assert.equal(modelRequests(), 3);

  clock.shift(11 * 60_000);
  await client.getCustomFieldIdByLabel('Password');
  assert.equal(modelRequests(), 4, 'the cache expires after ten minutes');
  assertSpec();
});

test('a custom field written with PATCH is what the next read shows, and the contact\'s other custom fields stay', async (t) => {
  const { client, sb, assertSpec } = await setup(t);
  // Ada has two other custom fields set; a write that lists only the password must leave both.
  assert.equal(sb.state.customFieldValue(C.ada, F.favoriteColor), 'Purple');
  assert.equal(sb.state.customFieldValue(C.ada, F.memberSince), '2024-01-15');
  await client.updateContactCustomFields(C.ada, [{ id: String(F.password), content: 'S3cret-Pass!' }]);
  const ada = await client.getContact(C.ada);
  assert.equal(ada.customFields.find((f) => f.id === String(F.password))?.content, 'S3cret-Pass!');
  assert.equal(ada.customFields.find((f) => f.id === String(F.favoriteColor))?.content, 'Purple');
  assert.equal(ada.customFields.find((f) => f.id === String(F.memberSince))?.content, '2024-01-15');
  assert.equal(ada.givenName, 'Ada');
  assert.equal(sb.state.customFieldValue(C.ada, 'Password'), 'S3cret-Pass!');

  // v1's PATCH ("only the values provided"), with the field's integer id as v1 types it; never v2's, whose
  // custom_fields list replaces the contact's.
  assert.equal(sb.state.requestsTo('PATCH', `/crm/rest/v2/contacts/${C.ada}`).length, 0);
  const patch = sb.state.requestsTo('PATCH', `/crm/rest/v1/contacts/${C.ada}`)[0]!;
  assert.equal(patch.query.update_mask, 'custom_fields');
  assert.deepEqual(patch.body, { custom_fields: [{ id: F.password, content: 'S3cret-Pass!' }] });
  assertSpec();

  await assert.rejects(client.updateContactCustomFields(C.ada, [{ id: 'Password', content: 'x' }]), (e: unknown) => e instanceof KeapPermanentError && /custom field id/.test(e.message));
});

test('contacts changed since a time come oldest change first, a page at a time', async (t) => {
  const { client, sb, assertSpec } = await setup(t);
  const since = new Date(Date.now() - 31 * 3_600_000);
  const first = await client.listContactsChangedSince(since, { limit: 2 });
  assert.equal(first.count, 4);
  assert.deepEqual(first.contacts.map((c) => c.id), [C.ada, C.noEmail]);
  assert.equal(first.nextOffset, 2);
  assert.equal(first.contacts[0]!.email, 'ada@example.com');
  assert.ok(first.contacts[0]!.lastUpdated && Date.parse(first.contacts[0]!.lastUpdated) >= since.getTime());
  const second = await client.listContactsChangedSince(since, { limit: 2, offset: first.nextOffset! });
  assert.deepEqual(second.contacts.map((c) => c.id), [C.grace, C.margaret]);
  assert.equal(second.nextOffset, null);

  const sent = sb.state.requestsTo('GET', '/crm/rest/v1/contacts')[0]!;
  assert.deepEqual(sent.query, { since: since.toISOString(), order: 'last_updated', order_direction: 'ASCENDING', limit: '2', offset: '0' });
  assertSpec();
});

test('createContact sends v1 POST /contacts with EMAIL1 and the names; findContactsByEmail finds it; both match the spec', async (t) => {
  const { client, sb, assertSpec } = await setup(t);
  const created = await client.createContact({ email: 'grace@example.test', givenName: 'Grace', familyName: 'Hopper' });
  assert.ok(created.id > 0);
  assert.deepEqual([created.email, created.givenName, created.familyName], ['grace@example.test', 'Grace', 'Hopper']);
  assert.deepEqual(sb.state.contact(created.id)!.email_addresses, [{ email: 'grace@example.test', field: 'EMAIL1' }]);
  const found = await client.findContactsByEmail('GRACE@example.test');
  assert.deepEqual(found.map((c) => c.id), [created.id]);
  assert.deepEqual(await client.findContactsByEmail('nobody@example.test'), []);
  assertSpec();
});

test('createContact is tried again after a 429 only: after a 5xx or a dropped connection Keap may have created it already', async (t) => {
  const { client, sb } = await setup(t);
  sb.failNext(1, 429);
  const first = await client.createContact({ email: 'a@example.test' });
  assert.deepEqual(sb.state.requestsTo('POST', '/crm/rest/v1/contacts').map((r) => r.status), [429, 201], 'a 429 is refused before any work: sent again');

  sb.failNext(1, 503);
  const err = await client.createContact({ email: 'b@example.test' }).catch((e: unknown) => e);
  assert.ok(err instanceof KeapRetryableError && err.status === 503);
  sb.troubleNext(1, { kind: 'drop', phase: 'after-processing' }, { method: 'POST' });
  const dropped = await client.createContact({ email: 'c@example.test' }).catch((e: unknown) => e);
  assert.ok(dropped instanceof KeapRetryableError && dropped.reason === 'network');
  assert.equal(sb.state.requestsTo('POST', '/crm/rest/v1/contacts').length, 4, 'neither was sent a second time');
  assert.deepEqual((await client.findContactsByEmail('c@example.test')).length, 1, 'the dropped one was created, once');
  assert.ok(first.id > 0);
});

test('testConnection checks the credentials with one cheap call', async (t) => {
  const { client } = await setup(t);
  assert.deepEqual(await client.testConnection(), { ok: true, customFields: 4, authMode: 'key' });
  const wrong = (await setup(t, { client: { apiKey: 'not-the-key' } })).client;
  await assert.rejects(wrong.testConnection(), (err: unknown) => err instanceof KeapPermanentError && err.status === 401);
});

// -------------------------------------------------------------------------------------------------------------------
// Failures

test('a wrong API key is a permanent 401 carrying Keap\'s message, never the key', async (t) => {
  const { client, logs } = await setup(t, { client: { apiKey: 'KeapAK-wrong-key-123456' } });
  const err = await client.getContact(C.ada).then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof KeapPermanentError);
  assert.equal(err.status, 401);
  assert.equal(err.method, 'GET');
  assert.equal(err.path, `/rest/v2/contacts/${C.ada}`);
  assert.match(err.message, /401.*Invalid API key/);
  assert.doesNotMatch(`${err.message} ${err.stack}`, /wrong-key/);
  assert.doesNotMatch(logs.text(), /wrong-key/);
});

test('a gateway fault on 401 and 429 puts its faultstring in the error message, never the credential', async (t) => {
  const key = 'KeapAK-wrong-key-987654';
  const wrong = await setup(t, { sandbox: { gatewayErrors: 'fault' }, client: { apiKey: key } });
  const unauthorized = await wrong.client.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(unauthorized instanceof KeapPermanentError);
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.keapMessage, 'Invalid API key (sandbox.gateway.unauthorized)');
  assert.equal(unauthorized.message, `Keap GET /rest/v2/contacts/${C.ada} failed with 401: Invalid API key (sandbox.gateway.unauthorized)`);
  assert.doesNotMatch(`${unauthorized.message} ${wrong.logs.text()}`, /wrong-key/);

  const { client, sb, logs } = await setup(t, { sandbox: { gatewayErrors: 'fault' }, client: { maxRetries: 0 } });
  // A gateway that quotes the key it was given in its faultstring: the key is scrubbed.
  sb.troubleNext(1, { kind: 'status', status: 429, message: 'Spike arrest violation', echoCredential: true });
  const throttled = await client.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(throttled instanceof KeapRetryableError);
  assert.equal(throttled.throttled, true);
  assert.equal(throttled.keapMessage, 'Spike arrest violation (credential presented: [redacted]) (sandbox.gateway.throttled)');
  assert.match(throttled.message, /failed with 429: Spike arrest violation/);
  assert.doesNotMatch(`${throttled.message} ${logs.text()}`, new RegExp(API_KEY));
});

test('a contact Keap does not have is a permanent notFound error, asked for once', async (t) => {
  const { client, sb } = await setup(t);
  const err = await client.getContact(999_999).catch((e: unknown) => e);
  assert.ok(err instanceof KeapPermanentError);
  assert.equal(err.notFound, true);
  assert.equal(err.status, 404);
  assert.match(err.message, /not found/i);
  assert.equal(sb.state.requestsTo('GET', '/crm/rest/v2/contacts/999999').length, 1, 'no retries for a 404');
  await assert.rejects(client.getContact(0), (e: unknown) => e instanceof KeapPermanentError && e.status === 400);
});

test('two 429s in a row: the client waits out the throttle window each time, then succeeds', async (t) => {
  const { client, sb } = await setup(t);
  sb.failNext(2, 429);
  const started = Date.now();
  const ada = await client.getContact(C.ada);
  const elapsed = Date.now() - started;
  assert.equal(ada.email, 'ada@example.com');
  assert.deepEqual(sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.ada}`).map((r) => r.status), [429, 429, 200]);
  assert.ok(elapsed >= 1_900, `waited about a second after each 429 (took ${elapsed} ms)`);
  assert.ok(elapsed < 4_000, `but not much longer (took ${elapsed} ms)`);
});

test('without retries a 429 is a retryable error with a one second hint, and every call waits it out', async (t) => {
  const { client, sb } = await setup(t, { client: { maxRetries: 0 } });
  sb.failNext(1, 429);
  const err = await client.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(err instanceof KeapRetryableError);
  assert.equal(err.status, 429);
  assert.equal(err.throttled, true);
  assert.ok(err.retryAfterMs >= 900 && err.retryAfterMs <= 1_100, `hint ${err.retryAfterMs} ms`);
  assert.ok(client.limiter.pausedUntil !== null, 'the whole limiter is paused');
  const started = Date.now();
  await client.getContact(C.grace);
  assert.ok(Date.now() - started >= 800, 'another call waited for the pause');
});

test('a 429 for a used-up minute is not slept through inside the call: it fails at once with a minute-long hint', async (t) => {
  // Another program on the same key uses up the minute; our client has seen none of it.
  const { client, sb } = await setup(t, { sandbox: { limits: { perSecond: 10, perMinute: 3 } } });
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${sb.url}/rest/v2/contacts/${C.ada}`, { headers: { 'X-Keap-API-Key': API_KEY } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
  const started = Date.now();
  const err = await client.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(err instanceof KeapRetryableError);
  assert.equal(err.throttled, true);
  assert.ok(err.retryAfterMs > 50_000 && err.retryAfterMs <= 60_100, `hint ${err.retryAfterMs} ms`);
  assert.ok(Date.now() - started < 1_000, 'no inline wait');
  assert.ok(client.limiter.pausedUntil! > Date.now() + 50_000, 'the limiter holds every call for the minute');
  assert.match(client.limiter.pauseReason ?? '', /product throttle/);
  assert.equal(sb.state.statusCounts.get(429), 1, 'one 429, no hammering');
});

test('a Keap 500 is retryable; with retries the call gets through', async (t) => {
  const noRetry = await setup(t, { client: { maxRetries: 0 } });
  noRetry.sb.failNext(1, 500);
  const err = await noRetry.client.getContactTags(C.ada).catch((e: unknown) => e);
  assert.ok(err instanceof KeapRetryableError);
  assert.equal(err.reason, 'server');
  assert.equal(err.status, 500);
  assert.ok(err.retryAfterMs >= 1_000);

  const withRetry = await setup(t);
  withRetry.sb.failNext(1, 503);
  assert.equal((await withRetry.client.getContactTags(C.ada)).length, 3);
  assert.deepEqual(withRetry.sb.state.requests.map((r) => r.status), [503, 200]);
});

test('a Keap that answers too slowly gives a retryable timeout, and a Keap that is down a retryable network error', async (t) => {
  const { client } = await setup(t, { sandbox: { latencyMs: 1_000 }, client: { timeoutMs: 150 } });
  const started = Date.now();
  const err = await client.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(err instanceof KeapRetryableError);
  assert.equal(err.reason, 'timeout');
  assert.equal(err.status, 0);
  assert.match(err.message, /within 150 ms/);
  assert.ok(Date.now() - started < 900, 'gave up at the timeout, not when Keap answered');

  const down = new KeapClient({
    apiUrl: await freePortUrl(),
    apiKey: API_KEY,
    tokenStore: new MemoryKeapTokenStore(),
    rateLimit: { perSecond: 10, perMinute: 240 },
    maxRetries: 0,
    logger: captureLogs().logger,
  });
  const netErr = await down.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(netErr instanceof KeapRetryableError);
  assert.equal(netErr.reason, 'network');
  assert.match(netErr.message, /could not be reached/);
});

// -------------------------------------------------------------------------------------------------------------------
// OAuth

test('OAuth: an exchanged code is stored in the database, both tokens encrypted, and its bearer token works', async (t) => {
  const { client, sb, db, tokens, tokenStore, assertSpec } = await connectOAuth(t);
  const row = db.prepare('SELECT access_token, refresh_token, expires_at, scope FROM keap_oauth_tokens WHERE id = 1').get() as Record<string, string | number>;
  assert.deepEqual({ expires_at: row.expires_at, scope: row.scope }, { expires_at: tokens.expiresAt, scope: 'full' });
  for (const column of ['access_token', 'refresh_token']) {
    assert.match(String(row[column]), /^enc:v1:[A-Za-z0-9_-]+$/, `${column} is sealed with the site key`);
  }
  const stored = JSON.stringify(db.prepare('SELECT * FROM keap_oauth_tokens').all());
  assert.equal(stored.includes(tokens.accessToken) || stored.includes(tokens.refreshToken), false, 'no token is in the database in plaintext');
  assert.deepEqual(tokenStore.load(), tokens);
  assert.ok(tokens.expiresAt > Date.now() + 23 * 3_600_000);
  assert.equal((await client.getContact(C.grace)).email, 'grace@example.com');
  assert.equal(sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.grace}`)[0]!.credential, 'bearer');
  assert.equal(client.authMode, 'oauth');
  assertSpec();
});

test('OAuth: an expired access token is refreshed once on the 401, the call retried, the new pair stored and the old refresh token dead', async (t) => {
  const { client, sb, tokenStore, tokens } = await connectOAuth(t);
  await client.getContact(C.ada);
  sb.expireAccessTokens();
  const before = tokenRequests(sb).length;
  const ada = await client.getContact(C.ada);
  assert.equal(ada.givenName, 'Ada');
  assert.equal(tokenRequests(sb).length - before, 1, 'one refresh');
  assert.deepEqual(sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.ada}`).map((r) => r.status), [200, 401, 200]);

  const stored = tokenStore.load()!;
  assert.notEqual(stored.accessToken, tokens.accessToken);
  assert.notEqual(stored.refreshToken, tokens.refreshToken, 'the refresh token rotated');
  const old = await refreshWith(sb, tokens.refreshToken);
  assert.equal(old.status, 400);
  assert.equal(old.body.error, 'invalid_grant', 'the old refresh token no longer works');
  // The refresh used Basic client credentials (the sandbox refuses anything else) and left the form free of secrets.
  assert.equal(client.oauth?.refreshes, 1);
});

test('OAuth: a refresh slower than the API timeout is still waited for (the rotated pair cannot be asked for twice)', async (t) => {
  const { client, sb, tokenStore, tokens } = await connectOAuth(t, { client: { timeoutMs: 300 } });
  await client.getContact(C.ada);
  sb.expireAccessTokens();
  sb.troubleNext(1, { kind: 'slow', delayMs: 800 }, { method: 'POST', path: '/token' });
  const ada = await client.getContact(C.ada);
  assert.equal(ada.givenName, 'Ada', 'the call went through on the refreshed token');
  assert.notEqual(tokenStore.load()!.refreshToken, tokens.refreshToken, 'the rotated refresh token was kept');
  assert.equal(client.oauth?.refreshes, 1);
});

test('OAuth: ten parallel calls that all get 401 cause exactly one refresh', async (t) => {
  const limits = { perSecond: 50, perMinute: 1_000 };
  const { client, sb } = await connectOAuth(t, { sandbox: { limits }, client: { rateLimit: limits } });
  await client.getContact(C.ada);
  sb.expireAccessTokens();
  const tokensBefore = tokenRequests(sb).length;
  const apiBefore = sb.state.requests.length;
  const contacts = await Promise.all(Array.from({ length: 10 }, () => client.getContact(C.ada)));
  assert.equal(contacts.length, 10);
  assert.ok(contacts.every((c) => c.email === 'ada@example.com'));
  assert.equal(tokenRequests(sb).length - tokensBefore, 1, 'exactly one refresh');
  const after = sb.state.requests.slice(apiBefore).filter((r) => r.path !== '/token');
  assert.equal(after.filter((r) => r.status === 401).length, 10, 'all ten were refused');
  assert.equal(after.filter((r) => r.status === 200).length, 10, 'and all ten retried with the new token');
});

test('OAuth: a token close to expiry is refreshed before the call, without a 401', async (t) => {
  const clock = shiftableClock();
  const { client, sb, tokenStore, tokens } = await connectOAuth(t, { client: { clock } });
  await client.getContact(C.ada);
  assert.equal(tokenRequests(sb).length, 1, 'only the code exchange so far');

  clock.shift(tokens.expiresAt - Date.now() - 4 * 60_000);
  await client.getContact(C.ada);
  await client.getContact(C.grace);
  assert.equal(tokenRequests(sb).length, 2, 'one refresh, ahead of expiry');
  assert.equal(sb.state.requests.filter((r) => r.status === 401).length, 0, 'no call was refused');
  assert.ok(tokenStore.load()!.expiresAt > clock.now() + 23 * 3_600_000);
  assert.notEqual(tokenStore.load()!.refreshToken, tokens.refreshToken);
});

test('OAuth: a refresh token Keap rejects asks for the connection to be re-authorized', async (t) => {
  const { client, sb, tokenStore } = await connectOAuth(t);
  tokenStore.save({ ...tokenStore.load()!, refreshToken: 'revoked-refresh-token', expiresAt: Date.now() - 1_000 });
  sb.expireAccessTokens();
  const err = await client.getContact(C.ada).catch((e: unknown) => e);
  assert.ok(err instanceof KeapReauthorizationRequiredError);
  assert.ok(err instanceof KeapPermanentError, 'a permanent error');
  assert.match(err.message, /re-authorized/);
  assert.doesNotMatch(err.message, /revoked-refresh-token/);

  const notConnected = new KeapClient({
    apiUrl: sb.url,
    oauth: { ...CLIENT, tokenUrl: sb.tokenUrl },
    tokenStore: new MemoryKeapTokenStore(),
    rateLimit: { perSecond: 10, perMinute: 240 },
    logger: captureLogs().logger,
  });
  await assert.rejects(notConnected.getContact(C.ada), (e: unknown) => e instanceof KeapReauthorizationRequiredError && /not connected/.test(e.message));
});

test('secrets never reach the logs, while every call is logged with method, path, status and time', async (t) => {
  const key = await setup(t);
  await key.client.getContact(C.ada);
  const oauth = await connectOAuth(t);
  await oauth.client.getContact(C.ada);
  oauth.sb.expireAccessTokens();
  await oauth.client.getContact(C.ada);
  const stored = oauth.tokenStore.load()!;
  for (const logs of [key.logs, oauth.logs]) {
    const text = logs.text();
    for (const secret of [API_KEY, CLIENT.clientSecret, oauth.tokens.accessToken, oauth.tokens.refreshToken, stored.accessToken, stored.refreshToken]) {
      assert.ok(!text.includes(secret), 'no secret in the logs');
    }
  }
  const call = key.logs.lines().find((l) => l.msg === 'keap call');
  assert.ok(call);
  assert.equal(call.method, 'GET');
  assert.equal(call.path, `/rest/v2/contacts/${C.ada}`);
  assert.equal(call.status, 200);
  assert.equal(typeof call.ms, 'number');
});

// -------------------------------------------------------------------------------------------------------------------
// Rate limits

test('a burst of 100 calls stays within the configured rate: never more per second than allowed, no 429', async (t) => {
  const limits = { perSecond: 20, perMinute: 600 };
  const { client, sb, assertSpec } = await setup(t, { sandbox: { limits }, client: { rateLimit: limits } });
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => client.getContact(i % 2 === 0 ? C.ada : C.grace)));
  const elapsed = Date.now() - started;
  assert.equal(results.length, 100);
  const api = sb.state.requests.filter((r) => r.path.startsWith('/crm/'));
  assert.equal(api.length, 100, 'no request was repeated');
  assert.equal(sb.state.statusCounts.get(429) ?? 0, 0, 'Keap never throttled');
  // Counted as Keap counts: fixed one-second windows by arrival time. (Arrival times, not send times: on a busy
  // machine requests the client spaced out can arrive bunched, so a sliding window here would test the scheduler.)
  const perSecond = new Map<number, number>();
  for (const r of api) perSecond.set(Math.floor(r.time / 1_000), (perSecond.get(Math.floor(r.time / 1_000)) ?? 0) + 1);
  const busiest = Math.max(...perSecond.values());
  assert.ok(busiest <= limits.perSecond, `at most ${limits.perSecond} in any second (saw ${busiest})`);
  assert.ok(elapsed >= 4_000, `100 calls at 20/s take over 4 s (took ${elapsed} ms)`);
  const report = client.lastReported!;
  assert.equal(report.productThrottle[0]?.limit, 600);
  assert.equal(report.tenantThrottle[0]?.limit, 20);
  assertSpec();
});
