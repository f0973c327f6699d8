/**
 * One Keap rate limit for the whole process. memberhook calls Keap from two threads: the request thread (admin pages:
 * the import's contact count, the settings page's connection test) and the job thread (the HTTP Post actions, an
 * import's pages). Keap counts a key's calls, whichever thread makes them, so the two threads' limiters must draw
 * from one limit. A real server with its job thread, against the Keap sandbox holding the key to the same limits
 * (fixed windows, answering 429 like Keap): both threads call Keap at once, and Keap must never have to say no.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import { SEED, startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { startSmtpServer } from './support/smtp.js';
import { NO_PLUGINS_DIR, tempDataDir } from './support/temp.js';
import { busiestWindow, until } from './support/waiting.js';

const ACCESS_KEY = 'keap-limit-threads-access-key-0123456789';
const KEAP_KEY = 'keap-limit-threads-key';
/** Low enough that each thread alone fills Keap's second: two limiters of their own would pass it together. */
const LIMITS = { perSecond: 6, perMinute: 240 };
const CONTACTS = 6;
/** The request thread's calls: more than a second's worth, so they overlap the jobs' calls for several windows. */
const COUNT_CALLS = 8;

test('the request thread and the job thread calling Keap at once stay under one limit: Keap never answers 429', async (t) => {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], limits: { ...LIMITS, perDay: 30_000 } });
  const smtp = await startSmtpServer();
  const server = await startServer(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: tempDataDir(),
      PLUGINS_DIR: NO_PLUGINS_DIR,
      ACCESS_KEY,
      KEAP_API_URL: sandbox.url,
      KEAP_API_KEY: KEAP_KEY,
      KEAP_PASSWORD_FIELD: 'Password',
      KEAP_RATE_PER_SECOND: String(LIMITS.perSecond),
      KEAP_RATE_PER_MINUTE: String(LIMITS.perMinute),
      SMTP_URL: smtp.url,
      MAIL_FROM: 'Site <site@example.test>',
      LOG_LEVEL: 'error',
    }),
    { console: () => {} },
  );
  after(async () => {
    await server.close();
    await smtp.close();
    await sandbox.close();
  });
  assert.equal(server.jobs, 'thread', 'the jobs run in their own thread');
  const { ctx } = server;
  const contactIds = Array.from({ length: CONTACTS }, (_, i) =>
    sandbox.state.addContact({ given_name: `Thread${i}`, family_name: 'Limit', email: `limit-${i}@example.test`, tag_ids: [SEED.tags.member] }).id,
  );
  // This thread's first call out of the way (a first request is slow to leave while its connection is opened).
  await ctx.keap.testConnection();
  const apiRequests = () => sandbox.state.requests.filter((r) => r.path.startsWith('/crm/'));
  const before = apiRequests().length;

  // The job thread: a member created for each contact (each job reads the contact and writes its password back).
  for (const id of contactIds) {
    const res = await fetch(`${server.url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ access_key: ACCESS_KEY, wpf_action: 'add', contactId: String(id) }),
    });
    assert.equal(res.status, 200);
  }
  await until('the job thread calling Keap', () => apiRequests().length > before || undefined);
  // The request thread meanwhile: what the import's confirmation page asks, through this thread's client.
  const counts = await Promise.allSettled(Array.from({ length: COUNT_CALLS }, () => ctx.keap.countContactsWithTag(SEED.tags.member)));
  await until('every member created', () => contactIds.every((id) => ctx.members.findByContactId(id)) || undefined);
  await until('every job done', () => {
    const open = ctx.db.prepare("SELECT count(*) FROM events WHERE status NOT IN ('done', 'skipped', 'failed', 'dead')").pluck().get() as number;
    return open === 0 || undefined;
  });

  const burst = apiRequests().slice(before);
  const counted = burst.filter((r) => r.method === 'GET' && r.path === `/crm/rest/v1/tags/${SEED.tags.member}/contacts`);
  assert.ok(counted.length >= COUNT_CALLS, `the request thread's counts reached Keap (${counted.length})`);
  assert.ok(burst.length - counted.length >= CONTACTS, `the job thread's calls reached Keap (${burst.length - counted.length})`);
  const throttled = burst.filter((r) => r.status === 429).length;
  const busiest = busiestWindow(burst.map((r) => r.time), 1_000);
  t.diagnostic(`keap requests ${burst.length}, busiest 1 s window ${busiest} (limit ${LIMITS.perSecond}), 429s ${throttled}`);
  assert.equal(throttled, 0, 'Keap never had to answer 429');
  assert.ok(busiest <= LIMITS.perSecond, `at most ${LIMITS.perSecond} requests arrived in any 1 s window (saw ${busiest})`);
  assert.deepEqual(counts.filter((c) => c.status === 'rejected'), [], 'every count was answered');
  const failed = ctx.db.prepare("SELECT count(*) FROM events WHERE status IN ('failed', 'dead')").pluck().get();
  assert.equal(failed, 0, 'no job failed');
});
