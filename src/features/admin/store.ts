import type { Db } from '../../core/db.js';
import type { EventStatus } from '../queue/store.js';

export interface RoleCount {
  slug: string;
  name: string;
  isAdmin: boolean;
  members: number;
}

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

/**
 * The admin pages' own SQL: counts for the dashboard and the admin side of sessions. Every query is shaped to use
 * an index (members_role, events_status_id, the events rowid), so the dashboard costs the same at a million rows.
 */
export class AdminStore {
  private readonly adminExistsStmt;
  private readonly adminCountStmt;
  private readonly roleCountsStmt;
  private readonly eventAtOrAfterStmt;
  private readonly lastEventIdStmt;
  private readonly statusSinceStmt;
  private readonly queueCountStmt;
  private readonly oldestQueuedStmt;
  private readonly failuresStmt;
  private readonly sessionExpiryStmt;
  private readonly setSessionExpiryStmt;

  constructor(db: Db) {
    this.adminExistsStmt = db
      .prepare<[], number>('SELECT EXISTS (SELECT 1 FROM roles r JOIN members m ON m.role_id = r.id WHERE r.is_admin = 1)')
      .pluck();
    this.adminCountStmt = db
      .prepare<[], number>('SELECT count(*) FROM roles r JOIN members m ON m.role_id = r.id WHERE r.is_admin = 1')
      .pluck();
    // One index range per role (members_role), not a scan of the members table.
    this.roleCountsStmt = db.prepare<[], { slug: string; name: string; is_admin: number; n: number }>(
      'SELECT r.slug, r.name, r.is_admin, (SELECT count(*) FROM members m WHERE m.role_id = r.id) AS n FROM roles r ORDER BY r.id',
    );
    this.eventAtOrAfterStmt = db.prepare<[number], { id: number; created_at: string }>(
      'SELECT id, created_at FROM events WHERE id >= ? ORDER BY id LIMIT 1',
    );
    this.lastEventIdStmt = db.prepare<[], number | null>('SELECT max(id) FROM events').pluck();
    this.statusSinceStmt = db.prepare<[EventStatus, number], number>('SELECT count(*) FROM events WHERE status = ? AND id >= ?').pluck();
    this.queueCountStmt = db.prepare<[EventStatus], number>('SELECT count(*) FROM events WHERE status = ?').pluck();
    this.oldestQueuedStmt = db
      .prepare<[], string>("SELECT created_at FROM events WHERE status = 'queued' ORDER BY id LIMIT 1")
      .pluck();
    // Two backward walks of events_status_id merged, rather than every failure collected and sorted.
    const failureColumns = 'id, status, source, action, contact_id, last_error, updated_at';
    this.failuresStmt = db.prepare<{ limit: number }, { id: number; status: EventStatus; source: string; action: string; contact_id: number | null; last_error: string | null; updated_at: string }>(
      `SELECT * FROM (SELECT ${failureColumns} FROM events WHERE status = 'failed' ORDER BY id DESC LIMIT @limit)
       UNION ALL
       SELECT * FROM (SELECT ${failureColumns} FROM events WHERE status = 'dead' ORDER BY id DESC LIMIT @limit)
       ORDER BY id DESC LIMIT @limit`,
    );
    this.sessionExpiryStmt = db.prepare<[string], number>('SELECT expires_at FROM sessions WHERE id_hash = ?').pluck();
    this.setSessionExpiryStmt = db.prepare('UPDATE sessions SET expires_at = ? WHERE id_hash = ?');
  }

  /** Whether any member holds a role with admin rights. */
  adminExists(): boolean {
    return this.adminExistsStmt.get() === 1;
  }

  adminCount(): number {
    return this.adminCountStmt.get()!;
  }

  membersByRole(): RoleCount[] {
    return this.roleCountsStmt.all().map((r) => ({ slug: r.slug, name: r.name, isAdmin: r.is_admin === 1, members: r.n }));
  }

  /**
   * How many events of each status arrived at or after `sinceIso`. Events are appended in time order, so the first
   * one of the window is found by bisecting ids (a few primary-key lookups), and each status is then one range of
   * events_status_id: no scan of `created_at`, which has no index.
   */
  eventsByStatusSince(sinceIso: string, statuses: readonly EventStatus[]): Record<EventStatus, number> {
    const firstId = this.firstEventIdAtOrAfter(sinceIso);
    const counts = {} as Record<EventStatus, number>;
    for (const status of statuses) counts[status] = firstId === null ? 0 : this.statusSinceStmt.get(status, firstId)!;
    return counts;
  }

  queue(): QueueFigures {
    return {
      queued: this.queueCountStmt.get('queued')!,
      processing: this.queueCountStmt.get('processing')!,
      oldestQueuedAt: this.oldestQueuedStmt.get() ?? null,
    };
  }

  /** The latest failed or dead events, newest first. */
  recentFailures(limit: number): FailedEvent[] {
    return this.failuresStmt.all({ limit }).map((r) => ({
      id: r.id,
      status: r.status,
      source: r.source,
      action: r.action,
      contactId: r.contact_id,
      error: r.last_error,
      updatedAt: r.updated_at,
    }));
  }

  /** A session's expiry (epoch ms) by the SHA-256 of its cookie value, if the row exists. */
  sessionExpiry(idHash: string): number | undefined {
    return this.sessionExpiryStmt.get(idHash);
  }

  setSessionExpiry(idHash: string, expiresAt: number): void {
    this.setSessionExpiryStmt.run(expiresAt, idHash);
  }

  /** The smallest event id whose created_at is at or after `sinceIso`, or null when every event is older. */
  private firstEventIdAtOrAfter(sinceIso: string): number | null {
    const lastId = this.lastEventIdStmt.get() ?? null;
    if (lastId === null) return null;
    // Invariant: every event below `low` is older than the window; the answer, if any, is at or below `high`.
    let low = 1;
    let high = lastId;
    let found: number | null = null;
    while (low <= high) {
      const mid = low + Math.floor((high - low) / 2);
      const row = this.eventAtOrAfterStmt.get(mid);
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
}
