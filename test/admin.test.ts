import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import type { Response } from 'supertest';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import type { AppContext } from '../src/server.js';
import { buildContext, startServer } from '../src/server.js';
import { ADMIN_IDLE_MS } from '../src/features/members/admin-access.js';
import { runCreateAdmin } from '../src/cli/create-admin.js';
import { issueSetupCode } from '../src/features/members/admin-setup.js';
import { NO_ADMIN_RIGHTS_MESSAGE } from '../src/features/members/admin-gate.js';
import { LOGIN_FAILED_MESSAGE } from '../src/features/members/routes.js';
import type { Member } from '../src/features/members/types.js';
import { SqliteKeapTokenStore } from '../src/features/keap/token-store.js';
import { captureLogs } from './support/logs.js';
import { tempDataDir, NO_PLUGINS_DIR } from './support/temp.js';
import { ManualClock } from './support/clock.js';
import { setCookies, cookieNamed, cookieValue, csrfFrom, alertOf } from './support/pages.js';

const ADMIN_EMAIL = 'boss@example.com';
const ADMIN_PASSWORD = 'admin password 0123';
const MEMBER_PASSWORD = 'correct horse battery staple';
const WRONG_PASSWORD = 'Tr0ub4dor&3-not-it';
const HOUR = 60 * 60 * 1000;

interface Site {
  ctx: AppContext;
  /** The first-run setup code, as a start would print it (undefined once an administrator exists). */
  setupCode: string;
  app: ReturnType<typeof createApp>;
  clock: ManualClock;
  logs: ReturnType<typeof captureLogs>;
  dataDir: string;
}

async function site(env: Record<string, string> = {}, dataDir = tempDataDir()): Promise<Site> {
  const logs = captureLogs();
  const clock = new ManualClock();
  // Behind a proxy on loopback, so X-Forwarded-For plays clients at different addresses.
  const config = loadConfig({ DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, PORT: '0', ACCESS_KEY: 'x'.repeat(32), TRUST_PROXY: 'loopback', ...env });
  const ctx = await buildContext(config, { logger: logs.logger, console: () => {}, clock });
  after(() => {
    ctx.mailer.close();
    ctx.db.close();
  });
  return { ctx, app: createApp(ctx), clock, logs, dataDir, setupCode: issueSetupCode(ctx) ?? '' };
}

/** A site whose administrator exists already (made the way ADMIN_EMAIL would), plus Ada, a plain member. */
async function siteWithAdmin(env: Record<string, string> = {}): Promise<Site & { admin: Member; ada: Member }> {
  const s = await site(env);
  const admin = await createMember(s.ctx, { email: ADMIN_EMAIL, username: 'boss', role: 'administrator', password: ADMIN_PASSWORD });
  const ada = await createMember(s.ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: MEMBER_PASSWORD });
  return { ...s, admin, ada };
}

function createMember(ctx: AppContext, m: { email: string; username: string; role: string; password: string }): Promise<Member> {
  return ctx.members.create({ ...m, firstName: '', lastName: '', keapContactId: null, fields: {}, tags: [] });
}

function fieldError(html: string, field: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${field}-error">([^<]*)</p>`).exec(html)?.[1];
}

function count(ctx: AppContext, sql: string): number {
  return ctx.db.prepare<[], number>(sql).pluck().get()!;
}

const adminCount = (ctx: AppContext) => count(ctx, 'SELECT count(*) FROM members m JOIN roles r ON r.id = m.role_id WHERE r.is_admin = 1');
const memberCount = (ctx: AppContext) => count(ctx, 'SELECT count(*) FROM members');

async function postSetup(agent: request.Agent, code: string, fields: Record<string, string>): Promise<Response> {
  const form = await agent.get('/admin');
  return agent.post('/admin/setup').type('form').send({ _csrf: csrfFrom(form.text), code, ...fields });
}

async function adminLogIn(agent: request.Agent, login: string, password: string, extra: Record<string, string> = {}, ip?: string): Promise<Response> {
  const form = ip ? await agent.get('/admin/login').set('X-Forwarded-For', ip) : await agent.get('/admin/login');
  const post = agent.post('/admin/login').type('form');
  if (ip) post.set('X-Forwarded-For', ip);
  return post.send({ _csrf: csrfFrom(form.text), login, password, ...extra });
}

async function memberLogIn(agent: request.Agent, login: string, password: string): Promise<Response> {
  const form = await agent.get('/login');
  return agent.post('/login').type('form').send({ _csrf: csrfFrom(form.text), login, password });
}

const SETUP_FORM = /<form method="post" action="\/admin\/setup"/;

test('first run: every admin URL shows only the setup form; it creates the administrator, logs them in, and is gone for good', async () => {
  const { app, ctx, setupCode } = await site();
  const browser = request.agent(app);
  for (const path of ['/admin', '/admin/members', '/admin/events/3', '/admin/login', '/admin/setup']) {
    const page = await browser.get(path);
    assert.equal(page.status, 200, `${path} answers`);
    assert.match(page.text, SETUP_FORM, `${path} shows the setup form`);
    assert.equal(page.headers['cache-control'], 'no-store');
    assert.doesNotMatch(page.text, /href="\/admin\/(members|events|settings|roles)"/, 'no navigation');
    assert.doesNotMatch(page.text, /action="\/admin\/(login|logout)"/, 'no other form');
  }
  const elsewhere = await browser.post('/admin/login').type('form').send({ _csrf: csrfFrom((await browser.get('/admin')).text), login: 'x', password: 'y' });
  assert.equal(elsewhere.status, 303, 'other admin forms lead to the setup form');
  assert.equal(elsewhere.headers.location, '/admin/setup');

  const created = await postSetup(browser, setupCode, { email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
  assert.equal(created.status, 303);
  assert.equal(created.headers.location, '/admin');
  assert.ok(cookieNamed(created, 'mh_session'), 'the new administrator is logged in');
  const admin = ctx.members.findByEmail(ADMIN_EMAIL);
  assert.ok(admin);
  assert.equal(admin.role, 'administrator');
  assert.equal(admin.roleIsAdmin, true);
  assert.equal(admin.username, ADMIN_EMAIL);
  assert.equal(memberCount(ctx), 1);

  const dashboard = await browser.get('/admin');
  assert.equal(dashboard.status, 200);
  assert.match(dashboard.text, /<h1>Dashboard<\/h1>/);
  assert.ok(dashboard.text.includes(ADMIN_EMAIL), 'the top bar shows who is logged in');
  assert.match(dashboard.text, /<form method="post" action="\/admin\/logout">/);
  assert.doesNotMatch(dashboard.text, SETUP_FORM);

  // Gone for good: for the administrator, for a stranger, and even after the administrator is deleted.
  const again = await browser.get('/admin/setup');
  assert.equal(again.status, 303);
  const stranger = request.agent(app);
  const strangerToken = csrfFrom((await stranger.get('/admin/login')).text);
  const late = await stranger.post('/admin/setup').type('form').send({ _csrf: strangerToken, code: setupCode, email: 'late@example.com', password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
  assert.equal(late.status, 303);
  assert.equal(late.headers.location, '/admin/login');
  assert.equal(cookieNamed(late, 'mh_session'), undefined);
  const anonymous = await stranger.get('/admin');
  assert.equal(anonymous.status, 303);
  assert.equal(anonymous.headers.location, '/admin/login?next=/admin');

  await ctx.members.delete(admin.id);
  const afterDelete = await request.agent(app).get('/admin');
  assert.equal(afterDelete.status, 303, 'no second setup form even with no administrator left');
  assert.equal(afterDelete.headers.location, '/admin/login?next=/admin');
  assert.equal(memberCount(ctx), 0);
});

test('setup posts racing each other create exactly one administrator', async () => {
  const { app, ctx, setupCode } = await site();
  const browsers = Array.from({ length: 5 }, () => request.agent(app));
  const tokens = await Promise.all(browsers.map(async (b) => csrfFrom((await b.get('/admin')).text)));
  const results = await Promise.all(
    browsers.map((b, i) => b.post('/admin/setup').type('form').send({ _csrf: tokens[i], code: setupCode, email: `admin${i}@example.com`, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD })),
  );
  assert.equal(adminCount(ctx), 1);
  assert.equal(memberCount(ctx), 1);
  const winners = results.filter((r) => r.headers.location === '/admin');
  assert.equal(winners.length, 1, 'one post made the administrator');
  assert.ok(cookieNamed(winners[0]!, 'mh_session'));
  for (const loser of results.filter((r) => r !== winners[0])) {
    assert.equal(loser.status, 303);
    assert.equal(loser.headers.location, '/admin/login');
    assert.equal(cookieNamed(loser, 'mh_session'), undefined);
  }
});

test('a setup post without a valid form token is refused and creates nothing', async () => {
  const { app, ctx, setupCode } = await site();
  const noToken = await request(app).post('/admin/setup').type('form').send({ code: setupCode, email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
  assert.equal(noToken.status, 403);
  assert.match(noToken.text, /form has expired/);
  const browser = request.agent(app);
  await browser.get('/admin');
  const wrongToken = await browser.post('/admin/setup').type('form').send({ _csrf: 'A'.repeat(43), code: setupCode, email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
  assert.equal(wrongToken.status, 403);
  assert.equal(memberCount(ctx), 0);
  assert.match((await browser.get('/admin')).text, SETUP_FORM, 'setup is still open');
});

test('setup form mistakes are shown in the form with a 400 and create nothing', async () => {
  const { app, ctx, logs, setupCode } = await site();
  const browser = request.agent(app);
  const cases: Array<{ fields: Record<string, string>; field: string; message: RegExp }> = [
    { fields: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: `${ADMIN_PASSWORD}!` }, field: 'confirm', message: /not the same/ },
    { fields: { email: ADMIN_EMAIL, password: 'short-pw1', confirm: 'short-pw1' }, field: 'password', message: /at least 10 characters/ },
    { fields: { email: 'not-an-email', password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD }, field: 'email', message: /valid email/ },
    { fields: { email: '', password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD }, field: 'email', message: /Enter an email/ },
  ];
  for (const { fields, field, message } of cases) {
    const res = await postSetup(browser, setupCode, fields);
    assert.equal(res.status, 400, `${field}: 400`);
    assert.match(fieldError(res.text, field) ?? '', message, `${field}: the message is next to the field`);
    assert.match(res.text, new RegExp(`id="${field}"[^>]*aria-invalid="true"`));
    assert.match(res.text, SETUP_FORM, 'the form is shown again');
    assert.equal(res.text.includes(fields.password!), false, 'the password is not echoed');
    if (fields.email) assert.ok(res.text.includes(`value="${fields.email}"`), 'the email is kept');
    assert.equal(cookieNamed(res, 'mh_session'), undefined);
  }
  assert.equal(memberCount(ctx), 0);
  assert.equal(logs.text().includes(ADMIN_PASSWORD), false, 'no password in the logs');
});

test('setup refuses an email that belongs to an existing member and leaves that member alone', async () => {
  const { app, ctx, setupCode } = await site();
  const ada = await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: MEMBER_PASSWORD });
  const browser = request.agent(app);
  const res = await postSetup(browser, setupCode, { email: 'ADA@example.com', password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
  assert.equal(res.status, 400);
  assert.match(fieldError(res.text, 'email') ?? '', /already has this email/);
  assert.equal(adminCount(ctx), 0);
  assert.equal(ctx.members.get(ada.id).role, 'member');
  assert.equal((await memberLogIn(request.agent(app), 'ada', MEMBER_PASSWORD)).status, 303, 'her password is unchanged');
});

test('a fresh install prints a one-time setup link once it listens, and the setup form makes no administrator without its code', async () => {
  const dataDir = tempDataDir();
  const logs = captureLogs();
  const shown: string[] = [];
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, ACCESS_KEY: 'x'.repeat(32) });
  const start = () => startServer(config, { logger: logs.logger, console: (l) => shown.push(l), jobs: 'in-process' });
  const setupLinks = () => shown.flatMap((l) => /(\S+\/admin\/setup\?code=\S+)/.exec(l)?.[1] ?? []);
  const codeOf = (link: string) => new URL(link).searchParams.get('code')!;

  let running = await start();
  try {
    assert.equal(setupLinks().length, 1, 'the first start prints the setup link');
    const link = setupLinks()[0]!;
    // PORT=0: the real port is known only once the server listens, so a link carrying it was printed after that.
    assert.ok(link.startsWith(`${running.url}/admin/setup?code=`), `the link points at the listening server: ${link}`);
    const firstCode = codeOf(link);
    assert.ok(firstCode.length >= 43, 'a long random code');
    assert.equal(logs.text().includes(firstCode), false, 'the code never reaches the log');
    assert.equal(JSON.stringify(running.ctx.db.prepare('SELECT value FROM settings').pluck().all()).includes(firstCode), false, 'only a hash of the code is stored');

    const browser = request.agent(running.url);
    const form = await browser.get(new URL(link).pathname + new URL(link).search);
    assert.equal(form.status, 200);
    assert.ok(form.text.includes(`name="code" type="text" value="${firstCode}"`), 'the link fills in the code');
    const post = (fields: Record<string, string>) => browser.post('/admin/setup').type('form').send({ _csrf: csrfFrom(form.text), email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD, ...fields });
    for (const code of ['', 'not-the-code', `${firstCode}x`, firstCode.slice(0, -1)]) {
      const refused = await post({ code });
      assert.equal(refused.status, 403, `code ${JSON.stringify(code)} is refused`);
      assert.match(fieldError(refused.text, 'code') ?? '', code ? /not the current one/ : /Enter the setup code/);
      assert.equal(cookieNamed(refused, 'mh_session'), undefined);
      assert.equal(refused.text.includes(`value="${code || 'none'}"`), false, 'a wrong code is not echoed');
    }
    assert.equal(adminCount(running.ctx), 0, 'no administrator without the code');

    // A restart before setup prints a fresh link; the old one stops working.
    await running.close();
    running = await start();
    assert.equal(setupLinks().length, 2, 'the second start prints a new link');
    const secondCode = codeOf(setupLinks()[1]!);
    assert.notEqual(secondCode, firstCode);
    const again = request.agent(running.url);
    const token = csrfFrom((await again.get('/admin')).text);
    const send = (code: string) => again.post('/admin/setup').type('form').send({ _csrf: token, code, email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
    assert.equal((await send(firstCode)).status, 403, 'the previous start\'s code no longer works');
    const created = await send(secondCode);
    assert.equal(created.status, 303);
    assert.equal(created.headers.location, '/admin');
    assert.equal(adminCount(running.ctx), 1);

    // Once an administrator exists, the code is dead and no start prints a link.
    const stranger = request.agent(running.url);
    const strangerToken = csrfFrom((await stranger.get('/admin/login')).text);
    const late = await stranger.post('/admin/setup').type('form').send({ _csrf: strangerToken, code: secondCode, email: 'late@example.com', password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
    assert.equal(late.status, 303);
    assert.equal(late.headers.location, '/admin/login');
    await running.close();
    running = await start();
    assert.equal(setupLinks().length, 2, 'no link once an administrator exists');
    assert.equal(adminCount(running.ctx), 1);
  } finally {
    await running.close();
  }
});

test('a start with ADMIN_EMAIL prints no setup link: that administrator needs no code', async () => {
  const shown: string[] = [];
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: tempDataDir(), PLUGINS_DIR: NO_PLUGINS_DIR, ACCESS_KEY: 'x'.repeat(32), ADMIN_EMAIL, ADMIN_PASSWORD });
  const running = await startServer(config, { logger: captureLogs().logger, console: (l) => shown.push(l), jobs: 'in-process' });
  try {
    assert.deepEqual(shown, []);
    assert.equal((await adminLogIn(request.agent(running.url), ADMIN_EMAIL, ADMIN_PASSWORD)).status, 303);
  } finally {
    await running.close();
  }
});

test('wrong setup codes are counted per address: after ten, even the right code waits out the lock', async () => {
  const { app, ctx, clock, setupCode } = await site();
  const browser = request.agent(app);
  const token = csrfFrom((await browser.get('/admin')).text);
  const send = (code: string) => browser.post('/admin/setup').type('form').send({ _csrf: token, code, email: ADMIN_EMAIL, password: ADMIN_PASSWORD, confirm: ADMIN_PASSWORD });
  for (let i = 0; i < 10; i++) assert.equal((await send(`guess-${i}`)).status, 403);
  const locked = await send(setupCode);
  assert.equal(locked.status, 429);
  assert.ok(Number(locked.headers['retry-after']) > 0, 'Retry-After says how long');
  assert.match(alertOf(locked.text) ?? '', /Too many/i);
  assert.equal(adminCount(ctx), 0);
  clock.advance(HOUR);
  const created = await send(setupCode);
  assert.equal(created.status, 303, 'after the lock the right code works');
  assert.equal(adminCount(ctx), 1);
});

test('ADMIN_EMAIL naming a member synced from Keap gives it ADMIN_PASSWORD and ends its sessions: the Keap-side password never opens the admin', async () => {
  const dataDir = tempDataDir();
  const KEAP_SIDE_PASSWORD = 'readable in keap 0123';
  const before = await site({}, dataDir);
  const synced = await before.ctx.members.create({ email: 'owner@example.com', username: 'owner', role: 'subscriber', password: KEAP_SIDE_PASSWORD, keapContactId: 101, firstName: '', lastName: '', fields: {}, tags: [] });
  const memberBrowser = request.agent(before.app);
  assert.equal((await memberLogIn(memberBrowser, 'owner', KEAP_SIDE_PASSWORD)).status, 303);
  const sessions = (ctx: AppContext) => ctx.db.prepare<[number], number>('SELECT count(*) FROM sessions WHERE member_id = ?').pluck().get(synced.id)!;
  assert.equal(sessions(before.ctx), 1);

  const env = { ADMIN_EMAIL: 'OWNER@example.com', ADMIN_PASSWORD };
  const { app, ctx, logs } = await site(env, dataDir);
  assert.equal(ctx.members.get(synced.id).roleIsAdmin, true, 'promoted');
  assert.equal(sessions(ctx), 0, 'the sessions it had are ended');
  assert.equal((await memberBrowser.get('/account')).status, 303, 'the browser logged in before is logged out');
  assert.equal((await adminLogIn(request.agent(app), 'owner@example.com', KEAP_SIDE_PASSWORD)).status, 401, 'the Keap-side password does not open the admin');
  assert.equal((await adminLogIn(request.agent(app), 'owner@example.com', ADMIN_PASSWORD)).status, 303, 'ADMIN_PASSWORD does');
  assert.equal(logs.text().includes(ADMIN_PASSWORD), false);

  // A restart that finds ADMIN_PASSWORD in place changes nothing and logs nobody out.
  assert.equal(sessions(ctx), 1);
  await site(env, dataDir);
  assert.equal(sessions(ctx), 1, 'a plain restart keeps the session');
  // One that finds another password (changed in the site) puts ADMIN_PASSWORD back, ending the sessions again.
  await ctx.members.changePassword(synced.id, 'changed in the site 42', 'account');
  await site(env, dataDir);
  assert.equal((await adminLogIn(request.agent(app), 'owner@example.com', ADMIN_PASSWORD)).status, 303);
});

test('anonymous visitors are sent to the admin login, and back to the page they asked for', async () => {
  const { app } = await siteWithAdmin();
  const browser = request.agent(app);
  const page = await browser.get('/admin/events?status=failed');
  assert.equal(page.status, 303);
  assert.equal(page.headers.location, '/admin/login?next=/admin/events%3Fstatus%3Dfailed');
  assert.equal(page.headers['cache-control'], 'no-store');
  const post = await browser.post('/admin/anything').type('form').send({ _csrf: csrfFrom((await browser.get('/admin/login')).text) });
  assert.equal(post.status, 303);
  assert.equal(post.headers.location, '/admin/login', 'a form post cannot be resumed');

  const form = await browser.get('/admin/login?next=/admin/events%3Fstatus%3Dfailed');
  assert.equal(form.status, 200);
  assert.ok(form.text.includes('name="next" value="/admin/events?status&#x3D;failed"'), 'the form carries where to go');
  const res = await browser.post('/admin/login').type('form').send({ _csrf: csrfFrom(form.text), login: ADMIN_EMAIL, password: ADMIN_PASSWORD, next: '/admin/events?status=failed' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/admin/events?status=failed');

  for (const next of ['//evil.com', 'https://evil.com/admin', '/account', '/administrator']) {
    const other = request.agent(app);
    const to = await adminLogIn(other, 'boss', ADMIN_PASSWORD, { next });
    assert.equal(to.headers.location, '/admin', `${next} is ignored`);
  }
});

test('a logged-in member without admin rights gets a 403 page, and the admin login does not let them in', async () => {
  const { app, ctx } = await siteWithAdmin();
  const browser = request.agent(app);
  assert.equal((await memberLogIn(browser, 'ada', MEMBER_PASSWORD)).status, 303);
  for (const path of ['/admin', '/admin/members']) {
    const res = await browser.get(path);
    assert.equal(res.status, 403, `${path} is forbidden`);
    assert.match(res.text, /no admin rights/);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.doesNotMatch(res.text, /<h1>Dashboard/);
  }
  const viaAdminLogin = await adminLogIn(request.agent(app), 'ada', MEMBER_PASSWORD);
  assert.equal(viaAdminLogin.status, 403);
  assert.equal(alertOf(viaAdminLogin.text), NO_ADMIN_RIGHTS_MESSAGE);
  assert.equal(cookieNamed(viaAdminLogin, 'mh_session'), undefined);
  assert.equal(count(ctx, 'SELECT count(*) FROM sessions'), 1, 'only her member session');
});

test('an administrator logs in at /admin/login; a session from the member login is asked to log in again', async () => {
  const { app } = await siteWithAdmin();
  const viaMemberLogin = request.agent(app);
  assert.equal((await memberLogIn(viaMemberLogin, 'boss', ADMIN_PASSWORD)).status, 303);
  const asked = await viaMemberLogin.get('/admin');
  assert.equal(asked.status, 303);
  assert.equal(asked.headers.location, '/admin/login?next=/admin');

  const res = await adminLogIn(viaMemberLogin, ADMIN_EMAIL.toUpperCase(), ADMIN_PASSWORD);
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/admin');
  const cookie = cookieNamed(res, 'mh_session');
  assert.ok(cookie);
  assert.match(cookie, /; HttpOnly/);
  assert.match(cookie, /; SameSite=Lax/);
  assert.doesNotMatch(cookie, /Max-Age|Expires/, 'a cookie for this browser session only');
  assert.equal((await viaMemberLogin.get('/admin')).status, 200);
  assert.equal((await viaMemberLogin.get('/account')).status, 200, 'the member pages work too');
  const loginAgain = await viaMemberLogin.get('/admin/login');
  assert.equal(loginAgain.status, 303, 'an administrator who is logged in skips the form');
  assert.equal(loginAgain.headers.location, '/admin');

  const wrong = await adminLogIn(request.agent(app), 'boss', WRONG_PASSWORD);
  const unknown = await adminLogIn(request.agent(app), 'nobody@example.com', WRONG_PASSWORD);
  for (const failed of [wrong, unknown]) {
    assert.equal(failed.status, 401);
    assert.equal(alertOf(failed.text), LOGIN_FAILED_MESSAGE);
    assert.equal(failed.text.includes(WRONG_PASSWORD.replace('&', '&amp;')), false);
    assert.equal(cookieNamed(failed, 'mh_session'), undefined);
  }
});

test('an admin session ends after 12 hours without an admin page, and each admin page keeps it going', async () => {
  const { app, clock } = await siteWithAdmin();
  const browser = request.agent(app);
  await adminLogIn(browser, 'boss', ADMIN_PASSWORD);
  clock.advance(ADMIN_IDLE_MS - HOUR);
  assert.equal((await browser.get('/admin')).status, 200, '11 hours later');
  clock.advance(ADMIN_IDLE_MS - HOUR);
  assert.equal((await browser.get('/admin')).status, 200, '22 hours after logging in, 11 after the last page');
  clock.advance(ADMIN_IDLE_MS);
  const expired = await browser.get('/admin');
  assert.equal(expired.status, 303, '12 idle hours later');
  assert.equal(expired.headers.location, '/admin/login?next=/admin');
  assert.equal((await browser.get('/account')).status, 303, 'the session is over everywhere');
});

test('the admin login is throttled like the member login, and counts the same failures', async () => {
  const { app, clock } = await siteWithAdmin();
  const browser = request.agent(app);
  for (let i = 1; i <= 5; i++) {
    const res = await adminLogIn(browser, 'boss', `${WRONG_PASSWORD}${i}`);
    assert.equal(res.status, 401, `attempt ${i} is just wrong`);
  }
  const locked = await adminLogIn(browser, 'BOSS', ADMIN_PASSWORD);
  assert.equal(locked.status, 429);
  assert.equal(alertOf(locked.text), 'Too many attempts. Try again in 1 minute.');
  assert.equal(locked.headers['retry-after'], '60');
  assert.equal(cookieNamed(locked, 'mh_session'), undefined);
  assert.equal((await memberLogIn(request.agent(app), 'boss', ADMIN_PASSWORD)).status, 429, 'the member login is locked for this account too');
  clock.advance(60_000);
  assert.equal((await adminLogIn(browser, 'boss', ADMIN_PASSWORD)).status, 303, 'the lock lifts after a minute');

  // Guesses at the member login count against the admin login as well.
  const guesser = request.agent(app);
  for (let i = 0; i < 5; i++) assert.equal((await memberLogIn(guesser, 'ada', WRONG_PASSWORD)).status, 401);
  assert.equal((await adminLogIn(guesser, 'ada', MEMBER_PASSWORD)).status, 429);

  // And one address guessing across many accounts is stopped here as at /login.
  const ip = '203.0.113.9';
  const sprayer = request.agent(app);
  for (let i = 0; i < 20; i++) assert.equal((await adminLogIn(sprayer, `guess${i}@example.com`, WRONG_PASSWORD, {}, ip)).status, 401);
  assert.equal((await adminLogIn(sprayer, 'boss', ADMIN_PASSWORD, {}, ip)).status, 429);
});

test('strangers guessing from many addresses cannot lock the administrator out: the account only slows down, and a browser that logged in before walks in', async () => {
  const { app, clock } = await siteWithAdmin();
  // The administrator's own browser, known from an earlier login (then logged out: the device cookie stays).
  const known = request.agent(app);
  const first = await adminLogIn(known, 'boss', ADMIN_PASSWORD);
  const device = cookieNamed(first, 'mh_device');
  assert.ok(device, 'a successful login marks the browser');
  assert.match(device, /; HttpOnly/);
  assert.match(device, /; SameSite=Lax/);
  assert.match(device, /; Max-Age=\d+/, 'it outlives the browser session');
  await known.post('/admin/logout').type('form').send({ _csrf: csrfFrom((await known.get('/admin')).text) });

  // Ten wrong guesses from ten addresses: each is just wrong; from then on the account cools off between guesses.
  for (let i = 1; i <= 10; i++) assert.equal((await adminLogIn(request.agent(app), ADMIN_EMAIL, WRONG_PASSWORD, {}, `198.51.100.${i}`)).status, 401, `guess ${i}`);
  const cooling = await adminLogIn(request.agent(app), ADMIN_EMAIL, ADMIN_PASSWORD, {}, '198.51.100.200');
  assert.equal(cooling.status, 429, 'an unknown browser waits out the cool-off, even with the right password');
  assert.equal(cooling.headers['retry-after'], '5');
  assert.equal(alertOf(cooling.text), 'Too many attempts. Try again in 5 seconds.');

  // The strangers keep going, a guess whenever the cool-off ends: it never grows past a minute.
  for (let i = 11; i <= 30; i++) {
    clock.advance(60_000);
    assert.equal((await adminLogIn(request.agent(app), ADMIN_EMAIL, WRONG_PASSWORD, {}, `198.51.100.${i}`)).status, 401, `guess ${i}`);
  }
  const stillCooling = await adminLogIn(request.agent(app), 'boss', ADMIN_PASSWORD, {}, '198.51.100.201');
  assert.equal(stillCooling.status, 429);
  assert.equal(stillCooling.headers['retry-after'], '60');

  // Meanwhile the administrator's known browser goes straight in, at both login forms.
  const walksIn = await adminLogIn(known, ADMIN_EMAIL, ADMIN_PASSWORD, {}, '198.51.100.1');
  assert.equal(walksIn.status, 303, 'a known browser is not held back, even from an address the strangers used');
  assert.equal(walksIn.headers.location, '/admin');
  await known.post('/admin/logout').type('form').send({ _csrf: csrfFrom((await known.get('/admin')).text) });
  assert.equal((await memberLogIn(known, 'boss', ADMIN_PASSWORD)).status, 303, 'and at /login');

  clock.advance(60_000);
  assert.equal((await adminLogIn(request.agent(app), 'boss', ADMIN_PASSWORD, {}, '203.0.113.50')).status, 303, 'a new browser gets in once the cool-off ends');
});

test('one address guessing at one account is locked for it, and a known browser has a budget of its own', async () => {
  const { app, clock } = await siteWithAdmin();
  const ip = '203.0.113.20';
  for (let i = 1; i <= 5; i++) assert.equal((await adminLogIn(request.agent(app), 'boss', WRONG_PASSWORD, {}, ip)).status, 401);
  const locked = await adminLogIn(request.agent(app), 'boss', ADMIN_PASSWORD, {}, ip);
  assert.equal(locked.status, 429, 'that address is locked for that account');
  assert.equal(locked.headers['retry-after'], '60');
  assert.equal((await memberLogIn(request.agent(app), 'ada', MEMBER_PASSWORD)).status, 303, 'other accounts are not');
  assert.equal((await adminLogIn(request.agent(app), 'boss', ADMIN_PASSWORD, {}, '203.0.113.21')).status, 303, 'nor other addresses');

  // A known browser's own wrong passwords lock that browser alone.
  const known = request.agent(app);
  assert.equal((await memberLogIn(known, 'ada', MEMBER_PASSWORD)).status, 303);
  await known.post('/logout').type('form').send({ _csrf: csrfFrom((await known.get('/logout')).text) });
  for (let i = 1; i <= 5; i++) assert.equal((await memberLogIn(known, 'ada', WRONG_PASSWORD)).status, 401);
  assert.equal((await memberLogIn(known, 'ada', MEMBER_PASSWORD)).status, 429, 'the known browser used up its budget');
  clock.advance(60_000);
  assert.equal((await memberLogIn(known, 'ada', MEMBER_PASSWORD)).status, 303);
});

test('a device cookie is good only for the account it was issued to, and cannot be forged', async () => {
  const { app, admin } = await siteWithAdmin();
  const adas = request.agent(app);
  const login = await memberLogIn(adas, 'ada', MEMBER_PASSWORD);
  const issued = cookieValue(cookieNamed(login, 'mh_device')!);
  const [, ...rest] = issued.split('.');
  for (let i = 1; i <= 10; i++) await adminLogIn(request.agent(app), 'boss', WRONG_PASSWORD, {}, `198.51.100.${i}`);
  const tries = { "Ada's cookie": issued, 'the member id changed': [String(admin.id), ...rest].join('.'), 'a made-up one': `${admin.id}.abc.${'A'.repeat(22)}.${'B'.repeat(43)}` };
  for (const [what, value] of Object.entries(tries)) {
    const browser = request.agent(app);
    const form = await browser.get('/admin/login').set('cookie', `mh_device=${value}`);
    const res = await browser.post('/admin/login').set('cookie', `mh_device=${value}`).type('form').send({ _csrf: csrfFrom(form.text), login: 'boss', password: ADMIN_PASSWORD });
    assert.equal(res.status, 429, `${what} does not let a browser past the boss account's cool-off`);
  }
});

test('/admin/login counts failures under the account, whichever of its names is typed', async () => {
  const { app } = await siteWithAdmin();
  const ip = '203.0.113.30';
  for (const login of ['boss', 'boss', 'boss@example.com', 'BOSS@example.com', ' Boss ']) {
    assert.equal((await adminLogIn(request.agent(app), login, WRONG_PASSWORD, {}, ip)).status, 401, login);
  }
  assert.equal((await adminLogIn(request.agent(app), 'boss', ADMIN_PASSWORD, {}, ip)).status, 429);
  assert.equal((await adminLogIn(request.agent(app), ADMIN_EMAIL, ADMIN_PASSWORD, {}, ip)).status, 429);
  assert.equal((await memberLogIn(request.agent(app), 'boss', ADMIN_PASSWORD)).status, 303, 'a lock from one address, not from this one');
});

test('logging out of the admin needs the form token and ends the session', async () => {
  const { app, ctx } = await siteWithAdmin();
  const browser = request.agent(app);
  await adminLogIn(browser, 'boss', ADMIN_PASSWORD);
  const dashboard = await browser.get('/admin');
  const forged = await browser.post('/admin/logout').type('form').send({});
  assert.equal(forged.status, 403);
  assert.equal((await browser.get('/admin')).status, 200, 'a refused logout changes nothing');
  const res = await browser.post('/admin/logout').type('form').send({ _csrf: csrfFrom(dashboard.text) });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/admin/login');
  assert.match(cookieNamed(res, 'mh_session') ?? '', /^mh_session=;/);
  assert.equal(count(ctx, 'SELECT count(*) FROM sessions'), 0);
  assert.equal((await browser.get('/admin')).status, 303);
});

/** The number in a dashboard table row marked `data-<attr>="<key>"`. */
function rowCount(html: string, attr: string, key: string): number | undefined {
  const match = new RegExp(`<tr data-${attr}="${key}">.*?<td class="num">(?:<span[^>]*>)?(\\d+)`, 's').exec(html);
  return match ? Number(match[1]) : undefined;
}

test('the dashboard shows members by role, the last 24 hours of events by status, the queue and recent failures', async () => {
  const { app, ctx } = await siteWithAdmin();
  // An empty queue is said once, in words, not as three zeros.
  const browser = request.agent(app);
  await adminLogIn(browser, 'boss', ADMIN_PASSWORD);
  const empty = (await browser.get('/admin')).text;
  const queuePanel = /<h2 id="queue-heading">Queue<\/h2>([\s\S]*?)<\/section>/.exec(empty)?.[1] ?? '';
  assert.match(queuePanel, /<p data-queue-depth="0">Empty: every job has run, nothing is waiting.<\/p>/);
  assert.doesNotMatch(queuePanel, />0</, 'no bare zero');
  for (let i = 0; i < 3; i++) await createMember(ctx, { email: `s${i}@example.com`, username: `s${i}`, role: 'subscriber', password: MEMBER_PASSWORD });
  await createMember(ctx, { email: 'm2@example.com', username: 'm2', role: 'member', password: MEMBER_PASSWORD });

  const enqueue = (status: string, contactId: number, error: string | null = null, createdAt?: string) => {
    const { id } = ctx.events.enqueue({ source: 'http_post', action: 'add', contactId, params: { contactId } });
    ctx.db.prepare('UPDATE events SET status = ?, last_error = ?, created_at = coalesce(?, created_at) WHERE id = ?').run(status, error, createdAt ?? null, id);
    return id;
  };
  const twoDaysAgo = new Date(ctx.clock.now() - 48 * HOUR).toISOString();
  // Older than a day: not in the 24-hour counts, but still failures worth listing, and still queued.
  enqueue('done', 1, null, twoDaysAgo);
  enqueue('failed', 2, 'old failure', twoDaysAgo);
  const oldQueued = enqueue('queued', 3, null, new Date(ctx.clock.now() - 30 * HOUR).toISOString());
  for (let i = 0; i < 4; i++) enqueue('done', 10 + i);
  enqueue('queued', 20);
  enqueue('processing', 21);
  enqueue('rejected', 22, 'invalid access key');
  const failures: number[] = [];
  for (let i = 0; i < 11; i++) failures.push(enqueue(i % 2 ? 'dead' : 'failed', 30 + i, `Keap says no <${i}>`));

  const res = await browser.get('/admin');
  assert.equal(res.status, 200);
  assert.equal(res.headers['cache-control'], 'no-store');
  const html = res.text;

  assert.equal(rowCount(html, 'role', 'administrator'), 1);
  assert.equal(rowCount(html, 'role', 'subscriber'), 3);
  assert.equal(rowCount(html, 'role', 'member'), 2);
  assert.equal(rowCount(html, 'role', 'all'), 6);

  assert.equal(rowCount(html, 'status', 'done'), 4);
  assert.equal(rowCount(html, 'status', 'queued'), 1, 'the 30-hour-old queued job is outside the window');
  assert.equal(rowCount(html, 'status', 'processing'), 1);
  assert.equal(rowCount(html, 'status', 'rejected'), 1);
  assert.equal(rowCount(html, 'status', 'failed'), 6);
  assert.equal(rowCount(html, 'status', 'dead'), 5);
  assert.equal(rowCount(html, 'status', 'skipped'), 0);
  assert.equal(rowCount(html, 'status', 'all'), 18);

  assert.match(html, /data-queue-depth="3"/, 'two queued (one old) and one running');
  assert.match(html, /data-queued="2"/);
  assert.match(html, /data-processing="1"/);
  assert.match(html, /<strong data-oldest-age>30 h<\/strong>/);
  assert.ok(ctx.events.get(oldQueued));

  const listed = [...html.matchAll(/<tr data-event="(\d+)">/g)].map((m) => Number(m[1]));
  assert.deepEqual(listed, failures.slice(1).reverse(), 'the ten latest failed or dead events, newest first');
  for (const id of listed) assert.ok(html.includes(`<a href="/admin/events/${id}">#${id}</a>`), `event ${id} links to its page`);
  assert.ok(html.includes('Keap says no &lt;10&gt;'), 'errors are shown as text');

  assert.match(html, /data-keap-state="not_configured"/);
  assert.match(html, /data-keap-report="none"/);
  assert.match(html, /None yet/);
  assert.match(html, /aria-current="page">Dashboard</, 'the top bar marks the dashboard');
});

test('the dashboard shows how Keap is connected and the last throttle and quota figures it reported', async () => {
  const withKey = await siteWithAdmin({ KEAP_API_KEY: 'a-keap-api-key' });
  const browser = request.agent(withKey.app);
  await adminLogIn(browser, 'boss', ADMIN_PASSWORD);
  let html = (await browser.get('/admin')).text;
  assert.match(html, /data-keap-state="api_key"/);
  assert.match(html, /data-keap-report="none"/);
  assert.equal(html.includes('a-keap-api-key'), false, 'the key itself is never shown');

  withKey.ctx.keap.limiter.observe(
    {
      'x-keap-product-throttle-limit': '10',
      'x-keap-product-throttle-available': '7',
      'x-keap-product-throttle-used': '3',
      'x-keap-product-throttle-time-unit': 'second',
      'x-keap-product-throttle-interval': '1',
      'x-keap-product-quota-limit': '150000',
      'x-keap-product-quota-available': '149000',
      'x-keap-product-quota-used': '1000',
      'x-keap-product-quota-time-unit': 'day',
    },
    200,
  );
  html = (await browser.get('/admin')).text;
  assert.doesNotMatch(html, /data-keap-report="none"/);
  assert.ok(html.includes('<td>Product throttle</td><td>7 of 10 left per second (3 used)</td>'));
  assert.ok(html.includes('<td>Product quota</td><td>149000 of 150000 left per day (1000 used)</td>'));
  assert.equal(html.includes('Tenant throttle'), false, 'a group Keap did not report is left out');

  const oauth = await siteWithAdmin({ KEAP_CLIENT_ID: 'client-id', KEAP_CLIENT_SECRET: 'client-secret' });
  const admin = request.agent(oauth.app);
  await adminLogIn(admin, 'boss', ADMIN_PASSWORD);
  assert.match((await admin.get('/admin')).text, /data-keap-state="oauth_not_connected"/);
  new SqliteKeapTokenStore(oauth.ctx.db, oauth.ctx.secretBox).save({ accessToken: 'a', refreshToken: 'r', expiresAt: Date.now() + HOUR, scope: null });
  assert.match((await admin.get('/admin')).text, /data-keap-state="oauth_connected"/);
});

test('create-admin makes the administrator from a shell, and the setup form is gone afterwards', async () => {
  const dataDir = tempDataDir();
  const env = { DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, ACCESS_KEY: 'x'.repeat(32) };
  const run = async (args: string[], extraEnv: Record<string, string> = {}, readPassword?: () => Promise<string>) => {
    const out: string[] = [];
    const err: string[] = [];
    const logs = captureLogs();
    const code = await runCreateAdmin(args, {
      env: { ...env, ...extraEnv },
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      logger: logs.logger,
      ...(readPassword ? { readPassword } : {}),
    });
    assert.equal(logs.text().includes(ADMIN_PASSWORD), false, 'no password in the logs');
    return { code, out, err };
  };

  for (const [args, message] of [
    [['--email', ADMIN_EMAIL, '--password', 'too-short'], /^memberhook: create-admin: invalid --password: Use at least 10 characters\.$/],
    [['--email', 'nope', '--password', ADMIN_PASSWORD], /^memberhook: create-admin: invalid --email: Enter a valid email address/],
    [['--password', ADMIN_PASSWORD], /^memberhook: create-admin: give the administrator's email with --email/],
    [['--email', ADMIN_EMAIL], /^memberhook: create-admin: give the password with --password or ADMIN_PASSWORD$/],
    [['--email', ADMIN_EMAIL, '--pasword', ADMIN_PASSWORD], /^memberhook: create-admin: unknown argument "--pasword"/],
    [['--email'], /^memberhook: create-admin: --email needs a value/],
  ] as const) {
    const { code, out, err } = await run([...args]);
    assert.equal(code, 1, `${args.join(' ')} fails`);
    assert.equal(err.length, 1, 'one line');
    assert.match(err[0]!, message);
    assert.equal(out.length, 0);
  }
  const badSetting = await run(['--email', ADMIN_EMAIL, '--password', ADMIN_PASSWORD], { PORT: 'abc' });
  assert.equal(badSetting.code, 1);
  assert.deepEqual(badSetting.err, ['memberhook: create-admin: Invalid setting PORT: expected a port number (got "abc")']);

  const created = await run(['--email', ADMIN_EMAIL, '--password', ADMIN_PASSWORD]);
  assert.equal(created.code, 0);
  assert.deepEqual(created.out, [`memberhook: administrator ${ADMIN_EMAIL} (member 1) created`]);
  assert.deepEqual(created.err, []);

  const { app, ctx } = await site({}, dataDir);
  assert.equal(adminCount(ctx), 1);
  assert.equal(ctx.members.findByEmail(ADMIN_EMAIL)?.username, ADMIN_EMAIL);
  assert.equal((await request(app).get('/admin')).status, 303, 'no setup form');
  assert.equal((await adminLogIn(request.agent(app), ADMIN_EMAIL, ADMIN_PASSWORD)).status, 303, 'the administrator can log in');

  // An existing member is promoted and gets the new password; the password may come from ADMIN_PASSWORD or a prompt.
  await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: MEMBER_PASSWORD });
  const newPassword = 'ada is in charge now';
  const promoted = await run(['--email=ada@example.com'], { ADMIN_PASSWORD: newPassword });
  assert.equal(promoted.code, 0);
  assert.deepEqual(promoted.out, ['memberhook: administrator ada@example.com (member 2) given admin rights and the new password']);
  assert.equal(ctx.members.findByEmail('ada@example.com')?.roleIsAdmin, true);
  assert.equal((await adminLogIn(request.agent(app), 'ada', newPassword)).status, 303);

  let asked = 0;
  const prompted = await run(['--email', 'ada@example.com'], {}, async () => {
    asked++;
    return ADMIN_PASSWORD;
  });
  assert.equal(prompted.code, 0);
  assert.equal(asked, 1);
  assert.deepEqual(prompted.out, ['memberhook: administrator ada@example.com (member 2) was already an administrator; password changed']);
  assert.equal((await adminLogIn(request.agent(app), 'ada', ADMIN_PASSWORD)).status, 303);
  assert.equal(adminCount(ctx), 2);
});
