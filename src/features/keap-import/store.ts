import type { Db } from '../../core/db.js';
import { isoNow } from '../../core/db.js';
import type { MemberTag } from '../members/types.js';

/** The keap_imports table (migration 014): one row per import, its options, where it got to and what it came to. */

export const ON_EXISTING_CHOICES = ['link', 'skip'] as const;
export type OnExisting = (typeof ON_EXISTING_CHOICES)[number];

/** Contact ids kept per skip reason, for the summary ("e.g. contacts 104, 233"): enough to look some up in Keap. */
const EXAMPLES_PER_REASON = 10;

export interface SkipTally {
  count: number;
  examples: number[];
}

export interface KeapImport {
  id: number;
  /** null: every contact. */
  tagId: number | null;
  tagName: string | null;
  role: string;
  sendWelcome: boolean;
  onExisting: OnExisting;
  total: number;
  /** Where the next batch starts reading Keap; null before the first batch (and after the last). */
  pageToken: string | null;
  batches: number;
  keapCalls: number;
  done: number;
  created: number;
  linked: number;
  alreadyMembers: number;
  skipped: Record<string, SkipTally>;
  tags: MemberTag[] | null;
  status: 'running' | 'done' | 'cancelled' | 'failed';
  lastError: string | null;
  requestedBy: number;
  createdAt: string;
  finishedAt: string | null;
}

/** What one batch adds up to, saved with its members. */
export interface BatchTally {
  /** The token for the batch after this one; null when Keap has no more pages. */
  nextPageToken: string | null;
  keapCalls: number;
  done: number;
  created: number;
  linked: number;
  alreadyMembers: number;
  skipped: Array<{ reason: string; contactId: number }>;
}

interface Row {
  id: number;
  tag_id: number | null;
  tag_name: string | null;
  role: string;
  send_welcome: number;
  on_existing: OnExisting;
  total: number;
  page_token: string | null;
  batches: number;
  keap_calls: number;
  done: number;
  created: number;
  linked: number;
  already_members: number;
  skipped: string;
  tags: string | null;
  status: KeapImport['status'];
  last_error: string | null;
  requested_by: number;
  created_at: string;
  finished_at: string | null;
}

export class KeapImportStore {
  constructor(private readonly db: Db) {}

  create(input: { tagId: number | null; tagName: string | null; role: string; sendWelcome: boolean; onExisting: OnExisting; total: number; requestedBy: number; now: number }): number {
    return Number(
      this.db
        .prepare(
          `INSERT INTO keap_imports (tag_id, tag_name, role, send_welcome, on_existing, total, requested_by, created_at)
           VALUES (@tagId, @tagName, @role, @sendWelcome, @onExisting, @total, @requestedBy, @createdAt)`,
        )
        .run({
          tagId: input.tagId,
          tagName: input.tagName,
          role: input.role,
          sendWelcome: input.sendWelcome ? 1 : 0,
          onExisting: input.onExisting,
          total: input.total,
          requestedBy: input.requestedBy,
          createdAt: isoNow(input.now),
        }).lastInsertRowid,
    );
  }

  get(id: number): KeapImport | undefined {
    const row = this.db.prepare<[number], Row>('SELECT * FROM keap_imports WHERE id = ?').get(id);
    return row && fromRow(row);
  }

  /** The running import, if any: one at a time, so two never race for the same contacts or Keap's rate limit. */
  running(): KeapImport | undefined {
    const row = this.db.prepare<[], Row>("SELECT * FROM keap_imports WHERE status = 'running' ORDER BY id LIMIT 1").get();
    return row && fromRow(row);
  }

  /** The latest imports, newest first (the page lists them). */
  recent(limit: number): KeapImport[] {
    return this.db.prepare<[number], Row>('SELECT * FROM keap_imports ORDER BY id DESC LIMIT ?').all(limit).map(fromRow);
  }

  /** The account's tags, read once for the whole import (the imported tag's name comes from them too). */
  saveTags(id: number, tags: MemberTag[], keapCalls: number): void {
    const tagId = this.get(id)?.tagId;
    const tag = tags.find((t) => t.id === tagId);
    // Named as the form's list names it ("Category: Name"), so the progress page shows the tag that was picked.
    const name = tag ? (tag.category ? `${tag.category}: ${tag.name}` : tag.name) : null;
    this.db
      .prepare('UPDATE keap_imports SET tags = ?, keap_calls = keap_calls + ?, tag_name = coalesce(?, tag_name) WHERE id = ?')
      .run(JSON.stringify(tags), keapCalls, name, id);
  }

  /**
   * Adds a batch's counts and moves the page token on; only while the import still runs (a cancel wins). Call it in
   * the transaction that creates the batch's members. `expectedBatches` guards against a batch run twice (a job
   * repeated after a crash between its commit and the worker recording it): only the batch that follows counts.
   */
  saveBatch(id: number, expectedBatches: number, tally: BatchTally): boolean {
    const current = this.get(id);
    if (!current || current.status !== 'running' || current.batches !== expectedBatches) return false;
    const skipped = structuredClone(current.skipped);
    for (const { reason, contactId } of tally.skipped) {
      const entry = (skipped[reason] ??= { count: 0, examples: [] });
      entry.count++;
      if (entry.examples.length < EXAMPLES_PER_REASON) entry.examples.push(contactId);
    }
    this.db
      .prepare(
        `UPDATE keap_imports SET page_token = @pageToken, batches = batches + 1, keap_calls = keap_calls + @keapCalls, done = done + @done,
           created = created + @created, linked = linked + @linked, already_members = already_members + @alreadyMembers, skipped = @skipped
         WHERE id = @id`,
      )
      .run({
        id,
        pageToken: tally.nextPageToken,
        keapCalls: tally.keapCalls,
        done: tally.done,
        created: tally.created,
        linked: tally.linked,
        alreadyMembers: tally.alreadyMembers,
        skipped: JSON.stringify(skipped),
      });
    return true;
  }

  finish(id: number, status: 'done' | 'cancelled' | 'failed', now: number, error?: string): boolean {
    return (
      this.db
        .prepare("UPDATE keap_imports SET status = ?, finished_at = ?, last_error = coalesce(?, last_error) WHERE id = ? AND status = 'running'")
        .run(status, isoNow(now), error ?? null, id).changes === 1
    );
  }

  /** A failure the job will retry (Keap down, throttled for long): shown on the progress page meanwhile. */
  noteProblem(id: number, problem: string): void {
    this.db.prepare("UPDATE keap_imports SET last_error = ? WHERE id = ? AND status = 'running'").run(problem, id);
  }
}

function fromRow(row: Row): KeapImport {
  return {
    id: row.id,
    tagId: row.tag_id,
    tagName: row.tag_name,
    role: row.role,
    sendWelcome: row.send_welcome === 1,
    onExisting: row.on_existing,
    total: row.total,
    pageToken: row.page_token,
    batches: row.batches,
    keapCalls: row.keap_calls,
    done: row.done,
    created: row.created,
    linked: row.linked,
    alreadyMembers: row.already_members,
    skipped: JSON.parse(row.skipped) as Record<string, SkipTally>,
    tags: row.tags === null ? null : (JSON.parse(row.tags) as MemberTag[]),
    status: row.status,
    lastError: row.last_error,
    requestedBy: row.requested_by,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
  };
}
