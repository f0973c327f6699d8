import type { z } from 'zod';
import { SandboxHttpError } from './error-bodies.js';
import type { SandboxState } from './state.js';

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
