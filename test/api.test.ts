import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { startHarness, type Harness } from './support/harness.js';

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
