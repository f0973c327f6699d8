/**
 * The transactional outbox under a crash: a member created from a Keap post is committed, and the process dies by
 * SIGKILL before anything after the commit runs. After a restart, the plugin that asked for durable delivery of
 * `member.created` gets it; a plain in-process handler would have lost it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEED, startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { openDatabaseReadOnly, startChildServer, waitFor } from './support/child-server.js';
import { tempDataDir } from './support/temp.js';

const ACCESS_KEY = 'outbox-crash-access-key-0123456789abcdef';
const KEAP_KEY = 'outbox-crash-keap-key';

test('member.created committed reaches a durable handler even after a SIGKILL right after the commit', async () => {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY] });
  const dataDir = tempDataDir();
  const plugins = tempDataDir('memberhook-outbox-plugins-');
  // Dies the moment its in-process handler runs: right after the member's transaction committed, before anything
  // else of this process can run (the worker, the response, the next job).
  writeFileSync(
    join(plugins, 'crash-after-commit.mjs'),
    `export default { name: 'crash-after-commit', version: '1.0.0', apiVersion: 1, setup(api) {
      api.hooks.addAction('member.created', () => { if (process.env.CRASH_AFTER_COMMIT === '1') process.kill(process.pid, 'SIGKILL'); });
    } };`,
  );
  writeFileSync(
    join(plugins, 'ledger.mjs'),
    `export default { name: 'ledger', version: '1.0.0', apiVersion: 1, async setup(api) {
      await api.db.migrate(['CREATE TABLE ledger_members (member_id INTEGER PRIMARY KEY, email TEXT NOT NULL)']);
      api.hooks.addAction('member.created', (m) => api.db.run('INSERT OR IGNORE INTO ledger_members (member_id, email) VALUES (?, ?)', [m.id, m.email]), { durable: true });
    } };`,
  );
  const env = {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    PLUGINS_DIR: plugins,
    ACCESS_KEY,
    KEAP_API_URL: sandbox.url,
    KEAP_API_KEY: KEAP_KEY,
    LOG_LEVEL: 'warn',
  };
  try {
    const first = await startChildServer({ ...env, CRASH_AFTER_COMMIT: '1' });
    const post = await fetch(`${first.url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ access_key: ACCESS_KEY, wpf_action: 'add', contactId: String(SEED.contacts.ada) }),
    });
    assert.equal(post.status, 200, 'the post was acknowledged');
    const { signal } = await first.exited;
    assert.equal(signal, 'SIGKILL', 'the process died in the after-commit handler');

    const db = openDatabaseReadOnly(dataDir);
    try {
      const member = db.prepare<[number], { id: number }>('SELECT id FROM members WHERE keap_contact_id = ?').get(SEED.contacts.ada);
      assert.ok(member, 'the member was committed before the crash');
      const delivery = db.prepare<[], { status: string; plugin: string }>("SELECT status, plugin FROM events WHERE action = 'hook.deliver'").all();
      assert.deepEqual(delivery, [{ status: 'queued', plugin: 'ledger' }], 'its delivery was committed with it, and never ran');
      assert.equal(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'ledger_members'").pluck().get(), 1);
      assert.equal(db.prepare('SELECT count(*) FROM ledger_members').pluck().get(), 0, 'the durable handler had not run yet');
    } finally {
      db.close();
    }

    const second = await startChildServer(env);
    try {
      const delivered = await waitFor('the ledger to hear of the member', () => {
        const check = openDatabaseReadOnly(dataDir);
        try {
          return check.prepare<[], { email: string }>('SELECT email FROM ledger_members').all().at(0);
        } finally {
          check.close();
        }
      });
      assert.equal(delivered.email, 'ada@example.com');
    } finally {
      await second.stop();
    }
  } finally {
    await sandbox.close();
  }
});
