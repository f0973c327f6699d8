import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { once } from 'node:events';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { buildContext } from '../src/server.js';
import type { AppContext } from '../src/server.js';
import { captureLogs } from './support/logs.js';
import { tempDataDir, NO_PLUGINS_DIR } from './support/temp.js';

const KEY = 'receiver-test-key-0123456789-abcdefghij';
let ctx: AppContext;
let app: RequestListener;
let logs: ReturnType<typeof captureLogs>;

before(async () => {
  logs = captureLogs();
  ctx = await receiverSite({ WEBHOOK_REJECTION_LIMIT: '1000' });
  // The worker stays off: these tests are about what the receiver answers and records.
  app = createApp(ctx);
});
after(() => ctx.db.close());

function receiverSite(env: Record<string, string>): Promise<AppContext> {
  return buildContext(loadConfig({ DATA_DIR: tempDataDir(), PLUGINS_DIR: NO_PLUGINS_DIR, ACCESS_KEY: KEY, KEAP_API_URL: 'http://127.0.0.1:9/crm', KEAP_API_KEY: 'unused-key', ...env }), {
    logger: logs.logger,
    console: () => {},
  });
}

const lastEvent = () => ctx.db.prepare('SELECT * FROM events ORDER BY id DESC LIMIT 1').get() as Record<string, unknown> | undefined;
const eventCount = () => ctx.db.prepare('SELECT count(*) FROM events').pluck().get() as number;

test('an accepted form post is one durable queued row and a 200 naming it', async () => {
  const res = await request(app).post('/').type('form').send({ contactId: '101', wpf_action: 'add', access_key: KEY, send_notification: 'true', role: 'member', Email: 'x@example.com' });
  assert.equal(res.status, 200);
  assert.equal(res.body.ok, true);
  assert.equal(res.body.status, 'queued');
  const row = ctx.events.get(res.body.event_id)!;
  assert.equal(row.status, 'queued');
  assert.equal(row.action, 'add');
  assert.equal(row.contactId, 101);
  assert.equal(row.source, 'http_post');
  assert.deepEqual([row.objectType, row.objectId, row.eventType], ['contact', '101', 'contact.add']);
  assert.deepEqual(row.params, { contact_id: 101, Email: 'x@example.com', send_notification: true, role: 'member' });
});

test('/webhooks/keap takes the same post; the query string works and the body wins on conflict', async () => {
  const res = await request(app).post(`/webhooks/keap?wpf_action=update&contact_id=5&access_key=${KEY}`).type('form').send({ contact_id: '202' });
  assert.equal(res.status, 200);
  const row = ctx.events.get(res.body.event_id)!;
  assert.equal(row.action, 'update');
  assert.equal(row.contactId, 202);
});

test('a JSON body is accepted, numbers and booleans included', async () => {
  const res = await request(app).post('/webhooks/keap').send({ wpf_action: 'update_tags', contactId: 303, access_key: KEY, send_notification: false });
  assert.equal(res.status, 200);
  assert.equal(ctx.events.get(res.body.event_id)!.action, 'update_tags');
});

test('identical posts while the first is still queued share one job', async () => {
  const post = () => request(app).post('/').type('form').send({ contactId: '404', wpf_action: 'add', access_key: KEY });
  const answers = await Promise.all(Array.from({ length: 20 }, post));
  const ids = new Set(answers.map((r) => r.body.event_id));
  assert.ok(answers.every((r) => r.status === 200));
  assert.equal(ids.size, 1);
  assert.equal(ctx.events.get([...ids][0])!.coalesced, 19);
});

test('test answers ok without recording anything', async () => {
  const before = eventCount();
  const res = await request(app).post('/').type('form').send({ wpf_action: 'test', access_key: KEY });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { ok: true, test: true });
  assert.equal(eventCount(), before);
});

test('a wrong or missing access key is a 403 that never says which part was wrong, recorded without the key', async () => {
  for (const key of ['wrong-key', '', undefined, KEY.slice(0, -1), `${KEY}x`]) {
    const body: Record<string, string> = { contactId: '1', wpf_action: 'add' };
    if (key !== undefined) body.access_key = key;
    const res = await request(app).post('/webhooks/keap').type('form').send(body);
    assert.equal(res.status, 403);
    assert.deepEqual(res.body, { ok: false, error: 'invalid access key' });
    const row = lastEvent()!;
    assert.equal(row.status, 'rejected');
    assert.equal(row.last_error, 'invalid access key');
    if (key) assert.equal(String(row.params).includes(key), false, 'the sent key is not stored');
  }
  // Even a nonsense action and id get the same 403 without a key: nothing is revealed before authentication.
  const res = await request(app).post('/').type('form').send({ wpf_action: 'drop_tables', contactId: 'x' });
  assert.deepEqual([res.status, res.body.error], [403, 'invalid access key']);
});

test('bad input is a 400 naming what was wrong, recorded as rejected, and queues nothing', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ contactId: '1' }, /missing wpf_action: expected one of add, update, update_tags, test/],
    [{ wpf_action: 'delete', contactId: '1' }, /unknown wpf_action "delete": expected one of add, update, update_tags, test/],
    [{ wpf_action: 'add' }, /missing contactId/],
    [{ wpf_action: 'add', contactId: '0' }, /contactId must be a positive whole number, got "0"/],
    [{ wpf_action: 'add', contactId: '12abc' }, /contactId must be a positive whole number/],
    [{ wpf_action: 'add', contactId: '-5' }, /contactId must be a positive whole number/],
    [{ wpf_action: 'add', contactId: '1', contact_id: '2' }, /contactId and contact_id disagree/],
    [{ wpf_action: 'add', contactId: '1', send_notification: 'maybe' }, /send_notification must be true or false/],
    [{ wpf_action: 'add', contactId: '1', role: 'gold' }, /role "gold" does not exist/],
    [{ wpf_action: 'add', contactId: '1', role: 'administrator' }, /role "administrator" cannot be assigned by webhook/],
  ];
  for (const [params, expected] of cases) {
    const queuedBefore = ctx.db.prepare("SELECT count(*) FROM events WHERE status = 'queued'").pluck().get();
    const res = await request(app).post('/').type('form').send({ ...params, access_key: KEY });
    assert.equal(res.status, 400, JSON.stringify(params));
    assert.equal(res.body.ok, false);
    assert.match(res.body.error, expected);
    assert.equal(lastEvent()!.status, 'rejected');
    assert.match(String(lastEvent()!.last_error), expected);
    assert.equal(ctx.db.prepare("SELECT count(*) FROM events WHERE status = 'queued'").pluck().get(), queuedBefore);
  }
});

test('repeated parameters and non-object JSON are refused, not guessed at', async () => {
  const repeated = await request(app).post(`/?contactId=1&contactId=2&wpf_action=add&access_key=${KEY}`);
  assert.equal(repeated.status, 400);
  assert.match(repeated.body.error, /contactId was given more than once/);
  const array = await request(app).post('/webhooks/keap').set('content-type', 'application/json').send('[1,2]');
  assert.equal(array.status, 400);
  assert.match(array.body.error, /must be form fields or a JSON object/);
});

test('malformed JSON is a 400 and a body over 1 MB is a 413', async () => {
  const bad = await request(app).post('/webhooks/keap').set('content-type', 'application/json').send('{"wpf_action": "add",');
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.body, { ok: false, error: 'malformed JSON body' });
  const huge = await request(app).post('/webhooks/keap').type('form').send({ wpf_action: 'add', contactId: '1', access_key: KEY, junk: 'x'.repeat(1_100_000) });
  assert.equal(huge.status, 413);
  assert.equal(huge.body.ok, false);
});

test('a GET carrying wpf_action does nothing (405 on /webhooks/keap)', async () => {
  const before = eventCount();
  const res = await request(app).get(`/webhooks/keap?wpf_action=add&contactId=1&access_key=${KEY}`);
  assert.equal(res.status, 405);
  assert.equal(res.headers.allow, 'POST');
  const root = await request(app).get(`/?wpf_action=add&contactId=1&access_key=${KEY}`);
  assert.equal(root.status, 405);
  assert.equal(eventCount(), before);
});

test('rejections from one address are limited; accepted posts never are', async () => {
  const limitedCtx = await receiverSite({ WEBHOOK_REJECTION_LIMIT: '5', WEBHOOK_REJECTION_WINDOW_MS: '60000' });
  after(() => limitedCtx.db.close());
  const limited = createApp(limitedCtx);
  for (let i = 0; i < 40; i++) {
    const ok = await request(limited).post('/').type('form').send({ wpf_action: 'update', contactId: String(1000 + i), access_key: KEY });
    assert.equal(ok.status, 200, 'a burst of valid posts is never throttled');
  }
  // Keap sends its bursts over many connections at once: fifty accepted posts in flight together are not refusals.
  const parallel = await Promise.all(
    Array.from({ length: 50 }, (_, i) => request(limited).post('/').type('form').send({ wpf_action: 'update', contactId: String(2000 + i), access_key: KEY })),
  );
  assert.deepEqual(new Set(parallel.map((r) => r.status)), new Set([200]));
  for (let i = 0; i < 5; i++) assert.equal((await request(limited).post('/').type('form').send({ wpf_action: 'add', contactId: '1', access_key: 'guess' })).status, 403);
  const blocked = await request(limited).post('/').type('form').send({ wpf_action: 'add', contactId: '1', access_key: 'guess' });
  assert.equal(blocked.status, 429);
  assert.equal(blocked.body.ok, false);
  assert.match(blocked.body.error, /too many rejected requests/);
  assert.ok(Number(blocked.headers['retry-after']) > 0);
  const keyed = await request(limited).post('/').type('form').send({ wpf_action: 'update', contactId: '1', access_key: KEY });
  assert.equal(keyed.status, 200, 'a post with the right key from that address is still taken');
});

test('past the refusal limit, posts with the right key still go through on both readers; only keyless ones wait', async () => {
  const limitedCtx = await receiverSite({ WEBHOOK_REJECTION_LIMIT: '3', WEBHOOK_REJECTION_WINDOW_MS: '60000' });
  after(() => limitedCtx.db.close());
  const server = createServer(createApp(limitedCtx)).listen(0, '127.0.0.1');
  await once(server, 'listening');
  after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/keap`;
  const { gzipSync } = await import('node:zlib');
  // The fast path reads a plain form; express reads the same form gzipped.
  const post = async (fields: string, reader: 'fast' | 'express') => {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (reader === 'express') headers['content-encoding'] = 'gzip';
    const res = await fetch(url, { method: 'POST', headers, body: reader === 'express' ? gzipSync(fields) : fields });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> };
  };
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await post('wpf_action=add&contactId=1&access_key=guess', i % 2 ? 'express' : 'fast')).status);
  for (const reader of ['fast', 'express'] as const) {
    const valid = await post(`wpf_action=update&contactId=7&access_key=${KEY}`, reader);
    statuses.push(valid.status);
    assert.equal(valid.body.ok, true, `${reader}: the campaign's post is queued`);
    const badInput = await post(`wpf_action=add&contactId=abc&access_key=${KEY}`, reader);
    assert.equal(badInput.status, 400, `${reader}: a keyed post with bad input is told what was wrong, not to wait`);
    for (const keyless of ['wpf_action=add&contactId=1&access_key=guess', 'wpf_action=add&contactId=1', '%']) {
      const held = await post(keyless, reader);
      assert.equal(held.status, 429, `${reader}: ${keyless} waits`);
      assert.ok(Number(held.retryAfter) > 0);
      assert.match(String(held.body.error), /too many rejected requests/);
    }
  }
  assert.deepEqual(statuses.slice(0, 4), [403, 403, 403, 200]);
  const rejectedRows = limitedCtx.db.prepare("SELECT count(*) FROM events WHERE status = 'rejected'").pluck().get();
  assert.equal(rejectedRows, 5, 'three guesses and two bad inputs are recorded; the held-back posts are not');
});

test('the access key never reaches the log or the event records', async () => {
  const rows = ctx.db.prepare('SELECT params, last_error FROM events').all();
  assert.equal(JSON.stringify(rows).includes(KEY), false);
  assert.equal(logs.text().includes(KEY), false);
});

test('a post read on the fast path and the same post read by express (gzipped) get the same answer and the same record', async () => {
  const { gzipSync } = await import('node:zlib');
  const form = (fields: string) => ({ type: 'application/x-www-form-urlencoded', body: fields });
  const json = (value: unknown) => ({ type: 'application/json', body: JSON.stringify(value) });
  const cases = [
    form(`contactId=2001&wpf_action=update&access_key=${KEY}&Note=caf%C3%A9+%26+tea`),
    form(`contactId=2002&wpf_action=add&access_key=${KEY}&role=member&send_notification=yes&tag[]=a&tag[]=b`),
    form(`contactId=2003&contactId=2004&wpf_action=add&access_key=${KEY}`),
    form(`contactId=abc&wpf_action=add&access_key=${KEY}`),
    form(`contactId=2005&wpf_action=never&access_key=${KEY}`),
    form(`contactId=2006&wpf_action=add&access_key=wrong-key`),
    form(`${Array.from({ length: 201 }, (_, i) => `f${i}=1`).join('&')}&access_key=${KEY}`),
    form(''),
    json({ contactId: 2007, wpf_action: 'update', access_key: KEY, note: 'plain' }),
    json(['not', 'an', 'object']),
    { type: 'application/json', body: '{"contactId": 2008, "wpf_action": ' },
  ];
  const strip = (answer: Record<string, unknown>) => ({ ...answer, event_id: typeof answer.event_id === 'number' ? 'some id' : answer.event_id });
  const recorded = () => {
    const row = lastEvent()!;
    return { status: row.status, action: row.action, contact_id: row.contact_id, params: row.params, last_error: row.last_error };
  };
  // A real server and fetch: supertest re-encodes a form body it is handed as bytes.
  const server = createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/keap`;
  const post = async (headers: Record<string, string>, body: Buffer | string) => {
    const res = await fetch(url, { method: 'POST', headers, body });
    return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Record<string, unknown>, row: recorded() };
  };
  try {
    for (const { type, body } of cases) {
      const fast = await post({ 'content-type': type }, body);
      const slow = await post({ 'content-type': type, 'content-encoding': 'gzip' }, gzipSync(body));
      const label = `${type} ${body.slice(0, 60)}`;
      assert.equal(slow.status, fast.status, label);
      assert.deepEqual(strip(slow.body), strip(fast.body), label);
      assert.equal(slow.type, fast.type, label);
      // An accepted post may fold into the identical job the first one queued; a refusal is recorded each time.
      if (fast.status !== 200) assert.deepEqual(slow.row, fast.row, label);
    }
  } finally {
    server.close();
  }
});
