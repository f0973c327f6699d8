import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { systemClock, type Clock } from '../src/core/clock.js';
import { buildContext } from '../src/server.js';
import { SEED, startKeapSandbox, type KeapSandbox } from '../tools/keap-sandbox/index.js';
import { SqliteKeapTokenStore } from '../src/features/keap/token-store.js';
import { OAUTH_STATE_TTL_MS } from '../src/features/settings/keap-routes.js';
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  MEMBER_PASSWORD,
  TEST_SITE_ACCESS_KEY,
  adminAgent,
  createMember,
  memberAgent,
  submitForm,
  type TestSite,
} from './support/admin-site.js';
import { startHarness } from './support/harness.js';
import { captureLogs } from './support/logs.js';
import { tempDataDir, NO_PLUGINS_DIR } from './support/temp.js';
import { alertOf, csrfFrom } from './support/pages.js';

const PAGE = '/admin/settings/keap';
const PUBLIC_URL = 'http://members.example.test';
const CALLBACK = `${PUBLIC_URL}${PAGE}/callback`;
const RIGHT_KEY = 'sandbox-api-key';
const WRONG_KEY = 'wrong-key-0123456789-zyxw';
const ENV_KEY = 'env-keap-key-0123456789-WXYZ';
const { fields: F, contacts: C } = SEED;

/**
 * Real time that a test can move ahead. The pages here call Keap, whose rate limiter waits on the clock: a clock that
 * never moves (ManualClock) would keep it waiting forever once a window fills.
 */
class ShiftableClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  sleep(ms: number): Promise<void> {
    return systemClock.sleep(ms);
  }
  advance(ms: number): void {
    this.offset += ms;
  }
}

/** testSiteWithAdmin with a clock that moves (see ShiftableClock). */
async function testSiteWithAdmin(env: Record<string, string> = {}) {
  const logs = captureLogs();
  const clock = new ShiftableClock();
  const dataDir = tempDataDir();
  const config = loadConfig({ DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, PORT: '0', ACCESS_KEY: TEST_SITE_ACCESS_KEY, ...env });
  const ctx = await buildContext(config, { logger: logs.logger, console: () => {}, clock });
  after(() => {
    ctx.mailer.close();
    ctx.db.close();
  });
  const admin = await createMember(ctx, { email: ADMIN_EMAIL, username: 'boss', role: 'administrator', password: ADMIN_PASSWORD });
  await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: MEMBER_PASSWORD });
  return { ctx, app: createApp(ctx), clock, logs, dataDir, admin };
}

let sandbox: KeapSandbox;
before(async () => {
  sandbox = await startKeapSandbox({ apiKeys: [RIGHT_KEY, ENV_KEY] });
});
after(() => sandbox.close());
async function sharedSandbox(): Promise<KeapSandbox> {
  return sandbox;
}

async function oauthSite(env: Record<string, string> = {}) {
  const sb = await sharedSandbox();
  const site = await testSiteWithAdmin({
    KEAP_API_URL: sb.url,
    KEAP_CLIENT_ID: 'sandbox-client',
    KEAP_CLIENT_SECRET: 'sandbox-secret',
    KEAP_AUTHORIZE_URL: sb.authorizeUrl,
    PUBLIC_URL,
    ...env,
  });
  return { ...site, sb, tokens: new SqliteKeapTokenStore(site.ctx.db, site.ctx.secretBox) };
}

/** Presses "Connect to Keap" and follows the sandbox's authorize page (which approves at once); returns where Keap sends the browser back to. */
async function connectAndApprove(agent: request.Agent): Promise<URL> {
  const started = await submitForm(agent, PAGE, `${PAGE}/connect`, {});
  assert.equal(started.status, 303, 'Connect redirects to Keap');
  const authorize = await fetch(started.headers.location!, { redirect: 'manual' });
  assert.equal(authorize.status, 302, 'the sandbox approves and sends the browser back');
  return new URL(authorize.headers.get('location')!);
}

function pathOf(url: URL): string {
  return `${url.pathname}${url.search}`;
}

function testResult(html: string): string | undefined {
  return /data-test-result="(ok|failed)"/.exec(html)?.[1];
}

function noSecrets(site: Pick<TestSite, 'logs'>, html: string, secrets: string[]): void {
  for (const secret of secrets) {
    assert.equal(html.includes(secret), false, 'the page never shows the secret');
    assert.equal(site.logs.text().includes(secret), false, 'the log never holds the secret');
  }
}

test('the Keap settings page needs an admin session: anonymous visitors go to the admin login, members get 403', async () => {
  const site = await testSiteWithAdmin();
  const anonymous = await request(site.app).get(PAGE);
  assert.equal(anonymous.status, 303);
  assert.equal(anonymous.headers.location, '/admin/login?next=/admin/settings/keap');
  const anonymousGetCallback = await request(site.app).get(`${PAGE}/callback?code=c&state=s`);
  assert.equal(anonymousGetCallback.status, 303, 'the callback too needs the admin');

  const { agent: member, csrf } = await memberAgent(site.app);
  assert.equal((await member.get(PAGE)).status, 403);
  const post = await member.post(`${PAGE}/api-key`).type('form').send({ _csrf: csrf, api_key: RIGHT_KEY });
  assert.equal(post.status, 403);
  assert.equal(site.ctx.site.keapApiKey(), undefined, 'nothing stored');
});

test('every Keap settings form is refused without its form token, and nothing changes', async () => {
  const site = await oauthSite();
  const admin = await adminAgent(site.app);
  const page = await admin.get(PAGE);
  assert.equal(page.status, 200);
  for (const action of ['api-key', 'api-key/clear', 'test', 'connect', 'disconnect', 'fields']) {
    const res = await admin.post(`${PAGE}/${action}`).type('form').send({ api_key: RIGHT_KEY, confirm: 'yes', password_field: 'Password' });
    assert.equal(res.status, 403, `POST ${action} without _csrf`);
    const wrong = await admin.post(`${PAGE}/${action}`).type('form').send({ _csrf: 'forged', api_key: RIGHT_KEY, confirm: 'yes' });
    assert.equal(wrong.status, 403, `POST ${action} with a wrong _csrf`);
  }
  assert.equal(site.ctx.site.keapApiKey(), undefined);
  assert.equal(site.ctx.site.passwordField(), undefined);
  assert.equal(site.ctx.settings.get('keap.oauth_pending'), undefined, 'no connection was started');
});

test('an API key stored on the page is used at once, without a restart; it is never shown or logged', async () => {
  const sb = await sharedSandbox();
  const site = await testSiteWithAdmin({ KEAP_API_URL: sb.url });
  const admin = await adminAgent(site.app);

  let html = (await admin.get(PAGE)).text;
  assert.match(html, /data-keap-state="not_configured"/);
  assert.match(html, /data-api-key-state="none"/);
  assert.match(html, /data-oauth-state="not_configured"/);
  assert.match(html, /KEAP_CLIENT_ID/, 'the page explains how to enable OAuth');
  assert.match(html, /data-fields-error="not_set_up">Keap is not set up yet/);
  assert.match(html, /<input id="password_field" name="password_field" type="text"/, 'fields are typed while Keap is not set up');

  let res = await submitForm(admin, PAGE, `${PAGE}/test`, {});
  assert.equal(testResult(res.text), 'failed');
  assert.match(res.text, /there is nothing to test yet: enter an API key below \(or set KEAP_API_KEY\)/, 'points at the form on this page first');
  assert.match(res.text, /class="badge bad" data-keap-state="not_configured"/);

  res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: 'short' });
  assert.equal(res.status, 400);
  assert.match(res.text, /at least 8 characters/);
  res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: 'has a space in it' });
  assert.equal(res.status, 400);

  // A key Keap refuses is tested before it is stored, and not stored.
  res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: WRONG_KEY });
  assert.equal(res.status, 400);
  assert.match(res.text, /Keap refused this key: [^<]*401[^<]*\. Nothing was stored\./);
  assert.equal(site.ctx.site.keapApiKey(), undefined);
  assert.doesNotMatch(res.text, /data-store-anyway/, 'a refused key is not offered "store untested"');

  // Stored untested only when the admin says so (as when Keap cannot be reached); the test then shows it failing, in red.
  res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: WRONG_KEY, store_anyway: 'yes' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=key_saved_untested`);
  html = (await admin.get(res.headers.location!)).text;
  assert.match(html, /stored without a test/);
  assert.match(html, /data-keap-state="api_key" data-key-source="stored"/);
  assert.ok(html.includes('ending <code>…zyxw</code>'), 'the key is shown by its last four characters only');
  res = await submitForm(admin, PAGE, `${PAGE}/test`, {});
  assert.equal(testResult(res.text), 'failed', 'Keap refuses the wrong key');
  assert.match(res.text, /401/);
  assert.match(res.text, /class="badge bad" data-keap-state="api_key"/, 'no green badge beside a failed test');

  res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: `  ${RIGHT_KEY} ` });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=key_saved`);
  assert.match((await admin.get(res.headers.location!)).text, /Keap accepted the API key, and it is stored/);
  res = await submitForm(admin, PAGE, `${PAGE}/test`, {});
  assert.equal(testResult(res.text), 'ok', 'the new key works at once');
  assert.match(res.text, /4 contact custom fields/);
  assert.equal((await site.ctx.keap.getContact(C.ada)).email, 'ada@example.com', 'and so do the jobs’ calls');
  assert.equal(sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.ada}`).at(-1)?.credential, 'key');
  assert.match((await admin.get('/admin')).text, /data-keap-state="api_key"/, 'the dashboard agrees');

  res = await submitForm(admin, PAGE, `${PAGE}/api-key/clear`, {});
  assert.equal(res.status, 303);
  assert.equal(site.ctx.site.keapApiKey(), undefined);
  assert.equal(site.ctx.keap.authMode, 'none', 'cleared: the client stops using it at once');
  html = (await admin.get(PAGE)).text;
  assert.match(html, /data-keap-state="not_configured"/);
  noSecrets(site, html, [RIGHT_KEY, WRONG_KEY]);
  noSecrets(site, res.text, [RIGHT_KEY, WRONG_KEY]);
});

test('settings fixed by the environment are shown read-only and refused on POST', async () => {
  const sb = await sharedSandbox();
  const envKey = ENV_KEY;
  const site = await testSiteWithAdmin({ KEAP_API_URL: sb.url, KEAP_API_KEY: envKey, KEAP_PASSWORD_FIELD: 'Password' });
  const admin = await adminAgent(site.app);
  const html = (await admin.get(PAGE)).text;
  assert.match(html, /data-api-key-state="environment"/);
  assert.match(html, /Set by <code>KEAP_API_KEY<\/code>/);
  assert.ok(html.includes('…WXYZ'));
  assert.doesNotMatch(html, /name="api_key"/, 'no key form');
  assert.doesNotMatch(html, /data-clear-api-key/);
  assert.match(html, /data-fixed="password_field"><strong>Password field:<\/strong> <code>Password<\/code>/);
  assert.doesNotMatch(html, /name="password_field"/);
  assert.match(html, /<select id="username_field" name="username_field">/, 'the other field stays editable');
  noSecrets(site, html, [envKey]);

  let res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: RIGHT_KEY });
  assert.equal(res.status, 400);
  assert.match(res.text, /set by KEAP_API_KEY/);
  res = await submitForm(admin, PAGE, `${PAGE}/api-key/clear`, {});
  assert.equal(res.status, 400);
  assert.equal(site.ctx.site.keapApiKey(), envKey);
  assert.equal(site.ctx.settings.get('keap.api_key'), undefined, 'nothing stored');

  res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: String(F.username), username_field: '' });
  assert.equal(res.status, 400);
  assert.match(res.text, /set by KEAP_PASSWORD_FIELD/);
  assert.equal(site.ctx.site.passwordField(), 'Password');
  assert.equal(site.ctx.settings.get('keap.password_field'), undefined);
  assert.equal(site.ctx.settings.get('keap.username_field'), undefined, 'a refused form saves nothing');
});

test('the field selects list Keap’s contact custom fields; the choice is saved by id and checked against Keap', async () => {
  const sb = await sharedSandbox();
  const site = await testSiteWithAdmin({ KEAP_API_URL: sb.url, KEAP_API_KEY: RIGHT_KEY, KEAP_USERNAME_FIELD: '' });
  const admin = await adminAgent(site.app);
  let html = (await admin.get(PAGE)).text;
  const options = [...html.matchAll(/<select id="password_field"[^>]*>([\s\S]*?)<\/select>/g)][0]![1]!;
  const listed = [...options.matchAll(/<option value="([^"]*)"( selected)?>([^<]*)<\/option>/g)].map((m) => [m[1], m[3]]);
  assert.deepEqual(listed, [
    ['', '— none —'],
    [String(F.password), 'Password (id 12)'],
    [String(F.username), 'Username (id 14)'],
    [String(F.favoriteColor), 'Favorite Color (id 16)'],
    [String(F.memberSince), 'Member Since (id 18)'],
  ]);
  assert.match(options, /<option value="" selected>/, 'none chosen yet');
  const hint = (page: string, name: string) => new RegExp(`data-field-hint="${name}">([^<]*)<`).exec(page)?.[1];
  assert.equal(hint(html, 'password_field'), 'Saved: none: passwords are not read from or written back to Keap.');

  assert.match(html, /<input type="hidden" name="fields_from" value="keap">/);
  let res = await submitForm(admin, PAGE, `${PAGE}/fields`, { fields_from: 'keap', password_field: String(F.password), username_field: 'no such field' });
  assert.equal(res.status, 400);
  assert.match(res.text, /Keap has no contact custom field “no such field”/);
  assert.equal(site.ctx.site.passwordField(), undefined, 'nothing saved');

  res = await submitForm(admin, PAGE, `${PAGE}/fields`, { fields_from: 'keap', password_field: String(F.password), username_field: 'username' });
  assert.equal(res.status, 303);
  assert.equal(site.ctx.site.passwordField(), '12');
  assert.equal(site.ctx.site.usernameField(), 'username', 'a label works as the sync resolves it');
  html = (await admin.get(res.headers.location!)).text;
  assert.match(html, /<option value="12" selected>Password \(id 12\)<\/option>/);
  assert.match(html, /<option value="14" selected>Username \(id 14\)<\/option>/);
  // The hints say what the saved choice does now, not what "none" would.
  assert.match(hint(html, 'password_field') ?? '', /^Saved: “Password”: a new member gets the password Keap holds in it; if it is empty, memberhook generates one and writes it back there\.$/);
  assert.match(hint(html, 'username_field') ?? '', /^Saved: “Username”: a new member’s username is taken from it/);

  res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: '', username_field: '' });
  assert.equal(res.status, 303);
  assert.equal(site.ctx.site.passwordField(), undefined, '— none — clears it');
});

test('the password choices under the password field are on by default, say what they do, and are saved from the form', async () => {
  const sb = await sharedSandbox();
  const site = await testSiteWithAdmin({ KEAP_API_URL: sb.url, KEAP_API_KEY: RIGHT_KEY, KEAP_USERNAME_FIELD: '' });
  const admin = await adminAgent(site.app);
  const box = (page: string, name: string) => new RegExp(`<input type="checkbox" name="${name}" value="yes"[^>]*>`).exec(page)?.[0];
  const hint = (page: string, name: string) => new RegExp(`data-choice-hint="${name}">([^<]*)<`).exec(page)?.[1];
  let html = (await admin.get(PAGE)).text;
  assert.match(box(html, 'push_passwords') ?? '', / checked>$/, 'on by default');
  assert.match(box(html, 'take_keap_passwords') ?? '', / checked>$/);
  assert.equal(hint(html, 'push_passwords'), 'On, but no password field is saved, so nothing is written to Keap or taken from it.');
  assert.ok(html.indexOf('data-password-sync') > html.indexOf('id="password_field"') && html.indexOf('data-password-sync') < html.indexOf('id="username_field"'), 'right under the password field');

  let res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: String(F.password), password_choices: 'shown', push_passwords: 'yes', take_keap_passwords: 'yes' });
  assert.equal(res.status, 303);
  html = (await admin.get(res.headers.location!)).text;
  assert.match(hint(html, 'push_passwords') ?? '', /^On: a password a member sets \(account page, reset link\) or an administrator or the JSON API sets is written to the field/);
  assert.match(hint(html, 'take_keap_passwords') ?? '', /^On: when an update post finds a new password in the field, it becomes the member’s password/);
  assert.deepEqual([site.ctx.site.pushPasswordChanges(), site.ctx.site.takeKeapPasswords()], [true, true]);

  // Unticked boxes send nothing: both off.
  res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: String(F.password), password_choices: 'shown' });
  assert.equal(res.status, 303);
  assert.deepEqual([site.ctx.site.pushPasswordChanges(), site.ctx.site.takeKeapPasswords()], [false, false]);
  html = (await admin.get(res.headers.location!)).text;
  assert.doesNotMatch(box(html, 'push_passwords') ?? '', /checked/);
  assert.match(hint(html, 'push_passwords') ?? '', /^Off: password changes stay in memberhook/);
  assert.match(hint(html, 'take_keap_passwords') ?? '', /^Off: update posts leave members’ passwords alone/);
  assert.match(site.logs.text(), /"pushPasswords":false,"takeKeapPasswords":false/);

  // A form without the choices (an older page, a script) leaves them as they are; a bad value is refused, naming it.
  res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: String(F.password) });
  assert.equal(res.status, 303);
  assert.deepEqual(site.ctx.site.passwordSyncChoices(), { push: false, take: false });
  res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: '', password_choices: 'shown', push_passwords: 'on', take_keap_passwords: 'yes' });
  assert.equal(res.status, 400);
  assert.match(alertOf(res.text) ?? '', /Write password changes to Keap: expected the checkbox’s value “yes”/);
  assert.deepEqual(site.ctx.site.passwordSyncChoices(), { push: false, take: false }, 'nothing saved');
  assert.equal(site.ctx.site.passwordField(), '12', 'not the field either');
});

test('when Keap cannot be reached the page says so and offers text inputs, and a typed field is saved', async () => {
  const site = await testSiteWithAdmin({ KEAP_API_URL: 'http://127.0.0.1:9/crm', KEAP_API_KEY: RIGHT_KEY, KEAP_TIMEOUT_MS: '1000' });
  const admin = await adminAgent(site.app);
  const html = (await admin.get(PAGE)).text;
  assert.match(html, /data-fields-error="failed">Keap( did not answer|’s fields cannot be listed)/);
  assert.match(html, /<input id="password_field" name="password_field" type="text" value=""/);
  assert.match(html, /<input type="hidden" name="fields_from" value="typed">/);
  const form = { _csrf: csrfFrom(html), fields_from: 'typed' };
  const res = await admin.post(`${PAGE}/fields`).type('form').send({ ...form, password_field: 'Password', username_field: '' });
  assert.equal(res.status, 303);
  assert.equal(site.ctx.site.passwordField(), 'Password');
  const test = await admin.post(`${PAGE}/test`).type('form').send(form);
  assert.equal(testResult(test.text), 'failed');
  noSecrets(site, test.text, [RIGHT_KEY]);
});

test('Connect to Keap: the OAuth flow stores the tokens, and Keap calls then carry the bearer token', async () => {
  const site = await oauthSite();
  const admin = await adminAgent(site.app);
  const page = await admin.get(PAGE);
  assert.match(page.text, /data-keap-state="oauth_not_connected"/);
  assert.match(page.text, /data-oauth-state="not_connected"/);
  assert.ok(page.text.includes(`<code>${CALLBACK}</code>`), 'the redirect URI to register is shown');
  const csp = String(page.headers['content-security-policy']);
  assert.ok(csp.includes(`form-action 'self' ${new URL(site.sb.authorizeUrl).origin}`), 'the page lets the Connect form’s redirect reach Keap');

  const started = await submitForm(admin, PAGE, `${PAGE}/connect`, {});
  assert.equal(started.status, 303);
  const authorize = new URL(started.headers.location!);
  assert.equal(`${authorize.origin}${authorize.pathname}`, site.sb.authorizeUrl);
  assert.equal(authorize.searchParams.get('client_id'), 'sandbox-client');
  assert.equal(authorize.searchParams.get('redirect_uri'), CALLBACK);
  assert.equal(authorize.searchParams.get('response_type'), 'code');
  assert.match(authorize.searchParams.get('state') ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.equal(site.ctx.settings.get('keap.oauth_pending')?.includes(authorize.searchParams.get('state')!), false, 'only a hash of the state is stored');

  const back = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location')!);
  assert.equal(`${back.origin}${back.pathname}`, CALLBACK);
  const done = await admin.get(pathOf(back));
  assert.equal(done.status, 303);
  assert.equal(done.headers.location, `${PAGE}?done=connected`);
  const stored = site.tokens.load();
  assert.ok(stored, 'the tokens are stored');

  const html = (await admin.get(done.headers.location!)).text;
  assert.match(html, /data-keap-state="oauth_connected"/);
  assert.match(html, /data-oauth-state="connected"/);
  noSecrets(site, html, [stored.accessToken, stored.refreshToken, 'sandbox-secret']);
  assert.equal((await site.ctx.keap.getContact(C.grace)).email, 'grace@example.com');
  assert.equal(site.sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.grace}`).at(-1)?.credential, 'bearer', 'the call used the OAuth token');
  const tested = await submitForm(admin, PAGE, `${PAGE}/test`, {});
  assert.equal(testResult(tested.text), 'ok');
  assert.match(tested.text, /the OAuth connection/);

  // The same link again: the state is used up.
  const reused = await admin.get(pathOf(back));
  assert.equal(reused.status, 400);
  assert.match(alertOf(reused.text) ?? '', /No connection to Keap is waiting/);
  assert.deepEqual(site.tokens.load(), stored, 'nothing changed');
});

test('an OAuth callback with a missing, wrong, reused, expired or other-session state is refused with 400 and stores nothing', async () => {
  const site = await oauthSite();
  const admin = await adminAgent(site.app);

  const noState = await admin.get(`${PAGE}/callback?code=${site.sb.issueAuthorizationCode(CALLBACK)}`);
  assert.equal(noState.status, 400);
  assert.match(alertOf(noState.text) ?? '', /has no state/);

  const notStarted = await admin.get(`${PAGE}/callback?code=${site.sb.issueAuthorizationCode(CALLBACK)}&state=made-up`);
  assert.equal(notStarted.status, 400);
  assert.match(alertOf(notStarted.text) ?? '', /No connection to Keap is waiting/);

  const back = await connectAndApprove(admin);
  const forged = new URL(back);
  forged.searchParams.set('state', 'x'.repeat(43));
  const mismatch = await admin.get(pathOf(forged));
  assert.equal(mismatch.status, 400);
  assert.match(alertOf(mismatch.text) ?? '', /does not match/);

  // Another administrator's browser (another session) with the real link: refused, and the attempt stays usable.
  const other = await adminAgent(site.app);
  const otherSession = await other.get(pathOf(back));
  assert.equal(otherSession.status, 400);
  assert.match(alertOf(otherSession.text) ?? '', /another session/);
  assert.equal(site.tokens.load(), null, 'nothing stored');

  // Eleven minutes later the attempt has expired.
  site.clock.advance(OAUTH_STATE_TTL_MS + 60_000);
  const expired = await admin.get(pathOf(back));
  assert.equal(expired.status, 400);
  assert.match(alertOf(expired.text) ?? '', /expired/);
  const again = await admin.get(pathOf(back));
  assert.equal(again.status, 400, 'and it is gone');
  assert.equal(site.tokens.load(), null, 'nothing stored');
  assert.equal(site.ctx.keap.authMode, 'oauth');
  assert.equal(site.ctx.keap.oauth?.connected, false);
});

test('declining on Keap’s page is shown clearly; Disconnect needs a confirmation and deletes the tokens', async () => {
  const site = await oauthSite();
  const admin = await adminAgent(site.app);
  const back = await connectAndApprove(admin);
  const denied = await admin.get(`${PAGE}/callback?error=access_denied&error_description=%3Cb%3EUser%20said%20no%3C%2Fb%3E&state=${back.searchParams.get('state')}`);
  assert.equal(denied.status, 400);
  assert.match(alertOf(denied.text) ?? '', /access was denied/);
  assert.doesNotMatch(denied.text, /User said no/, 'text from the link is not echoed');
  assert.equal(site.tokens.load(), null);
  const afterDenied = await admin.get(pathOf(back));
  assert.equal(afterDenied.status, 400, 'the attempt was used up by the refusal');

  const connected = await admin.get(pathOf(await connectAndApprove(admin)));
  assert.equal(connected.status, 303);
  assert.ok(site.tokens.load());
  let res = await submitForm(admin, PAGE, `${PAGE}/disconnect`, {});
  assert.equal(res.status, 400, 'no confirmation');
  assert.match(alertOf(res.text) ?? '', /tick/);
  assert.ok(site.tokens.load(), 'still connected');
  assert.match((await admin.get(PAGE)).text, /data-confirm="Disconnect Keap\?/);
  res = await submitForm(admin, PAGE, `${PAGE}/disconnect`, { confirm: 'yes' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=disconnected`);
  assert.equal(site.tokens.load(), null);
  assert.match((await admin.get(PAGE)).text, /data-keap-state="oauth_not_connected"/);
});

test('a stored API key wins over the OAuth connection while it is set', async () => {
  const site = await oauthSite();
  const admin = await adminAgent(site.app);
  assert.equal((await admin.get(pathOf(await connectAndApprove(admin)))).status, 303);
  await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: RIGHT_KEY });
  let html = (await admin.get(PAGE)).text;
  assert.match(html, /data-keap-state="api_key"/);
  assert.match(html, /the OAuth connection is used once no key is set/);
  await site.ctx.keap.getContact(C.alan);
  assert.equal(site.sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.alan}`).at(-1)?.credential, 'key');
  await submitForm(admin, PAGE, `${PAGE}/api-key/clear`, {});
  html = (await admin.get(PAGE)).text;
  assert.match(html, /data-keap-state="oauth_connected"/);
  await site.ctx.keap.getContact(C.alan);
  assert.equal(site.sb.state.requestsTo('GET', `/crm/rest/v2/contacts/${C.alan}`).at(-1)?.credential, 'bearer');
});

test('the username field saved on the page is used by the next add job', async () => {
  const h = await startHarness({ env: { KEAP_PASSWORD_FIELD: '', ADMIN_EMAIL, ADMIN_PASSWORD } });
  after(() => h.close());
  const admin = await adminAgent(h.server.url as unknown as TestSite['app']);
  const res = await submitForm(admin, PAGE, `${PAGE}/fields`, { password_field: String(F.password), username_field: String(F.username) });
  assert.equal(res.status, 303);
  assert.equal((await h.post({ contactId: String(C.grace), wpf_action: 'add' })).status, 200);
  await h.settle();
  const grace = h.server.ctx.members.findByContactId(C.grace);
  assert.equal(grace?.username, 'ghopper', 'the username came from the Username field');
});

test('when Keap cannot be reached to test a key, nothing is stored and the form offers storing it untested', async () => {
  // A port nothing listens on: every call fails to connect.
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/crm`;
  closed.close();
  const site = await testSiteWithAdmin({ KEAP_API_URL: url });
  const admin = await adminAgent(site.app);
  const res = await submitForm(admin, PAGE, `${PAGE}/api-key`, { api_key: RIGHT_KEY });
  assert.equal(res.status, 502);
  assert.match(res.text, /Keap could not be reached to test the key \([^)]*\)\. Nothing was stored/);
  assert.match(res.text, /<input type="checkbox" name="store_anyway" value="yes" data-store-anyway>/);
  assert.equal(site.ctx.site.keapApiKey(), undefined);
  noSecrets(site, res.text, [RIGHT_KEY]);
});
