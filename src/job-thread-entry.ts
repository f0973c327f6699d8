/**
 * The job thread (see job-thread.ts): the same built-ins and plugins as the request thread, on a connection of its
 * own to the same database, running the worker and committing the posts the request thread accepts. It serves no
 * requests, leaves to the request thread what happens once per process (migrations, the configured administrator),
 * and does the WAL checkpoints (no thread of their own needed while this one runs).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from './config.js';
import { checkpointEvery } from './core/checkpointer.js';
import { createLogger } from './core/logger.js';
import type { FromJobThread, ToJobThread } from './job-thread.js';
import { buildContext } from './server.js';

const port = parentPort!;
const { config } = workerData as { config: Config };
const logger = createLogger({ level: config.logLevel }).child({ thread: 'jobs' });
const tell = (message: FromJobThread) => port.postMessage(message);

try {
  const ctx = await buildContext(config, { logger, console: () => {}, role: 'job-thread' });
  ctx.worker.start();
  // The request thread's connection leaves checkpoints to this one while this thread runs (see JobThread).
  const checkpoints = checkpointEvery(ctx.db, logger);
  port.on('message', (message: ToJobThread) => {
    switch (message.type) {
      case 'enqueue':
        commitSoon(message);
        break;
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

  // Batches that arrive while this thread is busy (running jobs) are committed together when it gets to them: one
  // commit for all of them rather than one each.
  let arrived: Array<Extract<ToJobThread, { type: 'enqueue' }>> = [];
  function commitSoon(message: Extract<ToJobThread, { type: 'enqueue' }>): void {
    arrived.push(message);
    if (arrived.length > 1) return;
    setImmediate(() => {
      const messages = arrived;
      arrived = [];
      const results = ctx.events.enqueueMany(messages.flatMap((m) => m.events)).map((r) => (r instanceof Error ? { error: r.message } : r));
      let from = 0;
      for (const m of messages) {
        tell({ type: 'enqueued', batch: m.batch, results: results.slice(from, from + m.events.length) });
        from += m.events.length;
      }
      ctx.jobs.wake();
    });
  }
} catch (err) {
  tell({ type: 'start-failed', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}
