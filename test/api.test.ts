import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { startHarness, type Harness } from './support/harness.js';
import { tempDataDir } from './support/temp.js';
import { migrate, MIGRATIONS_DIR, openDatabase, readMigrations } from '../src/core/db.js';
import { systemClock } from '../src/core/clock.js';
import { ApiTokenStore } from '../src/features/api/tokens.js';
import type { ApiScope } from '../src/features/api/scopes.js';

let h: Harness;
before(async () => {
  h = await startHarness();
  for (const id of [SEED.contacts.ada, SEED.contacts.grace, SEED.contacts.alan]) await h.post({ wpf_action: 'add', contactId: String(id) });
  await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.noEmail) });
  await h.settle();
});
after(() => h.close());

test('the API refuses requests without the bearer token', async () => {
  for (const authorization of ['', 'Bearer wrong-token-000000000000000', 'Basic abc']) {
    const res = await fetch(`${h.server.url}/api/v1/users`, { headers: authorization ? { authorization } : {} });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), { ok: false, error: 'missing or invalid bearer token' });
  }
});

test('users are listed with their tags and fields, and filtered by email, role, tag and search', async () => {
  const all = await h.api('/api/v1/users');
  assert.equal(all.status, 200);
  assert.equal(all.body.total, 3);
  assert.equal(all.body.page, 1);
  const ada = all.body.users.find((u: { email: string }) => u.email === 'ada@example.com');
  assert.deepEqual(Object.keys(ada).sort(), ['created_at', 'email', 'fields', 'first_name', 'id', 'keap_contact_id', 'last_name', 'role', 'tags', 'updated_at', 'username'].sort());
  assert.equal(ada.keap_contact_id, SEED.contacts.ada);
  assert.ok(ada.tags.some((t: { id: number; name: string }) => t.id === SEED.tags.vip && t.name === 'VIP'));
  assert.equal((await h.api('/api/v1/users?email=ADA@example.com')).body.total, 1);
  assert.equal((await h.api('/api/v1/users?role=subscriber')).body.total, 3);
  assert.equal((await h.api('/api/v1/users?role=member')).body.total, 0);
  assert.equal((await h.api(`/api/v1/users?tag=${SEED.tags.paymentFailed}`)).body.users[0].email, 'alan@example.com');
  assert.equal((await h.api('/api/v1/users?q=gra')).body.users[0].email, 'grace@example.com');
  assert.equal((await h.api('/api/v1/users?q=%25')).body.total, 0, 'LIKE wildcards are matched literally');
  const paged = await h.api('/api/v1/users?per_page=2&page=2');
  assert.deepEqual([paged.body.users.length, paged.body.total, paged.body.page], [1, 3, 2]);
});

test('bad query values are a 400 naming the parameter', async () => {
  const res = await h.api('/api/v1/users?page=0');
  assert.equal(res.status, 400);
  assert.match(res.body.error, /^page: /);
  const unknown = await h.api('/api/v1/users?colour=red');
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.error, /unknown query field\(s\): colour/);
  assert.equal((await h.api('/api/v1/events?status=exploded')).status, 400);
  assert.equal((await h.api('/api/v1/users/abc')).status, 400);
});

test('a user can be read, patched and deleted', async () => {
  const ada = (await h.api('/api/v1/users?email=ada@example.com')).body.users[0];
  assert.equal((await h.api(`/api/v1/users/${ada.id}`)).body.user.email, 'ada@example.com');
  const patched = await h.api(`/api/v1/users/${ada.id}`, { method: 'PATCH', body: JSON.stringify({ role: 'member', first_name: 'Augusta' }) });
  assert.equal(patched.status, 200);
  assert.equal(patched.body.user.role, 'member');
  assert.equal(patched.body.user.first_name, 'Augusta');
  const badRole = await h.api(`/api/v1/users/${ada.id}`, { method: 'PATCH', body: JSON.stringify({ role: 'gold' }) });
  assert.deepEqual([badRole.status, badRole.body.error], [400, 'role "gold" does not exist']);
  const clash = await h.api(`/api/v1/users/${ada.id}`, { method: 'PATCH', body: JSON.stringify({ email: 'GRACE@example.com' }) });
  assert.deepEqual([clash.status, clash.body.error], [409, 'another member has that email']);
  const unknownField = await h.api(`/api/v1/users/${ada.id}`, { method: 'PATCH', body: JSON.stringify({ is_admin: true }) });
  assert.equal(unknownField.status, 400);
  assert.equal((await h.api(`/api/v1/users/${ada.id}`)).body.user.role, 'member', 'a refused patch changed nothing');
  const alan = (await h.api('/api/v1/users?email=alan@example.com')).body.users[0];
  assert.deepEqual((await h.api(`/api/v1/users/${alan.id}`, { method: 'DELETE' })).body, { ok: true });
  assert.equal((await h.api(`/api/v1/users/${alan.id}`)).status, 404);
});

test('the API cannot take away the last administrator, by role change or delete', async () => {
  const boss = await h.server.ctx.members.createAdministrator({ email: 'boss@example.com', password: 'admin password 0123' });
  const demote = await h.api(`/api/v1/users/${boss.id}`, { method: 'PATCH', body: JSON.stringify({ role: 'member' }) });
  assert.equal(demote.status, 409);
  assert.match(demote.body.error, /last administrator/i);
  assert.equal((await h.api(`/api/v1/users/${boss.id}`, { method: 'DELETE' })).status, 409);
  assert.equal((await h.api(`/api/v1/users/${boss.id}`)).body.user.role, 'administrator', 'nothing changed');
  const second = await h.server.ctx.members.createAdministrator({ email: 'second@example.com', password: 'admin password 4567' });
  assert.equal((await h.api(`/api/v1/users/${boss.id}`, { method: 'DELETE' })).status, 200, 'with another administrator, it may go');
  assert.equal((await h.api(`/api/v1/users/${second.id}`, { method: 'DELETE' })).status, 409);
});

test('events are listed and filtered, with the normalized triple, and shown with every attempt', async () => {
  const list = await h.api(`/api/v1/events?contact_id=${SEED.contacts.ada}&action=add`);
  assert.equal(list.status, 200);
  assert.equal(list.body.total, 1);
  const event = list.body.events[0];
  assert.deepEqual([event.source, event.action, event.contact_id, event.status], ['http_post', 'add', SEED.contacts.ada, 'done']);
  assert.deepEqual([event.object_type, event.object_id, event.event_type], ['contact', String(SEED.contacts.ada), 'contact.add']);
  const failed = await h.api('/api/v1/events?status=failed');
  assert.equal(failed.body.total, 1);
  const detail = await h.api(`/api/v1/events/${failed.body.events[0].id}`);
  assert.equal(detail.body.event.error, `contact ${SEED.contacts.noEmail} has no email address`);
  assert.equal(detail.body.event.attempts_log.length, 1);
  assert.equal((await h.api('/api/v1/events/999999')).status, 404);
});

test('a failed event can be replayed and then succeeds once the contact is fixed', async () => {
  const failed = (await h.api('/api/v1/events?status=failed')).body.events[0];
  h.sandbox.state.updateContact(SEED.contacts.noEmail, { email_addresses: [{ email: 'found@example.com', field: 'EMAIL1' }] });
  const replay = await h.api(`/api/v1/events/${failed.id}/replay`, { method: 'POST' });
  assert.equal(replay.status, 200);
  assert.equal(replay.body.event.status, 'queued');
  await h.settle();
  assert.equal((await h.api(`/api/v1/events/${failed.id}`)).body.event.status, 'done');
  assert.equal((await h.api('/api/v1/users?email=found@example.com')).body.total, 1);
  const again = await h.api(`/api/v1/events/${failed.id}/replay`, { method: 'POST' });
  assert.equal(again.status, 200, 'a done event may be run again');
});

/** A token made the way the admin's form makes it, with the given scope. */
function tokenWithScope(name: string, scope: ApiScope): string {
  return new ApiTokenStore(h.server.ctx.db, systemClock).create(name, scope)!.token;
}

async function callWith(token: string, path: string, init: RequestInit = {}): Promise<{ status: number; body: any; challenge: string | null }> {
  const res = await fetch(`${h.server.url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
  return { status: res.status, body: await res.json(), challenge: res.headers.get('www-authenticate') };
}

test('API tokens carry scopes: read-only reads, members write cannot touch administrators or admin rights, admin can', async () => {
  const { members } = h.server.ctx;
  const plain = await members.create({ email: 'scoped@example.com', username: 'scoped', role: 'subscriber', password: 'plain password 0123', firstName: '', lastName: '', keapContactId: null, fields: {}, tags: [] });
  const chief = await members.createAdministrator({ email: 'chief@example.com', password: 'chief password 0123' });
  const chiefHash = members.passwordHash(chief.id);
  const reader = tokenWithScope('reader', 'read');
  const writer = tokenWithScope('writer', 'members:write');
  const admin = tokenWithScope('full', 'admin');
  const patch = (token: string, id: number, body: unknown) => callWith(token, `/api/v1/users/${id}`, { method: 'PATCH', body: JSON.stringify(body) });

  // Read-only: every read, no write.
  assert.equal((await callWith(reader, '/api/v1/users')).status, 200);
  assert.equal((await callWith(reader, `/api/v1/users/${chief.id}`)).status, 200);
  assert.equal((await callWith(reader, '/api/v1/events')).status, 200);
  const readerPatch = await patch(reader, plain.id, { first_name: 'Nope' });
  assert.equal(readerPatch.status, 403);
  assert.equal(readerPatch.body.error, 'changing a user needs an API token with the members:write scope; this token has the read scope');
  assert.match(readerPatch.challenge ?? '', /error="insufficient_scope", scope="members:write"/);
  const readerDelete = await callWith(reader, `/api/v1/users/${plain.id}`, { method: 'DELETE' });
  assert.deepEqual([readerDelete.status, readerDelete.body.error], [403, 'deleting a user needs an API token with the members:write scope; this token has the read scope']);
  const someEvent = (await callWith(reader, '/api/v1/events')).body.events[0];
  const readerReplay = await callWith(reader, `/api/v1/events/${someEvent.id}/replay`, { method: 'POST' });
  assert.equal(readerReplay.status, 403);
  assert.match(readerReplay.body.error, /members:write scope/);

  // Members write: plain members, yes; admin rights and administrators, no.
  assert.equal((await patch(writer, plain.id, { first_name: 'Changed', password: 'a new password 0123' })).status, 200);
  const promote = await patch(writer, plain.id, { role: 'administrator' });
  assert.deepEqual([promote.status, promote.body.error], [403, 'giving a role with admin rights needs an API token with the admin scope; this token has the members:write scope']);
  assert.match(promote.challenge ?? '', /scope="admin"/);
  const takeOver = await patch(writer, chief.id, { password: 'attacker password 0123' });
  assert.deepEqual([takeOver.status, takeOver.body.error], [403, 'changing an administrator needs an API token with the admin scope; this token has the members:write scope']);
  assert.equal((await patch(writer, chief.id, { email: 'attacker@example.com' })).status, 403);
  assert.equal((await callWith(writer, `/api/v1/users/${chief.id}`, { method: 'DELETE' })).status, 403);
  assert.equal(members.get(plain.id).role, 'subscriber', 'no admin rights were given');
  assert.equal(members.passwordHash(chief.id), chiefHash, "the administrator's password is unchanged");
  assert.equal(members.get(chief.id).email, 'chief@example.com');

  // Admin: everything.
  assert.equal((await patch(admin, plain.id, { role: 'administrator' })).status, 200);
  assert.equal(members.get(plain.id).roleIsAdmin, true);
  assert.equal((await patch(admin, chief.id, { first_name: 'Chief' })).status, 200);
  assert.equal((await callWith(admin, `/api/v1/users/${plain.id}`, { method: 'DELETE' })).status, 200);
});

test('tokens made before scopes existed can change members but not administrators', async () => {
  const migrations = readMigrations(MIGRATIONS_DIR);
  const scopes = migrations.findIndex((m) => m.name === 'api_token_scopes');
  assert.ok(scopes > 0, 'the scopes migration exists');
  const { db } = openDatabase({ filename: ':memory:', migrationsDir: tempDataDir() });
  migrate(db, migrations.slice(0, scopes));
  db.prepare("INSERT INTO api_tokens (name, token_hash, prefix) VALUES ('old script', ?, 'mh_oldscrip')").run('a'.repeat(64));
  migrate(db, migrations);
  assert.equal(db.prepare('SELECT scope FROM api_tokens').pluck().get(), 'members:write');
  db.prepare("INSERT INTO api_tokens (name, token_hash, prefix) VALUES ('no scope given', ?, 'mh_noscope')").run('b'.repeat(64));
  assert.equal(db.prepare("SELECT scope FROM api_tokens WHERE name = 'no scope given'").pluck().get(), 'read', 'the column defaults to the narrowest scope');
  assert.throws(() => db.prepare("INSERT INTO api_tokens (name, token_hash, prefix, scope) VALUES ('x', ?, 'mh_x', 'root')").run('c'.repeat(64)), /CHECK/);
  db.close();
});
