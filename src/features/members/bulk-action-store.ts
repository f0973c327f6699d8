import { z } from 'zod';
import type { Db } from '../../core/db.js';
import { isoNow } from '../../core/db.js';
import { jobType } from '../../core/jobs/queue.js';
import type { MemberQuery } from './types.js';

/** The member_bulk_actions table, and the job type that works through one (see bulk-actions.ts). */

export const BULK_ACTIONS = ['role', 'resync', 'reset', 'delete'] as const;
export type BulkActionKind = (typeof BULK_ACTIONS)[number];

/** The list's filters a bulk action covers (the list's search, role and tag). */
export type BulkFilters = Pick<MemberQuery, 'q' | 'role' | 'tag'>;

export interface BulkAction {
  id: number;
  action: BulkActionKind;
  toRole: string | null;
  /** The ticked members, or null when the action covers `filters`. */
  memberIds: number[] | null;
  filters: BulkFilters | null;
  throughId: number;
  total: number;
  cursor: number;
  done: number;
  changed: number;
  skipped: number;
  failed: number;
  lastProblem: string | null;
  status: 'running' | 'done' | 'cancelled';
  requestedBy: number;
  createdAt: string;
  finishedAt: string | null;
}

export const memberBulkAction = jobType({
  type: 'member_bulk_action',
  params: z.object({ bulk_id: z.number().int().positive() }),
  dedupeKey: (p) => String(p.bulk_id),
  eventType: () => 'member.bulk_action',
});

interface Row {
  id: number;
  action: BulkActionKind;
  to_role: string | null;
  member_ids: string | null;
  filters: string | null;
  through_id: number;
  total: number;
  cursor: number;
  done: number;
  changed: number;
  skipped: number;
  failed: number;
  last_problem: string | null;
  status: BulkAction['status'];
  requested_by: number;
  created_at: string;
  finished_at: string | null;
}

/** The member_bulk_actions table. */
export class BulkActionStore {
  constructor(private readonly db: Db) {}

  create(input: { action: BulkActionKind; toRole?: string; memberIds?: number[]; filters?: BulkFilters; throughId: number; total: number; requestedBy: number; now: number }): number {
    return Number(
      this.db
        .prepare(
          `INSERT INTO member_bulk_actions (action, to_role, member_ids, filters, through_id, total, requested_by, created_at)
           VALUES (@action, @toRole, @memberIds, @filters, @throughId, @total, @requestedBy, @createdAt)`,
        )
        .run({
          action: input.action,
          toRole: input.toRole ?? null,
          memberIds: input.memberIds ? JSON.stringify(input.memberIds) : null,
          filters: input.filters ? JSON.stringify(input.filters) : null,
          throughId: input.throughId,
          total: input.total,
          requestedBy: input.requestedBy,
          createdAt: isoNow(input.now),
        }).lastInsertRowid,
    );
  }

  get(id: number): BulkAction | undefined {
    const row = this.db.prepare<[number], Row>('SELECT * FROM member_bulk_actions WHERE id = ?').get(id);
    return row && {
      id: row.id,
      action: row.action,
      toRole: row.to_role,
      memberIds: row.member_ids === null ? null : (JSON.parse(row.member_ids) as number[]),
      filters: row.filters === null ? null : (JSON.parse(row.filters) as BulkFilters),
      throughId: row.through_id,
      total: row.total,
      cursor: row.cursor,
      done: row.done,
      changed: row.changed,
      skipped: row.skipped,
      failed: row.failed,
      lastProblem: row.last_problem,
      status: row.status,
      requestedBy: row.requested_by,
      createdAt: row.created_at,
      finishedAt: row.finished_at,
    };
  }

  /** The running one, if any: one at a time, so two never fight over the same members. */
  running(): BulkAction | undefined {
    const id = this.db.prepare<[], number>("SELECT id FROM member_bulk_actions WHERE status = 'running' ORDER BY id LIMIT 1").pluck().get();
    return id === undefined ? undefined : this.get(id);
  }

  /** Saves a batch's counts and where it got to; only while the action still runs (a cancel wins). */
  saveBatch(id: number, batch: { cursor: number; done: number; changed: number; skipped: number; failed: number; lastProblem: string | undefined }): boolean {
    return (
      this.db
        .prepare(
          `UPDATE member_bulk_actions SET cursor = @cursor, done = done + @done, changed = changed + @changed, skipped = skipped + @skipped,
             failed = failed + @failed, last_problem = coalesce(@lastProblem, last_problem) WHERE id = @id AND status = 'running'`,
        )
        .run({ id, ...batch, lastProblem: batch.lastProblem ?? null }).changes === 1
    );
  }

  finish(id: number, status: 'done' | 'cancelled', now: number): boolean {
    return this.db.prepare("UPDATE member_bulk_actions SET status = ?, finished_at = ? WHERE id = ? AND status = 'running'").run(status, isoNow(now), id).changes === 1;
  }
}
