import { z } from 'zod';
import type { Clock } from '../../core/clock.js';
import type { JobOutcome, JobQueue } from '../../core/jobs/queue.js';
import { jobType } from '../../core/jobs/queue.js';
import type { EventStore } from '../../core/jobs/store.js';
import type { Logger } from '../../core/logger.js';
import type { Transactions } from '../../core/outbox.js';
import type { SettingsStore } from '../../core/settings.js';
import { webhookJobType } from '../http-post/jobs.js';
import type { KeapClient } from '../keap/client.js';
import { isKeapError } from '../keap/errors.js';
import type { MemberService } from '../members/service.js';
import { HOOK_PATH_PREFIX } from './hook-token.js';

/** Where the events the poller causes come from (`source`). */
export const POLLER_SOURCE = 'poller';

const INTERVAL_SETTING = 'keap_poll.contacts.interval_minutes';
const CHECKPOINT_SETTING = 'keap_poll.contacts.checkpoint';
const LAST_RUN_SETTING = 'keap_poll.contacts.last_run';

/**
 * Off until asked for: a site that only takes campaign posts has nothing to catch up on. Registering hook
 * subscriptions turns it on at RECOMMENDED_POLL_MINUTES (the safety net under them), unless the admin chose already.
 */
export const DEFAULT_POLL_MINUTES = 0;
export const RECOMMENDED_POLL_MINUTES = 15;
/**
 * How far before the checkpoint each poll starts again. Keap's `last_updated` is set when a change is saved, and a
 * change saved a moment before the previous poll's read may show up only after it: re-reading a few minutes costs a
 * few repeated contacts (folded into waiting jobs, or skipped as already synced) and loses none on a boundary.
 */
export const OVERLAP_MS = 5 * 60_000;
/** Pages read per poll at most: a first poll of a large account continues at the next one, from its checkpoint. */
const MAX_PAGES = 50;

/**
 * The poll of contacts changed since the checkpoint. One scheduled poll waits at any time (each queues the next when
 * it ends); the admin's "poll now" is a job of its own beside it, so it does not wait for the scheduled one's time.
 */
export const keapPollContacts = jobType({
  type: 'keap_poll_contacts',
  params: z.object({ now: z.boolean().optional() }),
  source: POLLER_SOURCE,
  dedupeKey: (p) => (p.now ? 'now' : 'scheduled'),
  eventType: () => 'poll.contacts',
});

/** What the last poll did, for the settings page. */
export interface PollReport {
  at: string;
  since: string | null;
  changed: number;
  queued: number;
  alreadySynced: number;
  reactivated: string[];
  error: string | null;
  /** Why the look at the hook subscriptions failed (the contacts part may still have worked). */
  hookError?: string;
}

export interface PollerDeps {
  keap: KeapClient;
  transactions: Transactions;
  jobs: JobQueue;
  events: EventStore;
  members: MemberService;
  settings: SettingsStore;
  clock: Clock;
  logger: Logger;
  /** The hook URL prefix (PUBLIC_URL + HOOK_PATH_PREFIX): our subscriptions are the ones posting there. */
  publicUrl: string;
}

export function pollIntervalMinutes(settings: SettingsStore): number {
  const raw = settings.get(INTERVAL_SETTING);
  return raw === undefined ? DEFAULT_POLL_MINUTES : Number(raw);
}

export function setPollInterval(settings: SettingsStore, minutes: number): void {
  settings.set(INTERVAL_SETTING, String(minutes));
}

/** Whether the admin ever chose an interval (registering hooks sets the recommended one only when not). */
export function pollIntervalChosen(settings: SettingsStore): boolean {
  return settings.get(INTERVAL_SETTING) !== undefined;
}

export function lastPoll(settings: SettingsStore): PollReport | undefined {
  const raw = settings.get(LAST_RUN_SETTING);
  return raw ? (JSON.parse(raw) as PollReport) : undefined;
}

export function pollCheckpoint(settings: SettingsStore): string | undefined {
  return settings.get(CHECKPOINT_SETTING);
}

/** Makes sure a scheduled poll is waiting (one at most, by its dedupe key); `now`: one more, at once. Polling off: none. */
export function schedulePoll(deps: Pick<PollerDeps, 'jobs' | 'settings' | 'clock'>, when: 'later' | 'now' = 'later'): void {
  const minutes = pollIntervalMinutes(deps.settings);
  if (!(minutes > 0)) return;
  if (when === 'now') deps.jobs.enqueue(keapPollContacts, { now: true });
  else deps.jobs.enqueue(keapPollContacts, {}, { runAfter: deps.clock.now() + minutes * 60_000 });
}

/**
 * The safety net under the hooks (and the way in for a site without them): contacts Keap changed since the
 * checkpoint, read page by page within Keap's limits, become `update` jobs for the members linked to them, unless a
 * job for that contact already ran or waits since that change (the hook got there first). The checkpoint is the
 * newest change seen, stored when the pages are read (UTC, as Keap gives it); each poll starts OVERLAP_MS before it.
 * It also looks at this site's hook subscriptions and asks Keap to verify any that went Inactive (deliveries
 * failed while the site was down), so hooks come back by themselves.
 */
export async function pollContacts(deps: PollerDeps): Promise<JobOutcome> {
  const now = deps.clock.now();
  const report: PollReport = { at: new Date(now).toISOString(), since: null, changed: 0, queued: 0, alreadySynced: 0, reactivated: [], error: null };
  try {
    if (deps.keap.authMode === 'none') throw new Error('Keap is not set up, so there is nothing to poll');
    const checkpoint = deps.settings.get(CHECKPOINT_SETTING);
    // The first poll looks back one interval: older changes are what a bulk import is for.
    const since = new Date(checkpoint ? Date.parse(checkpoint) - OVERLAP_MS : now - Math.max(1, pollIntervalMinutes(deps.settings)) * 60_000);
    report.since = since.toISOString();
    let newest = checkpoint ?? null;
    let offset: number | null = 0;
    for (let page = 0; offset !== null && page < MAX_PAGES; page++) {
      const result = await deps.keap.listContactsChangedSince(since, { offset });
      // A page's jobs and events commit together: a poll that stops half-way has queued whole pages only.
      const linked = deps.members.linkedContactIds(result.contacts.map((c) => c.id));
      await deps.transactions.run((tx) => {
        for (const contact of result.contacts) {
          report.changed++;
          if (contact.lastUpdated && (newest === null || contact.lastUpdated > newest)) newest = contact.lastUpdated;
          tx.emit('keap.event', { objectType: 'contact', objectId: String(contact.id), eventType: 'contact.edit', source: POLLER_SOURCE, raw: { ...contact } });
          if (!linked.has(contact.id)) continue;
          if (syncedSince(deps.events, contact.id, contact.lastUpdated)) {
            report.alreadySynced++;
            continue;
          }
          deps.jobs.enqueue(webhookJobType('update'), { contact_id: contact.id }, { source: POLLER_SOURCE, eventType: 'contact.edit' });
          report.queued++;
        }
      });
      offset = result.nextOffset;
    }
    if (newest !== null) deps.settings.set(CHECKPOINT_SETTING, newest);
  } catch (err) {
    report.error = isKeapError(err) || err instanceof Error ? err.message : String(err);
    deps.logger.warn({ error: report.error }, 'keap poll failed; the next one starts from the same checkpoint');
  }
  if (deps.keap.authMode !== 'none') {
    try {
      report.reactivated = await reactivateHooks(deps);
    } catch (err) {
      report.hookError = err instanceof Error ? err.message : String(err);
      deps.logger.warn({ error: report.hookError }, 'keap poll could not check the hook subscriptions');
    }
  }
  deps.settings.set(LAST_RUN_SETTING, JSON.stringify(report));
  schedulePoll(deps);
  const summary = `${report.changed} changed contact${report.changed === 1 ? '' : 's'} since ${report.since ?? '-'}: ${report.queued} update${report.queued === 1 ? '' : 's'} queued, ${report.alreadySynced} already synced`;
  return { status: 'done', result: report.error ? `poll failed: ${report.error}` : `${summary}${report.reactivated.length ? `; asked Keap to verify ${report.reactivated.join(', ')}` : ''}` };
}

/** Whether a member job for the contact was queued at or after `lastUpdated` and did not fail: it has the change. */
function syncedSince(events: EventStore, contactId: number, lastUpdated: string | null): boolean {
  if (!lastUpdated) return false;
  const recent = events.list({ contactId, page: 1, pageSize: 10 }).events;
  return recent.some((e) => ['add', 'update', 'update_tags'].includes(e.action) && e.createdAt >= lastUpdated && !['failed', 'dead'].includes(e.status));
}

async function reactivateHooks(deps: PollerDeps): Promise<string[]> {
  const prefix = `${deps.publicUrl.replace(/\/+$/, '')}${HOOK_PATH_PREFIX}`;
  const inactive = (await deps.keap.listHooks()).filter((h) => h.hookUrl.startsWith(prefix) && h.status !== 'Verified');
  const asked: string[] = [];
  for (const hook of inactive) {
    await deps.keap.verifyHook(hook.key);
    asked.push(hook.eventKey);
  }
  return asked;
}
