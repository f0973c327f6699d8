import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config.js';
import { startServer, StartupError } from '../src/server.js';
import { accessKeyMatches, resolveAccessKey } from '../src/features/http-post/access-key.js';
import { readFileSync } from 'node:fs';
import { SealedSettings, SettingsStore } from '../src/core/settings.js';
import { SecretBox } from '../src/core/secret-box.js';
import { openDatabase } from '../src/core/db.js';
import { captureLogs } from './support/logs.js';
import { tempDataDir, NO_PLUGINS_DIR } from './support/temp.js';

test('a first start generates an access key of at least 32 characters, shows it once, and never logs it', async () => {
  const dataDir = tempDataDir();
  const logs = captureLogs();
  const shown: string[] = [];
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR });
  const first = await startServer(config, { logger: logs.logger, console: (l) => shown.push(l), jobs: 'in-process' });
  const res = await fetch(`${first.url}/healthz`);
  assert.deepEqual(await res.json(), { ok: true });
  await first.close();
  assert.equal(shown.length, 1);
  const key = /\n\s+(\S+)\n/.exec(shown[0]!)?.[1];
  assert.ok(key && key.length >= 32, 'a long key was shown');

  const second = await startServer(config, { logger: logs.logger, console: (l) => shown.push(l), jobs: 'in-process' });
  await second.close();
  assert.equal(shown.length, 1, 'the key is not shown again');
  const { db } = openDatabase({ filename: config.databaseFile });
  const stored = new SettingsStore(db).get('webhook.access_key')!;
  assert.match(stored, /^enc:v1:/, 'stored encrypted with the site key');
  const box = new SecretBox(SecretBox.parseKey(readFileSync(config.siteKey.file, 'utf8'))!, 'the test');
  assert.equal(resolveAccessKey(new SealedSettings(new SettingsStore(db), box), undefined).key, key, 'the same key is kept across restarts');
  db.close();
  assert.equal(logs.text().includes(key), false, 'the key never reaches the log');
});

test('an ACCESS_KEY from the environment is used as is and nothing is generated', async () => {
  const dataDir = tempDataDir();
  const shown: string[] = [];
  const running = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, ACCESS_KEY: 'e'.repeat(32) }), { logger: captureLogs().logger, console: (l) => shown.push(l), jobs: 'in-process' });
  await running.close();
  assert.deepEqual(shown, []);
});

test('a DEFAULT_ROLE that does not exist or has admin rights stops the start with one line', async () => {
  const dataDir = tempDataDir();
  for (const [role, message] of [['gold', /no role named "gold" exists/], ['administrator', /has admin rights/]] as const) {
    await assert.rejects(
      startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, DEFAULT_ROLE: role }), { logger: captureLogs().logger, console: () => {}, jobs: 'in-process' }),
      (err: unknown) => err instanceof StartupError && message.test(err.message) && err.message.startsWith('Invalid setting DEFAULT_ROLE'),
    );
  }
});

test('unknown pages answer 404: JSON for programs, a page for people', async () => {
  const running = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: tempDataDir(), PLUGINS_DIR: NO_PLUGINS_DIR }), { logger: captureLogs().logger, console: () => {}, jobs: 'in-process' });
  try {
    const api = await fetch(`${running.url}/webhooks/nothing`);
    assert.equal(api.status, 404);
    assert.deepEqual(await api.json(), { ok: false, error: 'no page at GET /webhooks/nothing' });
    const page = await fetch(`${running.url}/nothing`);
    assert.equal(page.status, 404);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await page.text(), /<h1>Not found<\/h1>/);
    assert.ok(page.headers.get('content-security-policy'), 'helmet headers are set');
  } finally {
    await running.close();
  }
});

test('the access key comparison accepts only the exact key', () => {
  const key = 'a'.repeat(43);
  assert.equal(accessKeyMatches(key, key), true);
  assert.equal(accessKeyMatches(key, key.slice(1)), false);
  assert.equal(accessKeyMatches(key, `${key}a`), false);
  assert.equal(accessKeyMatches(key, 'A'.repeat(43)), false);
  assert.equal(accessKeyMatches(key, ''), false);
  assert.equal(accessKeyMatches(key, undefined), false);
  assert.equal(accessKeyMatches(key, ['a'.repeat(43)]), false);
});
