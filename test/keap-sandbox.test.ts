import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import type { Clock } from '../src/core/clock.js';
import { runKeapSandboxCli, SEED, SEEDED_CONTACTS, startKeapSandbox, trialCommand, THROTTLED_BODY, type KeapSandbox, type KeapSandboxOptions } from '../tools/keap-sandbox/index.js';
import { assertKeapRequestMatchesSpec, assertMatchesKeapSpec, findKeapOperation, validateKeapRequest, validateKeapResponse } from './support/keap-openapi.js';

const API_KEY = 'sandbox-api-key';
const CLIENT = { clientId: 'sandbox-client', clientSecret: 'sandbox-secret' };
const { contacts: C, fields: F, tags: T } = SEED;

/** A clock the test moves by hand, so rate windows and token lifetimes are crossed on purpose, never by chance. */
function manualClock(start = Date.UTC(2025, 0, 15, 10, 30, 0)): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => now, sleep: async () => {}, advance: (ms) => void (now += ms) };
}

async function sandbox(t: TestContext, options: KeapSandboxOptions = {}): Promise<KeapSandbox> {
  const sb = await startKeapSandbox(options);
  t.after(() => sb.close());
  return sb;
}

// Answers are checked against Keap's spec before a test reads them, so reading them loosely is safe.
type Json = any;

interface Answer {
  status: number;
  headers: Headers;
  body: Json;
}

interface CallOptions {
  /** 'key' (default), 'none', or a bearer access token. */
  auth?: 'key' | 'none' | { bearer: string };
  headers?: Record<string, string>;
  body?: unknown;
  /** Check the request and the answer against Keap's spec (default true). */
  spec?: boolean;
}

/** One API call with plain fetch; `path` starts at /rest (e.g. /rest/v2/contacts/101). */
async function keap(sb: KeapSandbox, method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  const auth = options.auth ?? 'key';
  if (auth === 'key') headers['X-Keap-API-Key'] = API_KEY;
  else if (auth !== 'none') headers.authorization = `Bearer ${auth.bearer}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const url = `${sb.url}${path}`;
  if (options.spec !== false) assertKeapRequestMatchesSpec({ method, path: url, body: options.body });
  const res = await fetch(url, { method, headers, ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}) });
  const text = await res.text();
  const body: Json = text === '' ? undefined : JSON.parse(text);
  if (options.spec !== false) assertMatchesKeapSpec({ method, path: url }, res.status, body);
  return { status: res.status, headers: res.headers, body };
}

async function token(sb: KeapSandbox, form: Record<string, string>, basic?: { id: string; secret: string }): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (basic) headers.authorization = `Basic ${Buffer.from(`${basic.id}:${basic.secret}`).toString('base64')}`;
  const res = await fetch(sb.tokenUrl, { method: 'POST', headers, body: new URLSearchParams(form).toString() });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

async function connectWithOAuth(sb: KeapSandbox): Promise<{ access_token: string; refresh_token: string }> {
  const code = sb.issueAuthorizationCode('https://member.example/keap/callback');
  const answer = await token(sb, {
    grant_type: 'authorization_code',
    client_id: CLIENT.clientId,
    client_secret: CLIENT.clientSecret,
    code,
    redirect_uri: 'https://member.example/keap/callback',
  });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body;
}

// ---------------------------------------------------------------------------------------------------------------
// Shapes

test('every contact endpoint answers in the shape Keap publishes', async (t) => {
  // More than Keap's 10 requests a second follow; the limit is not what this test is about.
  const sb = await sandbox(t, { limits: { perSecond: 100 } });
  const calls = [
    `/rest/v2/contacts/${C.ada}`,
    `/rest/v2/contacts/${C.ada}?fields=email_addresses,given_name,family_name,custom_fields,tag_ids`,
    `/rest/v2/contacts/${C.noEmail}?fields=email_addresses,custom_fields,tag_ids`,
    `/rest/v2/contacts/${C.ada}/tags`,
    '/rest/v2/contacts/model',
    '/rest/v1/contacts?since=2000-01-01T00:00:00.000Z&order=last_updated&order_direction=ASCENDING&limit=3&offset=0',
    '/rest/v1/contacts?optional_properties=custom_fields',
    `/rest/v1/contacts/${C.ada}?optional_properties=custom_fields`,
    `/rest/v1/contacts/${C.ada}`,
    `/rest/v1/contacts/${C.ada}/tags`,
    '/rest/v1/contacts/model',
  ];
  for (const path of calls) {
    const answer = await keap(sb, 'GET', path);
    assert.equal(answer.status, 200, `${path}: ${JSON.stringify(answer.body)}`);
  }
});

test('v2 answers ids as strings and v1 as integers, as each spec types them', async (t) => {
  const sb = await sandbox(t);
  const v2 = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}?fields=tag_ids,custom_fields`);
  assert.equal(v2.body.id, '101');
  assert.deepEqual(v2.body.tag_ids, ['91', '93', '97']);
  assert.ok(v2.body.custom_fields.every((f: Json) => typeof f.id === 'string'));
  const v1 = await keap(sb, 'GET', `/rest/v1/contacts/${C.ada}?optional_properties=custom_fields`);
  assert.equal(v1.body.id, 101);
  assert.deepEqual(v1.body.tag_ids, [91, 93, 97]);
  assert.ok(v1.body.custom_fields.every((f: Json) => typeof f.id === 'number'));
});

test('a v2 contact carries only the fields asked for, comma-separated or repeated', async (t) => {
  const sb = await sandbox(t);
  const comma = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}?fields=email_addresses,tag_ids`);
  assert.deepEqual(Object.keys(comma.body).sort(), ['email_addresses', 'id', 'tag_ids']);
  const repeated = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}?fields=email_addresses&fields=tag_ids`);
  assert.deepEqual(repeated.body, comma.body);

  const plain = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`);
  assert.equal(plain.body.custom_fields, undefined, 'custom_fields only when asked for');
  assert.equal(plain.body.tag_ids, undefined, 'tag_ids only when asked for');
  assert.deepEqual(plain.body.email_addresses, [
    { email: 'ada@example.com', field: 'EMAIL1' },
    { email: 'ada.lovelace@example.org', field: 'EMAIL2' },
  ]);

  const unknown = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}?fields=shoe_size`, { spec: false });
  assert.equal(unknown.status, 400);
  assertMatchesKeapSpec({ method: 'GET', path: `/crm/rest/v2/contacts/${C.ada}` }, 400, unknown.body);
  assert.match(unknown.body.message, /shoe_size/);
});

test('the seeded account has Password and Username fields and a contact without an email', async (t) => {
  const sb = await sandbox(t);
  const model = await keap(sb, 'GET', '/rest/v2/contacts/model');
  const labels = new Map<string, Json>(model.body.custom_fields.map((f: Json) => [f.label, f]));
  for (const label of ['Password', 'Username', 'Favorite Color']) {
    assert.equal(labels.get(label)?.field_type, 'TEXT', label);
    assert.equal(labels.get(label)?.record_type, 'CONTACT', label);
  }
  const v1Model = await keap(sb, 'GET', '/rest/v1/contacts/model');
  assert.deepEqual(v1Model.body.custom_fields.find((f: Json) => f.label === 'Password'), { id: F.password, label: 'Password', field_name: 'Password0', field_type: 'Text', record_type: 'CONTACT' });

  const noEmail = await keap(sb, 'GET', `/rest/v2/contacts/${C.noEmail}?fields=email_addresses`);
  assert.deepEqual(noEmail.body.email_addresses, []);
  const grace = await keap(sb, 'GET', `/rest/v2/contacts/${C.grace}?fields=custom_fields`);
  assert.deepEqual(grace.body.custom_fields.find((f: Json) => f.id === String(F.username)), { id: String(F.username), content: 'ghopper' });
  const alan = await keap(sb, 'GET', `/rest/v1/contacts/${C.alan}?optional_properties=custom_fields`);
  assert.deepEqual(alan.body.custom_fields.find((f: Json) => f.id === F.password), { id: F.password, content: 'Enigma-1912' });
  assert.deepEqual(alan.body.custom_fields.find((f: Json) => f.id === F.username), { id: F.username, content: null }, 'an unset field answers null');
});

test('v1 leaves custom_fields out unless optional_properties asks for them', async (t) => {
  const sb = await sandbox(t);
  const plain = await keap(sb, 'GET', `/rest/v1/contacts/${C.alan}`);
  assert.equal(plain.body.custom_fields, undefined);
  const asked = await keap(sb, 'GET', `/rest/v1/contacts/${C.alan}?optional_properties=custom_fields`);
  assert.ok(Array.isArray(asked.body.custom_fields));
});

test('applied tags come in pages with page_size and page_token, categories by id', async (t) => {
  const sb = await sandbox(t);
  const first = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}/tags?page_size=2`);
  assert.deepEqual(
    first.body.tags.map((a: Json) => a.tag.id),
    ['91', '93'],
  );
  assert.deepEqual(first.body.tags[0].tag.category, { id: String(SEED.categories.membership.id) });
  assert.equal(typeof first.body.tags[0].applied_time, 'string');
  assert.equal(typeof first.body.next_page_token, 'string');

  const second = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}/tags?page_size=2&page_token=${encodeURIComponent(first.body.next_page_token)}`);
  assert.deepEqual(
    second.body.tags.map((a: Json) => [a.tag.id, a.tag.name, a.tag.category]),
    [['97', 'Newsletter', undefined]],
  );
  assert.equal(second.body.next_page_token, undefined, 'no token after the last page');

  const v1 = await keap(sb, 'GET', `/rest/v1/contacts/${C.ada}/tags`);
  assert.equal(v1.body.count, 3);
  assert.deepEqual(v1.body.tags[0].tag, { id: T.member, name: 'Member', category: 'Membership' });

  const bad = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}/tags?page_token=nonsense`);
  assert.equal(bad.status, 400);
});

// ---------------------------------------------------------------------------------------------------------------
// Authentication

test('an API key or a bearer token gets in; anything else gets a 401 in Keap\'s error shape', async (t) => {
  const sb = await sandbox(t);
  assert.equal((await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`)).status, 200);

  const none = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { auth: 'none' });
  assert.equal(none.status, 401);
  assert.equal(none.body.code, 401);
  const wrongKey = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { auth: 'none', headers: { 'X-Keap-API-Key': 'KeapAK-not-a-key' } });
  assert.equal(wrongKey.status, 401);
  const v1 = await keap(sb, 'GET', `/rest/v1/contacts/${C.ada}`, { auth: 'none' });
  assert.equal(v1.status, 401);
  assert.equal(typeof v1.body.message, 'string');
  const wrongToken = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { auth: { bearer: 'made-up' } });
  assert.equal(wrongToken.status, 401);

  const tokens = await connectWithOAuth(sb);
  assert.equal((await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { auth: { bearer: tokens.access_token } })).status, 200);

  const kinds = sb.state.requests.filter((r) => r.path.startsWith('/crm/')).map((r) => `${r.credential}:${r.status}`);
  assert.deepEqual(kinds, ['key:200', 'none:401', 'key:401', 'none:401', 'bearer:401', 'bearer:200']);
  const recorded = JSON.stringify(sb.state.requests);
  for (const secret of [API_KEY, 'KeapAK-not-a-key', tokens.access_token, tokens.refresh_token, CLIENT.clientSecret]) {
    assert.ok(!recorded.includes(secret), 'recorded requests never hold a credential');
  }
});

test('with gatewayErrors: fault, the gateway\'s 401s and 429s carry {fault: {faultstring, detail: {errorcode}}}', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { gatewayErrors: 'fault', limits: { perSecond: 1 }, clock });
  const wrongKey = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { auth: 'none', headers: { 'X-Keap-API-Key': 'KeapAK-not-a-key' }, spec: false });
  assert.equal(wrongKey.status, 401);
  assert.deepEqual(wrongKey.body, { fault: { faultstring: 'Invalid API key', detail: { errorcode: 'sandbox.gateway.unauthorized' } } });
  const noCredential = await keap(sb, 'GET', `/rest/v1/contacts/${C.ada}`, { auth: 'none', spec: false });
  assert.equal(typeof noCredential.body.fault.faultstring, 'string', 'v1 too: the gateway stands in front of both');

  assert.equal((await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`)).status, 200);
  const throttled = await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { spec: false });
  assert.equal(throttled.status, 429);
  assert.deepEqual(throttled.body, { fault: { faultstring: 'Quota Exceeded', detail: { errorcode: 'sandbox.gateway.throttled' } } });
  assert.equal(throttled.headers.get('x-keap-tenant-throttle-available'), '0', 'with the throttle headers');

  // The service behind the gateway keeps the spec's error shapes.
  clock.advance(1_000);
  const missing = await keap(sb, 'GET', '/rest/v2/contacts/999999');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 404);
});

test('an unknown contact is a 404 in each version\'s error shape', async (t) => {
  const sb = await sandbox(t);
  for (const path of ['/rest/v2/contacts/999999', '/rest/v2/contacts/999999/tags', '/rest/v1/contacts/999999', '/rest/v1/contacts/999999/tags']) {
    const answer = await keap(sb, 'GET', path);
    assert.equal(answer.status, 404, path);
    assert.match(answer.body.message, /999999/);
  }
  assert.equal(sb.state.statusCounts.get(404), 4);
});

// ---------------------------------------------------------------------------------------------------------------
// OAuth

test('an authorization code is exchanged once for a bearer token', async (t) => {
  const sb = await sandbox(t);
  const redirect = 'https://member.example/keap/callback';
  const code = sb.issueAuthorizationCode(redirect);
  const form = { grant_type: 'authorization_code', client_id: CLIENT.clientId, client_secret: CLIENT.clientSecret, code, redirect_uri: redirect };

  const first = await token(sb, form);
  assert.equal(first.status, 200);
  assert.deepEqual(Object.keys(first.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
  assert.equal(first.body.token_type, 'bearer');
  assert.equal(first.body.expires_in, 86_400);
  assert.equal(first.body.scope, 'full');
  assert.equal(first.headers.get('cache-control'), 'no-store');

  const again = await token(sb, form);
  assert.equal(again.status, 400);
  assert.equal(again.body.error, 'invalid_grant');

  const badClient = await token(sb, { ...form, code: sb.issueAuthorizationCode(redirect), client_secret: 'wrong' });
  assert.equal(badClient.status, 401);
  assert.equal(badClient.body.error, 'invalid_client');

  const otherRedirect = await token(sb, { ...form, code: sb.issueAuthorizationCode(redirect), redirect_uri: 'https://evil.example/' });
  assert.equal(otherRedirect.status, 400);
  assert.equal(otherRedirect.body.error, 'invalid_grant');
});

test('the authorize page approves at once and redirects back with a code and the state', async (t) => {
  const sb = await sandbox(t);
  const redirect = 'http://127.0.0.1:3000/admin/keap/callback';
  const url = `${sb.authorizeUrl}?client_id=${CLIENT.clientId}&redirect_uri=${encodeURIComponent(redirect)}&response_type=code&scope=full&state=xyz`;
  const res = await fetch(url, { redirect: 'manual' });
  assert.equal(res.status, 302);
  const location = new URL(res.headers.get('location') ?? '');
  assert.equal(`${location.origin}${location.pathname}`, redirect);
  assert.equal(location.searchParams.get('state'), 'xyz');
  const answer = await token(sb, {
    grant_type: 'authorization_code',
    client_id: CLIENT.clientId,
    client_secret: CLIENT.clientSecret,
    code: location.searchParams.get('code') ?? '',
    redirect_uri: redirect,
  });
  assert.equal(answer.status, 200);
});

test('a refresh gives a new refresh token and the old one stops working', async (t) => {
  const sb = await sandbox(t);
  const first = await connectWithOAuth(sb);
  const basic = { id: CLIENT.clientId, secret: CLIENT.clientSecret };

  const refreshed = await token(sb, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, basic);
  assert.equal(refreshed.status, 200);
  assert.notEqual(refreshed.body.refresh_token, first.refresh_token);
  assert.notEqual(refreshed.body.access_token, first.access_token);
  assert.equal((await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { auth: { bearer: refreshed.body.access_token } })).status, 200);

  const reused = await token(sb, { grant_type: 'refresh_token', refresh_token: first.refresh_token }, basic);
  assert.equal(reused.status, 400);
  assert.equal(reused.body.error, 'invalid_grant');

  const credentialsInBody = await token(sb, {
    grant_type: 'refresh_token',
    refresh_token: refreshed.body.refresh_token,
    client_id: CLIENT.clientId,
    client_secret: CLIENT.clientSecret,
  });
  assert.equal(credentialsInBody.status, 401, 'Keap wants the client in Authorization: Basic for refreshes');
  assert.equal(credentialsInBody.body.error, 'invalid_client');

  const next = await token(sb, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token }, basic);
  assert.equal(next.status, 200, 'the newest refresh token still works');
});

test('access tokens stop working when they expire, and a refresh brings access back', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, accessTokenTtlSeconds: 60 });
  const tokens = await connectWithOAuth(sb);
  const path = `/rest/v2/contacts/${C.ada}`;
  assert.equal((await keap(sb, 'GET', path, { auth: { bearer: tokens.access_token } })).status, 200);

  clock.advance(61_000);
  const expired = await keap(sb, 'GET', path, { auth: { bearer: tokens.access_token } });
  assert.equal(expired.status, 401);
  assert.match(expired.body.message, /expired/i);

  const refreshed = await token(sb, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { id: CLIENT.clientId, secret: CLIENT.clientSecret });
  assert.equal((await keap(sb, 'GET', path, { auth: { bearer: refreshed.body.access_token } })).status, 200);

  sb.expireAccessTokens();
  assert.equal((await keap(sb, 'GET', path, { auth: { bearer: refreshed.body.access_token } })).status, 401);
  assert.equal((await keap(sb, 'GET', path)).status, 200, 'API keys are not tokens and keep working');
});

// ---------------------------------------------------------------------------------------------------------------
// Rate limits

test('throttle and quota headers count down with each request', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock });
  const path = `/rest/v2/contacts/${C.ada}`;
  const first = (await keap(sb, 'GET', path)).headers;
  const h = (name: string) => first.get(name);
  assert.deepEqual(
    [h('x-keap-product-throttle-limit'), h('x-keap-product-throttle-time-unit'), h('x-keap-product-throttle-interval'), h('x-keap-product-throttle-available'), h('x-keap-product-throttle-used')],
    ['240', 'minute', '1', '239', '1'],
  );
  assert.deepEqual(
    [h('x-keap-product-quota-limit'), h('x-keap-product-quota-time-unit'), h('x-keap-product-quota-interval'), h('x-keap-product-quota-available'), h('x-keap-product-quota-used')],
    ['30000', 'day', '1', '29999', '1'],
  );
  assert.equal(h('x-keap-product-quota-expiry-time'), String(Date.UTC(2025, 0, 16)), 'the daily quota resets at the next 00:00 UTC');
  assert.deepEqual(
    [h('x-keap-tenant-throttle-limit'), h('x-keap-tenant-throttle-time-unit'), h('x-keap-tenant-throttle-interval'), h('x-keap-tenant-throttle-available'), h('x-keap-tenant-throttle-used')],
    ['10', 'second', '1', '9', '1'],
  );

  const second = (await keap(sb, 'GET', path)).headers;
  assert.equal(second.get('x-keap-product-throttle-available'), '238');
  assert.equal(second.get('x-keap-tenant-throttle-available'), '8');
  assert.equal(second.get('x-keap-product-quota-used'), '2');

  clock.advance(1_000);
  const nextSecond = (await keap(sb, 'GET', path)).headers;
  assert.equal(nextSecond.get('x-keap-tenant-throttle-available'), '9', 'a new second starts a new window');
  assert.equal(nextSecond.get('x-keap-product-throttle-available'), '237', 'the minute window keeps counting');
});

test('the request over the per-second limit gets Keap\'s 429, and the next second is free again', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, limits: { perSecond: 3 } });
  const path = `/rest/v2/contacts/${C.ada}`;
  for (let i = 0; i < 3; i += 1) assert.equal((await keap(sb, 'GET', path)).status, 200);

  const throttled = await keap(sb, 'GET', path, { spec: false });
  assert.equal(throttled.status, 429);
  assert.deepEqual(throttled.body, THROTTLED_BODY);
  assert.deepEqual(throttled.body, { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' });
  assert.equal(throttled.headers.get('x-keap-tenant-throttle-available'), '0');
  assert.equal(throttled.headers.get('x-keap-tenant-throttle-used'), '3', 'a refused request does not use quota');
  assert.equal(throttled.headers.get('x-keap-product-throttle-used'), '3');
  // Keap's specs document no 429 at all; the validator says so rather than passing it silently.
  assert.match(validateKeapResponse({ method: 'GET', path: `/crm${path}` }, 429, throttled.body).join(), /429 is not a documented response/);

  assert.equal((await keap(sb, 'GET', path, { spec: false })).status, 429);
  clock.advance(1_000);
  assert.equal((await keap(sb, 'GET', path)).status, 200);
  assert.equal(sb.state.statusCounts.get(429), 2);
});

test('limits are counted per credential and per minute', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, apiKeys: [API_KEY, 'second-key'], limits: { perMinute: 2 } });
  const path = `/rest/v2/contacts/${C.ada}`;
  assert.equal((await keap(sb, 'GET', path)).status, 200);
  clock.advance(1_000);
  assert.equal((await keap(sb, 'GET', path)).status, 200);
  clock.advance(1_000);
  const third = await keap(sb, 'GET', path, { spec: false });
  assert.equal(third.status, 429);
  assert.equal(third.headers.get('x-keap-product-throttle-available'), '0');

  const other = await keap(sb, 'GET', path, { auth: 'none', headers: { 'X-Keap-API-Key': 'second-key' } });
  assert.equal(other.status, 200, 'another key has its own windows');

  clock.advance(60_000);
  assert.equal((await keap(sb, 'GET', path)).status, 200, 'a new minute starts a new window');
});

// ---------------------------------------------------------------------------------------------------------------
// Injected failures and latency

test('failNext answers the next requests with Keap-shaped errors, then Keap recovers', async (t) => {
  const sb = await sandbox(t);
  const path = `/rest/v2/contacts/${C.ada}`;
  sb.failNext(2, 500);
  for (let i = 0; i < 2; i += 1) {
    const failed = await keap(sb, 'GET', path);
    assert.equal(failed.status, 500);
    assert.equal(failed.body.code, 500);
    assert.ok(failed.headers.get('x-keap-product-throttle-used'), 'an upstream failure still passed the gateway');
  }
  assert.equal((await keap(sb, 'GET', path)).status, 200);

  sb.failNext(1, 503);
  const unavailable = await keap(sb, 'GET', path, { spec: false });
  assert.equal(unavailable.status, 503);
  assert.deepEqual(unavailable.body, { code: 503, message: 'Injected failure (sandbox failNext 503)', status: 'UNAVAILABLE' });

  sb.failNext(1, 429);
  const throttled = await keap(sb, 'GET', `/rest/v1/contacts/${C.ada}`, { spec: false });
  assert.equal(throttled.status, 429);
  assert.deepEqual(throttled.body, THROTTLED_BODY);

  sb.failNext(1, 500);
  const v1 = await keap(sb, 'GET', `/rest/v1/contacts/${C.ada}`);
  assert.equal(v1.status, 500);
  assert.equal(typeof v1.body.message, 'string');

  const statuses = sb.state.requests.map((r) => r.status);
  assert.deepEqual(statuses, [500, 500, 200, 503, 429, 500]);
  assert.equal(sb.state.statusCounts.get(500), 3);
});

test('failNext leaves the token endpoint alone', async (t) => {
  const sb = await sandbox(t);
  sb.failNext(1, 503);
  await connectWithOAuth(sb);
  assert.equal((await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`, { spec: false })).status, 503);
});

test('latencyMs delays every API answer', async (t) => {
  const sb = await sandbox(t, { latencyMs: 80 });
  const started = performance.now();
  await keap(sb, 'GET', `/rest/v2/contacts/${C.ada}`);
  assert.ok(performance.now() - started >= 75, 'the answer came too soon');
});

// ---------------------------------------------------------------------------------------------------------------
// Writes

test('a password written with a v1 PATCH is on the next GET, and the other custom fields stay', async (t) => {
  const sb = await sandbox(t);
  const before = sb.state.contacts.get(C.grace)?.last_updated ?? '';
  const body = { custom_fields: [{ id: F.password, content: 'N3w-Passw0rd!' }] };
  const patched = await keap(sb, 'PATCH', `/rest/v1/contacts/${C.grace}?update_mask=custom_fields`, { body });
  assert.equal(patched.status, 200);
  assert.equal(patched.body.custom_fields.find((f: Json) => f.id === F.password).content, 'N3w-Passw0rd!');

  const read = await keap(sb, 'GET', `/rest/v2/contacts/${C.grace}?fields=custom_fields`);
  const byId = new Map(read.body.custom_fields.map((f: Json) => [f.id, f.content]));
  assert.equal(byId.get(String(F.password)), 'N3w-Passw0rd!');
  assert.equal(byId.get(String(F.username)), 'ghopper', 'the other fields are untouched');
  const v1 = await keap(sb, 'GET', `/rest/v1/contacts/${C.grace}?optional_properties=custom_fields`);
  assert.equal(v1.body.custom_fields.find((f: Json) => f.id === F.password).content, 'N3w-Passw0rd!');

  assert.equal(sb.state.customFieldValue(C.grace, 'Password'), 'N3w-Passw0rd!');
  assert.ok((sb.state.contacts.get(C.grace)?.last_updated ?? '') > before, 'last_updated moves forward');
  const recorded = sb.state.requestsTo('PATCH', `/crm/rest/v1/contacts/${C.grace}`)[0];
  assert.deepEqual(recorded?.body, body);
  assert.deepEqual(validateKeapRequest({ method: 'PATCH', path: recorded?.path ?? '', query: recorded?.query ?? {}, body: recorded?.body }), []);
});

test('a v2 PATCH with custom_fields replaces the contact\'s list, as its spec says: fields not listed are removed', async (t) => {
  const sb = await sandbox(t);
  // Ada has Favorite Color and Member Since set.
  const body = { custom_fields: [{ id: String(F.password), content: 'Only-This-1' }] };
  const patched = await keap(sb, 'PATCH', `/rest/v2/contacts/${C.ada}?update_mask=custom_fields`, { body });
  assert.equal(patched.status, 200);
  const byId = new Map(patched.body.custom_fields.map((f: Json) => [f.id, f.content]));
  assert.equal(byId.get(String(F.password)), 'Only-This-1');
  assert.equal(byId.get(String(F.favoriteColor)), null, '"Any item not listed here will be removed if it already exists"');
  assert.equal(byId.get(String(F.memberSince)), null);
  assert.equal(sb.state.customFieldValue(C.ada, F.favoriteColor), undefined);
  assert.equal(sb.state.contacts.get(C.ada)?.given_name, 'Ada', 'the mask still keeps other properties');

  // "If an empty array is specified, all existing values will be removed."
  assert.equal((await keap(sb, 'PATCH', `/rest/v2/contacts/${C.ada}?update_mask=custom_fields`, { body: { custom_fields: [] } })).status, 200);
  assert.equal(sb.state.contacts.get(C.ada)?.custom_fields.size, 0);

  // v1 lists only the values to change: the others stay.
  sb.state.setCustomField(C.grace, F.favoriteColor, 'Green');
  await keap(sb, 'PATCH', `/rest/v1/contacts/${C.grace}?update_mask=custom_fields`, { body: { custom_fields: [{ id: F.password, content: 'x' }] } });
  assert.equal(sb.state.customFieldValue(C.grace, F.favoriteColor), 'Green');
  assert.equal(sb.state.customFieldValue(C.grace, F.username), 'ghopper');
});

test('a PATCH naming an unknown custom field or sending a wrong type changes nothing', async (t) => {
  const sb = await sandbox(t);
  const path = `/rest/v2/contacts/${C.alan}?update_mask=custom_fields`;
  const unknownField = await keap(sb, 'PATCH', path, { body: { custom_fields: [{ id: String(F.password), content: 'x' }, { id: '9999', content: 'y' }] } });
  assert.equal(unknownField.status, 400);
  assert.match(unknownField.body.message, /9999/);
  assert.equal(sb.state.customFieldValue(C.alan, 'Password'), 'Enigma-1912', 'nothing was half-written');

  const numericId = await keap(sb, 'PATCH', path, { body: { custom_fields: [{ id: F.password, content: 'x' }] }, spec: false });
  assert.equal(numericId.status, 400, 'v2 custom field ids are strings');
  assert.match(numericId.body.message, /custom_fields\[0\]\.id/);

  const noBody = await keap(sb, 'PATCH', path, { spec: false });
  assert.equal(noBody.status, 400);

  const v1 = await keap(sb, 'PATCH', `/rest/v1/contacts/${C.alan}`, { body: { custom_fields: [{ id: F.password, content: 'via-v1' }] } });
  assert.equal(v1.status, 200);
  assert.equal(sb.state.customFieldValue(C.alan, 'Password'), 'via-v1');
});

test('a PATCH with update_mask changes only the masked properties', async (t) => {
  const sb = await sandbox(t);
  const body = { given_name: 'Gracie', email_addresses: [{ email: 'hopper@example.net', field: 'EMAIL1' }] };
  const masked = await keap(sb, 'PATCH', `/rest/v2/contacts/${C.grace}?update_mask=given_name`, { body });
  assert.equal(masked.body.given_name, 'Gracie');
  assert.deepEqual(sb.state.contacts.get(C.grace)?.email_addresses, [{ email: 'grace@example.com', field: 'EMAIL1' }]);

  const unmasked = await keap(sb, 'PATCH', `/rest/v2/contacts/${C.grace}`, { body: { ...body, given_name: 'Grace' } });
  assert.equal(unmasked.body.given_name, 'Grace');
  assert.deepEqual(unmasked.body.email_addresses, [{ email: 'hopper@example.net', field: 'EMAIL1' }]);

  const v1 = await keap(sb, 'PATCH', `/rest/v1/contacts/${C.ada}`, { body: { email_addresses: [{ email: 'ada@example.net', field: 'EMAIL1' }] } });
  assert.deepEqual(v1.body.email_addresses, [
    { email: 'ada@example.net', field: 'EMAIL1' },
    { email: 'ada.lovelace@example.org', field: 'EMAIL2' },
  ], 'v1 replaces only the slots it is given');
});

test('contacts changed since a time come oldest change first', async (t) => {
  const sb = await sandbox(t);
  const dayAgo = new Date(Date.now() - 24 * 3_600_000).toISOString();
  const list = async (query: string) => (await keap(sb, 'GET', `/rest/v1/contacts?${query}`)).body;
  const query = `since=${dayAgo}&order=last_updated&order_direction=ASCENDING`;

  const recent = await list(query);
  assert.deepEqual(recent.contacts.map((c: Json) => c.id), [C.noEmail, C.grace, C.margaret]);
  assert.equal(recent.count, 3);

  sb.state.updateContact(C.alan, { given_name: 'Alan M.' });
  const added = sb.state.addContact({ given_name: 'Katherine', family_name: 'Johnson', email: 'katherine@example.com' });
  const after = await list(query);
  assert.deepEqual(after.contacts.map((c: Json) => c.id), [C.noEmail, C.grace, C.margaret, C.alan, added.id]);
  assert.equal(after.contacts[3].given_name, 'Alan M.');
  const stamps = after.contacts.map((c: Json) => Date.parse(c.last_updated));
  assert.deepEqual(stamps, [...stamps].sort((a, b) => a - b));

  const page = await list(`${query}&limit=2&offset=2`);
  assert.deepEqual(page.contacts.map((c: Json) => c.id), [C.margaret, C.alan]);
  assert.equal(page.count, 5, 'count is every match, not the page');
  assert.equal(new URL(page.next).searchParams.get('offset'), '4');

  const since = await list(`since=${encodeURIComponent(after.contacts[3].last_updated)}&order=last_updated&order_direction=ASCENDING`);
  assert.deepEqual(since.contacts.map((c: Json) => c.id), [C.alan, added.id], 'since is inclusive');

  const newestFirst = await list(`since=${dayAgo}&order=last_updated&order_direction=DESCENDING&limit=1`);
  assert.deepEqual(newestFirst.contacts.map((c: Json) => c.id), [added.id]);
});

test('tests can add contacts and find them through the API', async (t) => {
  const sb = await sandbox(t);
  const contact = sb.state.addContact({ given_name: 'Dorothy', email: 'dorothy@example.com', custom_fields: { 'Favorite Color': 'Blue' }, tag_ids: [T.vip] });
  assert.ok(contact.id > C.margaret);
  const read = await keap(sb, 'GET', `/rest/v2/contacts/${contact.id}?fields=given_name,custom_fields,tag_ids`);
  assert.equal(read.body.given_name, 'Dorothy');
  assert.deepEqual(read.body.tag_ids, [String(T.vip)]);
  assert.equal(read.body.custom_fields.find((f: Json) => f.id === String(F.favoriteColor)).content, 'Blue');
  const byEmail = await keap(sb, 'GET', '/rest/v1/contacts?email=DOROTHY@example.com');
  assert.deepEqual(byEmail.body.contacts.map((c: Json) => c.id), [contact.id]);
});

// ---------------------------------------------------------------------------------------------------------------
// The spec check itself must be able to fail

test('the spec check rejects wrong shapes in answers', () => {
  const v2 = { method: 'GET', path: '/crm/rest/v2/contacts/101' };
  assert.deepEqual(validateKeapResponse(v2, 200, { id: '101', tag_ids: ['91'] }), []);
  assert.match(validateKeapResponse(v2, 200, { id: '101', tag_ids: '91' }).join(), /tag_ids must be array/);
  assert.match(validateKeapResponse(v2, 200, { id: 101 }).join(), /\/id must be string/);
  assert.match(validateKeapResponse(v2, 200, { id: '101', tagIds: [] }).join(), /unknown property "tagIds"/);
  assert.match(validateKeapResponse(v2, 200, { id: '101', email_addresses: [{ email: 'a@b.c', field: 'WORK' }] }).join(), /field must be one of/);

  const tags = { method: 'GET', path: '/crm/rest/v2/contacts/101/tags' };
  assert.match(validateKeapResponse(tags, 200, { tags: [{ tag: { id: '1', category: { name: 'x' } } }] }).join(), /must have required property 'id'/);

  const v1 = { method: 'GET', path: '/crm/rest/v1/contacts/101' };
  assert.match(validateKeapResponse(v1, 200, { id: 101, email_addresses: [{ email: 'a@b.c' }] }).join(), /must have required property 'field'/);
  assert.match(validateKeapResponse(v1, 200, { id: 101, last_updated: 'yesterday' }).join(), /last_updated must match format "date-time"/);
  assert.match(validateKeapResponse(v2, 404, { code: '404', message: 'x' }).join(), /code must be integer/);
  assert.match(validateKeapResponse(v2, 418, {}).join(), /418 is not a documented response/);
});

test('the spec check accepts any value as v1 custom field content and nothing looser elsewhere', () => {
  const v1 = { method: 'GET', path: '/crm/rest/v1/contacts/101' };
  for (const content of ['text', 42, null, '2024-01-15', { nested: true }]) {
    assert.deepEqual(validateKeapResponse(v1, 200, { id: 101, custom_fields: [{ id: 12, content }] }), [], JSON.stringify(content));
  }
  assert.match(validateKeapResponse(v1, 200, { id: 101, custom_fields: [{ id: '12', content: 'x' }] }).join(), /id must be integer/);
  assert.match(validateKeapResponse(v1, 200, { id: 101, given_name: 7 }).join(), /given_name must be string/);
  assert.deepEqual(validateKeapResponse(v1, 200, { id: 101, surprise: 1 }, { allowUnknownProperties: true }), [], 'the files as written leave objects open');
});

test('the spec check rejects wrong requests', () => {
  const patch = (query: Record<string, string>, body: unknown) => validateKeapRequest({ method: 'PATCH', path: '/crm/rest/v2/contacts/101', query, body });
  assert.deepEqual(patch({ update_mask: 'custom_fields' }, { custom_fields: [{ id: '12', content: 'x' }] }), []);
  assert.match(patch({ update_mask: 'custom_fields' }, { custom_fields: [{ id: 12, content: 'x' }] }).join(), /custom_fields\/0\/id must be string/);
  assert.match(patch({ update_mask: 'custom_fields' }, { given_name: ['Ada'] }).join(), /given_name must be string/);
  assert.match(patch({ update_mask: 'passwords' }, {}).join(), /update_mask\/0 must be one of/);
  assert.match(patch({ updateMask: 'custom_fields' }, {}).join(), /query parameter updateMask is not a parameter/);
  assert.match(patch({}, undefined).join(), /requires a request body/);

  assert.match(validateKeapRequest({ method: 'GET', path: '/crm/rest/v1/contacts?sinse=2020-01-01' }).join(), /sinse is not a parameter/);
  assert.match(validateKeapRequest({ method: 'GET', path: '/crm/rest/v1/contacts?order=updated' }).join(), /order must be one of/);
  assert.match(validateKeapRequest({ method: 'GET', path: '/crm/rest/v1/contacts/abc' }).join(), /path parameter id must be integer/);
  assert.match(validateKeapRequest({ method: 'GET', path: '/crm/rest/v2/contacts/101', body: {} }).join(), /takes no request body/);
  // v1's update_mask enum sits on the array in the file; it is checked on the items.
  assert.deepEqual(validateKeapRequest({ method: 'PATCH', path: '/crm/rest/v1/contacts/101?update_mask=custom_fields', body: {} }), []);
  assert.match(validateKeapRequest({ method: 'PATCH', path: '/crm/rest/v1/contacts/101?update_mask=password', body: {} }).join(), /update_mask\/0 must be one of/);
});

test('the spec check matches literal paths before templates and refuses paths Keap does not have', () => {
  assert.equal(findKeapOperation('GET', '/crm/rest/v2/contacts/model').operationId, 'retrieveContactModel');
  assert.equal(findKeapOperation('GET', 'https://api.infusionsoft.com/crm/rest/v2/contacts/101').specPath, '/rest/v2/contacts/{contact_id}');
  assert.deepEqual(findKeapOperation('GET', '/crm/rest/v1/contacts/7/tags/').pathParams, { contactId: '7' });
  assert.throws(() => findKeapOperation('GET', '/crm/rest/v2/contact/101'), /No operation/);
  assert.throws(() => findKeapOperation('PUT', '/crm/rest/v2/contacts/101'), /No operation/);
  assert.throws(() => validateKeapResponse({ method: 'POST', path: '/token' }, 200, {}), /Not a Keap REST path/);
});

// ---------------------------------------------------------------------------------------------------------------
// The command

test('npm run keap-sandbox prints how to point memberhook at it and stops on SIGINT', async () => {
  const output: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const listenersBefore = { SIGINT: new Set(process.listeners('SIGINT')), SIGTERM: new Set(process.listeners('SIGTERM')) };
  process.stdout.write = ((chunk: string | Uint8Array) => {
    output.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    await runKeapSandboxCli({ KEAP_SANDBOX_PORT: '0' });
  } finally {
    process.stdout.write = write;
  }
  const text = output.join('');
  const url = /listening on (http:\/\/127\.0\.0\.1:\d+\/crm)/.exec(text)?.[1];
  assert.ok(url, text);
  assert.ok(text.includes(trialCommand(url).map((line) => `  ${line}`).join('\n')), 'it prints the command that starts memberhook against it');
  // The README's trial gives the same command, for the sandbox's default port.
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(trialCommand('http://127.0.0.1:4010/crm').join('\n')), "the README's trial starts memberhook the way the sandbox says");
  for (const c of SEEDED_CONTACTS) assert.match(text, new RegExp(`  ${c.id}  `), `it lists contact ${c.id}`);
  assert.match(text, /sandbox-client/);
  assert.match(text, /sandbox-secret/);
  assert.ok(text.includes(`REST hooks:               ${url}/rest/v1/hooks`), 'it names the REST hooks endpoint');
  const res = await fetch(`${url}/rest/v2/contacts/${C.ada}`, { headers: { 'X-Keap-API-Key': API_KEY } });
  assert.equal(res.status, 200);

  const stopped = new Promise<void>((resolve) => {
    process.stdout.write = ((chunk: string | Uint8Array) => {
      if (String(chunk).includes('stopped')) resolve();
      return true;
    }) as typeof process.stdout.write;
  });
  // Call only the handlers the command installed, rather than emitting SIGINT at the whole test process.
  const added = (signal: 'SIGINT' | 'SIGTERM') => process.listeners(signal).filter((l) => !listenersBefore[signal].has(l));
  const [onSigint] = added('SIGINT');
  assert.equal(added('SIGTERM').length, 1, 'SIGTERM stops it too');
  assert.ok(onSigint);
  try {
    onSigint('SIGINT');
    await stopped;
  } finally {
    process.stdout.write = write;
    for (const signal of ['SIGINT', 'SIGTERM'] as const) for (const l of added(signal)) process.removeListener(signal, l);
  }
  await assert.rejects(fetch(`${url}/rest/v2/contacts/${C.ada}`, { headers: { 'X-Keap-API-Key': API_KEY } }));
});

test('`npm run keap-sandbox` (the package script) starts the sandbox and stops on SIGTERM', async () => {
  // In a process group of its own: npm runs the script through a shell and tsx, and the signal must reach them all.
  const child = spawn('npm', ['run', '-s', 'keap-sandbox'], { env: { ...process.env, KEAP_SANDBOX_PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no sandbox within 20 s:\n${out}`)), 20_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+\/crm)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`npm run keap-sandbox exited with ${code}:\n${out}`)));
  });
  try {
    const res = await fetch(`${url}/rest/v2/contacts/${C.ada}`, { headers: { 'X-Keap-API-Key': API_KEY } });
    assert.equal(res.status, 200);
  } finally {
    const closed = new Promise((resolve) => child.once('close', resolve));
    process.kill(-child.pid!, 'SIGTERM');
    await closed;
  }
});

test('v1 creates a contact (an email required), applies and removes tags, each answer as the spec types it', async (t) => {
  const sb = await sandbox(t);
  const created = await keap(sb, 'POST', '/rest/v1/contacts', {
    body: { given_name: 'Katherine', family_name: 'Johnson', email_addresses: [{ email: 'katherine@nasa.example', field: 'EMAIL1' }], custom_fields: [{ id: F.username, content: 'kjohnson' }] },
  });
  assert.equal(created.status, 201);
  const id = created.body.id as number;
  assert.equal(sb.state.contacts.get(id)?.email_addresses[0]?.email, 'katherine@nasa.example');
  assert.equal(sb.state.customFieldValue(id, 'Username'), 'kjohnson');
  const noEmail = await keap(sb, 'POST', '/rest/v1/contacts', { body: { given_name: 'Nobody' }, spec: false });
  assert.equal(noEmail.status, 400);
  assert.match(noEmail.body.message, /at least one email address or phone number/);

  const applied = await keap(sb, 'POST', `/rest/v1/contacts/${id}/tags`, { body: { tagIds: [T.member, T.vip, 999_999] } });
  assert.equal(applied.status, 200);
  assert.deepEqual(applied.body, [{ key: 'SUCCESS' }, { key: 'SUCCESS' }, { key: 'TAG_ID_NOT_FOUND' }]);
  assert.deepEqual((await keap(sb, 'POST', `/rest/v1/contacts/${id}/tags`, { body: { tagIds: [T.vip] } })).body, [{ key: 'DUPLICATE' }]);
  assert.deepEqual([...sb.state.contacts.get(id)!.tag_ids].sort(), [T.member, T.vip].sort());

  const removed = await keap(sb, 'DELETE', `/rest/v1/contacts/${id}/tags?ids=${T.vip}%2C${T.newsletter}`);
  assert.equal(removed.status, 204);
  assert.deepEqual(sb.state.contacts.get(id)!.tag_ids, [T.member]);
  assert.equal((await keap(sb, 'DELETE', `/rest/v1/contacts/${id}/tags/${T.member}`)).status, 204);
  assert.deepEqual(sb.state.contacts.get(id)!.tag_ids, []);
  assert.equal((await keap(sb, 'POST', `/rest/v1/contacts/${id}/tags`, { body: { tagIds: [] }, spec: false })).status, 400, 'no tag ids');
  assert.equal((await keap(sb, 'DELETE', '/rest/v1/contacts/999999/tags?ids=91')).status, 404);
});

// ---------------------------------------------------------------------------------------------------------------
// Lists an import reads (tags, tagged contacts, contacts by page and by ids)

test('tags and tagged contacts list in v1 pages with count and next, as the spec types them', async (t) => {
  const sb = await sandbox(t, { limits: { perSecond: 100 } });
  const tags = await keap(sb, 'GET', '/rest/v1/tags?limit=2&offset=0');
  assert.equal(tags.body.count, 4);
  assert.deepEqual(tags.body.tags[0], { id: T.member, name: 'Member', description: 'Has site access', category: { id: 10, name: 'Membership' } });
  assert.equal(tags.body.tags.length, 2);
  assert.match(tags.body.next, /offset=2/);
  const rest = await keap(sb, 'GET', '/rest/v1/tags?limit=2&offset=2');
  assert.deepEqual(rest.body.tags.map((tag: Json) => tag.id), [T.paymentFailed, T.newsletter]);

  const tagged = await keap(sb, 'GET', `/rest/v1/tags/${T.member}/contacts?limit=1`);
  assert.equal(tagged.body.count, 3, 'Ada, Grace and Alan carry Member');
  assert.deepEqual(tagged.body.contacts[0].contact, { id: C.ada, email: 'ada@example.com', first_name: 'Ada', last_name: 'Lovelace' });
  assert.equal(typeof tagged.body.contacts[0].date_applied, 'string');
  assert.equal((await keap(sb, 'GET', '/rest/v1/tags/999/contacts')).status, 404);
  assert.equal((await keap(sb, 'GET', '/rest/v1/contacts?limit=1')).body.count, 5);
});

test('v2 lists contacts with a tag and all contacts in pages with page_size and page_token', async (t) => {
  const sb = await sandbox(t, { limits: { perSecond: 100 } });
  const first = await keap(sb, 'GET', `/rest/v2/tags/${T.member}/contacts?order_by=applied_time%20asc&page_size=1`);
  assert.equal(first.body.contacts.length, 1);
  assert.equal(typeof first.body.contacts[0].id, 'string');
  assert.equal(typeof first.body.contacts[0].applied_time, 'string');
  const second = await keap(sb, 'GET', `/rest/v2/tags/${T.member}/contacts?page_size=2&page_token=${encodeURIComponent(first.body.next_page_token)}`);
  assert.equal(second.body.contacts.length, 2);
  assert.equal(second.body.next_page_token, undefined, 'no token after the last page');
  assert.deepEqual([first.body.contacts[0].id, ...second.body.contacts.map((c: Json) => c.id)].sort(), [C.ada, C.grace, C.alan].map(String));

  const fields = 'email_addresses,given_name,family_name,custom_fields,tag_ids';
  const all: Json[] = [];
  let pageToken: string | undefined;
  do {
    const page = await keap(sb, 'GET', `/rest/v2/contacts?fields=${fields}&order_by=id%20asc&page_size=2${pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : ''}`);
    all.push(...page.body.contacts);
    pageToken = page.body.next_page_token;
  } while (pageToken);
  assert.deepEqual(all.map((c) => c.id), [C.ada, C.grace, C.alan, C.noEmail, C.margaret].map(String));
  assert.deepEqual(all[0].tag_ids, [T.member, T.vip, T.newsletter].map(String));

  const byIds = await keap(sb, 'GET', `/rest/v2/contacts?filter=${encodeURIComponent(`ids==${C.margaret},${C.ada}`)}&fields=${fields}&page_size=2`);
  assert.deepEqual(byIds.body.contacts.map((c: Json) => c.id), [String(C.ada), String(C.margaret)]);
  assert.equal(byIds.body.next_page_token, undefined);

  const unknown = await keap(sb, 'GET', `/rest/v2/contacts?filter=${encodeURIComponent('city==Chandler')}`, { spec: false });
  assert.equal(unknown.status, 501, 'a filter the sandbox does not implement says so instead of answering everything');
});

test('tagged contacts and orders are listed by v2 filter times, paged, each answer as the spec types it; a filter Keap would not read is a 400', async (t) => {
  const clock = manualClock();
  const sb = await sandbox(t, { clock, limits: { perSecond: 100 } });
  const iso = (ms: number) => new Date(ms).toISOString();
  const before = clock.now();
  clock.advance(60_000);
  sb.state.applyTag(C.grace, T.vip);
  clock.advance(60_000);
  sb.state.applyTag(C.margaret, T.vip);
  const order = sb.state.addOrder({ contact_id: C.ada, title: 'Annual membership', total: 9_900 });
  clock.advance(60_000);
  sb.state.updateOrder(order.id, { status: 'PAID' });
  const other = sb.state.addOrder({ contact_id: C.grace });

  const tagged = async (filter: string, extra = '') => keap(sb, 'GET', `/rest/v2/tags/${T.vip}/contacts?filter=${encodeURIComponent(filter)}${extra}`);
  const since = await tagged(`since_applied_time==${iso(before)};until_applied_time==${iso(clock.now())};`);
  assert.equal(since.status, 200, JSON.stringify(since.body));
  assert.deepEqual(since.body.contacts.map((c: Json) => c.id), [String(C.grace), String(C.margaret)], 'applied in the window, oldest first; Ada had VIP long before');
  assert.equal(since.body.contacts[0].email, 'grace@example.com');
  const firstPage = await tagged(`since_applied_time==${iso(before)}`, '&page_size=1&order_by=applied_time%20asc');
  assert.deepEqual(firstPage.body.contacts.map((c: Json) => c.id), [String(C.grace)]);
  const secondPage = await tagged(`since_applied_time==${iso(before)}`, `&page_size=1&page_token=${firstPage.body.next_page_token}`);
  assert.deepEqual(secondPage.body.contacts.map((c: Json) => c.id), [String(C.margaret)]);
  assert.equal(secondPage.body.next_page_token, undefined, 'the last page has no token');
  const onlyUntil = await tagged(`until_applied_time==${iso(before)}`);
  assert.deepEqual(onlyUntil.body.contacts.map((c: Json) => c.id), [String(C.ada)]);

  const orders = async (filter: string, extra = '') => keap(sb, 'GET', `/rest/v2/orders?filter=${encodeURIComponent(filter)}${extra}`);
  const changed = await orders(`modified_since_time==${iso(before + 90_000)}`, '&order_by=modification_time%20asc');
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.deepEqual(changed.body.orders.map((o: Json) => [o.id, o.status, o.contact.id]), [[String(order.id), 'PAID', String(C.ada)], [String(other.id), 'DRAFT', String(C.grace)]]);
  assert.deepEqual(changed.body.orders[0].total, { amount: 9_900, currency_code: 'USD', formatted_amount: '$99.00' });
  const window = await orders(`modified_since_time==${iso(before)};modified_until_time==${iso(before + 90_000)}`);
  assert.deepEqual(window.body.orders, [], 'the paid order was modified after the window');
  assert.deepEqual((await orders(`contact_id==${C.grace}`)).body.orders.map((o: Json) => o.id), [String(other.id)]);

  for (const [call, message] of [
    [() => tagged('since_applied_time==yesterday'), /since_applied_time must be a full ISO 8601 date-time/],
    [() => tagged(`applied_after==${iso(before)}`), /applied_after is not a filter field here/],
    [() => tagged(`since_applied_time>${iso(before)}`), /does not take the > operator/],
    [() => tagged('given_name'), /is not field==value/],
    [() => orders('paid==maybe'), /paid must be true or false/],
    [() => orders('modified_since_time==2025-13-45T99:00:00Z'), /modified_since_time must be a full ISO 8601/],
  ] as const) {
    const answer = await call();
    assert.equal(answer.status, 400);
    assert.match(answer.body.message, message);
    assert.equal(answer.body.status, 'INVALID_ARGUMENT');
  }
  assert.equal((await keap(sb, 'GET', '/rest/v2/tags/999/contacts')).status, 404);
});
