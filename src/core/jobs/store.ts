import type { Statement } from 'better-sqlite3';
import type { Db } from '../db.js';
import { isoNow } from '../db.js';
import { selectPage } from '../paging.js';

export type EventStatus = 'queued' | 'processing' | 'done' | 'skipped' | 'failed' | 'dead' | 'rejected';
export const EVENT_STATUSES: readonly EventStatus[] = ['queued', 'processing', 'done', 'skipped', 'failed', 'dead', 'rejected'];

export interface EventRecord {
  id: number;
  source: string;
  action: string;
  contactId: number | null;
  objectType: string | null;
  objectId: string | null;
  eventType: string | null;
  params: Record<string, unknown>;
  status: EventStatus;
  attempts: number;
  error: string | null;
  result: string | null;
  coalesced: number;
  throttled: number;
  runAfter: number;
  plugin: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface EventAttempt {
  /**
   * Its place among the job's runs, counting from 1 in the order they started. Not the queue's attempt counter,
   * which starts again at a replay and does not count a run Keap throttled (it is the retry budget).
   */
  attempt: number;
  startedAt: string;
  finishedAt: string | null;
  outcome: string | null;
  error: string | null;
}

export interface NewEvent {
  source: string;
  action: string;
  contactId: number | null;
  /**
   * The job's params, or their JSON text as a request brought it, already checked against the job type (see
   * `JobQueue.enqueueSoonChecked`): stored as it is, neither serialized again nor copied object by object to the
   * job thread.
   */
  params: Record<string, unknown> | string;
  eventType?: string | null;
  /** Identical pending jobs share this key; a second enqueue returns the first job. */
  dedupeKey?: string | null;
  runAfter?: number;
  /** The plugin whose job this is (null: a built-in's); it waits while that plugin is not running. */
  plugin?: string | null;
  /** A refused request's client address: the retention keeps a limited number of refusals per address. */
  clientAddress?: string | null;
}

export interface EventFilter {
  contactId?: number;
  status?: EventStatus;
  action?: string;
  source?: string;
  page: number;
  pageSize: number;
}

interface EventRow {
  id: number;
  source: string;
  action: string;
  contact_id: number | null;
  object_type: string | null;
  object_id: string | null;
  event_type: string | null;
  params: string;
  status: EventStatus;
  attempts: number;
  last_error: string | null;
  result: string | null;
  coalesced: number;
  throttled: number;
  run_after: number;
  plugin: string | null;
  created_at: string;
  updated_at: string;
}

/** The dashboard's view of the queue. */
export interface QueueFigures {
  queued: number;
  processing: number;
  /** `created_at` of the oldest job still waiting (ISO), or null when none waits. */
  oldestQueuedAt: string | null;
}

export interface FailedEvent {
  id: number;
  status: EventStatus;
  source: string;
  action: string;
  contactId: number | null;
  error: string | null;
  updatedAt: string;
}

const COLUMNS = `id, source, action, contact_id, object_type, object_id, event_type, params, status, attempts, last_error, result,
  coalesced, throttled, run_after, plugin, created_at, updated_at`;

/**
 * The claim: the oldest runnable jobs whose contact has no earlier unfinished job and none running, marked running.
 * Jobs for one contact run one at a time and in arrival order; different contacts run side by side. Of two queued
 * jobs for one contact only the earlier can qualify, so a batch never holds two of a contact's jobs.
 * The index is named: left to itself, the planner prefers events_status_id and sorts every queued row on each claim.
 * A plugin's jobs wait while it is disabled or failed (`@running`: the plugins that run now, as a JSON array) and
 * hold up none of their contact's other jobs meanwhile. With no plugin running (`pluginsRunning` false) the filter
 * is simpler: reading the JSON list costs a claim more than the rest of its query.
 */
export function claimSql(pluginsRunning: boolean): string {
  const mayRun = (t: string) => (pluginsRunning ? `(${t}.plugin IS NULL OR ${t}.plugin IN (SELECT value FROM json_each(@running)))` : `${t}.plugin IS NULL`);
  // The dedupe key is dropped once a job starts: only jobs that have not started are "identical pending" work, and
  // a job that goes back to the queue for a retry must not collide with a newer identical one.
  return `UPDATE events SET status = 'processing', attempts = attempts + 1, locked_by = @worker, locked_until = @leaseUntil, updated_at = @nowIso,
       dedupe_key = NULL
     WHERE id IN (
       SELECT e.id FROM events e INDEXED BY events_queued
       WHERE e.status = 'queued' AND e.run_after <= @now AND ${mayRun('e')}
         AND (e.contact_id IS NULL OR NOT EXISTS (
           SELECT 1 FROM events p WHERE p.contact_id = e.contact_id AND p.id <> e.id
             AND (p.status = 'processing' OR (p.status = 'queued' AND p.id < e.id)) AND ${mayRun('p')}))
       ORDER BY e.run_after, e.id
       LIMIT @limit)
     RETURNING ${COLUMNS}`;
}

/** The events table: the event log and the job queue in one (an accepted request is one durable row). */
export class EventStore {
  private readonly insertStmt;
  private readonly rejectStmt;
  private readonly getStmt;
  private readonly claimStmt;
  private readonly claimBuiltinsStmt;
  private readonly startAttemptStmt;
  private readonly finishAttemptStmt;
  private readonly finishStmt;
  private readonly retryStmt;
  private readonly renewStmt;
  private readonly abandonStmt;
  private readonly abandonAttemptsStmt;
  private readonly replayStmt;
  private readonly replayFailedStmt;
  private readonly queueStateStmt;
  private readonly countFailedStmt;
  private readonly attemptsStmt;
  private readonly nextRunStmt;
  private statsStatements: ReturnType<typeof prepareStats> | undefined;
  private batch: Array<{ event: NewEvent; resolve: (r: { id: number; coalesced: boolean }) => void; reject: (err: unknown) => void }> = [];

  constructor(private readonly db: Db) {
    // One statement, no explicit transaction: either a new row, or the count bumped on the identical queued job.
    this.insertStmt = db.prepare<Record<string, unknown>, { id: number; coalesced: number }>(
      `INSERT INTO events (source, action, contact_id, object_type, object_id, event_type, params, status, last_error, dedupe_key, run_after,
         plugin, created_at, updated_at)
       VALUES (@source, @action, @contactId, @objectType, @objectId, @eventType, @params, @status, @error, @dedupeKey, @runAfter, @plugin,
         @now, @now)
       ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL DO UPDATE SET coalesced = events.coalesced + 1
       RETURNING id, coalesced`,
    );
    this.rejectStmt = db.prepare<Record<string, unknown>, { id: number }>(
      `INSERT INTO events (source, action, contact_id, object_type, object_id, event_type, params, status, last_error, plugin, client_address,
         created_at, updated_at)
       VALUES (@source, @action, @contactId, @objectType, @objectId, @eventType, @params, 'rejected', @error, @plugin, @clientAddress, @now, @now)
       RETURNING id`,
    );
    this.getStmt = db.prepare<[number], EventRow>(`SELECT ${COLUMNS} FROM events WHERE id = ?`);
    // The oldest runnable jobs whose contact has no earlier unfinished job and none running: jobs for one
    // contact run one at a time and in arrival order; different contacts run side by side. Of two queued jobs for
    // one contact only the earlier can qualify, so a batch never holds two of a contact's jobs.
    type ClaimParams = { now: number; worker: string; leaseUntil: number; nowIso: string; running: string; limit: number };
    this.claimStmt = db.prepare<ClaimParams, EventRow>(claimSql(true));
    this.claimBuiltinsStmt = db.prepare<Omit<ClaimParams, 'running'>, EventRow>(claimSql(false));
    this.startAttemptStmt = db.prepare('INSERT INTO event_attempts (event_id, attempt, started_at) VALUES (?, ?, ?)');
    this.finishAttemptStmt = db.prepare(
      'UPDATE event_attempts SET finished_at = ?, outcome = ?, error = ? WHERE event_id = ? AND attempt = ? AND finished_at IS NULL',
    );
    this.finishStmt = db.prepare(
      `UPDATE events SET status = @status, last_error = @error, result = @result, locked_by = NULL, locked_until = NULL, updated_at = @nowIso
       WHERE id = @id AND status = 'processing'`,
    );
    this.retryStmt = db.prepare(
      `UPDATE events SET status = 'queued', last_error = @error, run_after = @runAfter, attempts = attempts - @refund,
         throttled = throttled + @refund, locked_by = NULL, locked_until = NULL, updated_at = @nowIso
       WHERE id = @id AND status = 'processing'`,
    );
    this.renewStmt = db.prepare("UPDATE events SET locked_until = ? WHERE id = ? AND status = 'processing' AND locked_by = ?");
    this.abandonStmt = db.prepare<{ now: number; nowIso: string; all: number }, { id: number; attempts: number }>(
      `UPDATE events SET status = 'queued', locked_by = NULL, locked_until = NULL, run_after = @now, updated_at = @nowIso
       WHERE status = 'processing' AND (@all = 1 OR locked_until < @now)
       RETURNING id, attempts`,
    );
    this.abandonAttemptsStmt = db.prepare(
      "UPDATE event_attempts SET finished_at = ?, outcome = 'crashed', error = 'the worker stopped while running this job' WHERE event_id = ? AND attempt = ? AND finished_at IS NULL",
    );
    this.replayStmt = db.prepare(
      `UPDATE events SET status = 'queued', attempts = 0, throttled = 0, run_after = 0, last_error = NULL, result = NULL, updated_at = ?
       WHERE id = ? AND status IN ('failed', 'dead', 'done', 'skipped')`,
    );
    // The same reset as replayStmt, for every failed and dead job at once (the admin's "replay all failed").
    this.replayFailedStmt = db.prepare(
      `UPDATE events SET status = 'queued', attempts = 0, throttled = 0, run_after = 0, last_error = NULL, result = NULL, updated_at = ?
       WHERE status IN ('failed', 'dead')`,
    );
    this.countFailedStmt = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM events WHERE status IN ('failed', 'dead')");
    this.queueStateStmt = db.prepare<[number], { locked_by: string | null; locked_until: number | null; dedupe_key: string | null }>(
      'SELECT locked_by, locked_until, dedupe_key FROM events WHERE id = ?',
    );
    this.attemptsStmt = db.prepare<[number], { started_at: string; finished_at: string | null; outcome: string | null; error: string | null }>(
      'SELECT started_at, finished_at, outcome, error FROM event_attempts WHERE event_id = ? ORDER BY rowid',
    );
    this.nextRunStmt = db.prepare<[string], { next: number | null }>(
      "SELECT min(run_after) AS next FROM events INDEXED BY events_queued WHERE status = 'queued' AND (plugin IS NULL OR plugin IN (SELECT value FROM json_each(?)))",
    );
  }

  private insert(event: NewEvent, status: 'queued', error: string | null): { id: number; coalesced: boolean } {
    // One object literal, written out (here and in recordRejected): building it from a shared helper with a spread
    // cost this path about 15 MB of peak memory under `npm run bench` (a larger, slower object on every post).
    const row = this.insertStmt.get({
      source: event.source,
      action: event.action,
      contactId: event.contactId,
      objectType: event.contactId === null ? null : 'contact',
      objectId: event.contactId === null ? null : String(event.contactId),
      eventType: event.eventType ?? null,
      params: typeof event.params === 'string' ? event.params : JSON.stringify(event.params),
      status,
      error,
      dedupeKey: status === 'queued' ? (event.dedupeKey ?? null) : null,
      runAfter: event.runAfter ?? 0,
      plugin: event.plugin ?? null,
      now: isoNow(),
    })!;
    return { id: row.id, coalesced: row.coalesced > 0 };
  }

  /** Whether a job with this dedupe key waits (queued, not started). */
  hasWaiting(dedupeKey: string): boolean {
    this.waitingStmt ??= this.db.prepare<[string], number>("SELECT 1 FROM events WHERE dedupe_key = ? AND status = 'queued'").pluck();
    return this.waitingStmt.get(dedupeKey) !== undefined;
  }

  private waitingStmt: Statement<[string], number> | undefined;

  /** One durable row for an accepted request (or the pending identical job it was folded into). */
  enqueue(event: NewEvent): { id: number; coalesced: boolean } {
    return this.insert(event, 'queued', null);
  }

  /**
   * The same as `enqueue`, committed together with the other posts that arrived in this turn of the event loop
   * (group commit). Every commit rewrites each page it touched into the WAL, and a row touches one page of the
   * table and of each index: one commit for a burst of fifty posts writes a few dozen pages instead of hundreds.
   * The promise resolves only after the commit, so a post is still acknowledged only once it is durable.
   */
  enqueueSoon(event: NewEvent): Promise<{ id: number; coalesced: boolean }> {
    return new Promise((resolve, reject) => {
      this.batch.push({ event, resolve, reject });
      if (this.batch.length === 1) setImmediate(() => this.flushBatch());
    });
  }

  private flushBatch(): void {
    const batch = this.batch;
    this.batch = [];
    this.enqueueMany(batch.map((item) => item.event)).forEach((result, i) => {
      if (result instanceof Error) batch[i]!.reject(result);
      else batch[i]!.resolve(result);
    });
  }

  /**
   * Several jobs in one commit (see `enqueueSoon`). Each gets its row, or the error that kept it out: one row the
   * database refuses must not fail its neighbours, so a failed commit falls back to a commit each.
   */
  enqueueMany(events: readonly NewEvent[]): Array<{ id: number; coalesced: boolean } | Error> {
    try {
      return this.db.transaction(() => events.map((event) => this.insert(event, 'queued', null))).immediate();
    } catch {
      return events.map((event) => {
        try {
          return this.insert(event, 'queued', null);
        } catch (err) {
          return err instanceof Error ? err : new Error(String(err));
        }
      });
    }
  }

  /** A request that was turned away, kept so the admin can see what arrived and why it was refused. */
  recordRejected(event: NewEvent, reason: string): number {
    // A statement of its own: the accepted posts' insert, the hottest statement there is, stays as it was.
    return this.rejectStmt.get({
      source: event.source,
      action: event.action,
      contactId: event.contactId,
      objectType: event.contactId === null ? null : 'contact',
      objectId: event.contactId === null ? null : String(event.contactId),
      eventType: event.eventType ?? null,
      params: typeof event.params === 'string' ? event.params : JSON.stringify(event.params),
      error: reason,
      plugin: event.plugin ?? null,
      clientAddress: event.clientAddress ?? null,
      now: isoNow(),
    })!.id;
  }

  get(id: number): EventRecord | undefined {
    const row = this.getStmt.get(id);
    return row && toRecord(row);
  }

  /** Claims the next runnable job; `runningPlugins` are the plugins whose jobs may run now (built-ins' always may). */
  claimNext(worker: string, now: number, leaseMs: number, runningPlugins: readonly string[] = []): EventRecord | undefined {
    return this.claimBatch(worker, now, leaseMs, runningPlugins, 1)[0];
  }

  /** Claims up to `limit` runnable jobs in one transaction, oldest first, at most one per contact. */
  claimBatch(worker: string, now: number, leaseMs: number, runningPlugins: readonly string[], limit: number): EventRecord[] {
    const nowIso = isoNow(now);
    const params = { now, worker, leaseUntil: now + leaseMs, nowIso, limit };
    return this.db.transaction(() => {
      const rows = runningPlugins.length === 0 ? this.claimBuiltinsStmt.all(params) : this.claimStmt.all({ ...params, running: JSON.stringify(runningPlugins) });
      for (const row of rows) this.startAttemptStmt.run(row.id, row.attempts, nowIso);
      // RETURNING gives rows in the order they were updated, not the claim's order: oldest first again.
      return rows.sort((a, b) => a.run_after - b.run_after || a.id - b.id).map(toRecord);
    }).immediate();
  }

  renewLease(id: number, worker: string, until: number): boolean {
    return this.renewStmt.run(until, id, worker).changes === 1;
  }

  /**
   * Records a job's outcome. `alongside` runs in the same transaction, and only if the job was still this run's
   * (processing): state that must change exactly when the job is recorded finished, e.g. a delivered password's release.
   */
  finish(
    job: EventRecord,
    status: 'done' | 'skipped' | 'failed' | 'dead',
    detail: { error?: string | null; result?: string | null },
    alongside?: () => void,
  ): void {
    const nowIso = isoNow();
    this.db.transaction(() => {
      const finished = this.finishStmt.run({ id: job.id, status, error: detail.error ?? null, result: detail.result ?? null, nowIso }).changes === 1;
      this.finishAttemptStmt.run(nowIso, status, detail.error ?? null, job.id, job.attempts);
      if (finished) alongside?.();
    }).immediate();
  }

  /**
   * Several outcomes in one commit (the worker gathers the jobs that ended in one turn of the event loop). Only for
   * outcomes with nothing to do `alongside`; those keep a transaction of their own (`finish`).
   */
  finishMany(outcomes: ReadonlyArray<{ job: EventRecord; status: 'done' | 'skipped' | 'failed' | 'dead'; error?: string | null; result?: string | null }>): void {
    const nowIso = isoNow();
    this.db.transaction(() => {
      for (const { job, status, error = null, result = null } of outcomes) {
        this.finishStmt.run({ id: job.id, status, error, result, nowIso });
        this.finishAttemptStmt.run(nowIso, status, error, job.id, job.attempts);
      }
    }).immediate();
  }

  /** Puts a job back in the queue. A throttled retry (`refundAttempt`) does not use up one of its attempts. */
  retry(job: EventRecord, runAfter: number, error: string, refundAttempt: boolean): void {
    const nowIso = isoNow();
    this.db.transaction(() => {
      this.retryStmt.run({ id: job.id, runAfter, error, refund: refundAttempt ? 1 : 0, nowIso });
      this.finishAttemptStmt.run(nowIso, refundAttempt ? 'throttled' : 'retry', error, job.id, job.attempts);
    }).immediate();
  }

  /**
   * Jobs left in `processing` by a worker that is gone go back to the queue. At start every such job is
   * abandoned (one process owns a SQLite file); later, only those whose lease ran out.
   */
  requeueAbandoned(now: number, all: boolean): number {
    return this.db.transaction(() => {
      const rows = this.abandonStmt.all({ now, nowIso: isoNow(now), all: all ? 1 : 0 });
      for (const row of rows) this.abandonAttemptsStmt.run(isoNow(now), row.id, row.attempts);
      return rows.length;
    }).immediate();
  }

  /** Runs a finished job again from scratch. Returns false when the job is not in a finished state. */
  replay(id: number): boolean {
    return this.replayStmt.run(isoNow(), id).changes === 1;
  }

  /** Every failed and dead job queued again from scratch, in one transaction. Returns how many. */
  replayAllFailed(): number {
    return this.db.transaction(() => this.replayFailedStmt.run(isoNow()).changes).immediate();
  }

  /** How many jobs `replayAllFailed` would queue again. */
  countReplayableFailures(): number {
    return this.countFailedStmt.get()!.n;
  }

  /** The queue bookkeeping columns `get` leaves out: which worker holds the job until when, and its dedupe key. */
  queueState(id: number): { lockedBy: string | null; lockedUntil: number | null; dedupeKey: string | null } | undefined {
    const row = this.queueStateStmt.get(id);
    return row && { lockedBy: row.locked_by, lockedUntil: row.locked_until, dedupeKey: row.dedupe_key };
  }

  /** Every run of the job, oldest first (across replays). */
  attempts(id: number): EventAttempt[] {
    return this.attemptsStmt.all(id).map((a, i) => ({ attempt: i + 1, startedAt: a.started_at, finishedAt: a.finished_at, outcome: a.outcome, error: a.error }));
  }

  /** When the earliest queued job that may run may run (epoch ms), or null when there is none. */
  nextRunAt(runningPlugins: readonly string[] = []): number | null {
    return this.nextRunStmt.get(JSON.stringify(runningPlugins))?.next ?? null;
  }

  list(filter: EventFilter): { events: EventRecord[]; total: number } {
    const { rows, total } = selectPage<EventRow>(
      this.db,
      {
        columns: COLUMNS,
        from: 'events',
        conditions: [
          { sql: 'contact_id = @contactId', param: 'contactId', value: filter.contactId },
          { sql: 'status = @status', param: 'status', value: filter.status },
          { sql: 'action = @action', param: 'action', value: filter.action },
          { sql: 'source = @source', param: 'source', value: filter.source },
        ],
        orderBy: 'id DESC',
      },
      filter,
    );
    return { events: rows.map(toRecord), total };
  }

  /**
   * How many events of each status arrived at or after `sinceIso`. Events are appended in time order, so the first
   * one of the window is found by bisecting ids (a few primary-key lookups), and each status is then one range of
   * events_status_id: no scan of `created_at`, which has no index. The dashboard costs the same at a million rows.
   */
  countByStatusSince(sinceIso: string, statuses: readonly EventStatus[]): Record<EventStatus, number> {
    const firstId = this.firstIdAtOrAfter(sinceIso);
    const counts = {} as Record<EventStatus, number>;
    for (const status of statuses) counts[status] = firstId === null ? 0 : this.stats.statusSince.get(status, firstId)!;
    return counts;
  }

  queueFigures(): QueueFigures {
    return {
      queued: this.stats.countStatus.get('queued')!,
      processing: this.stats.countStatus.get('processing')!,
      oldestQueuedAt: this.stats.oldestQueued.get() ?? null,
    };
  }

  /** The latest failed or dead events, newest first. */
  recentFailures(limit: number): FailedEvent[] {
    return this.stats.failures.all({ limit }).map((r) => ({
      id: r.id,
      status: r.status,
      source: r.source,
      action: r.action,
      contactId: r.contact_id,
      error: r.last_error,
      updatedAt: r.updated_at,
    }));
  }

  /** The smallest event id whose created_at is at or after `sinceIso`, or null when every event is older. */
  firstIdAtOrAfter(sinceIso: string): number | null {
    const lastId = this.stats.lastId.get() ?? null;
    if (lastId === null) return null;
    // Invariant: every event below `low` is older than the window; the answer, if any, is at or below `high`.
    let low = 1;
    let high = lastId;
    let found: number | null = null;
    while (low <= high) {
      const mid = low + Math.floor((high - low) / 2);
      const row = this.stats.atOrAfter.get(mid);
      if (!row || row.id > high) {
        // No event between mid and high (ids can have gaps where rows were deleted): look lower.
        high = mid - 1;
      } else if (row.created_at >= sinceIso) {
        found = row.id;
        high = mid - 1;
      } else {
        low = row.id + 1;
      }
    }
    return found;
  }

  /** The dashboard's statements, prepared on first use: the queue's own path never needs them. */
  private get stats() {
    return (this.statsStatements ??= prepareStats(this.db));
  }

  countByStatus(): Partial<Record<EventStatus, number>> {
    const rows = this.db.prepare<[], { status: EventStatus; n: number }>('SELECT status, count(*) AS n FROM events GROUP BY status').all();
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }
}

function prepareStats(db: Db) {
  // Two backward walks of events_status_id merged, rather than every failure collected and sorted.
  const failureColumns = 'id, status, source, action, contact_id, last_error, updated_at';
  return {
    atOrAfter: db.prepare<[number], { id: number; created_at: string }>('SELECT id, created_at FROM events WHERE id >= ? ORDER BY id LIMIT 1'),
    lastId: db.prepare<[], number | null>('SELECT max(id) FROM events').pluck(),
    statusSince: db.prepare<[EventStatus, number], number>('SELECT count(*) FROM events WHERE status = ? AND id >= ?').pluck(),
    countStatus: db.prepare<[EventStatus], number>('SELECT count(*) FROM events WHERE status = ?').pluck(),
    oldestQueued: db.prepare<[], string>("SELECT created_at FROM events WHERE status = 'queued' ORDER BY id LIMIT 1").pluck(),
    failures: db.prepare<
      { limit: number },
      { id: number; status: EventStatus; source: string; action: string; contact_id: number | null; last_error: string | null; updated_at: string }
    >(
      `SELECT * FROM (SELECT ${failureColumns} FROM events WHERE status = 'failed' ORDER BY id DESC LIMIT @limit)
       UNION ALL
       SELECT * FROM (SELECT ${failureColumns} FROM events WHERE status = 'dead' ORDER BY id DESC LIMIT @limit)
       ORDER BY id DESC LIMIT @limit`,
    ),
  };
}

function toRecord(row: EventRow): EventRecord {
  return {
    id: row.id,
    source: row.source,
    action: row.action,
    contactId: row.contact_id,
    objectType: row.object_type,
    objectId: row.object_id,
    eventType: row.event_type,
    params: JSON.parse(row.params) as Record<string, unknown>,
    status: row.status,
    attempts: row.attempts,
    error: row.last_error,
    result: row.result,
    coalesced: row.coalesced,
    throttled: row.throttled,
    runAfter: row.run_after,
    plugin: row.plugin,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
