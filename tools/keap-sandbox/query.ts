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
