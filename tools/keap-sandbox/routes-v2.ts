import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { readContactPatch } from './contact-changes.js';
import { SandboxHttpError } from './error-bodies.js';
import { pathId, queryInteger, queryList, queryString, queryV2Filter, type V2FilterField, type V2FilterTerm } from './query.js';
import type { SandboxContact, SandboxOrder, SandboxState } from './state.js';

/**
 * REST v2 (`/crm/rest/v2/...`), shapes from keap-rest-v2.openapi.yml: ids are strings (Contact.id, tag_ids,
 * CustomFieldValue.id, Tag.id, CategoryReference.id), and `fields` picks the optional properties.
 */

/** The `fields` names the spec lists for a Contact (also the `update_mask` enum). */
export const V2_CONTACT_FIELDS = [
  'addresses', 'anniversary_date', 'birth_date', 'company', 'contact_type', 'create_time', 'custom_fields', 'email_addresses',
  'family_name', 'fax_numbers', 'given_name', 'id', 'job_title', 'leadsource_id', 'links', 'middle_name', 'notes', 'origin',
  'owner_id', 'phone_numbers', 'preferred_locale', 'preferred_name', 'prefix', 'referral_code', 'score_value', 'social_accounts',
  'source_type', 'spouse_name', 'suffix', 'tag_ids', 'time_zone', 'update_time', 'utm_parameters', 'website', 'account_id',
  'assistant_name', 'assistant_phone', 'billing_information', 'created_by', 'groups', 'last_updated_by',
] as const;
const KNOWN_FIELDS = new Set<string>(V2_CONTACT_FIELDS);

/**
 * What a GET answers without `fields`. custom_fields and tag_ids are left out on purpose: a client that forgets to
 * ask for them should notice here, not in production.
 */
export const V2_DEFAULT_FIELDS = ['id', 'given_name', 'family_name', 'email_addresses', 'create_time', 'update_time'] as const;

const MAX_PAGE_SIZE = 1000;

const patchBodySchema = z.looseObject({
  given_name: z.string().max(40).optional(),
  family_name: z.string().max(40).optional(),
  email_addresses: z
    .array(z.object({ email: z.string().max(100), field: z.enum(['EMAIL1', 'EMAIL2', 'EMAIL3']), opt_in_reason: z.string().optional() }))
    .optional(),
  // v2 types CustomFieldValue.id as a string; a number here is a client bug the spec would reject too.
  custom_fields: z.array(z.object({ id: z.string(), content: z.unknown().optional() })).optional(),
});

export function v2Routes(state: SandboxState): Router {
  const router = express.Router();

  // List Contacts: `fields`, `filter` (the subset below), `order_by`, `page_size` (at most 1,000), `page_token`;
  // `next_page_token` only while another page follows.
  router.get('/contacts', (req: Request, res: Response) => {
    const fields = requestedFields(req.query.fields) ?? new Set(V2_DEFAULT_FIELDS);
    const filter = parseContactFilter(queryString(req.query.filter, 'filter'));
    const order = parseContactOrder(queryString(req.query.order_by, 'order_by'));
    const pageSize = queryInteger(req.query.page_size, 'page_size', { min: 0, max: MAX_PAGE_SIZE }) || MAX_PAGE_SIZE;
    const offset = decodePageToken(queryString(req.query.page_token, 'page_token'));
    const matches = [...state.contacts.values()].filter(filter).sort(order);
    const more = offset + pageSize < matches.length;
    res.json({
      contacts: matches.slice(offset, offset + pageSize).map((c) => v2Contact(state, c, fields)),
      ...(more ? { next_page_token: encodePageToken(offset + pageSize) } : {}),
    });
  });

  // List Contacts with a Tag: TaggedContact (id, email, names, applied_time), paged like the contact list.
  router.get('/tags/:tag_id/contacts', (req: Request, res: Response) => {
    const tagId = pathId(req.params.tag_id, 'tag_id');
    if (!state.tags.has(tagId)) throw new SandboxHttpError(404, `Tag ${tagId} not found`);
    const filter = parseTaggedFilter(req.query.filter, tagId);
    const order = parseTaggedOrder(queryString(req.query.order_by, 'order_by'), tagId);
    const pageSize = queryInteger(req.query.page_size, 'page_size', { min: 0, max: MAX_PAGE_SIZE }) || MAX_PAGE_SIZE;
    const offset = decodePageToken(queryString(req.query.page_token, 'page_token'));
    const matches = [...state.contacts.values()].filter((c) => c.tag_ids.includes(tagId) && filter(c)).sort(order);
    const more = offset + pageSize < matches.length;
    res.json({
      contacts: matches.slice(offset, offset + pageSize).map((c) => {
        const email = c.email_addresses[0]?.email;
        return {
          id: String(c.id),
          ...(email !== undefined ? { email } : {}),
          ...(c.given_name !== undefined ? { given_name: c.given_name } : {}),
          ...(c.family_name !== undefined ? { family_name: c.family_name } : {}),
          applied_time: appliedTime(c, tagId),
        };
      }),
      ...(more ? { next_page_token: encodePageToken(offset + pageSize) } : {}),
    });
  });

  router.get('/contacts/model', (_req, res) => {
    res.json({
      custom_fields: [...state.customFields.values()].map((f) => ({
        id: String(f.id),
        label: f.label,
        field_name: f.field_name,
        field_type: f.field_type,
        record_type: 'CONTACT',
      })),
      optional_properties: V2_CONTACT_FIELDS.filter((f) => !(V2_DEFAULT_FIELDS as readonly string[]).includes(f)),
    });
  });

  router.get('/contacts/:contact_id', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contact_id);
    res.json(v2Contact(state, contact, requestedFields(req.query.fields) ?? new Set(V2_DEFAULT_FIELDS)));
  });

  // Delete a Contact: 204; its hooks get contact.delete.
  router.delete('/contacts/:contact_id', (req: Request, res: Response) => {
    state.deleteContact(findContact(state, req.params.contact_id).id);
    res.status(204).end();
  });

  router.patch('/contacts/:contact_id', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contact_id);
    // The spec says of each array in the body: "Any item not listed here will be removed if it already exists".
    // custom_fields and email_addresses both follow it: a PATCH listing one custom field clears the others.
    const { body, applies, changes } = readContactPatch(req, state, contact, patchBodySchema, KNOWN_FIELDS, 'replace');
    if (applies('email_addresses') && body.email_addresses !== undefined) {
      changes.email_addresses = body.email_addresses.map(({ email, field }) => ({ email, field }));
    }
    const updated = state.updateContact(contact.id, changes);
    const fields = requestedFields(req.query.fields) ?? new Set([...V2_DEFAULT_FIELDS, ...Object.keys(changes)]);
    res.json(v2Contact(state, updated, fields));
  });

  router.get('/contacts/:contact_id/tags', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contact_id);
    if (req.query.filter !== undefined) throw new SandboxHttpError(501, 'the sandbox does not implement filter on applied tags');
    const pageSize = queryInteger(req.query.page_size, 'page_size', { min: 0, max: MAX_PAGE_SIZE }) || MAX_PAGE_SIZE;
    const offset = decodePageToken(queryString(req.query.page_token, 'page_token'));
    const applied = contact.tag_ids.map((tagId) => ({ tag: state.requireTag(tagId), appliedAt: contact.tag_applied_at.get(tagId) ?? contact.date_created }));
    const order = parseOrderBy(queryString(req.query.order_by, 'order_by'));
    applied.sort((a, b) => {
      const key = order.field === 'name' ? a.tag.name.localeCompare(b.tag.name) : order.field === 'create_time' ? a.tag.create_time.localeCompare(b.tag.create_time) : a.appliedAt.localeCompare(b.appliedAt);
      return (key || a.tag.id - b.tag.id) * (order.desc ? -1 : 1);
    });
    const page = applied.slice(offset, offset + pageSize);
    const more = offset + pageSize < applied.length;
    res.json({
      tags: page.map(({ tag, appliedAt }) => ({
        tag: {
          id: String(tag.id),
          name: tag.name,
          ...(tag.description !== undefined ? { description: tag.description } : {}),
          // v2's CategoryReference carries only the id; the category's name is not part of an applied tag.
          ...(tag.category ? { category: { id: String(tag.category.id) } } : {}),
          create_time: tag.create_time,
          update_time: tag.create_time,
        },
        applied_time: appliedAt,
      })),
      // Absent on the last page, so `while (next_page_token)` ends.
      ...(more ? { next_page_token: encodePageToken(offset + pageSize) } : {}),
    });
  });

  // List orders, with the filter fields the sandbox keeps (times inclusive at both ends, as above).
  router.get('/orders', (req: Request, res: Response) => {
    const terms = queryV2Filter(req.query.filter, ORDER_FILTER);
    const unsupported = terms.find((t) => ORDER_FILTER_NOT_KEPT.has(t.field));
    if (unsupported) throw new SandboxHttpError(501, `filter: the sandbox keeps no ${unsupported.field} on its orders`);
    const pageSize = queryInteger(req.query.page_size, 'page_size', { min: 0, max: MAX_PAGE_SIZE }) || MAX_PAGE_SIZE;
    const offset = decodePageToken(queryString(req.query.page_token, 'page_token'));
    const order = parseListOrder(queryString(req.query.order_by, 'order_by'), ['id', 'order_time', 'modification_time'], 'id');
    const rows = [...state.orders.values()].filter((o) => terms.every((term) => orderMatches(o, term)));
    const key = (o: SandboxOrder) => (order.field === 'id' ? o.id : Date.parse(order.field === 'order_time' ? o.creation_time : o.modification_time));
    rows.sort((a, b) => (key(a) - key(b) || a.id - b.id) * (order.desc ? -1 : 1));
    res.json({
      orders: rows.slice(offset, offset + pageSize).map((o) => v2Order(state, o)),
      ...(offset + pageSize < rows.length ? { next_page_token: encodePageToken(offset + pageSize) } : {}),
    });
  });

  return router;
}

/** The filter fields List orders documents (custom fields aside). */
const ORDER_FILTER: Record<string, V2FilterField> = {
  id: { kind: 'id', operators: ['==', '<=', '<', '>=', '>', '!='] },
  ids: { kind: 'string' },
  product_id: { kind: 'id' },
  contact_id: { kind: 'id' },
  invoice_id: { kind: 'id' },
  invoice_xid: { kind: 'string' },
  paid: { kind: 'boolean' },
  created_since_time: { kind: 'time' },
  created_until_time: { kind: 'time' },
  modified_since_time: { kind: 'time' },
  modified_until_time: { kind: 'time' },
  title: { kind: 'string' },
  order_type: { kind: 'string' },
  shipping_locality: { kind: 'string' },
  shipping_region_code: { kind: 'string' },
  shipping_postal_code: { kind: 'string' },
  shipping_country_code: { kind: 'string' },
};
/** Documented, but about things the sandbox's orders do not have (items, invoices, shipping): a 501, not a wrong answer. */
const ORDER_FILTER_NOT_KEPT = new Set(['product_id', 'invoice_id', 'invoice_xid', 'order_type', 'shipping_locality', 'shipping_region_code', 'shipping_postal_code', 'shipping_country_code']);

function orderMatches(order: SandboxOrder, term: V2FilterTerm): boolean {
  const time = (iso: string) => Date.parse(iso);
  switch (term.field) {
    case 'id':
      return compareWith(order.id, term.operator, Number(term.value));
    case 'ids':
      return term.value.split(',').map((v) => v.trim()).includes(String(order.id));
    case 'contact_id':
      return order.contact_id === Number(term.value);
    case 'paid':
      return (order.status === 'PAID') === (term.value === 'true');
    case 'created_since_time':
      return time(order.creation_time) >= time(term.value);
    case 'created_until_time':
      return time(order.creation_time) <= time(term.value);
    case 'modified_since_time':
      return time(order.modification_time) >= time(term.value);
    case 'modified_until_time':
      return time(order.modification_time) <= time(term.value);
    case 'title': {
      // "Wildcard matching allowed": a trailing * matches any ending, case-insensitively.
      const wanted = term.value.toLowerCase();
      const title = order.title.toLowerCase();
      return wanted.endsWith('*') ? title.startsWith(wanted.slice(0, -1)) : title === wanted;
    }
    default:
      return false;
  }
}

function compareWith(a: number, operator: string, b: number): boolean {
  switch (operator) {
    case '==':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    default:
      return a >= b;
  }
}

function compare(a: string | number, b: string | number): number {
  return typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b));
}

/** An OrderV2 with what the sandbox keeps of an order; its contact as a BasicContact. */
function v2Order(state: SandboxState, order: SandboxOrder): Record<string, unknown> {
  const contact = state.contacts.get(order.contact_id);
  const email = contact?.email_addresses.find((e) => e.field === 'EMAIL1')?.email ?? contact?.email_addresses[0]?.email;
  return {
    id: String(order.id),
    title: order.title,
    status: order.status,
    total: { amount: order.total, currency_code: 'USD', formatted_amount: `$${(order.total / 100).toFixed(2)}` },
    contact: {
      id: String(order.contact_id),
      ...(email !== undefined ? { email } : {}),
      ...(contact?.given_name !== undefined ? { given_name: contact.given_name } : {}),
      ...(contact?.family_name !== undefined ? { family_name: contact.family_name } : {}),
    },
    order_type: 'ONLINE',
    source_type: 'API',
    creation_time: order.creation_time,
    modification_time: order.modification_time,
    order_time: order.creation_time,
  };
}

/** `order_by`: one of `fields`, then `asc` or `desc` (asc when left out). */
function parseListOrder<F extends string>(raw: string | undefined, fields: readonly F[], fallback: F): { field: F; desc: boolean } {
  if (raw === undefined) return { field: fallback, desc: false };
  const [field, direction = 'asc'] = raw.trim().split(/[\s,]+/);
  if (!(fields as readonly string[]).includes(field ?? '') || (direction !== 'asc' && direction !== 'desc')) {
    throw new SandboxHttpError(400, `order_by: one of ${fields.join(', ')}, then asc or desc`);
  }
  return { field: field as F, desc: direction === 'desc' };
}

function findContact(state: SandboxState, raw: unknown): SandboxContact {
  const id = pathId(raw, 'contact_id');
  const contact = state.contacts.get(id);
  if (!contact) throw new SandboxHttpError(404, `Contact ${id} not found`);
  return contact;
}

function requestedFields(value: unknown): Set<string> | undefined {
  const fields = queryList(value);
  if (fields === undefined || fields.length === 0) return undefined;
  for (const name of fields) if (!KNOWN_FIELDS.has(name)) throw new SandboxHttpError(400, `fields: unknown property ${JSON.stringify(name)}`);
  return new Set(['id', ...fields]);
}

/** A Contact as v2 answers it, with only the properties in `fields` that the sandbox keeps. */
export function v2Contact(state: SandboxState, contact: SandboxContact, fields: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = { id: String(contact.id) };
  if (fields.has('given_name') && contact.given_name !== undefined) out.given_name = contact.given_name;
  if (fields.has('family_name') && contact.family_name !== undefined) out.family_name = contact.family_name;
  if (fields.has('email_addresses')) out.email_addresses = contact.email_addresses.map(({ email, field }) => ({ email, field }));
  if (fields.has('custom_fields')) {
    // Every contact field is listed; one never set has content null, as Keap answers it.
    out.custom_fields = [...state.customFields.values()].map((f) => ({ id: String(f.id), content: contact.custom_fields.get(f.id) ?? null }));
  }
  if (fields.has('tag_ids')) out.tag_ids = contact.tag_ids.map(String);
  if (fields.has('create_time')) out.create_time = contact.date_created;
  if (fields.has('update_time')) out.update_time = contact.last_updated;
  return out;
}

type ContactFilter = (c: SandboxContact) => boolean;

/**
 * The v2 contact list's `filter`: `name==value` terms joined by `;`. The sandbox implements the terms memberhook
 * sends (`ids`, `contact_ids`, `start_update_time`, `end_update_time`) and the name and email ones (exact, or a prefix
 * with a trailing `*`); any other term the spec lists is a 501, so a client relying on one notices.
 */
function parseContactFilter(raw: string | undefined): ContactFilter {
  const terms = filterTerms(raw);
  const tests: ContactFilter[] = terms.map(({ name, value }) => {
    switch (name) {
      case 'ids':
      case 'contact_ids': {
        const ids = new Set(value.split(',').map((v) => pathId(v.trim(), name)));
        return (c) => ids.has(c.id);
      }
      case 'start_update_time':
        return timeBound(value, name, 'from', (c) => c.last_updated);
      case 'end_update_time':
        return timeBound(value, name, 'to', (c) => c.last_updated);
      default: {
        const term = nameTerm(name, value);
        if (!term) throw new SandboxHttpError(501, `filter: the sandbox does not implement ${JSON.stringify(name)}`);
        return term;
      }
    }
  });
  return (c) => tests.every((t) => t(c));
}

/** The filter fields List Tagged Contacts documents. */
const TAGGED_CONTACT_FILTER: Record<string, V2FilterField> = {
  given_name: { kind: 'string' },
  family_name: { kind: 'string' },
  email: { kind: 'string' },
  since_applied_time: { kind: 'time' },
  until_applied_time: { kind: 'time' },
};

/**
 * The tagged-contact list's `filter` (the fields above, each `==`; the times inclusive at both ends, like v1's
 * since/until: a poller re-reading its boundary gets it again, never loses it). A filter Keap would not read is a 400.
 */
function parseTaggedFilter(value: unknown, tagId: number): ContactFilter {
  const tests: ContactFilter[] = queryV2Filter(value, TAGGED_CONTACT_FILTER).map(({ field, value: v }) => {
    switch (field) {
      case 'since_applied_time':
        return timeBound(v, field, 'from', (c) => appliedTime(c, tagId));
      case 'until_applied_time':
        return timeBound(v, field, 'to', (c) => appliedTime(c, tagId));
      default:
        return nameTerm(field, v)!;
    }
  });
  return (c) => tests.every((t) => t(c));
}

/** The name and email terms both lists take. */
function nameTerm(name: string, value: string): ContactFilter | undefined {
  switch (name) {
    case 'email':
      return textMatch(value, (c) => c.email_addresses.map((e) => e.email));
    case 'given_name':
      return textMatch(value, (c) => [c.given_name]);
    case 'family_name':
      return textMatch(value, (c) => [c.family_name]);
    default:
      return undefined;
  }
}

/** A `from` (inclusive) or `to` (inclusive) bound on one of a contact's times. */
function timeBound(value: string, name: string, side: 'from' | 'to', timeOf: (c: SandboxContact) => string): ContactFilter {
  const bound = filterTime(value, name);
  return side === 'from' ? (c) => Date.parse(timeOf(c)) >= bound : (c) => Date.parse(timeOf(c)) <= bound;
}

function filterTerms(raw: string | undefined): Array<{ name: string; value: string }> {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(';').filter((t) => t.trim() !== '').map((term) => {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)==(.*)$/.exec(term.trim());
    if (!match) throw new SandboxHttpError(501, `filter: the sandbox implements only name==value terms (got ${JSON.stringify(term)})`);
    return { name: match[1]!, value: match[2]! };
  });
}

function filterTime(value: string, name: string): number {
  const ms = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(ms)) throw new SandboxHttpError(400, `filter: ${name} must be a full ISO 8601 date-time`);
  return ms;
}

/** `NONE` matches a missing value; a trailing `*` a prefix; anything else the whole value, ignoring case. */
function textMatch(value: string, valuesOf: (c: SandboxContact) => Array<string | undefined>): ContactFilter {
  if (value === 'NONE') return (c) => valuesOf(c).every((v) => v === undefined || v === '');
  const wanted = value.toLowerCase();
  const prefix = wanted.endsWith('*') ? wanted.slice(0, -1) : undefined;
  return (c) => valuesOf(c).some((v) => v !== undefined && (prefix !== undefined ? v.toLowerCase().startsWith(prefix) : v.toLowerCase() === wanted));
}

function appliedTime(c: SandboxContact, tagId: number): string {
  return c.tag_applied_at.get(tagId) ?? c.date_created;
}

function orderParts(raw: string, allowed: readonly string[]): { field: string; desc: boolean } {
  const [field = '', direction = 'asc'] = raw.trim().split(/[\s,]+/);
  if (!allowed.includes(field) || (direction !== 'asc' && direction !== 'desc')) {
    throw new SandboxHttpError(400, `order_by: one of ${allowed.join(', ')}, then asc or desc`);
  }
  return { field, desc: direction === 'desc' };
}

function parseContactOrder(raw: string | undefined): (a: SandboxContact, b: SandboxContact) => number {
  const { field, desc } = raw === undefined ? { field: 'id', desc: false } : orderParts(raw, ['id', 'create_time', 'email', 'update_time']);
  const key = (c: SandboxContact): string | number =>
    field === 'id' ? c.id : field === 'create_time' ? c.date_created : field === 'update_time' ? c.last_updated : (c.email_addresses[0]?.email ?? '').toLowerCase();
  return (a, b) => compareKeys(key(a), key(b), a.id - b.id) * (desc ? -1 : 1);
}

function parseTaggedOrder(raw: string | undefined, tagId: number): (a: SandboxContact, b: SandboxContact) => number {
  const { field, desc } = raw === undefined ? { field: 'applied_time', desc: false } : orderParts(raw, ['given_name', 'family_name', 'email', 'applied_time']);
  const key = (c: SandboxContact): string =>
    field === 'applied_time' ? appliedTime(c, tagId) : field === 'email' ? (c.email_addresses[0]?.email ?? '').toLowerCase() : ((field === 'given_name' ? c.given_name : c.family_name) ?? '').toLowerCase();
  return (a, b) => compareKeys(key(a), key(b), a.id - b.id) * (desc ? -1 : 1);
}

function compareKeys(a: string | number, b: string | number, tie: number): number {
  const primary = typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b));
  return primary || tie;
}

function parseOrderBy(raw: string | undefined): { field: 'name' | 'create_time' | 'applied_time'; desc: boolean } {
  if (raw === undefined) return { field: 'applied_time', desc: false };
  const [field, direction = 'asc'] = raw.trim().split(/[\s,]+/);
  if ((field !== 'name' && field !== 'create_time' && field !== 'applied_time') || (direction !== 'asc' && direction !== 'desc')) {
    throw new SandboxHttpError(400, 'order_by: the sandbox supports name, create_time or applied_time, then asc or desc');
  }
  return { field, desc: direction === 'desc' };
}

/** Page tokens are opaque to clients; here they carry the offset of the next page. */
function encodePageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64url');
}

function decodePageToken(token: string | undefined): number {
  if (token === undefined || token === '') return 0;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    const offset = (parsed as { offset?: unknown }).offset;
    if (typeof offset === 'number' && Number.isInteger(offset) && offset >= 0) return offset;
  } catch {
    // fall through to the 400
  }
  throw new SandboxHttpError(400, 'page_token: not a token this API issued');
}
