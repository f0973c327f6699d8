import type { z } from 'zod';
import { describeZodIssue } from '../errors.js';
import type { EventRecord, EventStore, NewEvent } from './store.js';

/** What a finished run reports; a handler that returns nothing is `done`. */
export interface JobOutcome {
  status: 'done' | 'skipped';
  /** What the job did, in words, shown in the event log. */
  result?: string;
  /**
   * Runs in the transaction that records the job finished, so a crash leaves both or neither: for state a re-run
   * of the job still needs until then (the welcome email's password). Synchronous database work only.
   */
  onCommit?: () => void;
}

/** One run of a job, as its handler sees it: the params already checked against the job type's schema. */
export interface Job<P> {
  id: number;
  type: string;
  params: P;
  /** The Keap contact the job is about, when it is about one: that contact's jobs run one at a time, in order. */
  contactId: number | null;
  /** 1 on the first run. */
  attempt: number;
  source: string;
  createdAt: string;
}

/**
 * A kind of work, declared once: its parameters (a zod schema, checked when it is queued and again when it runs),
 * which queued jobs count as the same (they coalesce), which contact it belongs to. Plain data, so the features
 * that queue a job import its type without importing whoever runs it.
 */
export interface JobType<P = unknown> {
  /** Shown in the event log as the event's action. */
  type: string;
  params: z.ZodType<P>;
  /** Identical pending jobs (same type and key) coalesce into the first; undefined: never. */
  dedupeKey?: (params: P) => string | undefined;
  /** The contact whose jobs must run one at a time and in order; undefined or null: none. */
  contactId?: (params: P) => number | null | undefined;
  /** The normalized event type recorded with the job (`contact.add`, `member.welcome_email`, ...). */
  eventType?: (params: P) => string | undefined;
  /** Where jobs of this type come from, unless the enqueuer says (`internal` by default). */
  source?: string;
}

/** A job type with what runs for it; registered by the feature that owns the work. */
export interface JobDefinition<P = unknown> extends JobType<P> {
  run(job: Job<P>): Promise<JobOutcome | void>;
  /**
   * Runs in the transaction that records the job ended for good without success (`failed`, or `dead` once its
   * retries are used up), for state kept only for its runs (a password waiting for delivery): nothing will run again
   * to use it, short of an admin's replay. Synchronous database work only; not called when the params are invalid.
   */
  onGiveUp?(job: Job<P>): void;
}

/** The params of a job type: `ParamsOf<typeof welcomeEmail>`. */
export type ParamsOf<T> = T extends JobType<infer P> ? P : never;

/** Only adds types: `jobType({ type, params: z.object(...) })`. */
export function jobType<P>(type: JobType<P>): JobType<P> {
  return type;
}

/** Only adds types: `defineJob({ type, params: z.object(...), run })`. */
export function defineJob<P>(definition: JobDefinition<P>): JobDefinition<P> {
  return definition;
}

export interface EnqueueOptions {
  source?: string;
  runAfter?: number;
  /** Overrides the definition's `eventType`. */
  eventType?: string | null;
  /** The plugin the job waits for (its own plugin's by default); used for durable hook deliveries. */
  plugin?: string | null;
}

export interface Enqueued {
  id: number;
  /** True when an identical pending job took it in (see `dedupeKey`). */
  coalesced: boolean;
}

/** Commits a job row soon, together with the others queued about then (a group commit); see `JobQueue.enqueueSoon`. */
export interface SoonCommitter {
  enqueueSoon(event: NewEvent): Promise<Enqueued>;
}

/** A job's params no longer fit its type's schema (a row from an older version, or written by hand). */
export class InvalidJobParamsError extends Error {
  readonly retryable = false;
  constructor(type: string, detail: string) {
    super(`job "${type}" has invalid params: ${detail}`);
    this.name = 'InvalidJobParamsError';
  }
}

interface Registered {
  definition: JobDefinition<any>;
  /** The plugin that defined it; null for built-ins. */
  plugin: string | null;
}

/**
 * The job types and the way work is queued. Enqueueing wakes the worker by itself: the wake-up is queued as a
 * microtask, so it runs after the current synchronous code, and a better-sqlite3 transaction is synchronous, so an
 * enqueue made inside a transaction wakes the worker only after that transaction has committed (or rolled back: then
 * the worker finds nothing and sleeps again). Nobody has to remember to notify.
 */
export class JobQueue {
  private readonly types = new Map<string, Registered>();
  private readonly runningPlugins = new Set<string>();
  private runningList: string[] = [];
  private readonly wakeListeners: Array<() => void> = [];
  private soon: SoonCommitter;

  constructor(readonly store: EventStore) {
    this.soon = store;
  }

  /**
   * Where `enqueueSoon` commits: this connection (the default), or the job thread, which then owns the queue's
   * writes so the request thread never waits for the database's write lock. `undefined` returns to this connection.
   */
  commitSoonThrough(committer: SoonCommitter | undefined): void {
    this.soon = committer ?? this.store;
  }

  /** Registers a job type; a second type of the same name is a programming error. Returns the undo. */
  define<P>(definition: JobDefinition<P>, plugin: string | null = null): () => void {
    if (!/^[a-z][a-z0-9_.:-]{0,79}$/.test(definition.type)) {
      throw new Error(`job type "${definition.type}" must be lowercase letters, digits, _ . : and -, starting with a letter`);
    }
    if (this.types.has(definition.type)) throw new Error(`a job type "${definition.type}" is already defined`);
    const registered: Registered = { definition, plugin };
    this.types.set(definition.type, registered);
    return () => {
      if (this.types.get(definition.type) === registered) this.types.delete(definition.type);
    };
  }

  has(type: string): boolean {
    return this.types.has(type);
  }

  /**
   * Queues a job: checks its params against the type's schema (a mismatch is a programming error and throws),
   * writes one row, and wakes the worker. Inside a transaction the row commits or rolls back with it.
   */
  enqueue<P>(type: string | JobType<P>, params: P, options: EnqueueOptions = {}): Enqueued {
    const enqueued = this.store.enqueue(this.newEvent(type, params, options));
    // After the caller's synchronous code, and so after its transaction: see the class comment.
    queueMicrotask(() => this.wake());
    return enqueued;
  }

  /**
   * Whether a job identical to this one (same type and dedupe key) waits, not yet started: one that would fold it in.
   * For work another waiting job covers (a contact's full update covers its tags).
   */
  isWaiting<P>(type: string | JobType<P>, params: P): boolean {
    const { dedupeKey } = this.newEvent(type, params, {});
    return dedupeKey !== null && this.store.hasWaiting(dedupeKey);
  }

  /**
   * The same, group-committed with the other jobs queued in this turn of the event loop (see
   * `EventStore.enqueueSoon`): for the webhook receiver, whose answer waits for the commit.
   */
  async enqueueSoon<P>(type: string | JobType<P>, params: P, options: EnqueueOptions = {}): Promise<Enqueued> {
    const enqueued = await this.soon.enqueueSoon(this.newEvent(type, params, options));
    this.wake();
    return enqueued;
  }

  /**
   * `enqueueSoon` for params a request brought as JSON text, which the caller has checked against the job type
   * already: the text is stored as it came. A REST hook delivery is 1,000 objects in 100 KB; running them through
   * the schema again, serializing them again and copying them object by object to the job thread cost more than the
   * rest of its answer. The type's schema still reads the params when the job runs.
   */
  async enqueueSoonChecked<P>(type: JobType<P>, checked: { params: P; json: string }, options: EnqueueOptions = {}): Promise<Enqueued> {
    const event = { ...this.newEvent(type, checked.params, options, 'checked'), params: checked.json };
    const enqueued = await this.soon.enqueueSoon(event);
    this.wake();
    return enqueued;
  }

  /** The job as its handler sees it; throws InvalidJobParamsError when the stored params do not fit the type. */
  jobOf<P>(definition: JobDefinition<P>, record: EventRecord): Job<P> {
    const parsed = definition.params.safeParse(record.params);
    if (!parsed.success) throw new InvalidJobParamsError(definition.type, describeZodIssue(parsed.error));
    return {
      id: record.id,
      type: record.action,
      params: parsed.data,
      contactId: record.contactId,
      attempt: record.attempts,
      source: record.source,
      createdAt: record.createdAt,
    };
  }

  definition(type: string): JobDefinition<unknown> | undefined {
    return this.types.get(type)?.definition;
  }

  /** Whether jobs of this plugin's types may run now (the plugin host says so as plugins start and stop). */
  setPluginRunning(plugin: string, running: boolean): void {
    if (running) this.runningPlugins.add(plugin);
    else this.runningPlugins.delete(plugin);
    this.runningList = [...this.runningPlugins].sort();
    if (running) this.wake();
  }

  /** The plugins whose jobs may run now; built-ins' jobs always may. */
  pluginsRunning(): readonly string[] {
    return this.runningList;
  }

  /** The worker listens here to be woken when work arrives. */
  onWake(listener: () => void): void {
    this.wakeListeners.push(listener);
  }

  /** Something runnable may have appeared (a job queued, replayed, or a plugin's jobs released). */
  wake(): void {
    for (const listener of this.wakeListeners) listener();
  }

  private newEvent<P>(type: string | JobType<P>, params: P, options: EnqueueOptions, checked?: 'checked') {
    const name = typeof type === 'string' ? type : type.type;
    const registered = this.types.get(name);
    if (!registered) throw new Error(`no job type "${name}" is defined`);
    const definition = registered.definition as JobDefinition<P>;
    let value = params;
    if (checked !== 'checked') {
      const parsed = definition.params.safeParse(params);
      if (!parsed.success) throw new InvalidJobParamsError(name, describeZodIssue(parsed.error));
      value = parsed.data;
    }
    const key = definition.dedupeKey?.(value);
    const event = {
      source: options.source ?? definition.source ?? 'internal',
      action: name,
      contactId: definition.contactId?.(value) ?? null,
      params: value as Record<string, unknown>,
      eventType: options.eventType !== undefined ? options.eventType : (definition.eventType?.(value) ?? null),
      dedupeKey: key === undefined ? null : `${name}|${key}`,
      plugin: options.plugin !== undefined ? options.plugin : registered.plugin,
      ...(options.runAfter !== undefined ? { runAfter: options.runAfter } : {}),
    };
    return event;
  }
}
