import { z } from 'zod';
import type { JobQueue, JobOutcome, Job } from '../../core/jobs/queue.js';
import { jobType } from '../../core/jobs/queue.js';
import type { Transactions } from '../../core/outbox.js';
import { webhookJobType } from '../http-post/jobs.js';
import type { MemberService } from '../members/service.js';
import { reportedChangeKind, type ReportedChangeKind, type ReportedChanges } from './reported-changes.js';

/** Where the events these deliveries cause come from, in the event log and the API (`source`). */
export const REST_HOOK_SOURCE = 'rest_hook';

/** Keap sends at most 1,000 changed objects in one delivery. */
const MAX_OBJECTS = 1_000;
/** Objects fanned out per transaction (see fanOut). */
const FAN_OUT_SLICE = 100;

const EVENT_KEY = /^[A-Za-z]+(\.[A-Za-z]+)+$/;
const ID_TEXT = /^[1-9]\d{0,15}$/;
const objectId = z.union([z.number().int().positive(), z.string().regex(ID_TEXT)]).transform(Number);

/**
 * A REST hook delivery as Keap documents it: `event_key`, `object_type` and up to 1,000 `object_keys`, each with an
 * `id` (`apiUrl` and `timestamp` may be missing or empty: the objects are read again from the API, never trusted).
 * A tag event names the contacts it touched in `contactDetails`. Unknown fields are kept (the raw payload is the
 * event's record) but not relied on.
 */
export const hookDelivery = z.looseObject({
  event_key: z.string().regex(EVENT_KEY, 'expected an event key such as contact.edit'),
  object_type: z.string().max(100),
  object_keys: z
    .array(
      z.looseObject({
        id: objectId,
        apiUrl: z.string().max(2_000).nullish(),
        timestamp: z.string().max(100).nullish(),
        contactDetails: z.array(z.looseObject({ id: objectId })).max(MAX_OBJECTS).optional(),
      }),
    )
    .max(MAX_OBJECTS),
});

export type HookDelivery = z.infer<typeof hookDelivery>;

/** A delivery as it arrives (ids may be numeric strings); `hookDelivery` turns it into a HookDelivery. */
export type ArrivedHookDelivery = z.input<typeof hookDelivery>;

/**
 * Whether `value` is a delivery `hookDelivery` accepts, checked in one plain pass: the receiver's answer waits for
 * this, and zod's walk over 1,000 objects costs several times the rest of the answer. Never looser than the schema
 * (a test holds the two together); a body it refuses is checked by the schema too, which names what is wrong.
 */
export function isHookDelivery(value: unknown): value is ArrivedHookDelivery {
  if (!isPlainObject(value)) return false;
  const { event_key: key, object_type: type, object_keys: objects } = value;
  if (typeof key !== 'string' || !EVENT_KEY.test(key)) return false;
  if (typeof type !== 'string' || type.length > 100) return false;
  if (!Array.isArray(objects) || objects.length > MAX_OBJECTS) return false;
  for (const object of objects) {
    if (!isPlainObject(object) || !isObjectId(object.id)) return false;
    const { apiUrl, timestamp, contactDetails } = object;
    if (apiUrl != null && (typeof apiUrl !== 'string' || apiUrl.length > 2_000)) return false;
    if (timestamp != null && (typeof timestamp !== 'string' || timestamp.length > 100)) return false;
    if (contactDetails !== undefined) {
      if (!Array.isArray(contactDetails) || contactDetails.length > MAX_OBJECTS) return false;
      for (const contact of contactDetails) if (!isPlainObject(contact) || !isObjectId(contact.id)) return false;
    }
  }
  return true;
}

/** A delivery `isHookDelivery` took, with its ids as numbers (as `hookDelivery` reads them). */
function toHookDelivery(arrived: ArrivedHookDelivery): HookDelivery {
  return {
    ...arrived,
    object_keys: arrived.object_keys.map(({ contactDetails, ...object }) => ({
      ...object,
      id: Number(object.id),
      ...(contactDetails ? { contactDetails: contactDetails.map((c) => ({ ...c, id: Number(c.id) })) } : {}),
    })),
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isObjectId(id: unknown): boolean {
  return typeof id === 'number' ? Number.isSafeInteger(id) && id > 0 : typeof id === 'string' && ID_TEXT.test(id);
}

/**
 * One delivery, written as it arrived (the durable write the answer waits for), then fanned out by its job into one
 * normalized event per object. Keap retries a delivery it did not see answered: a repeated one fans out again,
 * and its jobs fold into the identical ones still waiting, so duplicates cost nothing.
 */
export const keapHookDelivery = jobType({
  type: 'keap_hook_delivery',
  // Checked on arrival already; read again when the job runs (in the job thread, beside the commits the receiver's
  // answers wait for), where the one-pass check costs a fraction of zod's walk over a thousand objects.
  params: z.custom<ArrivedHookDelivery>(isHookDelivery, 'not a REST hook delivery as Keap documents it').transform(toHookDelivery),
  source: REST_HOOK_SOURCE,
  eventType: (p) => p.event_key,
});

/**
 * One change Keap told us about, whichever way it came: the normalized event every source hands on (object type
 * and id, the event type as Keap names it, where it came from, and the object's part of what Keap sent).
 */
export interface KeapEvent {
  objectType: string;
  objectId: string;
  eventType: string;
  /** `import`: Members → Import from Keap (event type `contact.import`). */
  source: 'rest_hook' | 'poller' | 'import';
  raw: Record<string, unknown>;
}

declare module '../../core/hooks.js' {
  interface ActionMap {
    /**
     * A change Keap reported, one per object: from a REST hook delivery (any event key, orders and invoices too) or
     * the poller (contacts changed, tags applied, orders; a change a hook delivered is not fired again by a poll); or a
     * contact an import made or linked a member (source `import`, event type `contact.import`). For plugins and the
     * outbound webhooks; members are updated by the jobs it queues.
     * @fires after the jobs the change causes are queued (in the same transaction)
     * @durable
     */
    'keap.event': [event: KeapEvent];
  }
}

/** What the events of one key do to members; the admin chooses for `contact.add` and `contact.delete`. */
export interface DeliveryRules {
  /** `contact.add` creates a member (off by default: a new contact is not yet someone who bought access). */
  addMembers(): boolean;
  /**
   * With addMembers on, the tag a contact must carry to become a member (undefined: any contact). A new contact
   * usually gets its tags moments after it is created, so that tag's `contactGroup.applied` creates the member too.
   */
  addMembersOnlyWithTag(): number | undefined;
  /** Which of these contacts have a member linked: only those get jobs for edits, tag changes and deletions. */
  linkedContacts(contactIds: readonly number[]): Set<number>;
}

/** What a contact deleted in Keap does to its member (the admin's choice; blocking by default, which can be undone). */
export const ON_DELETE_CHOICES = ['block', 'delete', 'nothing'] as const;
export type OnDelete = (typeof ON_DELETE_CHOICES)[number];

/** The member of a contact deleted in Keap: blocked, deleted or left alone, as the admin chose (read when it runs). */
export const keapContactDeleted = jobType({
  type: 'keap_contact_deleted',
  params: z.object({ contact_id: z.number().int().positive() }),
  source: REST_HOOK_SOURCE,
  dedupeKey: (p) => String(p.contact_id),
  contactId: (p) => p.contact_id,
  eventType: () => 'contact.delete',
});

/**
 * The `keap_hook_delivery` job: every object becomes the job the same change would get from an HTTP Post, queued in
 * one transaction with the event type Keap named, so a campaign's post and a hook about the same contact fold
 * into one Keap read:
 * - `contact.edit`: `update` (fields and tags of the linked member; contacts no member is linked to get no job);
 * - `contactGroup.applied` / `contactGroup.removed`: `update_tags` for each contact the delivery names (its ids
 *   with object type `contact`, or a tag's `contactDetails`);
 * - `contact.add`: `add`, when the admin turned that on; with a tag chosen, an `add` that creates the member only if
 *   the contact carries the tag when the job reads its tags, and the same `add` for the contacts no member is linked
 *   to that a `contactGroup.applied` names (Keap's delivery names the contact, not the tag: the job checks);
 * - `contact.delete`: `keap_contact_deleted`, which blocks, deletes or leaves the member, as the admin chose;
 * - anything else (orders, invoices, ...): recorded, for plugins and the event log, and nothing more.
 */
export async function fanOut(
  deps: { transactions: Transactions; jobs: JobQueue; rules: DeliveryRules; reported: ReportedChanges; polled(kind: ReportedChangeKind): boolean },
  job: Job<HookDelivery>,
): Promise<JobOutcome> {
  const { event_key: key, object_type: objectType, object_keys: objects } = job.params;
  const plans = planFor(job.params, deps.rules);
  const longest = Math.max(0, ...plans.map((p) => p.contacts.length));
  // What the poller would read back as the same change: recorded as handed on when the delivery arrived, so a poll
  // after it skips it (a tag event's changes are the contacts it names). Not while that poller is off: nothing
  // would read it, and a 1,000-object delivery would write a thousand rows for nothing.
  const kind = reportedChangeKind(key);
  const reportedIds = kind === undefined || !deps.polled(kind) ? [] : kind === 'tag_applied' ? namedContacts(job.params) : objects.map((o) => o.id);
  // In slices, each its own transaction, with a turn of the event loop between them: a thousand jobs written in one
  // go would hold this thread (which also commits the posts and deliveries being acknowledged) for tens of ms. A
  // crash half-way runs the job again from the start; the slices already queued fold into their waiting jobs.
  for (let start = 0; start < Math.max(longest, objects.length, reportedIds.length); start += FAN_OUT_SLICE) {
    await deps.transactions.run((tx) => {
      for (const id of reportedIds.slice(start, start + FAN_OUT_SLICE)) deps.reported.record(kind!, id, job.createdAt);
      for (const plan of plans) {
        for (const contactId of plan.contacts.slice(start, start + FAN_OUT_SLICE)) {
          if (plan.action === 'contact_deleted') deps.jobs.enqueue(keapContactDeleted, { contact_id: contactId });
          else queueMemberJob(deps.jobs, plan.action, contactId, { source: REST_HOOK_SOURCE, eventType: key, onlyWithTag: plan.onlyWithTag });
        }
      }
      for (const object of objects.slice(start, start + FAN_OUT_SLICE)) {
        tx.emit('keap.event', { objectType, objectId: String(object.id), eventType: key, source: REST_HOOK_SOURCE, raw: object });
      }
    });
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (plans.length === 0) return { status: 'done', result: `${objects.length} ${key} object${objects.length === 1 ? '' : 's'} recorded; no member action for ${key}` };
  const queued = plans.map((plan) => {
    const type = plan.action === 'contact_deleted' ? keapContactDeleted.type : plan.action;
    return `${plan.contacts.length} ${type} job${plan.contacts.length === 1 ? '' : 's'}${plan.onlyWithTag === undefined ? '' : ` (only with tag ${plan.onlyWithTag})`}`;
  });
  return { status: 'done', result: `${queued.join(' and ')} queued for ${key}` };
}

/** The member jobs a Keap change can need: the HTTP Post receiver's actions, so both fold into each other. */
export type MemberJobAction = 'add' | 'update' | 'update_tags';

/**
 * Queues the member job a Keap change needs, the same job (type and params) an HTTP Post queues for that contact,
 * so one waiting for it takes this one in. `update_tags` is not queued while the contact's full `update` waits (it
 * reads the tags too): a campaign post, a hook and a poll about one change cost one Keap read.
 */
export function queueMemberJob(
  jobs: JobQueue,
  action: MemberJobAction,
  contactId: number,
  options: { source: string; eventType: string; onlyWithTag?: number | undefined },
): 'queued' | 'folded' | 'covered' {
  const { onlyWithTag, ...queueOptions } = options;
  const params = { contact_id: contactId };
  if (action === 'update_tags' && jobs.isWaiting(webhookJobType('update'), params)) return 'covered';
  const withCondition = action === 'add' && onlyWithTag !== undefined ? { ...params, only_with_tag: onlyWithTag } : params;
  return jobs.enqueue(webhookJobType(action), withCondition, queueOptions).coalesced ? 'folded' : 'queued';
}

/** The member jobs of one kind a delivery needs; `onlyWithTag`: `add` jobs that create only with that tag. */
interface DeliveryPlan {
  action: MemberJobAction | 'contact_deleted';
  contacts: number[];
  onlyWithTag?: number;
}

function planFor(delivery: HookDelivery, rules: DeliveryRules): DeliveryPlan[] {
  const { event_key: key, object_keys: objects } = delivery;
  const unique = (ids: number[]) => [...new Set(ids)];
  const onlyWithTag = rules.addMembers() ? rules.addMembersOnlyWithTag() : undefined;
  // Most of a Keap account's contacts are not members: a job for each would only be skipped (and fill the event
  // log). A member being created right now by a waiting `add` needs none either: `add` reads the whole contact.
  const members = (ids: number[]) => {
    const linked = rules.linkedContacts(unique(ids));
    return unique(ids).filter((id) => linked.has(id));
  };
  switch (key) {
    case 'contact.edit':
      return [{ action: 'update', contacts: members(objects.map((o) => o.id)) }];
    case 'contact.add':
      if (!rules.addMembers()) return [];
      return [{ action: 'add', contacts: unique(objects.map((o) => o.id)), ...(onlyWithTag === undefined ? {} : { onlyWithTag }) }];
    case 'contact.delete':
      return [{ action: 'contact_deleted', contacts: members(objects.map((o) => o.id)) }];
    case 'contactGroup.applied': {
      const tagged = members(namedContacts(delivery));
      if (onlyWithTag === undefined) return [{ action: 'update_tags', contacts: tagged }];
      // The tag that makes members, applied to contacts no member is linked to: each gets the conditional `add`.
      const linked = new Set(tagged);
      const candidates = contactsMaybeTaggedWith(delivery, onlyWithTag).filter((id) => !linked.has(id));
      return [{ action: 'update_tags', contacts: tagged }, { action: 'add', contacts: candidates, onlyWithTag }];
    }
    case 'contactGroup.removed':
      return [{ action: 'update_tags', contacts: members(namedContacts(delivery)) }];
    default:
      return [];
  }
}

/**
 * The contacts a `contactGroup.applied` delivery may have given `tagId`: Keap's (and the sandbox's) names the contact
 * only, so every one it names (their `add` reads the tags it needs anyway, and skips a contact without it); a body
 * with the tag's id and its `contactDetails` names the tag, so only that tag's contacts.
 */
function contactsMaybeTaggedWith(delivery: HookDelivery, tagId: number): number[] {
  if (delivery.object_type === 'contact') return namedContacts(delivery);
  return [...new Set(delivery.object_keys.filter((o) => o.id === tagId).flatMap((o) => (o.contactDetails ?? []).map((c) => c.id)))];
}

/**
 * The contacts a tag event names. Keap does not document this body: its ids are contacts only when the object type
 * says so; a tag's id with the contacts in `contactDetails` is read too. Anything else names no contact: the poller
 * catches it up.
 */
function namedContacts(delivery: HookDelivery): number[] {
  const { object_type: type, object_keys: objects } = delivery;
  return [...new Set(type === 'contact' ? objects.map((o) => o.id) : objects.flatMap((o) => (o.contactDetails ?? []).map((c) => c.id)))];
}

/** The `keap_contact_deleted` job: the member of the deleted contact, blocked, deleted or kept. */
export async function contactDeleted(
  deps: { members: MemberService; onDelete(): OnDelete; now(): number },
  job: Job<{ contact_id: number }>,
): Promise<JobOutcome> {
  const member = deps.members.findByContactId(job.params.contact_id);
  if (!member) return { status: 'skipped', result: `no member is linked to contact ${job.params.contact_id}` };
  // Keap manages members, not the site's administrators: their accounts are never changed by a contact's deletion.
  if (member.roleIsAdmin) return { status: 'skipped', result: `member ${member.id} has admin rights: left as it is` };
  const choice = deps.onDelete();
  if (choice === 'nothing') return { status: 'skipped', result: `member ${member.id} left as it is (contact.delete does nothing, as set)` };
  if (choice === 'delete') {
    await deps.members.delete(member.id);
    return { status: 'done', result: `deleted member ${member.id}` };
  }
  await deps.members.block(member.id, `its Keap contact ${job.params.contact_id} was deleted`, deps.now());
  return { status: 'done', result: `blocked member ${member.id}` };
}
