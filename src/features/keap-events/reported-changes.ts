import type { Db } from '../../core/db.js';

/**
 * Which kind of change a Keap event key reports, as the poller reads the same changes back: a contact changed, a tag
 * applied to a contact (the object id is the contact's), an order changed. Other keys are not polled, so no record
 * of them is needed.
 */
export type ReportedChangeKind = 'contact' | 'tag_applied' | 'order';

export function reportedChangeKind(eventKey: string): ReportedChangeKind | undefined {
  if (eventKey === 'contact.add' || eventKey === 'contact.edit') return 'contact';
  if (eventKey === 'contactGroup.applied') return 'tag_applied';
  if (eventKey === 'order.add' || eventKey === 'order.edit') return 'order';
  return undefined;
}

/**
 * The keap_reported_changes table: the newest change of each object already handed on, so a poll does not hand on
 * again what a hook delivered (or what the previous poll's overlap window read).
 */
export class ReportedChanges {
  private readonly upsert;
  private readonly latestStmt;
  private readonly pruneStmt;

  constructor(db: Db) {
    this.upsert = db.prepare<[string, string, string]>(
      `INSERT INTO keap_reported_changes (kind, object_id, reported_at) VALUES (?, ?, ?)
       ON CONFLICT (kind, object_id) DO UPDATE SET reported_at = max(reported_at, excluded.reported_at)`,
    );
    this.latestStmt = db.prepare<[string, string], string>('SELECT reported_at FROM keap_reported_changes WHERE kind = ? AND object_id = ?').pluck();
    this.pruneStmt = db.prepare<[string, string]>('DELETE FROM keap_reported_changes WHERE kind = ? AND reported_at < ?');
  }

  /** Records that the object's change at `at` (ISO 8601 UTC) was handed on; call inside the transaction that emits it. */
  record(kind: ReportedChangeKind, objectId: string | number, at: string): void {
    this.upsert.run(kind, String(objectId), normalizeIso(at));
  }

  /** Whether a change at `changedAt` (or later) of the object was handed on already. */
  reportedSince(kind: ReportedChangeKind, objectId: string | number, changedAt: string | null): boolean {
    if (!changedAt) return false;
    const latest = this.latestStmt.get(kind, String(objectId));
    return latest !== undefined && latest >= normalizeIso(changedAt);
  }

  /** Forgets records older than `before`: no poll window reaches back that far any more. */
  prune(kind: ReportedChangeKind, before: string): number {
    return this.pruneStmt.run(kind, normalizeIso(before)).changes;
  }
}

const CANONICAL_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Keap writes times with or without milliseconds and with any zone; stored as one form so they compare as text. */
function normalizeIso(iso: string): string {
  // Ours (a delivery's arrival) are in that form already: a thousand of them come with each delivery.
  if (CANONICAL_ISO.test(iso)) return iso;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : new Date(ms).toISOString();
}
