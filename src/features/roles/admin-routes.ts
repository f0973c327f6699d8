import { Router, type Request, type Response } from 'express';
import { formFields, formText } from '../../core/forms.js';
import type { Logger } from '../../core/logger.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import { ROLE_NAME_MAX, ROLE_SLUG_PATTERN, type RoleFormErrors, type RoleService } from '../members/role-service.js';
import type { RoleSummary } from '../members/types.js';

/** What the Roles pages work with. */
export interface RolesContext {
  readonly roles: RoleService;
  /** The default role's slug (it cannot be deleted). */
  defaultRole(): string;
  logger: Logger;
  admin: CorePluginAdmin;
}

export const ROLE_DELETE_CONFIRM_MESSAGE = 'Confirm the deletion to delete this role.';
export const ROLE_WEBHOOK_CHOICE_MESSAGE = 'Choose whether Keap posts may assign this role.';

interface AddForm {
  slug: string;
  name: string;
  webhookAssignable: boolean;
  errors?: RoleFormErrors;
}

/** Admin pages (mounted after requireAdmin): the Roles page: list, add, rename, delete, webhook-assignable. */
export function roleAdminRoutes(ctx: RolesContext): Router {
  const router = Router();
  const roles = ctx.roles;

  const renderList = (res: Response, status: number, form: AddForm, notice?: string) => {
    const defaultRole = ctx.defaultRole();
    ctx.admin.view(res, status, 'roles/list', {
      title: 'Roles',
      roles: roles.list().map((r) => ({ ...r, isDefault: r.slug === defaultRole })),
      defaultRole,
      form,
      nameMax: ROLE_NAME_MAX,
      notice,
    });
  };

  const renderRole = (res: Response, status: number, role: RoleSummary, extra: { notice?: string; error?: string; name?: string; nameError?: string } = {}) => {
    ctx.admin.view(res, status, 'roles/role', {
      title: `Role ${role.name}`,
      role: { ...role, isDefault: roles.isDefault(role) },
      blocker: roles.deleteBlocker(role),
      nameValue: extra.name ?? role.name,
      nameMax: ROLE_NAME_MAX,
      ...extra,
    });
  };

  const renderDelete = (res: Response, status: number, role: RoleSummary, error?: string) => {
    ctx.admin.view(res, status, 'roles/delete', {
      title: `Delete role ${role.name}`,
      role,
      blocker: roles.deleteBlocker(role),
      error,
    });
  };

  /** The role named in the path, or a 404 page. */
  const findRole = (req: Request, res: Response): RoleSummary | undefined => {
    const raw = String(req.params.id);
    const role = /^[1-9]\d{0,15}$/.test(raw) ? roles.get(Number(raw)) : undefined;
    if (!role) ctx.admin.view(res, 404, 'roles/missing', { title: 'No such role', id: raw.slice(0, 40) });
    return role;
  };

  router.get('/', (req, res) => {
    renderList(res, 200, { slug: '', name: '', webhookAssignable: true }, listNotice(req, roles));
  });

  router.post('/', async (req, res) => {
    const body = formFields(req);
    const form: AddForm = { slug: formText(body.slug), name: formText(body.name), webhookAssignable: body.webhook_assignable === 'yes' };
    const result = await roles.create(form);
    if (!result.ok) return renderList(res, 400, { ...form, errors: result.errors });
    ctx.logger.info({ adminId: res.locals.admin?.id, role: result.role.slug }, 'admin added a role');
    res.redirect(303, `/admin/roles?added=${encodeURIComponent(result.role.slug)}`);
  });

  router.get('/:id', (req, res) => {
    const role = findRole(req, res);
    if (!role) return;
    const notice = req.query.saved === 'name' ? 'Name saved.' : req.query.saved === 'webhook' ? webhookNotice(role) : undefined;
    renderRole(res, 200, role, { notice });
  });

  router.post('/:id/name', async (req, res) => {
    const role = findRole(req, res);
    if (!role) return;
    const name = formText(formFields(req).name);
    const result = await roles.rename(role, name);
    if (!result.ok) return renderRole(res, 400, role, { name, nameError: result.errors.name });
    res.redirect(303, `/admin/roles/${role.id}?saved=name`);
  });

  router.post('/:id/webhook', async (req, res) => {
    const role = findRole(req, res);
    if (!role) return;
    const choice = formFields(req).webhook_assignable;
    if (choice !== 'yes' && choice !== 'no') return renderRole(res, 400, role, { error: ROLE_WEBHOOK_CHOICE_MESSAGE });
    const result = await roles.setWebhookAssignable(role, choice === 'yes');
    if (!result.ok) return renderRole(res, 400, role, { error: result.message });
    ctx.logger.info({ adminId: res.locals.admin?.id, role: role.slug, webhookAssignable: choice === 'yes' }, 'admin changed whether webhooks may assign a role');
    res.redirect(303, `/admin/roles/${role.id}?saved=webhook`);
  });

  router.get('/:id/delete', (req, res) => {
    const role = findRole(req, res);
    if (!role) return;
    renderDelete(res, 200, role);
  });

  router.post('/:id/delete', async (req, res) => {
    const role = findRole(req, res);
    if (!role) return;
    if (formFields(req).confirm !== 'yes') return renderDelete(res, 400, role, ROLE_DELETE_CONFIRM_MESSAGE);
    const result = await roles.delete(role);
    if (!result.ok) return renderDelete(res, 409, roles.get(role.id) ?? role, result.blocker.message);
    ctx.logger.info({ adminId: res.locals.admin?.id, role: role.slug }, 'admin deleted a role');
    res.redirect(303, `/admin/roles?deleted=${encodeURIComponent(role.slug)}`);
  });

  return router;
}

function listNotice(req: Request, roles: RoleService): string | undefined {
  const { added, deleted } = req.query;
  if (typeof added === 'string' && ROLE_SLUG_PATTERN.test(added)) {
    const role = roles.findBySlug(added);
    if (role) return `Role ${role.name} (${role.slug}) added.`;
  }
  // The role is gone, so only a well-formed slug is echoed.
  if (typeof deleted === 'string' && ROLE_SLUG_PATTERN.test(deleted)) return `Role "${deleted}" deleted.`;
  return undefined;
}

function webhookNotice(role: RoleSummary): string {
  return role.webhookAssignable
    ? `Keap posts may now assign ${role.name} with role=${role.slug}.`
    : `Keap posts can no longer assign ${role.name}; posts with role=${role.slug} are rejected.`;
}

