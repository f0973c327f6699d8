import { Router, type Response } from 'express';
import { formFields } from '../../core/forms.js';
import type { AppContext } from '../../context.js';
import { isoNow } from '../../core/db.js';
import { notFound } from '../../core/errors.js';
import { renderAdmin } from '../admin/pages.js';
import { apiTokenStore, API_TOKEN_NAME_MAX, validateTokenName, type ApiTokenRecord } from '../api/tokens.js';
import type { Member } from '../members/store.js';

const TOKENS_PATH = '/admin/settings/api-tokens';

/** One name/value pair of a Keap "Send HTTP Post" step; `value` undefined means "your access key". */
interface PostPair {
  name: string;
  value?: string;
  note?: string;
}

/**
 * Admin pages (mounted after requireAdmin): Settings → "Webhook & access key" (the URL and the exact pairs to paste
 * into Keap, the access key and its rotation) and "API tokens" (create, list, revoke).
 */
export function settingsAdminRoutes(ctx: AppContext): Router {
  const router = Router();
  const tokens = apiTokenStore(ctx);

  const renderGeneral = (res: Response, status: number, extra: Record<string, unknown> = {}) =>
    renderAdmin(ctx, res, status, 'settings/general', { title: 'Webhook & access key', section: 'settings', settingsTab: 'general', ...generalPage(ctx), ...extra });

  router.get('/settings', (_req, res) => renderGeneral(res, 200));

  router.post('/settings/access-key/rotate', async (req, res) => {
    const body = formFields(req);
    if (ctx.accessKeys.fixedByEnvironment) {
      return renderGeneral(res, 409, { error: 'The access key is set by ACCESS_KEY in the environment, so it cannot be rotated here. Nothing was changed.' });
    }
    if (body.confirm !== 'yes') {
      return renderGeneral(res, 400, { confirmError: 'Tick the box to confirm: the old key stops working as soon as the new one is made.' });
    }
    if (body.key_id !== ctx.accessKeys.fingerprint()) {
      // A resubmitted or stale form (the key changed since the page was loaded): one rotation is what was asked for.
      return renderGeneral(res, 409, { error: 'The access key was changed after this page was loaded, so it was not rotated again. The current key is below.' });
    }
    const admin = res.locals.admin as Member;
    const at = isoNow(ctx.clock.now());
    const newKey = ctx.accessKeys.rotate({ id: admin.id, email: admin.email }, at);
    ctx.logger.warn({ adminId: admin.id, at }, 'webhook access key rotated; posts with the old key are refused from now on');
    await ctx.hooks.doAction('access_key.rotated', { at, by: { id: admin.id, email: admin.email } });
    renderGeneral(res, 200, { newKey });
  });

  const renderTokens = (res: Response, status: number, extra: Record<string, unknown> = {}) =>
    renderAdmin(ctx, res, status, 'settings/api-tokens', {
      title: 'API tokens',
      section: 'settings',
      settingsTab: 'api-tokens',
      tokens: tokens.list().map(tokenView),
      envToken: ctx.config.apiToken !== undefined,
      apiUrl: `${ctx.config.publicUrl}/api/v1/users`,
      nameMax: API_TOKEN_NAME_MAX,
      ...extra,
    });

  router.get('/settings/api-tokens', (req, res) => {
    const revokedId = Number(req.query.revoked);
    const revoked = Number.isSafeInteger(revokedId) && revokedId > 0 ? tokens.get(revokedId) : undefined;
    renderTokens(res, 200, revoked?.revokedAt ? { revokedName: revoked.name } : {});
  });

  router.post('/settings/api-tokens', (req, res) => {
    const body = formFields(req);
    const { name, error } = validateTokenName(body.name);
    if (error) return renderTokens(res, 400, { name, nameError: error });
    const created = tokens.create(name);
    if (!created) return renderTokens(res, 400, { name, nameError: `A token named "${name}" exists already; choose another name or revoke that one first.` });
    const admin = res.locals.admin as Member;
    ctx.logger.info({ adminId: admin.id, tokenId: created.record.id, tokenName: name, prefix: created.record.prefix }, 'API token created');
    // Shown in this answer only: a reload of the list (a GET) never has it, and only its hash is stored.
    renderTokens(res, 200, { created: { ...tokenView(created.record), token: created.token } });
  });

  router.get('/settings/api-tokens/:id/revoke', (req, res) => {
    const token = findToken(ctx, req.params.id);
    renderRevoke(res, 200, token);
  });

  router.post('/settings/api-tokens/:id/revoke', (req, res) => {
    const token = findToken(ctx, req.params.id);
    const body = formFields(req);
    if (token.revokedAt) return res.redirect(303, `${TOKENS_PATH}?revoked=${token.id}`);
    if (body.confirm !== 'yes') return renderRevoke(res, 400, token, 'Confirm with the “Revoke token” button on this page.');
    if (tokens.revoke(token.id)) {
      const admin = res.locals.admin as Member;
      ctx.logger.info({ adminId: admin.id, tokenId: token.id, tokenName: token.name, prefix: token.prefix }, 'API token revoked');
    }
    res.redirect(303, `${TOKENS_PATH}?revoked=${token.id}`);
  });

  const renderRevoke = (res: Response, status: number, token: ApiTokenRecord, error?: string) =>
    renderAdmin(ctx, res, status, 'settings/revoke-api-token', { title: `Revoke API token ${token.name}`, section: 'settings', settingsTab: 'api-tokens', token: tokenView(token), error });

  return router;
}

function findToken(ctx: AppContext, rawId: unknown): ApiTokenRecord {
  const id = typeof rawId === 'string' && /^[1-9]\d{0,15}$/.test(rawId) ? Number(rawId) : NaN;
  const token = Number.isSafeInteger(id) ? apiTokenStore(ctx).get(id) : undefined;
  if (!token) throw notFound('There is no such API token.');
  return token;
}

/** What the "Webhook & access key" page shows. */
function generalPage(ctx: AppContext) {
  const publicUrl = ctx.config.publicUrl.replace(/\/+$/, '');
  const webhookUrl = `${publicUrl}/webhooks/keap`;
  const roles = ctx.members
    .roles()
    .filter((r) => !r.isAdmin && r.webhookAssignable)
    .map((r) => r.slug);
  const defaultRole = ctx.site.defaultRole();
  const roleNote = `optional: one of ${roles.join(', ')}; without it, ${defaultRole}`;
  const base = (action: string): PostPair[] => [
    { name: 'contactId', value: '~Contact.Id~', note: "Keap's merge field for the contact" },
    { name: 'wpf_action', value: action },
    { name: 'access_key', note: 'your access key (below)' },
  ];
  const actions = [
    {
      action: 'add',
      heading: 'Create a member (or link and update an existing one)',
      pairs: [...base('add'), { name: 'send_notification', value: 'true', note: 'optional: send the welcome email' }, { name: 'role', value: defaultRole, note: roleNote }],
    },
    { action: 'update', heading: "Update a member's fields and tags (and role, if given)", pairs: [...base('update'), { name: 'role', value: defaultRole, note: roleNote }] },
    { action: 'update_tags', heading: "Update only a member's tags (e.g. after \"Apply tag\")", pairs: base('update_tags') },
  ].map((a) => ({ ...a, pairs: a.pairs.map((p) => ({ ...p, id: `pair-${a.action}-${p.name}`, isKey: p.value === undefined })) }));

  const url = new URL(publicUrl);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  const local = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  const rotation = ctx.accessKeys.lastRotation();
  return {
    webhookUrl,
    rootUrl: `${publicUrl}/`,
    actions,
    accessKey: ctx.accessKeys.current(),
    keyFromEnvironment: ctx.accessKeys.fixedByEnvironment,
    keyId: ctx.accessKeys.fingerprint(),
    lastRotation: rotation ? { at: shownTime(rotation.at), iso: rotation.at, by: rotation.by.email } : undefined,
    // Keap posts only to ports 80 and 443 of an address it can reach.
    unreachable: local || (port !== 80 && port !== 443),
    notHttps: url.protocol !== 'https:',
  };
}

function tokenView(t: ApiTokenRecord) {
  return {
    ...t,
    created: shownTime(t.createdAt),
    lastUsed: t.lastUsedAt ? shownTime(t.lastUsedAt) : undefined,
    revoked: t.revokedAt ? shownTime(t.revokedAt) : undefined,
  };
}

/** `2024-05-01 12:34 UTC`: an admin page's timestamps, unambiguous without knowing the viewer's zone. */
function shownTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}
