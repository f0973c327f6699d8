import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import request from 'supertest';
import type { Response } from 'supertest';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import type { AppContext } from '../src/server.js';
import { buildContext } from '../src/server.js';
import { LOGIN_FAILED_MESSAGE } from '../src/features/members/routes.js';
import type { Member } from '../src/features/members/types.js';
import { captureLogs } from './support/logs.js';
import { tempDataDir, NO_PLUGINS_DIR } from './support/temp.js';
import { ManualClock } from './support/clock.js';
import { setCookies, cookieNamed, cookieValue, csrfFrom, alertOf } from './support/pages.js';

const PASSWORD = 'correct horse battery staple';
const WRONG_PASSWORD = 'Tr0ub4dor&3-not-it';

interface Site {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  clock: ManualClock;
  logs: ReturnType<typeof captureLogs>;
  ada: Member;
}

/** A fresh site (own database, own clock) with one member, Ada. */
async function site(env: Record<string, string> = {}, ada: Partial<{ firstName: string }> = {}): Promise<Site> {
  const logs = captureLogs();
  const clock = new ManualClock(Date.parse('2031-03-01T09:00:00Z'));
  // Behind a proxy on loopback, so X-Forwarded-For plays clients at different addresses.
  const config = loadConfig({ DATA_DIR: tempDataDir(), PLUGINS_DIR: NO_PLUGINS_DIR, PORT: '0', ACCESS_KEY: 'x'.repeat(32), TRUST_PROXY: 'loopback', ...env });
  const ctx = await buildContext(config, { logger: logs.logger, console: () => {}, clock });
  after(() => {
    ctx.mailer.close();
    ctx.db.close();
  });
  const member = await ctx.members.create({
    email: 'Ada.Lovelace@example.com',
    username: 'ada',
    role: 'member',
    password: PASSWORD,
    firstName: ada.firstName ?? 'Ada',
    lastName: 'Lovelace',
    keapContactId: 101,
    fields: {},
    tags: [
      { id: 91, name: 'Gold Level', category: 'Membership' },
      { id: 92, name: 'Newsletter', category: 'Lists' },
    ],
  });
  return { ctx, app: createApp(ctx), clock, logs, ada: member };
}

/** Opens the login form in this browser and posts it. */
async function logIn(agent: request.Agent, login: string, password: string, extra: Record<string, string> = {}, ip?: string): Promise<Response> {
  const form = ip ? await agent.get('/login').set('X-Forwarded-For', ip) : await agent.get('/login');
  const post = agent.post('/login').type('form');
  if (ip) post.set('X-Forwarded-For', ip);
  return post.send({ _csrf: csrfFrom(form.text), login, password, ...extra });
}

function sessionCount(ctx: AppContext): number {
  return ctx.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM sessions').get()!.n;
}

test('a member logs in by email in any case or by username and sees name, role and tags on the account page', async () => {
  const { app, ctx } = await site();
  const browser = request.agent(app);
  const res = await logIn(browser, 'ADA.LOVELACE@Example.COM', PASSWORD);
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/account');

  const cookie = cookieNamed(res, 'mh_session');
  assert.ok(cookie, 'a session cookie is set');
  assert.match(cookie, /; HttpOnly/);
  assert.match(cookie, /; SameSite=Lax/);
  assert.match(cookie, /; Path=\/(;|$)/);
  assert.match(cookie, /; Max-Age=1209600/, 'it lasts 14 days');
  assert.doesNotMatch(cookie, /; Secure/i, 'no Secure flag on a plain-http site');
  const token = cookieValue(cookie);
  assert.match(token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  const stored = ctx.db.prepare<[], { id_hash: string }>('SELECT id_hash FROM sessions').all();
  assert.deepEqual(stored.map((r) => r.id_hash), [createHash('sha256').update(token).digest('hex')], 'only the hash is stored');

  const account = await browser.get('/account');
  assert.equal(account.status, 200);
  assert.equal(account.headers['cache-control'], 'no-store');
  for (const shown of ['Ada Lovelace', 'Ada.Lovelace@example.com', '>ada<', '>Member<', 'Gold Level', 'Membership', 'Newsletter', 'Lists']) {
    assert.ok(account.text.includes(shown), `the account page shows ${shown}`);
  }

  const other = request.agent(app);
  const byUsername = await logIn(other, 'ada', PASSWORD);
  assert.equal(byUsername.status, 303);
  assert.equal((await other.get('/account')).status, 200);
  assert.equal(sessionCount(ctx), 2, 'each browser has its own session');
});

test('cookies are Secure __Host- cookies when PUBLIC_URL is https', async () => {
  const { app } = await site({ PUBLIC_URL: 'https://members.example.com' });
  // The test client talks plain http and would not send Secure cookies back, so they are carried by hand.
  const form = await request(app).get('/login');
  const csrfCookie = cookieNamed(form, '__Host-mh_csrf');
  assert.ok(csrfCookie);
  assert.match(csrfCookie, /; Secure/);
  assert.match(csrfCookie, /; HttpOnly/);
  assert.match(csrfCookie, /; SameSite=Lax/);
  const res = await request(app)
    .post('/login')
    .set('Cookie', csrfCookie.split(';')[0]!)
    .type('form')
    .send({ _csrf: csrfFrom(form.text), login: 'ada', password: PASSWORD });
  assert.equal(res.status, 303);
  const session = cookieNamed(res, '__Host-mh_session');
  assert.ok(session);
  assert.match(session, /; Secure/);
  assert.match(session, /; HttpOnly/);
  assert.match(session, /; SameSite=Lax/);
});

test('a wrong password and an unknown login get the same status and message, keeping the login but not the password', async () => {
  const { app, ctx } = await site();
  const browser = request.agent(app);
  const wrong = await logIn(browser, 'ada', WRONG_PASSWORD);
  const unknown = await logIn(browser, 'nobody@example.com', WRONG_PASSWORD);
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.equal(alertOf(wrong.text), LOGIN_FAILED_MESSAGE);
  assert.equal(alertOf(unknown.text), LOGIN_FAILED_MESSAGE);
  assert.match(wrong.text, /name="login" type="text" value="ada"/);
  assert.match(unknown.text, /name="login" type="text" value="nobody@example.com"/);
  for (const page of [wrong, unknown]) {
    assert.equal(page.text.includes(WRONG_PASSWORD), false, 'the password is not echoed');
    assert.equal(page.text.includes(WRONG_PASSWORD.replace('&', '&amp;')), false, 'not even escaped');
    assert.equal(cookieNamed(page, 'mh_session'), undefined);
  }
  assert.equal(sessionCount(ctx), 0);
  assert.equal((await browser.get('/account')).status, 303);
});

test('the account page without a session sends the visitor to log in, and back to it afterwards', async () => {
  const { app } = await site();
  const browser = request.agent(app);
  const account = await browser.get('/account');
  assert.equal(account.status, 303);
  assert.equal(account.headers.location, '/login?next=/account');

  const root = await browser.get('/');
  assert.equal(root.status, 303);
  assert.equal(root.headers.location, '/account');

  const form = await browser.get('/login?next=/account');
  assert.match(form.text, /name="next" value="\/account"/);
  const res = await browser.post('/login').type('form').send({ _csrf: csrfFrom(form.text), login: 'ada', password: PASSWORD, next: '/account?from=login' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/account?from=login');
});

test('an expired session is not accepted and is removed', async () => {
  const { app, ctx, clock } = await site();
  const browser = request.agent(app);
  await logIn(browser, 'ada', PASSWORD);
  clock.advance(14 * 24 * 60 * 60 * 1000 - 1000);
  assert.equal((await browser.get('/account')).status, 200, 'still good just before 14 days');
  clock.advance(1000);
  const res = await browser.get('/account');
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/login?next=/account');
  assert.equal(sessionCount(ctx), 0);
});

test('logging out needs the form token and ends the session for good', async () => {
  const { app, ctx } = await site();
  const browser = request.agent(app);
  const login = await logIn(browser, 'ada', PASSWORD);
  const oldSession = cookieNamed(login, 'mh_session')!.split(';')[0]!;

  const confirm = await browser.get('/logout');
  assert.equal(confirm.status, 200, 'GET shows a confirm form');
  assert.match(confirm.text, /<form method="post" action="\/logout"/);
  assert.equal((await browser.get('/account')).status, 200, 'GET /logout changed nothing');

  const forged = await browser.post('/logout').type('form').send({});
  assert.equal(forged.status, 403);
  assert.match(forged.text, /form has expired\. Reload the page and try again/);
  const wrongToken = await browser.post('/logout').type('form').send({ _csrf: 'A'.repeat(43) });
  assert.equal(wrongToken.status, 403);
  assert.equal((await browser.get('/account')).status, 200, 'a refused logout leaves the session alone');

  const res = await browser.post('/logout').type('form').send({ _csrf: csrfFrom(confirm.text) });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/login');
  const cleared = cookieNamed(res, 'mh_session');
  assert.ok(cleared);
  assert.match(cleared, /^mh_session=;/);
  assert.match(cleared, /Expires=Thu, 01 Jan 1970/);
  assert.equal(sessionCount(ctx), 0);

  const replay = await request(app).get('/account').set('Cookie', oldSession);
  assert.equal(replay.status, 303, 'the old cookie no longer opens the account');
});

test('a login posted without a valid form token is refused and opens no session', async () => {
  const { app, ctx } = await site();
  const noToken = await request(app).post('/login').type('form').send({ login: 'ada', password: PASSWORD });
  assert.equal(noToken.status, 403);
  assert.match(noToken.text, /form has expired/);
  assert.equal(cookieNamed(noToken, 'mh_session'), undefined);

  // A token is only good with the cookie it was made for: another browser's pair does not mix.
  const attacker = request.agent(app);
  const attackerToken = csrfFrom((await attacker.get('/login')).text);
  const victim = request.agent(app);
  await victim.get('/login');
  const mixed = await victim.post('/login').type('form').send({ _csrf: attackerToken, login: 'ada', password: PASSWORD });
  assert.equal(mixed.status, 403);
  assert.equal(cookieNamed(mixed, 'mh_session'), undefined);
  assert.equal(sessionCount(ctx), 0);
});

test('the sixth attempt on a locked account is refused even with the right password, until the wait is over', async () => {
  const { app, clock } = await site();
  const browser = request.agent(app);
  for (let i = 1; i <= 5; i++) {
    const res = await logIn(browser, 'ada', `${WRONG_PASSWORD}${i}`);
    assert.equal(res.status, 401, `attempt ${i} is just wrong`);
  }
  const locked = await logIn(browser, 'ADA', PASSWORD);
  assert.equal(locked.status, 429);
  assert.equal(alertOf(locked.text), 'Too many attempts. Try again in 1 minute.');
  assert.equal(locked.headers['retry-after'], '60');
  assert.equal(cookieNamed(locked, 'mh_session'), undefined);
  assert.match(locked.text, /value="ADA"/, 'the login is kept');
  assert.equal((await browser.get('/account')).status, 303);

  clock.advance(59_000);
  assert.equal((await logIn(browser, 'ada', PASSWORD)).status, 429, 'still locked after 59 s');
  clock.advance(1_000);
  const after = await logIn(browser, 'ada', PASSWORD);
  assert.equal(after.status, 303, 'the lock lifts after a minute');
  assert.equal((await browser.get('/account')).status, 200);
});

test('each failure after a lock doubles the wait', async () => {
  const { app, clock } = await site();
  const browser = request.agent(app);
  for (let i = 0; i < 5; i++) await logIn(browser, 'ada', WRONG_PASSWORD);
  clock.advance(60_000);
  assert.equal((await logIn(browser, 'ada', WRONG_PASSWORD)).status, 401, 'the sixth failure is checked again');
  const locked = await logIn(browser, 'ada', PASSWORD);
  assert.equal(locked.status, 429);
  assert.equal(alertOf(locked.text), 'Too many attempts. Try again in 2 minutes.');
  clock.advance(60_000);
  assert.equal((await logIn(browser, 'ada', PASSWORD)).status, 429, 'not after one minute');
  clock.advance(60_000);
  assert.equal((await logIn(browser, 'ada', PASSWORD)).status, 303, 'after two');
});

test('one address is locked after twenty wrong passwords across many accounts; a success does not reset it', async () => {
  const { app } = await site();
  const attackerIp = '203.0.113.7';
  const browser = request.agent(app);
  for (let i = 0; i < 19; i++) {
    assert.equal((await logIn(browser, `guess${i}@example.com`, WRONG_PASSWORD, {}, attackerIp)).status, 401);
  }
  assert.equal((await logIn(request.agent(app), 'ada', PASSWORD, {}, attackerIp)).status, 303, 'a right password still works at 19');
  assert.equal((await logIn(browser, 'guess19@example.com', WRONG_PASSWORD, {}, attackerIp)).status, 401, 'the 20th failure');
  const locked = await logIn(browser, 'ada', PASSWORD, {}, attackerIp);
  assert.equal(locked.status, 429, 'the address is locked, whatever the account');
  assert.match(alertOf(locked.text) ?? '', /^Too many attempts\. Try again in 1 minute\.$/);

  const elsewhere = request.agent(app);
  assert.equal((await logIn(elsewhere, 'ada', PASSWORD, {}, '198.51.100.2')).status, 303, 'other addresses are not affected');
});

test('a next parameter pointing to another site is ignored', async () => {
  const { app } = await site();
  for (const next of ['//evil.com', '//evil.com/account', '/\\evil.com', 'https://evil.com/', 'evil.com', '/ /evil.com', 'javascript:alert(1)']) {
    const browser = request.agent(app);
    const form = await browser.get(`/login?next=${encodeURIComponent(next)}`);
    assert.doesNotMatch(form.text, /name="next"/, `${next} is not carried in the form`);
    const res = await browser.post('/login').type('form').send({ _csrf: csrfFrom(form.text), login: 'ada', password: PASSWORD, next });
    assert.equal(res.status, 303);
    assert.equal(res.headers.location, '/account', `${next} is ignored`);
  }
});

test('HTML in a member name is shown as text on the account page', async () => {
  const { app } = await site({}, { firstName: '<script>alert("x")</script><b>Ada' });
  const browser = request.agent(app);
  await logIn(browser, 'ada', PASSWORD);
  const account = await browser.get('/account');
  assert.equal(account.status, 200);
  assert.equal(account.text.includes('<script>alert'), false);
  assert.equal(account.text.includes('<b>Ada'), false);
  assert.ok(account.text.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;Ada Lovelace'));
});

test('passwords never appear in the logs', async () => {
  const { app, logs } = await site({ LOG_LEVEL: 'trace' });
  const browser = request.agent(app);
  await logIn(browser, 'ada', WRONG_PASSWORD);
  await logIn(browser, 'nobody', WRONG_PASSWORD);
  await logIn(browser, 'ada', PASSWORD);
  await browser.post('/logout').type('form').send({ password: PASSWORD });
  assert.ok(logs.lines().some((l) => l.msg === 'member login failed'), 'the attempts were logged');
  assert.ok(logs.lines().some((l) => l.msg === 'member logged in'));
  assert.equal(logs.text().includes(PASSWORD), false);
  assert.equal(logs.text().includes(WRONG_PASSWORD), false);
});

test('the Keap webhook at POST / is not asked for a form token', async () => {
  const { app } = await site();
  const res = await request(app).post('/').type('form').send({ contactId: '101', wpf_action: 'test', access_key: 'x'.repeat(32) });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { ok: true, test: true });
  assert.equal(cookieNamed(res, 'mh_csrf'), undefined, 'no page cookies on the webhook');
});

test('every page names the site icon, which is served, so browsers do not ask for a missing /favicon.ico', async () => {
  const { app } = await site();
  for (const path of ['/login', '/admin/login', '/password/forgot']) {
    const page = await request(app).get(path);
    assert.match(page.text, /<link rel="icon" href="\/assets\/favicon.svg" type="image\/svg\+xml">/, path);
  }
  const icon = await request(app).get('/assets/favicon.svg');
  assert.equal(icon.status, 200);
  assert.match(icon.headers['content-type'] ?? '', /^image\/svg\+xml/);
  assert.match(String(icon.text ?? icon.body), /^<svg /);
});

test('logging out from the member header is one click: the header holds the logout form with its token', async () => {
  const { app, ctx } = await site();
  const browser = request.agent(app);
  await logIn(browser, 'ada', PASSWORD);
  const account = await browser.get('/account');
  const header = /<header>([\s\S]*?)<\/header>/.exec(account.text)?.[1] ?? '';
  assert.match(header, /<form method="post" action="\/logout" class="logout"><input type="hidden" name="_csrf" value="[^"]+">\s*<button type="submit" class="link" id="header-logout">Log out<\/button><\/form>/);
  const res = await browser.post('/logout').type('form').send({ _csrf: csrfFrom(header) });
  assert.equal(res.status, 303);
  assert.equal(sessionCount(ctx), 0, 'the one click ended the session');
});
