import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Webhook } from 'standardwebhooks';
import request from 'supertest';
import type { NewMemberInput } from '../src/features/members/service.js';
import type { OutboundWebhooks } from '../src/features/outbound-webhooks/service.js';
import { startHarness, type Harness } from './support/harness.js';
import { csrfFrom } from './support/pages.js';
import { startReceiver, waitUntil, type Receiver } from './support/receiver.js';

/*
 * Outbound webhooks end to end, in-process: members change through the member service (as a Keap post's job or an
 * admin would change them), the durable handlers record deliveries, the dispatcher sends them to real receivers on
 * loopback, and each receiver checks what arrived as a receiver would, with the standardwebhooks package.
 */

const BASIC = { username: 'hook-user', password: 'basic-password-0123456789' };

async function site(t: TestContext): Promise<{ h: Harness; outbound: OutboundWebhooks }> {
  const h = await startHarness({ env: { OUTBOUND_ALLOW_PRIVATE: '1' } });
  t.after(() => h.close());
  return { h, outbound: h.server.ctx.plugins.service('outboundWebhooks') };
}

async function receiver(t: TestContext, answer?: Receiver['answer']): Promise<Receiver> {
  const r = await startReceiver(answer);
  t.after(() => r.close());
  return r;
}

function newMember(email: string, extra: Partial<NewMemberInput> = {}): NewMemberInput {
  return { email, username: email, role: 'subscriber', password: 'member password 0123', firstName: 'Ada', lastName: 'Lovelace', fields: {}, tags: [], keapContactId: null, ...extra };
}

const VIP = { id: 93, name: 'VIP', category: 'Membership' };

test('a member change reaches the destination with a valid Standard Webhooks signature, basic auth and the default envelope', async (t) => {
  const { h, outbound } = await site(t);
  const r = await receiver(t);
  const { connection, signing_secret: secret } = outbound.createConnection({ name: 'CRM', base_url: `${r.url}/hooks`, auth: { type: 'basic', ...BASIC } });
  assert.match(secret, /^whsec_[A-Za-z0-9+/]{40,}={0,2}$/);
  assert.deepEqual(connection.auth, { type: 'basic', username: BASIC.username, secrets_set: ['password'] }, 'the password is never shown back');
  const destination = outbound.createDestination({ connection_id: connection.id, name: 'members', path: '/members', events: ['member.*'] });
  assert.equal(destination.url, `${r.url}/hooks/members`);

  const member = await h.server.ctx.members.create(newMember('ada@example.com'));
  const [request] = await r.waitFor(1);
  assert.equal(request!.method, 'POST');
  assert.equal(request!.path, '/hooks/members');
  assert.equal(request!.headers['content-type'], 'application/json');
  assert.equal(request!.headers.authorization, `Basic ${Buffer.from(`${BASIC.username}:${BASIC.password}`).toString('base64')}`);
  const verified = new Webhook(secret).verify(request!.body, request!.headers as Record<string, string>) as { type: string; timestamp: string; data: { member: { id: number; email: string } } };
  assert.equal(verified.type, 'member.created');
  assert.equal(verified.data.member.id, member.id);
  assert.equal(verified.data.member.email, 'ada@example.com');
  assert.throws(() => new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`).verify(request!.body, request!.headers as Record<string, string>), 'another secret does not verify');

  // The delivery log has the attempt: the request's headers without the password, the answer.
  await waitUntil(() => outbound.listDeliveries({ status: 'delivered', per_page: 10 }).total === 1);
  const [listed] = outbound.listDeliveries({ destination_id: destination.id, per_page: 10 }).deliveries;
  const detail = outbound.getDelivery(listed!.id);
  assert.equal(detail.event_id, request!.headers['webhook-id']);
  assert.equal(detail.body, request!.body);
  assert.equal(verified.timestamp, detail.created_at, 'the envelope carries the commit time, as the delivery does');
  assert.ok(Date.parse(detail.created_at) <= request!.at);
  assert.equal(detail.attempts_log.length, 1);
  assert.equal(detail.attempts_log[0]!.request.headers.authorization, '[redacted]');
  assert.equal(detail.attempts_log[0]!.response?.status, 200);
  assert.equal(detail.attempts_log[0]!.response?.body, 'ok');

  // Secrets are nowhere in the logs or the database in the clear.
  const dump = JSON.stringify(h.server.ctx.db.prepare("SELECT * FROM outbound_connections").all()) + JSON.stringify(h.server.ctx.db.prepare('SELECT * FROM outbound_delivery_attempts').all());
  for (const value of [BASIC.password, secret, secret.slice('whsec_'.length)]) {
    assert.ok(!h.logs.text().includes(value), 'a secret in the logs');
    assert.ok(!dump.includes(value), 'a secret in the database in the clear');
  }
});

test('destinations take the events their patterns and filters name, and nothing else', async (t) => {
  const { h, outbound } = await site(t);
  const r = await receiver(t);
  const { connection } = outbound.createConnection({ name: 'Warehouse', base_url: r.url });
  const make = (name: string, extra: Record<string, unknown>) => outbound.createDestination({ connection_id: connection.id, name, path: `/${name}`, ...extra });
  make('everything', { events: ['*'] });
  make('created', { events: ['member.created'] });
  make('vip-roles', { events: ['member.role_changed'], filter_tag_id: VIP.id });
  make('role-member', { events: ['member.*'], filter_role: 'member' });
  make('keap-contacts', { events: ['keap.contact.*'] });
  make('switched-off', { events: ['*'], enabled: false });

  const plain = await h.server.ctx.members.create(newMember('plain@example.com'));
  const vip = await h.server.ctx.members.create(newMember('vip@example.com', { tags: [VIP] }));
  await h.server.ctx.members.update(plain.id, { profile: {}, role: 'member' });
  await h.server.ctx.members.update(vip.id, { profile: {}, role: 'member' });
  await h.settle();
  await waitUntil(() => outbound.listDeliveries({ status: 'queued', per_page: 1 }).total === 0 && outbound.listDeliveries({ status: 'delivering', per_page: 1 }).total === 0);

  const got = (path: string) => r.received.filter((q) => q.path === path).map((q) => `${(JSON.parse(q.body) as { type: string }).type}:${(JSON.parse(q.body) as { data: { member: { email: string } } }).data.member.email}`).sort();
  assert.deepEqual(got('/created'), ['member.created:plain@example.com', 'member.created:vip@example.com']);
  assert.deepEqual(got('/vip-roles'), ['member.role_changed:vip@example.com']);
  assert.deepEqual(got('/role-member'), ['member.role_changed:plain@example.com', 'member.role_changed:vip@example.com', 'member.updated:plain@example.com', 'member.updated:vip@example.com']);
  assert.equal(got('/everything').length, 7, 'created ×2, tags_changed, updated ×2, role_changed ×2');
  assert.deepEqual(got('/keap-contacts'), []);
  assert.deepEqual(got('/switched-off'), []);
});

test('bad input is refused naming the field, and changes nothing', async (t) => {
  const { outbound } = await site(t);
  const refused = (fn: () => unknown, field: string | undefined, status = 400) => {
    assert.throws(fn, (err: { status: number; field?: string; message: string }) => {
      assert.equal(err.status, status, err.message);
      assert.equal(err.field, field, err.message);
      return true;
    });
  };
  refused(() => outbound.createConnection({ name: '', base_url: 'http://x.test' }), 'name');
  refused(() => outbound.createConnection({ name: 'a', base_url: 'ftp://x.test' }), 'base_url');
  refused(() => outbound.createConnection({ name: 'a', base_url: 'http://x.test', port: 70_000 }), 'port');
  refused(() => outbound.createConnection({ name: 'a', base_url: 'http://x.test', auth: { type: 'basic', username: 'u' } }), 'auth.password');
  refused(() => outbound.createConnection({ name: 'a', base_url: 'http://x.test', colour: 'red' }), undefined);
  assert.deepEqual(outbound.listConnections(), []);
  const { connection } = outbound.createConnection({ name: 'a', base_url: 'http://x.test' });
  refused(() => outbound.createConnection({ name: 'a', base_url: 'http://y.test' }), 'name', 409);
  refused(() => outbound.createDestination({ connection_id: connection.id, name: 'd', events: ['member.exploded'] }), 'events.0');
  refused(() => outbound.createDestination({ connection_id: connection.id, name: 'd', events: [] }), 'events');
  refused(() => outbound.createDestination({ connection_id: connection.id, name: 'd', events: ['*'], method: 'DELETE' }), 'method');
  refused(() => outbound.createDestination({ connection_id: connection.id, name: 'd', events: ['*'], template: '{{#if}}' }), 'template');
  refused(() => outbound.createDestination({ connection_id: 999, name: 'd', events: ['*'] }), 'connection_id');
  assert.deepEqual(outbound.listDestinations(), []);
  // A secret left out of an update keeps the stored one.
  const withAuth = outbound.updateConnection(connection.id, { auth: { type: 'bearer', token: 'tok-0123456789' } });
  assert.deepEqual(withAuth.auth.secrets_set, ['token']);
  outbound.updateConnection(connection.id, { auth: { type: 'bearer' }, description: 'kept' });
  assert.equal(outbound.secretsOf(outbound.connectionRow(connection.id)).auth.type, 'bearer');
  assert.deepEqual(outbound.secretsOf(outbound.connectionRow(connection.id)).auth, { type: 'bearer', token: 'tok-0123456789' });
});

test('an event no enabled destination takes records nothing: no outbox row, no job', async (t) => {
  const { h, outbound } = await site(t);
  const r = await receiver(t);
  const { connection } = outbound.createConnection({ name: 'CRM', base_url: r.url });
  outbound.createDestination({ connection_id: connection.id, name: 'deletions', events: ['member.deleted'] });
  outbound.createDestination({ connection_id: connection.id, name: 'off', events: ['*'], enabled: false });
  const jobs = h.server.ctx.db.prepare("SELECT count(*) FROM events WHERE action = 'hook.deliver'").pluck();
  const member = await h.server.ctx.members.create(newMember('ada@example.com'));
  await h.server.ctx.members.update(member.id, { profile: { firstName: 'Augusta' } });
  assert.equal(jobs.get(), 0);
  assert.equal(h.server.ctx.db.prepare('SELECT count(*) FROM outbox').pluck().get(), 0);
  await h.server.ctx.members.delete(member.id);
  assert.equal(jobs.get(), 1, 'the deletion is taken');
  await r.waitFor(1);
  assert.equal((JSON.parse(r.received[0]!.body) as { type: string }).type, 'member.deleted');
});

test('a rotated signing secret: both sign during the overlap, so receivers with either verify; then only the new one', async (t) => {
  const { h, outbound } = await site(t);
  const r = await receiver(t);
  const { connection, signing_secret: first } = outbound.createConnection({ name: 'CRM', base_url: r.url });
  outbound.createDestination({ connection_id: connection.id, name: 'members', events: ['member.updated'] });
  const member = await h.server.ctx.members.create(newMember('ada@example.com'));
  const change = async (firstName: string, n: number) => {
    await h.server.ctx.members.update(member.id, { profile: { firstName } });
    return (await r.waitFor(n))[n - 1]!;
  };
  const verifies = (secret: string, q: { body: string; headers: object }) => {
    try {
      new Webhook(secret).verify(q.body, q.headers as Record<string, string>);
      return true;
    } catch {
      return false;
    }
  };

  const rotated = outbound.rotateSigningSecret(connection.id, { overlap_hours: 1 });
  assert.notEqual(rotated.signing_secret, first);
  assert.ok(rotated.connection.previous_secret_until);
  const during = await change('Augusta', 1);
  assert.equal(String(during.headers['webhook-signature']).split(' ').length, 2, 'two signatures');
  assert.ok(verifies(first, during), 'a receiver with the old secret verifies');
  assert.ok(verifies(rotated.signing_secret, during), 'a receiver with the new secret verifies');

  const again = outbound.rotateSigningSecret(connection.id, { overlap_hours: 0 });
  assert.equal(again.connection.previous_secret_until, null);
  const after = await change('Ada', 2);
  assert.equal(String(after.headers['webhook-signature']).split(' ').length, 1);
  assert.ok(verifies(again.signing_secret, after));
  assert.ok(!verifies(rotated.signing_secret, after), 'the replaced secret no longer verifies');
  assert.ok(!h.logs.text().includes(again.signing_secret.slice(6)), 'never logged');
});

test('Keap events go out as keap.<event key>, about the member linked to the contact (for the filters)', async (t) => {
  const { h, outbound } = await site(t);
  const r = await receiver(t);
  const { connection } = outbound.createConnection({ name: 'Warehouse', base_url: r.url });
  outbound.createDestination({ connection_id: connection.id, name: 'contacts', path: '/contacts', events: ['keap.contact.*'] });
  outbound.createDestination({ connection_id: connection.id, name: 'vip-contacts', path: '/vip', events: ['keap.contact.edit'], filter_tag_id: VIP.id });
  outbound.createDestination({ connection_id: connection.id, name: 'all-keap', path: '/keap', events: ['keap.*'] });
  await h.server.ctx.members.create(newMember('vip@example.com', { keapContactId: 5001, tags: [VIP] }));
  const emit = (objectType: string, objectId: string, eventType: string) =>
    h.server.ctx.transactions.run((tx) => tx.emit('keap.event', { objectType, objectId, eventType, source: 'rest_hook', raw: { id: Number(objectId) } }));
  await emit('contact', '5001', 'contact.edit');
  await emit('contact', '5002', 'contact.edit');
  await emit('order', '77', 'order.add');
  await h.settle();
  await r.waitFor(6);
  await waitUntil(() => outbound.listDeliveries({ status: 'delivered' }).total === 6);
  const got = (path: string) =>
    r.received
      .filter((q) => q.path === path)
      .map((q) => JSON.parse(q.body) as { type: string; data: { object_id: string; member: { email: string } | null } })
      .map((e) => `${e.type}:${e.data.object_id}:${e.data.member?.email ?? '-'}`)
      .sort();
  assert.deepEqual(got('/contacts'), ['keap.contact.edit:5001:vip@example.com', 'keap.contact.edit:5002:-']);
  assert.deepEqual(got('/vip'), ['keap.contact.edit:5001:vip@example.com']);
  assert.deepEqual(got('/keap'), ['keap.contact.edit:5001:vip@example.com', 'keap.contact.edit:5002:-', 'keap.order.add:77:-']);
});

test('a member logging in at /login reaches a destination taking member.logged_in', async (t) => {
  const { h, outbound } = await site(t);
  const r = await receiver(t);
  const { connection } = outbound.createConnection({ name: 'Analytics', base_url: r.url });
  outbound.createDestination({ connection_id: connection.id, name: 'logins', events: ['member.logged_in'] });
  const member = await h.server.ctx.members.create(newMember('ada@example.com'));
  const browser = request.agent(h.server.url);
  const form = await browser.get('/login');
  const login = await browser.post('/login').type('form').send({ _csrf: csrfFrom(form.text), login: 'ada@example.com', password: 'member password 0123' });
  assert.equal(login.status, 303);
  const [event] = await r.waitFor(1);
  const body = JSON.parse(event!.body) as { type: string; data: { member: { id: number } } };
  assert.equal(body.type, 'member.logged_in');
  assert.equal(body.data.member.id, member.id);
  assert.equal(r.received.length, 1, 'only the login: member.created is not taken');
});
