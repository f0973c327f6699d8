import type { Request } from 'express';
import type { z } from 'zod';
import { queryList } from './query.js';
import { SandboxHttpError } from './error-bodies.js';
import type { SandboxContact, SandboxContactChanges, SandboxState } from './state.js';

const TEXT_TYPES = new Set(['TEXT', 'TEXT_AREA', 'EMAIL', 'WEBSITE', 'DATE']);

/**
 * Turns `custom_fields: [{id, content}]` from a PATCH body into state changes, refusing the whole request when an
 * id is not a contact custom field or a value cannot be stored in the field's type (Keap answers 400 for both).
 */
export function customFieldChanges(state: SandboxState, items: ReadonlyArray<{ id: string | number; content?: unknown }>): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  items.forEach((item, index) => {
    const id = String(item.id);
    const field = /^\d+$/.test(id) ? state.customFields.get(Number(id)) : undefined;
    if (!field) throw new SandboxHttpError(400, `custom_fields[${index}].id: no contact custom field with id ${JSON.stringify(item.id)}`);
    const content = item.content ?? null;
    if (content !== null) {
      const ok = TEXT_TYPES.has(field.field_type) ? typeof content === 'string' : ['string', 'number', 'boolean'].includes(typeof content);
      if (!ok) throw new SandboxHttpError(400, `custom_fields[${index}].content: a ${field.field_type} field cannot hold ${JSON.stringify(content)}`);
      if (typeof content === 'string' && content.length > 65_535) throw new SandboxHttpError(400, `custom_fields[${index}].content: longer than 65535 characters`);
    }
    changes[id] = content;
  });
  return changes;
}

/** The first zod issue as "field: what was wrong", the way a 400 should name it. */
export function describeZodError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid request body';
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
  return `${path || 'body'}: ${issue.message}`;
}

/** The JSON body of a PATCH, or a 400 when there is none (express.json leaves it undefined for other types). */
export function requireJsonObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new SandboxHttpError(400, 'the request body must be a JSON object sent as application/json');
  }
  return body as Record<string, unknown>;
}

type PatchBody = { given_name?: string; family_name?: string; custom_fields?: ReadonlyArray<{ id: string | number; content?: unknown }> };

/**
 * How a PATCH's `custom_fields` list meets the values a contact already has, as each version's spec documents it:
 * - `merge` (v1 "updates a contact with only the values provided"): the listed fields change, the others stay;
 * - `replace` (v2 CreateUpdateContactRequest.custom_fields: "Any item not listed here will be removed if it already
 *   exists. If an empty array is specified, all existing values will be removed."): the list becomes the contact's.
 */
export type CustomFieldsPatchSemantics = 'merge' | 'replace';

/**
 * What v1 and v2 share in a contact PATCH: the `update_mask` checked against the version's properties, the body
 * checked against its schema, and the changes to names and custom fields. With an update_mask only the listed
 * properties change; without one, every property in the body does (the mask picks properties, never items within
 * one). Email addresses differ between the versions and are left to the caller, with `applies` to ask whether they
 * change.
 */
export function readContactPatch<B extends PatchBody>(
  req: Request,
  state: SandboxState,
  contact: SandboxContact,
  schema: z.ZodType<B>,
  knownProperties: ReadonlySet<string>,
  customFields: CustomFieldsPatchSemantics,
): { body: B; applies: (name: string) => boolean; changes: SandboxContactChanges } {
  const mask = queryList(req.query.update_mask);
  for (const name of mask ?? []) {
    if (!knownProperties.has(name)) throw new SandboxHttpError(400, `update_mask: unknown property ${JSON.stringify(name)}`);
  }
  const parsed = schema.safeParse(requireJsonObject(req.body));
  if (!parsed.success) throw new SandboxHttpError(400, describeZodError(parsed.error));
  const body = parsed.data;
  const applies = (name: string) => (mask ? mask.includes(name) : name in body);
  const changes: SandboxContactChanges = {};
  if (applies('given_name') && body.given_name !== undefined) changes.given_name = body.given_name;
  if (applies('family_name') && body.family_name !== undefined) changes.family_name = body.family_name;
  if (applies('custom_fields') && body.custom_fields !== undefined) {
    const listed = customFieldChanges(state, body.custom_fields);
    if (customFields === 'replace') {
      // Every value the list leaves out is removed (null clears a field in the state).
      for (const fieldId of contact.custom_fields.keys()) if (!(String(fieldId) in listed)) listed[String(fieldId)] = null;
    }
    changes.custom_fields = listed;
  }
  return { body, applies, changes };
}
