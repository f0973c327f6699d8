import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { once } from 'node:events';
import { SEED } from '../tools/keap-sandbox/index.js';
import { startHarness, type Harness } from './support/harness.js';
import { csrfFrom } from './support/pages.js';
import { freePort } from './support/waiting.js';

// Settings → Keap events: "contact.add creates a member ... only contacts with the tag".

const { tags: T } = SEED;
const ADMIN = { email: 'owner@example.com', password: 'owner password 2026!' };
const RULES = '/admin/settings/keap-events/rules';

interface Site {
  h: Harness;
  admin: request.Agent;
}

/** memberhook on a port of its own (the sandbox delivers hooks to it), an administrator logged in, the worker idle. */
async function site(t: TestContext): Promise<Site> {
  const port = await freePort();
  const h = await startHarness({
    env: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` },
    sandbox: { hookBatchWindowMs: 20 },
    start: { worker: { start: false } },
  });
  t.after(() => h.close());
  await h.server.ctx.members.createAdministrator(ADMIN);
  const admin = request.agent(h.server.url);
  const form = await admin.get('/admin/login');
  const login = await admin.post('/admin/login').type('form').send({ _csrf: csrfFrom(form.text), login: ADMIN.email, password: ADMIN.password });
  assert.equal(login.status, 303);
  return { h, admin };
}

async function postForm(s: Site, path: string, fields: Record<string, string | string[]>) {
  const page = await s.admin.get('/admin/settings/keap-events');
  const body = new URLSearchParams({ _csrf: csrfFrom(page.text) });
  for (const [name, value] of Object.entries(fields)) for (const v of ([] as string[]).concat(value)) body.append(name, v);
  return s.admin.post(path).type('form').send(body.toString());
}

async function setRules(s: Site, fields: { add_members?: 'yes'; add_members_tag: string }) {
  const saved = await postForm(s, RULES, { on_delete: 'block', ...fields });
  assert.equal(saved.status, 303, saved.text.slice(0, 300));
}

/** Runs every runnable job, one at a time as the worker's loop would, until none is left. */
async function runJobs(s: Site): Promise<void> {
  const { ctx } = s.h.server;
  for (let job = ctx.events.claimNext('test', Date.now(), 60_000); job; job = ctx.events.claimNext('test', Date.now(), 60_000)) await ctx.worker.runClaimed(job);
}

/** Keap's changes delivered to the site by the sandbox's hooks, and every job they cause run. */
async function deliverAndRun(s: Site): Promise<void> {
  await s.h.sandbox.hooks.flush();
  await runJobs(s);
}

type Row = { id: number; source: string; action: string; contact_id: number | null; event_type: string | null; status: string; result: string | null };
const events = (s: Site) => s.h.server.ctx.db.prepare('SELECT id, source, action, contact_id, event_type, status, result FROM events ORDER BY id').all() as Row[];
const addJobs = (s: Site, contactId: number) => events(s).filter((e) => e.action === 'add' && e.contact_id === contactId);
const reads = (s: Site, path: string) => s.h.sandbox.state.requestsTo('GET', path).length;

test('the tag picker lists Keap\'s tags; a value that is not a tag id, or a tag Keap does not have, is a 400 naming the field that changes nothing', async (t) => {
  const s = await site(t);
  const settings = s.h.server.ctx.settings;
  const page = (await s.admin.get('/admin/settings/keap-events')).text;
  assert.match(page, /<select id="add-members-tag" name="add_members_tag">\s*<option value="">any contact<\/option>/);
  assert.match(page, new RegExp(`<option value="${T.vip}">[^<]*VIP</option>`), 'Keap\'s tags are offered');

  const notAnId = await postForm(s, RULES, { add_members: 'yes', add_members_tag: 'VIP; drop table', on_delete: 'delete' });
  assert.equal(notAnId.status, 400);
  assert.match(notAnId.text, /Only contacts with the tag: choose a tag from the list \(or any contact\); “VIP; drop table” is not a tag id\. Nothing was changed\./);
  const unknown = await postForm(s, RULES, { add_members: 'yes', add_members_tag: '987654', on_delete: 'delete' });
  assert.equal(unknown.status, 400);
  assert.match(unknown.text, /Only contacts with the tag: Keap has no tag 987654\. Nothing was changed\./);
  for (const key of ['keap_hooks.add_members', 'keap_hooks.add_members_tag', 'keap_hooks.on_delete']) assert.equal(settings.get(key), undefined, `${key} unchanged`);

  await setRules(s, { add_members: 'yes', add_members_tag: String(T.vip) });
  assert.match((await s.admin.get('/admin/settings/keap-events')).text, new RegExp(`<option value="${T.vip}" selected>[^<]*VIP</option>`), 'the chosen tag shows as chosen');
  assert.equal(settings.get('keap_hooks.add_members_tag'), String(T.vip));
  // Saved again with the same tag while Keap is out of reach: kept, with no look-up needed.
  const tagLists = reads(s, '/crm/rest/v1/tags');
  await setRules(s, { add_members: 'yes', add_members_tag: String(T.vip) });
  assert.equal(reads(s, '/crm/rest/v1/tags') - tagLists, 1, 'only the page read the list, not the save');
  await setRules(s, { add_members: 'yes', add_members_tag: '' });
  assert.equal(settings.get('keap_hooks.add_members_tag'), '', 'empty: any contact');
});

test('with a tag chosen, contact.add makes a member only of a contact with the tag; the tag applied later makes it; another tag does not; the setting off makes none', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  const { sandbox } = s.h;
  const registered = await postForm(s, '/admin/settings/keap-events/register', { key: ['contact.add', 'contactGroup.applied', 'contactGroup.removed', 'contact.edit'] });
  assert.equal(registered.status, 303, registered.text.slice(0, 300));
  assert.ok([...sandbox.state.hooks.values()].every((h) => h.status === 'Verified'));
  await setRules(s, { add_members: 'yes', add_members_tag: String(T.vip) });
  await runJobs(s);

  // A new contact without the tag: its add is skipped, with the reason, after one Keap read (its tags).
  const plain = sandbox.state.addContact({ email: 'plain@example.com', given_name: 'Plain' });
  await deliverAndRun(s);
  assert.equal(ctx.members.findByContactId(plain.id), undefined);
  assert.deepEqual(addJobs(s, plain.id).map((e) => [e.source, e.event_type, e.status, e.result]), [
    ['rest_hook', 'contact.add', 'skipped', `contact ${plain.id} does not carry tag ${T.vip}: no member created (contact.add creates members only with that tag)`],
  ]);
  assert.equal(reads(s, `/crm/rest/v1/contacts/${plain.id}/tags`), 1);
  assert.equal(reads(s, `/crm/rest/v2/contacts/${plain.id}`), 0, 'a contact without the tag is not read further');

  // Another tag applied to it: checked again, still no member.
  sandbox.state.applyTag(plain.id, T.newsletter);
  await deliverAndRun(s);
  assert.equal(ctx.members.findByContactId(plain.id), undefined, 'another tag makes no member');
  assert.deepEqual(addJobs(s, plain.id).map((e) => [e.event_type, e.status]), [['contact.add', 'skipped'], ['contactGroup.applied', 'skipped']]);

  // The tag applied moments after: the same add job makes the member, with the contact's tags, in two Keap reads.
  const readsBefore = reads(s, `/crm/rest/v1/contacts/${plain.id}/tags`);
  sandbox.state.applyTag(plain.id, T.vip);
  await deliverAndRun(s);
  const made = ctx.members.findByContactId(plain.id);
  assert.equal(made?.email, 'plain@example.com', 'the tag applied made the member');
  assert.deepEqual(made.tags.map((tag) => tag.id).sort(), [T.newsletter, T.vip].sort());
  assert.deepEqual(addJobs(s, plain.id).slice(-1).map((e) => [e.source, e.event_type, e.status]), [['rest_hook', 'contactGroup.applied', 'done']]);
  assert.equal(reads(s, `/crm/rest/v1/contacts/${plain.id}/tags`) - readsBefore, 1, 'the check is the read creating the member needs anyway');
  assert.equal(reads(s, `/crm/rest/v2/contacts/${plain.id}`), 1);
  // A member now: the tag's later events update it, and make no add.
  sandbox.state.removeTag(plain.id, T.newsletter);
  await deliverAndRun(s);
  assert.deepEqual(ctx.members.findByContactId(plain.id)!.tags.map((tag) => tag.id), [T.vip]);
  assert.equal(addJobs(s, plain.id).length, 3);

  // A new contact created with the tag: a member at once (contact.add and the tag's applied event fold or find it made).
  const tagged = sandbox.state.addContact({ email: 'tagged@example.com', tag_ids: [T.vip] });
  await deliverAndRun(s);
  assert.equal(ctx.members.findByContactId(tagged.id)?.email, 'tagged@example.com');
  assert.ok(addJobs(s, tagged.id).every((e) => e.status === 'done'));
  assert.equal(ctx.members.count({}), 3, 'the administrator and the two members');

  // "Creates a member" off (the tag still chosen): nothing is created, by contact.add or by the tag.
  await setRules(s, { add_members_tag: String(T.vip) });
  const off = sandbox.state.addContact({ email: 'off@example.com', tag_ids: [T.vip] });
  sandbox.state.applyTag(off.id, T.member);
  await deliverAndRun(s);
  assert.equal(ctx.members.findByContactId(off.id), undefined);
  assert.deepEqual(addJobs(s, off.id), [], 'no add job at all');

  // Any contact (no tag chosen): contact.add makes the member, and a tag applied to a non-member makes none.
  await setRules(s, { add_members: 'yes', add_members_tag: '' });
  const any = sandbox.state.addContact({ email: 'any@example.com' });
  await deliverAndRun(s);
  assert.equal(ctx.members.findByContactId(any.id)?.email, 'any@example.com');
  const untagged = events(s).length;
  sandbox.state.applyTag(off.id, T.newsletter);
  await deliverAndRun(s);
  assert.deepEqual(events(s).slice(untagged).filter((e) => e.action === 'add'), []);

  // The condition is memberhook's own: a campaign's post cannot set it (its parameter of that name is dropped).
  await setRules(s, { add_members_tag: String(T.vip) });
  const posted = sandbox.state.addContact({ email: 'posted@example.com' });
  const answer = await s.h.post({ contactId: String(posted.id), wpf_action: 'add', only_with_tag: String(T.vip) });
  assert.equal(answer.status, 200);
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(posted.id)?.email, 'posted@example.com');
  const params = s.h.server.ctx.db.prepare('SELECT params FROM events WHERE id = ?').pluck().get(answer.body.event_id) as string;
  assert.equal('only_with_tag' in JSON.parse(params), false);
});

test('the tags poll finds the chosen tag applied to a contact with no member while no hook came, and makes the member; with the setting off it makes none', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  const { sandbox } = s.h;
  assert.equal((await postForm(s, '/admin/settings/keap-events/poll', { resource: 'tags', interval_minutes: '15' })).status, 303);
  await runJobs(s);
  const polledTag = (tagId: number) => sandbox.state.requestsTo('GET', new RegExp(`/rest/v2/tags/${tagId}/contacts$`)).length;

  // Off: no member holds VIP, so the poll does not even read it.
  const early = sandbox.state.addContact({ email: 'early@example.com' });
  sandbox.state.applyTag(early.id, T.vip);
  await postForm(s, '/admin/settings/keap-events/poll-now', { resource: 'tags' });
  await runJobs(s);
  assert.equal(polledTag(T.vip), 0);
  assert.equal(ctx.members.findByContactId(early.id), undefined);

  await setRules(s, { add_members: 'yes', add_members_tag: String(T.vip) });
  const later = sandbox.state.addContact({ email: 'later@example.com' });
  sandbox.state.applyTag(later.id, T.vip);
  const other = sandbox.state.addContact({ email: 'other@example.com' });
  sandbox.state.applyTag(other.id, T.newsletter);
  await postForm(s, '/admin/settings/keap-events/poll-now', { resource: 'tags' });
  await runJobs(s);
  assert.ok(polledTag(T.vip) >= 1, 'the member-making tag is polled');
  for (const contact of [early, later]) {
    assert.ok(ctx.members.findByContactId(contact.id), `contact ${contact.id} with the tag is a member`);
    assert.deepEqual(addJobs(s, contact.id).map((e) => [e.source, e.event_type, e.status]), [['poller', 'contactGroup.applied', 'done']]);
  }
  assert.equal(ctx.members.findByContactId(other.id), undefined, 'another tag makes no member');
  assert.match((await s.admin.get('/admin/settings/keap-events')).text, /id="poll-tags"[\s\S]*?data-poll-last>[^<]*: 2 changed since [^,]+, 2 member updates queued/);

  // Polled again (the overlap reads the same): no second add.
  await postForm(s, '/admin/settings/keap-events/poll-now', { resource: 'tags' });
  await runJobs(s);
  assert.equal(addJobs(s, later.id).length, 1);
});
