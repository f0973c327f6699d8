/**
 * Outbound webhooks under SIGKILL, with memberhook as its own process (jobs and the dispatcher on the job thread, as
 * in production): a member created from a Keap post commits, and the process dies before anything after the commit
 * runs. After a restart the receiver gets the event exactly once, signed. And a delivery cut off while the receiver
 * was answering is sent again after the restart under the same webhook-id (at least once: receivers deduplicate).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { SEED, startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { openDatabaseReadOnly, startChildServer, waitFor, type ChildServer } from './support/child-server.js';
import { startReceiver } from './support/receiver.js';
import { tempDataDir } from './support/temp.js';

const ACCESS_KEY = 'outbound-crash-access-key-0123456789abcdef';
const KEAP_KEY = 'outbound-crash-keap-key';

/** A plugins folder: one plugin sets up the connection and destination on the first start, one dies after the commit. */
function plugins(): string {
  const dir = tempDataDir('memberhook-outbound-crash-plugins-');
  writeFileSync(
    join(dir, 'outbound-setup.mjs'),
    `import { writeFileSync } from 'node:fs';
    export default { name: 'outbound-setup', version: '1.0.0', apiVersion: 1, setup(api) {
      if (api.outboundWebhooks.listConnections().length > 0) return;
      const { connection, signing_secret } = api.outboundWebhooks.createConnection({ name: 'receiver', base_url: process.env.RECEIVER_URL });
      api.outboundWebhooks.createDestination({ connection_id: connection.id, name: 'members', path: '/members', events: ['member.created'] });
      writeFileSync(process.env.SECRET_FILE, signing_secret);
    } };`,
  );
  writeFileSync(
    join(dir, 'crash-after-commit.mjs'),
    `export default { name: 'crash-after-commit', version: '1.0.0', apiVersion: 1, setup(api) {
      api.hooks.addAction('member.created', () => { if (process.env.CRASH_AFTER_COMMIT === '1') process.kill(process.pid, 'SIGKILL'); });
    } };`,
  );
  return dir;
}

function deliveries(dataDir: string): Array<{ status: string; attempts: number; event_id: string }> {
  const db = openDatabaseReadOnly(dataDir);
  try {
    return db.prepare<[], { status: string; attempts: number; event_id: string }>('SELECT status, attempts, event_id FROM outbound_deliveries').all();
  } finally {
    db.close();
  }
}

async function addAda(server: ChildServer): Promise<void> {
  const post = await fetch(`${server.url}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ access_key: ACCESS_KEY, wpf_action: 'add', contactId: String(SEED.contacts.ada) }),
  });
  assert.equal(post.status, 200, 'the post was acknowledged');
}

test('SIGKILL between the commit and the delivery: after the restart the event is delivered exactly once', async (t) => {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY] });
  t.after(() => sandbox.close());
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const dataDir = tempDataDir();
  const secretFile = join(dataDir, 'receiver-secret.txt');
  const env = {
    PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, PLUGINS_DIR: plugins(), ACCESS_KEY, KEAP_API_URL: sandbox.url, KEAP_API_KEY: KEAP_KEY,
    LOG_LEVEL: 'warn', OUTBOUND_ALLOW_PRIVATE: '1', RECEIVER_URL: receiver.url, SECRET_FILE: secretFile,
  };

  const first = await startChildServer({ ...env, CRASH_AFTER_COMMIT: '1' });
  await addAda(first);
  assert.equal((await first.exited).signal, 'SIGKILL', 'the process died right after the member committed');
  const db = openDatabaseReadOnly(dataDir);
  try {
    assert.ok(db.prepare('SELECT id FROM members WHERE keap_contact_id = ?').get(SEED.contacts.ada), 'the member committed');
    assert.deepEqual(
      db.prepare("SELECT status FROM events WHERE action = 'hook.deliver' AND event_type = 'member.created'").pluck().all(),
      ['queued'],
      'the outbox entry for the outbound webhooks committed with it and never ran',
    );
  } finally {
    db.close();
  }
  assert.equal(receiver.received.length, 0);

  const second = await startChildServer(env);
  t.after(() => second.stop());
  await waitFor('the delivery to be recorded delivered', () => deliveries(dataDir).find((d) => d.status === 'delivered'));
  // The server is idle now; anything sent twice would have been sent by the time the second's row is written.
  await waitFor('every job to finish', () => {
    const check = openDatabaseReadOnly(dataDir);
    try {
      return check.prepare("SELECT count(*) FROM events WHERE status IN ('queued', 'processing') AND action <> 'keap_poll_contacts'").pluck().get() === 0;
    } finally {
      check.close();
    }
  });
  assert.equal(receiver.received.length, 1, 'delivered once');
  assert.deepEqual(deliveries(dataDir).map((d) => [d.status, d.attempts]), [['delivered', 1]]);
  const [request] = receiver.received;
  const verified = new Webhook(readFileSync(secretFile, 'utf8')).verify(request!.body, request!.headers as Record<string, string>) as { type: string; data: { member: { email: string } } };
  assert.equal(verified.type, 'member.created');
  assert.equal(verified.data.member.email, 'ada@example.com');
});

test('SIGKILL while the receiver answers: the delivery is sent again after the restart, under the same webhook-id', async (t) => {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY] });
  t.after(() => sandbox.close());
  let server: ChildServer | undefined;
  const receiver = await startReceiver((_request, n) => {
    if (n > 1) return { status: 200 };
    // The first request arrives: the sender dies before it hears the answer.
    void server!.killHard();
    return { status: 200, hold: new Promise(() => {}) };
  });
  t.after(() => receiver.close());
  const dataDir = tempDataDir();
  const env = {
    PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, PLUGINS_DIR: plugins(), ACCESS_KEY, KEAP_API_URL: sandbox.url, KEAP_API_KEY: KEAP_KEY,
    LOG_LEVEL: 'warn', OUTBOUND_ALLOW_PRIVATE: '1', RECEIVER_URL: receiver.url, SECRET_FILE: join(dataDir, 'receiver-secret.txt'),
  };
  server = await startChildServer(env);
  await addAda(server);
  assert.equal((await server.exited).signal, 'SIGKILL');
  assert.deepEqual(deliveries(dataDir).map((d) => d.status), ['delivering'], 'cut off in flight');

  server = await startChildServer(env);
  t.after(() => server!.stop());
  await waitFor('the delivery to be recorded delivered', () => deliveries(dataDir).find((d) => d.status === 'delivered'));
  assert.equal(receiver.received.length, 2);
  assert.equal(receiver.received[0]!.headers['webhook-id'], receiver.received[1]!.headers['webhook-id']);
  assert.equal(receiver.received[0]!.body, receiver.received[1]!.body);
});
