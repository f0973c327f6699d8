/**
 * The job thread, as `npm start` runs memberhook: the jobs run in a thread of their own (a second instance of the app
 * on the same database), which also commits the posts the request thread accepts. Real servers on loopback: the
 * Keap sandbox and an SMTP server; the plugin is a file in a plugins folder.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { loadConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';
import { startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { startSmtpServer } from './support/smtp.js';
import { tempDataDir } from './support/temp.js';
import { until } from './support/waiting.js';

const ACCESS_KEY = 'job-thread-access-key-0123456789-abcdefg';
const KEAP_KEY = 'job-thread-keap-key';

/** Counts a plugin's job runs in its own table, so the test sees which thread's plugin host let them run. */
const COUNTER = `
import { definePlugin, z } from 'memberhook/plugin';
export default definePlugin({
  name: 'counter', version: '1.0.0', apiVersion: 1,
  async setup(api) {
    await api.db.migrate(['CREATE TABLE counter_runs (id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL)']);
    api.webhooks.addAction('count_me', async (job) => {
      api.db.run('INSERT INTO ' + api.db.table('runs') + ' (contact_id) VALUES (?)', [job.params.contact_id]);
    });
  },
});`;

/** Takes the job thread down the first time its action runs (an exception nothing catches), and finishes the next time. */
const CRASHER = `
import { definePlugin, z } from 'memberhook/plugin';
export default definePlugin({
  name: 'crasher', version: '1.0.0', apiVersion: 1,
  async setup(api) {
    await api.db.migrate(['CREATE TABLE crasher_runs (id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL)']);
    api.webhooks.addAction('crash_once', async (job) => {
      const before = (await api.db.get('SELECT count(*) AS n FROM ' + api.db.table('runs'))).n;
      await api.db.run('INSERT INTO ' + api.db.table('runs') + ' (contact_id) VALUES (?)', [job.params.contact_id]);
      if (before === 0) {
        setImmediate(() => { throw new Error('the plugin took its thread down'); });
        await new Promise(() => {});
      }
    });
  },
});`;

async function startSite(): Promise<{ server: RunningServer; contactId: number; post: (body: Record<string, string>) => Promise<Response> }> {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY] });
  const smtp = await startSmtpServer();
  const dataDir = tempDataDir();
  const pluginsDir = join(dataDir, 'plugins');
  mkdirSync(pluginsDir);
  writeFileSync(join(pluginsDir, 'counter.mjs'), COUNTER);
  writeFileSync(join(pluginsDir, 'crasher.mjs'), CRASHER);
  const contactId = sandbox.state.addContact({ given_name: 'Thread', family_name: 'Tester', email: 'thread@example.test' }).id;
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    PLUGINS_DIR: pluginsDir,
    ACCESS_KEY,
    KEAP_API_URL: sandbox.url,
    KEAP_API_KEY: KEAP_KEY,
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Site <site@example.test>',
    LOG_LEVEL: 'error',
  });
  const server = await startServer(config, { console: () => {} });
  after(async () => {
    await server.close();
    await smtp.close();
    await sandbox.close();
  });
  const post = (body: Record<string, string>) =>
    fetch(`${server.url}/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ access_key: ACCESS_KEY, ...body }) });
  return { server, contactId, post };
}

test('with the job thread, an accepted post is committed before its answer and its job runs there, not in the request thread', async () => {
  const { server, contactId, post } = await startSite();
  const { ctx } = server;
  const res = await post({ wpf_action: 'add', contactId: String(contactId) });
  assert.equal(res.status, 200);
  const { event_id: eventId } = (await res.json()) as { event_id: number };
  // Answered means committed: the row is there for this thread's own connection to read.
  assert.ok(ctx.events.get(eventId), 'the acknowledged post has its row');
  const member = await until('the member', () => ctx.members.findByContactId(contactId));
  assert.equal(member.email, 'thread@example.test');
  await until('the add job done', () => ctx.events.get(eventId)?.status === 'done');
  assert.equal(server.jobs, 'thread', 'the jobs run in their own thread, not beside the requests');
  assert.match(ctx.events.get(eventId)!.result ?? '', /created member/i);
});

test('a plugin disabled and enabled again in the request thread stops and starts its jobs in the job thread too', async () => {
  const { server, post } = await startSite();
  const { ctx } = server;
  const runs = ctx.db.prepare('SELECT count(*) FROM counter_runs').pluck();
  const first = await post({ wpf_action: 'count_me', contactId: '501' });
  assert.equal(first.status, 200);
  await until('the first run', () => (runs.get() as number) === 1 || undefined);

  await ctx.plugins.disable('counter');
  // The job thread hears of it by message: a post accepted before the plugin is gone from there could still run.
  await delay(200);
  const waiting = await post({ wpf_action: 'count_me', contactId: '502' });
  // Disabled here means the action is no longer accepted here either.
  assert.equal(waiting.status, 400);
  // A job of the plugin's queued meanwhile (as a retry or a durable delivery would be): its row, as the queue writes it.
  const { id } = ctx.events.enqueue({ source: 'test', action: 'counter.count_me', contactId: 503, params: { contact_id: 503 }, plugin: 'counter' });
  ctx.jobs.wake();
  await delay(500);
  assert.equal(ctx.events.get(id)!.status, 'queued', 'the disabled plugin’s job waits');
  assert.equal(runs.get(), 1);

  await ctx.plugins.enable('counter');
  await until('the waiting job to run once the plugin is back', () => ctx.events.get(id)?.status === 'done');
  assert.equal(runs.get(), 2);
});

test('a job thread that dies is started again, and the job it was running runs again: nothing is lost', async () => {
  const { server, post } = await startSite();
  const { ctx } = server;
  const res = await post({ wpf_action: 'crash_once', contactId: '601' });
  assert.equal(res.status, 200);
  const { event_id: eventId } = (await res.json()) as { event_id: number };
  const runs = ctx.db.prepare('SELECT count(*) FROM crasher_runs').pluck();
  await until('the first run', () => (runs.get() as number) >= 1 || undefined);
  // Posts are still taken while the thread is down or starting again (committed here meanwhile).
  const during = await post({ wpf_action: 'count_me', contactId: '602' });
  assert.equal(during.status, 200);
  await until('the crashed job to run again and finish', () => ctx.events.get(eventId)?.status === 'done', 20_000);
  assert.equal(runs.get(), 2);
  const counted = ctx.db.prepare('SELECT count(*) FROM counter_runs WHERE contact_id = 602').pluck();
  await until('the post taken meanwhile to run', () => (counted.get() as number) === 1 || undefined);
  assert.deepEqual(ctx.events.attempts(eventId).map((a) => a.outcome), ['crashed', 'done']);
});
