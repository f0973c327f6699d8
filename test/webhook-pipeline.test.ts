import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { verifyPassword } from '../src/features/members/passwords.js';
import { welcomeEmail } from '../src/features/welcome-email/jobs.js';
import { type Harness, TEST_ACCESS_KEY, withHarness } from './support/harness.js';
import { tempDataDir } from './support/temp.js';

const CONTACTS = '/crm/rest/v2/contacts';


async function addAndSettle(h: Harness, params: Record<string, string>) {
  const res = await h.post({ wpf_action: 'add', ...params });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  await h.settle();
  return h.server.ctx.events.get(res.body.event_id as number)!;
}

/** The password write-back is v1's PATCH, which changes only the fields it lists. */
const V1_CONTACTS = '/crm/rest/v1/contacts';
const patchesTo = (h: Harness, contactId: number) =>
  h.sandbox.state.requests.filter((r) => r.method === 'PATCH' && (r.path === `${V1_CONTACTS}/${contactId}` || r.path === `${CONTACTS}/${contactId}`));

test('add creates a member from the contact, writes the generated password back to Keap and emails it', () =>
  withHarness(async (h) => {
    const event = await addAndSettle(h, { contactId: String(SEED.contacts.ada), send_notification: 'yes', role: 'member' });
    assert.equal(event.status, 'done', event.error ?? '');
    const { ctx } = h.server;
    const member = ctx.members.findByContactId(SEED.contacts.ada)!;
    assert.equal(member.email, 'ada@example.com');
    assert.equal(member.username, 'ada@example.com', 'no username field configured: the email');
    assert.equal(member.role, 'member');
    assert.deepEqual([member.firstName, member.lastName], ['Ada', 'Lovelace']);
    assert.deepEqual(member.tags.map((t) => t.name).sort(), ['Member', 'Newsletter', 'VIP']);
    assert.equal(member.tags.find((t) => t.name === 'VIP')!.category, 'Membership');
    assert.equal(member.fields['Favorite Color'], 'Purple');

    const written = h.sandbox.state.customFieldValue(SEED.contacts.ada, SEED.fields.password);
    assert.equal(typeof written, 'string');
    assert.ok((written as string).length >= 16, 'a long generated password');
    assert.equal(await verifyPassword(written as string, ctx.members.passwordHash(member.id)), true, 'Keap holds the password that works');

    assert.equal(h.smtp.messages.length, 1);
    const mail = h.smtp.messages[0]!;
    assert.deepEqual(mail.to, ['ada@example.com']);
    assert.match(mail.text, /ada@example\.com/);
    assert.ok(mail.text.includes(written as string), 'the email carries the generated password');
    assert.match(mail.text, /http:\/\/members\.example\.test\/login/);
    assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0, 'the plain password is gone once delivered');
  }));

test("the password write-back leaves the contact's other custom fields in Keap as they were", () =>
  withHarness(async (h) => {
    const id = SEED.contacts.ada;
    const { favoriteColor, memberSince, password } = SEED.fields;
    assert.equal(h.sandbox.state.customFieldValue(id, favoriteColor), 'Purple');
    assert.equal(h.sandbox.state.customFieldValue(id, memberSince), '2024-01-15');
    const event = await addAndSettle(h, { contactId: String(id) });
    assert.equal(event.status, 'done', event.error ?? '');
    assert.equal(typeof h.sandbox.state.customFieldValue(id, password), 'string', 'the generated password was written back');
    assert.equal(h.sandbox.state.customFieldValue(id, favoriteColor), 'Purple', 'the other fields are still set');
    assert.equal(h.sandbox.state.customFieldValue(id, memberSince), '2024-01-15');
    const patches = patchesTo(h, id);
    assert.equal(patches.length, 1);
    assert.equal(patches[0]!.path, `${V1_CONTACTS}/${id}`);
    assert.deepEqual(patches[0]!.query, { update_mask: 'custom_fields' });
  }));

test('twenty parallel add posts give one member, one email and one write-back', () =>
  withHarness(async (h) => {
    const id = SEED.contacts.margaret;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => h.post({ wpf_action: 'add', contactId: String(id), send_notification: 'true', ...(i % 3 === 0 ? { role: 'member' } : {}) })),
    );
    assert.ok(answers.every((a) => a.status === 200));
    await h.settle();
    const { ctx } = h.server;
    assert.equal(ctx.db.prepare('SELECT count(*) FROM members WHERE keap_contact_id = ?').pluck().get(id), 1);
    assert.equal(h.smtp.messages.length, 1);
    assert.equal(patchesTo(h, id).length, 1);
    const failed = ctx.db.prepare("SELECT count(*) FROM events WHERE status IN ('failed', 'dead')").pluck().get();
    assert.equal(failed, 0);
  }));

test('add takes the username and password from their Keap fields and writes nothing back', () =>
  withHarness(
    async (h) => {
      await addAndSettle(h, { contactId: String(SEED.contacts.grace) });
      await addAndSettle(h, { contactId: String(SEED.contacts.alan) });
      const { ctx } = h.server;
      assert.equal(ctx.members.findByContactId(SEED.contacts.grace)!.username, 'ghopper');
      const alan = ctx.members.findByContactId(SEED.contacts.alan)!;
      assert.equal(await verifyPassword('Enigma-1912', ctx.members.passwordHash(alan.id)), true);
      assert.equal(alan.fields.Password, undefined, 'the password field is not copied into the profile');
      assert.equal(patchesTo(h, SEED.contacts.alan).length, 0);
      assert.equal(h.smtp.messages.length, 0, 'no welcome email unless asked');
    },
    { env: { KEAP_USERNAME_FIELD: 'username' } },
  ));

test('add adopts an existing member with the same email in any case instead of duplicating it', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const existing = await ctx.members.create({ email: 'ADA@Example.com', username: 'ada', role: 'subscriber', password: 'old-password-1', keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] });
    const event = await addAndSettle(h, { contactId: String(SEED.contacts.ada), send_notification: 'true' });
    assert.equal(event.status, 'done');
    assert.equal(ctx.db.prepare('SELECT count(*) FROM members').pluck().get(), 1);
    const linked = ctx.members.findById(existing.id)!;
    assert.equal(linked.keapContactId, SEED.contacts.ada);
    assert.equal(linked.firstName, 'Ada');
    assert.equal(await verifyPassword('old-password-1', ctx.members.passwordHash(existing.id)), true, 'its password is kept');
    assert.equal(h.smtp.messages.length, 0, 'no welcome for an adopted member');
    assert.equal(patchesTo(h, SEED.contacts.ada).length, 0);
  }));

test('a contact without an email fails with a readable reason; a missing contact fails once, not forever', () =>
  withHarness(async (h) => {
    const noEmail = await addAndSettle(h, { contactId: String(SEED.contacts.noEmail) });
    assert.equal(noEmail.status, 'failed');
    assert.equal(noEmail.error, `contact ${SEED.contacts.noEmail} has no email address`);
    const missing = await addAndSettle(h, { contactId: '999999' });
    assert.equal(missing.status, 'failed');
    assert.equal(missing.attempts, 1);
    assert.match(missing.error ?? '', /404|not found/i);
    assert.equal(h.sandbox.state.requests.filter((r) => r.path === `${CONTACTS}/999999`).length, 1);
  }));

test('a Keap email holding two addresses fails the add for good, creates no member and mails neither address', () =>
  withHarness(async (h) => {
    const contact = h.sandbox.state.addContact({ given_name: 'Vic', email: 'victim@example.com, attacker@evil.test' });
    const event = await addAndSettle(h, { contactId: String(contact.id), send_notification: 'true' });
    assert.equal(event.status, 'failed');
    assert.equal(event.attempts, 1, 'failed for good: trying again cannot help');
    assert.equal(event.error, `contact ${contact.id}'s email "victim@example.com, attacker@evil.test" is not one valid email address; fix it in Keap, then replay this event`);
    const { ctx } = h.server;
    assert.equal(ctx.members.findByContactId(contact.id), undefined);
    assert.equal(ctx.db.prepare('SELECT count(*) FROM members').pluck().get(), 0);
    assert.equal(h.smtp.messages.length, 0, 'no welcome email to anyone');
    assert.equal(patchesTo(h, contact.id).length, 0, 'no password written back');

    // Semicolons and display names are no better; one address with spaces around it is fine.
    for (const email of ['victim@example.com;attacker@evil.test', 'Victim <victim@example.com>', 'victim@example.com attacker@evil.test']) {
      const other = h.sandbox.state.addContact({ email });
      assert.equal((await addAndSettle(h, { contactId: String(other.id) })).status, 'failed', email);
    }
    const spaced = h.sandbox.state.addContact({ email: '  ok@example.com ' });
    assert.equal((await addAndSettle(h, { contactId: String(spaced.id), send_notification: 'true' })).status, 'done');
    assert.equal(ctx.members.findByContactId(spaced.id)!.email, 'ok@example.com');
    assert.deepEqual(h.smtp.messages.map((m) => m.to), [['ok@example.com']]);
  }));

test('a linked member keeps its email when Keap\'s turns into two addresses; the update fails with the reason', () =>
  withHarness(async (h) => {
    const id = SEED.contacts.grace;
    assert.equal((await addAndSettle(h, { contactId: String(id) })).status, 'done');
    h.sandbox.state.updateContact(id, { email_addresses: [{ email: 'grace@example.com, attacker@evil.test', field: 'EMAIL1' }], given_name: 'Gracie' });
    for (const action of ['update', 'add']) {
      const res = await h.post({ wpf_action: action, contactId: String(id) });
      await h.settle();
      const event = h.server.ctx.events.get(res.body.event_id as number)!;
      assert.equal(event.status, 'failed', action);
      assert.match(event.error ?? '', /is not one valid email address/);
    }
    const member = h.server.ctx.members.findByContactId(id)!;
    assert.equal(member.email, 'grace@example.com');
    assert.equal(member.firstName, 'Grace', 'nothing about the member changed');
  }));

test('a welcome email to a stored email holding two addresses reaches neither: the job fails with the reason', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    // A member stored before Keap's emails were checked.
    const member = await ctx.members.create({ email: 'victim@example.com, attacker@evil.test', username: 'vic', role: 'subscriber', password: 'a-password-123', keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] });
    const { id } = ctx.jobs.enqueue(welcomeEmail, { member_id: member.id });
    await h.settle();
    const event = ctx.events.get(id)!;
    assert.equal(event.status, 'failed');
    assert.match(event.error ?? '', /Not one valid email address: "victim@example.com, attacker@evil.test"; nothing was sent/);
    assert.equal(h.smtp.messages.length, 0);
  }));

test('update pulls fields and tags, follows an email change and applies a role; without a member it is skipped', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const id = SEED.contacts.ada;
    const skipped = await addAndSettle(h, { wpf_action: 'update', contactId: String(id) });
    assert.equal(skipped.status, 'skipped');
    assert.equal(skipped.result, `no member is linked to contact ${id}`);

    await addAndSettle(h, { contactId: String(id) });
    h.sandbox.state.updateContact(id, {
      given_name: 'Augusta',
      email_addresses: [{ email: 'augusta@example.com', field: 'EMAIL1' }],
      custom_fields: { 'Favorite Color': 'Green' },
      tag_ids: [SEED.tags.member],
    });
    const updated = await addAndSettle(h, { wpf_action: 'update', contactId: String(id), role: 'member' });
    assert.equal(updated.status, 'done', updated.error ?? '');
    const member = ctx.members.findByContactId(id)!;
    assert.equal(member.firstName, 'Augusta');
    assert.equal(member.email, 'augusta@example.com');
    assert.equal(member.fields['Favorite Color'], 'Green');
    assert.equal(member.role, 'member');
    assert.deepEqual(member.tags.map((t) => t.id), [SEED.tags.member]);
  }));

test("update fails with the reason when the contact's new email belongs to another member", () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    await addAndSettle(h, { contactId: String(SEED.contacts.ada) });
    await ctx.members.create({ email: 'taken@example.com', username: 'taken', role: 'subscriber', password: 'some-password-1', keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] });
    h.sandbox.state.updateContact(SEED.contacts.ada, { email_addresses: [{ email: 'Taken@example.com', field: 'EMAIL1' }] });
    const event = await addAndSettle(h, { wpf_action: 'update', contactId: String(SEED.contacts.ada) });
    assert.equal(event.status, 'failed');
    assert.match(event.error!, /Taken@example\.com already belongs to member \d+/);
    assert.equal(ctx.members.findByContactId(SEED.contacts.ada)!.email, 'ada@example.com');
  }));

test('update_tags changes tags only', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const id = SEED.contacts.grace;
    await addAndSettle(h, { contactId: String(id) });
    h.sandbox.state.updateContact(id, { given_name: 'Changed', tag_ids: [SEED.tags.vip, SEED.tags.paymentFailed] });
    const seen: string[] = [];
    ctx.hooks.addAction('member.tags_changed', (_m, change) => void seen.push(`+${change.added.map((t) => t.name).join(',')} -${change.removed.map((t) => t.name).join(',')}`));
    const event = await addAndSettle(h, { wpf_action: 'update_tags', contactId: String(id) });
    assert.equal(event.status, 'done');
    const member = ctx.members.findByContactId(id)!;
    assert.deepEqual(member.tags.map((t) => t.name).sort(), ['Payment Failed', 'VIP']);
    assert.equal(member.firstName, 'Grace', 'names are not touched by update_tags');
    assert.deepEqual(seen, ['+VIP,Payment Failed -Member']);
  }));

test('a member with admin rights keeps its role, email and password whatever a webhook says', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const admin = await ctx.members.create({ email: 'ada@example.com', username: 'boss', role: 'administrator', password: 'admin-password-1', keapContactId: SEED.contacts.ada, firstName: '', lastName: '', fields: {}, tags: [] });
    h.sandbox.state.updateContact(SEED.contacts.ada, { email_addresses: [{ email: 'new-ada@example.com', field: 'EMAIL1' }] });
    await addAndSettle(h, { wpf_action: 'update', contactId: String(SEED.contacts.ada), role: 'member' });
    await addAndSettle(h, { wpf_action: 'add', contactId: String(SEED.contacts.ada), role: 'subscriber' });
    const after = ctx.members.findById(admin.id)!;
    assert.equal(after.role, 'administrator');
    assert.equal(after.email, 'ada@example.com');
    assert.equal(await verifyPassword('admin-password-1', ctx.members.passwordHash(admin.id)), true);
    assert.equal(patchesTo(h, SEED.contacts.ada).length, 0);
  }));

test('a burst of Keap 429s is waited out and the job is done', () =>
  withHarness(async (h) => {
    h.sandbox.failNext(3, 429);
    const event = await addAndSettle(h, { contactId: String(SEED.contacts.margaret) });
    assert.equal(event.status, 'done', event.error ?? '');
    assert.equal(event.attempts, 1, 'throttling did not use up attempts');
    assert.ok(h.server.ctx.members.findByContactId(SEED.contacts.margaret));
  }));

test('Keap 500s are retried, first by the client and then by the queue with back-off, until the job is done', () =>
  withHarness(
    async (h) => {
      // More failures than the client's own quick retries (3 tries): the job itself must come back later.
      h.sandbox.failNext(4, 500);
      const res = await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.margaret) });
      await h.settle();
      const { ctx } = h.server;
      const id = res.body.event_id as number;
      const event = ctx.events.get(id)!;
      assert.equal(event.status, 'done', event.error ?? '');
      assert.deepEqual(ctx.events.attempts(id).map((a) => a.outcome), ['retry', 'done']);
      assert.match(ctx.events.attempts(id)[0]!.error!, /500/);
      assert.equal(h.sandbox.state.requests.filter((r) => r.path === `${CONTACTS}/${SEED.contacts.margaret}` && r.method === 'GET').length, 5);
      assert.ok(ctx.members.findByContactId(SEED.contacts.margaret));
    },
    { env: { JOB_RETRY_BASE_MS: '50' } },
  ));

test('jobs queued when memberhook stops are all done after it starts again', () =>
  withHarness(async (h) => {
    await h.restart({ worker: { start: false } });
    const ids = [SEED.contacts.ada, SEED.contacts.grace, SEED.contacts.alan, SEED.contacts.margaret];
    for (const id of ids) assert.equal((await h.post({ wpf_action: 'add', contactId: String(id), send_notification: 'true' })).status, 200);
    assert.equal(h.server.ctx.members.list({ page: 1, pageSize: 10 }).total, 0, 'nothing ran yet');
    await h.restart();
    await h.settle();
    const { ctx } = h.server;
    assert.equal(ctx.members.list({ page: 1, pageSize: 10 }).total, ids.length);
    assert.equal(h.smtp.messages.length, ids.length);
    assert.equal(ctx.db.prepare("SELECT count(*) FROM events WHERE status <> 'done'").pluck().get(), 0);
  }));

test('hooks fire after commit for a created member', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const seen: string[] = [];
    ctx.hooks.addAction('webhook.received', (event) => void seen.push(`received ${event.action}`));
    ctx.hooks.addAction('member.created', (member) => {
      // After commit: another connection-less read through the service sees the member.
      seen.push(`created ${ctx.members.findById(member.id)?.email}`);
    });
    ctx.hooks.addFilter('member.username', (username) => username.split('@')[0]!);
    ctx.hooks.addFilter('member.fields_from_contact', (fields) => ({ ...fields, source: 'keap' }));
    await addAndSettle(h, { contactId: String(SEED.contacts.ada) });
    assert.deepEqual(seen, ['received add', 'created ada@example.com']);
    const member = ctx.members.findByContactId(SEED.contacts.ada)!;
    assert.equal(member.username, 'ada');
    assert.equal(member.fields.source, 'keap');
  }));

test('the access key and generated passwords appear in no event, API answer or log line', () =>
  withHarness(async (h) => {
    await addAndSettle(h, { contactId: String(SEED.contacts.ada), send_notification: 'true' });
    await h.post({ wpf_action: 'add', contactId: '1', access_key: 'wrong-key-attempt' });
    const password = h.sandbox.state.customFieldValue(SEED.contacts.ada, SEED.fields.password) as string;
    assert.ok(password);
    const events = await h.api('/api/v1/events');
    const users = await h.api('/api/v1/users');
    const details = await Promise.all((events.body.events as Array<{ id: number }>).map((e) => h.api(`/api/v1/events/${e.id}`)));
    const everything = JSON.stringify([events.body, users.body, details.map((d) => d.body), h.server.ctx.db.prepare('SELECT * FROM events').all(), h.server.ctx.db.prepare('SELECT * FROM event_attempts').all()]);
    for (const secret of [TEST_ACCESS_KEY, password, 'wrong-key-attempt']) {
      assert.equal(everything.includes(secret), false, 'secret in events or API');
      assert.equal(h.logs.text().includes(secret), false, 'secret in logs');
    }
    assert.equal(users.body.users.length, 1);
  }));

test('a welcome email the mail server refuses is retried by the worker; the member exists meanwhile', () =>
  withHarness(
    async (h) => {
      h.smtp.failNext(2);
      const res = await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.margaret), send_notification: 'true' });
      await h.settle();
      const { ctx } = h.server;
      assert.equal(ctx.events.get(res.body.event_id as number)!.status, 'done');
      const welcome = ctx.events.list({ action: 'welcome_email', page: 1, pageSize: 5 }).events[0]!;
      assert.equal(welcome.status, 'done');
      assert.deepEqual(ctx.events.attempts(welcome.id).map((a) => a.outcome), ['retry', 'retry', 'done']);
      assert.equal(h.smtp.messages.length, 1);
      assert.ok(ctx.members.findByContactId(SEED.contacts.margaret));
    },
    { env: { JOB_RETRY_BASE_MS: '20' } },
  ));

test('a plugin can register another wpf_action whose job runs in the worker', async () => {
  const pluginsDir = tempDataDir();
  writeFileSync(
    join(pluginsDir, 'badges.mjs'),
    `export default {
      name: 'badges', version: '1.0.0', apiVersion: 1,
      setup(api) {
        api.webhooks.addAction('award_badge', async (job) => ({ status: 'done', result: 'badge awarded to contact ' + job.contactId + ' for ' + job.params.badge }));
      },
    };`,
  );
  await withHarness(
    async (h) => {
      const { ctx } = h.server;
      const res = await h.post({ wpf_action: 'award_badge', contactId: '777', badge: 'gold' });
      assert.equal(res.status, 200);
      await h.settle();
      const event = ctx.events.get(res.body.event_id as number)!;
      assert.equal(event.action, 'badges.award_badge', "the job type carries the plugin's name");
      assert.equal(event.plugin, 'badges');
      assert.equal(event.result, 'badge awarded to contact 777 for gold');
      const unknown = await h.post({ wpf_action: 'award_trophy', contactId: '777' });
      assert.equal(unknown.status, 400);
      assert.match(String(unknown.body.error), /expected one of add, update, update_tags, test, award_badge/);
    },
    { env: { PLUGINS_DIR: pluginsDir } },
  );
});

test('member.updated and member.role_changed fire after an update changes them', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    await addAndSettle(h, { contactId: String(SEED.contacts.grace) });
    const seen: string[] = [];
    ctx.hooks.addAction('member.updated', (_m, changed) => void seen.push(`updated ${changed.join(',')}`));
    ctx.hooks.addAction('member.role_changed', (_m, change) => void seen.push(`role ${change.from}->${change.to}`));
    h.sandbox.state.updateContact(SEED.contacts.grace, { family_name: 'Murray Hopper' });
    await addAndSettle(h, { wpf_action: 'update', contactId: String(SEED.contacts.grace), role: 'member' });
    assert.deepEqual(seen, ['updated last_name,role', 'role subscriber->member']);
    seen.length = 0;
    await addAndSettle(h, { wpf_action: 'update', contactId: String(SEED.contacts.grace), role: 'member' });
    assert.deepEqual(seen, [], 'nothing changed, nothing fired');
  }));

test('ADMIN_EMAIL and ADMIN_PASSWORD make sure that administrator exists, once', () =>
  withHarness(
    async (h) => {
      const { ctx } = h.server;
      const admin = ctx.members.findByEmail('owner@example.test')!;
      assert.equal(admin.role, 'administrator');
      await h.restart();
      assert.equal(h.server.ctx.db.prepare('SELECT count(*) FROM members').pluck().get(), 1);
      assert.equal(await verifyPassword('owner-password-123', h.server.ctx.members.passwordHash(admin.id)), true);
      assert.equal(h.logs.text().includes('owner-password-123'), false);
    },
    { env: { ADMIN_EMAIL: 'owner@example.test', ADMIN_PASSWORD: 'owner-password-123' } },
  ));
