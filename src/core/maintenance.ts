import type { Clock } from './clock.js';
import type { Logger } from './logger.js';

export const DAY_MS = 24 * 60 * 60 * 1000;

/** A daily clean-up; what it returns (e.g. "deleted 120 events") is logged. */
export type MaintenanceTask = (now: number) => Promise<string | void> | string | void;

/**
 * The built-ins' daily clean-ups (old events, forgotten pending passwords). They run on one thread per process:
 * the job thread when it runs, else the thread that runs the jobs (server.ts), never in both, and not as jobs, so
 * they add no rows to the event log they prune. A task that throws is logged and the others still run.
 */
export class Maintenance {
  private readonly tasks = new Map<string, MaintenanceTask>();

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  /** Registers a daily task; returns the undo. */
  add(name: string, task: MaintenanceTask): () => void {
    if (this.tasks.has(name)) throw new Error(`a maintenance task "${name}" is already registered`);
    this.tasks.set(name, task);
    return () => {
      if (this.tasks.get(name) === task) this.tasks.delete(name);
    };
  }

  /** Runs every task once, one after the other (tests call it rather than wait a day). */
  async runAll(): Promise<void> {
    for (const [name, task] of [...this.tasks]) {
      try {
        const done = await task(this.clock.now());
        if (done) this.logger.info({ task: name }, done);
      } catch (err) {
        this.logger.error({ err, task: name }, 'a daily clean-up failed; it runs again tomorrow');
      }
    }
  }

  /**
   * Runs the tasks `firstAfterMs` after start (out of the way of starting up), then every `everyMs`. `stop` waits
   * for a run under way, so the database is not closed under it.
   */
  start(options: { firstAfterMs?: number; everyMs?: number } = {}): { stop(): Promise<void> } {
    const everyMs = options.everyMs ?? DAY_MS;
    let running: Promise<void> = Promise.resolve();
    let stopped = false;
    let timer: NodeJS.Timeout;
    const schedule = (ms: number) => {
      timer = setTimeout(() => {
        running = this.runAll().finally(() => {
          if (!stopped) schedule(everyMs);
        });
      }, ms);
      timer.unref();
    };
    schedule(options.firstAfterMs ?? 60_000);
    return {
      async stop() {
        stopped = true;
        clearTimeout(timer);
        await running;
      },
    };
  }
}
