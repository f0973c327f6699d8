import { Worker } from 'node:worker_threads';
import type { Db } from './db.js';
import type { Logger } from './logger.js';

// Runs in its own thread, with its own connection to the same file. A PASSIVE checkpoint copies committed
// pages from the WAL into the database without blocking writers or readers; its fsyncs happen here too.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.filename, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const checkpoint = () => { try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (err) { parentPort.postMessage({ error: String(err && err.message || err) }); } };
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

/**
 * Moves WAL checkpoints off the thread that answers requests. With SQLite's automatic checkpoint, the commit
 * that crosses the threshold copies the WAL back and fsyncs, stalling every request behind it for milliseconds
 * at a time; here the request thread only appends to the WAL. If the thread dies, automatic checkpoints come
 * back on so the WAL cannot grow without bound.
 */
export function startCheckpointer(db: Db, logger: Logger, intervalMs = 500): Checkpointer {
  const driver = import.meta.resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    // It only calls SQLite: the least heap V8 allows.
    resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 },
    workerData: { filename: db.name, intervalMs, driver: new URL(driver).pathname },
  });
  worker.unref();
  // Known from the start: a thread that died before stop() (it could not open the file) has no 'exit' left to wait for.
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  db.pragma('wal_autocheckpoint = 0');
  let stopping = false;
  const fallBack = (reason: string) => {
    if (stopping || !db.open) return;
    logger.error({ reason }, 'checkpoint thread stopped; SQLite checkpoints automatically again');
    db.pragma('wal_autocheckpoint = 1000');
  };
  worker.on('message', (message: { error?: string }) => {
    if (message.error) logger.warn({ error: message.error }, 'WAL checkpoint failed; will try again');
  });
  worker.on('error', (err) => fallBack(err.message));
  worker.on('exit', (code) => fallBack(`exit code ${code}`));
  return {
    async stop() {
      if (stopping) return;
      stopping = true;
      // Unref'd while idle so it never keeps the process alive; ref'd here so its exit can be awaited.
      worker.ref();
      worker.postMessage('stop');
      await exited;
    },
  };
}

/**
 * The same work on a thread that already runs off the request thread (the job thread): a PASSIVE checkpoint of its
 * connection every `intervalMs`, without a thread of its own. The request thread's connection must have its
 * automatic checkpoints turned off meanwhile (`wal_autocheckpoint = 0`), as `startCheckpointer` does.
 */
export function checkpointEvery(db: Db, logger: Logger, intervalMs = 500): { stop(): void } {
  const checkpoint = () => {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch (err) {
      logger.warn({ err }, 'WAL checkpoint failed; will try again');
    }
  };
  const timer = setInterval(checkpoint, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      checkpoint();
    },
  };
}
