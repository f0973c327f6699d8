import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { systemClock } from '../src/core/clock.js';
import { apiRoutes } from '../src/features/api/routes.js';
import { openApiPath } from '../src/features/api/openapi.js';
import { ApiTokenStore } from '../src/features/api/tokens.js';
import { startHarness, TEST_ACCESS_KEY, TEST_API_TOKEN, type Harness } from './support/harness.js';
import { startReceiver, waitUntil, type Receiver } from './support/receiver.js';

/**
 * The OpenAPI document at /api/v1/openapi.json against the running API: every route the router has is described,
 * every operation is called with real requests (answers and errors), and every answer's status and body must be
 * what the document says, checked by a JSON Schema 2020-12 validator.
 */

type JsonObject = Record<string, any>;
const DOC_ID = 'https://memberhook.test/openapi.json';
const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;

let h: Harness;
let receiver: Receiver;
let doc: JsonObject;
let ajv: Ajv2020;
const covered = new Set<string>();
const tokens: Record<'reader' | 'writer' | 'revoked', string> = { reader: '', writer: '', revoked: '' };

before(async () => {
  h = await startHarness({ env: { OUTBOUND_ALLOW_PRIVATE: '1' } });
  receiver = await startReceiver();
  for (const id of [SEED.contacts.ada, SEED.contacts.grace, SEED.contacts.alan, SEED.contacts.noEmail]) await h.post({ wpf_action: 'add', contactId: String(id) });
  await h.settle();
  const store = new ApiTokenStore(h.server.ctx.db, systemClock);
  tokens.reader = store.create('reader', 'read')!.token;
  tokens.writer = store.create('writer', 'members:write')!.token;
  const revoked = store.create('revoked', 'admin')!;
  store.revoke(revoked.record.id);
  tokens.revoked = revoked.token;

  const res = await fetch(`${h.server.url}/api/v1/openapi.json`);
  assert.equal(res.status, 200, 'the document needs no token');
  doc = (await res.json()) as JsonObject;
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormatsModule.default(ajv);
  ajv.addSchema(doc, DOC_ID);
});
after(async () => {
  await h.close();
  await receiver.close();
});

/** `/api/v1/users/12?x=1` → the document's path template it matches, if any. */
function templateOf(path: string): string | undefined {
  const bare = path.split('?')[0]!;
  return Object.keys(doc.paths).find((template) => new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+').replace(/\./g, '\\.')}$`).test(bare));
}

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const validators = new Map<string, ValidateFunction>();
function validatorAt(path: string): ValidateFunction {
  let validate = validators.get(path);
  if (!validate) {
    validate = ajv.compile({ $ref: `${DOC_ID}#/${path}` });
    validators.set(path, validate);
  }
  return validate;
}

interface Call {
  token?: string | null;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

/** Sends a real request and checks its answer against the document; returns status and body. */
async function call(method: string, path: string, options: Call = {}): Promise<{ status: number; body: any }> {
  const token = options.token === undefined ? TEST_API_TOKEN : options.token;
  const headers: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...options.headers };
  let body: string | undefined = options.rawBody;
  if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined) headers['content-type'] ??= 'application/json';
  const res = await fetch(`${h.server.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  const where = `${method} ${path} → ${res.status}`;
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `${where}: a JSON answer`);
  const json = JSON.parse(text);

  const template = templateOf(path);
  assert.ok(template, `${where}: the path is in the document`);
  const lower = method.toLowerCase();
  const operation = doc.paths[template][lower];
  assert.ok(operation, `${where}: the method is in the document`);
  const statusKey = String(res.status) in operation.responses ? String(res.status) : `${String(res.status)[0]}XX`;
  assert.ok(statusKey in operation.responses, `${where}: the status is documented (documented: ${Object.keys(operation.responses).join(', ')})`);
  const validate = validatorAt(pointer('paths', template, lower, 'responses', statusKey, 'content', 'application/json', 'schema'));
  assert.ok(validate(json), `${where}: the body matches the document: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 500)}`);
  if (res.status === 401 || res.status === 403) assert.ok(res.headers.get('www-authenticate'), `${where}: WWW-Authenticate`);
  covered.add(`${lower} ${template} ${statusKey}`);
  return { status: res.status, body: json };
}

/** Whether the document's request body schema for the operation accepts `body`. */
function documentAccepts(method: string, template: string, body: unknown): boolean {
  return validatorAt(pointer('paths', template, method, 'requestBody', 'content', 'application/json', 'schema'))(body) as boolean;
}

test('the document is OpenAPI 3.1 with a bearer scheme, and every schema in it is valid JSON Schema 2020-12', () => {
  assert.equal(doc.openapi, '3.1.0');
  assert.deepEqual(doc.components.securitySchemes.bearerAuth, { ...doc.components.securitySchemes.bearerAuth, type: 'http', scheme: 'bearer' });
  assert.match(doc.info.description, /`read`.*\n.*`members:write`.*\n.*`admin`/s, 'the scopes are described');
  const schemas: unknown[] = Object.values(doc.components.schemas);
  for (const item of Object.values<JsonObject>(doc.paths)) {
    for (const op of Object.values<JsonObject>(item)) {
      for (const p of op.parameters ?? []) schemas.push(p.schema);
      if (op.requestBody) schemas.push(op.requestBody.content['application/json'].schema);
      assert.ok(op.operationId && op.summary && op.responses[200], 'each operation has an id, a summary and its answer');
      assert.ok(Array.isArray(op.security), 'each operation says what it needs');
      if (op.security.length) assert.deepEqual(op.security[0].bearerAuth, [op['x-required-scope']], 'the scope is in the security requirement');
    }
  }
  for (const schema of schemas) assert.ok(ajv.validateSchema(schema as object), `valid JSON Schema: ${ajv.errorsText(ajv.errors)}`);
});

test('every route the API has is in the document, and every operation in the document is a route', () => {
  const router = apiRoutes({ ...h.server.ctx, tokens: new ApiTokenStore(h.server.ctx.db, systemClock) });
  const routes = new Set<string>();
  for (const layer of (router as unknown as { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> }).stack) {
    if (!layer.route) continue;
    for (const [method, on] of Object.entries(layer.route.methods)) if (on && method !== '_all') routes.add(`${method} ${openApiPath(layer.route.path)}`);
  }
  const documented = new Set<string>();
  for (const [path, item] of Object.entries<JsonObject>(doc.paths)) for (const method of METHODS) if (item[method]) documented.add(`${method} ${path}`);
  assert.ok(routes.size >= 8);
  assert.deepEqual([...routes].filter((r) => !documented.has(r)), [], 'routes missing from the document');
  assert.deepEqual([...documented].filter((r) => !routes.has(r)), [], 'documented operations that are no route');
});

test('every answer of every operation, walked with real requests, is what the document says', async () => {
  const users = (await call('GET', '/api/v1/users')).body.users as JsonObject[];
  const id = (email: string) => users.find((u) => u.email === email)!.id as number;
  const [ada, grace, alan] = [id('ada@example.com'), id('grace@example.com'), id('alan@example.com')];

  await call('GET', '/api/v1/openapi.json', { token: null });
  // Listing users, with every filter and paging.
  await call('GET', `/api/v1/users?email=ADA@example.com&role=subscriber&tag=${SEED.tags.vip}&q=a&page=1&per_page=2`, { token: tokens.reader });
  await call('GET', '/api/v1/users?page=0');
  await call('GET', '/api/v1/users?colour=red');
  await call('GET', '/api/v1/users', { token: null });
  await call('GET', '/api/v1/users', { token: 'mh_not-a-token' });
  await call('GET', '/api/v1/users', { token: tokens.revoked });
  // One user.
  await call('GET', `/api/v1/users/${ada}`, { token: tokens.reader });
  await call('GET', '/api/v1/users/999999');
  await call('GET', '/api/v1/users/abc');
  await call('GET', `/api/v1/users/${ada}`, { token: null });
  // Changing a user: every field, bad input, scopes, clashes, the body parser's limits.
  const template = '/api/v1/users/{id}';
  const good = { email: 'ada.l@example.com', username: 'ada', role: 'member', first_name: 'Augusta', last_name: 'King', password: 'a new password 0123' };
  assert.ok(documentAccepts('patch', template, good));
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: good, token: tokens.writer })).status, 200);
  for (const bad of [{ is_admin: true }, { email: 'not-an-email' }, { password: 'short' }, { username: '' }]) {
    assert.equal(documentAccepts('patch', template, bad), false, `the document refuses ${JSON.stringify(bad)}`);
    assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: bad })).status, 400, `the API refuses ${JSON.stringify(bad)}`);
  }
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: { role: 'gold' } })).status, 400);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { rawBody: '{"first_name":' })).status, 400);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { rawBody: JSON.stringify({ first_name: 'x'.repeat(200_000) }) })).status, 413);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: { first_name: 'A' }, headers: { 'content-encoding': 'bogus' } })).status, 415);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: { first_name: 'A' }, token: null })).status, 401);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: { first_name: 'A' }, token: tokens.reader })).status, 403);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: { role: 'administrator' }, token: tokens.writer })).status, 403);
  assert.equal((await call('PATCH', '/api/v1/users/999999', { body: { first_name: 'A' } })).status, 404);
  assert.equal((await call('PATCH', `/api/v1/users/${ada}`, { body: { email: 'GRACE@example.com' } })).status, 409);
  const boss = await h.server.ctx.members.createAdministrator({ email: 'boss@example.com', password: 'admin password 0123' });
  assert.equal((await call('PATCH', `/api/v1/users/${boss.id}`, { body: { role: 'member' } })).status, 409, 'the last administrator keeps admin rights');
  // Deleting.
  assert.equal((await call('DELETE', `/api/v1/users/${alan}`, { token: tokens.writer })).status, 200);
  assert.equal((await call('DELETE', `/api/v1/users/${alan}`)).status, 404);
  assert.equal((await call('DELETE', '/api/v1/users/0')).status, 400);
  assert.equal((await call('DELETE', `/api/v1/users/${grace}`, { token: null })).status, 401);
  assert.equal((await call('DELETE', `/api/v1/users/${grace}`, { token: tokens.reader })).status, 403);
  assert.equal((await call('DELETE', `/api/v1/users/${boss.id}`)).status, 409);

  // Events.
  const events = await call('GET', `/api/v1/events?contact_id=${SEED.contacts.ada}&status=done&action=add&source=http_post&page=1&per_page=5`, { token: tokens.reader });
  assert.equal(events.body.total, 1);
  await call('GET', '/api/v1/events');
  await call('GET', '/api/v1/events?status=exploded');
  await call('GET', '/api/v1/events', { token: null });
  const failed = (await call('GET', '/api/v1/events?status=failed')).body.events[0];
  await call('GET', `/api/v1/events/${failed.id}`, { token: tokens.reader });
  await call('GET', `/api/v1/events/${events.body.events[0].id}`);
  await call('GET', '/api/v1/events/999999');
  await call('GET', '/api/v1/events/x');
  await call('GET', `/api/v1/events/${failed.id}`, { token: null });
  // Replay: done, rejected (400), queued (409), scope, unknown.
  assert.equal((await call('POST', `/api/v1/events/${failed.id}/replay`, { token: tokens.writer })).status, 200);
  await h.settle();
  const refused = await h.post({ wpf_action: 'add', contactId: '101', access_key: `${TEST_ACCESS_KEY}-wrong` });
  assert.equal(refused.status, 403);
  const rejected = (await call('GET', '/api/v1/events?status=rejected')).body.events[0];
  assert.equal((await call('POST', `/api/v1/events/${rejected.id}/replay`)).status, 400);
  await h.server.ctx.worker.stop();
  try {
    const queued = await h.post({ wpf_action: 'update', contactId: String(SEED.contacts.grace) });
    assert.equal((await call('POST', `/api/v1/events/${queued.body.event_id}/replay`)).status, 409);
  } finally {
    h.server.ctx.worker.start();
  }
  assert.equal((await call('POST', `/api/v1/events/${failed.id}/replay`, { token: tokens.reader })).status, 403);
  assert.equal((await call('POST', `/api/v1/events/${failed.id}/replay`, { token: null })).status, 401);
  assert.equal((await call('POST', '/api/v1/events/999999/replay')).status, 404);
  assert.equal((await call('POST', '/api/v1/events/abc/replay')).status, 400);
  await h.settle();

  // Outbound webhooks: connections, destinations, the delivery log (all need the admin scope).
  const refusedWithout = async (method: string, path: string, body?: unknown) => {
    assert.equal((await call(method, path, { token: null, ...(body === undefined ? {} : { body }) })).status, 401);
    assert.equal((await call(method, path, { token: tokens.writer, ...(body === undefined ? {} : { body }) })).status, 403);
  };
  const connectionBody = { name: 'CRM', base_url: `${receiver.url}/hooks`, auth: { type: 'bearer', token: 'crm-token-0123456789' } };
  const created = await call('POST', '/api/v1/outbound/connections', { body: connectionBody });
  assert.equal(created.status, 200);
  assert.match(created.body.signing_secret, /^whsec_/);
  assert.equal(JSON.stringify(created.body.connection).includes('crm-token'), false, 'the token is never shown back');
  const conn = created.body.connection.id as number;
  assert.equal((await call('POST', '/api/v1/outbound/connections', { body: connectionBody })).status, 409);
  const badUrl = await call('POST', '/api/v1/outbound/connections', { body: { ...connectionBody, name: 'x', base_url: 'nope' } });
  assert.equal(badUrl.body.field, 'base_url', JSON.stringify(badUrl.body));
  await refusedWithout('POST', '/api/v1/outbound/connections', connectionBody);
  await call('GET', '/api/v1/outbound/connections');
  await call('GET', '/api/v1/outbound/connections?colour=red');
  await refusedWithout('GET', '/api/v1/outbound/connections');
  for (const [path, missing] of [[`/api/v1/outbound/connections/${conn}`, '/api/v1/outbound/connections/999999'], [`/api/v1/outbound/connections/${conn}/rotate-secret`, '/api/v1/outbound/connections/999999/rotate-secret']] as const) {
    const method = path.endsWith('rotate-secret') ? 'POST' : 'GET';
    assert.equal((await call(method, path, method === 'POST' ? { body: { overlap_hours: 1 } } : {})).status, 200);
    assert.equal((await call(method, missing)).status, 404);
    assert.equal((await call(method, path.replace(`/${conn}`, '/abc'))).status, 400);
    await refusedWithout(method, path);
  }
  assert.ok((await call('GET', `/api/v1/outbound/connections/${conn}`)).body.connection.previous_secret_until, 'the rotation overlaps');
  await call('POST', '/api/v1/outbound/connections', { body: { ...connectionBody, name: 'Other' } });
  const connPath = `/api/v1/outbound/connections/${conn}`;
  assert.equal((await call('PATCH', connPath, { body: { description: 'The CRM', auth: { type: 'bearer' } } })).status, 200);
  assert.equal((await call('PATCH', connPath, { body: { name: 'Other' } })).status, 409);
  assert.equal((await call('PATCH', connPath, { body: { port: 0 } })).body.field, 'port');
  assert.equal((await call('PATCH', '/api/v1/outbound/connections/999999', { body: {} })).status, 404);
  assert.equal((await call('PATCH', connPath, { rawBody: JSON.stringify({ description: 'x'.repeat(200_000) }) })).status, 413);
  await refusedWithout('PATCH', connPath, {});

  const destinationBody = { connection_id: conn, name: 'members', path: '/members', events: ['member.*'] };
  const destination = await call('POST', '/api/v1/outbound/destinations', { body: destinationBody });
  assert.equal(destination.status, 200);
  const dest = destination.body.destination.id as number;
  assert.equal((await call('POST', '/api/v1/outbound/destinations', { body: destinationBody })).status, 409);
  assert.equal((await call('POST', '/api/v1/outbound/destinations', { body: { ...destinationBody, name: 'x', events: ['member.exploded'] } })).body.field, 'events.0');
  await refusedWithout('POST', '/api/v1/outbound/destinations', destinationBody);
  await call('GET', `/api/v1/outbound/destinations?connection_id=${conn}`);
  await call('GET', '/api/v1/outbound/destinations?connection_id=999999');
  await call('GET', '/api/v1/outbound/destinations?connection_id=abc');
  await refusedWithout('GET', '/api/v1/outbound/destinations');
  const destPath = `/api/v1/outbound/destinations/${dest}`;
  await call('GET', destPath);
  await call('GET', '/api/v1/outbound/destinations/999999');
  await call('GET', '/api/v1/outbound/destinations/abc');
  await refusedWithout('GET', destPath);
  await call('POST', '/api/v1/outbound/destinations', { body: { ...destinationBody, name: 'second' } });
  assert.equal((await call('PATCH', destPath, { body: { description: 'Members to the CRM', method: 'PUT' } })).status, 200);
  assert.equal((await call('PATCH', destPath, { body: { name: 'second' } })).status, 409);
  assert.equal((await call('PATCH', destPath, { body: { template: '{{#each}}' } })).body.field, 'template');
  assert.equal((await call('PATCH', '/api/v1/outbound/destinations/999999', { body: {} })).status, 404);
  assert.equal((await call('PATCH', destPath, { rawBody: JSON.stringify({ description: 'x'.repeat(200_000) }) })).status, 413);
  await refusedWithout('PATCH', destPath, {});
  const sent = await call('POST', `${destPath}/test`, { body: { event_type: 'member.created' } });
  assert.equal(sent.body.test.response.status, 200);
  assert.equal(sent.body.test.request.headers.authorization, '[redacted]');
  await call('POST', `${destPath}/test`, { body: { colour: 'red' } });
  await call('POST', '/api/v1/outbound/destinations/999999/test');
  await refusedWithout('POST', `${destPath}/test`);

  // A member change: a delivery to the destination, then its log, a replay and the failed ones' replay.
  await call('PATCH', `/api/v1/users/${grace}`, { body: { first_name: 'Grace B.' } });
  await h.settle();
  await waitUntil(() => h.server.ctx.outboundWebhooks.listDeliveries({ status: 'delivered' }).total > 0);
  const log = await call('GET', `/api/v1/outbound/deliveries?destination_id=${dest}&status=delivered&event_type=member.updated&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&page=1&per_page=5`);
  assert.equal(log.body.total, 1);
  await call('GET', '/api/v1/outbound/deliveries?status=lost');
  await refusedWithout('GET', '/api/v1/outbound/deliveries');
  const deliveryId = log.body.deliveries[0].id as number;
  const detail = await call('GET', `/api/v1/outbound/deliveries/${deliveryId}`);
  assert.equal(detail.body.delivery.attempts_log[0].request.headers.authorization, '[redacted]');
  await call('GET', '/api/v1/outbound/deliveries/999999');
  await call('GET', '/api/v1/outbound/deliveries/abc');
  await refusedWithout('GET', `/api/v1/outbound/deliveries/${deliveryId}`);
  // Disabled, the destination's replayed delivery stays queued: a second replay is refused, whatever the timing.
  await call('PATCH', destPath, { body: { enabled: false } });
  assert.equal((await call('POST', `/api/v1/outbound/deliveries/${deliveryId}/replay`)).status, 200);
  assert.equal((await call('POST', `/api/v1/outbound/deliveries/${deliveryId}/replay`)).status, 409);
  await call('POST', '/api/v1/outbound/deliveries/999999/replay');
  await call('POST', '/api/v1/outbound/deliveries/abc/replay');
  await refusedWithout('POST', `/api/v1/outbound/deliveries/${deliveryId}/replay`);
  const range = { from: '2020-01-01T00:00:00Z', to: '2100-01-01T00:00:00Z' };
  assert.deepEqual((await call('POST', `${destPath}/replay-failed`, { body: range })).body, { replayed: 0 });
  await call('POST', `${destPath}/replay-failed`, { body: { from: 'yesterday' } });
  await call('POST', '/api/v1/outbound/destinations/999999/replay-failed', { body: range });
  await refusedWithout('POST', `${destPath}/replay-failed`, range);
  assert.equal((await call('DELETE', destPath)).status, 200);
  await call('DELETE', destPath);
  await call('DELETE', '/api/v1/outbound/destinations/abc');
  await refusedWithout('DELETE', destPath);
  assert.equal((await call('DELETE', connPath)).status, 200);
  await call('DELETE', connPath);
  await call('DELETE', '/api/v1/outbound/connections/abc');
  await refusedWithout('DELETE', connPath);

  // Every answer the document promises was seen at least once (server errors and body encodings aside).
  const promised: string[] = [];
  for (const [path, item] of Object.entries<JsonObject>(doc.paths)) {
    for (const method of METHODS) {
      for (const status of Object.keys(item[method]?.responses ?? {})) if (!['5XX', '415'].includes(status) && !(status === '413' && method !== 'patch')) promised.push(`${method} ${path} ${status}`);
    }
  }
  assert.deepEqual(promised.filter((p) => !covered.has(p)), [], 'documented answers no request produced');
});
