import { AsyncLocalStorage } from 'node:async_hooks';
import { z } from 'zod';
import type { Db } from './db.js';
import { isoNow } from './db.js';
import type { ActionMap, HookRegistry } from './hooks.js';
import { defineJob, type JobQueue } from './jobs/queue.js';

/** The job that hands one recorded action to one durable handler. */
export const DELIVER_HOOK_JOB = 'hook.deliver';

const deliveryParams = z.object({ outbox_id: z.number().int().positive(), handler: z.string().min(1).max(200) });

/** How long a delivered action stays in the outbox (for the event log and for deliveries still waiting). */
const KEEP_DELIVERED_MS = 14 * 24 * 60 * 60 * 1000;

/** The recorded action a durable handler is running for (see `Outbox.recordedAction`). */
export interface RecordedAction {
  /** The outbox row: the same on every run of the handler for this action. */
  id: number;
  /** When the action was recorded, in the transaction that caused it: its commit time, give or take the commit. */
  recordedAt: string;
}

/**
 * The transactional outbox. Code that changes state records the actions it causes inside the same transaction
 * (`record`); for each durable handler of the action, one row here and one delivery job commit with the change, or
 * neither does. A crash right after the commit loses nothing: the worker delivers after the restart, retrying a
 * handler that fails like any job. Nothing is written while an action has no durable handler.
 */
export class Outbox {
  private readonly insertStmt;
  private readonly getStmt;
  private readonly purgeStmt;
  private readonly delivering = new AsyncLocalStorage<RecordedAction>();

  constructor(
    private readonly db: Db,
    private readonly hooks: HookRegistry,
    private readonly jobs: JobQueue,
  ) {
    this.insertStmt = db.prepare<[string, string, string], { id: number }>('INSERT INTO outbox (name, payload, created_at) VALUES (?, ?, ?) RETURNING id');
    this.getStmt = db.prepare<[number], { name: string; payload: string; created_at: string }>('SELECT name, payload, created_at FROM outbox WHERE id = ?');
    this.purgeStmt = db.prepare(
      `DELETE FROM outbox WHERE created_at < ? AND NOT EXISTS (
         SELECT 1 FROM events e WHERE e.action = '${DELIVER_HOOK_JOB}' AND e.status IN ('queued', 'processing')
           AND json_extract(e.params, '$.outbox_id') = outbox.id)`,
    );
    jobs.define(
      defineJob({
        type: DELIVER_HOOK_JOB,
        params: deliveryParams,
        source: 'outbox',
        run: (job) => this.deliver(job.params),
      }),
    );
  }

  /**
   * Records `name` for its durable handlers; call it inside the transaction that causes the action (a record
   * outside one could commit without the change, or the change without it).
   */
  record<N extends keyof ActionMap>(name: N, args: ActionMap[N]): void {
    const handlers = this.hooks.durableHandlers(name).filter((h) => h.wanted?.(...(args as unknown[])) ?? true);
    if (handlers.length === 0) return;
    if (!this.db.inTransaction) throw new Error(`the outbox records "${String(name)}" only inside the transaction that causes it`);
    const { id } = this.insertStmt.get(String(name), JSON.stringify(args), isoNow())!;
    for (const handler of handlers) {
      this.jobs.enqueue(DELIVER_HOOK_JOB, { outbox_id: id, handler: handler.key }, { eventType: String(name), plugin: handler.plugin });
    }
  }

  /**
   * Inside a durable handler: the recorded action it runs for, the same on every run (a retry, a run after a crash),
   * so a handler can make its work idempotent (an event id) and knows when the change committed. Undefined elsewhere.
   */
  recordedAction(): RecordedAction | undefined {
    return this.delivering.getStore();
  }

  /** Drops delivered actions older than two weeks. Returns how many. */
  purge(now: number): number {
    return this.purgeStmt.run(isoNow(now - KEEP_DELIVERED_MS)).changes;
  }

  private async deliver(params: z.infer<typeof deliveryParams>) {
    const row = this.getStmt.get(params.outbox_id);
    if (!row) return { status: 'skipped' as const, result: `outbox entry ${params.outbox_id} is gone` };
    const handler = this.hooks.durableHandlers(row.name as keyof ActionMap).find((h) => h.key === params.handler);
    // The plugin runs (its jobs are claimed only then) but no longer registers this handler: nothing to deliver to.
    if (!handler) return { status: 'skipped' as const, result: `no durable handler ${params.handler} is registered now` };
    await this.delivering.run({ id: params.outbox_id, recordedAt: row.created_at }, () => handler.fn(...(JSON.parse(row.payload) as unknown[])));
    return { status: 'done' as const, result: `${row.name} delivered to ${params.handler}` };
  }
}

/** What code inside `Transactions.run` may do besides its own writes. */
export interface TransactionScope {
  /**
   * The action happens with this transaction: durable handlers get it through the outbox (recorded now), the
   * others run in-process right after the commit, in the order emitted. Nothing runs if the transaction rolls back.
   */
  emit<N extends keyof ActionMap>(name: N, ...args: ActionMap[N]): void;
}

/** Transactions whose actions reach hook handlers exactly when they commit. */
export class Transactions {
  constructor(
    private readonly db: Db,
    private readonly hooks: HookRegistry,
    private readonly outbox: Outbox,
  ) {}

  /** Runs `work` in one IMMEDIATE transaction, then fires what it emitted to the in-process handlers. */
  async run<T>(work: (tx: TransactionScope) => T): Promise<T> {
    if (this.db.inTransaction) throw new Error('Transactions.run cannot be nested in another transaction: its actions would fire before the outer commit');
    const emitted: Array<[keyof ActionMap, unknown[]]> = [];
    const result = this.db
      .transaction(() =>
        work({
          emit: (name, ...args) => {
            this.outbox.record(name, args);
            emitted.push([name, args]);
          },
        }),
      )
      .immediate();
    for (const [name, args] of emitted) {
      if (this.hooks.hasAction(name)) await (this.hooks.doAction as (n: keyof ActionMap, ...a: unknown[]) => Promise<void>)(name, ...args);
    }
    return result;
  }
}
