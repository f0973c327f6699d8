import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { failureOf } from './failures.js';
import type { Job, JobOutcome, JobQueue } from './queue.js';
import type { EventRecord, EventStore } from './store.js';

export interface RetryPolicy {
  /** Runs before a retryable failure becomes `dead`. */
  maxAttempts: number;
  /** Delay before the 2nd run; each later one is `factor` times longer, up to maxDelayMs, with ±20 % jitter. */
  baseDelayMs: number;
  factor: number;
  maxDelayMs: number;
  /** Throttled retries do not use attempts, but a job throttled this often is given up as dead. */
  maxThrottled: number;
}

/** Wake-ups within this many milliseconds are folded into one (a burst of posts costs one look at the queue). */
export const WAKE_COALESCE_MS = 5;

/**
 * Starting claimed jobs runs each one's synchronous part (most of a quick job) in the same turn of the event loop;
 * past this many milliseconds the loop lets the event loop turn before starting the next. On the job thread the
 * posts' commits arrive as messages between turns, and an acknowledgement waits for its commit: a claim of 64 jobs
 * that each render and write something must not hold those back for the whole batch.
 */
export const START_SLICE_MS = 2;

/** About 8 runs over a day: 1 min, 3.2 min, 10 min, 33 min, 1.7 h, 5.6 h, then 12 h (≈ 20 h in all). */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 60_000, factor: 3.2, maxDelayMs: 12 * 3_600_000, maxThrottled: 200 };

export interface QueueWorkerOptions {
  store: EventStore;
  /** The job types (what runs for each) and which plugins' jobs may run now. */
  queue: JobQueue;
  logger: Logger;
  clock: Clock;
  /** Jobs run side by side (for different contacts); Keap's rate limiter is the real bound. */
  concurrency?: number;
  leaseMs?: number;
  retry?: RetryPolicy;
  /** Longest idle sleep between looks at the queue when nothing wakes the worker. */
  pollMs?: number;
  random?: () => number;
}

export function retryDelayMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const raw = Math.min(policy.baseDelayMs * policy.factor ** Math.max(0, attempt - 1), policy.maxDelayMs);
  return Math.round(raw * (0.8 + 0.4 * random()));
}

/**
 * Runs queued jobs. Each loop claims one job at a time (the store keeps one contact's jobs in order and one
 * at a time), keeps the job's lease alive while it runs, and records the outcome: done/skipped, a retry with
 * back-off, failed (permanent) or dead (retries used up).
 */
export class QueueWorker {
  readonly id = `worker-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly opts: Required<Omit<QueueWorkerOptions, 'retry'>> & { retry: RetryPolicy };
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeSignal: Promise<void> = Promise.resolve();
  private active = 0;
  /** The jobs running now, whose leases the heartbeat renews. */
  private readonly leased = new Set<number>();
  private heartbeat: NodeJS.Timeout | undefined;
  private wakePending = false;
  private readonly inFlight = new Set<Promise<void>>();
  private idleWaiters: Array<() => void> = [];
  /** Outcomes waiting for the end of this turn of the event loop, to be recorded in one commit. */
  private finishing: Array<{ outcome: Parameters<EventStore['finishMany']>[0][number]; settle: (err?: unknown) => void }> = [];

  constructor(options: QueueWorkerOptions) {
    this.opts = {
      concurrency: 4,
      leaseMs: 60_000,
      pollMs: 1_000,
      random: Math.random,
      ...options,
      retry: options.retry ?? DEFAULT_RETRY_POLICY,
    };
    this.resetWakeSignal();
    options.queue.onWake(() => this.notify());
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const recovered = this.opts.store.requeueAbandoned(this.opts.clock.now(), true);
    if (recovered > 0) this.opts.logger.warn({ jobs: recovered }, 'jobs left running by a stopped process were queued again');
    this.startHeartbeat();
    this.loopDone = this.loop();
  }

  /** Stops claiming and waits for running jobs to finish (they are requeued at next start if cut short). */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.wake?.();
    await this.loopDone;
    await Promise.all(this.inFlight);
    clearInterval(this.heartbeat);
  }

  /**
   * Something was enqueued: wake idle loops soon instead of at their next poll. Wake-ups within a few
   * milliseconds are folded into one, so a burst of posts costs the worker one look at the queue, not one each.
   */
  notify(): void {
    if (this.wakeTimer || !this.running) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wake?.();
    }, WAKE_COALESCE_MS);
  }

  /** Resolves once no job is runnable now and none is running (tests and benchmarks wait on it). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Runs a job this worker has claimed (see `EventStore.claimNext`) and records its outcome: done or skipped, a
   * retry, failed or dead. The loops use it; so does a benchmark that runs jobs inside the request.
   */
  async runClaimed(job: EventRecord): Promise<void> {
    this.active++;
    try {
      await this.run(job);
    } finally {
      this.active--;
    }
  }

  private isIdle(): boolean {
    const next = this.opts.store.nextRunAt(this.opts.queue.pluginsRunning());
    return this.active === 0 && (next === null || next > this.opts.clock.now());
  }

  private resetWakeSignal(): void {
    this.wakeSignal = new Promise<void>((resolve) => {
      this.wake = () => {
        this.resetWakeSignal();
        resolve();
      };
    });
  }

  /**
   * One loop claims, as many jobs at a time as there are free places (`concurrency`), in one transaction, and
   * starts them side by side; a job that ends frees its place and wakes the loop at once.
   */
  private async loop(): Promise<void> {
    let lastRecovery = this.opts.clock.now();
    while (this.running) {
      try {
        const free = this.opts.concurrency - this.active;
        if (free <= 0) {
          await this.wakeSignal;
          continue;
        }
        const now = this.opts.clock.now();
        if (now - lastRecovery > this.opts.leaseMs) {
          lastRecovery = now;
          this.opts.store.requeueAbandoned(now, false);
        }
        const jobs = this.opts.store.claimBatch(this.id, now, this.opts.leaseMs, this.opts.queue.pluginsRunning(), free);
        if (jobs.length === 0) {
          this.checkIdle();
          await this.sleepUntilWork();
          continue;
        }
        let sliceStart = performance.now();
        for (const job of jobs) {
          if (performance.now() - sliceStart > START_SLICE_MS) {
            await new Promise<void>((resolve) => setImmediate(resolve));
            sliceStart = performance.now();
          }
          const running = this.runClaimed(job)
            .catch((err: unknown) => {
              // Its outcome could not be recorded (the database refused): the lease runs out and it runs again.
              this.opts.logger.error({ err, event: job.id, action: job.action }, 'could not record a job outcome');
            })
            .finally(() => {
              this.inFlight.delete(running);
              // A free place, and perhaps the contact's next job is runnable now.
              this.wakeAfterThisTurn();
            });
          this.inFlight.add(running);
        }
      } catch (err) {
        // The queue's own bookkeeping failed (disk full, database locked too long). The job stays in the table
        // and its lease runs out; this loop must survive to pick it up again rather than take the process down.
        this.opts.logger.error({ err }, 'worker loop error; pausing before the next look at the queue');
        await new Promise((resolve) => setTimeout(resolve, this.opts.pollMs));
      }
    }
  }

  /**
   * Wakes the loop once the jobs ending in this turn of the event loop have all ended (their outcomes are recorded in
   * one commit, so they end together): one claim then fills every place they freed, instead of a claim for each.
   */
  private wakeAfterThisTurn(): void {
    if (this.wakePending) return;
    this.wakePending = true;
    setImmediate(() => {
      this.wakePending = false;
      this.wake?.();
    });
  }

  private checkIdle(): void {
    if (this.idleWaiters.length > 0 && this.isIdle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  private async sleepUntilWork(): Promise<void> {
    const next = this.opts.store.nextRunAt(this.opts.queue.pluginsRunning());
    const wait = next === null ? this.opts.pollMs : Math.min(this.opts.pollMs, Math.max(5, next - this.opts.clock.now()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.wakeSignal, new Promise<void>((resolve) => (timer = setTimeout(resolve, wait)))]);
    clearTimeout(timer);
  }

  private async run(job: EventRecord): Promise<void> {
    const { store, queue, logger, clock } = this.opts;
    const definition = queue.definition(job.action);
    if (!definition) {
      store.finish(job, 'failed', { error: `no job type "${job.action}" is defined (was a plugin removed?)` });
      return;
    }
    this.leased.add(job.id);
    const started = clock.now();
    let outcome: JobOutcome;
    let parsed: Job<unknown> | undefined;
    // Only a job whose params parsed has anything to give up (its definition saw it).
    const giveUp = () => {
      if (parsed && definition.onGiveUp) definition.onGiveUp(parsed);
    };
    try {
      parsed = queue.jobOf(definition, job);
      outcome = (await definition.run(parsed)) ?? { status: 'done' };
    } catch (err) {
      this.leased.delete(job.id);
      this.recordFailure(job, err, giveUp);
      return;
    }
    try {
      // What must change with the record (onCommit) gets its own commit, at once; the rest share one.
      if (outcome.onCommit) store.finish(job, outcome.status, { result: outcome.result ?? null }, outcome.onCommit);
      else await this.finishSoon({ job, status: outcome.status, result: outcome.result ?? null });
      // A skip (a post about a contact who is not a member) is routine; the event log keeps its reason.
      const level = outcome.status === 'skipped' ? 'debug' : 'info';
      logger[level]({ event: job.id, action: job.action, contact: job.contactId, status: outcome.status, ms: clock.now() - started }, 'job finished');
    } catch (err) {
      this.recordFailure(job, err, giveUp);
    } finally {
      this.leased.delete(job.id);
    }
  }

  /** One timer keeps every running job's lease alive (a timer per job would cost more than a quick job itself). */
  private startHeartbeat(): void {
    const { store, clock, leaseMs } = this.opts;
    this.heartbeat = setInterval(() => {
      for (const id of this.leased) store.renewLease(id, this.id, clock.now() + leaseMs);
    }, Math.max(1_000, leaseMs / 3));
    this.heartbeat.unref();
  }

  /** Records an outcome together with the others that end in this turn of the event loop, in one commit. */
  private finishSoon(outcome: Parameters<EventStore['finishMany']>[0][number]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.finishing.push({ outcome, settle: (err) => (err === undefined ? resolve() : reject(err)) });
      if (this.finishing.length === 1) setImmediate(() => this.flushFinishing());
    });
  }

  private flushFinishing(): void {
    const batch = this.finishing;
    this.finishing = [];
    try {
      this.opts.store.finishMany(batch.map((item) => item.outcome));
    } catch (err) {
      for (const item of batch) item.settle(err);
      return;
    }
    for (const item of batch) item.settle();
  }

  /** `giveUp` runs in the transaction that records the job failed or dead (see JobDefinition.onGiveUp). */
  private recordFailure(job: EventRecord, err: unknown, giveUp: () => void): void {
    const { store, logger, clock, retry } = this.opts;
    const failure = failureOf(err);
    const base = { event: job.id, action: job.action, contact: job.contactId, attempt: job.attempts, error: failure.message };
    if (failure.kind === 'fail') {
      store.finish(job, 'failed', { error: failure.message }, giveUp);
      logger.warn(base, 'job failed');
      return;
    }
    if (failure.throttled && job.throttled < retry.maxThrottled) {
      const delay = failure.delayMs ?? 1_000;
      store.retry(job, clock.now() + delay, failure.message, true);
      logger.info({ ...base, retryInMs: delay }, 'job throttled by Keap, retrying');
      return;
    }
    if (job.attempts >= retry.maxAttempts || failure.throttled) {
      store.finish(job, 'dead', { error: `gave up after ${job.attempts} attempts: ${failure.message}` }, giveUp);
      logger.error(base, 'job dead: retries used up');
      return;
    }
    const delay = Math.max(failure.delayMs ?? 0, retryDelayMs(retry, job.attempts, this.opts.random));
    store.retry(job, clock.now() + delay, failure.message, false);
    logger.warn({ ...base, retryInMs: delay }, 'job failed, retrying');
  }
}
