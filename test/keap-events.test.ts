import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { hookDelivery, isHookDelivery } from '../src/features/keap-events/delivery.js';
import { validateKeapRequest } from './support/keap-openapi.js';
import { SEED, type KeapSandboxOptions } from '../tools/keap-sandbox/index.js';
import { startHarness, type Harness } from './support/harness.js';
import { csrfFrom } from './support/pages.js';
import { freePort } from './support/waiting.js';

const { contacts: C, tags: T } = SEED;
const ADMIN = { email: 'owner@example.com', password: 'owner password 2026!' };

interface Site {
  h: Harness;
  admin: request.Agent;
  /** The hook URL as Settings → Keap events shows it. */
  url: string;
}

/** memberhook against the sandbox, with an administrator logged in; the worker idle so the tests run jobs one by one. */
async function site(t: TestContext, env: Record<string, string> = {}, sandbox: KeapSandboxOptions = {}): Promise<Site> {
  const h = await startHarness({ env: { WEBHOOK_REJECTION_LIMIT: '5', ...env }, sandbox, start: { worker: { start: false } } });
  t.after(() => h.close());
  await h.server.ctx.members.createAdministrator(ADMIN);
  const admin = request.agent(h.server.url);
  const form = await admin.get('/admin/login');
  const login = await admin.post('/admin/login').type('form').send({ _csrf: csrfFrom(form.text), login: ADMIN.email, password: ADMIN.password });
  assert.equal(login.status, 303);
  return { h, admin, url: await shownHookUrl(admin) };
}

async function shownHookUrl(admin: request.Agent): Promise<string> {
  const page = await admin.get('/admin/settings/keap-events');
  assert.equal(page.status, 200);
  const url = /<code id="hook-url" data-hook-url>([^<]+)<\/code>/.exec(page.text)?.[1];
  assert.ok(url, 'the page shows the hook URL');
  return new URL(url).pathname;
}

async function deliver(s: Site, body: unknown, options: { path?: string; headers?: Record<string, string>; raw?: string } = {}) {
  const res = await fetch(`${s.h.server.url}${options.path ?? s.url}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.raw ?? JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

type Row = { id: number; source: string; action: string; contact_id: number | null; event_type: string | null; status: string; coalesced: number; result: string | null };
const events = (s: Site) => s.h.server.ctx.db.prepare('SELECT id, source, action, contact_id, event_type, status, coalesced, result FROM events ORDER BY id').all() as Row[];

test('the hook URL answers Keap\'s handshake by echoing X-Hook-Secret; a wrong token is a 404 that records nothing, limited per address', async (t) => {
  const s = await site(t);
  assert.match(s.url, /^\/webhooks\/keap\/hooks\/[\w-]{43}$/, 'an unguessable token in the path');
  const handshake = await deliver(s, {}, { headers: { 'X-Hook-Secret': 'a1b2c3-secret' } });
  assert.equal(handshake.status, 200);
  assert.equal(handshake.headers.get('x-hook-secret'), 'a1b2c3-secret');
  assert.deepEqual(events(s), [], 'a handshake is not an event');

  const wrong = '/webhooks/keap/hooks/not-the-token';
  for (let i = 0; i < 5; i++) assert.equal((await deliver(s, { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: C.ada }] }, { path: wrong })).status, 404);
  const held = await deliver(s, {}, { path: wrong });
  assert.equal(held.status, 429, 'past the refusal limit the address is held back');
  assert.ok(Number(held.headers.get('retry-after')) > 0);
  assert.deepEqual(events(s), [], 'refusals record nothing');
});

/** Runs every runnable job through the site's worker, one at a time as its loop would, until none is left. */
async function runJobs(s: Site): Promise<void> {
  const { ctx } = s.h.server;
  for (let job = ctx.events.claimNext('test', Date.now(), 60_000); job; job = ctx.events.claimNext('test', Date.now(), 60_000)) {
    const t0 = Date.now();
    await ctx.worker.runClaimed(job);
    if (process.env.TRACE_JOBS) console.log('job', job.action, Date.now() - t0);
  }
}

test('a delivery is written once and answered at once, then fans out to one job per member it names, which a campaign post for the same contact folds into', async (t) => {
  const s = await site(t);
  for (const id of [C.ada, C.grace]) await s.h.post({ contactId: String(id), wpf_action: 'add' });
  await runJobs(s);
  const before = events(s).length;
  const delivered = await deliver(s, {
    event_key: 'contact.edit',
    object_type: 'contact',
    // Margaret is no member: her change needs no job.
    object_keys: [{ id: C.ada, apiUrl: '', timestamp: '2026-11-30T00:00:00Z' }, { id: String(C.grace) }, { id: C.ada }, { id: C.margaret }],
  });
  assert.equal(delivered.status, 200);
  const delivery = events(s).find((e) => e.id === delivered.body.event_id)!;
  assert.deepEqual([delivery.source, delivery.action, delivery.event_type, delivery.status], ['rest_hook', 'keap_hook_delivery', 'contact.edit', 'queued']);

  // The delivery's own job runs: one update per member, from the hook.
  const { ctx } = s.h.server;
  await ctx.worker.runClaimed(ctx.events.claimNext('test', Date.now(), 60_000)!);
  const updates = () => events(s).slice(before).filter((e) => e.action === 'update');
  assert.deepEqual(updates().map((e) => [e.contact_id, e.source, e.event_type]), [[C.ada, 'rest_hook', 'contact.edit'], [C.grace, 'rest_hook', 'contact.edit']]);
  assert.match(events(s).find((e) => e.id === delivery.id)!.result ?? '', /^2 update jobs queued for contact.edit$/);

  // A campaign's post about Ada's same change, while her update still waits: it folds in, one Keap read for both.
  const posted = await s.h.post({ contactId: String(C.ada), wpf_action: 'update' });
  assert.equal(posted.status, 200);
  assert.equal(posted.body.event_id, updates()[0]!.id);
  assert.equal(updates()[0]!.coalesced, 1);

  // Keap delivering the same again (it did not see our 200) is harmless: the jobs fold or run again.
  assert.equal((await deliver(s, { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: C.grace }] })).status, 200);
  await runJobs(s);
  assert.ok(events(s).every((e) => e.status === 'done' || e.status === 'skipped'), JSON.stringify(events(s)));
});

test('tag events update the named contacts\' tags; contact.add adds members only when turned on; other events are recorded only', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  const heard: unknown[] = [];
  ctx.hooks.addAction('keap.event', (event) => void heard.push(event));
  // Ada becomes a member through a campaign's post first.
  await s.h.post({ contactId: String(C.ada), wpf_action: 'add' });
  await runJobs(s);
  assert.ok(ctx.members.findByContactId(C.ada));

  s.h.sandbox.state.removeTag(C.ada, T.vip);
  assert.equal((await deliver(s, { event_key: 'contactGroup.removed', object_type: 'contactGroup', object_keys: [{ id: T.vip, contactDetails: [{ id: C.ada }] }] })).status, 200);
  await runJobs(s);
  assert.deepEqual(ctx.members.findByContactId(C.ada)!.tags.map((tag) => tag.id).sort(), [T.member, T.newsletter].sort(), 'VIP is gone from the member');
  assert.ok(events(s).some((e) => e.action === 'update_tags' && e.contact_id === C.ada && e.event_type === 'contactGroup.removed' && e.status === 'done'));

  assert.equal((await deliver(s, { event_key: 'contact.add', object_type: 'contact', object_keys: [{ id: C.grace }] })).status, 200);
  assert.equal((await deliver(s, { event_key: 'order.add', object_type: 'order', object_keys: [{ id: 77 }] })).status, 200);
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(C.grace), undefined, 'contact.add does nothing until turned on');
  assert.ok(events(s).some((e) => e.event_type === 'order.add' && /recorded; no member action/.test(e.result ?? '')));
  // Every object of every delivery reaches plugins as one normalized event.
  assert.deepEqual(heard, [
    { objectType: 'contactGroup', objectId: String(T.vip), eventType: 'contactGroup.removed', source: 'rest_hook', raw: { id: T.vip, contactDetails: [{ id: C.ada }] } },
    { objectType: 'contact', objectId: String(C.grace), eventType: 'contact.add', source: 'rest_hook', raw: { id: C.grace } },
    { objectType: 'order', objectId: '77', eventType: 'order.add', source: 'rest_hook', raw: { id: 77 } },
  ]);

  const page = await s.admin.get('/admin/settings/keap-events');
  const saved = await s.admin.post('/admin/settings/keap-events/rules').type('form').send({ _csrf: csrfFrom(page.text), add_members: 'yes', on_delete: 'block' });
  assert.equal(saved.status, 303);
  assert.equal((await deliver(s, { event_key: 'contact.add', object_type: 'contact', object_keys: [{ id: C.grace }] })).status, 200);
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(C.grace)?.email, 'grace@example.com', 'turned on: the new contact is a member');
});

test('a delivery that is not what Keap documents is a 400 naming what is wrong, and records nothing', async (t) => {
  const s = await site(t);
  const cases: Array<[unknown, RegExp, string?]> = [
    [{ object_type: 'contact', object_keys: [{ id: 1 }] }, /event_key/],
    [{ event_key: 'contact.edit', object_type: 'contact' }, /object_keys/],
    [{ event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 'abc' }] }, /object_keys\[0\]\.id|object_keys\.0\.id/],
    [{ event_key: 'contact edit', object_type: 'contact', object_keys: [] }, /event key such as contact.edit/],
    [{ event_key: 'contact.edit', object_type: 'contact', object_keys: Array.from({ length: 1001 }, (_, i) => ({ id: i + 1 })) }, /1000|1,000/],
    [undefined, /not valid JSON/, '{"event_key": '],
  ];
  for (const [body, message, raw] of cases) {
    const res = await deliver(s, body, raw === undefined ? {} : { raw });
    assert.equal(res.status, 400, JSON.stringify(body)?.slice(0, 80));
    assert.match(String(res.body.error), message);
  }
  assert.deepEqual(events(s), []);
});

test('a new token keeps the old hook URL working for the grace period chosen, then refuses it', async (t) => {
  const s = await site(t);
  const old = s.url;
  const rotate = async (grace: string) => {
    const page = await s.admin.get('/admin/settings/keap-events');
    return s.admin.post('/admin/settings/keap-events/rotate').type('form').send({ _csrf: csrfFrom(page.text), grace_minutes: grace, confirm: 'yes' });
  };
  const page = await s.admin.get('/admin/settings/keap-events');
  const refused = await s.admin.post('/admin/settings/keap-events/rotate').type('form').send({ _csrf: csrfFrom(page.text), grace_minutes: 'soon', confirm: 'yes' });
  assert.equal(refused.status, 400);
  assert.match(refused.text, /Grace period: a whole number of minutes/);
  assert.match(refused.text, /id="grace-minutes" name="grace_minutes" type="text" inputmode="numeric" value="soon" maxlength="6" aria-invalid="true"/, 'the wrong value is kept and marked');
  const unticked = await s.admin.post('/admin/settings/keap-events/rotate').type('form').send({ _csrf: csrfFrom(page.text), grace_minutes: '30' });
  assert.equal(unticked.status, 400);
  assert.match(unticked.text, /Tick the box to confirm/);
  assert.match(unticked.text, /id="grace-minutes" name="grace_minutes" type="text" inputmode="numeric" value="30" maxlength="6">/, 'a right value is kept and not marked wrong');
  assert.equal(await shownHookUrl(s.admin), old, 'nothing changed');

  assert.equal((await rotate('60')).status, 303);
  const second = await shownHookUrl(s.admin);
  assert.notEqual(second, old);
  const delivery = { event_key: 'order.add', object_type: 'order', object_keys: [{ id: 1 }] };
  assert.equal((await deliver(s, delivery, { path: old })).status, 200, 'the old URL works during the grace period');
  assert.equal((await deliver(s, delivery, { path: second })).status, 200);
  assert.match((await s.admin.get('/admin/settings/keap-events')).text, /data-previous-token>The previous URL keeps working until/);

  assert.equal((await rotate('0')).status, 303);
  assert.equal((await deliver(s, delivery, { path: second })).status, 404, 'no grace: the previous URL is refused at once');
  assert.equal((await deliver(s, delivery, { path: old })).status, 404);
  assert.equal((await deliver(s, delivery, { path: await shownHookUrl(s.admin) })).status, 200);
});

test('the poller updates members whose contacts changed since its checkpoint, unless a hook or post got there first, and shows what it did', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  await s.h.post({ contactId: String(C.ada), wpf_action: 'add' });
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(C.ada)!.lastName, 'Lovelace');
  const page = await s.admin.get('/admin/settings/keap-events');
  assert.match(page.text, /data-poll-resource="contacts" data-poll-minutes="0"/, 'off until asked for');
  assert.match(page.text, /Each is off until it has an interval; registering subscriptions turns\s+on, at 15 minutes/, 'the page says polling starts off, not that it runs every few minutes');

  // Ada changes in Keap while no hook tells us (none registered, or the site was down).
  s.h.sandbox.state.updateContact(C.ada, { family_name: 'King' });
  const pollNow = async (minutes: string) => {
    const form = await s.admin.get('/admin/settings/keap-events');
    return s.admin.post('/admin/settings/keap-events/poll').type('form').send({ _csrf: csrfFrom(form.text), resource: 'contacts', interval_minutes: minutes });
  };
  const unknown = await s.admin.post('/admin/settings/keap-events/poll-now').type('form').send({ _csrf: csrfFrom((await s.admin.get('/admin/settings/keap-events')).text), resource: 'invoices' });
  assert.equal(unknown.status, 400);
  assert.match(unknown.text, /What to poll: one of contacts, tags, orders\. Nothing was changed\./);
  const bad = await pollNow('often');
  assert.equal(bad.status, 400);
  assert.match(bad.text, /Poll every: a whole number of minutes from 0 \(off\) to 1440/);
  assert.equal((await pollNow('5')).status, 303);
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(C.ada)!.lastName, 'King', 'the poll caught the change');
  const listed = s.h.sandbox.state.requestsTo('GET', '/crm/rest/v1/contacts');
  assert.ok(listed.length > 0 && listed.every((call) => call.query.until !== undefined));
  for (const call of listed) assert.deepEqual(validateKeapRequest({ method: call.method, path: call.path, query: call.query }), []);
  const polled = events(s).filter((e) => e.action === 'update' && e.source === 'poller');
  assert.deepEqual(polled.map((e) => [e.contact_id, e.event_type, e.status]), [[C.ada, 'contact.edit', 'done']]);
  const shown = (await s.admin.get('/admin/settings/keap-events')).text;
  assert.match(shown, /data-poll-resource="contacts" data-poll-minutes="5"/);
  assert.match(contactsPart(shown), /data-poll-last>[^<]*: \d+ changed since [^,]+, 1 member updates queued, 0 already synced/);
  assert.doesNotMatch(contactsPart(shown), /Checkpoint<\/dt><dd><span class="muted">none yet/, 'a checkpoint is kept');

  // The next poll starts a little before the checkpoint and sees Ada again, but her change is already synced.
  assert.equal((await pollNow('5')).status, 303);
  await runJobs(s);
  assert.equal(events(s).filter((e) => e.action === 'update' && e.source === 'poller').length, 1, 'no second update for the same change');
  assert.match(contactsPart((await s.admin.get('/admin/settings/keap-events')).text), /data-poll-last>[^<]*: \d+ changed since [^,]+, 0 member updates queued, 1 already synced/);
  // One scheduled poll waits for its time, whatever was asked meanwhile.
  assert.equal(ctx.db.prepare("SELECT count(*) FROM events WHERE action = 'keap_poll_contacts' AND status = 'queued'").pluck().get(), 1);
});

/** The contacts part of the poller's section of the page. */
function contactsPart(page: string): string {
  return /<div class="poll-resource" id="poll-contacts"[\s\S]*?<\/div>\s*<\/div>/.exec(page)?.[0] ?? '';
}

test('end to end with the sandbox: registering subscribes and verifies the hooks; Keap\'s deliveries update members; while the site refused them, the poller catches up and brings the hook back', async (t) => {
  const port = await freePort();
  const s = await site(t, { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` }, { hookBatchWindowMs: 20 });
  const { ctx } = s.h.server;
  const { sandbox } = s.h;
  await s.h.post({ contactId: String(C.ada), wpf_action: 'add' });
  await runJobs(s);

  const page = await s.admin.get('/admin/settings/keap-events');
  const checked = [...page.text.matchAll(/<input type="checkbox" name="key" value="([^"]+)" checked>/g)].map((m) => m[1]).sort();
  assert.deepEqual(checked, ['contact.add', 'contact.delete', 'contact.edit', 'contactGroup.applied', 'contactGroup.removed'], 'the member events are ticked on a first registration');
  const keys = ['contact.edit', 'contactGroup.applied', 'contactGroup.removed'];
  const body = new URLSearchParams({ _csrf: csrfFrom(page.text) });
  for (const key of keys) body.append('key', key);
  const registered = await s.admin.post('/admin/settings/keap-events/register').type('form').send(body.toString());
  assert.equal(registered.status, 303, registered.text.slice(0, 300));
  const hooks = [...sandbox.state.hooks.values()];
  assert.deepEqual(hooks.map((h) => [h.eventKey, h.status, h.hookUrl]).sort(), keys.map((k) => [k, 'Verified', `http://127.0.0.1:${port}${s.url}`]));
  const listed = (await s.admin.get('/admin/settings/keap-events')).text;
  assert.equal([...listed.matchAll(/<tr data-hook="[^"]+" data-status="Verified">/g)].length, 3);
  assert.match(listed, /data-poll-resource="contacts" data-poll-minutes="15"/, 'polling came on with the hooks');
  assert.match(listed, /data-poll-resource="tags" data-poll-minutes="15"/);
  assert.match(listed, /data-poll-resource="orders" data-poll-minutes="0"/, 'no order hooks: no order polling');

  // Ada changes in Keap: the deliveries reach memberhook and her member follows.
  sandbox.state.updateContact(C.ada, { family_name: 'King' });
  sandbox.state.removeTag(C.ada, T.vip);
  await sandbox.hooks.flush();
  await runJobs(s);
  const ada = ctx.members.findByContactId(C.ada)!;
  assert.equal(ada.lastName, 'King');
  assert.equal(ada.tags.some((tag) => tag.id === T.vip), false);
  // The tag event needed no job of its own: her full update (from the contact.edit delivery) waited, and read her tags.
  assert.ok(events(s).some((e) => e.source === 'rest_hook' && e.action === 'keap_hook_delivery' && e.event_type === 'contactGroup.removed' && e.status === 'done'));

  // The site turns deliveries away (as a site that is down, or answers 410, looks to Keap): the hook goes Inactive,
  // and what changed meanwhile is never delivered.
  const editHook = hooks.find((h) => h.eventKey === 'contact.edit')!;
  sandbox.hooks.failNextDeliveries(editHook.hookUrl, 1, { status: 410 });
  sandbox.state.updateContact(C.ada, { family_name: 'Lovelace-King' });
  await sandbox.hooks.flush();
  assert.equal(sandbox.state.hooks.get(editHook.key)!.status, 'Inactive');
  sandbox.state.updateContact(C.ada, { given_name: 'Augusta Ada' });
  await sandbox.hooks.flush();
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(C.ada)!.firstName, 'Ada', 'nothing was delivered');

  // The poll (asked for now) catches both changes, and asks Keap to verify the Inactive hook, which comes back.
  const form = await s.admin.get('/admin/settings/keap-events');
  assert.equal((await s.admin.post('/admin/settings/keap-events/poll').type('form').send({ _csrf: csrfFrom(form.text), resource: 'contacts', interval_minutes: '15' })).status, 303);
  await runJobs(s);
  const caught = ctx.members.findByContactId(C.ada)!;
  assert.deepEqual([caught.firstName, caught.lastName], ['Augusta Ada', 'Lovelace-King'], 'nothing lost');
  assert.equal(sandbox.state.hooks.get(editHook.key)!.status, 'Verified', 'the poll brought the hook back');
  assert.match((await s.admin.get('/admin/settings/keap-events')).text, /asked Keap to verify contact\.edit/);
});

test('a contact deleted in Keap blocks its member by default (no login, sessions ended) until an admin unblocks it; delete and nothing are choices; administrators are never touched', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  for (const id of [C.ada, C.grace, C.margaret]) await s.h.post({ contactId: String(id), wpf_action: 'add' });
  await runJobs(s);
  const ada = ctx.members.findByContactId(C.ada)!;
  // Ada logs in with the password Keap holds for her.
  const password = s.h.sandbox.state.customFieldValue(C.ada, 'Password') as string;
  const browser = request.agent(s.h.server.url);
  const logIn = async () => {
    const form = await browser.get('/login');
    return browser.post('/login').type('form').send({ _csrf: csrfFrom(form.text), login: ada.email, password });
  };
  assert.equal((await logIn()).status, 303);
  assert.equal((await browser.get('/account')).status, 200);

  assert.equal((await deliver(s, { event_key: 'contact.delete', object_type: 'contact', object_keys: [{ id: C.ada }] })).status, 200);
  await runJobs(s);
  assert.match(ctx.members.findByContactId(C.ada)!.blocked?.reason ?? '', /its Keap contact 101 was deleted/);
  assert.equal((await browser.get('/account')).status, 303, 'her session ended');
  const refused = await logIn();
  assert.equal(refused.status, 403);
  assert.match(refused.text, /This account is blocked/);
  const memberPage = await s.admin.get(`/admin/members/${ada.id}`);
  assert.match(memberPage.text, /data-blocked>blocked</);
  assert.match(memberPage.text, /id="unblock-form"/);
  const unblocked = await s.admin.post(`/admin/members/${ada.id}/unblock`).type('form').send({ _csrf: csrfFrom(memberPage.text) });
  assert.equal(unblocked.status, 303);
  assert.equal((await logIn()).status, 303, 'unblocked: she logs in again');

  const setOnDelete = async (choice: string) => {
    const page = await s.admin.get('/admin/settings/keap-events');
    return s.admin.post('/admin/settings/keap-events/rules').type('form').send({ _csrf: csrfFrom(page.text), on_delete: choice });
  };
  assert.equal((await setOnDelete('explode')).status, 400);
  assert.equal((await setOnDelete('delete')).status, 303);
  assert.equal((await deliver(s, { event_key: 'contact.delete', object_type: 'contact', object_keys: [{ id: C.grace }] })).status, 200);
  assert.equal((await setOnDelete('nothing')).status, 303);
  assert.equal((await deliver(s, { event_key: 'contact.delete', object_type: 'contact', object_keys: [{ id: C.margaret }] })).status, 200);
  await runJobs(s);
  // The choice is read when the job runs: both ran under "nothing", so ask again for Grace under "delete".
  assert.ok(ctx.members.findByContactId(C.margaret) && !ctx.members.findByContactId(C.margaret)!.blocked, 'nothing: left as it is');
  assert.equal((await setOnDelete('delete')).status, 303);
  assert.equal((await deliver(s, { event_key: 'contact.delete', object_type: 'contact', object_keys: [{ id: C.grace }] })).status, 200);
  await runJobs(s);
  assert.equal(ctx.members.findByContactId(C.grace), undefined, 'delete: the member is gone');

  // An administrator linked to a contact is never blocked or deleted by Keap, nor blocked from its page.
  await ctx.members.update(ada.id, { profile: {}, role: 'administrator' });
  assert.equal((await deliver(s, { event_key: 'contact.delete', object_type: 'contact', object_keys: [{ id: C.ada }] })).status, 200);
  await runJobs(s);
  assert.ok(ctx.members.findById(ada.id) && !ctx.members.findById(ada.id)!.blocked);
  const adminPage = await s.admin.get(`/admin/members/${ada.id}`);
  assert.doesNotMatch(adminPage.text, /id="block-form"/);
  const blockAdmin = await s.admin.post(`/admin/members/${ada.id}/block`).type('form').send({ _csrf: csrfFrom(adminPage.text) });
  assert.equal(blockAdmin.status, 409);
  assert.match(blockAdmin.text, /An administrator cannot be blocked/);
});

/** Registers the given event keys from the page, as an admin ticking them and pressing Register subscriptions. */
async function register(s: Site, keys: string[]): Promise<void> {
  const page = await s.admin.get('/admin/settings/keap-events');
  const body = new URLSearchParams({ _csrf: csrfFrom(page.text) });
  for (const key of keys) body.append('key', key);
  const registered = await s.admin.post('/admin/settings/keap-events/register').type('form').send(body.toString());
  assert.equal(registered.status, 303, registered.text.slice(0, 300));
}

async function pollNow(s: Site, resource: string): Promise<void> {
  const page = await s.admin.get('/admin/settings/keap-events');
  const asked = await s.admin.post('/admin/settings/keap-events/poll-now').type('form').send({ _csrf: csrfFrom(page.text), resource });
  assert.equal(asked.status, 303, asked.text.slice(0, 300));
}

test('while the site was down, tags applied and orders placed are caught by the poller: the tags reach the members, each order becomes one keap.event, the hooks come back', async (t) => {
  const port = await freePort();
  const s = await site(t, { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` }, { hookBatchWindowMs: 20, hookRetryDelaysMs: [0, 0, 0] });
  const { ctx } = s.h.server;
  const { sandbox } = s.h;
  const heard: Array<{ objectType: string; objectId: string; eventType: string; source: string }> = [];
  ctx.hooks.addAction('keap.event', (e) => void heard.push({ objectType: e.objectType, objectId: e.objectId, eventType: e.eventType, source: e.source }));
  for (const id of [C.ada, C.grace]) await s.h.post({ contactId: String(id), wpf_action: 'add' });
  await runJobs(s);
  assert.deepEqual(ctx.members.findByContactId(C.grace)!.tags.map((tag) => tag.id), [T.member]);

  await register(s, ['contactGroup.applied', 'order.add', 'order.edit']);
  const hooks = [...sandbox.state.hooks.values()];
  assert.ok(hooks.every((h) => h.status === 'Verified'));
  const shown = (await s.admin.get('/admin/settings/keap-events')).text;
  assert.match(shown, /data-poll-resource="tags" data-poll-minutes="15"/, 'tag and order polling came on with their hooks');
  assert.match(shown, /data-poll-resource="orders" data-poll-minutes="15"/);
  await runJobs(s);
  const before = { events: heard.length, jobs: events(s).length };

  // The site is down: every attempt of both deliveries fails (Keap tries four times), and the hooks go Inactive.
  sandbox.hooks.failNextDeliveries(hooks[0]!.hookUrl, 8);
  sandbox.state.applyTag(C.grace, T.vip);
  const order = sandbox.state.addOrder({ contact_id: C.ada, title: 'Annual membership', total: 9_900 });
  for (let attempt = 0; attempt < 4; attempt++) await sandbox.hooks.flush();
  const statuses = Object.fromEntries(hooks.map((h) => [h.eventKey, sandbox.state.hooks.get(h.key)!.status]));
  assert.deepEqual(statuses, { 'contactGroup.applied': 'Inactive', 'order.add': 'Inactive', 'order.edit': 'Verified' }, 'no order was edited: that hook had nothing to fail');
  await runJobs(s);
  assert.equal(heard.length, before.events, 'nothing reached the site');

  // Back up: the polls (asked for now) catch both, and ask Keap to verify the Inactive hooks.
  await pollNow(s, 'tags');
  await pollNow(s, 'orders');
  await runJobs(s);
  assert.deepEqual(ctx.members.findByContactId(C.grace)!.tags.map((tag) => tag.id).sort(), [T.member, T.vip].sort(), 'the tag applied while down reached the member');
  const caught = events(s).slice(before.jobs).filter((e) => e.source === 'poller' && e.action === 'update_tags');
  assert.deepEqual(caught.map((e) => [e.contact_id, e.event_type, e.status]), [[C.grace, 'contactGroup.applied', 'done']]);
  assert.deepEqual(heard.slice(before.events), [
    { objectType: 'contact', objectId: String(C.grace), eventType: 'contactGroup.applied', source: 'poller' },
    { objectType: 'order', objectId: String(order.id), eventType: 'order.add', source: 'poller' },
  ]);
  assert.ok([...sandbox.state.hooks.values()].every((h) => h.status === 'Verified'), 'the polls brought the hooks back');
  const pollCalls = [...sandbox.state.requestsTo('GET', /\/rest\/v2\/(tags\/\d+\/contacts|orders)$/)];
  assert.ok(pollCalls.length >= 2);
  for (const call of pollCalls) assert.deepEqual(validateKeapRequest({ method: call.method, path: call.path, query: call.query }), [], `${call.path} matches Keap's spec`);
  assert.match(String(pollCalls.find((c) => c.path.endsWith('/orders'))!.query.filter), /^modified_since_time==\d{4}-\d\d-\d\dT[\d:.]+Z;modified_until_time==\d{4}-\d\d-\d\dT[\d:.]+Z$/);
  const page = (await s.admin.get('/admin/settings/keap-events')).text;
  assert.match(page, /id="poll-tags"[\s\S]*?data-poll-last>[^<]*: 1 changed since [^,]+, 1 member updates queued, 0 already synced, 1 events/);
  assert.match(page, /id="poll-orders"[\s\S]*?data-poll-last>[^<]*: 1 changed since [^,]+, 1 events/);

  // Polled again (the overlap reads the same changes): nothing is handed on twice.
  const after = { events: heard.length, jobs: events(s).length };
  await pollNow(s, 'tags');
  await pollNow(s, 'orders');
  await runJobs(s);
  assert.equal(heard.length, after.events, 'no event twice');
  assert.deepEqual(events(s).slice(after.jobs).map((e) => e.action).sort(), ['keap_poll_orders', 'keap_poll_tags'], 'no member job twice');

  // The order is paid after the hooks came back: the hook delivers order.edit, and a poll after it adds nothing.
  sandbox.state.updateOrder(order.id, { status: 'PAID' });
  await sandbox.hooks.flush();
  await runJobs(s);
  assert.deepEqual(heard.slice(after.events), [{ objectType: 'order', objectId: String(order.id), eventType: 'order.edit', source: 'rest_hook' }]);
  await pollNow(s, 'orders');
  await runJobs(s);
  assert.equal(heard.length, after.events + 1, 'the poll skipped what the hook delivered');

  // Down again while the order is retitled: the poll reports it as the edit it is.
  sandbox.hooks.failNextDeliveries(hooks[0]!.hookUrl, 4);
  sandbox.state.updateOrder(order.id, { title: 'Annual membership (renewed)' });
  for (let attempt = 0; attempt < 4; attempt++) await sandbox.hooks.flush();
  await pollNow(s, 'orders');
  await runJobs(s);
  assert.deepEqual(heard.slice(after.events + 1), [{ objectType: 'order', objectId: String(order.id), eventType: 'order.edit', source: 'poller' }]);
});

test('a hook and a poll of the same tag change cost one member update and one Keap read; a tag event for a contact whose full update waits adds no job', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  const { sandbox } = s.h;
  const heard: string[] = [];
  ctx.hooks.addAction('keap.event', (e) => void heard.push(`${e.eventType} ${e.objectId} ${e.source}`));
  for (const id of [C.ada, C.grace]) await s.h.post({ contactId: String(id), wpf_action: 'add' });
  await runJobs(s);
  // Tags are polled (every 15 minutes): what hooks deliver is then remembered for the polls to skip.
  const form = await s.admin.get('/admin/settings/keap-events');
  assert.equal((await s.admin.post('/admin/settings/keap-events/poll').type('form').send({ _csrf: csrfFrom(form.text), resource: 'tags', interval_minutes: '15' })).status, 303);
  await runJobs(s);
  const tagReads = (id: number) => sandbox.state.requestsTo('GET', `/crm/rest/v1/contacts/${id}/tags`).length;
  const graceReads = tagReads(C.grace);

  sandbox.state.applyTag(C.grace, T.vip);
  assert.equal((await deliver(s, { event_key: 'contactGroup.applied', object_type: 'contact', object_keys: [{ id: C.grace }] })).status, 200);
  const { ctx: c } = s.h.server;
  await c.worker.runClaimed(c.events.claimNext('test', Date.now(), 60_000)!);
  // A campaign's post about the same change, while the hook's job waits: it folds in.
  const posted = await s.h.post({ contactId: String(C.grace), wpf_action: 'update_tags' });
  const waiting = events(s).filter((e) => e.action === 'update_tags' && e.contact_id === C.grace);
  assert.equal(waiting.length, 1);
  assert.equal(posted.body.event_id, waiting[0]!.id);
  await runJobs(s);
  await pollNow(s, 'tags');
  await runJobs(s);
  assert.equal(events(s).filter((e) => e.action === 'update_tags' && e.contact_id === C.grace).length, 1, 'one member update for hook, post and poll');
  assert.equal(tagReads(C.grace) - graceReads, 1, 'one Keap read');
  assert.deepEqual(heard, [`contactGroup.applied ${C.grace} rest_hook`], 'one event: the poll skipped what the hook had delivered');
  assert.ok(ctx.members.findByContactId(C.grace)!.tags.some((tag) => tag.id === T.vip));

  // Ada's full update waits (a campaign post); a tag event about her meanwhile needs no job of its own.
  const adaReads = tagReads(C.ada);
  sandbox.state.applyTag(C.ada, T.paymentFailed);
  assert.equal((await deliver(s, { event_key: 'contactGroup.applied', object_type: 'contact', object_keys: [{ id: C.ada }] })).status, 200);
  await s.h.post({ contactId: String(C.ada), wpf_action: 'update' });
  // The delivery's job fans out first, while her update still waits.
  await runJobs(s);
  assert.deepEqual(events(s).filter((e) => e.contact_id === C.ada && ['update', 'update_tags'].includes(e.action)).slice(-1).map((e) => [e.action, e.status]), [['update', 'done']]);
  assert.equal(events(s).filter((e) => e.contact_id === C.ada && e.action === 'update_tags').length, 0);
  assert.equal(tagReads(C.ada) - adaReads, 1, 'one Keap read of her tags');
  assert.ok(ctx.members.findByContactId(C.ada)!.tags.some((tag) => tag.id === T.paymentFailed));
});

test('bursts of 1,000-object deliveries from the sandbox: each acked, every object fanned out, nothing lost', async (t) => {
  const port = await freePort();
  const s = await site(t, { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` }, { hookBatchWindowMs: 60_000 });
  const { ctx } = s.h.server;
  const { sandbox } = s.h;
  const members = [C.ada, C.grace, C.margaret];
  for (const id of members) await s.h.post({ contactId: String(id), wpf_action: 'add' });
  await runJobs(s);
  await register(s, ['contact.edit']);
  await runJobs(s);
  let heard = 0;
  ctx.hooks.addAction('keap.event', () => void heard++);

  // 3,500 contacts change: three full deliveries of 1,000 and one of 500, sent one after another.
  const edited: number[] = [...members];
  for (let i = 0; i < 3_500 - members.length; i++) edited.push(sandbox.state.addContact({ email: `burst${i}@example.com` }).id);
  for (const id of edited) sandbox.state.updateContact(id, { given_name: `Edited ${id}` });
  const records = await sandbox.hooks.flush();
  assert.deepEqual(records.map((r) => [r.outcome, r.status, r.body!.object_keys.length]), [['delivered', 200, 1000], ['delivered', 200, 1000], ['delivered', 200, 1000], ['delivered', 200, 500]]);
  const deliveries = events(s).filter((e) => e.action === 'keap_hook_delivery');
  assert.equal(deliveries.length, 4, 'each delivery written once');

  await runJobs(s);
  assert.equal(heard, 3_500, 'every object became a keap.event');
  assert.ok(events(s).filter((e) => e.action === 'keap_hook_delivery').every((e) => e.status === 'done'));
  const updates = events(s).filter((e) => e.action === 'update' && e.source === 'rest_hook');
  assert.deepEqual(updates.map((e) => e.contact_id).sort(), [...members].sort(), 'a job for each member, none for other contacts');
  for (const id of members) assert.equal(ctx.members.findByContactId(id)!.firstName, `Edited ${id}`);
});

test('a delivery sent with its length is stored as the text Keap sent; one sent chunked goes through the router with the same answers; the quick check is never looser than the schema', async (t) => {
  const s = await site(t);
  const { ctx } = s.h.server;
  const storedParams = (id: unknown) => ctx.db.prepare('SELECT params FROM events WHERE id = ?').pluck().get(id) as string;
  const text = '{ "event_key": "contact.edit", "object_type": "contact", "object_keys": [ { "id": "102", "apiUrl": "", "timestamp": "" } ] }';
  const fast = await deliver(s, undefined, { raw: text });
  assert.equal(fast.status, 200);
  assert.equal(storedParams(fast.body.event_id), text, 'kept as it came: not parsed through the schema and written again');

  const chunked = (body: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: Record<string, unknown>; headers: import('node:http').IncomingHttpHeaders }>((resolve, reject) => {
      const url = new URL(`${s.h.server.url}${s.url}`);
      const req = httpRequest({ method: 'POST', host: url.hostname, port: url.port, path: url.pathname, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', ...headers } }, (res) => {
        let data = '';
        res.on('data', (c: Buffer) => (data += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) as Record<string, unknown>, headers: res.headers }));
      });
      req.on('error', reject);
      req.write(body.slice(0, 10));
      req.end(body.slice(10));
    });
  const viaRouter = await chunked(text);
  assert.equal(viaRouter.status, 200);
  assert.deepEqual(JSON.parse(storedParams(viaRouter.body.event_id)), { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 102, apiUrl: '', timestamp: '' }] }, 'the router stores what the schema read');
  const bad = '{"event_key":"contact.edit","object_type":"contact","object_keys":[{"id":"abc"}]}';
  const [fastBad, routerBad] = [await deliver(s, undefined, { raw: bad }), await chunked(bad)];
  assert.deepEqual([fastBad.status, routerBad.status], [400, 400]);
  assert.equal(fastBad.body.error, routerBad.body.error);
  const handshake = await chunked('', { 'x-hook-secret': 'abc123' });
  assert.deepEqual([handshake.status, handshake.headers['x-hook-secret']], [200, 'abc123']);
  for (const path of ['/webhooks/keap/hooks/wrong', '/webhooks/keap/hooks/%E0%A4%A']) assert.equal((await deliver(s, {}, { path })).status, 404);

  const object = { id: 1 };
  const cases: unknown[] = [
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [object] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: '123', apiUrl: null, timestamp: null, extra: true }], more: 1 },
    { event_key: 'contactGroup.applied', object_type: 'contactGroup', object_keys: [{ id: 9, contactDetails: [{ id: '5' }] }] },
    ...[0, -1, 1.5, '01', '1e3', 2 ** 60, '12345678901234567', null, true, [1]].map((id) => ({ event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id }] })),
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 1, apiUrl: 5 }] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 1, apiUrl: 'x'.repeat(2_001) }] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 1, timestamp: 'x'.repeat(101) }] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 1, contactDetails: [{ id: 'a' }] }] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 1, contactDetails: {} }] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [{ id: 1, contactDetails: Array.from({ length: 1_001 }, () => object) }] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: Array.from({ length: 1_001 }, () => object) },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: {} },
    { event_key: 'contact', object_type: 'contact', object_keys: [] },
    { event_key: 'contact.edit', object_type: 'x'.repeat(101), object_keys: [] },
    { event_key: 'contact.edit', object_keys: [] },
    { event_key: 'contact.edit', object_type: 'contact', object_keys: [null] },
    [],
    null,
    'contact.edit',
  ];
  for (const value of cases) {
    if (isHookDelivery(value)) assert.ok(hookDelivery.safeParse(value).success, `the quick check took what the schema refuses: ${JSON.stringify(value).slice(0, 120)}`);
  }
  assert.deepEqual(cases.slice(0, 3).map((v) => isHookDelivery(v)), [true, true, true], 'and takes what Keap sends');
});

test('the page warns when the hook URL is on this machine, where Keap cannot post', async (t) => {
  const port = await freePort();
  const local = await site(t, { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` });
  assert.match((await local.admin.get('/admin/settings/keap-events')).text, /id="hook-url-local">This address is on this machine: Keap(&#x27;|')s servers cannot post to it/);
  const published = await site(t, { PUBLIC_URL: 'http://members.example.com' });
  const page = await published.admin.get('/admin/settings/keap-events');
  assert.match(page.text, /<code id="hook-url" data-hook-url>http:\/\/members\.example\.com\/webhooks\/keap\/hooks\//);
  assert.doesNotMatch(page.text, /id="hook-url-local"/);
});
