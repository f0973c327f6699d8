import { test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { verifyPassword } from '../src/features/members/passwords.js';
import type { Member } from '../src/features/members/types.js';
import { type Harness, withHarness } from './support/harness.js';
import { csrfFrom } from './support/pages.js';

/**
 * Keap's password field both ways (issue 14, item 2): a password set in memberhook is written to the field, and a new
 * one typed into the field in Keap becomes the member's password on `update`, never for administrators, never in a
 * loop. Everything runs for real on loopback: the Keap sandbox, an SMTP server, memberhook's server and worker.
 */

const ADA = SEED.contacts.ada;
const FIELD = SEED.fields.password;
const ACCOUNT_PASSWORD = 'chosen on the account page 1';
const RESET_PASSWORD = 'chosen through a reset link 2';
const API_PASSWORD = 'set by a script through the API 3';
const TYPED_IN_KEAP = 'Typed-into-Keap-2026';


/** Keap's v1 PATCHes of the contact: the write-back and every password written after it. */
const patchesTo = (h: Harness, contactId: number) => h.sandbox.state.requests.filter((r) => r.method === 'PATCH' && r.path === `/crm/rest/v1/contacts/${contactId}`);

const keapField = (h: Harness, contactId: number = ADA) => h.sandbox.state.customFieldValue(contactId, FIELD);

async function post(h: Harness, action: string, contactId: number = ADA) {
  const res = await h.post({ wpf_action: action, contactId: String(contactId) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  await h.settle();
  const event = h.server.ctx.events.get(res.body.event_id as number)!;
  assert.equal(event.status, 'done', event.error ?? '');
  return event;
}

/** `add` for Ada: a member with a generated password, written back to Keap's field (the first PATCH). */
async function addAda(h: Harness): Promise<{ member: Member; generated: string }> {
  await post(h, 'add');
  const member = h.server.ctx.members.findByContactId(ADA)!;
  const generated = keapField(h) as string;
  assert.equal(typeof generated, 'string', 'the generated password was written back');
  assert.equal(patchesTo(h, ADA).length, 1);
  return { member, generated };
}

async function works(h: Harness, member: Member, password: string): Promise<boolean> {
  return verifyPassword(password, h.server.ctx.members.passwordHash(member.id));
}

async function logIn(h: Harness, login: string, password: string): Promise<request.Agent> {
  const agent = request.agent(h.server.url);
  const form = await agent.get('/login');
  const res = await agent.post('/login').type('form').send({ _csrf: csrfFrom(form.text), login, password });
  assert.equal(res.status, 303, 'logged in');
  return agent;
}

async function stillLoggedIn(agent: request.Agent): Promise<boolean> {
  return (await agent.get('/account')).status === 200;
}

/** The results of the jobs of one type, oldest first. */
function results(h: Harness, action: string): Array<string | null> {
  return h.server.ctx.db.prepare<[string], string | null>('SELECT result FROM events WHERE action = ? ORDER BY id').pluck().all(action);
}

/** No secret in the logs, in any event (params, result, error, attempts) or in the outbox (hooks' arguments). */
function neverRecorded(h: Harness, secrets: string[]): void {
  const { db } = h.server.ctx;
  const recorded = [
    h.logs.text(),
    JSON.stringify(db.prepare('SELECT * FROM events').all()),
    JSON.stringify(db.prepare('SELECT * FROM event_attempts').all()),
    JSON.stringify(db.prepare('SELECT * FROM outbox').all()),
    JSON.stringify(db.prepare('SELECT * FROM keap_password_seen').all()),
  ].join('\n');
  for (const secret of secrets) assert.equal(recorded.includes(secret), false, `"${secret}" is in no log, event or outbox row`);
  assert.equal(db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0, 'no password waits once its job is done');
}

test("a member's new password, from the account page and from a reset link, is written to Keap's password field", () =>
  withHarness(async (h) => {
    const { member, generated } = await addAda(h);
    const ada = await logIn(h, 'ada@example.com', generated);

    const form = await ada.get('/account/password');
    const changed = await ada.post('/account/password').type('form').send({ _csrf: csrfFrom(form.text), current_password: generated, new_password: ACCOUNT_PASSWORD, confirm_password: ACCOUNT_PASSWORD });
    assert.equal(changed.status, 303, changed.text);
    await h.settle();
    assert.equal(keapField(h), ACCOUNT_PASSWORD, 'Keap holds the password the member chose');
    assert.equal(patchesTo(h, ADA).length, 2);
    assert.deepEqual(patchesTo(h, ADA)[1]!.query, { update_mask: 'custom_fields' }, 'v1, which changes only the field it lists');
    assert.equal(h.sandbox.state.customFieldValue(ADA, SEED.fields.favoriteColor), 'Purple', "the contact's other fields are kept");

    const visitor = request.agent(h.server.url);
    const forgot = await visitor.get('/password/forgot');
    const asked = await visitor.post('/password/forgot').type('form').send({ _csrf: csrfFrom(forgot.text), login: 'ada@example.com' });
    assert.ok(asked.status < 400, asked.text);
    await h.settle();
    const token = /token=([\w-]+)/.exec(h.smtp.messages.at(-1)!.text)![1]!;
    const browser = request.agent(h.server.url);
    const resetForm = await browser.get(`/password/reset?token=${token}`);
    const reset = await browser.post('/password/reset').type('form').send({ _csrf: csrfFrom(resetForm.text), token, new_password: RESET_PASSWORD, confirm_password: RESET_PASSWORD });
    assert.ok(reset.status < 400, reset.text);
    await h.settle();
    assert.equal(keapField(h), RESET_PASSWORD, 'Keap holds the password set with the reset link');
    assert.equal(await works(h, member, RESET_PASSWORD), true);
    assert.equal(patchesTo(h, ADA).length, 3);
    assert.deepEqual(results(h, 'keap_password_writeback'), [`password written to contact ${ADA}`, `password written to contact ${ADA}`, `password written to contact ${ADA}`]);

    // Keap's field holds the member's own password now: the next update post finds nothing new there.
    const update = await post(h, 'update');
    assert.equal(update.result, `member ${member.id} already up to date`);
    assert.equal(patchesTo(h, ADA).length, 3);
    neverRecorded(h, [generated, ACCOUNT_PASSWORD, RESET_PASSWORD]);
  }));

test('a password set through the API is written to Keap; two changes waiting at once are written once, the newest', () =>
  withHarness(async (h) => {
    const { member } = await addAda(h);
    const res = await h.api(`/api/v1/users/${member.id}`, { method: 'PATCH', body: JSON.stringify({ password: API_PASSWORD }) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await h.settle();
    assert.equal(keapField(h), API_PASSWORD);
    assert.equal(patchesTo(h, ADA).length, 2);

    await h.server.ctx.worker.stop();
    await h.server.ctx.members.changePassword(member.id, 'first of two changes 1', 'api');
    await h.server.ctx.members.changePassword(member.id, 'second of two changes 2', 'api');
    const waiting = h.server.ctx.db.prepare("SELECT coalesced FROM events WHERE action = 'keap_password_writeback' AND status = 'queued'").pluck().all();
    assert.deepEqual(waiting, [1], 'one write-back job, the second change folded into it');
    h.server.ctx.worker.start();
    await h.settle();
    assert.equal(keapField(h), 'second of two changes 2', 'the newest password wins');
    assert.equal(patchesTo(h, ADA).length, 3, 'written once');
    neverRecorded(h, [API_PASSWORD, 'first of two changes 1', 'second of two changes 2']);
  }));

test('a password changed while the write-back of the one before is under way is written after it, not lost', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const { member } = await addAda(h);
    // Keap is slow to answer the next PATCH: the change after it arrives while that job is still running.
    h.sandbox.troubleNext(1, { kind: 'slow', delayMs: 800 }, { method: 'PATCH', path: `/crm/rest/v1/contacts/${ADA}` });
    await ctx.members.changePassword(member.id, 'sent while Keap is slow 1', 'api');
    const running = ctx.db.prepare("SELECT count(*) FROM events WHERE action = 'keap_password_writeback' AND status = 'processing'").pluck();
    for (let waited = 0; running.get() === 0; waited += 10) {
      assert.ok(waited < 5000, 'the write-back started');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await ctx.members.changePassword(member.id, 'changed meanwhile 2', 'api');
    await h.settle();
    assert.equal(keapField(h), 'changed meanwhile 2', 'the newest password is in Keap');
    assert.equal(patchesTo(h, ADA).length, 3);
    assert.equal(await works(h, member, 'changed meanwhile 2'), true);
    neverRecorded(h, ['sent while Keap is slow 1', 'changed meanwhile 2']);
  }));

test("an administrator's password never reaches Keap's field, however it is set", () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const { member, generated } = await addAda(h);
    await ctx.members.update(member.id, { profile: {}, role: 'administrator' });
    const res = await h.api(`/api/v1/users/${member.id}`, { method: 'PATCH', body: JSON.stringify({ password: API_PASSWORD }) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await ctx.members.changePassword(member.id, 'from the command line 4', 'command_line');
    await ctx.members.changePassword(member.id, 'from ADMIN_PASSWORD 5', 'configured');
    await h.settle();
    assert.equal(patchesTo(h, ADA).length, 1, 'only the generated password of the member she was, written when she was created');
    assert.equal(keapField(h), generated);
    assert.equal(ctx.db.prepare("SELECT count(*) FROM events WHERE action = 'keap_password_writeback'").pluck().get(), 1, 'no job was even queued');

    // Made an administrator while a write-back of hers waited: the job refuses to send it.
    await ctx.members.update(member.id, { profile: {}, role: 'member' });
    await ctx.worker.stop();
    await ctx.members.changePassword(member.id, 'queued while a member 6', 'api');
    await ctx.members.update(member.id, { profile: {}, role: 'administrator' });
    ctx.worker.start();
    await h.settle();
    assert.equal(patchesTo(h, ADA).length, 1);
    assert.match(results(h, 'keap_password_writeback').at(-1) ?? '', /has admin rights: an administrator's password is never written to Keap/);
    neverRecorded(h, [API_PASSWORD, 'from the command line 4', 'from ADMIN_PASSWORD 5', 'queued while a member 6']);
  }));

test("a new password typed into Keap's field becomes the member's password on update, ends her sessions and is not written back", () =>
  withHarness(async (h) => {
    const { member, generated } = await addAda(h);
    const session = await logIn(h, 'ada@example.com', generated);
    assert.equal(await stillLoggedIn(session), true);

    const heard: unknown[][] = [];
    h.server.ctx.hooks.addAction('member.password_changed', (...args) => void heard.push(args));
    h.sandbox.state.setCustomField(ADA, FIELD, TYPED_IN_KEAP);
    const update = await post(h, 'update');
    assert.equal(update.result, `updated member ${member.id}: password taken from Keap`);
    assert.equal(await works(h, member, TYPED_IN_KEAP), true, 'the password typed into Keap works');
    assert.equal(await works(h, member, generated), false, 'the old one does not');
    assert.equal(await stillLoggedIn(session), false, 'the sessions with the old password ended');
    await logIn(h, 'ada@example.com', TYPED_IN_KEAP);
    assert.equal(patchesTo(h, ADA).length, 1, 'nothing written back to Keap');
    assert.equal(heard.length, 1);
    assert.equal(heard[0]![1], 'keap', 'member.password_changed says where it came from');
    assert.equal(JSON.stringify(heard).includes(TYPED_IN_KEAP), false, "the hook's arguments do not hold the password");

    // The same post again (Keap retries) changes nothing and ends no session.
    const session2 = await logIn(h, 'ada@example.com', TYPED_IN_KEAP);
    const again = await post(h, 'update');
    assert.equal(again.result, `member ${member.id} already up to date`);
    assert.equal(await stillLoggedIn(session2), true);
    assert.equal(patchesTo(h, ADA).length, 1);
    neverRecorded(h, [generated, TYPED_IN_KEAP]);
  }));

test("an administrator's password is never taken from Keap's field", () =>
  withHarness(async (h) => {
    const { member, generated } = await addAda(h);
    await h.server.ctx.members.update(member.id, { profile: {}, role: 'administrator' });
    h.sandbox.state.setCustomField(ADA, FIELD, TYPED_IN_KEAP);
    const update = await post(h, 'update');
    assert.equal(update.result, `member ${member.id} already up to date; the password in Keap's field was not taken: member ${member.id} has admin rights`);
    assert.equal(await works(h, member, generated), true, 'her password is unchanged');
    assert.equal(await works(h, member, TYPED_IN_KEAP), false);
    neverRecorded(h, [generated, TYPED_IN_KEAP]);
  }));

test('add linking an existing member takes the password in Keap’s field; a member whose field was never seen gets it noted first', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    // Alan's contact holds a password in the field (the seed); his member was made here before the post.
    const alan = await ctx.members.create({ email: 'alan@example.com', username: 'alan', role: 'subscriber', password: 'made by hand 7', keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] });
    const add = await post(h, 'add', SEED.contacts.alan);
    assert.match(add.result ?? '', /password taken from Keap/);
    assert.equal(await works(h, alan, 'Enigma-1912'), true);

    // Linked before memberhook kept track of the field (no record of it): a value found there could be stale, so it
    // is noted, and only a later change is taken.
    const ada = await ctx.members.create({ email: 'ada@example.com', username: 'ada', role: 'subscriber', password: 'made by hand 8', keapContactId: ADA, firstName: '', lastName: '', fields: {}, tags: [] });
    h.sandbox.state.setCustomField(ADA, FIELD, 'stale in Keap 9');
    const first = await post(h, 'update');
    assert.match(first.result ?? '', /Keap's password field noted \(it was never seen before\)/);
    assert.equal(await works(h, ada, 'made by hand 8'), true);
    h.sandbox.state.setCustomField(ADA, FIELD, TYPED_IN_KEAP);
    const second = await post(h, 'update');
    assert.match(second.result ?? '', /password taken from Keap$/);
    assert.equal(await works(h, ada, TYPED_IN_KEAP), true);
    assert.equal(patchesTo(h, ADA).length + patchesTo(h, SEED.contacts.alan).length, 0, 'nothing taken from Keap is written back');
    neverRecorded(h, ['Enigma-1912', 'stale in Keap 9', TYPED_IN_KEAP, 'made by hand 7', 'made by hand 8']);
  }));

test("a field left stale by a change not written to Keap never turns the member's password back", () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    const { member, generated } = await addAda(h);
    ctx.site.setPasswordSync({ push: false, take: true });
    await ctx.members.changePassword(member.id, API_PASSWORD, 'api');
    await h.settle();
    assert.equal(keapField(h), generated, 'not written: Keap still holds the generated password');
    const update = await post(h, 'update');
    assert.equal(update.result, `member ${member.id} already up to date`);
    assert.equal(await works(h, member, API_PASSWORD), true, 'the member keeps the password she set');
  }));

test('with both choices off, password changes stay in memberhook and Keap’s field is not taken', () =>
  withHarness(async (h) => {
    const { ctx } = h.server;
    ctx.site.setPasswordSync({ push: false, take: false });
    assert.deepEqual([ctx.site.pushPasswordChanges(), ctx.site.takeKeapPasswords()], [false, false]);
    const { member } = await addAda(h); // a generated password is still written back, as before these choices
    await ctx.members.changePassword(member.id, API_PASSWORD, 'api');
    await h.settle();
    assert.equal(patchesTo(h, ADA).length, 1, 'the change was not written to Keap');
    h.sandbox.state.setCustomField(ADA, FIELD, TYPED_IN_KEAP);
    const update = await post(h, 'update');
    assert.equal(update.result, `member ${member.id} already up to date`);
    assert.equal(await works(h, member, API_PASSWORD), true, 'the password typed into Keap was not taken');
    assert.equal(patchesTo(h, ADA).length, 1);
  }));

test('without a password field both choices are off, whatever was saved', () =>
  withHarness(
    async (h) => {
      const { ctx } = h.server;
      assert.deepEqual(ctx.site.passwordSyncChoices(), { push: true, take: true }, 'on by default');
      assert.deepEqual([ctx.site.pushPasswordChanges(), ctx.site.takeKeapPasswords()], [false, false]);
      await post(h, 'add');
      const member = ctx.members.findByContactId(ADA)!;
      await ctx.members.changePassword(member.id, API_PASSWORD, 'api');
      await h.settle();
      assert.equal(patchesTo(h, ADA).length, 0);
    },
    { env: { KEAP_PASSWORD_FIELD: '' } },
  ));
