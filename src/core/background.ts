import type { Logger } from './logger.js';

/** Something a feature runs in the background while the process runs: started once, stopped before the database closes. */
export interface BackgroundService {
  start(): void;
  /** Resolves once the work under way has finished or been cut short in a way the next start picks up. */
  stop(): Promise<void>;
}

/**
 * The features' background services (the outbound webhook dispatcher), run on one thread per process: the thread
 * that runs the jobs (the job thread, else the request thread when jobs run beside the requests), never on both,
 * like the daily clean-ups. Both threads run every feature's setup, so a service is registered on both and started
 * only where `startAll` is called (server.ts, job-thread-entry.ts).
 */
export class BackgroundServices {
  private readonly services = new Map<string, BackgroundService>();
  private started = false;

  constructor(private readonly logger: Logger) {}

  /** Registers a service (started at once when the services run already); returns the undo, which stops it. */
  add(name: string, service: BackgroundService): () => Promise<void> {
    if (this.services.has(name)) throw new Error(`a background service "${name}" is already registered`);
    this.services.set(name, service);
    if (this.started) this.startOne(name, service);
    return async () => {
      if (this.services.get(name) !== service) return;
      this.services.delete(name);
      if (this.started) await service.stop();
    };
  }

  /** Whether this thread runs the services. */
  get running(): boolean {
    return this.started;
  }

  startAll(): void {
    if (this.started) return;
    this.started = true;
    for (const [name, service] of this.services) this.startOne(name, service);
  }

  /** Stops every service, the last registered first; one that fails to stop is logged and the others still stop. */
  async stopAll(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    for (const [name, service] of [...this.services].reverse()) {
      try {
        await service.stop();
      } catch (err) {
        this.logger.error({ err, service: name }, 'a background service failed to stop');
      }
    }
  }

  private startOne(name: string, service: BackgroundService): void {
    try {
      service.start();
    } catch (err) {
      this.logger.error({ err, service: name }, 'a background service failed to start');
    }
  }
}
