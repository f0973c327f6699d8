import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { testSite, createMember, MEMBER_PASSWORD, type TestSite } from './support/admin-site.js';
import { alertOf, csrfFrom } from './support/pages.js';

/** Who the client is, for every per-address limit: the connection's peer, unless TRUST_PROXY names the proxies. */

const KEY = 'x'.repeat(32);
const LIMITS = { WEBHOOK_REJECTION_LIMIT: '3', WEBHOOK_REJECTION_WINDOW_MS: '60000' };

type Reader = 'fast' | 'express';

/** The site on a loopback port: supertest re-encodes a body it is handed as bytes, and the gzipped post must stay one. */
async function listening(site: TestSite): Promise<string> {
  const server = createServer(site.app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  after(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/keap`;
}

/** A keyless post (a guess at the key) claiming to come from `forwardedFor`, read on the fast path or by express. */
async function guess(url: string, reader: Reader, forwardedFor: string): Promise<number> {
  const form = 'wpf_action=add&contactId=1&access_key=guess';
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': forwardedFor };
  if (reader === 'express') headers['content-encoding'] = 'gzip';
  const res = await fetch(url, { method: 'POST', headers, body: reader === 'express' ? gzipSync(form) : form });
  await res.arrayBuffer();
  return res.status;
}

/** A wrong password at /login from `forwardedFor` (the form is fetched from the same address). */
async function wrongLogin(site: TestSite, login: string, forwardedFor: string): Promise<request.Response> {
  const agent = request.agent(site.app);
  const form = await agent.get('/login').set('x-forwarded-for', forwardedFor);
  return agent.post('/login').set('x-forwarded-for', forwardedFor).type('form').send({ _csrf: csrfFrom(form.text), login, password: 'not the password' });
}

for (const reader of ['fast', 'express'] as const) {
  test(`by default X-Forwarded-For is the client's own claim and moves no one out of the webhook's refusal limit (${reader})`, async () => {
    const site = await listening(await testSite({ ACCESS_KEY: KEY, ...LIMITS }));
    for (let i = 1; i <= 3; i++) assert.equal(await guess(site, reader, `203.0.113.${i}`), 403);
    assert.equal(await guess(site, reader, '203.0.113.99'), 429, 'a new claimed address is the same client');
  });

  test(`TRUST_PROXY's proxies say who the client is, an IPv6 client counts by its /64, and a forged hop changes nothing (${reader})`, async () => {
    const site = await listening(await testSite({ ACCESS_KEY: KEY, ...LIMITS, TRUST_PROXY: 'loopback' }));
    for (const ip of ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:aaaa::3']) assert.equal(await guess(site, reader, ip), 403);
    assert.equal(await guess(site, reader, '2001:db8:1:2:ffff:ffff:ffff:ffff'), 429, 'the same /64');
    assert.equal(await guess(site, reader, '198.51.100.7, 2001:db8:1:2::9'), 429, 'an address the client put before the proxy\'s is not believed');
    assert.equal(await guess(site, reader, '2001:db8:1:3::1'), 403, 'the next /64 is someone else');
    assert.equal(await guess(site, reader, '203.0.113.5'), 403, 'and so is another IPv4 client');
    assert.equal(await guess(site, reader, '::ffff:203.0.113.5'), 403, 'counted as the same IPv4 client');
  });
}

test('a hop count trusts that many proxies in front of memberhook, and no address further out', async () => {
  const site = await listening(await testSite({ ACCESS_KEY: KEY, ...LIMITS, TRUST_PROXY: '1' }));
  for (let i = 1; i <= 3; i++) assert.equal(await guess(site, 'fast', `10.9.9.${i}, 203.0.113.50`), 403);
  assert.equal(await guess(site, 'express', '203.0.113.50'), 429, 'the client is the address the one proxy saw');
  assert.equal(await guess(site, 'fast', '203.0.113.50, 203.0.113.51'), 403);
});

test('the login forms count by the connection unless TRUST_PROXY says otherwise, and an IPv6 client by its /64', async () => {
  const untrusted = await testSite();
  for (let i = 0; i < 20; i++) assert.equal((await wrongLogin(untrusted, `nobody${i}@example.com`, `203.0.113.${i}`)).status, 401);
  const spoofed = await wrongLogin(untrusted, 'nobody@example.com', '203.0.113.200');
  assert.equal(spoofed.status, 429, 'twenty wrong passwords from one connection lock it, whatever it claims');
  assert.match(untrusted.logs.text(), /"ip":"(::ffff:)?127\.0\.0\.1"/, 'the log names the real peer');

  const proxied = await testSite({ TRUST_PROXY: 'loopback' });
  await createMember(proxied.ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: MEMBER_PASSWORD });
  for (let i = 0; i < 20; i++) assert.equal((await wrongLogin(proxied, `nobody${i}@example.com`, `2001:db8:5:5::${i + 1}`)).status, 401);
  const sameNetwork = await wrongLogin(proxied, 'nobody@example.com', '2001:db8:5:5:1234::1');
  assert.equal(sameNetwork.status, 429, 'another address in the same /64 is the same client');
  assert.match(alertOf(sameNetwork.text) ?? '', /Too many attempts/);
  assert.equal((await wrongLogin(proxied, 'nobody@example.com', '2001:db8:5:6::1')).status, 401, 'the next /64 is not locked');
});
