import { Router, type Response } from 'express';
import { isoNow } from '../../core/db.js';
import { formFields } from '../../core/forms.js';
import type { AdminUser } from '../../web/admin-shell.js';
import { formatTime } from '../../web/format.js';
import type { SettingsContext } from './context.js';

/**
 * One name/value pair of a Keap "Send HTTP Post" step: a `value` to copy as it is, or `choices` to pick one of (no
 * value is suggested: copying one would do something the marketer did not choose); neither means "your access key".
 */
interface PostPair {
  name: string;
  value?: string;
  choices?: string[];
  note?: string;
}

/**
 * Admin page Settings → "Webhook & access key": the URL and the exact pairs to paste into Keap, the access key and
 * its rotation. The other Settings tabs are their own pages (Keap connection, Site, members & emails, and the
 * tabs other features add).
 */
export function settingsAdminRoutes(ctx: SettingsContext): Router {
  const router = Router();

  const renderGeneral = (res: Response, status: number, extra: Record<string, unknown> = {}) =>
    ctx.admin.view(res, status, 'settings/general', { title: 'Webhook & access key', ...generalPage(ctx), ...extra });

  router.get('/', (_req, res) => renderGeneral(res, 200));

  router.post('/access-key/rotate', async (req, res) => {
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
    const admin = res.locals.admin as AdminUser;
    const at = isoNow(ctx.clock.now());
    const newKey = ctx.accessKeys.rotate({ id: admin.id, email: admin.email }, at);
    ctx.logger.warn({ adminId: admin.id, at }, 'webhook access key rotated; posts with the old key are refused from now on');
    await ctx.hooks.doAction('access_key.rotated', { at, by: { id: admin.id, email: admin.email } });
    renderGeneral(res, 200, { newKey });
  });

  return router;
}

/** What the "Webhook & access key" page shows. */
function generalPage(ctx: SettingsContext) {
  const publicUrl = ctx.config.publicUrl.replace(/\/+$/, '');
  const webhookUrl = `${publicUrl}/webhooks/keap`;
  const roles = ctx.members
    .roles()
    .filter((r) => !r.isAdmin && r.webhookAssignable)
    .map((r) => r.slug);
  const defaultRole = ctx.site.defaultRole();
  const base = (action: string): PostPair[] => [
    { name: 'contactId', value: '~Contact.Id~', note: "Keap's merge field for the contact" },
    { name: 'wpf_action', value: action },
    { name: 'access_key', note: 'your access key (below)' },
  ];
  const actions = [
    {
      action: 'add',
      heading: 'Create a member (or link and update an existing one)',
      pairs: [
        ...base('add'),
        { name: 'send_notification', value: 'true', note: 'optional: send the welcome email' },
        { name: 'role', value: defaultRole, note: `optional: one of ${roles.join(', ')}; without it, ${defaultRole}` },
      ],
    },
    {
      action: 'update',
      heading: "Update a member's fields and tags (and role, if given)",
      // Unlike add, update leaves the role alone unless asked: a suggested value copied into every update step
      // would set every member it reaches back to that role.
      pairs: [...base('update'), { name: 'role', choices: roles, note: 'leave it out to keep the member\'s role; add it only to change the role' }],
    },
    { action: 'update_tags', heading: "Update only a member's tags (e.g. after \"Apply tag\")", pairs: base('update_tags') },
  ].map((a) => ({
    ...a,
    pairs: a.pairs.map((p: PostPair) => ({ ...p, id: `pair-${a.action}-${p.name}`, isKey: p.value === undefined && p.choices === undefined })),
  }));

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
    lastRotation: rotation ? { at: formatTime(rotation.at), iso: rotation.at, by: rotation.by.email } : undefined,
    // Keap posts only to ports 80 and 443 of an address it can reach.
    unreachable: local || (port !== 80 && port !== 443),
    notHttps: url.protocol !== 'https:',
  };
}

