import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { idFilterChunks } from '../src/features/keap/client.js';
import { SKIP_REASONS } from '../src/features/keap-import/importer.js';
import { SEED, type KeapSandboxOptions } from '../tools/keap-sandbox/index.js';
import { startHarness, type Harness } from './support/harness.js';
import { assertKeapRequestMatchesSpec } from './support/keap-openapi.js';
import { csrfFrom } from './support/pages.js';

const { tags: T } = SEED;
const ADMIN = { email: 'owner@example.com', password: 'owner password 2026!' };
/** Keap's limits are not what these tests are about (the benchmark measures them): the limiter stays out of the way. */
const FAST = { KEAP_RATE_PER_SECOND: '1000', KEAP_RATE_PER_MINUTE: '1000' };
const FAST_SANDBOX: KeapSandboxOptions = { limits: { perSecond: 1000, perMinute: 100_000 } };

interface Site {
  h: Harness;
  admin: request.Agent;
}

/** memberhook against the sandbox with an administrator logged in; the worker idle, so the tests run jobs themselves. */
async function site(t: TestContext, env: Record<string, string> = {}): Promise<Site> {
  const h = await startHarness({ env: { ...FAST, ...env }, sandbox: FAST_SANDBOX, start: { worker: { start: false } } });
  t.after(() => h.close());
  await h.server.ctx.members.createAdministrator(ADMIN);
  return { h, admin: await logIn(h) };
}

async function logIn(h: Harness): Promise<request.Agent> {
  const admin = request.agent(h.server.url);
  const form = await admin.get('/admin/login');
  const login = await admin.post('/admin/login').type('form').send({ _csrf: csrfFrom(form.text), login: ADMIN.email, password: ADMIN.password });
  assert.equal(login.status, 303);
  return admin;
}

/** Runs jobs one at a time, as the worker would, until none is runnable or `limit` have run. */
async function runJobs(h: Harness, limit = Infinity): Promise<number> {
  const { ctx } = h.server;
  let ran = 0;
  for (let job = ctx.events.claimNext('test', Date.now(), 60_000); job && ran < limit; job = ran < limit ? ctx.events.claimNext('test', Date.now(), 60_000) : undefined) {
    await ctx.worker.runClaimed(job);
    ran++;
  }
  return ran;
}

/** Confirms and starts an import through the admin pages; answers the import's id. */
async function startImport(s: Site, fields: Record<string, string>): Promise<number> {
  const confirm = await s.admin.get('/admin/members/import/confirm').query(fields);
  assert.equal(confirm.status, 200, confirm.text);
  const count = /data-count="(\d+)"/.exec(confirm.text)?.[1];
  assert.ok(count, 'the confirmation shows the count');
  assert.match(confirm.text, new RegExp(`<input type="hidden" name="count" value="${count}">`));
  const started = await s.admin.post('/admin/members/import').type('form').send({ _csrf: csrfFrom(confirm.text), ...fields, count });
  assert.equal(started.status, 303, started.text);
  const id = /\/admin\/members\/import\/(\d+)$/.exec(started.headers.location ?? '')?.[1];
  assert.ok(id, 'redirected to the progress page');
  return Number(id);
}

type ImportRow = { status: string; done: number; total: number; created: number; linked: number; already_members: number; skipped: string; keap_calls: number; batches: number };
const importRow = (h: Harness, id: number) => h.server.ctx.db.prepare('SELECT * FROM keap_imports WHERE id = ?').get(id) as ImportRow;
const skippedOf = (row: ImportRow) => Object.fromEntries(Object.entries(JSON.parse(row.skipped) as Record<string, { count: number }>).map(([k, v]) => [k, v.count]));
const memberCount = (h: Harness) => h.server.ctx.db.prepare('SELECT count(*) FROM members').pluck().get() as number;

/** A tag with `count` contacts carrying it (ids from `firstId`), emails import-<n>@example.com. */
function tagContacts(h: Harness, count: number, options: { name?: string; firstId?: number } = {}): number {
  const tag = h.sandbox.state.addTag({ name: options.name ?? `Import ${count}` });
  const first = options.firstId ?? 10_000;
  for (let i = 0; i < count; i++) h.sandbox.state.addContact({ id: first + i, given_name: `Given${i}`, family_name: `Family${i}`, email: `import-${first + i}@example.com`, tag_ids: [tag.id] });
  return tag.id;
}

/** The API requests the sandbox answered since `from` (an index into its log), each checked against Keap's spec. */
function keapCallsSince(h: Harness, from: number) {
  const calls = h.sandbox.state.requests.slice(from).filter((r) => r.path.startsWith('/crm/rest/'));
  for (const call of calls) assertKeapRequestMatchesSpec({ method: call.method, path: call.path, query: call.query, body: call.body });
  return calls;
}

test('the import page lists Keap\'s tags, counts the contacts with one call before anything starts, and refuses bad choices changing nothing', async (t) => {
  const s = await site(t);
  const form = await s.admin.get('/admin/members/import');
  assert.equal(form.status, 200);
  assert.match(form.text, new RegExp(`<option value="${T.member}">Membership: Member</option>`));
  assert.match(form.text, /<input type="checkbox" name="welcome" value="yes" id="import-welcome">/, 'welcome emails are off by default');
  assert.doesNotMatch(form.text, /<option value="administrator"/, 'no role with admin rights is offered');

  const before = s.h.sandbox.state.requests.length;
  const confirm = await s.admin.get('/admin/members/import/confirm').query({ source: 'tag', tag_id: String(T.member), role: 'subscriber', on_existing: 'link' });
  assert.equal(confirm.status, 200);
  assert.match(confirm.text, /<strong data-count="3">3<\/strong> contacts in Keap now/);
  assert.match(confirm.text, new RegExp(`Import every Keap contact with tag “Membership: Member” \\(${T.member}\\):`), 'the tag named as the form listed it');
  assert.match(confirm.text, /<dt>New members get the role<\/dt><dd>Subscriber<\/dd>/, 'the role by its name');
  assert.match(confirm.text, /id="import-welcome-choice">none</);
  const calls = keapCallsSince(s.h, before);
  assert.deepEqual(calls.map((c) => `${c.method} ${c.path}?limit=${c.query.limit}`), [`GET /crm/rest/v1/tags/${T.member}/contacts?limit=1`], 'one cheap call');

  const bad = [
    [{ source: 'tag', tag_id: '', role: 'subscriber' }, /Tag: choose the tag/],
    [{ source: 'all', role: 'administrator' }, /an import never creates administrators/],
    [{ source: 'all', role: 'nobody' }, /Role: there is no role &quot;nobody&quot;/],
    [{ source: 'elsewhere', role: 'subscriber' }, /Contacts: choose a tag, or every contact/],
    [{ source: 'all', role: 'subscriber', on_existing: 'merge' }, /Existing members: choose link or skip/],
    [{ source: 'all', role: 'subscriber', count: 'many' }, /Count: confirm the import on the page that counts the contacts/],
  ] as const;
  for (const [fields, problem] of bad) {
    const page = await s.admin.post('/admin/members/import').type('form').send({ _csrf: csrfFrom(form.text), count: '3', ...fields });
    assert.equal(page.status, 400, JSON.stringify(fields));
    assert.match(page.text, problem);
  }
  const noTag = await s.admin.get('/admin/members/import/confirm').query({ source: 'tag', tag_id: '999', role: 'subscriber' });
  assert.equal(noTag.status, 400);
  assert.match(noTag.text, /Tag: Keap has no tag 999/);
  const noToken = await s.admin.post('/admin/members/import').type('form').send({ source: 'all', role: 'subscriber', count: '5' });
  assert.equal(noToken.status, 403, 'the start needs the form token');
  assert.equal(s.h.server.ctx.db.prepare('SELECT count(*) FROM keap_imports').pluck().get(), 0, 'nothing was started');
  assert.equal(s.h.server.ctx.db.prepare("SELECT count(*) FROM events WHERE action = 'keap_import_batch'").pluck().get(), 0);
});

test('an import creates, links and skips with reasons, sends no welcome email unless asked, and records one event per batch', async (t) => {
  const s = await site(t);
  const { state } = s.h.sandbox;
  const tag = state.addTag({ name: 'Course buyers', category: { id: 77, name: 'Courses' } });
  const add = (id: number, email: string | undefined) => state.addContact({ id, given_name: `C${id}`, ...(email ? { email } : {}), tag_ids: [tag.id] });
  add(2001, 'new-one@example.com');
  add(2002, 'new-two@example.com');
  add(2003, undefined);
  add(2004, 'first@example.com, second@example.com');
  add(2005, 'twin@example.com');
  add(2006, 'TWIN@example.com');
  add(2007, 'unlinked@example.com');
  add(2008, 'linked@example.com');
  await s.h.server.ctx.members.create({ email: 'unlinked@example.com', username: 'unlinked', role: 'subscriber', password: null, keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] });
  await s.h.server.ctx.members.create({ email: 'linked@example.com', username: 'linked', role: 'subscriber', password: null, keapContactId: 2008, firstName: '', lastName: '', fields: {}, tags: [] });
  await s.h.server.ctx.members.create({ email: 'other@example.com', username: 'other', role: 'subscriber', password: null, keapContactId: 777, firstName: '', lastName: '', fields: {}, tags: [] });
  add(2009, 'other@example.com');

  const id = await startImport(s, { source: 'tag', tag_id: String(tag.id), role: 'member', on_existing: 'link' });
  await runJobs(s.h);
  const row = importRow(s.h, id);
  assert.equal(row.status, 'done');
  assert.deepEqual({ done: row.done, total: row.total, created: row.created, linked: row.linked, already: row.already_members }, { done: 9, total: 9, created: 3, linked: 1, already: 1 });
  assert.deepEqual(skippedOf(row), { [SKIP_REASONS.noEmail]: 1, [SKIP_REASONS.invalidEmail]: 1, [SKIP_REASONS.duplicateEmail]: 2 });

  const members = s.h.server.ctx.members;
  const created = members.findByContactId(2001)!;
  assert.equal(created.role, 'member');
  assert.deepEqual(created.tags.map((t) => t.name), ['Course buyers']);
  assert.equal(members.passwordHash(created.id), null, 'no password nobody would be told');
  assert.equal(members.findByEmail('unlinked@example.com')!.keapContactId, 2007, 'the unlinked member was linked');
  assert.equal(members.findByEmail('other@example.com')!.keapContactId, 777, 'a member linked to another contact keeps its link');

  await runJobs(s.h);
  assert.equal(s.h.smtp.messages.length, 0, 'no welcome emails by default');
  const batches = s.h.server.ctx.db.prepare("SELECT source, event_type, status, result FROM events WHERE action = 'keap_import_batch'").all() as Array<Record<string, string>>;
  assert.equal(batches.length, 1, 'one event-log row per batch, not one per contact');
  assert.deepEqual([batches[0]!.source, batches[0]!.event_type, batches[0]!.status], ['import', 'contact.import', 'done']);
  assert.match(batches[0]!.result ?? '', /9 contacts, 3 created, 1 linked, 1 already members, 4 skipped/);

  const page = await s.admin.get(`/admin/members/import/${id}`);
  assert.equal(page.status, 200);
  assert.match(page.text, /data-status="done"/);
  assert.match(page.text, /id="import-counts" data-done="9" data-total="9"/);
  assert.match(page.text, /<tr data-reason="duplicate email in Keap \(another contact has it\)" data-count="2">/);
  assert.equal(page.headers.refresh, undefined, 'a finished import stops refreshing');
  assert.match(page.text, new RegExp(`Keap contacts with tag “Courses: Course buyers” \\(${tag.id}\\), as <strong>Member</strong>`), 'the tag as the form listed it, the role by its name');
  assert.match(page.text, new RegExp(`<a href="/admin/members\\?tag(=|&#x3D;)${tag.id}" id="import-members-link">See the members</a>`), 'a finished import links to its members');

  // With "skip" an unlinked member's email is left alone; with welcome emails ticked each new member gets one.
  const tag2 = state.addTag({ name: 'Second wave' });
  state.addContact({ id: 3001, email: 'wave@example.com', tag_ids: [tag2.id] });
  state.addContact({ id: 3002, email: 'alone@example.com', tag_ids: [tag2.id] });
  await members.create({ email: 'alone@example.com', username: 'alone', role: 'subscriber', password: null, keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] });
  const second = await startImport(s, { source: 'tag', tag_id: String(tag2.id), role: 'subscriber', on_existing: 'skip', welcome: 'yes' });
  await runJobs(s.h);
  const row2 = importRow(s.h, second);
  assert.deepEqual({ created: row2.created, linked: row2.linked }, { created: 1, linked: 0 });
  assert.deepEqual(skippedOf(row2), { [SKIP_REASONS.existingMember]: 1 });
  assert.equal(members.findByEmail('alone@example.com')!.keapContactId, null);
  assert.deepEqual(s.h.smtp.messages.map((m) => m.to), [['wave@example.com']], 'the welcome email went to the new member only');
  assert.notEqual(members.passwordHash(members.findByContactId(3001)!.id), null, 'a welcomed member got a password');
});

test('an import carries on after a restart from its last committed batch, and a cancel stops it after the batch in hand', async (t) => {
  const s = await site(t);
  const tag = tagContacts(s.h, 2_500);
  const id = await startImport(s, { source: 'tag', tag_id: String(tag), role: 'subscriber', on_existing: 'link' });
  assert.equal(await runJobs(s.h, 1), 1);
  assert.deepEqual([importRow(s.h, id).batches, importRow(s.h, id).done, memberCount(s.h)], [1, 1_000, 1_001]);

  const progress = await s.admin.get(`/admin/members/import/${id}`);
  assert.equal(progress.headers.refresh, '2', 'the page refreshes itself while the import runs');
  assert.match(progress.text, /<progress id="import-bar" max="100" value="40"/);
  assert.match(progress.text, /id="import-cancel"/);

  await s.h.restart({ worker: { start: false } });
  await runJobs(s.h);
  const row = importRow(s.h, id);
  assert.equal(row.status, 'done');
  assert.deepEqual({ batches: row.batches, done: row.done, created: row.created, already: row.already_members }, { batches: 3, done: 2_500, created: 2_500, already: 0 });
  assert.equal(memberCount(s.h), 2_501, 'every contact once, none twice');

  // Cancel: the batch in hand is the last one written.
  const tag2 = tagContacts(s.h, 2_500, { name: 'To cancel', firstId: 50_000 });
  const admin = await logIn(s.h);
  const cancelled = await startImport({ h: s.h, admin }, { source: 'tag', tag_id: String(tag2), role: 'subscriber', on_existing: 'link' });
  await runJobs(s.h, 1);
  const page = await admin.get(`/admin/members/import/${cancelled}`);
  const cancel = await admin.post(`/admin/members/import/${cancelled}/cancel`).type('form').send({ _csrf: csrfFrom(page.text) });
  assert.equal(cancel.status, 303);
  await runJobs(s.h);
  const after = importRow(s.h, cancelled);
  assert.deepEqual({ status: after.status, done: after.done, created: after.created }, { status: 'cancelled', done: 1_000, created: 1_000 });
  assert.equal(memberCount(s.h), 3_501);
});

test('5,000 tagged contacts are imported with the fewest Keap calls the lists allow, and the summary adds up', async (t) => {
  const s = await site(t);
  const count = 5_000;
  const tag = tagContacts(s.h, count);
  s.h.sandbox.state.addContact({ id: 20_000, email: 'import-10000@example.com', tag_ids: [tag] });
  s.h.sandbox.state.addContact({ id: 20_001, tag_ids: [tag] });
  const before = s.h.sandbox.state.requests.length;
  const id = await startImport(s, { source: 'tag', tag_id: String(tag), role: 'subscriber', on_existing: 'link' });
  await runJobs(s.h);
  const row = importRow(s.h, id);
  assert.equal(row.status, 'done');
  assert.deepEqual(
    { total: row.total, done: row.done, created: row.created, skipped: skippedOf(row) },
    { total: count + 2, done: count + 2, created: count, skipped: { [SKIP_REASONS.duplicateEmail]: 1, [SKIP_REASONS.noEmail]: 1 } },
  );
  assert.equal(memberCount(s.h), count + 1);

  // The fewest: the count on the confirmation page, the contact model, the tag list once, then per page of 1,000
  // tagged contacts one list call and as few id look-ups as keep their URLs short.
  const calls = keapCallsSince(s.h, before);
  const ids = [...s.h.sandbox.state.contacts.values()].filter((c) => c.tag_ids.includes(tag)).map((c) => c.id);
  let lookups = 0;
  for (let i = 0; i < ids.length; i += 1_000) lookups += idFilterChunks(ids.slice(i, i + 1_000)).length;
  const pages = Math.ceil(ids.length / 1_000);
  const minimum = 1 + 1 + 1 + pages + lookups;
  const byKind = (re: RegExp) => calls.filter((c) => re.test(c.path)).length;
  assert.deepEqual(
    { counts: byKind(/\/v1\/tags\/\d+\/contacts$/), model: byKind(/\/v2\/contacts\/model$/), tags: byKind(/\/v1\/tags$/), pages: byKind(/\/v2\/tags\/\d+\/contacts$/), lookups: byKind(/\/v2\/contacts$/) },
    { counts: 1, model: 1, tags: 1, pages, lookups },
  );
  assert.equal(calls.length, minimum, `made ${calls.length} Keap calls, the fewest is ${minimum}`);
  assert.ok(calls.length < count / 200, `${calls.length} calls for ${count} contacts (a read per contact would be ${count * 2})`);
  assert.equal(row.keap_calls, pages + lookups + 1, 'the import counts the calls its batches made');
});

test('importing every contact reads whole pages of contacts, and each contact made or linked a member is a keap.event from the import', async (t) => {
  const s = await site(t, { KEAP_USERNAME_FIELD: 'Username' });
  const heard: Array<{ objectType: string; objectId: string; eventType: string; source: string; raw: Record<string, unknown> }> = [];
  s.h.server.ctx.hooks.addAction('keap.event', (event) => void heard.push(event));
  const before = s.h.sandbox.state.requests.length;
  const id = await startImport(s, { source: 'all', role: 'subscriber', on_existing: 'link' });
  await runJobs(s.h);
  const row = importRow(s.h, id);
  // The seeded account: five contacts, one of them without an email.
  assert.deepEqual({ status: row.status, total: row.total, done: row.done, created: row.created, skipped: skippedOf(row) }, { status: 'done', total: 5, done: 5, created: 4, skipped: { [SKIP_REASONS.noEmail]: 1 } });
  const lists = keapCallsSince(s.h, before).filter((c) => c.path === '/crm/rest/v2/contacts');
  assert.equal(lists.length, 1, 'one page of contacts, read whole (no id look-ups)');
  assert.deepEqual(heard.map((e) => [e.objectType, e.eventType, e.source]), Array.from({ length: 4 }, () => ['contact', 'contact.import', 'import']));
  assert.deepEqual(heard.map((e) => Number(e.objectId)).sort(), [SEED.contacts.ada, SEED.contacts.grace, SEED.contacts.alan, SEED.contacts.margaret].sort());
  const ada = s.h.server.ctx.members.findByContactId(SEED.contacts.ada)!;
  assert.deepEqual(ada.tags.map((tag) => [tag.name, tag.category]).sort(), [['Member', 'Membership'], ['Newsletter', ''], ['VIP', 'Membership']]);
  assert.equal(ada.fields['Favorite Color'], 'Purple', 'custom fields by label, as an add takes them');
  const grace = s.h.server.ctx.members.findByContactId(SEED.contacts.grace)!;
  assert.equal(grace.username, 'ghopper', 'the Keap username field, as an add takes it');
  const alan = s.h.server.ctx.members.findByContactId(SEED.contacts.alan)!;
  assert.notEqual(s.h.server.ctx.members.passwordHash(alan.id), null, 'the password in Keap\'s password field is his');
});

test('an import whose tag is deleted in Keap before it runs stops, failed, saying why', async (t) => {
  const s = await site(t);
  const tag = tagContacts(s.h, 20);
  const id = await startImport(s, { source: 'tag', tag_id: String(tag), role: 'subscriber', on_existing: 'link' });
  s.h.sandbox.state.tags.delete(tag);
  await runJobs(s.h);
  const row = importRow(s.h, id) as ImportRow & { last_error: string };
  assert.equal(row.status, 'failed');
  assert.match(row.last_error, /404/);
  assert.equal(memberCount(s.h), 1, 'nobody was imported');
  const page = await s.admin.get(`/admin/members/import/${id}`);
  assert.match(page.text, /id="import-problem"><strong>Stopped:<\/strong> Keap GET \/rest\/v2\/tags\/\d+\/contacts failed with 404/);
  assert.doesNotMatch(page.text, /id="import-cancel"/);
  const form = await s.admin.get('/admin/members/import');
  assert.doesNotMatch(form.text, /id="import-running"/, 'a failed import does not hold up the next');
});
