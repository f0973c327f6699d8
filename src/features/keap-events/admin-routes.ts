import { Router, type Response } from 'express';
import { formFields, formText } from '../../core/forms.js';
import type { Kernel } from '../../core/kernel.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import type { AdminUser } from '../../web/admin-shell.js';
import { formatTime } from '../../web/format.js';
import type { KeapClient } from '../keap/client.js';
import { isKeapError } from '../keap/errors.js';
import type { KeapContactTag, KeapRestHook } from '../keap/types.js';
import { ON_DELETE_CHOICES, type OnDelete } from './delivery.js';
import { HOOK_PATH_PREFIX, type HookTokens } from './hook-token.js';
import { lastPoll, OVERLAP_MS, pollCheckpoint, POLLED_RESOURCES, pollIntervalChosen, pollIntervalMinutes, RECOMMENDED_POLL_MINUTES, setPollInterval, type PolledResourceName } from './poller.js';

export const KEAP_EVENTS_PATH = '/admin/settings/keap-events';
/** The event keys memberhook acts on, checked by default on a first registration. */
export const MEMBER_EVENT_KEYS = ['contact.add', 'contact.edit', 'contact.delete', 'contactGroup.applied', 'contactGroup.removed'] as const;
const ADD_MEMBERS_SETTING = 'keap_hooks.add_members';
const ADD_MEMBERS_TAG_SETTING = 'keap_hooks.add_members_tag';
const TAG_ID = /^[1-9]\d{0,15}$/;
const ON_DELETE_SETTING = 'keap_hooks.on_delete';
/** The longest an old hook URL may keep working after a rotation: a week. */
const MAX_GRACE_MINUTES = 7 * 24 * 60;

const NOTICES = {
  registered: 'The subscriptions are registered: Keap asked this site to confirm each one, and the list shows what it answered.',
  verified: 'Keap was asked to verify the subscription again; its status is below.',
  rotated: 'The hook URL has a new token. Register the subscriptions again so Keap posts to the new URL.',
  rules: 'Saved.',
  poll: 'Saved. A poll runs now, then at that interval.',
  polling: 'A poll runs now; its result shows below once it has run.',
} as const;

export interface KeapEventsContext extends Kernel {
  admin: CorePluginAdmin;
  keap: KeapClient;
  tokens: HookTokens;
  /** Queues a poll of the resource to run now (after its interval was changed, or asked for). */
  pollNow(resource: PolledResourceName): void;
}

const ON_DELETE_LABELS: Record<OnDelete, string> = {
  block: 'block the member (it cannot log in; unblock it on its page)',
  delete: 'delete the member',
  nothing: 'leave the member as it is',
};

/** The longest poll interval offered: a day. */
const MAX_POLL_MINUTES = 24 * 60;

/** What `contact.delete` does to the contact's member (blocks it unless the admin chose otherwise). */
export function onDeleteSetting(ctx: Pick<Kernel, 'settings'>): OnDelete {
  const saved = ctx.settings.get(ON_DELETE_SETTING);
  return (ON_DELETE_CHOICES as readonly string[]).includes(saved ?? '') ? (saved as OnDelete) : 'block';
}

/** Whether `contact.add` creates members (off unless the admin turns it on). */
export function addMembersSetting(ctx: Pick<Kernel, 'settings'>): boolean {
  return ctx.settings.get(ADD_MEMBERS_SETTING) === '1';
}

/** The tag a contact must carry for `contact.add` to make it a member (undefined: any contact). */
export function addMembersTagSetting(ctx: Pick<Kernel, 'settings'>): number | undefined {
  const saved = ctx.settings.get(ADD_MEMBERS_TAG_SETTING) ?? '';
  return TAG_ID.test(saved) ? Number(saved) : undefined;
}

/**
 * Settings → Keap events: the REST hook URL (with its token, rotatable), Keap's event keys as checkboxes, the
 * account's subscriptions with their status, "Register subscriptions" (creates what is checked and missing, removes
 * ours that are unchecked or point at an old URL), Verify for a subscription that is not Verified, and what
 * `contact.add` does.
 */
export function keapEventsAdminRoutes(ctx: KeapEventsContext): Router {
  const router = Router();
  const hookUrl = () => `${ctx.config.publicUrl.replace(/\/+$/, '')}${HOOK_PATH_PREFIX}${ctx.tokens.current()}`;
  const ours = (hook: KeapRestHook) => hook.hookUrl.startsWith(`${ctx.config.publicUrl.replace(/\/+$/, '')}${HOOK_PATH_PREFIX}`);

  const render = async (res: Response, status: number, extra: Record<string, unknown> = {}) => {
    const url = hookUrl();
    let keys: string[] = [];
    let hooks: KeapRestHook[] = [];
    let tags: KeapContactTag[] | undefined;
    let keapError: string | undefined;
    if (ctx.keap.authMode === 'none') keapError = 'Keap is not set up yet (Settings → Keap connection), so its event keys and subscriptions cannot be listed.';
    else {
      try {
        [keys, hooks] = await Promise.all([ctx.keap.listHookEventKeys(), ctx.keap.listHooks()]);
      } catch (err) {
        keapError = `Keap could not list its hooks: ${isKeapError(err) ? err.message : 'an unexpected error (see the log)'}`;
        if (!isKeapError(err)) ctx.logger.error({ err }, 'listing keap hooks failed');
      }
      try {
        tags = await ctx.keap.listTags();
      } catch (err) {
        if (!isKeapError(err)) ctx.logger.error({ err }, 'listing keap tags failed');
      }
    }
    const subscribed = new Set(hooks.filter((h) => h.hookUrl === url).map((h) => h.eventKey));
    const firstTime = !hooks.some(ours);
    const previousUntil = ctx.tokens.previousValidUntil();
    ctx.admin.view(res, status, 'settings/keap-events', {
      title: 'Keap events',
      hookUrl: url,
      hookUrlLocal: isLocalAddress(ctx.config.publicUrl),
      previousUntil: previousUntil === null ? undefined : formatTime(new Date(previousUntil).toISOString()),
      keapError,
      keys: keys.map((key) => ({
        key,
        checked: subscribed.has(key) || (firstTime && (MEMBER_EVENT_KEYS as readonly string[]).includes(key)),
        acts: (MEMBER_EVENT_KEYS as readonly string[]).includes(key),
      })),
      hooks: hooks.map((h) => ({ ...h, ours: h.hookUrl === url, oldUrl: ours(h) && h.hookUrl !== url, badge: h.status === 'Verified' ? 'ok' : h.status === 'Inactive' ? 'bad' : 'warn' })),
      addMembers: addMembersSetting(ctx),
      addMembersTags: tagChoices(tags, extra.addMembersTag !== undefined ? String(extra.addMembersTag) : String(addMembersTagSetting(ctx) ?? '')),
      tagsUnlisted: tags === undefined && ctx.keap.authMode !== 'none',
      keapUnset: ctx.keap.authMode === 'none',
      onDelete: ON_DELETE_CHOICES.map((value) => ({ value, label: ON_DELETE_LABELS[value], checked: value === onDeleteSetting(ctx) })),
      polls: pollView(ctx, extra.pollError as { resource: string; message: string; value: string } | undefined),
      overlapMinutes: OVERLAP_MS / 60_000,
      recommendedMinutes: RECOMMENDED_POLL_MINUTES,
      ...extra,
    });
  };

  router.get('/', async (req, res) => {
    const done = typeof req.query.done === 'string' && Object.hasOwn(NOTICES, req.query.done) ? NOTICES[req.query.done as keyof typeof NOTICES] : undefined;
    await render(res, 200, done ? { notice: done } : {});
  });

  router.post('/register', async (req, res) => {
    const wanted = new Set(([] as unknown[]).concat(formFields(req).key ?? []).filter((k): k is string => typeof k === 'string' && /^[A-Za-z]+(\.[A-Za-z]+)+$/.test(k)));
    const url = hookUrl();
    const problems: string[] = [];
    try {
      const known = new Set(await ctx.keap.listHookEventKeys());
      for (const key of wanted) if (!known.has(key)) problems.push(`Keap has no event key “${key}”.`);
      if (problems.length) return render(res, 400, { error: `Nothing was changed: ${problems.join(' ')}` });
      const hooks = await ctx.keap.listHooks();
      // Ours that are unchecked, or still point at an old token's URL, go; what is checked and missing is created.
      for (const hook of hooks.filter(ours)) {
        if (!wanted.has(hook.eventKey) || hook.hookUrl !== url) await ctx.keap.deleteHook(hook.key);
      }
      const kept = new Set(hooks.filter((h) => h.hookUrl === url && wanted.has(h.eventKey)).map((h) => h.eventKey));
      for (const key of wanted) if (!kept.has(key)) await ctx.keap.createHook(key, url);
    } catch (err) {
      const message = isKeapError(err) ? err.message : 'an unexpected error (see the log)';
      if (!isKeapError(err)) ctx.logger.error({ err }, 'registering keap hooks failed');
      return render(res, 502, { error: `Keap did not take every change: ${message}. The list below shows where things stand; register again to finish.` });
    }
    ctx.logger.info({ adminId: (res.locals.admin as AdminUser).id, keys: [...wanted] }, 'keap hook subscriptions registered');
    // Hooks get a safety net: polling of what they report comes on with them, unless the admin chose an interval
    // (or off) for it already.
    for (const resource of POLLED_RESOURCES) {
      if (![...wanted].some((key) => HOOK_KEYS_OF[resource](key)) || pollIntervalChosen(ctx.settings, resource)) continue;
      setPollInterval(ctx.settings, resource, RECOMMENDED_POLL_MINUTES);
      ctx.pollNow(resource);
    }
    res.redirect(303, `${KEAP_EVENTS_PATH}?done=registered`);
  });

  router.post('/verify', async (req, res) => {
    const key = formText(formFields(req).hook);
    if (!/^[\w-]{1,100}$/.test(key)) return render(res, 400, { error: 'Which subscription? Nothing was changed.' });
    try {
      await ctx.keap.verifyHook(key);
    } catch (err) {
      return render(res, 502, { error: `Keap did not verify the subscription: ${isKeapError(err) ? err.message : 'an unexpected error (see the log)'}` });
    }
    res.redirect(303, `${KEAP_EVENTS_PATH}?done=verified`);
  });

  router.post('/rotate', (req, res) => {
    const body = formFields(req);
    const grace = formText(body.grace_minutes).trim();
    if (!/^\d{1,6}$/.test(grace) || Number(grace) > MAX_GRACE_MINUTES) {
      return render(res, 400, { rotateError: `Grace period: a whole number of minutes from 0 to ${MAX_GRACE_MINUTES}.`, graceInvalid: true, graceMinutes: grace });
    }
    if (formText(body.confirm) !== 'yes') return render(res, 400, { rotateError: 'Tick the box to confirm: Keap must then be told the new URL.', graceMinutes: grace });
    ctx.tokens.rotate(Number(grace) * 60_000);
    ctx.logger.warn({ adminId: (res.locals.admin as AdminUser).id, graceMinutes: Number(grace) }, 'keap hook url token rotated');
    res.redirect(303, `${KEAP_EVENTS_PATH}?done=rotated`);
  });

  router.post('/poll', (req, res) => {
    const body = formFields(req);
    const resource = formText(body.resource);
    if (!(POLLED_RESOURCES as readonly string[]).includes(resource)) return render(res, 400, { error: `What to poll: one of ${POLLED_RESOURCES.join(', ')}. Nothing was changed.` });
    const minutes = formText(body.interval_minutes).trim();
    if (!/^\d{1,4}$/.test(minutes) || Number(minutes) > MAX_POLL_MINUTES) {
      return render(res, 400, { pollError: { resource, message: `Poll every: a whole number of minutes from 0 (off) to ${MAX_POLL_MINUTES}.`, value: minutes } });
    }
    setPollInterval(ctx.settings, resource as PolledResourceName, Number(minutes));
    if (Number(minutes) > 0) ctx.pollNow(resource as PolledResourceName);
    ctx.logger.info({ adminId: (res.locals.admin as AdminUser).id, resource, minutes: Number(minutes) }, 'keap poll interval changed');
    res.redirect(303, `${KEAP_EVENTS_PATH}?done=poll#poller`);
  });

  // "Poll now", whether or not polling is on: one poll, which queues no next one while the interval is 0.
  router.post('/poll-now', (req, res) => {
    const resource = formText(formFields(req).resource);
    if (!(POLLED_RESOURCES as readonly string[]).includes(resource)) return render(res, 400, { error: `What to poll: one of ${POLLED_RESOURCES.join(', ')}. Nothing was changed.` });
    ctx.pollNow(resource as PolledResourceName);
    res.redirect(303, `${KEAP_EVENTS_PATH}?done=polling#poller`);
  });

  router.post('/rules', async (req, res) => {
    const body = formFields(req);
    const onDelete = formText(body.on_delete);
    if (!(ON_DELETE_CHOICES as readonly string[]).includes(onDelete)) return render(res, 400, { error: `A deleted contact's member: choose one of ${ON_DELETE_CHOICES.join(', ')}. Nothing was changed.` });
    const tag = formText(body.add_members_tag).trim();
    const tagError = (message: string) => render(res, 400, { error: `Only contacts with the tag: ${message} Nothing was changed.`, addMembersTag: tag.slice(0, 40) });
    if (tag !== '' && !TAG_ID.test(tag)) return tagError(`choose a tag from the list (or any contact); “${tag.slice(0, 40)}” is not a tag id.`);
    // A tag kept as it was is not looked up again (Keap may be out of reach, or the tag renamed since).
    if (tag !== '' && Number(tag) !== addMembersTagSetting(ctx)) {
      try {
        if (!(await ctx.keap.listTags()).some((t) => t.id === Number(tag))) return tagError(`Keap has no tag ${tag}.`);
      } catch (err) {
        return render(res, 502, { error: `Keap could not list its tags to check the tag: ${isKeapError(err) ? err.message : 'an unexpected error (see the log)'}. Nothing was changed.` });
      }
    }
    ctx.settings.set(ADD_MEMBERS_SETTING, formText(body.add_members) === 'yes' ? '1' : '0');
    ctx.settings.set(ADD_MEMBERS_TAG_SETTING, tag);
    ctx.settings.set(ON_DELETE_SETTING, onDelete);
    res.redirect(303, `${KEAP_EVENTS_PATH}?done=rules`);
  });

  return router;
}

/** The tag picker's options: Keap's tags, and the chosen one even when Keap's list could not be read. */
function tagChoices(tags: KeapContactTag[] | undefined, chosen: string) {
  const options = (tags ?? []).map((t) => ({ id: String(t.id), label: t.category ? `${t.category}: ${t.name}` : t.name, selected: String(t.id) === chosen }));
  if (chosen !== '' && TAG_ID.test(chosen) && !options.some((o) => o.selected)) options.unshift({ id: chosen, label: `tag ${chosen}`, selected: true });
  return options;
}

/** Which hook event keys report what each poller reads: registering them turns its polling on. */
const HOOK_KEYS_OF: Record<PolledResourceName, (key: string) => boolean> = {
  contacts: (key) => key.startsWith('contact.'),
  tags: (key) => key === 'contactGroup.applied' || key === 'contactGroup.removed',
  orders: (key) => key.startsWith('order.'),
};

const RESOURCE_LABELS: Record<PolledResourceName, { title: string; what: string }> = {
  contacts: { title: 'Contacts', what: 'Contacts changed (by last update): members linked to them are updated' },
  tags: { title: 'Tags applied', what: 'Tags members hold, applied to contacts: those members\' tags are updated (and the tag chosen below for new members: its contacts become members)' },
  orders: { title: 'Orders', what: 'Orders created or changed: recorded as events (order.add, order.edit) for plugins and outbound webhooks' },
};

/** The poller's part of the page: per resource its interval, checkpoint, and what the last poll found. */
function pollView(ctx: KeapEventsContext, error: { resource: string; message: string; value: string } | undefined) {
  return POLLED_RESOURCES.map((resource) => {
    const minutes = pollIntervalMinutes(ctx.settings, resource);
    const last = lastPoll(ctx.settings, resource);
    const checkpoint = pollCheckpoint(ctx.settings, resource);
    const next = last && minutes > 0 ? new Date(Date.parse(last.at) + minutes * 60_000).toISOString() : undefined;
    const mine = error?.resource === resource ? error : undefined;
    return {
      resource,
      ...RESOURCE_LABELS[resource],
      minutes,
      value: mine ? mine.value : String(minutes),
      error: mine?.message,
      on: minutes > 0,
      // Orders change no member: their report counts only what was found and the events it made.
      updatesMembers: resource !== 'orders',
      checkpoint: checkpoint && formatTime(checkpoint),
      last: last && {
        ...last,
        // A report written before tags and orders were polled has `changed`, and no events or completeness.
        found: last.found ?? (last as { changed?: number }).changed ?? 0,
        events: last.events ?? 0,
        complete: last.complete ?? true,
        atText: formatTime(last.at),
        sinceText: last.since && formatTime(last.since),
        reactivatedText: (last.reactivated ?? []).join(', '),
      },
      next: next && formatTime(next),
    };
  });
}

/** A site address only this machine reaches (PUBLIC_URL unset, or set to one): Keap's servers cannot post to it. */
function isLocalAddress(publicUrl: string): boolean {
  const host = new URL(publicUrl).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || host === '0.0.0.0';
}
