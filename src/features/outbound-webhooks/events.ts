import type { KeapEvent } from '../keap-events/delivery.js';
import { publicMember } from '../members/public-shape.js';
import type { Member } from '../members/types.js';

/**
 * The outbound event types: the member actions under their own names, and every Keap event as `keap.` + the event
 * key Keap uses (`keap.contact.edit`, `keap.contactGroup.applied`, `keap.order.add`, ...), so a destination names
 * Keap's events the way Keap's documentation does.
 */
export const MEMBER_EVENT_TYPES = [
  'member.created',
  'member.updated',
  'member.tags_changed',
  'member.role_changed',
  'member.deleted',
  'member.logged_in',
  'member.password_changed',
] as const;
export type MemberEventType = (typeof MEMBER_EVENT_TYPES)[number];

export const KEAP_EVENT_PREFIX = 'keap.';

/** `*`, a member event, `member.*`, `keap.*`, or a Keap event key after `keap.`, itself possibly ending in `.*`. */
const KEAP_PATTERN = /^keap\.(\*|[A-Za-z]+(\.[A-Za-z]+)*(\.\*)?)$/;

/** What is wrong with an event pattern a destination lists, or null when it is one. */
export function eventPatternProblem(pattern: string): string | null {
  if (pattern === '*' || pattern === 'member.*') return null;
  if ((MEMBER_EVENT_TYPES as readonly string[]).includes(pattern)) return null;
  if (KEAP_PATTERN.test(pattern)) return null;
  return `"${pattern}" is not an event type: use one of ${MEMBER_EVENT_TYPES.join(', ')}, member.*, keap.<Keap event key> (keap.contact.edit), keap.contact.* or *`;
}

/** Whether `type` is one of `patterns` (a pattern ending in `.*` matches every type that starts with what precedes it). */
export function matchesEventPatterns(patterns: readonly string[], type: string): boolean {
  for (const pattern of patterns) {
    if (pattern === '*' || pattern === type) return true;
    if (pattern.endsWith('.*') && type.startsWith(pattern.slice(0, -1))) return true;
  }
  return false;
}

/**
 * A Keap event's data: the normalized event (object type and id, Keap's event key, where it came from, Keap's part
 * of the payload) and the member linked to the contact, when there is one (the shape of `sampleEvent`'s), in the
 * JSON API's snake_case (`GET /api/v1/events` names the same fields so).
 */
export function keapEventData(event: KeapEvent, member: Member | undefined) {
  return {
    object_type: event.objectType,
    object_id: event.objectId,
    event_type: event.eventType,
    source: event.source,
    raw: event.raw,
    member: member ? publicMember(member) : null,
  };
}
