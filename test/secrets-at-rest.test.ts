import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config.js';
import { openDatabase } from '../src/core/db.js';
import { StartupError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { SealedSettings } from '../src/core/settings.js';
import { SqliteKeapTokenStore } from '../src/features/keap/token-store.js';
import { PENDING_PASSWORD_MAX_AGE_MS } from '../src/features/members/plugin.js';
import { buildContext, type AppContext } from '../src/server.js';
import { SEED } from '../tools/keap-sandbox/seed.js';
import { createMember, TEST_SITE_ACCESS_KEY, testSite } from './support/admin-site.js';
import { startHarness } from './support/harness.js';
import { captureLogs } from './support/logs.js';
import { ManualClock } from './support/clock.js';
import { NO_PLUGINS_DIR, tempDataDir } from './support/temp.js';

const KEAP_KEY = 'KeapAK-stored-from-the-settings-page-0123456789';
const ACCESS_TOKEN = 'oauth-access-token-abcdefghijklmnop';
const REFRESH_TOKEN = 'oauth-refresh-token-qrstuvwxyz012345';
const PENDING = 'Generated-Pass-2024!';
const SIGNING_SECRET = 'c2lnbmluZy1zZWNyZXQtb2YtYW4tb2xkZXItdmVyc2lvbg';
const STORED_ACCESS_KEY = 'a-webhook-access-key-stored-in-plaintext-0123';
const DAY = 24 * 60 * 60 * 1000;

const modeOf = (path: string) => statSync(path).mode & 0o777;

/** A site on `dataDir`, closed by the caller (these tests start and stop sites on the same data). */
async function open(dataDir: string, env: Record<string, string> = {}) {
  const logs = captureLogs();
  const clock = new ManualClock();
  const config = loadConfig({ DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, PORT: '0', ACCESS_KEY: TEST_SITE_ACCESS_KEY, ...env });
  const ctx = await buildContext(config, { logger: logs.logger, console: () => {}, clock });
  const close = () => {
    ctx.mailer.close();
    ctx.db.close();
  };
  return { ctx, logs, clock, close };
}

function raw(ctx: AppContext) {
  return {
    keapKey: ctx.settings.get('keap.api_key'),
    accessKey: ctx.settings.get('webhook.access_key'),
    signingSecret: ctx.settings.get('csrf.secret'),
    tokens: ctx.db.prepare('SELECT access_token, refresh_token FROM keap_oauth_tokens').get() as { access_token: string; refresh_token: string } | undefined,
    pending: ctx.db.prepare('SELECT member_id, password FROM pending_passwords').all() as Array<{ member_id: number; password: string }>,
  };
}

/** What an older version left: the same secrets, in plaintext. */
async function siteWithPlaintextSecrets(dataDir: string): Promise<number> {
  const { ctx, close } = await open(dataDir);
  const ada = await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: 'correct horse battery staple' });
  ctx.settings.set('keap.api_key', KEAP_KEY);
  ctx.settings.set('webhook.access_key', STORED_ACCESS_KEY);
  ctx.settings.set('csrf.secret', SIGNING_SECRET);
  ctx.db.prepare("INSERT INTO keap_oauth_tokens (id, access_token, refresh_token, expires_at) VALUES (1, ?, ?, 0)").run(ACCESS_TOKEN, REFRESH_TOKEN);
  ctx.db.prepare('INSERT INTO pending_passwords (member_id, password, awaiting_email) VALUES (?, ?, 1)').run(ada.id, PENDING);
  close();
  return ada.id;
}

// -------------------------------------------------------------------------------------------------------------------
// File modes

test('the data folder, the database with its -wal and -shm, the site key and outbox emails are readable by their owner only', async () => {
  const dataDir = join(tempDataDir(), 'data');
  const { ctx, close } = await open(dataDir);
  try {
    await ctx.mailer.send({ to: 'ada@example.com', subject: 'Hello', text: 'a password could be in here' });
    ctx.settings.set('touch', 'so the WAL has something');
    assert.equal(modeOf(dataDir), 0o700);
    for (const file of ['memberhook.db', 'memberhook.db-wal', 'memberhook.db-shm', 'site.key']) {
      assert.equal(modeOf(join(dataDir, file)), 0o600, file);
    }
    assert.equal(modeOf(join(dataDir, 'outbox')), 0o700);
    const emails = readdirSync(join(dataDir, 'outbox'));
    assert.equal(emails.length, 1);
    assert.equal(modeOf(join(dataDir, 'outbox', emails[0]!)), 0o600);
  } finally {
    close();
  }
});

test('files an older version left open to other users are made owner-only at start, and the log says which', async () => {
  const dataDir = tempDataDir();
  openDatabase({ filename: join(dataDir, 'memberhook.db') }).db.close();
  mkdirSync(join(dataDir, 'outbox'));
  writeFileSync(join(dataDir, 'outbox', 'old.eml'), 'Subject: your password');
  chmodSync(join(dataDir, 'outbox', 'old.eml'), 0o644);
  chmodSync(join(dataDir, 'outbox'), 0o755);
  chmodSync(join(dataDir, 'memberhook.db'), 0o644);
  chmodSync(dataDir, 0o755);
  // A folder memberhook does not write into (a DATA_DIR shared with something else) is not ours to change.
  mkdirSync(join(dataDir, 'elsewhere'), { mode: 0o755 });
  chmodSync(join(dataDir, 'elsewhere'), 0o755);

  const first = await open(dataDir);
  first.close();
  assert.equal(modeOf(dataDir), 0o700);
  assert.equal(modeOf(join(dataDir, 'outbox')), 0o700);
  assert.equal(modeOf(join(dataDir, 'memberhook.db')), 0o600);
  assert.equal(modeOf(join(dataDir, 'outbox', 'old.eml')), 0o600);
  assert.equal(modeOf(join(dataDir, 'elsewhere')), 0o755, 'other folders are left alone');
  const line = first.logs.lines().find((l) => String(l.msg).includes('readable by their owner only'));
  assert.ok(line, 'a log line says the modes were changed');
  assert.equal(line.count, 4);
  assert.ok((line.files as string[]).includes(join(dataDir, 'memberhook.db')));

  const second = await open(dataDir);
  second.close();
  assert.equal(second.logs.lines().some((l) => String(l.msg).includes('readable by their owner only')), false, 'nothing to change the second time');
});

// -------------------------------------------------------------------------------------------------------------------
// Encryption

test('the Keap API key stored from the settings page is encrypted in the database and read back as it was', async () => {
  const { ctx } = await testSite();
  ctx.site.setKeapApiKey(KEAP_KEY);
  const stored = ctx.settings.get('keap.api_key')!;
  assert.match(stored, /^enc:v1:/);
  assert.equal(stored.includes(KEAP_KEY), false);
  assert.equal(ctx.site.keapApiKey(), KEAP_KEY);
  assert.equal(ctx.site.keapApiKeySource(), 'stored');
  ctx.site.setKeapApiKey('');
  assert.equal(ctx.site.keapApiKey(), undefined, 'clearing the key still works');
});

test('a pending password is encrypted in the database, bound to its member', async () => {
  const { ctx } = await testSite();
  const ada = await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: 'correct horse battery staple' });
  const grace = await createMember(ctx, { email: 'grace@example.com', username: 'grace', role: 'member', password: 'correct horse battery staple' });
  ctx.members.savePendingPassword(ada.id, PENDING, { keap: true, email: false });
  const [row] = raw(ctx).pending;
  assert.match(row!.password, /^enc:v1:/);
  assert.equal(ctx.members.pendingPassword(ada.id, 'keap'), PENDING);
  // Copied to another member's row, the value does not open: the error names the row, never the password.
  ctx.db.prepare('INSERT INTO pending_passwords (member_id, password, awaiting_keap) VALUES (?, ?, 1)').run(grace.id, row!.password);
  assert.throws(() => ctx.members.pendingPassword(grace.id, 'keap'), (err: Error) => /pending password of member \d+ cannot be decrypted/.test(err.message) && !err.message.includes(PENDING));
});

test('plaintext secrets from an older version are encrypted at the next start, and later starts change nothing', async () => {
  const dataDir = tempDataDir();
  const adaId = await siteWithPlaintextSecrets(dataDir);

  const upgraded = await open(dataDir);
  const after = raw(upgraded.ctx);
  try {
    assert.match(after.keapKey!, /^enc:v1:/);
    assert.match(after.accessKey!, /^enc:v1:/);
    assert.match(after.signingSecret!, /^enc:v1:/, 'the secret behind form tokens and device cookies');
    assert.match(after.tokens!.access_token, /^enc:v1:/);
    assert.match(after.tokens!.refresh_token, /^enc:v1:/);
    assert.match(after.pending[0]!.password, /^enc:v1:/);
    const everything = JSON.stringify(upgraded.ctx.db.prepare('SELECT * FROM settings').all()) + JSON.stringify(after);
    for (const secret of [KEAP_KEY, STORED_ACCESS_KEY, SIGNING_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, PENDING]) assert.equal(everything.includes(secret), false, `${secret} is no longer in plaintext`);
    assert.equal(upgraded.ctx.site.keapApiKey(), KEAP_KEY);
    assert.equal(new SealedSettings(upgraded.ctx.settings, upgraded.ctx.secretBox).get('webhook.access_key'), STORED_ACCESS_KEY);
    assert.equal(new SealedSettings(upgraded.ctx.settings, upgraded.ctx.secretBox).get('csrf.secret'), SIGNING_SECRET, 'the same secret: forms and device cookies stay good');
    assert.deepEqual(new SqliteKeapTokenStore(upgraded.ctx.db, upgraded.ctx.secretBox).load(), { accessToken: ACCESS_TOKEN, refreshToken: REFRESH_TOKEN, expiresAt: 0, scope: null });
    assert.equal(upgraded.ctx.members.pendingPassword(adaId, 'email'), PENDING);
    const logged = upgraded.logs.text();
    assert.match(logged, /encrypted the stored Keap API key/);
    assert.match(logged, /encrypted the stored Keap OAuth tokens/);
    assert.match(logged, /encrypted the pending passwords/);
  } finally {
    upgraded.close();
  }

  const again = await open(dataDir);
  try {
    assert.deepEqual(raw(again.ctx), after, 'the second start re-encrypts nothing');
    assert.doesNotMatch(again.logs.text(), /encrypted the/);
  } finally {
    again.close();
  }
});

test('another site key stops the start with one clear line naming the key file, never a secret', async () => {
  const dataDir = tempDataDir();
  const first = await open(dataDir);
  first.ctx.site.setKeapApiKey(KEAP_KEY);
  first.close();
  const keyFile = join(dataDir, 'site.key');
  const originalKey = readFileSync(keyFile, 'utf8');
  writeFileSync(keyFile, `${SecretBox.generateKey()}\n`, { mode: 0o600 });

  const err = await open(dataDir).then(() => assert.fail('the start went on'), (e: unknown) => e as Error);
  assert.ok(err instanceof StartupError, String(err));
  assert.match(err.message, new RegExp(`cannot be decrypted with the site key from the key file ${keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.match(err.message, /Restore the site key that was backed up with this database/);
  for (const secret of [KEAP_KEY, originalKey.trim()]) assert.equal(err.message.includes(secret), false);

  // The same with SITE_KEY: the setting is named.
  const fromSetting = await open(dataDir, { SITE_KEY: SecretBox.generateKey() }).then(() => assert.fail('the start went on'), (e: unknown) => e as Error);
  assert.match(fromSetting.message, /cannot be decrypted with the site key from SITE_KEY/);

  // And with the right key back, the site starts and reads its key.
  writeFileSync(keyFile, originalKey);
  const restored = await open(dataDir);
  assert.equal(restored.ctx.site.keapApiKey(), KEAP_KEY);
  restored.close();
});

test('a key file lost while the database holds secrets sealed with it is not made again: the start says to restore it', async () => {
  const dataDir = tempDataDir();
  (await open(dataDir)).close();
  rmSync(join(dataDir, 'site.key'));
  const err = await open(dataDir).then(() => assert.fail('the start went on'), (e: unknown) => e as Error);
  assert.ok(err instanceof StartupError);
  assert.match(err.message, /site key file .*site\.key is missing, and the database's secrets are encrypted with it: restore it/);
  assert.equal(existsSync(join(dataDir, 'site.key')), false, 'no new key was made');
});

test('SITE_KEY and SITE_KEY_FILE keep the key outside the data folder; a bad or missing one is named, never shown', async () => {
  const dataDir = tempDataDir();
  const key = SecretBox.generateKey();
  const withSetting = await open(dataDir, { SITE_KEY: key });
  withSetting.ctx.site.setKeapApiKey(KEAP_KEY);
  withSetting.close();
  assert.equal(existsSync(join(dataDir, 'site.key')), false, 'no key file is made when SITE_KEY is set');

  const keyDir = tempDataDir('memberhook-key-');
  const keyFile = join(keyDir, 'memberhook.key');
  writeFileSync(keyFile, key, { mode: 0o600 });
  const withFile = await open(dataDir, { SITE_KEY_FILE: keyFile });
  assert.equal(withFile.ctx.site.keapApiKey(), KEAP_KEY, 'the same key from a file opens the same secrets');
  withFile.close();

  const missing = join(keyDir, 'nowhere.key');
  await assert.rejects(open(dataDir, { SITE_KEY_FILE: missing }), (err: Error) => err instanceof StartupError && err.message === `SITE_KEY_FILE names ${missing}, which does not exist`);
  assert.throws(
    () => loadConfig({ SITE_KEY: 'not-a-key-but-a-secret-all-the-same' }),
    (err: Error) => err instanceof ConfigError && /^Invalid setting SITE_KEY: expected 32 random bytes in base64/.test(err.message) && !err.message.includes('not-a-key'),
  );
  assert.throws(() => loadConfig({ SITE_KEY: key, SITE_KEY_FILE: keyFile }), /Invalid setting SITE_KEY_FILE: expected SITE_KEY or SITE_KEY_FILE, not both/);
});

test('the job thread reads the same key: a Keap key sealed by an admin edit is what its jobs send to Keap', async () => {
  const h = await startHarness({ env: { KEAP_API_KEY: '' }, start: { jobs: 'thread', logger: undefined, worker: undefined } });
  try {
    assert.equal(h.server.jobs, 'thread');
    h.server.ctx.site.setKeapApiKey('sandbox-api-key');
    assert.match(h.server.ctx.settings.get('keap.api_key')!, /^enc:v1:/);
    const res = await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.ada) });
    assert.equal(res.status, 200);
    await waitForFinished(h.server.ctx, res.body.event_id as number);
    const event = h.server.ctx.events.get(res.body.event_id as number)!;
    assert.equal(event.status, 'done', event.error ?? '');
    assert.equal(h.sandbox.state.requestsTo('GET', `/crm/rest/v2/contacts/${SEED.contacts.ada}`)[0]!.credential, 'key');
  } finally {
    await h.close();
  }
});

async function waitForFinished(ctx: AppContext, id: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (['queued', 'processing'].includes(ctx.events.get(id)!.status)) {
    if (Date.now() > deadline) throw new Error(`event ${id} did not finish`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// -------------------------------------------------------------------------------------------------------------------
// Pending passwords leave

test('a pending password is deleted when its write-back fails for good', async () => {
  const h = await startHarness({ start: { worker: { pollMs: 50, start: false } } });
  const { ctx } = h.server;
  const runNext = async () => {
    const [job] = ctx.events.claimBatch(ctx.worker.id, Date.now(), 60_000, [], 1);
    await ctx.worker.runClaimed(job!);
    return ctx.events.get(job!.id)!;
  };
  try {
    assert.equal((await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.margaret) })).status, 200);
    assert.equal((await runNext()).status, 'done', 'the member is created');
    assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 1, 'its password waits for the write-back');
    // Keap refuses the write-back with a 400: running it again cannot help.
    h.sandbox.failNext(1, 400);
    const writeBack = await runNext();
    assert.deepEqual([writeBack.action, writeBack.status], ['keap_password_writeback', 'failed']);
    assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0, 'nothing waits for the password any more');
  } finally {
    await h.close();
  }
});

test('a pending password is deleted when its write-back is skipped (the password field was unset meanwhile)', async () => {
  const h = await startHarness({ env: { KEAP_PASSWORD_FIELD: '' }, start: { worker: { pollMs: 50, start: false } } });
  const { ctx } = h.server;
  const runNext = async () => {
    const [job] = ctx.events.claimBatch(ctx.worker.id, Date.now(), 60_000, [], 1);
    await ctx.worker.runClaimed(job!);
    return ctx.events.get(job!.id)!;
  };
  try {
    ctx.site.setKeapFields({ passwordField: 'Password' });
    assert.equal((await h.post({ wpf_action: 'add', contactId: String(SEED.contacts.margaret) })).status, 200);
    assert.equal((await runNext()).status, 'done');
    assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 1);
    ctx.site.setKeapFields({ passwordField: '' });
    const writeBack = await runNext();
    assert.deepEqual([writeBack.action, writeBack.status, writeBack.result], ['keap_password_writeback', 'skipped', 'no Keap password field is configured']);
    assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0);
  } finally {
    await h.close();
  }
});

test('a pending password is deleted when its welcome email is given up after its retries', async () => {
  const { ctx } = await testSite({ JOB_MAX_ATTEMPTS: '1', SMTP_URL: `smtp://127.0.0.1:${await closedPort()}` });
  const ada = await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: 'correct horse battery staple' });
  ctx.db.transaction(() => {
    ctx.members.savePendingPassword(ada.id, PENDING, { keap: false, email: true });
    ctx.jobs.enqueue('welcome_email', { member_id: ada.id });
  })();
  const [job] = ctx.events.claimBatch(ctx.worker.id, ctx.clock.now(), 60_000, [], 1);
  await ctx.worker.runClaimed(job!);
  assert.equal(ctx.events.get(job!.id)!.status, 'dead', 'the mail server never answered');
  assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0);
});

test('the daily clean-up deletes pending passwords older than their maximum age, whatever became of their jobs', async () => {
  const { ctx, clock } = await testSite();
  const ada = await createMember(ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: 'correct horse battery staple' });
  const grace = await createMember(ctx, { email: 'grace@example.com', username: 'grace', role: 'member', password: 'correct horse battery staple' });
  ctx.members.savePendingPassword(ada.id, PENDING, { keap: true, email: true });
  ctx.members.savePendingPassword(grace.id, PENDING, { keap: true, email: false });
  ctx.db.prepare('UPDATE pending_passwords SET created_at = ? WHERE member_id = ?').run(new Date(clock.now() - PENDING_PASSWORD_MAX_AGE_MS - 1000).toISOString(), ada.id);
  await ctx.maintenance.runAll();
  assert.deepEqual(ctx.db.prepare('SELECT member_id FROM pending_passwords').pluck().all(), [grace.id], 'only the old one went');
  clock.advance(PENDING_PASSWORD_MAX_AGE_MS + DAY);
  await ctx.maintenance.runAll();
  assert.equal(ctx.db.prepare('SELECT count(*) FROM pending_passwords').pluck().get(), 0);
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
