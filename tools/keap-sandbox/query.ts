import { SandboxHttpError } from './error-bodies.js';

/**
 * An array query parameter, given either comma-separated (`fields=a,b`, the v2 spec's `explode: false`) or
 * repeated (`fields=a&fields=b`, v1's `explode: true`) or both: clients differ and Keap accepts either.
 */
export function queryList(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const parts = (Array.isArray(value) ? value : [value]).flatMap((v) => String(v).split(','));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

/** A single-valued query parameter; repeating it is a client bug worth a 400. */
export function queryString(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new SandboxHttpError(400, `${name} must be given once`);
  return value;
}

export function queryInteger(value: unknown, name: string, range: { min: number; max?: number }): number | undefined {
  const raw = queryString(value, name);
  if (raw === undefined) return undefined;
  if (!/^-?\d+$/.test(raw)) throw new SandboxHttpError(400, `${name} must be an integer`);
  const n = Number(raw);
  if (n < range.min || (range.max !== undefined && n > range.max)) {
    throw new SandboxHttpError(400, `${name} must be between ${range.min} and ${range.max ?? 'any'}`);
  }
  return n;
}

/** An ISO 8601 timestamp parameter, as milliseconds since the epoch. */
export function queryTime(value: unknown, name: string): number | undefined {
  const raw = queryString(value, name);
  if (raw === undefined) return undefined;
  const ms = Date.parse(raw);
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw) || Number.isNaN(ms)) throw new SandboxHttpError(400, `${name} must be an ISO 8601 date-time, e.g. 2017-01-01T22:17:59.039Z`);
  return ms;
}

/** A contact id from the path: digits only, else 400 (Keap ids are integers even where v2 types them as strings). */
export function pathId(value: unknown, name: string): number {
  const raw = String(value);
  if (!/^\d{1,18}$/.test(raw)) throw new SandboxHttpError(400, `${name} must be a numeric id`);
  return Number(raw);
}

/** What one v2 `filter` field takes: its operators and the kind of value (times are full ISO 8601). */
export interface V2FilterField {
  kind: 'string' | 'time' | 'id' | 'boolean';
  operators?: readonly string[];
}

export interface V2FilterTerm {
  field: string;
  operator: string;
  value: string;
}

/**
 * A v2 `filter` query: `field==value` terms joined by `;` (a trailing `;` allowed, as the spec's own example has it),
 * only the fields the operation documents and their operators (`==` unless the spec lists more). Anything else is
 * a 400 naming the term, as Keap answers a filter it cannot read, rather than a silently wider listing.
 */
export function queryV2Filter(value: unknown, fields: Readonly<Record<string, V2FilterField>>): V2FilterTerm[] {
  const raw = queryString(value, 'filter');
  if (raw === undefined || raw.trim() === '') return [];
  const terms: V2FilterTerm[] = [];
  for (const part of raw.split(';')) {
    if (part.trim() === '') continue;
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>)(.*)$/.exec(part);
    if (!match) throw new SandboxHttpError(400, `filter: ${JSON.stringify(part)} is not field==value`);
    const [, field, operator, rawValue] = match as unknown as [string, string, string, string];
    const spec = fields[field];
    if (!spec) throw new SandboxHttpError(400, `filter: ${field} is not a filter field here (allowed: ${Object.keys(fields).join(', ')})`);
    if (!(spec.operators ?? ['==']).includes(operator)) throw new SandboxHttpError(400, `filter: ${field} does not take the ${operator} operator`);
    const v = rawValue.trim();
    if (spec.kind === 'time' && (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v) || Number.isNaN(Date.parse(v)))) {
      throw new SandboxHttpError(400, `filter: ${field} must be a full ISO 8601 date-time, e.g. 2025-04-16T20:33:02.321Z`);
    }
    if (spec.kind === 'id' && !/^\d{1,18}$/.test(v)) throw new SandboxHttpError(400, `filter: ${field} must be a numeric id`);
    if (spec.kind === 'boolean' && v !== 'true' && v !== 'false') throw new SandboxHttpError(400, `filter: ${field} must be true or false`);
    if (terms.some((t) => t.field === field && t.operator === operator)) throw new SandboxHttpError(400, `filter: ${field}${operator} is given twice`);
    terms.push({ field, operator, value: v });
  }
  return terms;
}
