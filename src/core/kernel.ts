import { join } from 'node:path';
import type { Config } from '../config.js';
import { BackgroundServices } from './background.js';
import { systemClock, type Clock } from './clock.js';
import { securePrivateDir } from './data-dir.js';
import { openDatabase, type Db } from './db.js';
import { HookRegistry } from './hooks.js';
import { JobQueue } from './jobs/queue.js';
import { EventStore } from './jobs/store.js';
import { DEFAULT_RETRY_POLICY, QueueWorker, type RetryPolicy } from './jobs/worker.js';
import { createLogger, type Logger } from './logger.js';
import { createMailer, type Mailer } from './mail.js';
import { Maintenance } from './maintenance.js';
import { Outbox, Transactions } from './outbox.js';
import type { SecretBox } from './secret-box.js';
import { SettingsStore } from './settings.js';
import { SharedMemory } from './shared-memory.js';
import { SiteIdentity } from './site-identity.js';
import { openSiteKey } from './site-key.js';
import { ViewRenderer } from './views.js';

/**
 * What every built-in feature stands on: settings, the database, time, logs, hooks and their outbox, views, mail
 * and the job queue. Built once at start (server.ts), handed to built-in plugins, never global.
 */
export interface Kernel {
  config: Config;
  /**
   * The site's name and its emails' sender, read from the database each time (an admin edits them): ask
   * `identity.siteName()` when rendering, never keep the answer.
   */
  identity: SiteIdentity;
  /**
   * Shows a line meant for the operator's eyes once (a generated access key): the terminal, never the log. Held
   * until the server listens (`flushAnnouncements`), so a start that fails (the port taken) shows nothing it would
   * then never show again; `onShown` runs once it was printed (to stop showing it on later starts).
   */
  announce: (line: string, onShown?: () => void) => void;
  /** Prints what `announce` held back; from then on lines are printed at once. Called once the server listens. */
  flushAnnouncements: () => void;
  db: Db;
  logger: Logger;
  clock: Clock;
  hooks: HookRegistry;
  views: ViewRenderer;
  settings: SettingsStore;
  /** Encrypts the secrets a feature stores (tokens, keys, pending passwords) with the site key; see core/secret-box.ts. */
  secretBox: SecretBox;
  mailer: Mailer;
  /** The events table: the event log and the queue's rows. */
  events: EventStore;
  /** Job types and enqueueing. */
  jobs: JobQueue;
  worker: QueueWorker;
  /** Daily clean-ups, run on the thread that runs the jobs. */
  maintenance: Maintenance;
  /** Features' long-running background work (the outbound webhook dispatcher), run on the thread that runs the jobs. */
  background: BackgroundServices;
  outbox: Outbox;
  transactions: Transactions;
  /**
   * State the request thread and the job thread hold as one (Keap's rate limit): blocks a built-in makes here as it
   * starts in the request thread are the same bytes the job thread's instance finds by name.
   */
  sharedMemory: SharedMemory;
}

export interface KernelOptions {
  logger?: Logger;
  /** Where `announce` writes; standard output by default. */
  console?: (line: string) => void;
  clock?: Clock;
  /** Worker tuning, for tests and benchmarks. */
  worker?: { concurrency?: number; retry?: RetryPolicy; pollMs?: number };
  /** The request thread's shared memory, in the job thread (its blocks came in the thread's workerData). */
  sharedMemory?: SharedMemory;
}

/** Opens the database (applying migrations) and builds the kernel; nothing runs yet. */
export function createKernel(config: Config, options: KernelOptions = {}): Kernel {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const clock = options.clock ?? systemClock;
  const tightened = securePrivateDir(config.dataDir);
  if (tightened.length > 0) {
    logger.warn({ files: tightened.slice(0, 20), count: tightened.length }, 'made files in the data folder readable by their owner only (they were open to other users)');
  }
  const { db, applied } = openDatabase({ filename: config.databaseFile });
  for (const m of applied) logger.info({ version: m.version, name: m.name }, 'database migration applied');
  const settings = new SettingsStore(db);
  let secretBox: SecretBox;
  try {
    secretBox = openSiteKey(config, settings, logger);
  } catch (err) {
    db.close();
    throw err;
  }
  const identity = new SiteIdentity(settings, { siteName: config.siteName, sender: config.mail.sender });
  const hooks = new HookRegistry(logger);
  const events = new EventStore(db);
  const jobs = new JobQueue(events);
  const worker = new QueueWorker({
    store: events,
    queue: jobs,
    logger,
    clock,
    concurrency: config.jobs.concurrency,
    retry: { ...DEFAULT_RETRY_POLICY, maxAttempts: config.jobs.maxAttempts, baseDelayMs: config.jobs.retryBaseMs },
    ...options.worker,
  });
  const outbox = new Outbox(db, hooks, jobs);
  return {
    config,
    identity,
    ...heldAnnouncements(options.console ?? ((line: string) => process.stdout.write(`${line}\n`))),
    db,
    logger,
    clock,
    hooks,
    views: new ViewRenderer(),
    settings,
    secretBox,
    mailer: createMailer({ smtpUrl: config.mail.smtpUrl, from: () => identity.sender(), outboxDir: join(config.dataDir, 'outbox'), logger }),
    events,
    jobs,
    worker,
    maintenance: new Maintenance(logger, clock),
    background: new BackgroundServices(logger),
    outbox,
    transactions: new Transactions(db, hooks, outbox),
    sharedMemory: options.sharedMemory ?? new SharedMemory(),
  };
}

/** `announce` and `flushAnnouncements`: lines held until the first flush, printed at once after it. */
function heldAnnouncements(print: (line: string) => void): Pick<Kernel, 'announce' | 'flushAnnouncements'> {
  let held: Array<{ line: string; onShown: (() => void) | undefined }> | undefined = [];
  return {
    announce(line, onShown) {
      if (held) return void held.push({ line, onShown });
      print(line);
      onShown?.();
    },
    flushAnnouncements() {
      const lines = held ?? [];
      held = undefined;
      for (const { line, onShown } of lines) {
        print(line);
        onShown?.();
      }
    },
  };
}
