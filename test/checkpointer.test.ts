import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import { startCheckpointer } from '../src/core/checkpointer.js';
import { openDatabase } from '../src/core/db.js';
import { captureLogs } from './support/logs.js';
import { tempDataDir } from './support/temp.js';

test('stopping a checkpoint thread that already died returns at once instead of waiting forever', async () => {
  const dir = tempDataDir();
  const { db } = openDatabase({ filename: join(dir, 'memberhook.db') });
  // The thread opens the file by name: with the folder gone (as when a test's temporary folder is removed before
  // the server closes) it dies at start. The server's close must still finish.
  rmSync(dir, { recursive: true, force: true });
  const logs = captureLogs();
  const checkpointer = startCheckpointer(db, logs.logger, 50);
  for (let i = 0; i < 200 && !logs.text().includes('exit code'); i++) await delay(10);
  assert.match(logs.text(), /"reason":"exit code 1"/, 'the thread died at start');
  const stopped = await Promise.race([checkpointer.stop().then(() => 'stopped'), delay(5_000).then(() => 'still waiting')]);
  assert.equal(stopped, 'stopped');
  db.close();
});

test('a running checkpoint thread stops when asked', async () => {
  const { db } = openDatabase({ filename: join(tempDataDir(), 'memberhook.db') });
  const checkpointer = startCheckpointer(db, captureLogs().logger, 50);
  await delay(100);
  const stopped = await Promise.race([checkpointer.stop().then(() => 'stopped'), delay(5_000).then(() => 'still waiting')]);
  assert.equal(stopped, 'stopped');
  db.close();
});
