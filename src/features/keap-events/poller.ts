import { z } from 'zod';
import type { Clock } from '../../core/clock.js';
import type { JobOutcome, JobQueue, JobType } from '../../core/jobs/queue.js';
import { jobType } from '../../core/jobs/queue.js';
import type { EventStore } from '../../core/jobs/store.js';
import type { Logger } from '../../core/logger.js';
import type { TransactionScope, Transactions } from '../../core/outbox.js';
import type { SettingsStore } from '../../core/settings.js';
import type { KeapClient } from '../keap/client.js';
import type { KeapOrderSummary } from '../keap/types.js';
import { isKeapError } from '../keap/errors.js';
import type { MemberService } from '../members/service.js';
import { queueMemberJob, type KeapEvent } from './delivery.js';
import { HOOK_PATH_PREFIX } from './hook-token.js';
import type { ReportedChangeKind, ReportedChanges } from './reported-changes.js';

/** Where the events the poller causes come from (`source`). */
export const POLLER_SOURCE = 'poller';

/**
 * Off until asked for: a site that only takes campaign posts has nothing to catch up on. Registering hook
 * subscriptions turns contacts and tags on at RECOMMENDED_POLL_MINUTES (the safety net under them), unless the admin
 * chose already.
 */
export const DEFAULT_POLL_MINUTES = 0;
export const RECOMMENDED_POLL_MINUTES = 15;
/**
 * How far before the checkpoint each poll starts again. Keap stamps a change when it is saved, and a change saved a
 * moment before the previous poll's read may show up only after it (and Keap's clock and ours differ a little):
 * re-reading a few minutes costs a few repeated objects (skipped as already reported) and loses none on a boundary.
 */
export const OVERLAP_MS = 5 * 60_000;
/**
 * Pages (Keap calls) read per poll at most, tags' calls included: a first poll of a large account continues at the
 * next one, from its checkpoint. 150 calls take 15 s at a key's 10 a second.
 */
const MAX_PAGES = 150;
/**
 * Tags polled per run at most (one List Tagged Contacts call each, more only for a tag applied to over 1,000
 * contacts in one interval): at 15 minutes that is at most 9,600 of a key's 30,000 daily calls.
 */
export const MAX_POLLED_TAGS = 100;

/** The resources the poller reads, each with its own interval, checkpoint and report. */
export const POLLED_RESOURCES = ['contacts', 'tags', 'orders'] as const;
export type PolledResourceName = (typeof POLLED_RESOURCES)[number];

/** What one poll of a resource did, for the settings page. */
export interface PollReport {
  at: string;
  /** The window read: from the checkpoint less the overlap, to the time the poll started. */
  since: string | null;
  until: string | null;
  /** Changes Keap listed in the window. */
  found: number;
  /** Member jobs queued for them. */
  queued: number;
  /** Changes a hook, post or earlier poll had handed on already. */
  alreadySynced: number;
  /** keap.event actions fired. */
  events: number;
  /** Whether the window was read to its end (else the next poll goes on from where this one stopped). */
  complete: boolean;
  /** Anything worth knowing besides the counts (tags left out over the limit). */
  note?: string;
  reactivated: string[];
  error: string | null;
  /** Why the look at the hook subscriptions failed (the resource part may still have worked). */
  hookError?: string;
}

export interface PollerDeps {
  keap: KeapClient;
  transactions: Transactions;
  jobs: JobQueue;
  events: EventStore;
  members: MemberService;
  settings: SettingsStore;
  reported: ReportedChanges;
  clock: Clock;
  logger: Logger;
  /** The site's public URL: our subscriptions are the ones posting to PUBLIC_URL + HOOK_PATH_PREFIX. */
  publicUrl: string;
  /** The tag that makes a contact a member (the admin's "contact.add creates a member, only with the tag"), if on. */
  memberMakingTag(): number | undefined;
}

/** One change a resource's listing gave: the normalized event it becomes, and the contact whose member it touches. */
interface PolledChange {
  event: KeapEvent;
  kind: ReportedChangeKind;
  /** When Keap says it changed (ISO 8601); null when Keap left it out (then it is never skipped). */
  changedAt: string | null;
  /**
   * The member job it needs, for the member linked to this contact; `createWithTag`: a contact no member is linked to
   * gets an `add` that creates it if the contact (still) carries that tag.
   */
  memberJob?: { contactId: number; action: 'update' | 'update_tags'; createWithTag?: number };
}

interface PolledPage {
  changes: PolledChange[];
}

/**
 * A resource the poller reads: how to list one page of its changes in a window, and which checkpoint a poll leaves.
 * Lists are read oldest change first, so a poll that stops half-way may move its checkpoint to the newest change it
 * saw (`newestSeen`); one that read to the end moves it to the end of its window.
 */
interface PolledResource {
  name: PolledResourceName;
  job: JobType<{ now?: boolean | undefined }>;
  /** The pages of the window, one by one, oldest changes first. */
  pages(deps: PollerDeps, window: { since: Date; until: Date }, report: PollReport): AsyncGenerator<PolledPage>;
  /** Whether a poll that stopped half-way may keep the newest change it saw as its checkpoint (one ordered list only). */
  resumable: boolean;
}

const pollJob = (name: PolledResourceName) =>
  jobType({
    type: `keap_poll_${name}`,
    params: z.object({ now: z.boolean().optional() }),
    source: POLLER_SOURCE,
    // One scheduled poll waits at any time (each queues the next when it ends); the admin's "poll now" is a job of its
    // own beside it, so it does not wait for the scheduled one's time.
    dedupeKey: (p) => (p.now ? 'now' : 'scheduled'),
    eventType: () => `poll.${name}`,
  });

export const keapPollContacts = pollJob('contacts');
export const keapPollTags = pollJob('tags');
export const keapPollOrders = pollJob('orders');

/** Contacts changed (v1 list by last update): `update` for linked members, `contact.edit` events. */
const contactsResource: PolledResource = {
  name: 'contacts',
  job: keapPollContacts,
  resumable: true,
  async *pages(deps, { since, until }) {
    let offset: number | null = 0;
    while (offset !== null) {
      const page = await deps.keap.listContactsChangedSince(since, { offset, until });
      yield {
        changes: page.contacts.map((contact) => ({
          event: { objectType: 'contact', objectId: String(contact.id), eventType: 'contact.edit', source: POLLER_SOURCE, raw: { ...contact } },
          kind: 'contact',
          changedAt: contact.lastUpdated,
          memberJob: { contactId: contact.id, action: 'update' },
        })),
      };
      offset = page.nextOffset;
    }
  },
};

/**
 * Tags applied to contacts (v2 List Tagged Contacts by applied time), for the tags members hold: `update_tags` for
 * linked members, `contactGroup.applied` events. Those tags are what a member's record keeps and what access is
 * given by, and there are few of them, where an account may have thousands of tags: polling every one would cost a
 * call per tag per interval. A tag no member holds yet reaches members through the contacts poll (Keap moves a
 * contact's last update when a tag is applied) and the `contactGroup.applied` hook. Removals are not listed by Keap
 * at all: only the `contactGroup.removed` hook and the contacts poll bring them. The tag that makes members (Settings →
 * Keap events) is polled too, held or not: its contacts with no member get the `add` that creates one.
 */
const tagsResource: PolledResource = {
  name: 'tags',
  job: keapPollTags,
  resumable: false,
  async *pages(deps, { since, until }, report) {
    const memberMaking = deps.memberMakingTag();
    const held = deps.members.heldTags().map((t) => t.id).filter((id) => id !== memberMaking);
    // The member-making tag first: it is never the one left out over the limit.
    const polled = [...(memberMaking === undefined ? [] : [memberMaking]), ...held].slice(0, MAX_POLLED_TAGS);
    const total = held.length + (memberMaking === undefined ? 0 : 1);
    if (total > polled.length) report.note = `${total - polled.length} of the ${total} tags members hold were left out (at most ${MAX_POLLED_TAGS} a poll)`;
    for (const tagId of polled) {
      let token: string | undefined;
      do {
        const page = await deps.keap.listContactsTaggedBetween(tagId, since, until, token);
        yield {
          changes: page.items.map((contact) => ({
            event: {
              objectType: 'contact',
              objectId: String(contact.id),
              eventType: 'contactGroup.applied',
              source: POLLER_SOURCE,
              raw: { id: contact.id, tag_id: tagId, applied_time: contact.appliedTime },
            },
            kind: 'tag_applied',
            changedAt: contact.appliedTime,
            memberJob: { contactId: contact.id, action: 'update_tags', ...(tagId === memberMaking ? { createWithTag: tagId } : {}) },
          })),
        };
        token = page.nextPageToken ?? undefined;
      } while (token !== undefined);
    }
  },
};

/**
 * Orders changed (v2 List orders by modification time): `order.add` / `order.edit` events with the order as Keap
 * answered it, for plugins and the outbound webhooks. An order changes no member by itself.
 */
const ordersResource: PolledResource = {
  name: 'orders',
  job: keapPollOrders,
  resumable: true,
  async *pages(deps, { since, until }) {
    let token: string | undefined;
    do {
      const page = await deps.keap.listOrdersModifiedBetween(since, until, token);
      yield {
        changes: page.items.map((order) => ({
          event: {
            objectType: 'order',
            objectId: String(order.id),
            eventType: isNewOrder(deps, order, since) ? 'order.add' : 'order.edit',
            source: POLLER_SOURCE,
            raw: order.raw,
          },
          kind: 'order',
          changedAt: order.modificationTime,
        })),
      };
      token = page.nextPageToken ?? undefined;
    } while (token !== undefined);
  },
};

/**
 * Keap's own keys: `order.add` for an order created within the window and never handed on before (whatever was
 * changed since, in the same window), `order.edit` for the rest. Comparing its creation and modification times
 * would count on Keap writing both in the same instant for a new order, which its spec does not promise.
 */
function isNewOrder(deps: PollerDeps, order: KeapOrderSummary, since: Date): boolean {
  const created = typeof order.raw.creation_time === 'string' ? order.raw.creation_time : null;
  if (created === null || !(Date.parse(created) >= since.getTime())) return false;
  return !deps.reported.reportedSince('order', String(order.id), created);
}

const RESOURCES: Record<PolledResourceName, PolledResource> = { contacts: contactsResource, tags: tagsResource, orders: ordersResource };

/** Every poll job type, for the plugin to define. */
export const POLL_JOBS = POLLED_RESOURCES.map((name) => ({ name, job: RESOURCES[name].job }));

const setting = (resource: PolledResourceName, what: 'interval_minutes' | 'checkpoint' | 'last_run') => `keap_poll.${resource}.${what}`;

export function pollIntervalMinutes(settings: SettingsStore, resource: PolledResourceName): number {
  const raw = settings.get(setting(resource, 'interval_minutes'));
  return raw === undefined ? DEFAULT_POLL_MINUTES : Number(raw);
}

export function setPollInterval(settings: SettingsStore, resource: PolledResourceName, minutes: number): void {
  settings.set(setting(resource, 'interval_minutes'), String(minutes));
}

/** Whether the admin ever chose an interval (registering hooks sets the recommended one only when not). */
export function pollIntervalChosen(settings: SettingsStore, resource: PolledResourceName): boolean {
  return settings.get(setting(resource, 'interval_minutes')) !== undefined;
}

export function lastPoll(settings: SettingsStore, resource: PolledResourceName): PollReport | undefined {
  const raw = settings.get(setting(resource, 'last_run'));
  return raw ? (JSON.parse(raw) as PollReport) : undefined;
}

export function pollCheckpoint(settings: SettingsStore, resource: PolledResourceName): string | undefined {
  return settings.get(setting(resource, 'checkpoint'));
}

/**
 * Makes sure a scheduled poll of the resource is waiting (one at most, by its dedupe key); `now`: one more, at
 * once. Polling that resource off: none.
 */
export function schedulePoll(deps: Pick<PollerDeps, 'jobs' | 'settings' | 'clock'>, resource: PolledResourceName, when: 'later' | 'now' = 'later'): void {
  const minutes = pollIntervalMinutes(deps.settings, resource);
  if (!(minutes > 0)) return;
  const { job } = RESOURCES[resource];
  if (when === 'now') pollNow(deps, resource);
  else deps.jobs.enqueue(job, {}, { runAfter: deps.clock.now() + minutes * 60_000 });
}

/** One poll of the resource, at once, whether or not its polling is on (the admin's "poll now"). */
export function pollNow(deps: Pick<PollerDeps, 'jobs'>, resource: PolledResourceName): void {
  deps.jobs.enqueue(RESOURCES[resource].job, { now: true });
}

/**
 * One poll of a resource, the safety net under the hooks (and the way in for a site without them): its changes
 * between the checkpoint (less OVERLAP_MS) and now, read page by page through the Keap client (and so within Keap's
 * limits), each page in one transaction: the keap.event of every change not handed on already (a hook delivered
 * it, or the previous poll's overlap read it), and the member job it needs unless one ran or waits since the change
 * (a hook or a campaign post got there first). The checkpoint (UTC) moves to the end of the window once the window
 * is read to its end, else to the newest change read (for a list read in order). It also asks Keap to verify this
 * site's hook subscriptions that are not Verified (deliveries failed while the site was down), so hooks come back
 * by themselves.
 */
export async function poll(deps: PollerDeps, resourceName: PolledResourceName): Promise<JobOutcome> {
  const resource = RESOURCES[resourceName];
  const now = deps.clock.now();
  const report: PollReport = { at: new Date(now).toISOString(), since: null, until: null, found: 0, queued: 0, alreadySynced: 0, events: 0, complete: false, reactivated: [], error: null };
  try {
    if (deps.keap.authMode === 'none') throw new Error('Keap is not set up, so there is nothing to poll');
    const checkpoint = pollCheckpoint(deps.settings, resourceName);
    // The first poll looks back one interval: older changes are what a bulk import is for.
    const since = new Date(checkpoint ? Date.parse(checkpoint) - OVERLAP_MS : now - Math.max(1, pollIntervalMinutes(deps.settings, resourceName)) * 60_000);
    const until = new Date(now);
    report.since = since.toISOString();
    report.until = until.toISOString();
    let newestSeen: string | null = null;
    let pages = 0;
    let stopped = false;
    for await (const page of resource.pages(deps, { since, until }, report)) {
      await handOn(deps, page.changes, report);
      for (const change of page.changes) {
        // Keap writes times with or without milliseconds: compared (and stored) in one form.
        const at = change.changedAt === null || Number.isNaN(Date.parse(change.changedAt)) ? null : new Date(Date.parse(change.changedAt)).toISOString();
        if (at !== null && (newestSeen === null || at > newestSeen)) newestSeen = at;
      }
      if (++pages >= MAX_PAGES) {
        stopped = true;
        break;
      }
    }
    report.complete = !stopped;
    const next = report.complete ? until.toISOString() : resource.resumable ? newestSeen : null;
    if (next !== null && (!checkpoint || next > checkpoint)) deps.settings.set(setting(resourceName, 'checkpoint'), next);
    // What a hook or poll reported before this window began can no longer come up again.
    deps.reported.prune(KIND_OF[resourceName], new Date(since.getTime() - OVERLAP_MS).toISOString());
  } catch (err) {
    report.error = isKeapError(err) || err instanceof Error ? err.message : String(err);
    deps.logger.warn({ resource: resourceName, error: report.error }, 'keap poll failed; the next one starts from the same checkpoint');
  }
  if (deps.keap.authMode !== 'none') {
    try {
      report.reactivated = await reactivateHooks(deps);
    } catch (err) {
      report.hookError = err instanceof Error ? err.message : String(err);
      deps.logger.warn({ error: report.hookError }, 'keap poll could not check the hook subscriptions');
    }
  }
  deps.settings.set(setting(resourceName, 'last_run'), JSON.stringify(report));
  schedulePoll(deps, resourceName);
  return { status: 'done', result: report.error ? `poll of ${resourceName} failed: ${report.error}` : describePoll(resourceName, report) };
}

const KIND_OF: Record<PolledResourceName, ReportedChangeKind> = { contacts: 'contact', tags: 'tag_applied', orders: 'order' };

/** Whether the poller reading changes of this kind is on (then a hook's changes are recorded for it to skip). */
export function kindPolled(settings: SettingsStore, kind: ReportedChangeKind): boolean {
  const resource = POLLED_RESOURCES.find((r) => KIND_OF[r] === kind)!;
  return pollIntervalMinutes(settings, resource) > 0;
}

/** One page's changes, handed on in one transaction: a poll that stops half-way has handed on whole pages only. */
async function handOn(deps: PollerDeps, changes: PolledChange[], report: PollReport): Promise<void> {
  const contacts = changes.flatMap((c) => (c.memberJob ? [c.memberJob.contactId] : []));
  const linked = contacts.length ? deps.members.linkedContactIds([...new Set(contacts)]) : new Set<number>();
  await deps.transactions.run((tx: TransactionScope) => {
    for (const change of changes) {
      report.found++;
      const { memberJob } = change;
      const isMember = memberJob !== undefined && linked.has(memberJob.contactId);
      const creates = memberJob?.createWithTag !== undefined && !isMember;
      const handedOn = deps.reported.reportedSince(change.kind, change.event.objectId, change.changedAt);
      const needsJob = (isMember || creates) && !syncedSince(deps.events, memberJob!.contactId, change.changedAt);
      if (!handedOn) {
        tx.emit('keap.event', change.event);
        if (change.changedAt) deps.reported.record(change.kind, change.event.objectId, change.changedAt);
        report.events++;
      }
      if (needsJob) {
        const action = creates ? 'add' : memberJob!.action;
        const options = { source: POLLER_SOURCE, eventType: change.event.eventType, onlyWithTag: creates ? memberJob!.createWithTag : undefined };
        if (queueMemberJob(deps.jobs, action, memberJob!.contactId, options) === 'queued') report.queued++;
        else report.alreadySynced++;
      } else if (handedOn || isMember || creates) report.alreadySynced++;
    }
  });
}

function describePoll(resource: PolledResourceName, report: PollReport): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return [
    `${plural(report.found, 'change')} to ${resource} since ${report.since ?? '-'}: ${plural(report.queued, 'member job')} queued, ${report.alreadySynced} already synced, ${plural(report.events, 'event')}`,
    report.complete ? '' : '; more next time',
    report.reactivated.length ? `; asked Keap to verify ${report.reactivated.join(', ')}` : '',
  ].join('');
}

/** Whether a member job for the contact was queued at or after `changedAt` and did not fail: it has the change. */
function syncedSince(events: EventStore, contactId: number, changedAt: string | null): boolean {
  if (!changedAt) return false;
  const changed = new Date(Date.parse(changedAt)).toISOString();
  const recent = events.list({ contactId, page: 1, pageSize: 10 }).events;
  return recent.some((e) => ['add', 'update', 'update_tags'].includes(e.action) && e.createdAt >= changed && !['failed', 'dead'].includes(e.status));
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
