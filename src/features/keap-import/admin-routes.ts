import { Router, type Request, type Response } from 'express';
import type { Clock } from '../../core/clock.js';
import { formFields, formText } from '../../core/forms.js';
import type { JobQueue } from '../../core/jobs/queue.js';
import type { Logger } from '../../core/logger.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import type { AdminUser } from '../../web/admin-shell.js';
import { formatTime } from '../../web/format.js';
import { progressFigures } from '../../web/progress.js';
import type { KeapClient } from '../keap/client.js';
import { isKeapError, KeapPermanentError } from '../keap/errors.js';
import type { MemberService } from '../members/service.js';
import { keapImportBatch } from './importer.js';
import { ON_EXISTING_CHOICES, type KeapImport, type KeapImportStore, type OnExisting } from './store.js';

export const IMPORT_PATH = '/admin/members/import';
const RECENT_IMPORTS = 5;

export interface KeapImportAdminContext {
  admin: CorePluginAdmin;
  keap: Pick<KeapClient, 'authMode' | 'listTags' | 'countContacts' | 'countContactsWithTag'>;
  members: Pick<MemberService, 'roles' | 'role'>;
  store: KeapImportStore;
  jobs: JobQueue;
  clock: Clock;
  logger: Logger;
  defaultRole(): string;
  /** Drops what the importer read ahead for an import that was cancelled. */
  forget(importId: number): void;
}

/** What the form asked for, checked. */
interface ImportRequest {
  tagId: number | null;
  role: string;
  sendWelcome: boolean;
  onExisting: OnExisting;
}

/**
 * Members → Import from Keap: the form (a tag from Keap's list, or every contact; the role for new members; welcome
 * emails, off by default; what to do with an email that already has a member), the confirmation with Keap's count
 * of the contacts (one call), the start (POST, with the form token), the progress page and cancel.
 */
export function keapImportAdminRoutes(ctx: KeapImportAdminContext): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const query = req.query as Record<string, unknown>;
    await renderForm(ctx, res, 200, {
      tagId: formText(query.tag_id),
      source: formText(query.source) || 'tag',
      role: formText(query.role) || ctx.defaultRole(),
      sendWelcome: formText(query.welcome) === 'yes',
      onExisting: formText(query.on_existing) || 'link',
    });
  });

  router.get('/confirm', async (req, res) => {
    const raw = req.query as Record<string, unknown>;
    const parsed = parseImportRequest(ctx, raw);
    if ('problems' in parsed) return renderForm(ctx, res, 400, formValues(raw), parsed.problems);
    const running = ctx.store.running();
    if (running) return renderForm(ctx, res, 409, formValues(raw), [`Another import is still running (${describeImport(running)}): wait for it to finish or cancel it.`]);
    const counted = await countContacts(ctx, parsed);
    if ('problem' in counted) return renderForm(ctx, res, counted.status, formValues(raw), [counted.problem]);
    const tagLabel = parsed.tagId === null ? undefined : tagLabelsSeen.get(ctx)?.get(parsed.tagId);
    ctx.admin.view(res, 200, 'keap-import/confirm', {
      title: 'Import from Keap',
      what: parsed.tagId === null ? 'every Keap contact' : `every Keap contact with tag ${tagLabel ? `“${tagLabel}” (${parsed.tagId})` : parsed.tagId}`,
      countText: counted.total.toLocaleString('en'),
      count: counted.total,
      none: counted.total === 0,
      role: roleName(ctx, parsed.role),
      sendWelcome: parsed.sendWelcome,
      onExistingText: parsed.onExisting === 'link' ? 'linked to their contact' : 'left alone (skipped)',
      fields: [...hiddenFields(parsed), { name: 'count', value: String(counted.total) }],
      backHref: `${IMPORT_PATH}?${new URLSearchParams(hiddenFields(parsed).map((f): [string, string] => [f.name, f.value])).toString()}`,
    });
  });

  router.post('/', async (req, res) => {
    const admin = res.locals.admin as AdminUser;
    const raw = formFields(req);
    const parsed = parseImportRequest(ctx, raw);
    if ('problems' in parsed) return renderForm(ctx, res, 400, formValues(raw), parsed.problems);
    const running = ctx.store.running();
    if (running) return renderForm(ctx, res, 409, formValues(raw), [`Another import is still running (${describeImport(running)}): wait for it to finish or cancel it.`]);
    // The count the confirmation showed is the progress bar's 100 %: not asked for again here, where the call would
    // take one of the slots of Keap's per-second limit (one for both threads) that the import's first calls want, and
    // the admin would wait for it. A tag applied meanwhile only runs the bar past 100 %.
    const total = formText(raw.count).trim();
    if (!/^\d{1,12}$/.test(total)) return renderForm(ctx, res, 400, formValues(raw), ['Count: confirm the import on the page that counts the contacts.']);
    const id = ctx.store.create({ ...parsed, tagName: null, total: Number(total), requestedBy: admin.id, now: ctx.clock.now() });
    ctx.jobs.enqueue(keapImportBatch, { import_id: id, batch: 0 });
    ctx.logger.info({ adminId: admin.id, importId: id, tagId: parsed.tagId, total: Number(total) }, 'import from keap started by an administrator');
    res.redirect(303, `${IMPORT_PATH}/${id}`);
  });

  router.get('/:id', (req, res) => {
    const imp = importFrom(ctx, req);
    if (!imp) return ctx.admin.view(res, 404, 'keap-import/progress', { title: 'No such import', missing: true });
    // While it runs the page reloads itself (the Refresh header: no script needed) to move the bar along.
    if (imp.status === 'running') res.setHeader('Refresh', '2');
    ctx.admin.view(res, 200, 'keap-import/progress', { title: 'Import from Keap', imp: { ...importView(imp, ctx.clock.now()), roleName: roleName(ctx, imp.role) } });
  });

  router.post('/:id/cancel', (req, res) => {
    const imp = importFrom(ctx, req);
    if (!imp) return ctx.admin.view(res, 404, 'keap-import/progress', { title: 'No such import', missing: true });
    if (ctx.store.finish(imp.id, 'cancelled', ctx.clock.now())) {
      ctx.forget(imp.id);
      ctx.logger.info({ adminId: (res.locals.admin as AdminUser).id, importId: imp.id }, 'import from keap cancelled');
    }
    res.redirect(303, `${IMPORT_PATH}/${imp.id}`);
  });

  return router;
}

interface FormValues {
  tagId: string;
  source: string;
  role: string;
  sendWelcome: boolean;
  onExisting: string;
}

function formValues(raw: Record<string, unknown>): FormValues {
  return {
    tagId: formText(raw.tag_id),
    source: formText(raw.source),
    role: formText(raw.role),
    sendWelcome: formText(raw.welcome) === 'yes',
    onExisting: formText(raw.on_existing),
  };
}

async function renderForm(ctx: KeapImportAdminContext, res: Response, status: number, values: FormValues, problems?: string[]): Promise<void> {
  let tags: Array<{ id: number; label: string; selected: boolean }> = [];
  let keapError: string | undefined;
  if (ctx.keap.authMode === 'none') keapError = 'Keap is not set up yet (Settings → Keap connection), so there is nothing to import from.';
  else {
    try {
      tags = (await ctx.keap.listTags())
        .map((t) => ({ id: t.id, label: t.category ? `${t.category}: ${t.name}` : t.name, selected: String(t.id) === values.tagId }))
        .sort((a, b) => a.label.localeCompare(b.label));
      tagLabelsSeen.set(ctx, new Map(tags.map((t) => [t.id, t.label])));
    } catch (err) {
      keapError = `Keap could not list its tags: ${isKeapError(err) ? err.message : 'an unexpected error (see the log)'}`;
      if (!isKeapError(err)) ctx.logger.error({ err }, 'listing keap tags failed');
    }
  }
  const running = ctx.store.running();
  ctx.admin.view(res, status, 'keap-import/form', {
    title: 'Import from Keap',
    problems,
    keapError,
    tags,
    allContacts: values.source === 'all',
    roles: ctx.members.roles().filter((r) => !r.isAdmin).map((r) => ({ slug: r.slug, name: r.name, selected: r.slug === values.role })),
    sendWelcome: values.sendWelcome,
    onExisting: ON_EXISTING_CHOICES.map((value) => ({ value, checked: value === (values.onExisting || 'link'), label: ON_EXISTING_LABELS[value] })),
    running: running && { id: running.id, text: describeImport(running) },
    recent: ctx.store.recent(RECENT_IMPORTS).map((imp) => ({ id: imp.id, text: describeImport(imp), status: imp.status, started: formatTime(imp.createdAt) })),
  });
}

/**
 * The tag names the form listed last, so the confirmation names the tag chosen there without a second Keap call (its
 * one call is the count). A tag not in it (the form not loaded since a restart) is shown by its id.
 */
const tagLabelsSeen = new WeakMap<KeapImportAdminContext, Map<number, string>>();

function roleName(ctx: KeapImportAdminContext, slug: string): string {
  return ctx.members.role(slug)?.name ?? slug;
}

const ON_EXISTING_LABELS: Record<OnExisting, string> = {
  link: 'link the member to the contact (when it is not linked to one yet)',
  skip: 'skip the contact',
};

function parseImportRequest(ctx: KeapImportAdminContext, raw: Record<string, unknown>): ImportRequest | { problems: string[] } {
  const problems: string[] = [];
  const source = formText(raw.source);
  let tagId: number | null = null;
  if (source === 'tag') {
    const tag = formText(raw.tag_id).trim();
    if (!/^[1-9]\d{0,15}$/.test(tag)) problems.push('Tag: choose the tag whose contacts to import.');
    else tagId = Number(tag);
  } else if (source !== 'all') {
    problems.push('Contacts: choose a tag, or every contact.');
  }
  const role = formText(raw.role).trim();
  const found = role ? ctx.members.role(role) : undefined;
  if (!found) problems.push(role ? `Role: there is no role "${role}".` : 'Role: choose the role new members get.');
  else if (found.isAdmin) problems.push(`Role: an import never creates administrators ("${role}" has admin rights).`);
  const welcome = formText(raw.welcome);
  if (welcome !== '' && welcome !== 'yes') problems.push('Welcome emails: tick the box or leave it empty.');
  const onExisting = formText(raw.on_existing) || 'link';
  if (!(ON_EXISTING_CHOICES as readonly string[]).includes(onExisting)) problems.push('Existing members: choose link or skip.');
  if (problems.length > 0) return { problems };
  return { tagId, role, sendWelcome: welcome === 'yes', onExisting: onExisting as OnExisting };
}

/** Keap's count of the contacts the import covers: one call (v1 lists answer `count` with `limit=1`). */
async function countContacts(ctx: KeapImportAdminContext, request: ImportRequest): Promise<{ total: number } | { problem: string; status: number }> {
  if (ctx.keap.authMode === 'none') return { problem: 'Keap is not set up yet (Settings → Keap connection).', status: 409 };
  try {
    return { total: request.tagId === null ? await ctx.keap.countContacts() : await ctx.keap.countContactsWithTag(request.tagId) };
  } catch (err) {
    if (err instanceof KeapPermanentError && err.status === 404) return { problem: `Tag: Keap has no tag ${request.tagId}.`, status: 400 };
    if (!isKeapError(err)) ctx.logger.error({ err }, 'counting keap contacts failed');
    return { problem: `Keap could not count the contacts: ${isKeapError(err) ? err.message : 'an unexpected error (see the log)'}`, status: 502 };
  }
}

function hiddenFields(request: ImportRequest): Array<{ name: string; value: string }> {
  const fields = [
    { name: 'source', value: request.tagId === null ? 'all' : 'tag' },
    { name: 'role', value: request.role },
    { name: 'on_existing', value: request.onExisting },
  ];
  if (request.tagId !== null) fields.push({ name: 'tag_id', value: String(request.tagId) });
  if (request.sendWelcome) fields.push({ name: 'welcome', value: 'yes' });
  return fields;
}

function importFrom(ctx: KeapImportAdminContext, req: Request): KeapImport | undefined {
  const raw = String(req.params.id);
  return /^[1-9]\d{0,15}$/.test(raw) ? ctx.store.get(Number(raw)) : undefined;
}

function describeImport(imp: KeapImport): string {
  const what = imp.tagId === null ? 'every contact' : `tag ${imp.tagName ? `${imp.tagName} (${imp.tagId})` : imp.tagId}`;
  return `${what}: ${imp.done.toLocaleString('en')} of ${imp.total.toLocaleString('en')} contacts`;
}

/** The progress page: the bar, the counts, and the summary with the reasons contacts were skipped. */
function importView(imp: KeapImport, now: number) {
  const running = imp.status === 'running';
  const skipped = Object.entries(imp.skipped)
    .map(([reason, tally]) => ({ reason, count: tally.count, examples: tally.examples.join(', '), more: tally.count > tally.examples.length }))
    .sort((a, b) => b.count - a.count);
  return {
    ...imp,
    running,
    what: imp.tagId === null ? 'Every Keap contact' : `Keap contacts with tag ${imp.tagName ? `“${imp.tagName}” (${imp.tagId})` : imp.tagId}`,
    badge: running ? 'warn' : imp.status === 'done' ? 'ok' : 'bad',
    progress: progressFigures({ done: imp.done, total: Math.max(imp.total, imp.done), startedAt: imp.createdAt, finishedAt: imp.finishedAt, running }, now, 'contacts'),
    started: formatTime(imp.createdAt),
    finished: imp.finishedAt ? formatTime(imp.finishedAt) : undefined,
    skippedTotal: skipped.reduce((sum, s) => sum + s.count, 0),
    skippedReasons: skipped,
    // The members it made, for the admin to look at next: those holding the tag, or all of them.
    membersHref: imp.tagId === null ? '/admin/members' : `/admin/members?tag=${imp.tagId}`,
  };
}
