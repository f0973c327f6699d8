import { test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import type { AppContext } from '../src/server.js';
import { CSRF_FAILED_MESSAGE } from '../src/core/csrf.js';
import { ROLE_DELETE_CONFIRM_MESSAGE, ROLE_WEBHOOK_CHOICE_MESSAGE } from '../src/features/roles/admin-routes.js';
import { ROLE_MESSAGES } from '../src/features/members/role-service.js';
import type { RoleRow } from '../src/features/members/store.js';
import type { RoleSummary } from '../src/features/members/types.js';

const roleService = (ctx: AppContext) => ctx.plugins.service('roles');
import { adminAgent, createMember, memberAgent, MEMBER_PASSWORD, submitForm, testSiteWithAdmin, TEST_SITE_ACCESS_KEY, type TestSite } from './support/admin-site.js';
import { alertOf, csrfFrom } from './support/pages.js';

function roleRow(ctx: AppContext, slug: string): RoleRow | undefined {
  return ctx.db.prepare<[string], RoleRow>('SELECT id, slug, name, is_admin, webhook_assignable FROM roles WHERE slug = ?').get(slug);
}

function roleCount(ctx: AppContext): number {
  return ctx.db.prepare<[], number>('SELECT count(*) FROM roles').pluck().get()!;
}

function fieldError(html: string, field: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${field}-error">([^<]*)</p>`).exec(html)?.[1];
}

function noticeOf(html: string): string | undefined {
  return /<p class="notice" role="status">([^<]*)<\/p>/.exec(html)?.[1];
}

/** Handlebars writes `"` and `=` as entities; the messages are compared as a browser shows them. */
function text(html: string | undefined): string | undefined {
  return html?.replaceAll('&quot;', '"').replaceAll('&#x3D;', '=').replaceAll('&#x27;', "'").replaceAll('&amp;', '&');
}


async function addRole(ctx: AppContext, slug: string, name: string, webhookAssignable = true): Promise<number> {
  const result = await roleService(ctx).create({ slug, name, webhookAssignable });
  assert.ok(result.ok, `role ${slug} added`);
  return result.role.id;
}

test('roles pages send anonymous visitors to the admin login and refuse members without admin rights', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const gold = await addRole(ctx, 'gold', 'Gold');
  const anonymous = request.agent(app);
  for (const path of ['/admin/roles', `/admin/roles/${gold}`, `/admin/roles/${gold}/delete`]) {
    const res = await anonymous.get(path);
    assert.equal(res.status, 303, path);
    assert.equal(res.headers.location, `/admin/login?next=${path}`);
  }
  const token = csrfFrom((await anonymous.get('/admin/login')).text);
  const posts: Array<[string, Record<string, string>]> = [
    ['/admin/roles', { slug: 'silver', name: 'Silver' }],
    [`/admin/roles/${gold}/name`, { name: 'Stolen' }],
    [`/admin/roles/${gold}/webhook`, { webhook_assignable: 'no' }],
    [`/admin/roles/${gold}/delete`, { confirm: 'yes' }],
  ];
  for (const [path, fields] of posts) {
    const res = await anonymous.post(path).type('form').send({ _csrf: token, ...fields });
    assert.equal(res.status, 303, path);
    assert.equal(res.headers.location, '/admin/login');
  }

  const ada = (await memberAgent(app)).agent;
  for (const path of ['/admin/roles', `/admin/roles/${gold}`, `/admin/roles/${gold}/delete`]) {
    const res = await ada.get(path);
    assert.equal(res.status, 403, path);
    assert.match(res.text, /no admin rights/);
  }
  const adaToken = csrfFrom((await ada.get('/account')).text);
  for (const [path, fields] of posts) {
    const res = await ada.post(path).type('form').send({ _csrf: adaToken, ...fields });
    assert.equal(res.status, 403, path);
  }
  assert.deepEqual(roleRow(ctx, 'gold'), { id: gold, slug: 'gold', name: 'Gold', is_admin: 0, webhook_assignable: 1 }, 'nothing changed');
  assert.equal(roleRow(ctx, 'silver'), undefined);
});

test('roles posts without the form token are refused and change nothing', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const gold = await addRole(ctx, 'gold', 'Gold');
  const agent = await adminAgent(app);
  const posts: Array<[string, Record<string, string>]> = [
    ['/admin/roles', { slug: 'silver', name: 'Silver' }],
    [`/admin/roles/${gold}/name`, { name: 'Renamed' }],
    [`/admin/roles/${gold}/webhook`, { webhook_assignable: 'no' }],
    [`/admin/roles/${gold}/delete`, { confirm: 'yes' }],
  ];
  for (const [path, fields] of posts) {
    const missing = await agent.post(path).type('form').send(fields);
    assert.equal(missing.status, 403, `${path} without a token`);
    assert.match(missing.text, new RegExp(CSRF_FAILED_MESSAGE.replace('.', '\\.')));
    const wrong = await agent.post(path).type('form').send({ _csrf: 'y'.repeat(43), ...fields });
    assert.equal(wrong.status, 403, `${path} with a wrong token`);
  }
  assert.deepEqual(roleRow(ctx, 'gold'), { id: gold, slug: 'gold', name: 'Gold', is_admin: 0, webhook_assignable: 1 });
  assert.equal(roleRow(ctx, 'silver'), undefined);
});

test('the roles page lists every role with its member count, admin and default badges and webhook state', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  await addRole(ctx, 'gold', 'Gold', false);
  for (const n of [1, 2]) await createMember(ctx, { email: `m${n}@example.com`, username: `m${n}`, role: 'member', password: MEMBER_PASSWORD });
  const agent = await adminAgent(app);
  const res = await agent.get('/admin/roles');
  assert.equal(res.status, 200);
  assert.equal(res.headers['cache-control'], 'no-store');
  const rows = [...res.text.matchAll(/<tr data-role="([a-z0-9_-]+)" data-role-id="\d+" data-members="(\d+)" data-webhook-assignable="(yes|no)">([\s\S]*?)<\/tr>/g)].map((m) => ({
    slug: m[1],
    members: Number(m[2]),
    webhook: m[3],
    admin: m[4]!.includes('data-badge="admin"'),
    isDefault: m[4]!.includes('data-badge="default"'),
  }));
  assert.deepEqual(rows, [
    { slug: 'administrator', members: 1, webhook: 'no', admin: true, isDefault: false },
    { slug: 'gold', members: 0, webhook: 'no', admin: false, isDefault: false },
    { slug: 'member', members: 3, webhook: 'yes', admin: false, isDefault: false },
    { slug: 'subscriber', members: 0, webhook: 'yes', admin: false, isDefault: true },
  ]);
  assert.match(res.text, /<a href="\/admin\/members\?role=member" title="Members with this role">3<\/a>/);
  assert.match(res.text, /New roles never have admin rights/);
  assert.match(res.text, /<label for="role-slug">Slug<\/label>/);
  assert.match(res.text, /<label for="role-name">Name<\/label>/);
  assert.match(res.text, /id="role-webhook" name="webhook_assignable" type="checkbox" value="yes" checked/);
});

test('the default role badge follows the settings', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  ctx.site.setDefaultRole('member');
  const agent = await adminAgent(app);
  const res = await agent.get('/admin/roles');
  assert.match(res.text, /<tr data-role="member"[^>]*>[\s\S]*?data-badge="default"[\s\S]*?<\/tr>/);
  assert.doesNotMatch(res.text, /<tr data-role="subscriber"[^>]*>(?:(?!<\/tr>)[\s\S])*data-badge="default"/);
});

test('adding a role validates the slug and name, refuses duplicates, and never grants admin rights', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const agent = await adminAgent(app);
  const before = roleCount(ctx);
  const invalid: Array<[Record<string, string>, string, string]> = [
    [{ slug: '', name: 'Gold' }, 'slug', ROLE_MESSAGES.slugMissing],
    [{ slug: 'gold members', name: 'Gold' }, 'slug', ROLE_MESSAGES.slugInvalid],
    [{ slug: 'gold!', name: 'Gold' }, 'slug', ROLE_MESSAGES.slugInvalid],
    [{ slug: 'g'.repeat(65), name: 'Gold' }, 'slug', ROLE_MESSAGES.slugInvalid],
    [{ slug: 'gold', name: '   ' }, 'name', ROLE_MESSAGES.nameMissing],
    [{ slug: 'gold', name: 'n'.repeat(101) }, 'name', ROLE_MESSAGES.nameTooLong],
    [{ slug: 'member', name: 'Another member' }, 'slug', ROLE_MESSAGES.slugTaken('member')],
    [{ slug: 'Administrator', name: 'Boss 2' }, 'slug', ROLE_MESSAGES.slugTaken('administrator')],
  ];
  for (const [fields, field, message] of invalid) {
    const res = await submitForm(agent, '/admin/roles', '/admin/roles', { ...fields, webhook_assignable: 'yes' });
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.equal(text(fieldError(res.text, field)), message, JSON.stringify(fields));
    assert.match(res.text, new RegExp(`id="role-${field}"[^>]*aria-invalid="true"`), 'the field is marked invalid');
  }
  // The form keeps what was typed.
  const kept = await submitForm(agent, '/admin/roles', '/admin/roles', { slug: 'bad slug', name: 'Kept name' });
  assert.match(kept.text, /id="role-name" name="name" type="text" value="Kept name"/);
  assert.doesNotMatch(kept.text, /id="role-webhook"[^>]*checked/, 'the unticked box stays unticked');
  assert.equal(roleCount(ctx), before, 'nothing was added');

  const res = await submitForm(agent, '/admin/roles', '/admin/roles', { slug: '  Gold_Plus-2 ', name: ' Gold plus ', webhook_assignable: 'yes', is_admin: '1' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/admin/roles?added=gold_plus-2');
  assert.deepEqual({ ...roleRow(ctx, 'gold_plus-2')!, id: 0 }, { id: 0, slug: 'gold_plus-2', name: 'Gold plus', is_admin: 0, webhook_assignable: 1 });
  const page = await agent.get(res.headers.location!);
  assert.equal(noticeOf(page.text), 'Role Gold plus (gold_plus-2) added.');
  assert.match(page.text, /<tr data-role="gold_plus-2"/);

  const unticked = await submitForm(agent, '/admin/roles', '/admin/roles', { slug: 'silver', name: 'Silver' });
  assert.equal(unticked.status, 303);
  assert.equal(roleRow(ctx, 'silver')!.webhook_assignable, 0, 'an unticked box: Keap posts may not assign it');
  assert.equal(roleCount(ctx), before + 2);
});

test('a role added here is usable by Keap posts at once; one not webhook-assignable is refused by the receiver', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const agent = await adminAgent(app);
  await submitForm(agent, '/admin/roles', '/admin/roles', { slug: 'gold', name: 'Gold', webhook_assignable: 'yes' });
  await submitForm(agent, '/admin/roles', '/admin/roles', { slug: 'staff', name: 'Staff' });
  const post = (role: string) => request(app).post('/webhooks/keap').type('form').send({ contactId: '5', wpf_action: 'add', role, access_key: TEST_SITE_ACCESS_KEY });
  assert.equal((await post('gold')).status, 200);
  const refused = await post('staff');
  assert.equal(refused.status, 400);
  assert.match((refused.body as { error: string }).error, /cannot be assigned by webhook/);
  assert.equal(ctx.events.list({ status: 'rejected', page: 1, pageSize: 10 }).total, 1);
});

test('renaming changes the name only; the slug stays', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const gold = await addRole(ctx, 'gold', 'Gold');
  const agent = await adminAgent(app);
  const page = await agent.get(`/admin/roles/${gold}`);
  assert.equal(page.status, 200);
  assert.match(page.text, /The slug is what Keap posts send/);
  assert.match(page.text, /<code id="role-slug">gold<\/code>/);
  assert.match(page.text, /<label for="role-name">Name<\/label>/);

  for (const [name, message] of [['', ROLE_MESSAGES.nameMissing], ['x'.repeat(101), ROLE_MESSAGES.nameTooLong]] as const) {
    const bad = await submitForm(agent, `/admin/roles/${gold}`, `/admin/roles/${gold}/name`, { name });
    assert.equal(bad.status, 400);
    assert.equal(fieldError(bad.text, 'name'), message);
  }
  assert.equal(roleRow(ctx, 'gold')!.name, 'Gold');

  const res = await submitForm(agent, `/admin/roles/${gold}`, `/admin/roles/${gold}/name`, { name: ' Gold <VIP> ', slug: 'platinum' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `/admin/roles/${gold}?saved=name`);
  assert.deepEqual(roleRow(ctx, 'gold'), { id: gold, slug: 'gold', name: 'Gold <VIP>', is_admin: 0, webhook_assignable: 1 });
  assert.equal(roleRow(ctx, 'platinum'), undefined);
  const after = await agent.get(res.headers.location!);
  assert.equal(noticeOf(after.text), 'Name saved.');
  assert.match(after.text, /Gold &lt;VIP&gt;/);
  assert.doesNotMatch(after.text, /<VIP>/, 'the name is escaped');

  // Even the administrator role may be renamed; its rights stay.
  const admin = roleRow(ctx, 'administrator')!;
  const renamed = await submitForm(agent, `/admin/roles/${admin.id}`, `/admin/roles/${admin.id}/name`, { name: 'Owner' });
  assert.equal(renamed.status, 303);
  assert.deepEqual(roleRow(ctx, 'administrator'), { ...admin, name: 'Owner' });
});

test('webhook-assignable is switched on and off, never for an admin role', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const gold = await addRole(ctx, 'gold', 'Gold');
  const agent = await adminAgent(app);
  const page = await agent.get(`/admin/roles/${gold}`);
  assert.match(page.text, /id="webhook-state" data-webhook-assignable="yes"/);

  const off = await submitForm(agent, `/admin/roles/${gold}`, `/admin/roles/${gold}/webhook`, { webhook_assignable: 'no' });
  assert.equal(off.status, 303);
  assert.equal(roleRow(ctx, 'gold')!.webhook_assignable, 0);
  const offPage = await agent.get(off.headers.location!);
  assert.equal(text(noticeOf(offPage.text)), 'Keap posts can no longer assign Gold; posts with role=gold are rejected.');
  assert.match(offPage.text, /id="webhook-state" data-webhook-assignable="no"/);

  const on = await submitForm(agent, `/admin/roles/${gold}`, `/admin/roles/${gold}/webhook`, { webhook_assignable: 'yes' });
  assert.equal(on.status, 303);
  assert.equal(roleRow(ctx, 'gold')!.webhook_assignable, 1);

  for (const choice of [{}, { webhook_assignable: 'maybe' }]) {
    const bad = await submitForm(agent, `/admin/roles/${gold}`, `/admin/roles/${gold}/webhook`, choice as Record<string, string>);
    assert.equal(bad.status, 400);
    assert.equal(alertOf(bad.text), ROLE_WEBHOOK_CHOICE_MESSAGE);
  }
  assert.equal(roleRow(ctx, 'gold')!.webhook_assignable, 1);

  const admin = roleRow(ctx, 'administrator')!;
  const adminPage = await agent.get(`/admin/roles/${admin.id}`);
  assert.doesNotMatch(adminPage.text, /id="webhook-form"/, 'no switch for an admin role');
  const refused = await submitForm(agent, `/admin/roles/${admin.id}`, `/admin/roles/${admin.id}/webhook`, { webhook_assignable: 'yes' });
  assert.equal(refused.status, 400);
  assert.equal(alertOf(refused.text), ROLE_MESSAGES.adminNotAssignable);
  assert.equal(roleRow(ctx, 'administrator')!.webhook_assignable, 0);
});

test('deleting a role asks for confirmation, which the server enforces', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const gold = await addRole(ctx, 'gold', 'Gold');
  const agent = await adminAgent(app);
  const role = await agent.get(`/admin/roles/${gold}`);
  assert.match(role.text, new RegExp(`<a href="/admin/roles/${gold}/delete" id="delete-link">`));
  const ask = await agent.get(`/admin/roles/${gold}/delete`);
  assert.equal(ask.status, 200);
  assert.match(ask.text, /<form method="post" action="\/admin\/roles\/\d+\/delete" id="delete-role-form" data-confirm="[^"]+">/);
  assert.match(ask.text, /name="confirm" value="yes"/);

  const unconfirmedForms: Array<Record<string, string>> = [{}, { confirm: 'no' }];
  for (const fields of unconfirmedForms) {
    const unconfirmed = await submitForm(agent, `/admin/roles/${gold}/delete`, `/admin/roles/${gold}/delete`, fields);
    assert.equal(unconfirmed.status, 400);
    assert.equal(alertOf(unconfirmed.text), ROLE_DELETE_CONFIRM_MESSAGE);
  }
  assert.ok(roleRow(ctx, 'gold'), 'still there');

  const events: string[] = [];
  ctx.hooks.addAction('role.deleted', (r: RoleSummary) => void events.push(r.slug));
  const res = await submitForm(agent, `/admin/roles/${gold}/delete`, `/admin/roles/${gold}/delete`, { confirm: 'yes' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/admin/roles?deleted=gold');
  assert.equal(roleRow(ctx, 'gold'), undefined);
  assert.deepEqual(events, ['gold'], 'role.deleted fired once');
  const list = await agent.get(res.headers.location!);
  assert.equal(text(noticeOf(list.text)), 'Role "gold" deleted.');
  assert.doesNotMatch(list.text, /data-role="gold"/);

  const gone = await agent.get(`/admin/roles/${gold}`);
  assert.equal(gone.status, 404);
  assert.match(gone.text, /No such role/);
  assert.equal((await agent.get('/admin/roles/abc')).status, 404);
});

test('a role members hold, the default role and admin roles cannot be deleted', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const agent = await adminAgent(app);
  await createMember(ctx, { email: 'm2@example.com', username: 'm2', role: 'member', password: MEMBER_PASSWORD });
  const member = roleRow(ctx, 'member')!;
  const subscriber = roleRow(ctx, 'subscriber')!;
  const admin = roleRow(ctx, 'administrator')!;

  const heldPage = await agent.get(`/admin/roles/${member.id}`);
  assert.match(heldPage.text, /id="delete-blocked" data-reason="members">Member cannot be deleted while 2 members hold it/);
  assert.match(heldPage.text, /<a href="\/admin\/members\?role=member">See the 2 members with this role<\/a>/);
  assert.doesNotMatch(heldPage.text, /id="delete-link"/);
  const heldAsk = await agent.get(`/admin/roles/${member.id}/delete`);
  assert.match(heldAsk.text, /data-reason="members"/);
  assert.match(heldAsk.text, /id="role-members-link"/);
  assert.doesNotMatch(heldAsk.text, /id="delete-role-form"/);

  const cases: Array<[RoleRow, RegExp]> = [
    [member, /cannot be deleted while 2 members hold it/],
    [subscriber, /is the default role new members get/],
    [admin, /has admin rights; it cannot be deleted/],
  ];
  for (const [role, message] of cases) {
    const res = await submitForm(agent, `/admin/roles/${role.id}/delete`, `/admin/roles/${role.id}/delete`, { confirm: 'yes' });
    assert.equal(res.status, 409, role.slug);
    assert.match(alertOf(res.text) ?? '', message, role.slug);
    assert.ok(roleRow(ctx, role.slug), `${role.slug} is still there`);
  }

  // Once the default moves elsewhere, the old default can go (no member holds it).
  ctx.site.setDefaultRole('member');
  const res = await submitForm(agent, `/admin/roles/${subscriber.id}/delete`, `/admin/roles/${subscriber.id}/delete`, { confirm: 'yes' });
  assert.equal(res.status, 303);
  assert.equal(roleRow(ctx, 'subscriber'), undefined);
});

test('role hooks fire after the change with the new state', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  const agent = await adminAgent(app);
  const seen: string[] = [];
  ctx.hooks.addAction('role.created', (r) => void seen.push(`created ${r.slug} ${r.name}`));
  ctx.hooks.addAction('role.updated', (r, changed) => void seen.push(`updated ${r.slug} ${r.name} ${r.webhookAssignable} ${changed.join(',')}`));
  await submitForm(agent, '/admin/roles', '/admin/roles', { slug: 'gold', name: 'Gold', webhook_assignable: 'yes' });
  const id = roleRow(ctx, 'gold')!.id;
  await submitForm(agent, `/admin/roles/${id}`, `/admin/roles/${id}/name`, { name: 'Golden' });
  await submitForm(agent, `/admin/roles/${id}`, `/admin/roles/${id}/webhook`, { webhook_assignable: 'no' });
  assert.deepEqual(seen, ['created gold Gold', 'updated gold Golden true name', 'updated gold Golden false webhook_assignable']);
});

test('a role given to a member after the page was read is still not deleted', async () => {
  const { ctx } = await testSiteWithAdmin();
  const service = roleService(ctx);
  const id = await addRole(ctx, 'gold', 'Gold');
  const stale = service.get(id)!;
  assert.equal(stale.members, 0);
  await createMember(ctx, { email: 'late@example.com', username: 'late', role: 'gold', password: MEMBER_PASSWORD });
  const result = await service.delete(stale);
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.blocker.reason === 'members' && result.blocker.members === 1, 'the current reason is reported');
  assert.ok(roleRow(ctx, 'gold'), 'the role is still there');
});
