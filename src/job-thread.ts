import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Config } from './config.js';
import type { Enqueued, SoonCommitter } from './core/jobs/queue.js';
import { WAKE_COALESCE_MS } from './core/jobs/worker.js';
import type { NewEvent } from './core/jobs/store.js';
import type { Db } from './core/db.js';
import type { Logger } from './core/logger.js';
import type { SharedMemory } from './core/shared-memory.js';

/** What the request thread tells the job thread. */
export type ToJobThread =
  | { type: 'enqueue'; batch: number; events: NewEvent[] }
  | { type: 'wake' }
  | { type: 'plugin'; name: string; enabled: boolean }
  | { type: 'stop' };

/** What the job thread starts with. */
export interface JobThreadData {
  config: Config;
  /** The request thread's shared memory blocks (SharedArrayBuffers: shared, not copied). */
  sharedMemory: Record<string, SharedArrayBuffer>;
}

/** What the job thread answers. */
export type FromJobThread =
  | { type: 'ready' }
  | { type: 'enqueued'; batch: number; results: Array<Enqueued | { error: string }> }
  | { type: 'start-failed'; message: string };

export interface JobThreadOptions {
  config: Config;
  logger: Logger;
  /** The request thread's connection: its automatic checkpoints are off while the thread runs (it checkpoints). */
  db: Db;
  /** Where posts are committed while the thread is down (this thread's own connection): nothing is refused. */
  fallback: SoonCommitter;
  /** The request thread's shared memory, handed to the thread (Keap's one rate limit for the process). */
  sharedMemory: SharedMemory;
  /** First pause before starting a thread that stopped unexpectedly again; it doubles up to a minute. */
  restartDelayMs?: number;
}

interface Pending {
  events: NewEvent[];
  settles: Array<{ resolve: (r: Enqueued) => void; reject: (err: unknown) => void }>;
}

const YOUNG_GENERATION_MB = 4;
const MAX_RESTART_DELAY_MS = 60_000;
/**
 * The entry runs from dist (production) and from src (tests, through tsx): a thread does not inherit tsx's loader,
 * so from src it registers tsx for itself before importing the entry.
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const ENTRY = new URL(`./job-thread-entry${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url);
const THREAD_SOURCE = FROM_SOURCE
  ? { code: `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(ENTRY.href)}); })`, eval: true }
  : { code: ENTRY, eval: false };

/**
 * The jobs run in a thread of their own, a second instance of the app on the same database file, as several
 * instances will share one database later: the thread owns the worker, its database connection and the queue's
 * writes. Posts the request thread accepts are committed there too, grouped as they arrive (`enqueueSoon`), so the
 * request thread never waits for SQLite's write lock and keeps a core for answering. A post is still answered only
 * after its row has committed. Should the thread stop, posts are committed here until it is back.
 */
export class JobThread implements SoonCommitter {
  private worker: Worker | undefined;
  /** A thread started and not ready yet. */
  private starting: Worker | undefined;
  private stopping = false;
  private nextBatch = 1;
  private collecting: Pending | undefined;
  private readonly sent = new Map<number, Pending>();
  private wakeTimer: NodeJS.Timeout | undefined;
  private restartDelay: number;
  private restartTimer: NodeJS.Timeout | undefined;

  private constructor(private readonly options: JobThreadOptions) {
    this.restartDelay = options.restartDelayMs ?? 1_000;
  }

  /** Starts the thread and resolves once its worker runs; rejects when it cannot start. */
  static async start(options: JobThreadOptions): Promise<JobThread> {
    const thread = new JobThread(options);
    await thread.spawn();
    return thread;
  }

  enqueueSoon(event: NewEvent): Promise<Enqueued> {
    if (!this.worker) return this.options.fallback.enqueueSoon(event);
    return new Promise((resolve, reject) => {
      if (!this.collecting) {
        this.collecting = { events: [], settles: [] };
        // Everything accepted in this turn of the event loop goes over as one message and one commit.
        setImmediate(() => this.send());
      }
      this.collecting.events.push(event);
      this.collecting.settles.push({ resolve, reject });
    });
  }

  /** Something runnable may have appeared here (a replay, a job queued by an admin page): the thread looks now. */
  wake(): void {
    if (this.wakeTimer || !this.worker) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.post({ type: 'wake' });
    }, WAKE_COALESCE_MS);
  }

  /** A plugin was enabled or disabled here; the thread's plugin host follows. */
  pluginChanged(name: string, enabled: boolean): void {
    this.post({ type: 'plugin', name, enabled });
  }

  /** Stops the thread after its running jobs finish (what is cut short runs again at the next start). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.wakeTimer);
    const worker = this.worker;
    if (!worker) {
      // One starting again after a crash has not taken work yet: it can simply end.
      await this.starting?.terminate();
      return;
    }
    const exited = once(worker, 'exit');
    worker.postMessage({ type: 'stop' } satisfies ToJobThread);
    await exited;
  }

  private spawn(): Promise<void> {
    const { config, logger } = this.options;
    // A small young generation: V8 sizes it for throughput (up to 3 x 16 MB per thread), while the work here comes in
    // small, short-lived objects; collecting them more often costs little and keeps the process's memory down.
    const workerData: JobThreadData = { config, sharedMemory: this.options.sharedMemory.toHandOver() };
    const worker = new Worker(THREAD_SOURCE.code, { eval: THREAD_SOURCE.eval, workerData, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    const threadId = worker.threadId;
    this.starting = worker;
    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromJobThread) => {
        if (message.type === 'ready') {
          ready = true;
          this.starting = undefined;
          this.worker = worker;
          this.options.db.pragma('wal_autocheckpoint = 0');
          this.restartDelay = this.options.restartDelayMs ?? 1_000;
          resolve();
        } else if (message.type === 'enqueued') {
          this.settle(message.batch, message.results);
        } else if (message.type === 'start-failed') {
          reject(new Error(`the job thread could not start: ${message.message}`));
        }
      });
      worker.on('error', (err) => {
        logger.error({ err }, 'the job thread failed');
        if (!ready) reject(err);
      });
      worker.on('exit', (code) => {
        if (this.worker === worker) this.worker = undefined;
        if (this.starting === worker) this.starting = undefined;
        // Terminated from outside, it may have ended inside a shared lock: this thread must not wait for it forever.
        this.options.sharedMemory.releaseLocksOf(threadId);
        // Nobody checkpoints until a thread is back: SQLite's automatic checkpoints keep the WAL from growing.
        if (this.options.db.open) this.options.db.pragma('wal_autocheckpoint = 1000');
        this.recommitSent();
        if (!ready) return reject(new Error(`the job thread exited with code ${code} before it was ready`));
        if (this.stopping) return;
        logger.error({ code, restartInMs: this.restartDelay }, 'the job thread stopped; starting it again');
        this.restartLater();
      });
    });
  }

  /** Starts a thread again after a pause that doubles with each failed try (up to a minute): jobs wait, none is lost. */
  private restartLater(): void {
    this.restartTimer = setTimeout(() => {
      this.spawn().catch((err: unknown) => {
        if (this.stopping) return;
        this.options.logger.error({ err, restartInMs: this.restartDelay }, 'the job thread could not start again; trying later');
        this.restartLater();
      });
    }, this.restartDelay);
    this.restartDelay = Math.min(this.restartDelay * 2, MAX_RESTART_DELAY_MS);
  }

  private send(): void {
    const pending = this.collecting!;
    this.collecting = undefined;
    if (!this.worker) return this.commitHere(pending);
    const batch = this.nextBatch++;
    this.sent.set(batch, pending);
    this.post({ type: 'enqueue', batch, events: pending.events });
  }

  private settle(batch: number, results: Array<Enqueued | { error: string }>): void {
    const pending = this.sent.get(batch);
    if (!pending) return;
    this.sent.delete(batch);
    results.forEach((result, i) => {
      const { resolve, reject } = pending.settles[i]!;
      if ('error' in result) reject(new Error(result.error));
      else resolve(result);
    });
  }

  /**
   * The thread stopped with posts sent and not answered. They may have committed there just before it stopped;
   * committing them here as well can only queue a job twice (jobs run at least once anyway), never lose one.
   */
  private recommitSent(): void {
    const lost = [...this.sent.values()];
    this.sent.clear();
    for (const pending of lost) this.commitHere(pending);
  }

  private commitHere(pending: Pending): void {
    pending.events.forEach((event, i) => {
      const { resolve, reject } = pending.settles[i]!;
      this.options.fallback.enqueueSoon(event).then(resolve, reject);
    });
  }

  private post(message: ToJobThread): void {
    this.worker?.postMessage(message);
  }
}
