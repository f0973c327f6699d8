import { Router, type Request, type Response } from 'express';
import { formFields, formText } from '../../core/forms.js';
import type { AdminUser } from '../../web/admin-shell.js';
import { formatTime } from '../../web/format.js';
import { progressFigures } from '../../web/progress.js';
import { BULK_ACTIONS, memberBulkAction, type BulkAction, type BulkActionKind, type BulkFilters } from './bulk-action-store.js';
import { describeBulkAction } from './bulk-actions.js';
import type { MembersContext } from './context.js';
import { ID_PATTERN, listHref, parseListQuery, type ListForm } from './list-query.js';

/** Counting further than this for a confirmation page is not worth the wait: "more than 10,000" is enough to decide. */
const CONFIRM_COUNT_LIMIT = 10_000;
/** At most one page of ticked members: the ticks live on the list's current page. */
const MAX_TICKED = 50;

/** What the bulk form asked for, checked: the action, the members (ticked or every match) and the list to go back to. */
interface BulkRequest {
  action: BulkActionKind;
  toRole: string | undefined;
  memberIds: number[] | undefined;
  filters: BulkFilters;
  form: ListForm;
}

/**
 * Admin pages under /admin/members/bulk: the confirmation (GET, from the list's bulk form), the start (POST, with
 * the form token), the progress page with its bar, and cancel. One bulk action runs at a time.
 */
export function memberBulkRoutes(ctx: MembersContext): Router {
  const router = Router();

  router.get('/', (req, res) => {
    const running = ctx.bulk.running();
    const parsed = parseBulkRequest(ctx, req.query as Record<string, unknown>);
    if ('problems' in parsed) return renderConfirm(ctx, res, 400, { problems: parsed.problems, backHref: parsed.backHref });
    if (running) return renderConfirm(ctx, res, 409, { running: progressView(running, ctx.clock.now()), backHref: listHref(parsed.form) });
    const { total, more } = countOf(ctx, parsed);
    renderConfirm(ctx, res, 200, {
      request: hiddenFields(parsed),
      heading: describeBulkAction({ action: parsed.action, toRole: parsed.toRole ?? null }),
      who: parsed.memberIds ? 'the ticked members' : describeFilters(parsed.filters),
      countText: `${total.toLocaleString('en')}${more ? '+' : ''}`,
      plural: total !== 1 || more,
      none: total === 0,
      dangerous: parsed.action === 'delete',
      backHref: listHref(parsed.form),
    });
  });

  router.post('/', (req, res) => {
    const admin = res.locals.admin as AdminUser;
    const parsed = parseBulkRequest(ctx, formFields(req));
    if ('problems' in parsed) return renderConfirm(ctx, res, 400, { problems: parsed.problems, backHref: parsed.backHref });
    const running = ctx.bulk.running();
    if (running) return renderConfirm(ctx, res, 409, { running: progressView(running, ctx.clock.now()), backHref: listHref(parsed.form) });
    const throughId = ctx.members.maxId();
    const { total } = parsed.memberIds ? { total: parsed.memberIds.length } : exactCount(ctx, parsed.filters, throughId);
    const id = ctx.bulk.create({
      action: parsed.action,
      ...(parsed.toRole ? { toRole: parsed.toRole } : {}),
      ...(parsed.memberIds ? { memberIds: parsed.memberIds } : { filters: parsed.filters }),
      throughId,
      total,
      requestedBy: admin.id,
      now: ctx.clock.now(),
    });
    ctx.jobs.enqueue(memberBulkAction, { bulk_id: id }, { source: 'admin' });
    ctx.logger.info({ adminId: admin.id, bulkId: id, action: parsed.action, total }, 'bulk action on members started by an administrator');
    res.redirect(303, `/admin/members/bulk/${id}`);
  });

  router.get('/:id', (req, res) => {
    const action = bulkFrom(ctx, req);
    if (!action) return ctx.admin.view(res, 404, 'members/bulk-progress', { title: 'No such bulk action', missing: true });
    // While it runs the page reloads itself (the Refresh header: no script needed) to move the bar along.
    if (action.status === 'running') res.setHeader('Refresh', '2');
    ctx.admin.view(res, 200, 'members/bulk-progress', { title: describeBulkAction(action), ...progressView(action, ctx.clock.now()) });
  });

  router.post('/:id/cancel', (req, res) => {
    const action = bulkFrom(ctx, req);
    if (!action) return ctx.admin.view(res, 404, 'members/bulk-progress', { title: 'No such bulk action', missing: true });
    if (ctx.bulk.finish(action.id, 'cancelled', ctx.clock.now())) {
      ctx.logger.info({ adminId: (res.locals.admin as AdminUser).id, bulkId: action.id }, 'bulk action on members cancelled');
    }
    res.redirect(303, `/admin/members/bulk/${action.id}`);
  });

  return router;
}

function parseBulkRequest(ctx: MembersContext, raw: Record<string, unknown>): BulkRequest | { problems: string[]; backHref: string } {
  const { form, query, problems } = parseListQuery(ctx, raw as Request['query']);
  const action = formText(raw.action);
  if (!(BULK_ACTIONS as readonly string[]).includes(action)) problems.push('Action: choose what to do with the members.');
  const toRole = formText(raw.to_role);
  if (action === 'role') {
    if (!toRole) problems.push('New role: choose the role to give them.');
    else if (!ctx.members.role(toRole)) problems.push(`New role: there is no role "${toRole}".`);
  }
  let memberIds: number[] | undefined;
  const scope = formText(raw.scope);
  if (scope === 'ticked') {
    const ticked = ([] as unknown[]).concat(raw.id ?? []);
    if (ticked.length === 0) problems.push('Tick at least one member, or choose every member the list shows.');
    else if (ticked.length > MAX_TICKED) problems.push(`Tick at most ${MAX_TICKED} members, or choose every member the list shows.`);
    else if (ticked.some((t) => typeof t !== 'string' || !ID_PATTERN.test(t))) problems.push('Members: expected member ids.');
    else memberIds = [...new Set(ticked.map(Number))];
  } else if (scope !== 'all') {
    problems.push('Members: choose the ticked members or every member the list shows.');
  }
  if (problems.length > 0) return { problems, backHref: listHref(form) };
  const filters: BulkFilters = {};
  if (query.q) filters.q = query.q;
  if (query.role) filters.role = query.role;
  if (query.tag !== undefined) filters.tag = query.tag;
  return { action: action as BulkActionKind, toRole: action === 'role' ? toRole : undefined, ...(memberIds ? { memberIds } : {}), filters, form } as BulkRequest;
}

function countOf(ctx: MembersContext, request: BulkRequest): { total: number; more: boolean } {
  if (request.memberIds) return { total: request.memberIds.length, more: false };
  const page = ctx.members.list({ ...request.filters, page: 1, pageSize: 1, countLimit: CONFIRM_COUNT_LIMIT });
  return { total: page.total, more: page.totalIsLowerBound };
}

/** The progress bar's 100 %: the members the filter matches now, up to the highest id when it started (a count query). */
function exactCount(ctx: MembersContext, filters: BulkFilters, throughId: number): { total: number } {
  return { total: ctx.members.count({ ...filters, idThrough: throughId }) };
}

/** The confirmed request, carried by the confirmation form to the POST that starts it. */
function hiddenFields(request: BulkRequest): Array<{ name: string; value: string }> {
  const fields: Array<{ name: string; value: string }> = [{ name: 'action', value: request.action }];
  if (request.toRole) fields.push({ name: 'to_role', value: request.toRole });
  if (request.memberIds) {
    fields.push({ name: 'scope', value: 'ticked' });
    for (const id of request.memberIds) fields.push({ name: 'id', value: String(id) });
  } else {
    fields.push({ name: 'scope', value: 'all' });
  }
  if (request.form.q) fields.push({ name: 'q', value: request.form.q });
  if (request.form.role) fields.push({ name: 'role', value: request.form.role });
  if (request.form.tag) fields.push({ name: 'tag', value: request.form.tag });
  return fields;
}

function describeFilters(filters: BulkFilters): string {
  const parts: string[] = [];
  if (filters.q) parts.push(`matching “${filters.q}”`);
  if (filters.role) parts.push(`with the role ${filters.role}`);
  if (filters.tag !== undefined) parts.push(`holding tag ${filters.tag}`);
  return parts.length ? `every member ${parts.join(', ')}` : 'every member';
}

function bulkFrom(ctx: MembersContext, req: Request): BulkAction | undefined {
  const raw = String(req.params.id);
  return ID_PATTERN.test(raw) ? ctx.bulk.get(Number(raw)) : undefined;
}

function renderConfirm(ctx: MembersContext, res: Response, status: number, view: Record<string, unknown>): void {
  ctx.admin.view(res, status, 'members/bulk-confirm', { title: 'Change many members', ...view });
}

/** The progress page's figures: the bar, the counts, the rate and the time left while it runs. */
function progressView(a: BulkAction, now: number) {
  const running = a.status === 'running';
  return {
    bulk: {
      ...a,
      heading: describeBulkAction(a),
      running,
      progress: progressFigures({ done: a.done, total: a.total, startedAt: a.createdAt, finishedAt: a.finishedAt, running }, now, 'members'),
      started: formatTime(a.createdAt),
      finished: a.finishedAt ? formatTime(a.finishedAt) : undefined,
    },
  };
}
