import { KeapError, KeapPermanentError, KeapRetryableError } from '../keap/errors.js';
import type { KeapClient } from '../keap/client.js';
import type { MemberService } from './service.js';

/**
 * Linking a member an administrator adds (or added) by hand to a Keap contact: an existing one, found by id or by
 * email and shown before it is linked, or one created in Keap with the member's email and names. Every Keap call
 * goes through the app's client (its rate limiter and retries); nothing here writes to the member: the caller
 * stores the link, so a refused link or an unreachable Keap changes nothing.
 */

export type KeapLinkChoice = 'none' | 'link' | 'create';
export const KEAP_LINK_CHOICES: readonly KeapLinkChoice[] = ['none', 'link', 'create'];

/** Who a Keap contact is, as the admin pages show it. */
export interface KeapContactCard {
  id: number;
  name: string;
  email: string | null;
}

export type KeapLinkResult =
  | { ok: true; contact: KeapContactCard; created: boolean }
  | { ok: false; message: string; /** Keap could not be asked: the form may offer to go on without a link. */ unreachable: boolean };

interface Deps {
  keap: KeapClient;
  members: Pick<MemberService, 'findByContactId'>;
}

const CONTACT_ID = /^[1-9]\d{0,15}$/;
const LOOSE_EMAIL = /^[^\s@]+@[^\s@]+$/;

/**
 * The contact `reference` (a contact id, or an email address Keap has on exactly one contact) names, checked to
 * exist and to be linked to no member but `memberId`.
 */
export async function findContactToLink(deps: Deps, reference: string, memberId?: number): Promise<KeapLinkResult> {
  const ref = reference.trim();
  if (!ref) return refused('Enter the Keap contact’s id or email address.');
  try {
    let contact: KeapContactCard;
    if (CONTACT_ID.test(ref)) {
      const found = await deps.keap.getContact(Number(ref)).catch((err: unknown) => {
        if (err instanceof KeapPermanentError && err.notFound) return undefined;
        throw err;
      });
      if (!found) return refused(`Keap has no contact with the id ${ref}.`);
      contact = { id: found.id, name: [found.givenName, found.familyName].filter(Boolean).join(' '), email: found.email };
    } else if (LOOSE_EMAIL.test(ref) && ref.length <= 254) {
      const found = await deps.keap.findContactsByEmail(ref, 5);
      if (found.length === 0) return refused(`Keap has no contact with the email ${ref}.`);
      if (found.length > 1) return refused(`Keap has ${found.length} contacts with the email ${ref} (ids ${found.map((c) => c.id).join(', ')}): enter the id of the one to link.`);
      const only = found[0]!;
      contact = { id: only.id, name: [only.givenName, only.familyName].filter(Boolean).join(' '), email: only.email };
    } else {
      return refused('Enter a Keap contact id (a number) or an email address.');
    }
    const holder = deps.members.findByContactId(contact.id);
    if (holder && holder.id !== memberId) return refused(`Keap contact ${contact.id} is already linked to the member ${holder.email}.`);
    return { ok: true, contact, created: false };
  } catch (err) {
    return keapFailure(err);
  }
}

/**
 * Creates a contact with the member's email and names (v1 POST /contacts). Refused when Keap already has a contact
 * with that email: the admin links to it instead of making a duplicate Keap would then hold twice.
 */
export async function createContactFor(deps: Deps, member: { email: string; firstName: string; lastName: string }): Promise<KeapLinkResult> {
  try {
    const existing = await deps.keap.findContactsByEmail(member.email, 5);
    if (existing.length > 0) {
      const ids = existing.map((c) => c.id).join(', ');
      return refused(`Keap already has ${existing.length === 1 ? `contact ${ids}` : `contacts ${ids}`} with the email ${member.email}: choose “Link to an existing contact” instead.`);
    }
    const created = await deps.keap.createContact({ email: member.email, givenName: member.firstName, familyName: member.lastName });
    return { ok: true, contact: { id: created.id, name: [created.givenName, created.familyName].filter(Boolean).join(' '), email: created.email ?? member.email }, created: true };
  } catch (err) {
    return keapFailure(err);
  }
}

function refused(message: string): KeapLinkResult {
  return { ok: false, message, unreachable: false };
}

/** Keap's error in words for the admin: what failed and why, never a credential (the client scrubs those). */
function keapFailure(err: unknown): KeapLinkResult {
  if (err instanceof KeapRetryableError) {
    const why = err.reason === 'throttled' ? 'it asks to slow down (rate limit)' : err.reason === 'timeout' ? 'it did not answer in time' : err.reason === 'network' ? 'it could not be reached' : `it failed (HTTP ${err.status})`;
    return { ok: false, message: `Keap could not be asked: ${why}.`, unreachable: true };
  }
  if (err instanceof KeapPermanentError && err.unauthorized) {
    return { ok: false, message: 'Keap refused memberhook’s credentials: check Settings, Keap connection.', unreachable: true };
  }
  if (err instanceof KeapError) {
    return { ok: false, message: `Keap refused the request (HTTP ${err.status}${err.keapMessage ? `: ${err.keapMessage.slice(0, 200)}` : ''}).`, unreachable: false };
  }
  throw err;
}
