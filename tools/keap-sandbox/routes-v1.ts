import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { customFieldChanges, describeZodError, readContactPatch, requireJsonObject } from './contact-changes.js';
import { SandboxHttpError } from './error-bodies.js';
import { pathId, queryInteger, queryList, queryString, queryTime } from './query.js';
import type { SandboxContact, SandboxFieldType, SandboxState } from './state.js';

/**
 * REST v1 (`/crm/rest/v1/...`), shapes from keap-rest-v1.openapi.json: integer ids, `custom_fields` only when
 * asked for with `optional_properties`, list answers with `count` (all matches) and `next`/`previous` page URLs.
 */

/** v1 spells field types in CamelCase where v2 uses CONSTANT_CASE. */
const V1_FIELD_TYPES: Record<SandboxFieldType, string> = {
  TEXT: 'Text',
  TEXT_AREA: 'TextArea',
  WHOLE_NUMBER: 'WholeNumber',
  DECIMAL_NUMBER: 'DecimalNumber',
  DATE: 'Date',
  YES_NO: 'YesNo',
  EMAIL: 'Email',
  WEBSITE: 'Website',
};

const V1_OPTIONAL_PROPERTIES = ['custom_fields', 'fax_numbers', 'job_title', 'lead_source_id', 'origin', 'preferred_name', 'social_accounts', 'website'];

const ORDERS = ['id', 'date_created', 'last_updated', 'name', 'firstName', 'email'] as const;
type Order = (typeof ORDERS)[number];

/** Keap's v1 list default and maximum page size. */
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 1000;

const V1_UPDATE_MASK = new Set([
  'addresses', 'anniversary', 'birthday', 'company', 'contact_type', 'custom_fields', 'email_addresses', 'family_name', 'fax_numbers',
  'given_name', 'job_title', 'lead_source_id', 'middle_name', 'notes', 'opt_in_reason', 'origin', 'owner_id', 'phone_numbers',
  'preferred_locale', 'preferred_name', 'prefix', 'social_accounts', 'source_type', 'spouse_name', 'suffix', 'time_zone', 'website',
]);

const patchBodySchema = z.looseObject({
  given_name: z.string().optional(),
  family_name: z.string().optional(),
  email_addresses: z.array(z.object({ email: z.string(), field: z.enum(['EMAIL1', 'EMAIL2', 'EMAIL3']) })).optional(),
  // v1 types CustomFieldValue.id as an int64.
  custom_fields: z.array(z.object({ id: z.number().int(), content: z.unknown().optional() })).optional(),
});

export function v1Routes(state: SandboxState): Router {
  const router = express.Router();

  router.get('/contacts', (req: Request, res: Response) => {
    const q = req.query;
    const limit = Math.min(queryInteger(q.limit, 'limit', { min: 0 }) || DEFAULT_LIMIT, MAX_LIMIT);
    const offset = queryInteger(q.offset, 'offset', { min: 0 }) ?? 0;
    const since = queryTime(q.since, 'since');
    const until = queryTime(q.until, 'until');
    const order = queryString(q.order, 'order') ?? 'id';
    if (!(ORDERS as readonly string[]).includes(order)) throw new SandboxHttpError(400, `order must be one of ${ORDERS.join(', ')}`);
    const direction = queryString(q.order_direction, 'order_direction') ?? 'ASCENDING';
    if (direction !== 'ASCENDING' && direction !== 'DESCENDING') throw new SandboxHttpError(400, 'order_direction must be ASCENDING or DESCENDING');
    const email = queryString(q.email, 'email')?.toLowerCase();
    const givenName = queryString(q.given_name, 'given_name')?.toLowerCase();
    const familyName = queryString(q.family_name, 'family_name')?.toLowerCase();
    const withCustomFields = (queryList(q.optional_properties) ?? []).includes('custom_fields');

    const matches = [...state.contacts.values()].filter((c) => {
      const updated = Date.parse(c.last_updated);
      // `since` is inclusive: a poller that stores the last timestamp it saw gets that contact again rather than
      // missing one changed in the same millisecond; re-syncing a contact is harmless, missing one is not.
      if (since !== undefined && updated < since) return false;
      if (until !== undefined && updated > until) return false;
      if (email !== undefined && !c.email_addresses.some((e) => e.email.toLowerCase() === email)) return false;
      if (givenName !== undefined && c.given_name?.toLowerCase() !== givenName) return false;
      if (familyName !== undefined && c.family_name?.toLowerCase() !== familyName) return false;
      return true;
    });
    matches.sort(compareBy(order as Order, direction === 'DESCENDING'));
    res.json({
      contacts: matches.slice(offset, offset + limit).map((c) => v1Contact(state, c, { customFields: withCustomFields, tagIds: false })),
      count: matches.length,
      // Keap always answers both links, even past the last page: clients stop on an empty page, not on `next`.
      next: pageUrl(req, limit, offset + limit),
      previous: pageUrl(req, limit, Math.max(0, offset - limit)),
    });
  });

  router.get('/contacts/model', (_req, res) => {
    res.json({
      custom_fields: [...state.customFields.values()].map((f) => ({
        id: f.id,
        label: f.label,
        field_name: f.field_name,
        field_type: V1_FIELD_TYPES[f.field_type],
        record_type: 'CONTACT',
      })),
      optional_properties: V1_OPTIONAL_PROPERTIES,
    });
  });

  router.get('/contacts/:id', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.id, 'id');
    const withCustomFields = (queryList(req.query.optional_properties) ?? []).includes('custom_fields');
    res.json(v1Contact(state, contact, { customFields: withCustomFields, tagIds: true }));
  });

  router.patch('/contacts/:contactId', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contactId, 'contactId');
    // v1 "updates a contact with only the values provided": listed custom fields change, the others stay.
    const { body, applies, changes } = readContactPatch(req, state, contact, patchBodySchema, V1_UPDATE_MASK, 'merge');
    if (applies('email_addresses') && body.email_addresses !== undefined) {
      // v1 updates "only the values provided": each given slot (EMAIL1..3) is replaced, the others stay.
      const bySlot = new Map(contact.email_addresses.map((e) => [e.field, e] as const));
      for (const e of body.email_addresses) bySlot.set(e.field, { email: e.email, field: e.field });
      changes.email_addresses = [...bySlot.values()].sort((a, b) => a.field.localeCompare(b.field));
    }
    const updated = state.updateContact(contact.id, changes);
    res.json(v1Contact(state, updated, { customFields: true, tagIds: true }));
  });

  // Delete a Contact: 204; its hooks get contact.delete.
  router.delete('/contacts/:contactId', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contactId, 'contactId');
    state.deleteContact(contact.id);
    res.status(204).end();
  });

  router.get('/contacts/:contactId/tags', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contactId, 'contactId');
    const limit = Math.min(queryInteger(req.query.limit, 'limit', { min: 0 }) || MAX_LIMIT, MAX_LIMIT);
    const offset = queryInteger(req.query.offset, 'offset', { min: 0 }) ?? 0;
    const tags = contact.tag_ids.map((tagId) => {
      const tag = state.requireTag(tagId);
      return {
        // v1's SimpleTag gives the category as its name, a plain string.
        tag: { id: tag.id, name: tag.name, ...(tag.category ? { category: tag.category.name } : {}) },
        date_applied: contact.tag_applied_at.get(tagId) ?? contact.date_created,
      };
    });
    res.json({
      count: tags.length,
      tags: tags.slice(offset, offset + limit),
      next: pageUrl(req, limit, offset + limit),
      previous: pageUrl(req, limit, Math.max(0, offset - limit)),
    });
  });

  // List Tags: `count` of all matches, a page of Tag (category as TagCategory {id, name}), `next`/`previous`.
  router.get('/tags', (req: Request, res: Response) => {
    const limit = Math.min(queryInteger(req.query.limit, 'limit', { min: 0 }) || DEFAULT_LIMIT, MAX_LIMIT);
    const offset = queryInteger(req.query.offset, 'offset', { min: 0 }) ?? 0;
    const category = queryInteger(req.query.category, 'category', { min: 0 });
    const name = queryString(req.query.name, 'name');
    const matches = [...state.tags.values()]
      .filter((t) => (category === undefined || t.category?.id === category) && (name === undefined || t.name === name))
      .sort((a, b) => a.id - b.id);
    res.json({
      count: matches.length,
      tags: matches.slice(offset, offset + limit).map((t) => ({
        id: t.id,
        name: t.name,
        ...(t.description !== undefined ? { description: t.description } : {}),
        ...(t.category ? { category: { id: t.category.id, name: t.category.name } } : {}),
      })),
      next: pageUrl(req, limit, offset + limit),
      previous: pageUrl(req, limit, Math.max(0, offset - limit)),
    });
  });

  // List Tagged Contacts: TaggedContact {contact: BasicContact {id, email, first_name, last_name}, date_applied}.
  router.get('/tags/:tagId/contacts', (req: Request, res: Response) => {
    const tagId = pathId(req.params.tagId, 'tagId');
    if (!state.tags.has(tagId)) throw new SandboxHttpError(404, `Tag with id ${tagId} not found`);
    const limit = Math.min(queryInteger(req.query.limit, 'limit', { min: 0 }) || DEFAULT_LIMIT, MAX_LIMIT);
    const offset = queryInteger(req.query.offset, 'offset', { min: 0 }) ?? 0;
    const matches = [...state.contacts.values()].filter((c) => c.tag_ids.includes(tagId)).sort((a, b) => a.id - b.id);
    res.json({
      contacts: matches.slice(offset, offset + limit).map((c) => {
        const email = c.email_addresses[0]?.email;
        return {
          contact: {
            id: c.id,
            ...(email !== undefined ? { email } : {}),
            ...(c.given_name !== undefined ? { first_name: c.given_name } : {}),
            ...(c.family_name !== undefined ? { last_name: c.family_name } : {}),
          },
          date_applied: c.tag_applied_at.get(tagId) ?? c.date_created,
        };
      }),
      count: matches.length,
      next: pageUrl(req, limit, offset + limit),
      previous: pageUrl(req, limit, Math.max(0, offset - limit)),
    });
  });

  // Create a Contact: "must contain at least one item in email_addresses or phone_numbers" (the sandbox keeps no
  // phone numbers, so an email). 201 with the FullContact.
  router.post('/contacts', (req: Request, res: Response) => {
    const parsed = createBodySchema.safeParse(requireJsonObject(req.body));
    if (!parsed.success) throw new SandboxHttpError(400, describeZodError(parsed.error));
    const body = parsed.data;
    if (body.email_addresses.length === 0) throw new SandboxHttpError(400, 'email_addresses: a contact needs at least one email address or phone number');
    const customFields = customFieldChanges(state, body.custom_fields ?? []);
    const contact = state.addContact({
      email_addresses: body.email_addresses.map((e) => ({ email: e.email, field: e.field })),
      ...(body.given_name !== undefined ? { given_name: body.given_name } : {}),
      ...(body.family_name !== undefined ? { family_name: body.family_name } : {}),
      custom_fields: customFields,
    });
    res.status(201).json(v1Contact(state, contact, { customFields: true, tagIds: true }));
  });

  // Apply Tags: {"tagIds": [..]}, at most 100 a call; the answer is one Entry per tag id, as the spec types it.
  router.post('/contacts/:contactId/tags', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contactId, 'contactId');
    const parsed = applyTagsSchema.safeParse(requireJsonObject(req.body));
    if (!parsed.success) throw new SandboxHttpError(400, describeZodError(parsed.error));
    const answer = parsed.data.tagIds.map((tagId) => {
      if (!state.tags.has(tagId)) return { key: 'TAG_ID_NOT_FOUND' };
      if (contact.tag_ids.includes(tagId)) return { key: 'DUPLICATE' };
      state.applyTag(contact.id, tagId);
      return { key: 'SUCCESS' };
    });
    res.json(answer);
  });

  // Remove Applied Tags: ?ids=1%2C2%2C3, or one tag in the path; 204 either way.
  router.delete('/contacts/:contactId/tags', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contactId, 'contactId');
    const ids = (queryList(req.query.ids) ?? []).map((raw) => pathId(raw, 'ids'));
    if (ids.length === 0) throw new SandboxHttpError(400, 'ids: give one or more tag ids, comma-separated');
    for (const tagId of ids) if (contact.tag_ids.includes(tagId)) state.removeTag(contact.id, tagId);
    res.status(204).end();
  });

  router.delete('/contacts/:contactId/tags/:tagId', (req: Request, res: Response) => {
    const contact = findContact(state, req.params.contactId, 'contactId');
    const tagId = pathId(req.params.tagId, 'tagId');
    if (contact.tag_ids.includes(tagId)) state.removeTag(contact.id, tagId);
    res.status(204).end();
  });

  return router;
}

/** Keap applies at most 100 tags in one call (KEAP.md). */
const MAX_TAGS_PER_CALL = 100;

const createBodySchema = z.looseObject({
  given_name: z.string().optional(),
  family_name: z.string().optional(),
  email_addresses: z.array(z.object({ email: z.email(), field: z.enum(['EMAIL1', 'EMAIL2', 'EMAIL3']) })).default([]),
  custom_fields: z.array(z.object({ id: z.number().int(), content: z.unknown().optional() })).optional(),
});

const applyTagsSchema = z.object({ tagIds: z.array(z.number().int().positive()).min(1).max(MAX_TAGS_PER_CALL) });

function findContact(state: SandboxState, raw: unknown, name: string): SandboxContact {
  const id = pathId(raw, name);
  const contact = state.contacts.get(id);
  if (!contact) throw new SandboxHttpError(404, `Contact with id ${id} not found`);
  return contact;
}

/** A v1 contact: FullContact (with tag_ids) for a single read, RestPartialContact (no tag_ids) in lists. */
export function v1Contact(state: SandboxState, contact: SandboxContact, include: { customFields: boolean; tagIds: boolean }): Record<string, unknown> {
  const out: Record<string, unknown> = { id: contact.id };
  if (contact.given_name !== undefined) out.given_name = contact.given_name;
  if (contact.family_name !== undefined) out.family_name = contact.family_name;
  out.email_addresses = contact.email_addresses.map(({ email, field }) => ({ email, field }));
  out.date_created = contact.date_created;
  out.last_updated = contact.last_updated;
  if (include.tagIds) out.tag_ids = [...contact.tag_ids];
  if (include.customFields) {
    out.custom_fields = [...state.customFields.values()].map((f) => ({ id: f.id, content: contact.custom_fields.get(f.id) ?? null }));
  }
  return out;
}

function compareBy(order: Order, descending: boolean): (a: SandboxContact, b: SandboxContact) => number {
  const key = (c: SandboxContact): string | number => {
    switch (order) {
      case 'id':
        return c.id;
      case 'date_created':
        return Date.parse(c.date_created);
      case 'last_updated':
        return Date.parse(c.last_updated);
      case 'name':
        return `${c.family_name ?? ''}\u0000${c.given_name ?? ''}`.toLowerCase();
      case 'firstName':
        return (c.given_name ?? '').toLowerCase();
      case 'email':
        return (c.email_addresses[0]?.email ?? '').toLowerCase();
    }
  };
  return (a, b) => {
    const ka = key(a);
    const kb = key(b);
    const primary = typeof ka === 'number' && typeof kb === 'number' ? ka - kb : String(ka).localeCompare(String(kb));
    return (primary || a.id - b.id) * (descending ? -1 : 1);
  };
}

/** A page link in Keap's style: the same query with limit/offset set, on the path with a trailing slash. */
function pageUrl(req: Request, limit: number, offset: number): string {
  const url = new URL(req.originalUrl, `${req.protocol}://${req.get('host') ?? 'localhost'}`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  url.searchParams.set('limit', String(limit));
  url.searchParams.set('offset', String(offset));
  return url.toString();
}
