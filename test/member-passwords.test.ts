import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import request from 'supertest';
import type { Response } from 'supertest';
import { passwordResetEmail } from '../src/features/members/password-reset.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, verifyPassword } from '../src/features/members/passwords.js';
import { CSRF_FAILED_MESSAGE } from '../src/core/csrf.js';
import type { AppContext } from '../src/server.js';
import type { Member } from '../src/features/members/types.js';
import { adminAgent, ADMIN_EMAIL, ADMIN_PASSWORD, createMember, MEMBER_PASSWORD, testSite, TEST_SITE_ACCESS_KEY, type TestSite } from './support/admin-site.js';
import { runCreateAdmin } from '../src/cli/create-admin.js';
import { captureLogs } from './support/logs.js';
import { NO_PLUGINS_DIR } from './support/temp.js';
import { alertOf, cookieNamed, csrfFrom } from './support/pages.js';
import { startSmtpServer, type TestSmtpServer } from './support/smtp.js';

const PASSWORD_RESET_ACTION = passwordResetEmail.type;

const PUBLIC_URL = 'http://members.example.test';
const NEW_PASSWORD = 'a brand new passphrase 42';
const WRONG_PASSWORD = 'Tr0ub4dor&3-not-it';
const API_TOKEN = 'member-passwords-api-token-0123456789';
const HOUR = 60 * 60 * 1000;

interface Site extends TestSite {
  ada: Member;
  smtp: TestSmtpServer;
  /** Lets the worker run every job that can run now, and waits for it. */
  runJobs(): Promise<void>;
}

/** A site with Ada, a real SMTP server on loopback and a running worker, all stopped when the test ends. */
async function site(t: TestContext, ada: Partial<Pick<Member, 'firstName'>> = {}): Promise<Site> {
  const smtp = await startSmtpServer();
  // Behind a proxy on loopback, so X-Forwarded-For plays clients at different addresses.
  const base = await testSite({ SMTP_URL: smtp.url, PUBLIC_URL, API_TOKEN, MAIL_FROM: 'Site <site@example.test>', TRUST_PROXY: 'loopback' });
  const member = await createMember(base.ctx, {
    email: 'Ada.Lovelace@example.com',
    username: 'ada',
    role: 'member',
    password: MEMBER_PASSWORD,
    firstName: ada.firstName ?? 'Ada',
    lastName: 'Lovelace',
  });
  base.ctx.worker.start();
  t.after(async () => {
    await base.ctx.worker.stop();
    await smtp.close();
  });
  return {
    ...base,
    ada: member,
    smtp,
    async runJobs() {
      base.ctx.worker.notify();
      await base.ctx.worker.whenIdle();
    },
  };
}

async function logIn(agent: request.Agent, login: string, password: string, ip?: string): Promise<Response> {
  const form = await agent.get('/login');
  const post = agent.post('/login').type('form');
  if (ip) post.set('X-Forwarded-For', ip);
  return post.send({ _csrf: csrfFrom(form.text), login, password });
}

async function loggedIn(app: Site['app'], login = 'ada', password = MEMBER_PASSWORD): Promise<request.Agent> {
  const agent = request.agent(app);
  assert.equal((await logIn(agent, login, password)).status, 303, 'logged in');
  return agent;
}

async function changePassword(agent: request.Agent, fields: Record<string, string>, ip?: string): Promise<Response> {
  const form = await agent.get('/account/password');
  assert.equal(form.status, 200);
  const post = agent.post('/account/password').type('form');
  if (ip) post.set('X-Forwarded-For', ip);
  return post.send({ _csrf: csrfFrom(form.text), ...fields });
}

async function askForReset(agent: request.Agent, login: string, ip?: string): Promise<Response> {
  const form = await agent.get('/password/forgot');
  const post = agent.post('/password/forgot').type('form');
  if (ip) post.set('X-Forwarded-For', ip);
  return post.send({ _csrf: csrfFrom(form.text), login });
}

/** Opens the link from the reset form page and posts the new password with it. */
async function resetWith(agent: request.Agent, token: string, password: string, confirm = password): Promise<Response> {
  const form = await agent.get(`/password/reset?token=${token}`);
  const csrf = form.status === 200 ? csrfFrom(form.text) : await agent.get('/password/forgot').then((r) => csrfFrom(r.text));
  return agent.post('/password/reset').type('form').send({ _csrf: csrf, token, new_password: password, confirm_password: confirm });
}

function tokensIn(smtp: TestSmtpServer, to = 'Ada.Lovelace@example.com'): string[] {
  return smtp.messages
    .filter((m) => m.to.includes(to))
    .map((m) => {
      const match = /^http:\/\/members\.example\.test\/password\/reset\?token=([A-Za-z0-9_-]{43})$/m.exec(m.text);
      assert.ok(match, 'the text part holds the link on a line of its own');
      return match[1]!;
    });
}

/** Asks for a link for Ada and returns the token from the email that arrives. */
async function emailedToken(s: Site): Promise<string> {
  const before = tokensIn(s.smtp).length;
  assert.equal((await askForReset(request.agent(s.app), 'ada')).status, 200);
  await s.runJobs();
  const tokens = tokensIn(s.smtp);
  assert.equal(tokens.length, before + 1, 'one more email arrived');
  return tokens.at(-1)!;
}

function sessionsOf(ctx: AppContext, memberId: number): number {
  return ctx.db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM sessions WHERE member_id = ?').get(memberId)!.n;
}

async function passwordIs(ctx: AppContext, member: Member, password: string): Promise<boolean> {
  return verifyPassword(password, ctx.members.passwordHash(member.id));
}

function fieldError(html: string, field: string): string | undefined {
  return new RegExp(`<p class="error" id="${field}-error" data-field="${field}">([^<]*)</p>`).exec(html)?.[1];
}

function resetEvents(ctx: AppContext): Array<{ id: number; params: string; status: string }> {
  return ctx.db.prepare<[string], { id: number; params: string; status: string }>('SELECT id, params, status FROM events WHERE action = ? ORDER BY id').all(PASSWORD_RESET_ACTION);
}

// ---- change password ----

test('the change password page is for logged-in members only', async (t) => {
  const { app, ctx, ada } = await site(t);
  const page = await request(app).get('/account/password');
  assert.equal(page.status, 303);
  assert.equal(page.headers.location, '/login?next=/account/password');

  const browser = request.agent(app);
  const form = await browser.get('/login');
  const post = await browser.post('/account/password').type('form').send({
    _csrf: csrfFrom(form.text), current_password: MEMBER_PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD,
  });
  assert.equal(post.status, 303);
  assert.equal(post.headers.location, '/login');
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true, 'nothing changed');
});

test('the account page links to the change password page, the login page to the forgot password page', async (t) => {
  const { app } = await site(t);
  const login = await request(app).get('/login');
  assert.match(login.text, /<a href="\/password\/forgot">Forgot your password\?<\/a>/);
  const account = await (await loggedIn(app)).get('/account');
  assert.match(account.text, /<a href="\/account\/password">Change password<\/a>/);
});

test('a member changes their password: this browser stays logged in with a new session, every other one is logged out', async (t) => {
  const { app, ctx, ada, logs } = await site(t);
  const here = await loggedIn(app);
  const elsewhere = await loggedIn(app, 'Ada.Lovelace@example.com');
  assert.equal(sessionsOf(ctx, ada.id), 2);

  const form = await here.get('/account/password');
  assert.equal(form.headers['cache-control'], 'no-store');
  assert.match(form.text, new RegExp(`minlength="${PASSWORD_MIN_LENGTH}" maxlength="${PASSWORD_MAX_LENGTH}"`));
  const res = await changePassword(here, { current_password: MEMBER_PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/account?notice=password_changed');
  assert.ok(cookieNamed(res, 'mh_session'), 'a fresh session cookie');

  const account = await here.get('/account?notice=password_changed');
  assert.equal(account.status, 200, 'still logged in here');
  assert.match(account.text, /role="status"[^>]*>Your password was changed\. You were logged out everywhere else\.</);
  assert.equal((await elsewhere.get('/account')).status, 303, 'the other browser is logged out');
  assert.equal(sessionsOf(ctx, ada.id), 1);

  assert.equal(await passwordIs(ctx, ada, NEW_PASSWORD), true);
  assert.equal((await logIn(request.agent(app), 'ada', MEMBER_PASSWORD)).status, 401, 'the old password no longer works');
  assert.equal((await logIn(request.agent(app), 'ada', NEW_PASSWORD)).status, 303, 'the new one does');
  for (const secret of [MEMBER_PASSWORD, NEW_PASSWORD]) assert.equal(logs.text().includes(secret), false, 'no password is logged');
});

test('an unknown notice in the URL shows nothing', async (t) => {
  const { app } = await site(t);
  const page = await (await loggedIn(app)).get('/account?notice=%3Cscript%3Ealert(1)%3C%2Fscript%3E');
  assert.equal(page.status, 200);
  assert.doesNotMatch(page.text, /role="status"/);
  assert.doesNotMatch(page.text, /alert\(1\)/);
});

test('a wrong current password is refused on its field, and the password stays', async (t) => {
  const { app, ctx, ada } = await site(t);
  const browser = await loggedIn(app);
  const res = await changePassword(browser, { current_password: WRONG_PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(res.status, 400);
  assert.equal(fieldError(res.text, 'current_password'), 'Your current password is not right.');
  assert.equal(res.text.includes(NEW_PASSWORD), false, 'no password is echoed');
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true);
  assert.equal((await browser.get('/account')).status, 200, 'the member stays logged in');
});

test('each invalid field is named, with a 400, and costs no attempt', async (t) => {
  const { app, ctx, ada } = await site(t);
  const browser = await loggedIn(app);
  const cases: Array<[Record<string, string>, string, string]> = [
    [{ current_password: '', new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD }, 'current_password', 'Enter your current password.'],
    [{ current_password: MEMBER_PASSWORD, new_password: '', confirm_password: '' }, 'new_password', 'Enter a new password.'],
    [{ current_password: MEMBER_PASSWORD, new_password: 'short1234', confirm_password: 'short1234' }, 'new_password', `Use at least ${PASSWORD_MIN_LENGTH} characters.`],
    [{ current_password: MEMBER_PASSWORD, new_password: 'x'.repeat(201), confirm_password: 'x'.repeat(201) }, 'new_password', `Use at most ${PASSWORD_MAX_LENGTH} characters.`],
    [{ current_password: MEMBER_PASSWORD, new_password: NEW_PASSWORD, confirm_password: `${NEW_PASSWORD}!` }, 'confirm_password', 'The two passwords are not the same.'],
  ];
  for (const [fields, field, message] of cases) {
    const res = await changePassword(browser, fields);
    assert.equal(res.status, 400, `${field}: ${message}`);
    assert.equal(fieldError(res.text, field), message);
    assert.match(res.text, new RegExp(`id="${field}" name="${field}"[^>]*aria-invalid="true"`));
  }
  // Exactly the limits are fine (the 10 and 200 the administrator's password has too).
  assert.equal(PASSWORD_MIN_LENGTH, 10);
  assert.equal(PASSWORD_MAX_LENGTH, 200);
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true, 'nothing changed');
  const failures = ctx.db.prepare('SELECT count(*) FROM login_failures WHERE failures > 0').pluck().get();
  assert.equal(failures, 0, 'no attempt was counted');
  const exact = await changePassword(browser, { current_password: MEMBER_PASSWORD, new_password: 'y'.repeat(200), confirm_password: 'y'.repeat(200) });
  assert.equal(exact.status, 303, '200 characters are allowed');
});

test('a password longer than bcrypt reads is checked in full', async (t) => {
  const { app, ctx, ada } = await site(t);
  const long = `${'é'.repeat(40)}the part after byte 72 matters`; // 80 bytes of é before the tail
  const browser = await loggedIn(app);
  assert.equal((await changePassword(browser, { current_password: MEMBER_PASSWORD, new_password: long, confirm_password: long })).status, 303);
  const sameStart = `${'é'.repeat(40)}but this tail is different!!!`;
  assert.equal(await passwordIs(ctx, ada, long), true);
  assert.equal(await passwordIs(ctx, ada, sameStart), false, 'the same first 72 bytes are not enough');
  assert.equal((await logIn(request.agent(app), 'ada', sameStart)).status, 401);
  assert.equal((await logIn(request.agent(app), 'ada', long)).status, 303);
});

test('wrong current passwords count against the browser: the sixth try gets a 429 with Retry-After; other browsers are not held back', async (t) => {
  const { app, ctx, ada, clock } = await site(t);
  const browser = await loggedIn(app);
  for (let i = 1; i <= 5; i++) {
    const res = await changePassword(browser, { current_password: `${WRONG_PASSWORD}${i}`, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
    assert.equal(res.status, 400, `try ${i} is just wrong`);
  }
  const locked = await changePassword(browser, { current_password: MEMBER_PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(locked.status, 429, 'even the right password is refused while locked');
  assert.equal(locked.headers['retry-after'], '60');
  assert.equal(alertOf(locked.text), 'Too many attempts. Try again in 1 minute.');
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true);

  // This browser logged in, so its guesses count against its own device budget, not against Ada's other browsers.
  assert.equal((await logIn(request.agent(app), 'ADA.LOVELACE@example.com', MEMBER_PASSWORD)).status, 303);

  clock.advance(60_000);
  const after = await changePassword(browser, { current_password: MEMBER_PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(after.status, 303, 'the lock lifts after a minute');
});

test('every password form refuses a post without its form token and changes nothing', async (t) => {
  const s = await site(t);
  const { app, ctx, ada } = s;
  const token = await emailedToken(s);
  const browser = await loggedIn(app);
  const posts: Array<[string, Record<string, string>]> = [
    ['/account/password', { current_password: MEMBER_PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD }],
    ['/password/forgot', { login: 'ada' }],
    ['/password/reset', { token, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD }],
  ];
  const eventsBefore = resetEvents(ctx).length;
  for (const [path, fields] of posts) {
    for (const csrf of [undefined, 'forged-token']) {
      const res = await browser.post(path).type('form').send(csrf ? { ...fields, _csrf: csrf } : fields);
      assert.equal(res.status, 403, `${path} without a valid token`);
      assert.ok(res.text.includes(CSRF_FAILED_MESSAGE));
    }
  }
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true);
  assert.equal(resetEvents(ctx).length, eventsBefore, 'no email was queued');
  assert.equal((await request.agent(app).get(`/password/reset?token=${token}`)).status, 200, 'the link still works');
});

// ---- forgot password ----

test('asking for a link gives the same page for an existing and an unknown address, and only the existing one gets an email', async (t) => {
  const { app, ctx, ada, smtp, runJobs } = await site(t);
  const forgot = await request(app).get('/password/forgot');
  assert.equal(forgot.status, 200);
  assert.match(forgot.text, /name="login"/);

  const known = await askForReset(request.agent(app), 'ada.lovelace@EXAMPLE.com');
  const unknown = await askForReset(request.agent(app), 'nobody@example.com');
  assert.equal(known.status, 200);
  assert.equal(unknown.status, known.status);
  assert.equal(known.text, unknown.text, 'byte for byte the same page');
  assert.match(known.text, /If an account exists for that address, we've sent a link/);
  assert.deepEqual(Object.keys(known.headers).sort(), Object.keys(unknown.headers).sort());

  // The request only queued a job: nothing was sent while answering.
  assert.equal(smtp.messages.length, 0);
  const queued = resetEvents(ctx);
  assert.equal(queued.length, 1, 'one job, for the member that exists');
  assert.deepEqual(JSON.parse(queued[0]!.params), { member_id: ada.id });

  await runJobs();
  assert.equal(smtp.messages.length, 1, 'nothing went to the unknown address');
  const mail = smtp.messages[0]!;
  assert.deepEqual(mail.to, ['Ada.Lovelace@example.com']);
  assert.equal(mail.subject, 'Reset your memberhook password');
  assert.equal(tokensIn(smtp).length, 1);
  // Handlebars writes `=` as `&#x3D;` in HTML, which a browser reads back as `=`.
  const html = mail.html?.replaceAll('&#x3D;', '=') ?? '';
  assert.ok(html.includes(`href="${PUBLIC_URL}/password/reset?token=${tokensIn(smtp)[0]}"`), 'the HTML part links to the same page');
  assert.equal(resetEvents(ctx)[0]!.status, 'done');
});

test('asking by username works too, and an empty field is named', async (t) => {
  const { app, smtp, runJobs } = await site(t);
  const empty = await askForReset(request.agent(app), '   ');
  assert.equal(empty.status, 400);
  assert.equal(fieldError(empty.text, 'login'), 'Enter your email address or username.');
  assert.equal((await askForReset(request.agent(app), 'ada')).status, 200);
  await runJobs();
  assert.equal(tokensIn(smtp).length, 1);
});

test('the reset email escapes the HTML part and not the text part', async (t) => {
  const s = await site(t, { firstName: 'Ada & <Co>' });
  await emailedToken(s);
  const mail = s.smtp.messages[0]!;
  assert.match(mail.text, /^Hello Ada & <Co>,$/m);
  assert.ok(mail.html?.includes('Hello Ada &amp; &lt;Co&gt;,'));
  assert.equal(mail.html?.includes('<Co>'), false);
  assert.match(mail.text, /works once, for 60 minutes/);
});

test('asking again while a link is still being sent is folded into the waiting email', async (t) => {
  const { app, ctx, smtp, runJobs } = await site(t);
  await ctx.worker.stop();
  for (let i = 0; i < 3; i++) assert.equal((await askForReset(request.agent(app), 'ada')).status, 200);
  assert.equal(resetEvents(ctx).length, 1);
  ctx.worker.start();
  await runJobs();
  assert.equal(smtp.messages.length, 1);
});

test('one address asking too often gets a 429 with Retry-After, for any account', async (t) => {
  const { app } = await site(t);
  const ip = '203.0.113.9';
  for (let i = 1; i <= 10; i++) assert.equal((await askForReset(request.agent(app), `someone${i}@example.com`, ip)).status, 200, `request ${i}`);
  const refused = await askForReset(request.agent(app), 'ada', ip);
  assert.equal(refused.status, 429);
  assert.equal(refused.headers['retry-after'], '900');
  assert.equal(alertOf(refused.text), 'Too many attempts. Try again in 15 minutes.');
  assert.equal((await askForReset(request.agent(app), 'ada', '203.0.113.10')).status, 200, 'another address is not affected');
  // The forgot form's counters are its own: it never locks anyone's login.
  assert.equal((await logIn(request.agent(app), 'ada', MEMBER_PASSWORD, ip)).status, 303);
});

test('one account gets at most three emails an hour, whoever asks; the page says nothing different', async (t) => {
  const { app, ctx, smtp, clock, runJobs } = await site(t);
  const answers: string[] = [];
  for (let i = 1; i <= 5; i++) {
    // Different addresses, and the account typed different ways: still one account.
    const res = await askForReset(request.agent(app), i % 2 ? 'ada' : 'ADA.Lovelace@example.com', `198.51.100.${i}`);
    assert.equal(res.status, 200);
    answers.push(res.text);
    await runJobs();
  }
  assert.equal(new Set(answers).size, 1, 'the same page every time');
  assert.equal(tokensIn(smtp).length, 3);
  assert.equal(resetEvents(ctx).length, 3);
  clock.advance(HOUR);
  await askForReset(request.agent(app), 'ada', '198.51.100.99');
  await runJobs();
  assert.equal(tokensIn(smtp).length, 4, 'after an hour one more is sent');
});

// ---- reset from the link ----

test('the emailed link works once: it sets the password and sends the member to log in', async (t) => {
  const s = await site(t);
  const { app, ctx, ada } = s;
  const token = await emailedToken(s);
  const browser = request.agent(app);

  const form = await browser.get(`/password/reset?token=${token}`);
  assert.equal(form.status, 200);
  assert.equal(form.headers['referrer-policy'], 'no-referrer', 'the token in the URL is never sent on as a Referer');
  assert.equal(form.headers['cache-control'], 'no-store');
  assert.ok(form.text.includes(`name="token" value="${token}"`));

  const res = await browser.post('/password/reset').type('form').send({ _csrf: csrfFrom(form.text), token, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, '/login?notice=password_reset');
  const login = await browser.get('/login?notice=password_reset');
  assert.match(login.text, /role="status"[^>]*>Your password was changed\. Log in with your new password\.</);
  assert.equal(await passwordIs(ctx, ada, NEW_PASSWORD), true);
  assert.equal((await logIn(request.agent(app), 'ada', MEMBER_PASSWORD)).status, 401);
  assert.equal((await logIn(request.agent(app), 'ada', NEW_PASSWORD)).status, 303);

  const again = await resetWith(request.agent(app), token, 'yet another passphrase');
  assert.equal(again.status, 410);
  assert.match(again.text, /This password reset link has expired or was already used\./);
  assert.match(again.text, /<a href="\/password\/forgot">Ask for a new link<\/a>/);
  assert.equal((await request(app).get(`/password/reset?token=${token}`)).status, 410);
  assert.equal(await passwordIs(ctx, ada, NEW_PASSWORD), true, 'the second use changed nothing');
});

test('a reset ends every session of the member', async (t) => {
  const s = await site(t);
  const { app, ctx, ada } = s;
  const one = await loggedIn(app);
  const two = await loggedIn(app);
  const token = await emailedToken(s);
  // Reset from a browser that is itself logged in: that session ends too, and its cookie is cleared.
  const res = await resetWith(one, token, NEW_PASSWORD);
  assert.equal(res.status, 303);
  assert.match(cookieNamed(res, 'mh_session') ?? '', /^mh_session=;/);
  assert.equal(sessionsOf(ctx, ada.id), 0);
  assert.equal((await one.get('/account')).status, 303);
  assert.equal((await two.get('/account')).status, 303);
});

test('a password set through the JSON API or by create-admin ends every session of the member and drops their reset links', async (t) => {
  const s = await site(t);
  const { app, ctx, ada } = s;
  const changes: string[] = [];
  ctx.hooks.addAction('member.password_changed', (member, how) => {
    changes.push(`${member.id}:${how}`);
  });

  const one = await loggedIn(app);
  const two = await loggedIn(app);
  const link = await emailedToken(s);
  const patched = await request(app).patch(`/api/v1/users/${ada.id}`).set('Authorization', `Bearer ${API_TOKEN}`).send({ password: NEW_PASSWORD });
  assert.equal(patched.status, 200);
  assert.equal(sessionsOf(ctx, ada.id), 0, 'the API ended every session');
  assert.equal((await one.get('/account')).status, 303, 'a browser that was logged in is logged out');
  assert.equal((await two.get('/account')).status, 303);
  assert.equal((await request(app).get(`/password/reset?token=${link}`)).status, 410, 'the emailed link no longer works');
  assert.equal(await passwordIs(ctx, ada, NEW_PASSWORD), true);
  assert.deepEqual(changes, [`${ada.id}:api`]);

  const three = await loggedIn(app, 'ada', NEW_PASSWORD);
  const secondLink = await emailedToken(s);
  const out: string[] = [];
  const code = await runCreateAdmin(['--email', ada.email, '--password', ADMIN_PASSWORD], {
    env: { DATA_DIR: s.dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, ACCESS_KEY: TEST_SITE_ACCESS_KEY },
    out: (l) => out.push(l),
    err: (l) => out.push(l),
    logger: captureLogs().logger,
  });
  assert.equal(code, 0, out.join('\n'));
  assert.equal(sessionsOf(ctx, ada.id), 0, 'create-admin ended every session');
  assert.equal((await three.get('/account')).status, 303);
  assert.equal((await request(app).get(`/password/reset?token=${secondLink}`)).status, 410, 'and dropped the reset link');
  assert.equal(await passwordIs(ctx, ada, ADMIN_PASSWORD), true);
});

test('a reset lifts the locks on the account that wrong guesses put there', async (t) => {
  const s = await site(t);
  for (let i = 0; i < 5; i++) await logIn(request.agent(s.app), 'ada', WRONG_PASSWORD, '192.0.2.1');
  for (let i = 0; i < 5; i++) await logIn(request.agent(s.app), 'ADA.LOVELACE@example.com', WRONG_PASSWORD, `192.0.2.${10 + i}`);
  assert.equal((await logIn(request.agent(s.app), 'ada', MEMBER_PASSWORD, '192.0.2.1')).status, 429, 'the account is locked from that address');
  assert.equal((await logIn(request.agent(s.app), 'ada', MEMBER_PASSWORD, '192.0.2.2')).status, 429, 'and cooling off from everywhere else');
  const token = await emailedToken(s);
  assert.equal((await resetWith(request.agent(s.app), token, NEW_PASSWORD)).status, 303);
  assert.equal((await logIn(request.agent(s.app), 'ada', NEW_PASSWORD, '192.0.2.1')).status, 303);
});

test('a link expires after an hour', async (t) => {
  const s = await site(t);
  const { app, ctx, ada, clock } = s;
  const token = await emailedToken(s);
  clock.advance(HOUR - 60_000);
  assert.equal((await request(app).get(`/password/reset?token=${token}`)).status, 200, 'still good after 59 minutes');
  const browser = request.agent(app);
  const form = await browser.get(`/password/reset?token=${token}`);
  clock.advance(60_000);
  assert.equal((await request(app).get(`/password/reset?token=${token}`)).status, 410);
  const late = await browser.post('/password/reset').type('form').send({ _csrf: csrfFrom(form.text), token, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD });
  assert.equal(late.status, 410, 'a form opened in time and posted late is refused');
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true);
});

test('two posts racing with one link reset the password once', async (t) => {
  const s = await site(t);
  const { app, ctx, ada } = s;
  const token = await emailedToken(s);
  const browser = request.agent(app);
  const form = await browser.get(`/password/reset?token=${token}`);
  const csrf = csrfFrom(form.text);
  const passwords = ['first racer passphrase', 'second racer passphrase'];
  const results = await Promise.all(
    passwords.map((password) => browser.post('/password/reset').type('form').send({ _csrf: csrf, token, new_password: password, confirm_password: password })),
  );
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [303, 410]);
  const winner = passwords[results.findIndex((r) => r.status === 303)]!;
  const loser = passwords.find((p) => p !== winner)!;
  assert.equal(await passwordIs(ctx, ada, winner), true);
  assert.equal(await passwordIs(ctx, ada, loser), false);
});

test('using one link makes the member\'s older links stop working', async (t) => {
  const s = await site(t);
  const older = await emailedToken(s);
  const newer = await emailedToken(s);
  assert.notEqual(older, newer);
  assert.equal((await resetWith(request.agent(s.app), newer, NEW_PASSWORD)).status, 303);
  assert.equal((await request(s.app).get(`/password/reset?token=${older}`)).status, 410);
  const count = s.ctx.db.prepare('SELECT count(*) FROM password_resets WHERE used_at IS NULL').pluck().get();
  assert.equal(count, 0);
});

test('a bad new password on the reset form is named and keeps the link usable', async (t) => {
  const s = await site(t);
  const token = await emailedToken(s);
  const short = await resetWith(request.agent(s.app), token, 'short');
  assert.equal(short.status, 400);
  assert.equal(fieldError(short.text, 'new_password'), `Use at least ${PASSWORD_MIN_LENGTH} characters.`);
  assert.ok(short.text.includes(`name="token" value="${token}"`));
  const mismatch = await resetWith(request.agent(s.app), token, NEW_PASSWORD, 'something else entirely');
  assert.equal(mismatch.status, 400);
  assert.equal(fieldError(mismatch.text, 'confirm_password'), 'The two passwords are not the same.');
  assert.equal((await resetWith(request.agent(s.app), token, NEW_PASSWORD)).status, 303);
});

test('a missing, malformed or unknown token gets the expired page with a link to ask again', async (t) => {
  const { app } = await site(t);
  for (const [path, status] of [['/password/reset', 400], ['/password/reset?token=abc', 400], [`/password/reset?token=${'A'.repeat(43)}`, 410]] as const) {
    const res = await request(app).get(path);
    assert.equal(res.status, status, path);
    assert.match(res.text, /expired or was already used/);
    assert.match(res.text, /href="\/password\/forgot"/);
  }
});

test('a failed email takes its token back, and the retry sends a fresh one', async (t) => {
  const s = await site(t);
  s.smtp.failNext(1);
  await askForReset(request.agent(s.app), 'ada');
  await s.runJobs();
  assert.equal(s.smtp.messages.length, 0);
  const rows = s.ctx.db.prepare('SELECT count(*) FROM password_resets').pluck().get();
  assert.equal(rows, 0, 'no token is left for an email that never went');
  assert.equal(resetEvents(s.ctx)[0]!.status, 'queued', 'the job waits to retry');
});

test('the admin entry point queues the same job, with only the member id', async (t) => {
  const { app, ctx, ada, smtp, runJobs } = await site(t);
  await createMember(ctx, { email: ADMIN_EMAIL, username: 'boss', role: 'administrator', password: ADMIN_PASSWORD });
  const agent = await adminAgent(app);
  const page = await agent.get(`/admin/members/${ada.id}`);
  assert.equal((await agent.post(`/admin/members/${ada.id}/reset-password`).type('form').send({ _csrf: csrfFrom(page.text) })).status, 303);
  const [event] = resetEvents(ctx);
  assert.deepEqual(JSON.parse(event!.params), { member_id: ada.id });
  await runJobs();
  assert.equal(tokensIn(smtp).length, 1);
});

test('tokens and passwords never appear in the events table, the logs, or what the admin and the API show', async (t) => {
  const s = await site(t);
  const { app, ctx, ada, logs } = s;
  await createMember(ctx, { email: ADMIN_EMAIL, username: 'boss', role: 'administrator', password: ADMIN_PASSWORD });
  const token = await emailedToken(s);
  const browser = request.agent(app);
  await browser.get(`/password/reset?token=${token}`);
  await resetWith(browser, token, 'x'); // a refused post (too short)
  assert.equal((await resetWith(browser, token, NEW_PASSWORD)).status, 303);
  await resetWith(browser, token, NEW_PASSWORD); // and a used one

  const tokenHash = createHash('sha256').update(token).digest('hex');
  const stored = ctx.db.prepare<[], { token_hash: string; member_id: number }>('SELECT token_hash, member_id FROM password_resets').all();
  assert.deepEqual(stored, [{ token_hash: tokenHash, member_id: ada.id }], 'only the hash is stored');

  const secrets = [token, NEW_PASSWORD, MEMBER_PASSWORD];
  const dump = JSON.stringify([
    ctx.db.prepare('SELECT * FROM events').all(),
    ctx.db.prepare('SELECT * FROM event_attempts').all(),
    ctx.db.prepare('SELECT * FROM settings').all(),
  ]);
  const [event] = resetEvents(ctx);
  const api = await request(app).get(`/api/v1/events/${event!.id}`).set('Authorization', `Bearer ${API_TOKEN}`);
  assert.equal(api.status, 200);
  const list = await request(app).get(`/api/v1/events?action=${PASSWORD_RESET_ACTION}`).set('Authorization', `Bearer ${API_TOKEN}`);
  assert.equal(list.status, 200);
  const admin = await adminAgent(app);
  const adminPage = await admin.get(`/admin/events/${event!.id}`);
  assert.equal(adminPage.status, 200);
  assert.ok(adminPage.text.includes('member_id'), 'the admin sees the params');
  for (const secret of secrets) {
    assert.equal(dump.includes(secret), false, 'not in the events tables');
    assert.equal(logs.text().includes(secret), false, 'not in the logs');
    assert.equal(api.text.includes(secret) || list.text.includes(secret), false, 'not in the API');
    assert.equal(adminPage.text.includes(secret), false, 'not on the admin page');
  }
});

test('a post with the form token in its header but no form body is a 400 on every password form, not a 500', async (t) => {
  const { app, ctx, ada } = await site(t);
  const browser = await loggedIn(app);
  const csrf = csrfFrom((await browser.get('/account/password')).text);
  for (const path of ['/account/password', '/password/forgot', '/password/reset', '/login']) {
    const res = await browser.post(path).set('X-CSRF-Token', csrf).send({ login: 'ada', new_password: NEW_PASSWORD });
    assert.equal(res.status, 400, `${path} answered ${res.status}`);
  }
  assert.equal(await passwordIs(ctx, ada, MEMBER_PASSWORD), true);
  assert.equal(resetEvents(ctx).length, 0);
});
