/**
 * The process's shared memory (core/shared-memory.ts) across real threads: a block made here is the same bytes in a
 * worker it is handed to, and a lock a terminated thread held is let go, so this thread does not wait forever.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { SharedMemory } from '../src/core/shared-memory.js';

const MODULE = new URL('../src/core/shared-memory.ts', import.meta.url).href;

/** A thread that takes the block's lock, writes 42 after the lock, says so, and then never lets go (spins inside). */
const HOLD_FOREVER = `
import('tsx/esm/api').then(async ({ register }) => {
  register();
  const { parentPort, workerData } = await import('node:worker_threads');
  const { SharedMemory } = await import(${JSON.stringify(MODULE)});
  const block = new SharedMemory(workerData).block('test', 8);
  block.lock.hold(() => {
    new Int32Array(block.buffer, 8, 1)[0] = 42;
    parentPort.postMessage('holding');
    for (;;) {}
  });
});`;

test('a block handed to a thread is shared with it, and a lock held by a thread that was terminated is let go', async () => {
  const memory = new SharedMemory();
  const block = memory.block('test', 8);
  const worker = new Worker(HOLD_FOREVER, { eval: true, workerData: memory.toHandOver() });
  const threadId = worker.threadId;
  const [message] = (await once(worker, 'message')) as [string];
  assert.equal(message, 'holding');
  assert.equal(new Int32Array(block.buffer, 8, 1)[0], 42, 'what the thread wrote is here');
  const lockWord = new Int32Array(block.buffer, 0, 1);
  assert.equal(Atomics.load(lockWord, 0), threadId + 1, 'the lock word names its holder');

  await worker.terminate();
  assert.equal(Atomics.load(lockWord, 0), threadId + 1, 'terminated inside the lock, it never let go');
  memory.releaseLocksOf(threadId);
  assert.equal(Atomics.load(lockWord, 0), 0);
  assert.equal(block.lock.hold(() => 'taken'), 'taken', 'this thread takes the lock the dead one held');
});

test('a thread handed blocks refuses one it was not handed, and a block asked for again must be the same size', () => {
  const memory = new SharedMemory();
  memory.block('made', 16);
  assert.throws(() => memory.block('made', 24), /holds 16 bytes, not 24/);
  const inThread = new SharedMemory(memory.toHandOver());
  assert.equal(inThread.block('made', 16).buffer, memory.block('made', 16).buffer);
  assert.throws(() => inThread.block('other', 8), /was not made by the thread that started this one/);
});
