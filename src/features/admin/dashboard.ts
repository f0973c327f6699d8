import type { AppContext } from '../../context.js';
import type { KeapLimitFigures } from '../keap/types.js';
import { EVENT_STATUSES } from '../queue/store.js';
import { adminStore } from './access.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const RECENT_FAILURES = 10;

/** Statuses that need the admin's eye on the dashboard. */
const ALARMING = new Set(['failed', 'dead', 'rejected']);

/** How memberhook reaches Keap right now, and what Keap last said about its limits (dashboard and Keap settings). */
export interface KeapState {
  state: 'api_key' | 'oauth_connected' | 'oauth_not_connected' | 'not_configured';
  label: string;
  /** With state api_key: where the key comes from. */
  keySource: 'environment' | 'stored' | null;
  apiUrl: string;
  pausedUntil: string | null;
  pauseReason: string | null;
  report: { at: string; groups: Array<{ name: string; figures: string }> } | null;
}

/** What the dashboard shows, ready for `views/admin/dashboard.hbs`. */
export interface DashboardData {
  roles: Array<{ slug: string; name: string; isAdmin: boolean; members: number }>;
  totalMembers: number;
  events24h: Array<{ status: string; count: number; alarming: boolean }>;
  totalEvents24h: number;
  queue: { queued: number; processing: number; depth: number; oldestAge: string | null; oldestAt: string | null };
  keap: KeapState;
  failures: Array<{ id: number; status: string; source: string; action: string; contactId: number | null; error: string | null; at: string }>;
}

export function loadDashboard(ctx: AppContext): DashboardData {
  const store = adminStore(ctx);
  const now = ctx.clock.now();

  const roles = store.membersByRole();
  const counts = store.eventsByStatusSince(new Date(now - DAY_MS).toISOString(), EVENT_STATUSES);
  const events24h = EVENT_STATUSES.map((status) => ({ status, count: counts[status], alarming: ALARMING.has(status) && counts[status] > 0 }));
  const queue = store.queue();

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
    keap: loadKeapState(ctx),
    failures: store.recentFailures(RECENT_FAILURES).map((f) => ({
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

export function loadKeapState(ctx: AppContext): KeapState {
  const { keap } = ctx;
  const mode = keap.authMode;
  const state: KeapState['state'] =
    mode === 'key' ? 'api_key' : mode === 'oauth' ? (keap.oauth?.connected ? 'oauth_connected' : 'oauth_not_connected') : 'not_configured';
  const keySource = state === 'api_key' ? (ctx.site.keapApiKeySource() ?? null) : null;
  const label =
    state === 'api_key'
      ? keySource === 'stored' ? 'API key (stored in settings)' : 'API key (from KEAP_API_KEY)'
      : { oauth_connected: 'OAuth connected', oauth_not_connected: 'OAuth set up, not connected yet', not_configured: 'Not configured' }[state];
  const report = keap.limiter.lastReported;
  const pausedUntil = keap.limiter.pausedUntil;
  return {
    state,
    label,
    keySource,
    apiUrl: ctx.config.keap.apiUrl,
    pausedUntil: pausedUntil === null ? null : formatTime(new Date(pausedUntil).toISOString()),
    pauseReason: keap.limiter.pauseReason,
    report: report && {
      at: formatTime(new Date(report.at).toISOString()),
      groups: [
        { name: 'Product throttle', figures: report.productThrottle },
        { name: 'Product quota', figures: report.productQuota },
        { name: 'Tenant throttle', figures: report.tenantThrottle },
      ].flatMap(({ name, figures }) => (figures ? [{ name, figures: describeFigures(figures) }] : [])),
    },
  };
}

/** e.g. "7 of 10 left per second (3 used)". */
function describeFigures(f: KeapLimitFigures): string {
  const window = f.timeUnit ? ` per ${f.interval && f.interval !== 1 ? `${f.interval} ` : ''}${f.timeUnit.toLowerCase()}` : '';
  const amount = f.available !== null && f.limit !== null ? `${f.available} of ${f.limit} left` : f.available !== null ? `${f.available} left` : f.limit !== null ? `limit ${f.limit}` : 'no figures';
  const used = f.used !== null ? ` (${f.used} used)` : '';
  const resets = f.expiryTime !== null ? `, resets ${formatTime(new Date(f.expiryTime).toISOString())}` : '';
  return `${amount}${window}${used}${resets}`;
}

/** "2031-03-01 09:00 UTC" from an ISO timestamp. */
export function formatTime(iso: string): string {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return match ? `${match[1]} ${match[2]} UTC` : iso;
}

/** "just now", "5 min", "3 h 20 min", "2 days". */
export function describeAge(ms: number): string {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return 'under a minute';
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  return `${Math.floor(hours / 24)} days`;
}
