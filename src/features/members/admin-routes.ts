import { once } from 'node:events';
import { setImmediate } from 'node:timers/promises';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { AppError, badRequest, notFound } from '../../core/errors.js';
import { formFields, formText } from '../../core/forms.js';
import type { EventRecord } from '../../core/jobs/store.js';
import type { AdminUser } from '../../web/admin-shell.js';
import { csvLine } from '../../web/csv.js';
import { formatTime } from '../../web/format.js';
import { webhookJobType } from '../http-post/jobs.js';
import { passwordWriteBack } from '../member-sync/jobs.js';
import { welcomeEmail } from '../welcome-email/jobs.js';
import type { MembersContext } from './context.js';
import { createContactFor, findContactToLink, KEAP_LINK_CHOICES, type KeapContactCard, type KeapLinkChoice, type KeapLinkResult } from './keap-link.js';
import { generatePassword } from './passwords.js';
import { requestPasswordReset } from './password-reset.js';
import { isUniqueViolation, LAST_ADMINISTRATOR_MESSAGE } from './service.js';
import { describeBulkAction } from './bulk-actions.js';
import { memberBulkRoutes } from './bulk-routes.js';
import { ID_PATTERN, listHref, PAGE_SIZE, parseListQuery } from './list-query.js';
import { MEMBER_SORTS, type Member, type MemberSort, type Role } from './types.js';

export const PASSWORD_MIN = 10;
export const PASSWORD_MAX = 200;
/** Source of the events the admin pages queue (the events table's `source`). */
export const ADMIN_SOURCE = 'admin';
export const SELF_DEMOTION_MESSAGE = 'You cannot take away your own admin rights: another administrator has to do that.';
export const SELF_DELETION_MESSAGE = 'You cannot delete your own account: another administrator has to do that.';
export const NOT_LINKED_MESSAGE = 'This member is not linked to a Keap contact, so there is nothing to resync.';
export const ALREADY_LINKED_MESSAGE = 'This member is already linked to a Keap contact.';

const SORT_LABELS: Record<MemberSort, string> = { newest: 'Newest first', oldest: 'Oldest first', email: 'Email', name: 'Name' };
/** A search matching more members than this shows "10,000+": counting every match of a one-letter search costs more than the page. */
const SEARCH_COUNT_LIMIT = 10_000;
const emailSchema = z.email().max(254);

/** Admin pages (mounted after requireAdmin): the Members pages: list, search, member page and its actions, add by hand. */
export function memberAdminRoutes(ctx: MembersContext): Router {
  const router = Router();
  router.use('/bulk', memberBulkRoutes(ctx));

  router.get('/', (req, res) => {
    const { form, query, problems } = parseListQuery(ctx, req.query);
    const { members, total, totalIsLowerBound: more } = ctx.members.list({ ...query, countLimit: SEARCH_COUNT_LIMIT });
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    // Past the count limit the pages are not counted either: a full page means there may be another.
    const hasNext = query.page < pages || (more && members.length === PAGE_SIZE);
    const href = (page: number) => listHref({ ...form, page });
    const first = total === 0 ? 0 : (query.page - 1) * PAGE_SIZE + 1;
    ctx.admin.view(res, problems.length ? 400 : 200, 'members/list', {
      title: 'Members',
      form,
      problems,
      filtered: Boolean(form.q || form.role || form.tag),
      exportHref: listHref({ ...form, page: 1 }).replace('/admin/members', '/admin/members/export.csv'),
      roles: ctx.members.roles().map((r) => ({ slug: r.slug, name: r.name, selected: r.slug === form.role })),
      bulkRoles: ctx.members.roles().map((r) => ({ slug: r.slug, name: r.name })),
      bulkRunning: runningBulk(ctx),
      tags: ctx.members.heldTags().map((t) => ({ id: t.id, name: t.name || `Tag ${t.id}`, selected: String(t.id) === form.tag })),
      sorts: MEMBER_SORTS.map((s) => ({ value: s, label: SORT_LABELS[s], selected: s === form.sort })),
      members: members.map(listRow),
      total,
      totalText: `${total.toLocaleString('en')}${more ? '+' : ''}`,
      shownFrom: first.toLocaleString('en'),
      shownTo: (first === 0 ? 0 : first + members.length - 1).toLocaleString('en'),
      page: query.page,
      pages,
      pagesText: `${pages.toLocaleString('en')}${more ? '+' : ''}`,
      pastEnd: total > 0 && query.page > pages && members.length === 0,
      lastHref: href(pages),
      prevHref: query.page > 1 ? href(Math.min(query.page - 1, pages)) : undefined,
      nextHref: hasNext ? href(query.page + 1) : undefined,
      deleted: idFrom(req.query.deleted),
    });
  });

  // Every member the list's filters match (all pages), as a spreadsheet reads it; written as it is read, so a
  // million members cost a few hundred rows of memory, and stopped when the browser goes away.
  router.get('/export.csv', async (req, res) => {
    const { query, problems } = parseListQuery(ctx, req.query);
    if (problems.length) throw badRequest(`The export was not made: ${problems.join(' ')}`);
    const { page: _page, pageSize: _pageSize, ...filters } = query;
    const day = new Date(ctx.clock.now()).toISOString().slice(0, 10);
    res.status(200);
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="members-${day}.csv"`);
    res.write(csvLine(EXPORT_COLUMNS.map((c) => c.header)));
    let exported = 0;
    for (const batch of ctx.members.listAll(filters)) {
      if (res.destroyed) return;
      if (!res.write(batch.map((m) => csvLine(EXPORT_COLUMNS.map((c) => c.value(m)))).join(''))) await once(res, 'drain');
      // Let other requests (and Keap's posts) in between batches, even when the client reads as fast as we write.
      else await setImmediate();
      exported += batch.length;
    }
    res.end();
    ctx.logger.info({ adminId: res.locals.admin?.id, exported, filtered: Boolean(filters.q || filters.role || filters.tag) }, 'admin exported members');
  });

  router.get('/new', (_req, res) => renderNewForm(ctx, res, 200, { role: ctx.site.defaultRole(), sendWelcome: true, keapLink: 'none', keapContact: '' }, {}));

  // "Look it up": who the id or email is in Keap, shown on the form before anything is saved.
  router.post('/new/lookup', async (req, res) => {
    const form = newMemberForm(formFields(req));
    const found = await lookUpContact(ctx, form.keapContact);
    if (!found.ok) return renderNewForm(ctx, res, found.unreachable ? 503 : 400, { ...form, keapLink: 'link' }, { keap_contact: found.message });
    renderNewForm(ctx, res, 200, { ...form, keapLink: 'link', keapContact: String(found.contact.id) }, {}, { found: contactCard(found.contact, form.email) });
  });

  router.post('/new', async (req, res) => {
    const body = formFields(req);
    const form = newMemberForm(body);
    // "Add without linking", offered when Keap could not be asked.
    if (formText(body.without_keap) === '1') form.keapLink = 'none';
    const password = formText(body.password);
    const errors = validateNewMember(ctx, form, password);
    if (Object.keys(errors).length > 0) return renderNewForm(ctx, res, 400, form, errors);

    let link: KeapLinkResult | undefined;
    if (form.keapLink !== 'none') {
      link = form.keapLink === 'link' ? await lookUpContact(ctx, form.keapContact) : await createContactFor(ctx, form);
      if (!link.ok) {
        const field = form.keapLink === 'link' ? 'keap_contact' : 'keap_link';
        return renderNewForm(ctx, res, link.unreachable ? 503 : 400, form, { [field]: `${link.message} The member was not added.` }, { offerWithout: link.unreachable });
      }
    }
    const contact = link?.ok ? link.contact : undefined;

    const generated = password === '';
    const chosen = generated ? generatePassword() : password;
    // As a Keap post's add does: a generated password goes to the contact's password field when there is one.
    const writeBack = generated && contact !== undefined && ctx.site.passwordField() !== undefined;
    let welcomeEvent: number | undefined;
    let member: Member;
    try {
      member = await ctx.members.create(
        {
          email: form.email,
          username: form.username || form.email,
          role: form.role,
          password: chosen,
          firstName: form.firstName,
          lastName: form.lastName,
          keapContactId: contact?.id ?? null,
          fields: {},
          tags: [],
        },
        (created) => {
          // In the member's own transaction, like member-sync: the follow-ups are queued exactly when the member
          // exists, and a generated password waits for them (and only for them).
          if (generated && (writeBack || form.sendWelcome)) ctx.members.savePendingPassword(created.id, chosen, { keap: writeBack, email: form.sendWelcome });
          const contactId = contact ? { contact_id: contact.id } : {};
          if (writeBack) ctx.jobs.enqueue(passwordWriteBack, { member_id: created.id, ...contactId }, { source: ADMIN_SOURCE });
          // Tags and fields of a contact that was already in Keap, before the welcome email (same contact: in turn).
          if (link?.ok && !link.created) ctx.jobs.enqueue(webhookJobType('update'), { contact_id: link.contact.id }, { source: ADMIN_SOURCE });
          if (form.sendWelcome) welcomeEvent = enqueueWelcome(ctx, created, res.locals.admin!, contact?.id).id;
        },
      );
    } catch (err) {
      // Someone took the email, username or contact between the checks and the insert.
      const created = contact && link?.ok && link.created ? ` Keap contact ${contact.id} was created for it: link it from the member's page once added.` : '';
      if (isUniqueViolation(err, 'members.email')) return renderNewForm(ctx, res, 400, form, { email: `A member with this email already exists.${created}` });
      if (isUniqueViolation(err, 'members.username')) return renderNewForm(ctx, res, 400, form, { username: `Another member has this username.${created}` });
      if (isUniqueViolation(err, 'members.keap_contact_id')) return renderNewForm(ctx, res, 400, form, { keap_contact: `Keap contact ${contact?.id ?? ''} is already linked to another member.` });
      throw err;
    }
    ctx.logger.info({ memberId: member.id, adminId: res.locals.admin!.id, keapContactId: contact?.id, keapContactCreated: link?.ok ? link.created : undefined }, 'member added by an administrator');
    const keap: Record<string, string> = contact ? { keap: link?.ok && link.created ? 'created' : 'linked' } : {};
    res.redirect(303, memberHref(member.id, { done: 'created', ...keap, ...(welcomeEvent !== undefined ? { event: welcomeEvent } : {}), ...(generated ? { generated: 1 } : {}) }));
  });

  // The member page's "Keap" panel for a member not linked to a contact: look up, link, or create one.
  router.post('/:id/keap/lookup', async (req, res) => {
    const member = memberFrom(ctx, req);
    if (member.keapContactId !== null) return renderMember(ctx, req, res, 409, member, { error: ALREADY_LINKED_MESSAGE });
    const ref = formText(formFields(req).keap_contact).trim();
    const found = await lookUpContact(ctx, ref, member.id);
    if (!found.ok) return renderMember(ctx, req, res, found.unreachable ? 503 : 400, member, { keapForm: { keapLink: 'link', keapContact: ref }, keapError: found.message });
    renderMember(ctx, req, res, 200, member, { keapForm: { keapLink: 'link', keapContact: String(found.contact.id) }, keapFound: contactCard(found.contact, member.email) });
  });

  router.post('/:id/keap', async (req, res) => {
    const member = memberFrom(ctx, req);
    if (member.keapContactId !== null) return renderMember(ctx, req, res, 409, member, { error: ALREADY_LINKED_MESSAGE });
    const body = formFields(req);
    const keapForm = { keapLink: keapLinkChoice(body.keap_link), keapContact: formText(body.keap_contact).trim() };
    if (keapForm.keapLink === 'none') return renderMember(ctx, req, res, 400, member, { keapForm, keapError: 'Choose “Link to an existing contact” or “Create a contact in Keap”.' });
    const notConnected = keapNotConnected(ctx);
    if (notConnected) return renderMember(ctx, req, res, 400, member, { keapForm, keapError: notConnected });
    const link = keapForm.keapLink === 'link' ? await lookUpContact(ctx, keapForm.keapContact, member.id) : await createContactFor(ctx, member);
    if (!link.ok) return renderMember(ctx, req, res, link.unreachable ? 503 : 400, member, { keapForm, keapError: link.message });
    try {
      await ctx.members.update(member.id, { profile: {}, keapContactId: link.contact.id });
    } catch (err) {
      if (isUniqueViolation(err, 'members.keap_contact_id')) return renderMember(ctx, req, res, 409, member, { keapForm, keapError: `Keap contact ${link.contact.id} is already linked to another member.` });
      throw err;
    }
    // A contact that was already in Keap brings its tags and fields (and, from now on, its email and names).
    const resync = link.created ? undefined : ctx.jobs.enqueue(webhookJobType('update'), { contact_id: link.contact.id }, { source: ADMIN_SOURCE }).id;
    ctx.logger.info({ memberId: member.id, adminId: res.locals.admin!.id, keapContactId: link.contact.id, keapContactCreated: link.created }, 'member linked to a Keap contact by an administrator');
    res.redirect(303, memberHref(member.id, { done: link.created ? 'keap_created' : 'keap_linked', ...(resync !== undefined ? { event: resync } : {}) }));
  });

  router.get('/:id', (req, res) => {
    const member = memberFrom(ctx, req);
    renderMember(ctx, req, res, 200, member, {});
  });

  router.post('/:id/role', async (req, res) => {
    const member = memberFrom(ctx, req);
    const admin = res.locals.admin!;
    const slug = formText(formFields(req).role);
    const role = ctx.members.role(slug);
    if (!role) return renderMember(ctx, req, res, 400, member, { error: slug ? `There is no role "${slug}".` : 'Choose a role.' });
    if (member.id === admin.id && member.roleIsAdmin && !role.isAdmin) return renderMember(ctx, req, res, 409, member, { error: SELF_DEMOTION_MESSAGE });
    try {
      await ctx.members.update(member.id, { profile: {}, role: role.slug }, { keepAnAdministrator: true });
    } catch (err) {
      if (err instanceof AppError && err.status === 409) return renderMember(ctx, req, res, 409, member, { error: err.publicMessage });
      throw err;
    }
    ctx.logger.info({ memberId: member.id, adminId: admin.id, from: member.role, to: role.slug }, 'member role changed by an administrator');
    res.redirect(303, memberHref(member.id, { done: 'role' }));
  });

  router.post('/:id/profile', async (req, res) => {
    const member = memberFrom(ctx, req);
    const body = formFields(req);
    const form: ProfileForm = {
      email: formText(body.email).trim(),
      username: formText(body.username).trim(),
      firstName: formText(body.first_name).trim(),
      lastName: formText(body.last_name).trim(),
    };
    const errors = validateProfile(ctx, member, form);
    if (Object.keys(errors).length > 0) return renderMember(ctx, req, res, 400, member, { profileForm: form, profileErrors: errors });
    // A username that was the old email (as for members made from Keap) follows the email, or logging in by the
    // old address would still work.
    const username = form.username === member.username && member.username.toLowerCase() === member.email.toLowerCase() ? form.email : form.username;
    try {
      const { changed } = await ctx.members.update(member.id, { profile: { email: form.email, firstName: form.firstName, lastName: form.lastName }, username });
      ctx.logger.info({ memberId: member.id, adminId: res.locals.admin!.id, changed }, 'member profile edited by an administrator');
    } catch (err) {
      // Someone took the email or username between the check and the update.
      if (isUniqueViolation(err)) return renderMember(ctx, req, res, 409, member, { profileForm: form, profileErrors: { email: 'Another member has this email or username now.' } });
      throw err;
    }
    res.redirect(303, memberHref(member.id, { done: 'profile' }));
  });

  router.post('/:id/block', async (req, res) => {
    const member = memberFrom(ctx, req);
    try {
      await ctx.members.block(member.id, `blocked by ${res.locals.admin!.email}`, ctx.clock.now());
    } catch (err) {
      if (err instanceof AppError && err.status === 409) return renderMember(ctx, req, res, 409, member, { error: err.publicMessage });
      throw err;
    }
    ctx.logger.info({ memberId: member.id, adminId: res.locals.admin!.id }, 'member blocked by an administrator');
    res.redirect(303, memberHref(member.id, { done: 'blocked' }));
  });

  router.post('/:id/unblock', async (req, res) => {
    const member = memberFrom(ctx, req);
    await ctx.members.unblock(member.id);
    ctx.logger.info({ memberId: member.id, adminId: res.locals.admin!.id }, 'member unblocked by an administrator');
    res.redirect(303, memberHref(member.id, { done: 'unblocked' }));
  });

  router.post('/:id/reset-password', async (req, res) => {
    const member = memberFrom(ctx, req);
    requestPasswordReset(ctx, member);
    res.redirect(303, memberHref(member.id, { done: 'reset' }));
  });

  router.post('/:id/welcome', (req, res) => {
    const member = memberFrom(ctx, req);
    const { id } = enqueueWelcome(ctx, member, res.locals.admin!);
    res.redirect(303, memberHref(member.id, { done: 'welcome', event: id }));
  });

  router.post('/:id/resync', (req, res) => {
    const member = memberFrom(ctx, req);
    if (member.keapContactId === null) return renderMember(ctx, req, res, 400, member, { error: NOT_LINKED_MESSAGE });
    const contactId = member.keapContactId;
    // The job a Keap HTTP Post `wpf_action=update` queues, so a resync asked for while an identical update is still
    // queued is folded into it instead of fetching the contact twice.
    const { id } = ctx.jobs.enqueue(webhookJobType('update'), { contact_id: contactId }, { source: ADMIN_SOURCE });
    ctx.logger.info({ memberId: member.id, adminId: res.locals.admin!.id, eventId: id }, 'member resync queued by an administrator');
    res.redirect(303, memberHref(member.id, { done: 'resync', event: id }));
  });

  router.get('/:id/delete', (req, res) => {
    const member = memberFrom(ctx, req);
    renderDelete(ctx, res, 200, member);
  });

  router.post('/:id/delete', async (req, res) => {
    const member = memberFrom(ctx, req);
    const admin = res.locals.admin!;
    if (member.id === admin.id) return renderDelete(ctx, res, 409, member, SELF_DELETION_MESSAGE);
    try {
      await ctx.members.delete(member.id, { keepAnAdministrator: true });
    } catch (err) {
      if (err instanceof AppError && err.status === 409) return renderDelete(ctx, res, 409, member, err.publicMessage);
      throw err;
    }
    ctx.logger.info({ memberId: member.id, adminId: admin.id }, 'member deleted by an administrator');
    res.redirect(303, `/admin/members?deleted=${member.id}`);
  });

  return router;
}

// ---------------------------------------------------------------------------------------------------------------
// The list

function runningBulk(ctx: MembersContext) {
  const running = ctx.bulk.running();
  return running && { id: running.id, heading: describeBulkAction(running), done: running.done.toLocaleString('en'), total: running.total.toLocaleString('en') };
}

/** The export's columns, in order. */
const EXPORT_COLUMNS: Array<{ header: string; value: (m: Member) => string | number | null }> = [
  { header: 'id', value: (m) => m.id },
  { header: 'email', value: (m) => m.email },
  { header: 'username', value: (m) => m.username },
  { header: 'first_name', value: (m) => m.firstName },
  { header: 'last_name', value: (m) => m.lastName },
  { header: 'role', value: (m) => m.role },
  { header: 'keap_contact_id', value: (m) => m.keapContactId },
  { header: 'tags', value: (m) => m.tags.map((t) => t.name || `Tag ${t.id}`).join('; ') },
  { header: 'tag_ids', value: (m) => m.tags.map((t) => t.id).join(' ') },
  { header: 'created_at', value: (m) => m.createdAt },
  { header: 'updated_at', value: (m) => m.updatedAt },
];

const TAGS_IN_LIST = 3;

function listRow(m: Member) {
  return {
    id: m.id,
    email: m.email,
    username: m.username === m.email ? undefined : m.username,
    name: fullName(m),
    role: m.role,
    roleIsAdmin: m.roleIsAdmin,
    blocked: m.blocked !== null,
    tags: m.tags.slice(0, TAGS_IN_LIST).map((t) => t.name || `Tag ${t.id}`),
    moreTags: m.tags.length > TAGS_IN_LIST ? m.tags.length - TAGS_IN_LIST : 0,
    created: formatTime(m.createdAt),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The member page

function memberFrom(ctx: MembersContext, req: Request): Member {
  const raw = String(req.params.id);
  const member = ID_PATTERN.test(raw) ? ctx.members.findById(Number(raw)) : undefined;
  if (!member) throw notFound(`There is no member #${raw}.`);
  return member;
}

function memberHref(id: number, params: Record<string, string | number> = {}): string {
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)])).toString();
  return `/admin/members/${id}${qs ? `?${qs}` : ''}`;
}

/**
 * The contact in Keap's web app. Neither KEAP.md nor the REST specs document a link to the app (only API URLs), so
 * this is the address Keap's own web app uses for a contact's record, as of 2026.
 */
export function keapContactUrl(contactId: number): string {
  return `https://keap.app/contacts/details/${contactId}`;
}

const EVENTS_ON_MEMBER_PAGE = 20;

interface ProfileForm {
  email: string;
  username: string;
  firstName: string;
  lastName: string;
}
type ProfileErrors = Partial<Record<'email' | 'username' | 'first_name' | 'last_name', string>>;

function validateProfile(ctx: MembersContext, member: Member, form: ProfileForm): ProfileErrors {
  const errors: ProfileErrors = {};
  const other = (found: Member | undefined) => found !== undefined && found.id !== member.id;
  if (!form.email) errors.email = 'Enter an email address.';
  else if (!emailSchema.safeParse(form.email).success) errors.email = 'Enter a valid email address, like someone@example.com.';
  else if (other(ctx.members.findByEmail(form.email))) errors.email = 'Another member has this email.';
  if (!form.username) errors.username = 'Enter a username (the email is fine).';
  else if (form.username.length > 254) errors.username = 'Use at most 254 characters.';
  else if (form.username.toLowerCase() !== member.username.toLowerCase() && ctx.members.usernameTaken(form.username)) errors.username = 'Another member has this username.';
  if (form.firstName.length > 200) errors.first_name = 'Use at most 200 characters.';
  if (form.lastName.length > 200) errors.last_name = 'Use at most 200 characters.';
  return errors;
}

function renderMember(
  ctx: MembersContext,
  req: Request,
  res: Response,
  status: number,
  member: Member,
  extra: { error?: string; profileForm?: ProfileForm; profileErrors?: ProfileErrors; keapForm?: KeapForm; keapError?: string; keapFound?: ContactCardView },
): void {
  const admin = res.locals.admin!;
  const events = member.keapContactId === null ? { events: [], total: 0 } : ctx.events.list({ contactId: member.keapContactId, page: 1, pageSize: EVENTS_ON_MEMBER_PAGE });
  ctx.admin.view(res, status, 'members/show', {
    title: member.email,
    member: {
      ...member,
      name: fullName(member),
      created: formatTime(member.createdAt),
      updated: formatTime(member.updatedAt),
      blockedText: member.blocked ? `${formatTime(member.blocked.at)}: ${member.blocked.reason}` : undefined,
    },
    fields: Object.entries(member.fields).map(([name, value]) => ({ name, value: typeof value === 'string' ? value : JSON.stringify(value) })),
    roles: ctx.members.roles().map((r) => ({ slug: r.slug, name: r.name, isAdmin: r.isAdmin, selected: r.slug === member.role })),
    isSelf: member.id === admin.id,
    keapUrl: member.keapContactId === null ? undefined : keapContactUrl(member.keapContactId),
    events: events.events.map(eventRow),
    moreEvents: events.total > events.events.length,
    eventsHref: member.keapContactId === null ? undefined : `/admin/events?contact_id=${member.keapContactId}`,
    notice: status === 200 ? noticeFor(req, member) : undefined,
    error: extra.error,
    profileForm: extra.profileForm ?? { email: member.email, username: member.username, firstName: member.firstName, lastName: member.lastName },
    profileErrors: extra.profileErrors ?? {},
    profileOpen: extra.profileErrors !== undefined,
    keap: member.keapContactId === null ? keapPanel(ctx, `/admin/members/${member.id}/keap/lookup`, extra.keapForm ?? { keapLink: 'link', keapContact: member.email }, extra.keapError, extra.keapFound) : undefined,
  });
}

function eventRow(e: EventRecord) {
  const bad = e.status === 'failed' || e.status === 'dead' || e.status === 'rejected';
  return { id: e.id, action: e.action, source: e.source, status: e.status, bad, ok: e.status === 'done', detail: e.error ?? e.result, at: formatTime(e.createdAt) };
}

/** What the action that redirected here did, from a fixed list (the query string never supplies the words). */
function noticeFor(req: Request, member: Member): { text: string; eventId?: number } | undefined {
  const eventId = idFrom(req.query.event);
  const withEvent = (text: string) => (eventId === undefined ? { text } : { text, eventId });
  switch (req.query.done) {
    case 'role':
      return { text: `Role is now ${member.role}.` };
    case 'profile':
      return { text: 'Profile saved.' };
    case 'blocked':
      return { text: 'Blocked: the member cannot log in, and its sessions have ended.' };
    case 'unblocked':
      return { text: 'Unblocked: the member can log in again.' };
    case 'reset':
      return { text: `A password reset email with a single-use link is queued for ${member.email}.` };
    case 'welcome':
      return withEvent('Welcome email queued');
    case 'resync':
      return withEvent(`Resync from Keap contact ${member.keapContactId ?? ''} queued`);
    case 'keap_linked':
      return withEvent(`Linked to Keap contact ${member.keapContactId ?? ''}; its tags and fields are being fetched`);
    case 'keap_created':
      return { text: `Keap contact ${member.keapContactId ?? ''} was created with this member's email and names, and linked.` };
    case 'created': {
      const generated = req.query.generated === '1';
      const keap = req.query.keap === 'created' ? `, linked to the new Keap contact ${member.keapContactId ?? ''}` : req.query.keap === 'linked' ? `, linked to Keap contact ${member.keapContactId ?? ''}` : '';
      if (eventId !== undefined) return withEvent(`Member added${generated ? ' with a generated password' : ''}${keap}; welcome email queued`);
      return { text: `Member added${keap}.${generated ? ' Its password was generated and not shown: send a welcome email or a password reset so the member can log in.' : ''}` };
    }
    default:
      return undefined;
  }
}

function renderDelete(ctx: MembersContext, res: Response, status: number, member: Member, error?: string): void {
  const admin = res.locals.admin!;
  const isSelf = member.id === admin.id;
  const lastAdmin = member.roleIsAdmin && ctx.members.countAdministrators() <= 1;
  ctx.admin.view(res, status, 'members/delete', {
    title: `Delete ${member.email}`,
    member: { ...member, name: fullName(member) },
    refusal: error ?? (isSelf ? SELF_DELETION_MESSAGE : lastAdmin ? LAST_ADMINISTRATOR_MESSAGE : undefined),
    error,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Add by hand

interface KeapForm {
  keapLink: KeapLinkChoice;
  /** A contact id or email, for "link to an existing contact". */
  keapContact: string;
}

interface NewMemberForm extends KeapForm {
  email: string;
  username: string;
  firstName: string;
  lastName: string;
  role: string;
  sendWelcome: boolean;
}

type NewMemberErrors = Partial<Record<'email' | 'username' | 'first_name' | 'last_name' | 'role' | 'password' | 'keap_link' | 'keap_contact', string>>;

function newMemberForm(body: Record<string, unknown>): NewMemberForm {
  return {
    email: formText(body.email).trim(),
    username: formText(body.username).trim(),
    firstName: formText(body.first_name).trim(),
    lastName: formText(body.last_name).trim(),
    role: formText(body.role),
    sendWelcome: formText(body.send_welcome) !== '',
    keapLink: keapLinkChoice(body.keap_link),
    keapContact: formText(body.keap_contact).trim(),
  };
}

function keapLinkChoice(value: unknown): KeapLinkChoice {
  const text = formText(value);
  return (KEAP_LINK_CHOICES as readonly string[]).includes(text) ? (text as KeapLinkChoice) : 'none';
}

/** Why Keap cannot be asked at all (no key, no OAuth connection configured), or undefined when it can. */
function keapNotConnected(ctx: MembersContext): string | undefined {
  return ctx.keap.authMode === 'none' ? 'Keap is not connected: set it up in Settings, Keap connection, or leave the member not linked.' : undefined;
}

async function lookUpContact(ctx: MembersContext, reference: string, memberId?: number): Promise<KeapLinkResult> {
  const notConnected = keapNotConnected(ctx);
  if (notConnected) return { ok: false, message: notConnected, unreachable: false };
  return findContactToLink(ctx, reference, memberId);
}

interface ContactCardView {
  id: number;
  name: string;
  email: string | null;
  /** The contact's email is not the member's: Keap's replaces it at the next sync. */
  otherEmail: boolean;
}

function contactCard(contact: KeapContactCard, memberEmail: string): ContactCardView {
  return { ...contact, otherEmail: contact.email !== null && memberEmail !== '' && contact.email.toLowerCase() !== memberEmail.toLowerCase() };
}

/** The Keap panel of an unlinked member's page and the Keap part of the "add a member" form. */
function keapPanel(ctx: MembersContext, lookupAction: string, form: KeapForm, error: string | undefined, found: ContactCardView | undefined) {
  return {
    lookupAction,
    form,
    none: form.keapLink === 'none',
    link: form.keapLink === 'link',
    create: form.keapLink === 'create',
    error,
    found,
    /** The field an error belongs to: the contact for a link, the choice itself for a create. */
    errorField: form.keapLink === 'create' ? 'keap_link' : 'keap_contact',
    notConnected: keapNotConnected(ctx),
  };
}

function validateNewMember(ctx: MembersContext, form: NewMemberForm, password: string): NewMemberErrors {
  const errors: NewMemberErrors = {};
  if (!form.email) errors.email = 'Enter an email address.';
  else if (!emailSchema.safeParse(form.email).success) errors.email = 'Enter a valid email address, like someone@example.com.';
  else if (ctx.members.findByEmail(form.email)) errors.email = 'A member with this email already exists.';
  const username = form.username || form.email;
  if (form.username.length > 254) errors.username = 'Use at most 254 characters.';
  else if (username && !errors.email && ctx.members.usernameTaken(username)) {
    if (form.username) errors.username = 'Another member has this username.';
    else errors.username = 'Another member has this email as username: choose a username.';
  }
  if (form.firstName.length > 200) errors.first_name = 'Use at most 200 characters.';
  if (form.lastName.length > 200) errors.last_name = 'Use at most 200 characters.';
  if (!ctx.members.role(form.role)) errors.role = 'Choose a role.';
  if (password && password.length < PASSWORD_MIN) errors.password = `Use at least ${PASSWORD_MIN} characters, or leave it empty to generate one.`;
  else if (password.length > PASSWORD_MAX) errors.password = `Use at most ${PASSWORD_MAX} characters.`;
  if (form.keapLink === 'link' && !form.keapContact) errors.keap_contact = 'Enter the Keap contact’s id or email address, or choose “Not linked”.';
  else if (form.keapLink === 'link' && form.keapContact.length > 254) errors.keap_contact = 'Use at most 254 characters.';
  if (form.keapLink !== 'none' && !errors.keap_contact) {
    const notConnected = keapNotConnected(ctx);
    if (notConnected) errors[form.keapLink === 'link' ? 'keap_contact' : 'keap_link'] = notConnected;
  }
  return errors;
}

function renderNewForm(
  ctx: MembersContext,
  res: Response,
  status: number,
  form: Partial<NewMemberForm> & KeapForm,
  errors: NewMemberErrors,
  extra: { found?: ContactCardView; offerWithout?: boolean } = {},
): void {
  ctx.admin.view(res, status, 'members/new', {
    title: 'Add a member',
    form,
    errors,
    keap: { ...keapPanel(ctx, '/admin/members/new/lookup', form, errors.keap_contact ?? errors.keap_link, extra.found), offerWithout: extra.offerWithout === true },
    invalid: Object.keys(errors).length > 0,
    passwordMin: PASSWORD_MIN,
    roles: ctx.members.roles().map((r: Role) => ({ slug: r.slug, name: r.name, isAdmin: r.isAdmin, selected: r.slug === form.role })),
  });
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * A welcome email for the member, as member-sync queues one after a creation (two clicks send one email). With the
 * member's contact it waits its turn behind the contact's jobs (a password written back to Keap first).
 */
function enqueueWelcome(ctx: MembersContext, member: Member, admin: AdminUser, contactId?: number): { id: number } {
  return ctx.jobs.enqueue(welcomeEmail, { member_id: member.id, requested_by: admin.id, ...(contactId !== undefined ? { contact_id: contactId } : {}) }, { source: ADMIN_SOURCE });
}

function fullName(m: Pick<Member, 'firstName' | 'lastName'>): string {
  return [m.firstName, m.lastName].filter(Boolean).join(' ');
}

function idFrom(value: unknown): number | undefined {
  return typeof value === 'string' && ID_PATTERN.test(value) ? Number(value) : undefined;
}
