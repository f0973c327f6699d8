import { badRequest } from '../../core/errors.js';

/** What a Keap HTTP Post asks for, once validated. */
export interface WebhookRequest {
  action: string;
  contactId: number;
  sendNotification: boolean | undefined;
  role: string | undefined;
  /** Every other parameter, sanitized, kept on the event for the admin and for plugins. */
  extra: Record<string, string>;
}

type RawParams = Record<string, unknown>;

const KNOWN = new Set(['wpf_action', 'access_key', 'contactId', 'contact_id', 'send_notification', 'role']);
/** Job parameters only memberhook itself sets (see webhookJobParams): a post's parameter of that name is dropped. */
const RESERVED = new Set(['only_with_tag']);
const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);
const MAX_EXTRA_PARAMS = 30;
const MAX_VALUE_LENGTH = 200;
// A marketer may map ~Contact.Password~ or an API key into a post; such values never reach the event log.
const SECRET_NAME = /pass|secret|token|key|auth/i;
// What a parameter name looks like. A JSON body sent as a form arrives as one long name such as
// `{"access_key":"…","contactId":"5"}`: the secret is in the name itself, so such a name is withheld too.
const PLAIN_NAME = /^[\w.[\]-]{1,64}$/;
const REDACTED_NAME = '[redacted name]';

/**
 * Query string and body merged, the body winning (WP Fusion reads both). Only plain objects are accepted:
 * a JSON array or string body is a client error, not something to guess at.
 */
export function mergeParams(query: unknown, body: unknown): RawParams {
  if (body !== undefined && body !== null && (typeof body !== 'object' || Array.isArray(body))) {
    throw badRequest('the request body must be form fields or a JSON object');
  }
  return { ...(isPlainObject(query) ? query : {}), ...(isPlainObject(body) ? body : {}) };
}

/** A single text value; repeated or nested parameters are refused rather than guessed at. */
export function singleValue(params: RawParams, name: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) throw badRequest(`parameter ${name} was given more than once`, name);
  throw badRequest(`parameter ${name} must be a single value`, name);
}

/** The `wpf_action`, checked against the accepted ones. */
export function parseAction(params: RawParams, validActions: readonly string[]): string {
  const action = singleValue(params, 'wpf_action');
  if (!action) throw badRequest(`missing wpf_action: expected one of ${validActions.join(', ')}`, 'wpf_action');
  if (!validActions.includes(action)) {
    throw badRequest(`unknown wpf_action "${action.slice(0, 40)}": expected one of ${validActions.join(', ')}`, 'wpf_action');
  }
  return action;
}

export function parseWebhookRequest(params: RawParams, action: string): WebhookRequest {
  const contactId = parseContactId(params);
  const sendNotification = parseBoolean(singleValue(params, 'send_notification'), 'send_notification');
  const role = singleValue(params, 'role') || undefined;
  if (role !== undefined && !/^[a-z0-9_-]{1,64}$/i.test(role)) throw badRequest(`role "${role.slice(0, 40)}" does not exist`, 'role');
  return { action, contactId, sendNotification, role: role?.toLowerCase(), extra: sanitizeExtra(params) };
}

function parseContactId(params: RawParams): number {
  const camel = singleValue(params, 'contactId');
  const snake = singleValue(params, 'contact_id');
  if (camel && snake && camel !== snake) throw badRequest('contactId and contact_id disagree', 'contactId');
  const raw = camel || snake;
  if (!raw) throw badRequest('missing contactId: expected the Keap contact id (~Contact.Id~)', 'contactId');
  if (!/^[1-9]\d{0,14}$/.test(raw)) throw badRequest(`contactId must be a positive whole number, got "${raw.slice(0, 40)}"`, 'contactId');
  return Number(raw);
}

function parseBoolean(raw: string | undefined, name: string): boolean | undefined {
  if (raw === undefined || raw === '') return undefined;
  const word = raw.toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw badRequest(`${name} must be true or false (also 1/0, yes/no, on/off), got "${raw.slice(0, 40)}"`, name);
}

/** The name a parameter is recorded under: cut to 64 characters, and withheld when it may carry a secret. */
function recordedName(name: string): string {
  const key = name.slice(0, 64);
  return SECRET_NAME.test(key) && !PLAIN_NAME.test(name) ? REDACTED_NAME : key;
}

function sanitizeExtra(params: RawParams): Record<string, string> {
  const extra: Record<string, string> = {};
  for (const [name, value] of Object.entries(params)) {
    if (KNOWN.has(name) || RESERVED.has(name)) continue;
    if (Object.keys(extra).length >= MAX_EXTRA_PARAMS) break;
    const key = recordedName(name);
    if (SECRET_NAME.test(name.slice(0, 64))) extra[key] = '[redacted]';
    else extra[key] = typeof value === 'string' ? value.slice(0, MAX_VALUE_LENGTH) : JSON.stringify(value)?.slice(0, MAX_VALUE_LENGTH) ?? '';
  }
  return extra;
}

/** What a rejected request carried, for the event log: never the access key or anything secret-looking. */
export function describeRejectedParams(params: RawParams): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(params).slice(0, MAX_EXTRA_PARAMS)) {
    const key = recordedName(name);
    if (name === 'access_key') out[key] = value === undefined || value === '' ? '(missing)' : '(given)';
    else if (SECRET_NAME.test(name.slice(0, 64))) out[key] = '[redacted]';
    else out[key] = typeof value === 'string' ? value.slice(0, MAX_VALUE_LENGTH) : JSON.stringify(value)?.slice(0, MAX_VALUE_LENGTH) ?? null;
  }
  if (!('access_key' in out)) out.access_key = '(missing)';
  return out;
}

function isPlainObject(value: unknown): value is RawParams {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
