/**
 * The job thread (see job-thread.ts): the same built-ins and plugins as the request thread, on a connection of its
 * own to the same database, running the worker and committing the posts the request thread accepts. It serves no
 * requests, leaves to the request thread what happens once per process (migrations, the configured administrator),
 * and does the WAL checkpoints (no thread of their own needed while this one runs) and the daily clean-ups.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkpointEvery } from './core/checkpointer.js';
import { createLogger } from './core/logger.js';
import { SharedMemory } from './core/shared-memory.js';
import type { FromJobThread, JobThreadData, ToJobThread } from './job-thread.js';
import { buildContext } from './server.js';

const port = parentPort!;
const { config, sharedMemory } = workerData as JobThreadData;
const logger = createLogger({ level: config.logLevel }).child({ thread: 'jobs' });
const tell = (message: FromJobThread) => port.postMessage(message);

try {
  const ctx = await buildContext(config, { logger, console: () => {}, role: 'job-thread', sharedMemory: new SharedMemory(sharedMemory) });
  ctx.worker.start();
  // The request thread's connection leaves checkpoints to this one while this thread runs (see JobThread).
  const checkpoints = checkpointEvery(ctx.db, logger);
  // The daily clean-ups run here, on the thread that writes the queue, in small batches between its other work.
  const maintenance = ctx.maintenance.start();
  ctx.background.startAll();
  port.on('message', (message: ToJobThread) => {
    switch (message.type) {
      case 'enqueue': {
        // At once, ahead of any job: the posts' answers wait for this commit.
        const results = ctx.events.enqueueMany(message.events).map((r) => (r instanceof Error ? { error: r.message } : r));
        tell({ type: 'enqueued', batch: message.batch, results });
        ctx.jobs.wake();
        break;
      }
      case 'wake':
        ctx.jobs.wake();
        break;
      case 'plugin': {
        const change = message.enabled ? ctx.plugins.enable(message.name) : ctx.plugins.disable(message.name);
        change.catch((err: unknown) => logger.error({ err, plugin: message.name }, 'the job thread could not follow a plugin change'));
        break;
      }
      case 'stop':
        void (async () => {
          await ctx.worker.stop();
          await ctx.background.stopAll();
          await maintenance.stop();
          await ctx.plugins.stopAll();
          ctx.mailer.close();
          checkpoints.stop();
          ctx.db.close();
          // Ends this thread only; timers and sockets a plugin left open must not keep it alive.
          process.exit(0);
        })();
        break;
    }
  });
  tell({ type: 'ready' });
} catch (err) {
  tell({ type: 'start-failed', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}
