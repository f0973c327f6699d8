import { pagerFor } from '../../web/pager.js';
import { Router, type Request, type Response } from 'express';
import { isoNow } from '../../core/db.js';
import { formFields } from '../../core/forms.js';
import { EVENT_STATUSES, type EventFilter, type EventRecord, type EventStatus } from '../../core/jobs/store.js';
import type { Kernel } from '../../core/kernel.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import { formatTimeWithSeconds as formatTime } from '../../web/format.js';
import type { Member } from '../members/types.js';

/** What the event log pages work with. */
export interface EventsContext extends Kernel {
  admin: CorePluginAdmin;
  /** The member linked to a contact, shown beside its events. */
  memberOfContact(contactId: number): Member | undefined;
  /** Values that must never be shown, even inside an event's params (the current access key). */
  secrets(): string[];
}

export const EVENTS_PAGE_SIZE = 50;
const MAX_PAGE = 1_000_000;
const SHORT_ERROR_LENGTH = 140;
/** Statuses a replay may start from: the finished ones (the JSON API's rule; rejected requests have no job). */
const REPLAYABLE: ReadonlySet<EventStatus> = new Set(['failed', 'dead', 'done', 'skipped']);
// Parameters are sanitized when they arrive; this is the second line of defence for anything a plugin or a
// future source records without going through that.
const SECRET_NAME = /pass|secret|token|key|auth/i;
const SAFE_SECRET_MARKERS = new Set(['[redacted]', '(given)', '(missing)']);

export const REPLAY_FAILED_CONFIRM_MESSAGE = 'Confirm that every failed and dead event should run again.';

interface ListQuery {
  status: string;
  action: string;
  source: string;
  contactId: string;
  page: number;
}

/** Admin pages (mounted after requireAdmin): the Events pages: list, detail with attempts, replay. */
export function eventAdminRoutes(ctx: EventsContext): Router {
  const router = Router();

  router.get('/', (req, res) => {
    const { query, errors } = parseListQuery(req);
    const notice = listNotice(req);
    const base = { title: 'Events', query, statuses: statusOptions(query.status), notice, failedCount: ctx.events.countReplayableFailures() };
    if (errors.length > 0) return ctx.admin.view(res, 400, 'events/list', { ...base, errors });

    const filter: EventFilter = { page: query.page, pageSize: EVENTS_PAGE_SIZE };
    if (query.status) filter.status = query.status as EventStatus;
    if (query.action) filter.action = query.action;
    if (query.source) filter.source = query.source;
    if (query.contactId) filter.contactId = Number(query.contactId);
    const { events, total } = ctx.events.list(filter);
    ctx.admin.view(res, 200, 'events/list', {
      ...base,
      events: events.map(listRow),
      total,
      filtered: Boolean(query.status || query.action || query.source || query.contactId),
      pager: pagerFor(query.page, EVENTS_PAGE_SIZE, total, events.length, (page) => listUrl(query, page)),
    });
  });

  // Before /events/:id, so the path is not taken for an event id.
  router.get('/replay-failed', (_req, res) => {
    ctx.admin.view(res, 200, 'events/replay-failed', { title: 'Replay failed events', count: ctx.events.countReplayableFailures() });
  });

  router.post('/replay-failed', (req, res) => {
    if (formFields(req).confirm !== 'yes') {
      return ctx.admin.view(res, 400, 'events/replay-failed', {
        title: 'Replay failed events',
        count: ctx.events.countReplayableFailures(),
        error: REPLAY_FAILED_CONFIRM_MESSAGE,
      });
    }
    const count = ctx.events.replayAllFailed();
    if (count > 0) ctx.jobs.wake();
    ctx.logger.info({ adminId: res.locals.admin?.id, count }, 'admin replayed every failed and dead event');
    res.redirect(303, `/admin/events?replayed=${count}`);
  });

  router.get('/:id', (req, res) => {
    const event = findEvent(ctx, req, res);
    if (!event) return;
    const notice = req.query.replayed === '1' ? `Event #${event.id} is queued to run again.` : undefined;
    renderDetail(ctx, res, 200, event, { notice });
  });

  router.post('/:id/replay', (req, res) => {
    const event = findEvent(ctx, req, res);
    if (!event) return;
    if (event.status === 'rejected') {
      return renderDetail(ctx, res, 400, event, { error: `Event #${event.id} was rejected when it arrived; there is no job to replay.` });
    }
    if (!REPLAYABLE.has(event.status) || !ctx.events.replay(event.id)) {
      // Queued or running (or it started between the page and the click): the job will run anyway.
      const now = ctx.events.get(event.id) ?? event;
      return renderDetail(ctx, res, 409, now, { error: `Event #${event.id} is ${now.status} already; it can be replayed once it has finished.` });
    }
    ctx.jobs.wake();
    ctx.logger.info({ adminId: res.locals.admin?.id, eventId: event.id }, 'admin replayed an event');
    res.redirect(303, `/admin/events/${event.id}?replayed=1`);
  });

  return router;
}

function renderDetail(ctx: EventsContext, res: Response, status: number, event: EventRecord, extra: { notice?: string; error?: string }): void {
  const member = event.contactId === null ? undefined : ctx.memberOfContact(event.contactId);
  const queue = ctx.events.queueState(event.id);
  const secrets = ctx.secrets();
  const attempts = ctx.events.attempts(event.id);
  ctx.admin.view(res, status, 'events/detail', {
    title: `Event #${event.id}`,
    event: {
      ...event,
      badge: badgeClass(event.status),
      created: formatTime(event.createdAt),
      updated: formatTime(event.updatedAt),
      runAfter: event.status === 'queued' && event.runAfter > 0 ? formatTime(isoNow(event.runAfter)) : undefined,
      lockedUntil: queue?.lockedUntil ? formatTime(isoNow(queue.lockedUntil)) : undefined,
      lockedBy: queue?.lockedBy ?? undefined,
      paramsJson: JSON.stringify(redactParams(event.params, secrets), null, 2),
    },
    linkedMember: member && { id: member.id, email: member.email, username: member.username === member.email ? undefined : member.username },
    runs: attempts.length,
    // The queue's counter is the retry budget: a replay starts it again and a throttled run gives its attempt back.
    budgetDiffers: attempts.length !== event.attempts,
    attempts: attempts.map((a) => ({
      ...a,
      started: formatTime(a.startedAt),
      finished: a.finishedAt ? formatTime(a.finishedAt) : undefined,
      badge: outcomeBadge(a.outcome),
    })),
    replayable: REPLAYABLE.has(event.status),
    ...extra,
  });
}

/** The event named in the path, or a 404 page (an id that is not a number is as missing as one that is). */
function findEvent(ctx: EventsContext, req: Request, res: Response): EventRecord | undefined {
  const raw = String(req.params.id);
  const event = /^[1-9]\d{0,14}$/.test(raw) ? ctx.events.get(Number(raw)) : undefined;
  if (!event) {
    ctx.admin.view(res, 404, 'events/missing', { title: 'No such event', id: raw.slice(0, 40) });
    return undefined;
  }
  return event;
}

function parseListQuery(req: Request): { query: ListQuery; errors: string[] } {
  const errors: string[] = [];
  const q = req.query as Record<string, unknown>;
  const one = (name: string, label: string): string => {
    const value = q[name];
    if (value === undefined) return '';
    if (typeof value !== 'string') {
      errors.push(`${label} was given more than once.`);
      return '';
    }
    return value.trim();
  };
  const status = one('status', 'Status');
  const action = one('action', 'Action');
  const source = one('source', 'Source');
  const contactId = one('contact_id', 'Contact id');
  const pageText = one('page', 'Page');
  const query: ListQuery = { status, action, source, contactId, page: 1 };

  if (status && !(EVENT_STATUSES as readonly string[]).includes(status)) {
    errors.push(`Status "${status.slice(0, 40)}" is not one of ${EVENT_STATUSES.join(', ')}.`);
  }
  if (action.length > 64) errors.push('Action is at most 64 characters.');
  if (source.length > 64) errors.push('Source is at most 64 characters.');
  if (contactId && !/^[1-9]\d{0,14}$/.test(contactId)) errors.push(`Contact id must be a positive whole number (got "${contactId.slice(0, 40)}").`);
  if (pageText) {
    if (/^[1-9]\d{0,6}$/.test(pageText) && Number(pageText) <= MAX_PAGE) query.page = Number(pageText);
    else errors.push(`Page must be a whole number from 1 to ${MAX_PAGE} (got "${pageText.slice(0, 40)}").`);
  }
  return { query, errors };
}

function listNotice(req: Request): string | undefined {
  const replayed = req.query.replayed;
  if (typeof replayed !== 'string' || !/^\d{1,9}$/.test(replayed)) return undefined;
  const n = Number(replayed);
  if (n === 0) return 'There were no failed or dead events to replay.';
  return `${n} failed or dead ${n === 1 ? 'event is' : 'events are'} queued to run again.`;
}

function listUrl(query: ListQuery, page: number): string {
  const params = new URLSearchParams();
  if (query.status) params.set('status', query.status);
  if (query.action) params.set('action', query.action);
  if (query.source) params.set('source', query.source);
  if (query.contactId) params.set('contact_id', query.contactId);
  if (page > 1) params.set('page', String(page));
  const text = params.toString();
  return text ? `/admin/events?${text}` : '/admin/events';
}

function statusOptions(current: string) {
  return EVENT_STATUSES.map((status) => ({ status, selected: status === current }));
}

function listRow(e: EventRecord) {
  // A job that went well says what it did ("created member 12", "member.created delivered to ..."): the reason a
  // skipped job was skipped, and what an outbox delivery was, are otherwise only on its own page.
  const detail = e.error ?? e.result ?? undefined;
  return {
    id: e.id,
    source: e.source,
    action: e.action,
    contactId: e.contactId,
    status: e.status,
    badge: badgeClass(e.status),
    attempts: e.attempts,
    created: formatTime(e.createdAt),
    createdAt: e.createdAt,
    detail: detail && detail.length > SHORT_ERROR_LENGTH ? `${detail.slice(0, SHORT_ERROR_LENGTH - 1)}…` : detail,
    failed: e.error !== null,
  };
}

function badgeClass(status: EventStatus): string {
  if (status === 'failed' || status === 'dead' || status === 'rejected') return 'bad';
  if (status === 'done') return 'ok';
  if (status === 'queued' || status === 'processing') return 'warn';
  return '';
}

function outcomeBadge(outcome: string | null): string {
  if (outcome === 'failed' || outcome === 'dead' || outcome === 'crashed') return 'bad';
  if (outcome === 'done') return 'ok';
  if (outcome === 'retry' || outcome === 'throttled' || outcome === null) return 'warn';
  return '';
}

/**
 * Hides anything secret-looking in an event's parameters before they are shown: values under a secret-looking
 * name (but the receiver's own "[redacted]"/"(given)" markers), and any value holding the current access key.
 */
export function redactParams(value: unknown, secrets: readonly string[], name = ''): unknown {
  if (name && SECRET_NAME.test(name)) {
    return typeof value === 'string' && SAFE_SECRET_MARKERS.has(value) ? value : '[redacted]';
  }
  if (typeof value === 'string') return secrets.some((s) => s && value.includes(s)) ? '[redacted]' : value;
  if (Array.isArray(value)) return value.map((v) => redactParams(v, secrets));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactParams(v, secrets, k)]));
  }
  return value;
}
