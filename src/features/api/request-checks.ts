import type { Response } from 'express';
import type { z } from 'zod';
import { AppError } from '../../core/errors.js';
import { scopeAllows, type ApiScope } from './scopes.js';

/**
 * Refuses (403) a request whose token lacks `needed`, naming the scope it needs (RFC 6750's insufficient_scope).
 * Scopes nest: `admin` includes `members:write`, which includes `read`.
 */
export function requireScope(res: Response, needed: ApiScope, what: string): void {
  const held = res.locals.apiScope ?? 'read';
  if (scopeAllows(held, needed)) return;
  res.set('WWW-Authenticate', `Bearer realm="memberhook API", error="insufficient_scope", scope="${needed}"`);
  throw new AppError(403, insufficientScopeMessage(what, needed, held), { code: 'insufficient_scope' });
}

export function insufficientScopeMessage(what: string, needed: ApiScope, held: ApiScope): string {
  return `${what} needs an API token with the ${needed} scope; this token has the ${held} scope`;
}

/** Validates with zod; the first problem becomes a 400 naming the field and what was expected. */
export function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.length ? issue.path.join('.') : where;
  const message = issue.code === 'unrecognized_keys' ? `unknown ${where} field(s): ${issue.keys.join(', ')}` : `${field}: ${issue.message}`;
  throw new AppError(400, message, { code: 'invalid_input', field });
}

