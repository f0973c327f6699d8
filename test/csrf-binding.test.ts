import { test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { testSiteWithAdmin, ADMIN_EMAIL, ADMIN_PASSWORD, MEMBER_PASSWORD, type TestSite } from './support/admin-site.js';
import { cookieNamed, cookieValue, csrfFrom, setCookies } from './support/pages.js';

/**
 * Form tokens are bound to the session (and, before a login, to a pre-session cookie); on an HTTPS site every cookie
 * is a `__Host-` cookie. The browsers here carry their cookies by hand, to plant one where an attacker would.
 */

interface Browser {
  cookies: Map<string, string>;
}

const browser = (): Browser => ({ cookies: new Map() });
const cookieHeader = (b: Browser) => [...b.cookies].map(([name, value]) => `${name}=${value}`).join('; ');

function keep(b: Browser, res: request.Response): request.Response {
  for (const line of setCookies(res)) {
    const [pair] = line.split(';');
    const name = pair!.slice(0, pair!.indexOf('='));
    const value = cookieValue(line);
    if (value === '') b.cookies.delete(name);
    else b.cookies.set(name, value);
  }
  return res;
}

async function get(site: TestSite, b: Browser, path: string, headers: Record<string, string> = {}): Promise<request.Response> {
  const req = request(site.app).get(path).set(headers);
  if (b.cookies.size) req.set('cookie', cookieHeader(b));
  return keep(b, await req);
}

async function post(site: TestSite, b: Browser, path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<request.Response> {
  const req = request(site.app).post(path).set(headers).type('form');
  if (b.cookies.size) req.set('cookie', cookieHeader(b));
  return keep(b, await req.send(fields));
}

async function adminLoggedIn(site: TestSite, b: Browser, cookie = 'mh_session'): Promise<void> {
  const form = await get(site, b, '/admin/login');
  const res = await post(site, b, '/admin/login', { _csrf: csrfFrom(form.text), login: ADMIN_EMAIL, password: ADMIN_PASSWORD });
  assert.equal(res.status, 303);
  assert.ok(b.cookies.has(cookie), 'logged in');
}

const roleCount = (site: TestSite) => site.ctx.db.prepare('SELECT count(*) FROM roles').pluck().get() as number;

test('a form token is bound to the session: one from before the login, from a planted cookie or from another session forges nothing', async () => {
  const site = await testSiteWithAdmin();
  const roles = roleCount(site);
  const victim = browser();
  const beforeLogin = csrfFrom((await get(site, victim, '/admin/login')).text);
  await adminLoggedIn(site, victim);

  assert.equal((await post(site, victim, '/admin/roles', { _csrf: beforeLogin, slug: 'a', name: 'A' })).status, 403, 'the token of the login form');

  // An attacker fetches a form with a cookie of their own, then plants that cookie in the administrator's browser
  // (a sibling subdomain can, for a cookie without the __Host- prefix) and has it post their token.
  const attacker = browser();
  const attackerToken = csrfFrom((await get(site, attacker, '/admin/login')).text);
  const planted: Browser = { cookies: new Map([...victim.cookies, ['mh_csrf', attacker.cookies.get('mh_csrf')!]]) };
  assert.equal((await post(site, planted, '/admin/roles', { _csrf: attackerToken, slug: 'b', name: 'B' })).status, 403, 'a planted pre-session cookie');

  // A token from the attacker's own session (Ada's) is no good in the administrator's.
  const ada = browser();
  const loginForm = await get(site, ada, '/login');
  assert.equal((await post(site, ada, '/login', { _csrf: csrfFrom(loginForm.text), login: 'ada', password: MEMBER_PASSWORD })).status, 303);
  const adaToken = csrfFrom((await get(site, ada, '/account/password')).text);
  assert.equal((await post(site, victim, '/admin/roles', { _csrf: adaToken, slug: 'c', name: 'C' })).status, 403, "another session's token");
  assert.equal(roleCount(site), roles, 'no role was added');

  const own = csrfFrom((await get(site, victim, '/admin/roles')).text);
  assert.equal((await post(site, victim, '/admin/roles', { _csrf: own, slug: 'd', name: 'D' })).status, 303, "the session's own token works");
  assert.equal(roleCount(site), roles + 1);
});

test('on an HTTPS site every cookie is a __Host- cookie, and a plain-named one (which a sibling subdomain could set) is ignored', async () => {
  const site = await testSiteWithAdmin({ PUBLIC_URL: 'https://members.example.com' });
  const b = browser();
  const form = await get(site, b, '/admin/login');
  assert.equal(cookieNamed(form, 'mh_csrf'), undefined);
  const res = await post(site, b, '/admin/login', { _csrf: csrfFrom(form.text), login: ADMIN_EMAIL, password: ADMIN_PASSWORD });
  assert.equal(res.status, 303);
  const set = [...setCookies(form), ...setCookies(res)];
  for (const name of ['__Host-mh_csrf', '__Host-mh_session', '__Host-mh_device']) {
    const cookie = set.find((c) => c.startsWith(`${name}=`));
    assert.ok(cookie, `${name} is set`);
    assert.match(cookie, /; Path=\//);
    assert.match(cookie, /; Secure/);
    assert.match(cookie, /; HttpOnly/);
    assert.match(cookie, /; SameSite=Lax/);
    assert.doesNotMatch(cookie, /; Domain=/i);
  }
  assert.deepEqual(set.filter((c) => /^mh_/.test(c)), [], 'no plain-named cookie');
  assert.equal((await get(site, b, '/admin')).status, 200, 'the __Host- session works');

  // The same session under the plain name is somebody's plant: it opens nothing.
  const plain: Browser = { cookies: new Map([['mh_session', b.cookies.get('__Host-mh_session')!]]) };
  assert.equal((await get(site, plain, '/admin')).status, 303);
  // And a plain pre-session cookie with a token made for it forges no login.
  const stranger = browser();
  const strangerForm = await get(site, stranger, '/login');
  const planted: Browser = { cookies: new Map([['mh_csrf', stranger.cookies.get('__Host-mh_csrf')!]]) };
  assert.equal((await post(site, planted, '/login', { _csrf: csrfFrom(strangerForm.text), login: 'ada', password: MEMBER_PASSWORD })).status, 403);
});

test('a request that came over HTTPS through a trusted proxy gets __Host- cookies; plain http on localhost keeps plain names', async () => {
  const site = await testSiteWithAdmin({ PUBLIC_URL: 'http://localhost:3000', TRUST_PROXY: 'loopback' });
  const overHttps = await get(site, browser(), '/login', { 'x-forwarded-proto': 'https' });
  assert.match(cookieNamed(overHttps, '__Host-mh_csrf') ?? '', /; Secure/);
  const plain = browser();
  const overHttp = await get(site, plain, '/login');
  assert.doesNotMatch(cookieNamed(overHttp, 'mh_csrf') ?? '', /; Secure/);
  assert.equal((await post(site, plain, '/login', { _csrf: csrfFrom(overHttp.text), login: 'ada', password: MEMBER_PASSWORD })).status, 303, 'a local trial logs in');
  assert.ok(plain.cookies.has('mh_session'));

  const untrusted = await testSiteWithAdmin({ PUBLIC_URL: 'http://localhost:3000' });
  const claimed = await get(untrusted, browser(), '/login', { 'x-forwarded-proto': 'https' });
  assert.ok(cookieNamed(claimed, 'mh_csrf'), "without TRUST_PROXY the client's claim to HTTPS changes nothing");
});
