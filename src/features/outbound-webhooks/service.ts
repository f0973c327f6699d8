import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../../core/clock.js';
import { isoNow, isUniqueViolation, type Db } from '../../core/db.js';
import { AppError, conflict, notFound } from '../../core/errors.js';
import type { SecretBox } from '../../core/secret-box.js';
import { connectionAuthSchema, type ConnectionAuth, type OutboundAuth } from './auth.js';
import { eventPatternProblem, matchesEventPatterns } from './events.js';
import { sendOnce, type AttemptResult, type ConnectionSecrets, type SenderDeps } from './sender.js';
import { DELIVERY_STATUSES, DESTINATION_METHODS } from './types.js';
import {
  OutboundStore,
  type AttemptRow,
  type ConnectionRow,
  type DeliveryFilter,
  type DeliveryRow,
  type DestinationRow,
  type NewDelivery,
} from './store.js';
import { checkTemplate, DEFAULT_TEMPLATE, renderTemplate, sampleEvent, type OutboundEvent } from './template.js';

// ---------------------------------------------------------------------------------------------------------------
// Input: what the JSON API (and the admin pages) hand in. Every schema is strict, so an unknown field is a 400 naming it.

const name = z.string().trim().min(1, 'is required').max(100);
const description = z.string().max(1_000);
const baseUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
  .max(2_000)
  .refine((u) => !URL.canParse(u) || (!new URL(u).username && !new URL(u).password), 'must not carry a user name or password (use the authentication settings)');
const PORT_EXPECTED = 'a port number from 1 to 65535 (or none: the URL\'s own)';
const port = z.number({ error: PORT_EXPECTED }).int({ error: PORT_EXPECTED }).min(1, { error: PORT_EXPECTED }).max(65_535, { error: PORT_EXPECTED }).nullable();

/**
 * Authentication as given: its type and fields (`{ type: 'basic', username, password }`, `{ type: 'oauth2', grant,
 * tokenUrl, clientId, clientSecret, scope }`, ...). On an update, a secret left out keeps the one stored (forms never
 * show them back).
 */
const authInput = z
  .looseObject({ type: z.enum(['none', 'basic', 'bearer', 'oauth2']) })
  .describe('{ type: none } | { type: basic, username, password } | { type: bearer, token } | { type: oauth2, grant: client_credentials | password | jwt_bearer, tokenUrl, clientId, clientSecret, scope?, username?, password?, assertion? }. On an update, a secret left out keeps the stored one.');

export const connectionCreate = z.strictObject({
  name,
  description: description.default(''),
  base_url: baseUrl,
  port: port.default(null),
  auth: authInput.default({ type: 'none' }),
});

export const connectionPatch = z.strictObject({
  name: name.optional(),
  description: description.optional(),
  base_url: baseUrl.optional(),
  port: port.optional(),
  auth: authInput.optional(),
});

const events = z
  .array(z.string().max(200).superRefine((p, ctx) => {
    const problem = eventPatternProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }))
  .min(1, 'lists no event: name at least one (member.*, keap.contact.edit, ...)')
  .max(50);
const template = z
  .string()
  .max(20_000)
  .nullable()
  .superRefine((source, ctx) => {
    const problem = source === null ? null : checkTemplate(source);
    if (problem) ctx.addIssue({ code: 'custom', message: `the template does not compile: ${problem}` });
  })
  .describe('Handlebars; null for the default JSON envelope { type, timestamp, data }.');
const destinationFields = {
  name,
  description,
  method: z.enum(DESTINATION_METHODS),
  content_type: z.string().trim().min(1).max(200).regex(/^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/, 'must be a media type such as application/json'),
  path: z.string().max(2_000).regex(/^[^\s#]*$/, 'must not hold spaces or a #'),
  template,
  events,
  filter_tag_id: z.number().int().positive().nullable().describe('Only events about a member holding this Keap tag.'),
  filter_role: z.string().max(64).nullable().describe('Only events about a member with this role (its slug).'),
  enabled: z.boolean(),
};

export const destinationCreate = z.strictObject({
  connection_id: z.number().int().positive(),
  name,
  description: destinationFields.description.default(''),
  method: destinationFields.method.default('POST'),
  content_type: destinationFields.content_type.default('application/json'),
  path: destinationFields.path.default(''),
  template: destinationFields.template.default(null),
  events: destinationFields.events,
  filter_tag_id: destinationFields.filter_tag_id.default(null),
  filter_role: destinationFields.filter_role.default(null),
  enabled: destinationFields.enabled.default(true),
});

export const destinationPatch = z.strictObject({
  name: name.optional(),
  description: destinationFields.description.optional(),
  method: destinationFields.method.optional(),
  content_type: destinationFields.content_type.optional(),
  path: destinationFields.path.optional(),
  template: destinationFields.template.optional(),
  events: destinationFields.events.optional(),
  filter_tag_id: destinationFields.filter_tag_id.optional(),
  filter_role: destinationFields.filter_role.optional(),
  enabled: destinationFields.enabled.optional(),
});

export const rotateSecretInput = z.strictObject({
  overlap_hours: z.number().min(0).max(24 * 30).default(24).describe('How long the previous secret still signs (both signatures are sent), in hours.'),
});

const isoTime = z.iso.datetime({ offset: true }).transform((t) => new Date(t).toISOString());

export const deliveryQuery = z.strictObject({
  destination_id: z.coerce.number().int().positive().optional(),
  status: z.enum(DELIVERY_STATUSES).optional(),
  event_type: z.string().max(200).optional(),
  event_id: z.string().max(200).optional(),
  from: isoTime.optional().describe('Created at or after this time (ISO 8601).'),
  to: isoTime.optional().describe('Created before this time (ISO 8601).'),
  page: z.coerce.number().int().min(1).max(1_000_000).default(1).describe('Page number, from 1.'),
  per_page: z.coerce.number().int().min(1).max(200).default(50).describe('Items per page.'),
});

export const replayFailedInput = z.strictObject({
  from: isoTime.describe('Failed and dead deliveries created at or after this time (ISO 8601).'),
  to: isoTime.describe('... and before this one.'),
});

export const sendTestInput = z.strictObject({
  event_type: z.string().max(200).optional().describe('The sample event to send; the destination\'s first event type by default.'),
});

export type ConnectionCreate = z.input<typeof connectionCreate>;
export type ConnectionPatch = z.input<typeof connectionPatch>;
export type DestinationCreate = z.input<typeof destinationCreate>;
export type DestinationPatch = z.input<typeof destinationPatch>;

// ---------------------------------------------------------------------------------------------------------------
// Output: what the service answers (snake_case, as the JSON API shows it). Secrets never appear.

/** A connection as shown: its authentication without secrets (`secrets_set` names the ones stored). */
export interface ConnectionView {
  id: number;
  name: string;
  description: string;
  base_url: string;
  port: number | null;
  auth: { type: ConnectionAuth['type']; secrets_set: string[] } & Record<string, unknown>;
  /** Until when the previous signing secret still signs (a rotation's overlap), or null. */
  previous_secret_until: string | null;
  /** The token endpoint's last failure (OAuth 2), or null. */
  token_error: { message: string; at: string } | null;
  created_at: string;
  updated_at: string;
}

export interface DestinationView {
  id: number;
  connection_id: number;
  name: string;
  description: string;
  method: (typeof DESTINATION_METHODS)[number];
  content_type: string;
  path: string;
  url: string;
  template: string | null;
  events: string[];
  filter_tag_id: number | null;
  filter_role: string | null;
  enabled: boolean;
  disabled_reason: string | null;
  disabled_at: string | null;
  failing_since: string | null;
  created_at: string;
  updated_at: string;
}

export interface DeliveryView {
  id: number;
  destination_id: number;
  event_id: string;
  event_type: string;
  status: (typeof DELIVERY_STATUSES)[number];
  attempts: number;
  next_attempt_at: string | null;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

export interface AttemptView {
  attempt: number;
  at: string;
  request: { method: string; url: string; headers: Record<string, string> };
  response: { status: number; headers: Record<string, string>; body: string; truncated: boolean } | null;
  error: string | null;
  duration_ms: number;
}

export interface DeliveryDetail extends DeliveryView {
  body: string;
  attempts_log: AttemptView[];
}

export interface TestSendView {
  event: OutboundEvent;
  request: { method: string; url: string; headers: Record<string, string>; body: string };
  response: { status: number; headers: Record<string, string>; body: string; truncated: boolean } | null;
  error: string | null;
  duration_ms: number;
}

/** A destination the dispatcher turned off, for the dashboard. */
export interface DisabledDestinationNotice {
  connectionId: number;
  destinationId: number;
  destination: string;
  connection: string;
  reason: string;
  at: string;
}

/** The fields of an authentication that are secrets: sealed at rest, never shown back. */
const SECRET_FIELDS = ['password', 'token', 'clientSecret', 'assertion'] as const;
const SIGNING_SECRET_BYTES = 32;
const AUTH_CONTEXT = (id: number) => `outbound_connections:${id}:auth`;
const SIGNING_CONTEXT = (id: number, which: 'current' | 'previous') => `outbound_connections:${id}:signing:${which}`;

/** A new signing secret in the `whsec_` form Standard Webhooks libraries take. */
export function generateSigningSecret(): string {
  return `whsec_${randomBytes(SIGNING_SECRET_BYTES).toString('base64')}`;
}

/** What recording an event needs besides the store: the member the event is about, for the tag and role filters. */
export interface EventSubject {
  tagIds: readonly number[];
  role: string;
}

export interface OutboundServiceDeps {
  db: Db;
  clock: Clock;
  secretBox: SecretBox;
  auth: OutboundAuth;
  sender: Omit<SenderDeps, 'auth'>;
  /** Something was queued or replayed: the dispatcher should look now (on whichever thread it runs). */
  wake: () => void;
}

/**
 * Outbound webhooks: connections, their destinations, the deliveries recorded for each event and their attempts.
 * The admin pages and the JSON API go through it; the dispatcher (dispatcher.ts) sends what it queues.
 *
 * Errors: bad input is an AppError 400 naming the field (`field`), an unknown id a 404, a name taken a 409.
 */
export class OutboundWebhooks {
  readonly store: OutboundStore;

  constructor(private readonly deps: OutboundServiceDeps) {
    this.store = new OutboundStore(deps.db);
  }

  // Connections ------------------------------------------------------------------------------------------------

  listConnections(): ConnectionView[] {
    return this.store.connections().map((c) => this.connectionView(c));
  }

  getConnection(id: number): ConnectionView {
    return this.connectionView(this.connectionRow(id));
  }

  /** Creates a connection; the answer holds its signing secret, the only time it is shown. */
  createConnection(input: unknown): { connection: ConnectionView; signing_secret: string } {
    const values = parse(connectionCreate, input);
    const auth = parseAuth(values.auth);
    const secret = generateSigningSecret();
    const now = this.deps.clock.now();
    const id = this.uniqueName(() =>
      this.deps.db.transaction(() => {
        const id = this.store.insertConnection(
          { name: values.name, description: values.description, base_url: values.base_url, port: values.port, auth_type: auth.type, auth_settings: '{}', auth_secrets: null, signing_secret: 'pending', previous_secret: null, previous_secret_until: null },
          now,
        );
        // Sealed values are bound to their row's id, known only now.
        const row = this.store.connection(id)!;
        this.store.updateConnection({ ...row, ...this.sealedAuth(id, auth), signing_secret: this.deps.secretBox.seal(secret, SIGNING_CONTEXT(id, 'current')) }, now);
        return id;
      })(),
    );
    return { connection: this.getConnection(id), signing_secret: secret };
  }

  updateConnection(id: number, input: unknown): ConnectionView {
    const row = this.connectionRow(id);
    const values = parse(connectionPatch, input);
    let authColumns = {};
    if (values.auth !== undefined) {
      const stored = this.secretsOf(row).auth;
      // A secret left out keeps the stored one, if the authentication is still of the same kind.
      const merged = stored.type === values.auth.type ? { ...secretFieldsOf(stored), ...values.auth } : values.auth;
      const auth = parseAuth(merged);
      authColumns = { auth_type: auth.type, ...this.sealedAuth(id, auth) };
      this.deps.auth.forget(`connection:${id}`);
    }
    this.uniqueName(() =>
      this.store.updateConnection(
        {
          ...row,
          ...(values.name !== undefined ? { name: values.name } : {}),
          ...(values.description !== undefined ? { description: values.description } : {}),
          ...(values.base_url !== undefined ? { base_url: values.base_url } : {}),
          ...(values.port !== undefined ? { port: values.port } : {}),
          ...authColumns,
        },
        this.deps.clock.now(),
      ),
    );
    return this.getConnection(id);
  }

  /** Deletes a connection with its destinations and their deliveries. */
  deleteConnection(id: number): void {
    this.connectionRow(id);
    this.store.deleteConnection(id);
    this.deps.auth.forget(`connection:${id}`);
  }

  /**
   * A new signing secret, returned once; the previous one still signs for `overlap_hours` (every delivery carries
   * both signatures meanwhile), so receivers can switch without refusing a delivery.
   */
  rotateSigningSecret(id: number, input: unknown = {}): { connection: ConnectionView; signing_secret: string } {
    const row = this.connectionRow(id);
    const { overlap_hours: overlapHours } = parse(rotateSecretInput, input);
    const now = this.deps.clock.now();
    const secret = generateSigningSecret();
    const current = this.deps.secretBox.open(row.signing_secret, SIGNING_CONTEXT(id, 'current'), 'a connection\'s signing secret');
    const overlapMs = Math.round(overlapHours * 3_600_000);
    this.store.updateConnection(
      {
        ...row,
        signing_secret: this.deps.secretBox.seal(secret, SIGNING_CONTEXT(id, 'current')),
        previous_secret: overlapMs > 0 ? this.deps.secretBox.seal(current, SIGNING_CONTEXT(id, 'previous')) : null,
        previous_secret_until: overlapMs > 0 ? now + overlapMs : null,
      },
      now,
    );
    return { connection: this.getConnection(id), signing_secret: secret };
  }

  /** The connection's secrets, opened, for the sender. */
  secretsOf(row: ConnectionRow): ConnectionSecrets {
    const box = this.deps.secretBox;
    const settings = JSON.parse(row.auth_settings) as Record<string, unknown>;
    const secrets = row.auth_secrets === null ? {} : (JSON.parse(box.open(row.auth_secrets, AUTH_CONTEXT(row.id), 'a connection\'s authentication secrets')) as Record<string, unknown>);
    const signing = [box.open(row.signing_secret, SIGNING_CONTEXT(row.id, 'current'), 'a connection\'s signing secret')];
    if (row.previous_secret !== null && (row.previous_secret_until ?? 0) > this.deps.clock.now()) {
      signing.push(box.open(row.previous_secret, SIGNING_CONTEXT(row.id, 'previous'), 'a connection\'s previous signing secret'));
    }
    return { auth: { ...settings, ...secrets, type: row.auth_type } as ConnectionAuth, signing };
  }

  // Destinations -----------------------------------------------------------------------------------------------

  listDestinations(connectionId?: number): DestinationView[] {
    if (connectionId !== undefined) this.connectionRow(connectionId);
    const connections = new Map(this.store.connections().map((c) => [c.id, c]));
    return this.store.destinations(connectionId).map((d) => destinationView(d, connections.get(d.connection_id)!));
  }

  getDestination(id: number): DestinationView {
    const row = this.destinationRow(id);
    return destinationView(row, this.connectionRow(row.connection_id));
  }

  createDestination(input: unknown): DestinationView {
    const values = parse(destinationCreate, input);
    if (!this.store.connection(values.connection_id)) throw new AppError(400, `connection_id: no connection with id ${values.connection_id}`, { code: 'invalid_input', field: 'connection_id' });
    const id = this.uniqueName(() =>
      this.store.insertDestination(
        {
          connection_id: values.connection_id,
          name: values.name,
          description: values.description,
          method: values.method,
          content_type: values.content_type,
          path: values.path,
          template: values.template,
          events: JSON.stringify(values.events),
          filter_tag_id: values.filter_tag_id,
          filter_role: values.filter_role,
          enabled: values.enabled ? 1 : 0,
          disabled_reason: null,
        },
        this.deps.clock.now(),
      ),
    );
    return this.getDestination(id);
  }

  updateDestination(id: number, input: unknown): DestinationView {
    const row = this.destinationRow(id);
    const values = parse(destinationPatch, input);
    const enabled = values.enabled === undefined ? row.enabled : values.enabled ? 1 : 0;
    this.uniqueName(() =>
      this.store.updateDestination(
        {
          ...row,
          ...(values.name !== undefined ? { name: values.name } : {}),
          ...(values.description !== undefined ? { description: values.description } : {}),
          ...(values.method !== undefined ? { method: values.method } : {}),
          ...(values.content_type !== undefined ? { content_type: values.content_type } : {}),
          ...(values.path !== undefined ? { path: values.path } : {}),
          ...(values.template !== undefined ? { template: values.template } : {}),
          ...(values.events !== undefined ? { events: JSON.stringify(values.events) } : {}),
          ...(values.filter_tag_id !== undefined ? { filter_tag_id: values.filter_tag_id } : {}),
          ...(values.filter_role !== undefined ? { filter_role: values.filter_role } : {}),
          enabled,
          // Enabled again by the admin: the dispatcher's reason no longer holds. Disabled by the admin: no reason shown.
          disabled_reason: enabled === 1 ? null : row.enabled === 0 ? row.disabled_reason : null,
        },
        this.deps.clock.now(),
      ),
    );
    // Deliveries that waited while it was disabled are due now.
    if (enabled === 1 && row.enabled === 0) this.deps.wake();
    return this.getDestination(id);
  }

  deleteDestination(id: number): void {
    this.destinationRow(id);
    this.store.deleteDestination(id);
  }

  /**
   * Sends a sample event (or `event_type`'s) to the destination now, signed and authenticated as a delivery would
   * be, and answers with the request (secrets redacted) and the answer. Records nothing.
   */
  async sendTest(destinationId: number, input: unknown = {}): Promise<TestSendView> {
    const destination = this.destinationRow(destinationId);
    const { event_type: asked } = parse(sendTestInput, input);
    const patterns = JSON.parse(destination.events) as string[];
    const type = asked ?? concreteType(patterns[0] ?? 'member.updated');
    const event = { ...sampleEvent(type), id: `evt_test_${randomUUID()}`, timestamp: isoNow(this.deps.clock.now()) };
    let body: string;
    try {
      body = renderTemplate(destination.template ?? DEFAULT_TEMPLATE, event);
    } catch (err) {
      throw new AppError(400, `template: ${err instanceof Error ? err.message : String(err)}`, { code: 'invalid_input', field: 'template' });
    }
    const connection = this.connectionRow(destination.connection_id);
    const result = await sendOnce({ ...this.deps.sender, auth: this.deps.auth }, { connection, secrets: this.secretsOf(connection), destination }, { eventId: event.id, body, at: this.deps.clock.now() });
    return { event, ...testView(result) };
  }

  // Recording --------------------------------------------------------------------------------------------------

  /**
   * Whether an enabled destination lists the event type (its filters aside): asked in the transaction of every
   * change, so an event no destination takes records nothing at all (no outbox row, no job).
   */
  takesEvent(type: string): boolean {
    return this.store.enabledEventPatterns().some((patterns) => matchesEventPatterns(patterns, type));
  }

  /**
   * Records one delivery per enabled destination that takes the event (its patterns, and its tag and role filters
   * against `subject`, the member the event is about), in one transaction. The body is rendered now: every attempt
   * and replay sends the same bytes under the same `webhook-id`, and the log shows exactly what was sent. A
   * destination whose template cannot render this event gets a failed delivery saying why. An event recorded again
   * (a durable handler's second run) adds nothing. Returns how many deliveries were added.
   */
  recordEvent(event: OutboundEvent, subject: EventSubject | null): number {
    const now = this.deps.clock.now();
    const deliveries: NewDelivery[] = [];
    for (const destination of this.store.enabledDestinations()) {
      if (!matchesEventPatterns(JSON.parse(destination.events) as string[], event.type)) continue;
      if (destination.filter_tag_id !== null && !subject?.tagIds.includes(destination.filter_tag_id)) continue;
      if (destination.filter_role !== null && subject?.role !== destination.filter_role) continue;
      const base = { destinationId: destination.id, eventId: event.id, eventType: event.type, createdAt: event.timestamp, dueAt: now };
      try {
        deliveries.push({ ...base, body: renderTemplate(destination.template ?? DEFAULT_TEMPLATE, event) });
      } catch (err) {
        deliveries.push({ ...base, body: '', error: `the template could not render this event: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
    if (deliveries.length === 0) return 0;
    const added = this.deps.db.transaction(() => this.store.insertDeliveries(deliveries, now))();
    if (added > 0) this.deps.wake();
    return added;
  }

  // The delivery log -------------------------------------------------------------------------------------------

  /** One page of the delivery log, newest first, filtered by `deliveryQuery`'s fields. */
  listDeliveries(query: unknown): { deliveries: DeliveryView[]; page: number; per_page: number; total: number } {
    const q = parse(deliveryQuery, query);
    const filter: DeliveryFilter = {
      ...(q.destination_id !== undefined ? { destinationId: q.destination_id } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.event_type !== undefined ? { eventType: q.event_type } : {}),
      ...(q.event_id !== undefined ? { eventId: q.event_id } : {}),
      ...(q.from !== undefined ? { from: q.from } : {}),
      ...(q.to !== undefined ? { to: q.to } : {}),
    };
    const { rows, total } = this.store.listDeliveries(filter, q.page, q.per_page);
    return { deliveries: rows.map(deliveryView), page: q.page, per_page: q.per_page, total };
  }

  getDelivery(id: number): DeliveryDetail {
    const row = this.deliveryRow(id);
    return { ...deliveryView(row), body: row.body, attempts_log: this.store.attempts(id).map(attemptView) };
  }

  /** Queues a finished delivery again (same event id and body, attempts from zero); 409 while it is queued or being sent. */
  replay(id: number): DeliveryView {
    const row = this.deliveryRow(id);
    if (!this.store.replay(id, this.deps.clock.now())) throw conflict(`delivery ${id} is ${row.status} already`);
    this.deps.wake();
    return deliveryView(this.store.delivery(id)!);
  }

  /** Queues again every failed and dead delivery of a destination created in [from, to). */
  replayFailed(destinationId: number, input: unknown): { replayed: number } {
    this.destinationRow(destinationId);
    const { from, to } = parse(replayFailedInput, input);
    if (from >= to) throw new AppError(400, 'to: must be after from', { code: 'invalid_input', field: 'to' });
    const replayed = this.store.replayFailed(destinationId, from, to, this.deps.clock.now());
    if (replayed > 0) this.deps.wake();
    return { replayed };
  }

  /** Destinations the dispatcher disabled (a 410, or failing for days), for the dashboard. */
  disabledNotices(): DisabledDestinationNotice[] {
    const connections = new Map(this.store.connections().map((c) => [c.id, c.name]));
    return this.store.disabledWithReason().map((d) => ({
      connectionId: d.connection_id,
      destinationId: d.id,
      destination: d.name,
      connection: connections.get(d.connection_id) ?? '',
      reason: d.disabled_reason!,
      at: d.disabled_at ?? d.updated_at,
    }));
  }

  // Internals --------------------------------------------------------------------------------------------------

  connectionRow(id: number): ConnectionRow {
    const row = this.store.connection(id);
    if (!row) throw notFound(`no outbound connection with id ${id}`);
    return row;
  }

  destinationRow(id: number): DestinationRow {
    const row = this.store.destination(id);
    if (!row) throw notFound(`no outbound destination with id ${id}`);
    return row;
  }

  private deliveryRow(id: number): DeliveryRow {
    const row = this.store.delivery(id);
    if (!row) throw notFound(`no outbound delivery with id ${id}`);
    return row;
  }

  private sealedAuth(id: number, auth: ConnectionAuth): Pick<ConnectionRow, 'auth_settings' | 'auth_secrets'> {
    const settings: Record<string, unknown> = {};
    const secrets: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(auth)) {
      if (key === 'type') continue;
      if ((SECRET_FIELDS as readonly string[]).includes(key)) secrets[key] = value;
      else settings[key] = value;
    }
    return {
      auth_settings: JSON.stringify(settings),
      auth_secrets: Object.keys(secrets).length ? this.deps.secretBox.seal(JSON.stringify(secrets), AUTH_CONTEXT(id)) : null,
    };
  }

  private connectionView(row: ConnectionRow): ConnectionView {
    const settings = JSON.parse(row.auth_settings) as Record<string, unknown>;
    const secretsSet = row.auth_secrets === null ? [] : Object.keys(JSON.parse(this.deps.secretBox.open(row.auth_secrets, AUTH_CONTEXT(row.id), 'a connection\'s authentication secrets')) as object);
    const tokenError = this.deps.auth.tokenError(`connection:${row.id}`);
    return {
      id: row.id,
      name: row.name,
      description: row.description,
      base_url: row.base_url,
      port: row.port,
      auth: { ...settings, type: row.auth_type, secrets_set: secretsSet.sort() },
      previous_secret_until: row.previous_secret !== null && row.previous_secret_until !== null && row.previous_secret_until > this.deps.clock.now() ? isoNow(row.previous_secret_until) : null,
      token_error: tokenError ?? null,
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
  }

  /** Runs a write whose name may clash with another's; a clash is a 409 naming the field. */
  private uniqueName<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      if (isUniqueViolation(err, 'outbound_connections.name')) {
        throw new AppError(409, 'name: another connection has this name', { code: 'conflict', field: 'name' });
      }
      if (isUniqueViolation(err, 'outbound_destinations.name')) {
        throw new AppError(409, 'name: another destination of this connection has this name', { code: 'conflict', field: 'name' });
      }
      throw err;
    }
  }
}

/** Validates with zod; the first problem becomes a 400 naming the field and what was expected. */
export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.length ? issue.path.join('.') : undefined;
  const message = issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : `${field ?? 'body'}: ${issue.message}`;
  throw new AppError(400, message, { code: 'invalid_input', ...(field === undefined ? {} : { field }) });
}

/** The authentication checked against the transport's schema; a problem names `auth.<field>`. Never echoes a value. */
function parseAuth(value: unknown): ConnectionAuth {
  const result = connectionAuthSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = ['auth', ...issue.path.map(String)].join('.');
  const message = issue.code === 'unrecognized_keys' ? `auth: unknown field(s): ${issue.keys.join(', ')}` : `${field}: ${issue.message}`;
  throw new AppError(400, message, { code: 'invalid_input', field });
}

function secretFieldsOf(auth: ConnectionAuth): Record<string, unknown> {
  return Object.fromEntries(Object.entries(auth).filter(([key]) => (SECRET_FIELDS as readonly string[]).includes(key)));
}

/** A pattern's example type for a test send: `member.*` → `member.updated`, `keap.contact.*` → `keap.contact.edit`. */
function concreteType(pattern: string): string {
  if (pattern === '*' || pattern === 'member.*') return 'member.updated';
  if (pattern === 'keap.*') return 'keap.contact.edit';
  if (pattern.endsWith('.*')) return `${pattern.slice(0, -2)}.edit`;
  return pattern;
}

function destinationView(d: DestinationRow, connection: ConnectionRow): DestinationView {
  let url: string;
  try {
    url = new URL(d.path.replace(/^\/+/, ''), connection.base_url.endsWith('/') ? connection.base_url : `${connection.base_url}/`).toString();
  } catch {
    url = connection.base_url;
  }
  return {
    id: d.id,
    connection_id: d.connection_id,
    name: d.name,
    description: d.description,
    method: d.method,
    content_type: d.content_type,
    path: d.path,
    url,
    template: d.template,
    events: JSON.parse(d.events) as string[],
    filter_tag_id: d.filter_tag_id,
    filter_role: d.filter_role,
    enabled: d.enabled === 1,
    disabled_reason: d.disabled_reason,
    disabled_at: d.disabled_at,
    failing_since: d.failing_since === null ? null : isoNow(d.failing_since),
    created_at: d.created_at,
    updated_at: d.updated_at,
  };
}

function deliveryView(d: DeliveryRow): DeliveryView {
  return {
    id: d.id,
    destination_id: d.destination_id,
    event_id: d.event_id,
    event_type: d.event_type,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: d.status === 'queued' && d.next_attempt_at !== null ? isoNow(d.next_attempt_at) : null,
    last_status: d.last_status,
    last_error: d.last_error,
    created_at: d.created_at,
    updated_at: d.updated_at,
    delivered_at: d.delivered_at,
  };
}

function attemptView(a: AttemptRow): AttemptView {
  return {
    attempt: a.attempt,
    at: a.at,
    request: { method: a.request_method, url: a.request_url, headers: JSON.parse(a.request_headers) as Record<string, string> },
    response:
      a.response_status === null
        ? null
        : { status: a.response_status, headers: a.response_headers === null ? {} : (JSON.parse(a.response_headers) as Record<string, string>), body: a.response_body ?? '', truncated: a.response_truncated === 1 },
    error: a.error,
    duration_ms: a.duration_ms,
  };
}

function testView(result: AttemptResult): Omit<TestSendView, 'event'> {
  return {
    request: result.request,
    response: result.response ? { status: result.response.status, headers: result.response.headers, body: result.response.body, truncated: result.response.truncated } : null,
    error: result.error ? result.error.message : null,
    duration_ms: result.durationMs,
  };
}
