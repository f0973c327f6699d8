import type Handlebars from 'handlebars';
import { handlebarsSandbox } from '../../core/handlebars-sandbox.js';

/**
 * The Handlebars templates that turn an event into a destination's request body. They are an admin's text, not
 * code: they render in a Handlebars environment of their own holding only the helpers below, with no partials or
 * decorators, and Handlebars' default refusal to read prototype properties (`{{constructor}}`, `__proto__`).
 *
 * Escaping: values are inserted as they are (`noEscape`): a request body is JSON, form data or text, never HTML,
 * and HTML escaping would turn `&` into `&amp;` inside a JSON string. The safe way to put a value into JSON is
 * `{{json value}}` (quotes and escapes strings, writes objects whole); into a URL or form body, `{{urlencode value}}`.
 * A bare `{{value}}` is for text bodies, or for values known to be plain (an id, an ISO time).
 */

export interface OutboundEvent {
  /** Unique per event; the `webhook-id` of its deliveries. */
  id: string;
  /** `member.created`, `keap.contact.edit`... */
  type: string;
  /** ISO 8601, when the change happened. */
  timestamp: string;
  data: unknown;
}

/**
 * The JSON envelope `{ type, timestamp, data }`. On lines of their own, the closing braces also stay clear of the
 * Handlebars trap below (`}}}`).
 */
export const DEFAULT_TEMPLATE = '{\n  "type": {{json type}},\n  "timestamp": {{json timestamp}},\n  "data": {{json data}}\n}\n';

/** A template longer than this is refused on save (a body template is a page or two, not a program). */
export const MAX_TEMPLATE_LENGTH = 64 * 1024;

/** The built-in helpers a template may use, beside ours: conditionals, loops and lookups over the event. */
const BUILT_IN_HELPERS = ['if', 'unless', 'each', 'with', 'lookup'] as const;
const OUR_HELPERS = ['json', 'date', 'urlencode'] as const;
const ALLOWED_HELPERS: readonly string[] = [...BUILT_IN_HELPERS, ...OUR_HELPERS];


type HelperOptions = Handlebars.HelperOptions & { hash: Record<string, unknown> };

/**
 * `{{json value}}`: the value as JSON (`null` when it is missing). `{{json value indent=2}}` pretty-prints.
 */
function json(this: unknown, ...args: unknown[]) {
  const options = args.pop() as HelperOptions;
  if (args.length > 1) throw new Error('json takes one value: {{json data}}');
  const indent = options.hash.indent;
  if (indent !== undefined && (typeof indent !== 'number' || !Number.isInteger(indent) || indent < 0 || indent > 8)) throw new Error('json: indent must be a whole number from 0 to 8');
  return JSON.stringify(args[0] ?? null, null, (indent as number | undefined) ?? undefined) ?? 'null';
}

/**
 * `{{date value}}`: a time as ISO 8601 in UTC (`2026-12-08T00:15:00.000Z`). The value may be an ISO string or
 * milliseconds since the epoch. `format=`:
 * - `"iso"` (the default); `"epoch"` seconds since the epoch; `"epoch_ms"` milliseconds; `"date"` `2026-12-08`;
 * - or a pattern of `YYYY MM DD HH mm ss SSS` (UTC), other characters kept: `format="DD/MM/YYYY HH:mm"`.
 * A missing or unreadable value renders as nothing (a field a member does not have must not stop a delivery).
 */
function date(this: unknown, ...args: unknown[]) {
  const options = args.pop() as HelperOptions;
  if (args.length !== 1) throw new Error('date takes one value: {{date timestamp}}');
  const format = options.hash.format ?? 'iso';
  if (typeof format !== 'string') throw new Error('date: format must be a string');
  const value = args[0];
  const ms = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? (/^\d+$/.test(value) ? Number(value) : Date.parse(value)) : value instanceof Date ? value.getTime() : NaN;
  const when = new Date(ms);
  const valid = Number.isFinite(ms) && !Number.isNaN(when.getTime());
  switch (format) {
    case 'iso':
      return valid ? when.toISOString() : '';
    case 'epoch':
      return valid ? String(Math.floor(ms / 1000)) : '';
    case 'epoch_ms':
      return valid ? String(ms) : '';
    case 'date':
      return valid ? when.toISOString().slice(0, 10) : '';
    default:
      if (!/YYYY|MM|DD|HH|mm|ss|SSS/.test(format)) throw new Error(`date: unknown format ${JSON.stringify(format.slice(0, 40))} (iso, epoch, epoch_ms, date, or a pattern like "YYYY-MM-DD HH:mm")`);
      return valid ? formatPattern(when, format) : '';
  }
}

/** `{{urlencode value}}`: the value percent-encoded for a URL part or a form field. */
function urlencode(this: unknown, ...args: unknown[]) {
  args.pop();
  if (args.length !== 1) throw new Error('urlencode takes one value: {{urlencode data.member.email}}');
  const value = args[0];
  if (value === undefined || value === null) return '';
  return encodeURIComponent(typeof value === 'object' ? JSON.stringify(value) : String(value));
}

function formatPattern(when: Date, pattern: string): string {
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  const parts: Record<string, string> = {
    YYYY: pad(when.getUTCFullYear(), 4),
    MM: pad(when.getUTCMonth() + 1),
    DD: pad(when.getUTCDate()),
    HH: pad(when.getUTCHours()),
    mm: pad(when.getUTCMinutes()),
    ss: pad(when.getUTCSeconds()),
    SSS: pad(when.getUTCMilliseconds(), 3),
  };
  return pattern.replace(/YYYY|SSS|MM|DD|HH|mm|ss/g, (token) => parts[token]!);
}

/** The sandbox the templates render in (core/handlebars-sandbox.ts): the helpers above and the built-ins listed. */
const sandbox = handlebarsSandbox({
  kind: 'webhook templates',
  builtIns: BUILT_IN_HELPERS,
  helpers: { json, date, urlencode },
  canUse: `templates can use ${ALLOWED_HELPERS.join(', ')}`,
});

/** A template refused before it compiles (too long). */
class TemplateRefused extends Error {}

/** Compiled templates by source: a destination's template is compiled once, not per delivery. */
const compiled = new Map<string, Handlebars.TemplateDelegate>();
const MAX_COMPILED = 500;

function compile(source: string): Handlebars.TemplateDelegate {
  const known = compiled.get(source);
  if (known) return known;
  if (source.length > MAX_TEMPLATE_LENGTH) throw new TemplateRefused(`the template is longer than ${MAX_TEMPLATE_LENGTH} characters`);
  const template = sandbox.compile(source, { noEscape: true });
  if (compiled.size >= MAX_COMPILED) compiled.delete(compiled.keys().next().value!);
  compiled.set(source, template);
  return template;
}

/** Renders the template on the event (its fields at the top: `{{type}}`, `{{json data}}`, `{{id}}`, `{{timestamp}}`). Throws on a broken template. */
export function renderTemplate(source: string, event: OutboundEvent): string {
  const template = compile(source);
  return template({ id: event.id, type: event.type, timestamp: event.timestamp, data: event.data });
}

/**
 * What is wrong with a template, for the admin saving it, or null: it must parse, use only the allowed helpers,
 * and render the sample events (a member event and a Keap one) without an error.
 */
export function checkTemplate(source: string): string | null {
  try {
    for (const type of ['member.updated', 'keap.contact.edit']) renderTemplate(source, sampleEvent(type));
    return null;
  } catch (err) {
    return describeTemplateError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * One line an admin can act on. Handlebars' parse errors span lines (where, the source excerpt, a caret, then the
 * parser's token names): "Parse error on line 1:" alone says nothing about what to fix, the token names little more.
 */
function describeTemplateError(message: string): string {
  const lines = message.split('\n');
  const first = lines[0]!.slice(0, 300);
  // `{"data":{{json data}}}` reads as a triple-stash close: the one JSON mistake everyone makes once.
  if (message.includes("got 'CLOSE_UNESCAPED'")) return `${first.replace(/:$/, '')}: a "}" right after "}}" reads as "}}}"; put a space or a new line between them ({{json data}} })`;
  const mismatched = /^(\S+) doesn't match (\S+) - (\d+):/.exec(first);
  if (mismatched) return `{{#${mismatched[1]}}} on line ${mismatched[3]} is closed by {{/${mismatched[2]}}}: close it with {{/${mismatched[1]}}}`;
  if (!/^Parse error on line \d+:$/.test(first)) return first;
  const near = (lines[1] ?? '').trim().slice(0, 80);
  const got = /got '([A-Z_]+)'/.exec(message)?.[1];
  const what =
    got === 'EOF' ? 'the template ends inside a block: a {{#…}} needs its {{/…}}'
    : got === 'INVALID' ? 'a {{ that is not closed by }} (or a character Handlebars does not read there)'
    : got ? `Handlebars did not expect ${got.toLowerCase().replace(/_/g, ' ')} there`
    : 'Handlebars could not read it';
  return `${first.replace(/:$/, '')}${near ? `, near "${near}"` : ''}: ${what}`;
}

/** A member as outbound events carry it (members/public-shape.ts: the JSON API's user; see plugin.ts `recordMemberEvents`). */
const SAMPLE_MEMBER = {
  id: 42,
  email: 'ada@example.com',
  username: 'ada',
  role: 'subscriber',
  first_name: 'Ada',
  last_name: 'Lovelace',
  keap_contact_id: 1001,
  tags: [
    { id: 91, name: 'Member', category: 'Membership' },
    { id: 93, name: 'VIP', category: 'Membership' },
  ],
  fields: { company: 'Analytical Engines Ltd' },
  created_at: '2026-12-01T09:30:00.000Z',
  updated_at: '2026-12-08T00:15:00.000Z',
};

/**
 * An event of the type with made-up data, for the template preview and the check on save, in the shape real events
 * have (test/outbound-samples.test.ts holds the two together). Member events carry `data.member` and what changed;
 * Keap events (`keap.` + Keap's event key) the normalized Keap event and the linked member.
 */
export function sampleEvent(type: string): OutboundEvent {
  const base = { id: 'msg_sample_0001', type, timestamp: '2026-12-08T00:15:00.000Z' };
  const member = SAMPLE_MEMBER;
  switch (type) {
    case 'member.updated':
      return { ...base, data: { member, changed: ['first_name', 'fields'] } };
    case 'member.tags_changed':
      return { ...base, data: { member, added: [{ id: 93, name: 'VIP', category: 'Membership' }], removed: [] } };
    case 'member.role_changed':
      return { ...base, data: { member: { ...member, role: 'gold' }, from: 'subscriber', to: 'gold' } };
    case 'member.password_changed':
      return { ...base, data: { member, how: 'account' } };
    case 'member.created':
    case 'member.deleted':
    case 'member.logged_in':
      return { ...base, data: { member } };
  }
  if (type.startsWith('keap.')) {
    const eventType = type.slice('keap.'.length).replace(/\.?\*$/, '') || 'contact.edit';
    const objectType = eventType.split('.')[0] || 'contact';
    return {
      ...base,
      data: {
        object_type: objectType,
        object_id: '1001',
        event_type: eventType.includes('.') ? eventType : `${eventType}.edit`,
        source: 'rest_hook',
        raw: { id: 1001, apiUrl: `https://api.infusionsoft.com/crm/rest/v1/${objectType}s/1001`, timestamp: base.timestamp },
        member: objectType === 'contact' ? member : null,
      },
    };
  }
  return { ...base, data: { member } };
}
