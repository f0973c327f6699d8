import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import request from 'supertest';
import type { AppContext } from '../src/server.js';
import { CSRF_FAILED_MESSAGE } from '../src/core/csrf.js';
import { SealedSettings } from '../src/core/settings.js';
import { NO_API_TOKENS_MESSAGE } from '../src/features/api/routes.js';
import { adminAgent, memberAgent, MEMBER_PASSWORD, submitForm, TEST_SITE_ACCESS_KEY, testSiteWithAdmin, type TestSite } from './support/admin-site.js';
import { alertOf, csrfFrom } from './support/pages.js';

/** A site whose access key is stored in the database (no ACCESS_KEY), so it can be rotated. */
const siteWithStoredKey = (env: Record<string, string> = {}) => testSiteWithAdmin({ ACCESS_KEY: '', ...env });

const webhookPost = (app: TestSite['app'], accessKey: string) =>
  request(app).post('/webhooks/keap').type('form').send({ contactId: '101', wpf_action: 'add', access_key: accessKey });

function fieldError(html: string, id: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${id}-error">([^<]*)</p>`).exec(html)?.[1];
}

/** The text of the element with this id, HTML entities left as they are. */
function textOf(html: string, id: string): string | undefined {
  return new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html)?.[1];
}

function pairsOf(html: string, action: string): Array<[string, string]> {
  const table = new RegExp(`<table data-pairs="${action}"[\\s\\S]*?</table>`).exec(html)?.[0];
  assert.ok(table, `a table of pairs for ${action}`);
  return [...table.matchAll(/<tr data-pair="([^"]+)">[\s\S]*?(?:<code id="[^"]+" data-value>([^<]*)<\/code>|data-value="access_key"|data-choices>([\s\S]*?)<\/span>)/g)].map((m) => [
    m[1]!,
    m[2] ?? (m[3] === undefined ? '(access key)' : `(${m[3].replace(/<[^>]+>/g, '').replace(/\s+/g, ' ').trim()})`),
  ]);
}

function rotateForm(html: string): { key_id: string } {
  const keyId = /name="key_id" value="([^"]+)"/.exec(html)?.[1];
  assert.ok(keyId, 'the page has a rotation form');
  return { key_id: keyId };
}

const storedTokens = (ctx: AppContext) => ctx.db.prepare('SELECT * FROM api_tokens ORDER BY id').all() as Array<Record<string, unknown>>;
const settingsText = (ctx: AppContext) => (ctx.db.prepare("SELECT group_concat(key || '=' || value, char(10)) FROM settings").pluck().get() as string) ?? '';

/** Ada logged in at /login, and the form token her browser holds (it stays the same for the browser session). */

async function createToken(agent: request.Agent, name: string): Promise<{ res: request.Response; token: string }> {
  const res = await submitForm(agent, '/admin/settings/api-tokens', '/admin/settings/api-tokens', { name });
  assert.equal(res.status, 200, res.text);
  const token = textOf(res.text, 'new-token');
  assert.ok(token, 'the new token is shown');
  return { res, token };
}

test('the settings pages send anonymous visitors to the admin login and refuse members without admin rights', async () => {
  const { app, ctx } = await siteWithStoredKey();
  for (const path of ['/admin/settings', '/admin/settings/api-tokens', '/admin/settings/api-tokens/1/revoke']) {
    const res = await request(app).get(path);
    assert.equal(res.status, 303, path);
    assert.equal(res.headers.location, `/admin/login?next=${path}`);
  }
  const key = ctx.accessKeys.current();
  const { agent: ada, csrf } = await memberAgent(app);
  for (const path of ['/admin/settings', '/admin/settings/api-tokens']) {
    const res = await ada.get(path);
    assert.equal(res.status, 403, path);
    assert.ok(!res.text.includes(key), 'no key on the refusal page');
  }
  // Ada's browser has a good form token, but no admin rights.
  const rotate = await ada.post('/admin/settings/access-key/rotate').type('form').send({ _csrf: csrf, confirm: 'yes' });
  assert.equal(rotate.status, 403);
  const create = await ada.post('/admin/settings/api-tokens').type('form').send({ _csrf: csrf, name: 'sneaky' });
  assert.equal(create.status, 403);
  assert.equal(ctx.accessKeys.current(), key, 'the key is unchanged');
  assert.equal(storedTokens(ctx).length, 0);
});

test('every settings form needs the form token', async () => {
  const { app, ctx } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const key = ctx.accessKeys.current();
  const keyId = rotateForm((await agent.get('/admin/settings')).text).key_id;
  const { token } = await createToken(agent, 'existing');
  const id = storedTokens(ctx)[0]!.id;
  const posts: Array<[string, Record<string, string>]> = [
    ['/admin/settings/access-key/rotate', { confirm: 'yes', key_id: keyId }],
    ['/admin/settings/api-tokens', { name: 'forged' }],
    [`/admin/settings/api-tokens/${id}/revoke`, { confirm: 'yes' }],
  ];
  for (const [path, fields] of posts) {
    for (const csrf of [undefined, 'forged-token']) {
      const res = await agent.post(path).type('form').send(csrf === undefined ? fields : { ...fields, _csrf: csrf });
      assert.equal(res.status, 403, `${path} without a good token`);
      assert.ok(res.text.includes(CSRF_FAILED_MESSAGE));
    }
  }
  assert.equal(ctx.accessKeys.current(), key, 'not rotated');
  assert.deepEqual(storedTokens(ctx).map((t) => [t.name, t.revoked_at]), [['existing', null]], 'nothing created or revoked');
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${token}`)).status, 200);
});

test('the webhook page shows the URL and the exact pairs for add, update and update_tags, with the key hidden behind a disclosure', async () => {
  const { app, ctx } = await siteWithStoredKey({ PUBLIC_URL: 'http://members.example.com' });
  const agent = await adminAgent(app);
  const res = await agent.get('/admin/settings');
  assert.equal(res.status, 200);
  assert.equal(res.headers['cache-control'], 'no-store');
  const html = res.text;
  assert.match(html, /<nav class="tabs" aria-label="Settings">/);
  assert.match(html, /<a href="\/admin\/settings" aria-current="page">Webhook &amp; access key<\/a>/);
  assert.equal(textOf(html, 'webhook-url'), 'http://members.example.com/webhooks/keap');
  assert.match(html, /data-copy="#webhook-url"/);
  // (An https PUBLIC_URL would make the session cookie Secure, which supertest's plain-HTTP agent does not send back.)
  assert.match(html, /data-url-warning>This address is plain HTTP/, 'port 80 is reachable, but the key would travel in clear');

  assert.deepEqual(pairsOf(html, 'add'), [
    ['contactId', '~Contact.Id~'],
    ['wpf_action', 'add'],
    ['access_key', '(access key)'],
    ['send_notification', 'true'],
    ['role', 'subscriber'],
  ]);
  assert.deepEqual(pairsOf(html, 'update'), [
    ['contactId', '~Contact.Id~'],
    ['wpf_action', 'update'],
    ['access_key', '(access key)'],
    ['role', '(one of subscriber, member)'],
  ]);
  assert.doesNotMatch(html, /data-copy="#pair-update-role"/, "update suggests no role to copy: without one, it keeps the member's role");
  assert.match(html, /leave it out to keep the member&#x27;s role; add it only to change the role/, "update's note says what update does");
  assert.deepEqual(pairsOf(html, 'update_tags'), [
    ['contactId', '~Contact.Id~'],
    ['wpf_action', 'update_tags'],
    ['access_key', '(access key)'],
  ]);
  for (const id of ['pair-add-contactId', 'pair-add-wpf_action', 'pair-update_tags-wpf_action', 'pair-add-role']) {
    assert.ok(html.includes(`data-copy="#${id}"`), `${id} has a copy button`);
  }
  assert.match(html, /optional: one of subscriber, member; without it, subscriber/, 'the roles a webhook may assign');
  assert.doesNotMatch(html, /administrator</, 'never an admin role');

  const key = ctx.accessKeys.current();
  assert.match(html, new RegExp(`<details id="access-key-details">\\s*<summary>Show the access key</summary>\\s*<pre class="copyable" id="access-key" data-access-key>${key}</pre>`));
  assert.equal((html.match(new RegExp(key, 'g')) ?? []).length, 1, 'the key appears once, inside the closed disclosure');
  assert.doesNotMatch(html, /<details[^>]* open/);
  assert.match(html, /data-copy="#access-key"/);
  assert.match(html, /<form method="post" action="\/admin\/settings\/access-key\/rotate"[^>]*data-confirm="/);
});

test('a local PUBLIC_URL is flagged: Keap cannot post to it', async () => {
  const { app } = await siteWithStoredKey();
  const html = (await (await adminAgent(app)).get('/admin/settings')).text;
  assert.equal(textOf(html, 'webhook-url'), 'http://localhost:0/webhooks/keap');
  assert.match(html, /data-url-warning>Keap posts only to ports 80 and 443/);
});

test('rotating needs the confirmation; once confirmed the old key is refused at once and the new one shown once', async () => {
  const { app, ctx, logs, admin } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const oldKey = ctx.accessKeys.current();
  assert.equal((await webhookPost(app, oldKey)).status, 200);

  const page = await agent.get('/admin/settings');
  const form = rotateForm(page.text);
  const unconfirmed = await agent.post('/admin/settings/access-key/rotate').type('form').send({ _csrf: csrfFrom(page.text), ...form });
  assert.equal(unconfirmed.status, 400);
  assert.match(fieldError(unconfirmed.text, 'rotate-confirm') ?? '', /Tick the box to confirm/);
  assert.match(unconfirmed.text, /id="rotate-confirm" name="confirm" value="yes" required aria-invalid="true"/);
  assert.equal(ctx.accessKeys.current(), oldKey, 'not rotated without the confirmation');
  assert.doesNotMatch(unconfirmed.text, /data-new-access-key/);

  const rotated = await agent.post('/admin/settings/access-key/rotate').type('form').send({ _csrf: csrfFrom(page.text), ...form, confirm: 'yes' });
  assert.equal(rotated.status, 200);
  assert.equal(rotated.headers['cache-control'], 'no-store');
  const newKey = ctx.accessKeys.current();
  assert.notEqual(newKey, oldKey);
  assert.match(newKey, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(textOf(rotated.text, 'new-access-key'), newKey, 'the new key is shown prominently');
  assert.match(rotated.text, /data-copy="#new-access-key"/);
  assert.match(rotated.text, /Update your Keap HTTP Posts now/);
  assert.ok(!rotated.text.includes(oldKey));
  assert.match(ctx.settings.get('webhook.access_key')!, /^enc:v1:/, 'stored encrypted');
  assert.equal(new SealedSettings(ctx.settings, ctx.secretBox).get('webhook.access_key'), newKey, 'stored, so a restart keeps it');

  const refused = await webhookPost(app, oldKey);
  assert.equal(refused.status, 403);
  assert.deepEqual(refused.body, { ok: false, error: 'invalid access key' });
  const accepted = await webhookPost(app, newKey);
  assert.equal(accepted.status, 200);
  assert.equal(accepted.body.status, 'queued');

  // The same form sent again (a reload of the answer) does not rotate a key its sender never saw.
  const resent = await agent.post('/admin/settings/access-key/rotate').type('form').send({ _csrf: csrfFrom(page.text), ...form, confirm: 'yes' });
  assert.equal(resent.status, 409);
  assert.match(alertOf(resent.text) ?? '', /was changed after this page was loaded/);
  assert.equal(ctx.accessKeys.current(), newKey);
  assert.doesNotMatch(resent.text, /data-new-access-key/);

  const reload = await agent.get('/admin/settings');
  assert.doesNotMatch(reload.text, /data-new-access-key/, 'shown prominently once; afterwards only behind the disclosure');
  assert.match(reload.text, /data-last-rotation>Last rotated <time datetime="[^"]+">[^<]+ UTC<\/time> by boss@example.com\./);

  const line = logs.lines().find((l) => l.msg === 'webhook access key rotated; posts with the old key are refused from now on');
  assert.ok(line, 'the rotation is logged');
  assert.equal(line.adminId, admin.id);
  assert.equal(typeof line.at, 'string');
  for (const k of [oldKey, newKey]) assert.ok(!logs.text().includes(k), 'no key in the logs');
  assert.ok(!JSON.stringify(ctx.events.list({ page: 1, pageSize: 100 }).events).includes(oldKey), 'nor in the event log');
});

test('plugins hear about a rotation without being given the key', async () => {
  const { app, ctx } = await siteWithStoredKey();
  const heard: unknown[] = [];
  ctx.hooks.addAction('access_key.rotated', (rotation) => void heard.push(rotation));
  const agent = await adminAgent(app);
  const page = await agent.get('/admin/settings');
  const res = await agent.post('/admin/settings/access-key/rotate').type('form').send({ _csrf: csrfFrom(page.text), ...rotateForm(page.text), confirm: 'yes' });
  assert.equal(res.status, 200);
  assert.equal(heard.length, 1);
  assert.deepEqual(Object.keys(heard[0] as object).sort(), ['at', 'by']);
  assert.ok(!JSON.stringify(heard).includes(ctx.accessKeys.current()));
});

test('with ACCESS_KEY in the environment the page says so, offers no rotation and refuses one', async () => {
  const { app, ctx } = await testSiteWithAdmin();
  assert.equal(ctx.accessKeys.current(), TEST_SITE_ACCESS_KEY);
  const agent = await adminAgent(app);
  const page = await agent.get('/admin/settings');
  assert.equal(page.status, 200);
  assert.match(page.text, /data-key-source="environment"/);
  assert.match(page.text, /data-rotation="environment">This key is set by the <code>ACCESS_KEY<\/code> environment variable/);
  assert.doesNotMatch(page.text, /action="\/admin\/settings\/access-key\/rotate"/);
  assert.doesNotMatch(page.text, /name="key_id"/);

  const res = await agent.post('/admin/settings/access-key/rotate').type('form').send({ _csrf: csrfFrom(page.text), confirm: 'yes', key_id: ctx.accessKeys.fingerprint() });
  assert.equal(res.status, 409);
  assert.match(alertOf(res.text) ?? '', /set by ACCESS_KEY in the environment/);
  assert.equal(ctx.accessKeys.current(), TEST_SITE_ACCESS_KEY);
  assert.equal(ctx.settings.get('webhook.access_key'), undefined, 'nothing stored');
  assert.throws(() => ctx.accessKeys.rotate({ id: 1, email: 'x@example.com' }, new Date().toISOString()), /cannot be rotated here/);
  assert.equal((await webhookPost(app, TEST_SITE_ACCESS_KEY)).status, 200, 'the environment key still works');
});

test('an API token is shown once, works as a bearer token, and only its hash is stored', async () => {
  const { app, ctx, logs } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const empty = await agent.get('/admin/settings/api-tokens');
  assert.equal(empty.status, 200);
  assert.match(empty.text, /<a href="\/admin\/settings\/api-tokens" aria-current="page">API tokens<\/a>/);
  assert.match(empty.text, /data-no-tokens/);

  const noToken = await request(app).get('/api/v1/users').set('Authorization', 'Bearer mh_nothing-here');
  assert.equal(noToken.status, 401);
  assert.equal(noToken.body.error, NO_API_TOKENS_MESSAGE);
  assert.match(NO_API_TOKENS_MESSAGE, /\/admin\/settings\/api-tokens/, 'says how to create one');

  const { res, token } = await createToken(agent, '  Nightly export  ');
  assert.match(token, /^mh_[A-Za-z0-9_-]{43}$/);
  assert.match(res.text, /Copy it now: it is shown only this once/);
  assert.match(res.text, /data-copy="#new-token"/);
  assert.equal(res.headers['cache-control'], 'no-store');

  const [row] = storedTokens(ctx);
  assert.equal(row!.name, 'Nightly export', 'trimmed');
  assert.equal(row!.token_hash, createHash('sha256').update(token).digest('hex'));
  assert.equal(row!.prefix, token.slice(0, 11));
  assert.equal(row!.last_used_at, null);
  assert.ok(!JSON.stringify(storedTokens(ctx)).includes(token), 'the token itself is not stored');
  assert.ok(!settingsText(ctx).includes(token), 'nor in the settings table');

  const reload = await agent.get('/admin/settings/api-tokens');
  assert.ok(!reload.text.includes(token), 'not shown again');
  assert.doesNotMatch(reload.text, /id="new-token"/);
  assert.match(reload.text, new RegExp(`<tr data-token="${row!.id}" data-token-state="active">\\s*<td data-token-name>Nightly export</td>\\s*<td><code>${token.slice(0, 11)}…</code>`));
  assert.match(reload.text, /data-last-used="never"/);

  const api = await request(app).get('/api/v1/users').set('Authorization', `Bearer ${token}`);
  assert.equal(api.status, 200);
  assert.equal(api.body.total, 2);
  assert.ok(storedTokens(ctx)[0]!.last_used_at, 'last use recorded');
  assert.match((await agent.get('/admin/settings/api-tokens')).text, /<time datetime="[^"]+" data-last-used>/);
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', 'Bearer mh_wrong')).body.error, 'missing or invalid bearer token');

  assert.ok(logs.lines().some((l) => l.msg === 'API token created' && l.tokenName === 'Nightly export'));
  assert.ok(!logs.text().includes(token), 'the token never reaches the logs');
  assert.ok(!logs.text().includes(token.slice(11)), 'not even its secret part');
});

test('last use is written at most once a minute per token', async () => {
  const { app, ctx, clock } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const { token } = await createToken(agent, 'poller');
  const lastUsed = () => storedTokens(ctx)[0]!.last_used_at;
  const call = async () => assert.equal((await request(app).get('/api/v1/events').set('Authorization', `Bearer ${token}`)).status, 200);
  await call();
  const first = lastUsed();
  assert.ok(first);
  clock.advance(30_000);
  await call();
  assert.equal(lastUsed(), first, 'within the minute: no write');
  clock.advance(31_000);
  await call();
  assert.notEqual(lastUsed(), first);
  assert.equal(lastUsed(), new Date(clock.now()).toISOString());
});

test('a token name must be given, at most 100 characters, and not the name of another active token', async () => {
  const { app, ctx } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const cases: Array<[string, RegExp]> = [
    ['', /^Enter a name/],
    ['   ', /^Enter a name/],
    ['x'.repeat(101), /at most 100 characters \(it has 101\)/],
    ['two\nlines', /control characters/],
  ];
  for (const [name, message] of cases) {
    const res = await submitForm(agent, '/admin/settings/api-tokens', '/admin/settings/api-tokens', { name });
    assert.equal(res.status, 400, JSON.stringify(name));
    assert.match(fieldError(res.text, 'token-name') ?? '', message);
    assert.match(res.text, /id="token-name" name="name" type="text" value="[^"]*"[^>]*aria-invalid="true"/);
    assert.doesNotMatch(res.text, /id="new-token"/);
  }
  const long = await submitForm(agent, '/admin/settings/api-tokens', '/admin/settings/api-tokens', { name: 'x'.repeat(101) });
  assert.ok(long.text.includes(`value="${'x'.repeat(101)}"`), 'what was typed stays in the form');
  assert.equal(storedTokens(ctx).length, 0);

  await createToken(agent, 'x'.repeat(100));
  await createToken(agent, 'Zapier');
  const clash = await submitForm(agent, '/admin/settings/api-tokens', '/admin/settings/api-tokens', { name: 'zapier' });
  assert.equal(clash.status, 400);
  assert.match(fieldError(clash.text, 'token-name') ?? '', /A token named &quot;zapier&quot; exists already/);
  assert.equal(storedTokens(ctx).length, 2);
});

test('a new token is read-only unless the administrator picks another scope, and the list shows what each may do', async () => {
  const { app, ctx, ada } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const form = await agent.get('/admin/settings/api-tokens');
  assert.match(form.text, /<input type="radio" name="scope" value="read" checked>/, 'read-only is chosen unless changed');
  assert.doesNotMatch(form.text, /value="(members:write|admin)" checked/);

  const reader = await createToken(agent, 'dashboard');
  const writer = await submitForm(agent, '/admin/settings/api-tokens', '/admin/settings/api-tokens', { name: 'crm sync', scope: 'members:write' });
  assert.equal(writer.status, 200);
  assert.match(writer.text, /New token “crm sync” \(Members write\)/);
  const bad = await submitForm(agent, '/admin/settings/api-tokens', '/admin/settings/api-tokens', { name: 'root', scope: 'root' });
  assert.equal(bad.status, 400);
  assert.match(fieldError(bad.text, 'token-scope') ?? '', /^Choose what the token may do: Read-only, Members write, Admin\.$/);
  assert.deepEqual(storedTokens(ctx).map((t) => [t.name, t.scope]), [['dashboard', 'read'], ['crm sync', 'members:write']]);

  const list = (await agent.get('/admin/settings/api-tokens')).text;
  assert.match(list, /<td data-token-scope="read">Read-only<\/td>/);
  assert.match(list, /<td data-token-scope="members:write">Members write<\/td>/);

  const readOnly = await request(app).patch(`/api/v1/users/${ada.id}`).set('Authorization', `Bearer ${reader.token}`).send({ first_name: 'Changed' });
  assert.equal(readOnly.status, 403);
  assert.match(readOnly.body.error, /needs an API token with the members:write scope/);
  assert.equal(ctx.members.get(ada.id).firstName, 'Ada');
});

test('revoking asks for confirmation, then the token is refused at once and listed as revoked', async () => {
  const { app, ctx, logs } = await siteWithStoredKey();
  const agent = await adminAgent(app);
  const { token } = await createToken(agent, 'old script');
  const { token: other } = await createToken(agent, 'new script');
  const id = storedTokens(ctx).find((t) => t.name === 'old script')!.id as number;
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${token}`)).status, 200);

  const list = await agent.get('/admin/settings/api-tokens');
  assert.match(list.text, new RegExp(`<a href="/admin/settings/api-tokens/${id}/revoke" data-revoke="${id}">`));
  const confirmPage = await agent.get(`/admin/settings/api-tokens/${id}/revoke`);
  assert.equal(confirmPage.status, 200);
  assert.match(confirmPage.text, /Revoke the API token “old script”\?/);
  assert.match(confirmPage.text, new RegExp(`<form method="post" action="/admin/settings/api-tokens/${id}/revoke" id="revoke-token-form">`));

  const unconfirmed = await agent.post(`/admin/settings/api-tokens/${id}/revoke`).type('form').send({ _csrf: csrfFrom(confirmPage.text) });
  assert.equal(unconfirmed.status, 400);
  assert.match(alertOf(unconfirmed.text) ?? '', /Confirm with the “Revoke token” button/);
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${token}`)).status, 200, 'still live');

  const revoked = await agent.post(`/admin/settings/api-tokens/${id}/revoke`).type('form').send({ _csrf: csrfFrom(confirmPage.text), confirm: 'yes' });
  assert.equal(revoked.status, 303);
  assert.equal(revoked.headers.location, `/admin/settings/api-tokens?revoked=${id}`);
  const refused = await request(app).get('/api/v1/users').set('Authorization', `Bearer ${token}`);
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error, 'this API token was revoked');
  assert.match(refused.headers['www-authenticate'] ?? '', /^Bearer /);
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${other}`)).status, 200, 'the other token still works');

  const after = await agent.get(revoked.headers.location!);
  assert.match(after.text, /data-revoked-notice>The token “old script” was revoked/);
  assert.match(after.text, new RegExp(`<tr data-token="${id}" data-token-state="revoked">`));
  assert.doesNotMatch(after.text, new RegExp(`data-revoke="${id}"`), 'no revoke link for a revoked token');

  const again = await agent.post(`/admin/settings/api-tokens/${id}/revoke`).type('form').send({ _csrf: csrfFrom(confirmPage.text), confirm: 'yes' });
  assert.equal(again.status, 303, 'revoking twice is harmless');
  assert.equal((await agent.get('/admin/settings/api-tokens/999/revoke')).status, 404);
  assert.equal((await agent.get('/admin/settings/api-tokens/abc/revoke')).status, 404);

  // A revoked token's name is free again.
  await createToken(agent, 'old script');
  assert.equal(logs.lines().filter((l) => l.msg === 'API token revoked').length, 1);
  assert.ok(!logs.text().includes(token) && !logs.text().includes(other));
});

test('API_TOKEN from the environment keeps working beside stored tokens and is mentioned on the page', async () => {
  const envToken = 'environment-api-token-0123456789';
  const { app } = await siteWithStoredKey({ API_TOKEN: envToken });
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${envToken}`)).status, 200);
  const wrong = await request(app).get('/api/v1/users').set('Authorization', 'Bearer mh_wrong');
  assert.equal(wrong.body.error, 'missing or invalid bearer token', 'an API_TOKEN exists, so this is not the "no tokens" message');
  const agent = await adminAgent(app);
  const page = await agent.get('/admin/settings/api-tokens');
  assert.match(page.text, /data-env-token/);
  assert.ok(!page.text.includes(envToken), 'the environment token is never shown');
  const { token } = await createToken(agent, 'script');
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${token}`)).status, 200);
  assert.equal((await request(app).get('/api/v1/users').set('Authorization', `Bearer ${envToken}`)).status, 200);
});
