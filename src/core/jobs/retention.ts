import { setImmediate as nextTurn } from 'node:timers/promises';
import { isoNow, type Db } from '../db.js';
import type { EventStatus, EventStore } from './store.js';

export interface RetentionPolicy {
  /** Finished events (done, skipped, failed, dead) are kept this long after they arrived. */
  finishedDays: number;
  /** Refused requests are kept this long. */
  refusedDays: number;
  /** And at most this many refusals per client address (the newest). */
  refusedPerAddress: number;
}

export interface RetentionResult {
  finished: number;
  refused: number;
  refusedOverCap: number;
}

const FINISHED: readonly EventStatus[] = ['done', 'skipped', 'failed', 'dead'];
const DAY_MS = 24 * 60 * 60 * 1000;
/** Rows per DELETE: a few milliseconds of writing, then the thread's other work (the posts' commits) goes first. */
export const RETENTION_BATCH = 500;

/**
 * The event log's clean-up: finished events and refusals past their age, and refusals past the per-address cap.
 * Queued and processing jobs are never touched, however old (their rows are the queue); an event's attempts go with
 * it (ON DELETE CASCADE). It deletes in small batches and yields to the event loop between them, so on the job
 * thread a post's commit waits for one batch at most, never for the whole clean-up.
 */
export class EventRetention {
  private readonly deleteByAgeStmt;
  private readonly crowdedAddressesStmt;
  private readonly deleteOverCapStmt;

  constructor(
    db: Db,
    private readonly events: EventStore,
  ) {
    // Walks events_status_id (status, id) from the oldest id up to the cutoff: no scan of the newer rows.
    this.deleteByAgeStmt = db.prepare<{ status: EventStatus; beforeId: number; batch: number }>(
      `DELETE FROM events WHERE id IN (
         SELECT id FROM events INDEXED BY events_status_id WHERE status = @status AND id < @beforeId ORDER BY id LIMIT @batch)`,
    );
    this.crowdedAddressesStmt = db
      .prepare<{ cap: number }, string>(
        `SELECT client_address FROM events INDEXED BY events_rejected_address
         WHERE status = 'rejected' AND client_address IS NOT NULL GROUP BY client_address HAVING count(*) > @cap`,
      )
      .pluck();
    this.deleteOverCapStmt = db.prepare<{ address: string; cap: number; batch: number }>(
      `DELETE FROM events WHERE id IN (
         SELECT id FROM events INDEXED BY events_rejected_address WHERE status = 'rejected' AND client_address = @address
         ORDER BY id DESC LIMIT @batch OFFSET @cap)`,
    );
  }

  async run(now: number, policy: RetentionPolicy): Promise<RetentionResult> {
    const result: RetentionResult = { finished: 0, refused: 0, refusedOverCap: 0 };
    const finishedBefore = this.idBefore(now - policy.finishedDays * DAY_MS);
    for (const status of FINISHED) result.finished += await this.deleteByAge(status, finishedBefore);
    result.refused = await this.deleteByAge('rejected', this.idBefore(now - policy.refusedDays * DAY_MS));
    for (const address of this.crowdedAddressesStmt.all({ cap: policy.refusedPerAddress })) {
      result.refusedOverCap += await this.inBatches(() => this.deleteOverCapStmt.run({ address, cap: policy.refusedPerAddress, batch: RETENTION_BATCH }).changes);
    }
    return result;
  }

  /** The first id that is young enough to keep (ids follow arrival, so every smaller id arrived before `cutoffMs`). */
  private idBefore(cutoffMs: number): number {
    return this.events.firstIdAtOrAfter(isoNow(cutoffMs)) ?? Number.MAX_SAFE_INTEGER;
  }

  private deleteByAge(status: EventStatus, beforeId: number): Promise<number> {
    return this.inBatches(() => this.deleteByAgeStmt.run({ status, beforeId, batch: RETENTION_BATCH }).changes);
  }

  private async inBatches(deleteBatch: () => number): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = deleteBatch();
      total += deleted;
      if (deleted < RETENTION_BATCH) return total;
      await nextTurn();
    }
  }
}
