/**
 * The plugin host as a plugin author and an administrator see it: plugins dropped into PLUGINS_DIR (files and
 * folders) or named in PLUGINS, loaded in name order, isolated when they fail, listed on /admin/plugins, enabled
 * and disabled at once, with their routes, admin pages, settings, tables, jobs and hooks.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import type { AppContext } from '../src/server.js';
import { adminAgent, ADMIN_EMAIL, ADMIN_PASSWORD, createMember, testSite, type TestSite } from './support/admin-site.js';
import { csrfFrom } from './support/pages.js';
import { tempDataDir } from './support/temp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A plugin that uses every part of the API, and records what happened to it in its own table. */
const GOOD = `
import { definePlugin, z } from 'memberhook/plugin';
export default definePlugin({
  name: 'good', version: '2.1.0', apiVersion: 1, description: 'Uses the whole plugin API.',
  async setup(api) {
    await api.db.migrate(['CREATE TABLE good_log (id INTEGER PRIMARY KEY, what TEXT NOT NULL)']);
    const log = (what) => api.db.run('INSERT INTO ' + api.db.table('log') + ' (what) VALUES (?)', [what]);
    const settings = api.settings.define(z.object({
      greeting: z.string().min(1).max(40).describe('Said by GET /plugins/good/hello.'),
      limit: z.number().int().min(1).max(10),
      loud: z.boolean(),
      tone: z.enum(['warm', 'dry']),
      token: z.string().meta({ secret: true }),
    }), { greeting: 'hello', limit: 3, loud: false, tone: 'warm', token: '' });
    api.hooks.addAction('member.created', (m) => log('created ' + m.email));
    api.hooks.addFilter('member.username', (username) => username);
    api.jobs.define({ type: 'count', params: z.object({ n: z.number().int() }), async run(job) { await log('count ' + job.params.n); return { status: 'done', result: 'counted ' + job.params.n }; } });
    api.webhooks.addAction('good_thing', async (job) => { await log('post ' + job.params.contact_id); });
    api.router.get('/hello', (_req, res) => res.json({ plugin: api.name, says: settings.get().loud ? settings.get().greeting.toUpperCase() : settings.get().greeting }));
    api.router.post('/count', async (_req, res) => res.json(await api.jobs.enqueue('count', { n: 7 })));
    api.admin.addPage({ path: 'report', title: 'Good report', menu: { label: 'Good', order: 80 }, handler(req, res) {
      const said = req.method === 'POST' ? String(req.body.said ?? '') : '';
      api.admin.render(res, { title: 'Good report', html: api.admin.html\`<h1>Good report</h1><p id="said">\${said}</p><form method="post">\${api.admin.csrfField(res)}<input name="said"></form>\` });
    } });
    api.onStop(() => log('stopped'));
  },
});`;

const THROWS = `
import { z } from 'memberhook/plugin';
export default {
  name: 'throws-in-setup', version: '1.0.0', apiVersion: 1,
  setup(api) {
    api.hooks.addAction('member.created', () => { throw new Error('must never run'); });
    api.jobs.define({ type: 'never', params: z.object({}), async run() {} });
    api.webhooks.addAction('never_thing', async () => {});
    api.router.get('/x', (_req, res) => res.send('never'));
    api.admin.addPage({ path: 'p', title: 'Never', menu: { label: 'Never' }, handler: (_req, res) => res.send('never') });
    throw new Error('the plugin gave up half-way');
  },
};`;

interface PluginFiles {
  [path: string]: string;
}

function pluginsDir(files: PluginFiles): string {
  const dir = tempDataDir('memberhook-plugins-');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

async function site(files: PluginFiles, dataDir?: string): Promise<TestSite & { dir: string }> {
  const dir = pluginsDir(files);
  const s = await testSite({ PLUGINS_DIR: dir }, dataDir);
  return { ...s, dir };
}

const plugin = (ctx: AppContext, name: string) => ctx.plugins.list().find((p) => p.name === name);
const logOf = (ctx: AppContext) => ctx.db.prepare<[], string>('SELECT what FROM good_log ORDER BY id').pluck().all();

async function withAdmin(s: TestSite) {
  await createMember(s.ctx, { email: ADMIN_EMAIL, username: 'boss', role: 'administrator', password: ADMIN_PASSWORD });
  return adminAgent(s.app);
}

test('plugins load in name order; one that fails to import, has a bad export or throws in setup is marked failed, undone, and the rest run', async () => {
  const s = await site({
    'good.mjs': GOOD,
    'b-syntax/index.js': 'export default {',
    'wrong-api.mjs': "export default { name: 'wrong-api', version: '1.0.0', apiVersion: 2, setup() {} };",
    'bad-name.mjs': "export default { name: 'Bad Name', version: '1.0.0', apiVersion: 1, setup() {} };",
    'no-export.js': 'export const x = 1;',
    'empty-folder/README.md': 'nothing to load',
    'throws.mjs': THROWS,
    'a-dup.mjs': "export default { name: 'dup', version: '1.0.0', apiVersion: 1, setup() {} };",
    'z-dup.mjs': "export default { name: 'dup', version: '2.0.0', apiVersion: 1, setup() {} };",
    'members.mjs': "export default { name: 'members', version: '1.0.0', apiVersion: 1, setup() {} };",
    'notes.txt': 'not a plugin',
  });
  const { ctx, app } = s;
  const third = ctx.plugins.list().filter((p) => !p.core);
  const byName = Object.fromEntries(third.map((p) => [p.name, p]));
  assert.equal(byName.good?.state, 'running');
  assert.equal(byName.good?.version, '2.1.0');
  assert.match(byName['b-syntax']!.error!, /^could not be imported: /);
  assert.match(byName['wrong-api']!.error!, /apiVersion is 2, but this memberhook speaks plugin API version 1/);
  assert.match(byName['bad-name']!.error!, /bad name "Bad Name": use lowercase letters, digits and dashes/);
  assert.match(byName['no-export']!.error!, /has no default export object/);
  assert.match(byName['empty-folder']!.error!, /no package\.json entry .* index\.js or index\.mjs/);
  assert.equal(byName['throws-in-setup']!.state, 'failed');
  assert.equal(byName['throws-in-setup']!.error, 'setup failed: the plugin gave up half-way');
  assert.deepEqual(byName['throws-in-setup']!.registrations, [], 'nothing of it is left registered');
  const dups = third.filter((p) => p.name === 'dup');
  assert.deepEqual(dups.map((p) => [p.version, p.state]), [['1.0.0', 'running'], ['2.0.0', 'failed']], 'the first in name order wins');
  assert.match(dups[1]!.error!, /another plugin named "dup" is loaded from .*a-dup\.mjs/);
  assert.match(third.find((p) => p.name === 'members')!.error!, /"members" is the name of a built-in feature/);
  assert.equal(third.some((p) => p.source.endsWith('notes.txt')), false, 'other files are not plugins');

  // Everything the failed plugin registered before it threw is gone; the good one works.
  assert.equal(ctx.jobs.has('throws-in-setup.never'), false);
  assert.equal(ctx.hooks.registrationsOf('throws-in-setup').length, 0);
  assert.equal((await request(app).get('/plugins/throws-in-setup/x')).status, 404);
  assert.deepEqual((await request(app).get('/plugins/good/hello')).body, { plugin: 'good', says: 'hello' });
  const refused = await request(app).post('/').type('form').send({ access_key: 'x'.repeat(32), wpf_action: 'never_thing', contactId: '5' });
  assert.equal(refused.status, 400);
  assert.match(refused.body.error, /unknown wpf_action "never_thing": expected one of add, update, update_tags, test, good_thing$/);
  const agent = await withAdmin(s);
  assert.equal((await agent.get('/admin/plugins/throws-in-setup/p')).status, 404);
  const page = await agent.get('/admin/plugins');
  assert.equal(page.status, 200);
  assert.match(page.text, /the plugin gave up half-way/);
  assert.doesNotMatch(page.text, /href="\/admin\/plugins\/throws-in-setup\/p"/, 'no menu entry of the failed plugin');
});

test('/admin/plugins lists what each plugin registered; disable and enable apply at once and are remembered', async () => {
  const dataDir = tempDataDir();
  const s = await site({ 'good.mjs': GOOD }, dataDir);
  const { ctx, app } = s;
  const agent = await withAdmin(s);
  const page = await agent.get('/admin/plugins');
  const good = page.text.slice(page.text.indexOf('data-plugin="good"'));
  for (const expected of ['member.created', 'member.username', 'GET /plugins/good/hello', '/admin/plugins/good/report', 'good.count', 'good_thing', 'greeting, limit, loud, tone, token', 'good_log']) {
    assert.ok(good.includes(expected), `the page lists ${expected}`);
  }
  assert.match(page.text, /data-plugin="members"[\s\S]*?Built-in/, 'built-in features are listed, always on');
  assert.match((await agent.get('/admin')).text, /href="\/admin\/plugins\/good\/report">Good</, 'its page is in the navigation');

  const token = /data-plugin="good"[\s\S]*?name="_csrf" value="([^"]*)"/.exec(page.text)?.[1];
  assert.equal(token, csrfFrom(page.text), "the plugin's own Disable form carries the page's form token");
  const disabled = await agent.post('/admin/plugins').type('form').send({ _csrf: token, plugin: 'good', action: 'disable' });
  assert.equal(disabled.status, 303);
  assert.equal(plugin(ctx, 'good')!.state, 'disabled');
  assert.deepEqual(logOf(ctx), ['created boss@example.com', 'stopped'], 'its hook saw the administrator created; onStop ran');
  assert.equal((await request(app).get('/plugins/good/hello')).status, 404, 'its routes are gone at once');
  assert.equal((await agent.get('/admin/plugins/good/report')).status, 404, 'and its admin page');
  assert.doesNotMatch((await agent.get('/admin')).text, /\/admin\/plugins\/good\/report/, 'and its menu entry');
  await createMember(ctx, { email: 'while-off@example.com', username: 'off', role: 'member', password: 'irrelevant-pw-1' });
  assert.deepEqual(logOf(ctx), ['created boss@example.com', 'stopped'], 'its hooks do not run while it is disabled');
  const refusal = await agent.post('/admin/plugins').type('form').send({ _csrf: csrfFrom(page.text), plugin: 'members', action: 'disable' });
  assert.equal(refusal.status, 409);
  assert.match(refusal.text, /built-in features cannot be disabled/);

  // A restart keeps it disabled.
  const again = await testSite({ PLUGINS_DIR: s.dir }, dataDir);
  assert.equal(plugin(again.ctx, 'good')!.state, 'disabled');
  const agent2 = await adminAgent(again.app);
  const list = await agent2.get('/admin/plugins');
  assert.equal((await agent2.post('/admin/plugins').type('form').send({ _csrf: csrfFrom(list.text), plugin: 'good', action: 'enable' })).status, 303);
  assert.equal(plugin(again.ctx, 'good')!.state, 'running');
  assert.deepEqual((await request(again.app).get('/plugins/good/hello')).body, { plugin: 'good', says: 'hello' });
  assert.match((await agent2.get('/admin/plugins?done=enable&plugin=good')).text, /good is enabled\./);
});

test("a disabled plugin's jobs wait, without failing, and run once it is enabled again", async () => {
  const s = await site({ 'good.mjs': GOOD });
  const { ctx, app } = s;
  const { id } = (await request(app).post('/plugins/good/count')).body as { id: number };
  assert.equal(ctx.events.get(id)!.action, 'good.count');
  assert.equal(ctx.events.get(id)!.plugin, 'good');
  await ctx.plugins.disable('good');
  ctx.worker.start();
  try {
    await ctx.worker.whenIdle();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(ctx.events.get(id)!.status, 'queued', 'the job waits while its plugin is off');
    await ctx.plugins.enable('good');
    const deadline = Date.now() + 5_000;
    while (ctx.events.get(id)!.status !== 'done' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  } finally {
    await ctx.worker.stop();
  }
  assert.equal(ctx.events.get(id)!.status, 'done');
  assert.equal(ctx.events.get(id)!.result, 'counted 7');
  assert.deepEqual(logOf(ctx), ['stopped', 'count 7']);
});

test("a plugin's admin page is inside the admin layout, behind the admin login and the form token", async () => {
  const s = await site({ 'good.mjs': GOOD });
  const agent = await withAdmin(s);
  const anonymous = await request(s.app).get('/admin/plugins/good/report');
  assert.equal(anonymous.status, 303);
  assert.equal(anonymous.headers.location, '/admin/login?next=/admin/plugins/good/report');
  const page = await agent.get('/admin/plugins/good/report');
  assert.equal(page.status, 200);
  assert.match(page.text, /<title>Good report · memberhook admin<\/title>/);
  assert.match(page.text, /<a href="\/admin\/plugins\/good\/report" aria-current="page">Good<\/a>/);
  assert.equal(page.headers['cache-control'], 'no-store');
  assert.equal((await agent.post('/admin/plugins/good/report').type('form').send({ said: 'hi' })).status, 403, 'no form token, no post');
  const posted = await agent.post('/admin/plugins/good/report').type('form').send({ _csrf: csrfFrom(page.text), said: '<script>alert(1)</script>' });
  assert.equal(posted.status, 200);
  assert.match(posted.text, /<p id="said">&lt;script&gt;alert\(1\)&lt;\/script&gt;<\/p>/, 'html`` escapes what it is given');
});

test('plugin settings are edited on a form generated from their schema; a bad value changes nothing', async () => {
  const s = await site({ 'good.mjs': GOOD });
  const agent = await withAdmin(s);
  const form = await agent.get('/admin/plugins/good/settings');
  assert.equal(form.status, 200);
  assert.match(form.text, /<input id="setting-greeting" type="text" name="greeting" value="hello"/);
  assert.match(form.text, /Said by GET \/plugins\/good\/hello\./);
  assert.match(form.text, /<select id="setting-tone" name="tone"><option value="warm" selected>warm<\/option><option value="dry">dry<\/option><\/select>/);
  assert.match(form.text, /<input id="setting-token" type="password"/);
  const csrf = csrfFrom(form.text);
  const bad = await agent.post('/admin/plugins/good/settings').type('form').send({ _csrf: csrf, greeting: 'hey', limit: '11', tone: 'dry', token: 'first-secret' });
  assert.equal(bad.status, 400);
  assert.match(bad.text, /Not saved: limit: /);
  assert.deepEqual((await request(s.app).get('/plugins/good/hello')).body.says, 'hello', 'nothing was saved');
  assert.doesNotMatch(bad.text, /first-secret/, 'a secret is never shown back');
  const saved = await agent.post('/admin/plugins/good/settings').type('form').send({ _csrf: csrf, greeting: 'hey', limit: '5', loud: 'on', tone: 'dry', token: 'first-secret' });
  assert.equal(saved.status, 303);
  assert.deepEqual((await request(s.app).get('/plugins/good/hello')).body.says, 'HEY', 'applies at once');
  const again = await agent.get('/admin/plugins/good/settings');
  assert.doesNotMatch(again.text, /first-secret/);
  assert.match(again.text, /placeholder="\(set; leave empty to keep\)"/);
  await agent.post('/admin/plugins/good/settings').type('form').send({ _csrf: csrf, greeting: 'hey', limit: '5', tone: 'dry', token: '' });
  const { token, ...stored } = JSON.parse(s.ctx.settings.get('plugin.good.settings')!) as Record<string, unknown>;
  assert.deepEqual(stored, { greeting: 'hey', limit: 5, loud: false, tone: 'dry' }, 'an unticked box is false');
  assert.match(String(token), /^enc:v1:/, 'a secret setting is stored encrypted with the site key');
  assert.equal(s.ctx.secretBox.open(String(token), 'plugin:good:settings.token'), 'first-secret', 'an empty secret keeps its value');
});

const KEEPER = `
import { definePlugin, z } from 'memberhook/plugin';
export default definePlugin({
  name: 'keeper', version: '1.0.0', apiVersion: 1,
  async setup(api) {
    const settings = api.settings.define(z.object({ password: z.string().meta({ secret: true }), note: z.string() }), { password: '', note: '' });
    await api.db.migrate(['CREATE TABLE keeper_secrets (id INTEGER PRIMARY KEY, value TEXT NOT NULL)']);
    api.router.post('/keep', async (req, res) => {
      const { lastInsertRowid } = await api.db.run('INSERT INTO keeper_secrets (value) VALUES (?)', [api.secrets.seal(String(req.query.value), 'keeper_secrets')]);
      res.json({ id: Number(lastInsertRowid) });
    });
    api.router.get('/kept/:id', async (req, res) => {
      const row = await api.db.get('SELECT value FROM keeper_secrets WHERE id = ?', [Number(req.params.id)]);
      res.json({ value: api.secrets.open(row.value, 'keeper_secrets'), sealed: api.secrets.isSealed(row.value), password: settings.get().password });
    });
  },
});`;

test('a plugin seals its own secrets with the site key; secret settings stored in plaintext by an older version are sealed at start', async () => {
  const dataDir = tempDataDir();
  const first = await site({ 'keeper.mjs': KEEPER }, dataDir);
  // What a version from before encryption stored.
  first.ctx.settings.set('plugin.keeper.settings', JSON.stringify({ password: 'smtp-password-123', note: 'plain' }));
  const kept = await request(first.app).post('/plugins/keeper/keep?value=signing-secret-456');
  assert.equal(kept.status, 200);
  const row = first.ctx.db.prepare('SELECT value FROM keeper_secrets').pluck().get() as string;
  assert.match(row, /^enc:v1:/);
  assert.equal(row.includes('signing-secret-456'), false);
  assert.throws(() => first.ctx.secretBox.open(row, 'plugin:other:keeper_secrets'), /a secret of plugin other|cannot be decrypted/, 'bound to its plugin');

  const second = await site({ 'keeper.mjs': KEEPER }, dataDir);
  const stored = JSON.parse(second.ctx.settings.get('plugin.keeper.settings')!) as Record<string, string>;
  assert.match(stored.password!, /^enc:v1:/);
  assert.equal(stored.note, 'plain', 'only secret fields are sealed');
  const read = await request(second.app).get(`/plugins/keeper/kept/${kept.body.id}`);
  assert.deepEqual(read.body, { value: 'signing-secret-456', sealed: true, password: 'smtp-password-123' });
});

test("db.migrate creates a plugin's prefixed tables once; a migration that touches anything else is refused and rolled back", async () => {
  const dataDir = tempDataDir();
  const files = {
    'good.mjs': GOOD,
    'sneaky.mjs': `export default { name: 'sneaky', version: '1.0.0', apiVersion: 1, async setup(api) {
      await api.db.migrate(['CREATE TABLE sneaky_ok (id INTEGER)', 'CREATE TABLE sneaky_notes (id INTEGER); ALTER TABLE members ADD COLUMN sneaky TEXT']);
    } };`,
  };
  const s = await site(files, dataDir);
  const sneaky = plugin(s.ctx, 'sneaky')!;
  assert.equal(sneaky.state, 'failed');
  assert.match(sneaky.error!, /migration 2 of plugin sneaky changes the table "members": a plugin's tables and indexes must be named sneaky_/);
  const tables = s.ctx.db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sneaky%'").pluck().all();
  assert.deepEqual(tables, ['sneaky_ok'], 'migration 1 stays; migration 2 is rolled back whole');
  assert.equal(s.ctx.db.prepare<[], number>("SELECT count(*) FROM pragma_table_info('members') WHERE name = 'sneaky'").pluck().get(), 0);
  assert.deepEqual(s.ctx.db.prepare('SELECT plugin, version FROM plugin_migrations ORDER BY plugin, version').all(), [
    { plugin: 'good', version: 1 },
    { plugin: 'sneaky', version: 1 },
  ]);
  // The next start applies nothing twice (the log table keeps its rows).
  await s.ctx.plugins.disable('good');
  const again = await testSite({ PLUGINS_DIR: s.dir }, dataDir);
  await again.ctx.plugins.enable('good');
  assert.deepEqual(logOf(again.ctx), ['stopped'], 'the table and its rows are kept');
});

test('durable handlers get member actions through the outbox, as jobs, retried when they fail', async () => {
  const s = await site({
    'durable.mjs': `let calls = 0;
      export default { name: 'durable', version: '1.0.0', apiVersion: 1, async setup(api) {
        await api.db.migrate(['CREATE TABLE durable_seen (id INTEGER PRIMARY KEY, what TEXT)']);
        api.hooks.addAction('member.created', async (m) => {
          if (++calls === 1) throw new Error('the receiver is down');
          await api.db.run('INSERT INTO durable_seen (what) VALUES (?)', ['created ' + m.email + ' ' + typeof m.tags]);
        }, { durable: true });
        api.hooks.addAction('member.deleted', (m) => api.db.run('INSERT INTO durable_seen (what) VALUES (?)', ['deleted ' + m.id]), { durable: true });
      } };`,
    'not-durable.mjs': `export default { name: 'not-durable', version: '1.0.0', apiVersion: 1, setup(api) {
        api.hooks.addAction('member.logged_out', () => {}, { durable: true });
      } };`,
  });
  const { ctx } = s;
  assert.match(plugin(ctx, 'not-durable')!.error!, /action "member\.logged_out" is not recorded durably/);
  const member = await createMember(ctx, { email: 'dora@example.com', username: 'dora', role: 'member', password: 'irrelevant-pw-1' });
  const deliveries = () => ctx.db.prepare<[], { id: number; status: string; event_type: string; plugin: string; attempts: number }>("SELECT id, status, event_type, plugin, attempts FROM events WHERE action = 'hook.deliver' ORDER BY id").all();
  assert.deepEqual(deliveries().map((d) => [d.status, d.event_type, d.plugin]), [['queued', 'member.created', 'durable']], 'queued in the member transaction');
  await ctx.members.delete(member.id);
  // Retries fast: the first run fails, the second delivers.
  ctx.db.prepare("UPDATE events SET run_after = 0 WHERE action = 'hook.deliver'").run();
  ctx.worker.start();
  try {
    const deadline = Date.now() + 10_000;
    while (deliveries().some((d) => d.status !== 'done') && Date.now() < deadline) {
      ctx.db.prepare("UPDATE events SET run_after = 0 WHERE action = 'hook.deliver' AND status = 'queued'").run();
      ctx.jobs.wake();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await ctx.worker.stop();
  }
  assert.deepEqual(deliveries().map((d) => [d.event_type, d.status, d.attempts]), [['member.created', 'done', 2], ['member.deleted', 'done', 1]]);
  // At least once, not necessarily in order: the delete was delivered while the creation waited for its retry.
  assert.deepEqual(ctx.db.prepare<[], string>('SELECT what FROM durable_seen').pluck().all().sort(), ['created dora@example.com object', `deleted ${member.id}`]);
  assert.match(ctx.events.attempts(deliveries()[0]!.id)[0]!.error!, /the receiver is down/);
});

test('PLUGINS loads installed npm packages and paths beside PLUGINS_DIR; a package that is not installed says how to install it', async () => {
  // An installed package, as `npm install memberhook-plugin-...` would leave it next to memberhook.
  const name = `memberhook-test-plugin-${process.pid}`;
  const installed = join(ROOT, 'node_modules', name);
  mkdirSync(installed, { recursive: true });
  after(() => rmSync(installed, { recursive: true, force: true }));
  writeFileSync(join(installed, 'package.json'), JSON.stringify({ name, version: '3.0.0', type: 'module', exports: { '.': { import: './main.js' } } }));
  writeFileSync(join(installed, 'main.js'), "export default { name: 'from-npm', version: '3.0.0', apiVersion: 1, setup(api) { api.router.get('/', (_req, res) => res.json({ from: 'npm' })); } };");
  const elsewhere = pluginsDir({ 'by-path.mjs': "export default { name: 'by-path', version: '1.0.0', apiVersion: 1, setup(api) { api.router.get('/', (_req, res) => res.json({ from: 'path' })); } };" });
  const s = await testSite({ PLUGINS: `${name}, ${join(elsewhere, 'by-path.mjs')}, memberhook-plugin-nobody-installed` });
  const third = s.ctx.plugins.list().filter((p) => !p.core);
  assert.deepEqual(third.map((p) => [p.name, p.state, p.source]), [
    ['by-path', 'running', join(elsewhere, 'by-path.mjs')],
    ['from-npm', 'running', name],
    ['memberhook-plugin-nobody-installed', 'failed', 'memberhook-plugin-nobody-installed'],
  ]);
  assert.equal(third[2]!.error, 'the package "memberhook-plugin-nobody-installed" is not installed (run: npm install memberhook-plugin-nobody-installed)');
  assert.deepEqual((await request(s.app).get('/plugins/from-npm/')).body, { from: 'npm' });
  assert.deepEqual((await request(s.app).get('/plugins/by-path/')).body, { from: 'path' });
});

test("a plugin's logger names it, api.mail sends through memberhook's mailer, and api.keap is the site's Keap client", async () => {
  const s = await site({
    'services.mjs': `export default { name: 'services', version: '1.0.0', apiVersion: 1, async setup(api) {
      api.logger.info({ hello: 'world' }, 'services plugin says hello');
      await api.mail.send({ to: 'someone@example.com', subject: 'From a plugin', text: 'Sent by api.mail.' });
      api.router.get('/keap', (_req, res) => res.json({ mode: api.keap.authMode, same: typeof api.keap.getContact }));
    } };`,
  });
  const line = s.logs.lines().find((l) => l.msg === 'services plugin says hello');
  assert.equal(line?.plugin, 'services');
  const outbox = readdirSync(join(s.dataDir, 'outbox'));
  assert.equal(outbox.length, 1, 'the email went where memberhook sends mail without SMTP_URL');
  assert.match(readFileSync(join(s.dataDir, 'outbox', outbox[0]!), 'utf8'), /Subject: From a plugin/);
  assert.deepEqual((await request(s.app).get('/plugins/services/keap')).body, { mode: s.ctx.keap.authMode, same: 'function' });
});

test('a setup that takes longer than its time is marked failed, and what it registers afterwards is refused', async () => {
  const dir = pluginsDir({
    'slow.mjs': `export default { name: 'slow', version: '1.0.0', apiVersion: 1, async setup(api) {
      await new Promise((resolve) => setTimeout(resolve, 400));
      try { api.router.get('/late', (_req, res) => res.send('late')); api.hooks.addAction('member.created', () => {}); }
      catch (err) { globalThis.slowPluginRefused = err.message; }
    } };`,
  });
  const s = await testSite({ PLUGINS_DIR: dir }, tempDataDir(), { pluginSetupTimeoutMs: 100 });
  const slow = plugin(s.ctx, 'slow')!;
  assert.equal(slow.state, 'failed');
  assert.equal(slow.error, 'setup failed: plugin slow did not finish its setup within 0.1 s');
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal((globalThis as { slowPluginRefused?: string }).slowPluginRefused, 'plugin slow is not running');
  assert.equal(s.ctx.hooks.registrationsOf('slow').length, 0);
  assert.equal((await request(s.app).get('/plugins/slow/late')).status, 404);
});
