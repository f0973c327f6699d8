import { EVENT_STATUSES, type EventStore } from '../../core/jobs/store.js';
import { describeAge, formatTime } from '../../web/format.js';
import type { KeapState } from '../keap/connection-state.js';
import type { RoleCount } from '../members/types.js';
import type { DisabledDestinationNotice } from '../outbound-webhooks/service.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const RECENT_FAILURES = 10;

/** Statuses that need the admin's eye on the dashboard. */
const ALARMING = new Set(['failed', 'dead', 'rejected']);

/** Where the dashboard's figures come from: the job queue's table and the services of the features it sums up. */
export interface DashboardSources {
  events: EventStore;
  now(): number;
  membersByRole(): RoleCount[];
  keapState(): KeapState;
  /** Outbound webhook destinations memberhook disabled (a 410, or failing for days). */
  disabledDestinations(): DisabledDestinationNotice[];
}

/** What the dashboard shows, ready for `views/admin/dashboard.hbs`. */
export interface DashboardData {
  roles: RoleCount[];
  totalMembers: number;
  events24h: Array<{ status: string; count: number; alarming: boolean }>;
  totalEvents24h: number;
  queue: { queued: number; processing: number; depth: number; oldestAge: string | null; oldestAt: string | null };
  keap: KeapState;
  failures: Array<{ id: number; status: string; source: string; action: string; contactId: number | null; error: string | null; at: string }>;
  disabledDestinations: Array<DisabledDestinationNotice & { url: string; when: string }>;
}

/** Every figure is read through an index (see EventStore.countByStatusSince), so the page costs the same at a million rows. */
export function loadDashboard(sources: DashboardSources): DashboardData {
  const now = sources.now();
  const roles = sources.membersByRole();
  const counts = sources.events.countByStatusSince(new Date(now - DAY_MS).toISOString(), EVENT_STATUSES);
  const events24h = EVENT_STATUSES.map((status) => ({ status, count: counts[status], alarming: ALARMING.has(status) && counts[status] > 0 }));
  const queue = sources.events.queueFigures();
  return {
    roles,
    totalMembers: roles.reduce((sum, r) => sum + r.members, 0),
    events24h,
    totalEvents24h: events24h.reduce((sum, e) => sum + e.count, 0),
    queue: {
      queued: queue.queued,
      processing: queue.processing,
      depth: queue.queued + queue.processing,
      oldestAge: queue.oldestQueuedAt === null ? null : describeAge(now - Date.parse(queue.oldestQueuedAt)),
      oldestAt: queue.oldestQueuedAt === null ? null : formatTime(queue.oldestQueuedAt),
    },
    keap: sources.keapState(),
    disabledDestinations: sources.disabledDestinations().map((d) => ({
      ...d,
      url: `/admin/settings/outbound-webhooks/${d.connectionId}/destinations/${d.destinationId}`,
      when: formatTime(d.at),
    })),
    failures: sources.events.recentFailures(RECENT_FAILURES).map((f) => ({
      id: f.id,
      status: f.status,
      source: f.source,
      action: f.action,
      contactId: f.contactId,
      error: f.error,
      at: formatTime(f.updatedAt),
    })),
  };
}
