import { Router, type Response } from 'express';
import { notFound } from '../../core/errors.js';
import { formFields } from '../../core/forms.js';
import type { Kernel } from '../../core/kernel.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import type { AdminUser } from '../../web/admin-shell.js';
import { formatTime } from '../../web/format.js';
import { API_SCOPE_DESCRIPTIONS, API_SCOPES, DEFAULT_API_SCOPE, isApiScope, type ApiScope } from './scopes.js';
import { API_TOKEN_NAME_MAX, validateTokenName, type ApiTokenRecord, type ApiTokenStore } from './tokens.js';

const TOKENS_PATH = '/admin/settings/api-tokens';

/** Admin page Settings → "API tokens": create (shown once), list with last use, revoke. */
export function apiTokenAdminRoutes(ctx: Kernel & { admin: CorePluginAdmin }, tokens: ApiTokenStore): Router {
  const router = Router();

  const renderTokens = (res: Response, status: number, extra: { scope?: string } & Record<string, unknown> = {}) =>
    ctx.admin.view(res, status, 'api-tokens/list', {
      title: 'API tokens',
      scopes: API_SCOPES.map((value) => ({ value, label: SCOPE_LABELS[value], description: API_SCOPE_DESCRIPTIONS[value], checked: value === (extra.scope ?? DEFAULT_API_SCOPE) })),
      tokens: tokens.list().map(tokenView),
      envToken: ctx.config.apiToken !== undefined,
      apiUrl: `${ctx.config.publicUrl}/api/v1/users`,
      nameMax: API_TOKEN_NAME_MAX,
      ...extra,
    });

  const renderRevoke = (res: Response, status: number, token: ApiTokenRecord, error?: string) =>
    ctx.admin.view(res, status, 'api-tokens/revoke', { title: `Revoke API token ${token.name}`, token: tokenView(token), error });

  const findToken = (rawId: unknown): ApiTokenRecord => {
    const id = typeof rawId === 'string' && /^[1-9]\d{0,15}$/.test(rawId) ? Number(rawId) : NaN;
    const token = Number.isSafeInteger(id) ? tokens.get(id) : undefined;
    if (!token) throw notFound('There is no such API token.');
    return token;
  };

  router.get('/', (req, res) => {
    const revokedId = Number(req.query.revoked);
    const revoked = Number.isSafeInteger(revokedId) && revokedId > 0 ? tokens.get(revokedId) : undefined;
    renderTokens(res, 200, revoked?.revokedAt ? { revokedName: revoked.name } : {});
  });

  router.post('/', (req, res) => {
    const body = formFields(req);
    const { name, error } = validateTokenName(body.name);
    // No scope sent (a script posting the old form): the form's own default, read-only.
    const scope: unknown = body.scope ?? DEFAULT_API_SCOPE;
    if (!isApiScope(scope)) return renderTokens(res, 400, { name, scopeError: `Choose what the token may do: ${API_SCOPES.map((s) => SCOPE_LABELS[s]).join(', ')}.` });
    if (error) return renderTokens(res, 400, { name, scope, nameError: error });
    const created = tokens.create(name, scope);
    if (!created) return renderTokens(res, 400, { name, scope, nameError: `A token named "${name}" exists already; choose another name or revoke that one first.` });
    const admin = res.locals.admin as AdminUser;
    ctx.logger.info({ adminId: admin.id, tokenId: created.record.id, tokenName: name, prefix: created.record.prefix, scope }, 'API token created');
    // Shown in this answer only: a reload of the list (a GET) never has it, and only its hash is stored.
    renderTokens(res, 200, { created: { ...tokenView(created.record), token: created.token } });
  });

  router.get('/:id/revoke', (req, res) => {
    renderRevoke(res, 200, findToken(req.params.id));
  });

  router.post('/:id/revoke', (req, res) => {
    const token = findToken(req.params.id);
    const body = formFields(req);
    if (token.revokedAt) return res.redirect(303, `${TOKENS_PATH}?revoked=${token.id}`);
    if (body.confirm !== 'yes') return renderRevoke(res, 400, token, 'Confirm with the “Revoke token” button on this page.');
    if (tokens.revoke(token.id)) {
      const admin = res.locals.admin as AdminUser;
      ctx.logger.info({ adminId: admin.id, tokenId: token.id, tokenName: token.name, prefix: token.prefix }, 'API token revoked');
    }
    res.redirect(303, `${TOKENS_PATH}?revoked=${token.id}`);
  });

  return router;
}

const SCOPE_LABELS: Record<ApiScope, string> = { read: 'Read-only', 'members:write': 'Members write', admin: 'Admin' };

function tokenView(t: ApiTokenRecord) {
  return {
    ...t,
    scopeLabel: SCOPE_LABELS[t.scope],
    created: formatTime(t.createdAt),
    lastUsed: t.lastUsedAt ? formatTime(t.lastUsedAt) : undefined,
    revoked: t.revokedAt ? formatTime(t.revokedAt) : undefined,
  };
}
