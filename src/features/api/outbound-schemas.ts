import { z } from 'zod';
import { AUTH_TYPES } from '../outbound-webhooks/auth.js';
import { DELIVERY_STATUSES, DESTINATION_METHODS } from '../outbound-webhooks/types.js';

/**
 * The answers of `/api/v1/outbound/...` as zod schemas, for the OpenAPI document (the requests' schemas are the
 * outbound webhooks service's own: connectionCreate, destinationPatch, deliveryQuery, ...). The service's views
 * (ConnectionView, ...) are checked against these at compile time in outbound-routes.ts.
 */

const time = z.string().describe('ISO 8601 time (UTC).');
const headers = z.record(z.string(), z.string());

export const connectionSchema = z.object({
  id: z.number().int(),
  name: z.string(),
  description: z.string(),
  base_url: z.string(),
  port: z.number().int().nullable(),
  auth: z
    .looseObject({ type: z.enum(AUTH_TYPES), secrets_set: z.array(z.string()).describe('The secret fields stored (never shown).') })
    .describe('The authentication without its secrets: user name, client id, token URL, grant, scope.'),
  previous_secret_until: time.nullable().describe('Until when the previous signing secret still signs (a rotation\'s overlap).'),
  token_error: z.object({ message: z.string(), at: time }).nullable().describe('The OAuth token endpoint\'s last failure.'),
  created_at: time,
  updated_at: time,
});

export const destinationSchema = z.object({
  id: z.number().int(),
  connection_id: z.number().int(),
  name: z.string(),
  description: z.string(),
  method: z.enum(DESTINATION_METHODS),
  content_type: z.string(),
  path: z.string(),
  url: z.string().describe('Where deliveries go: the connection\'s base URL and this path.'),
  template: z.string().nullable().describe('Handlebars; null: the default JSON envelope.'),
  events: z.array(z.string()),
  filter_tag_id: z.number().int().nullable(),
  filter_role: z.string().nullable(),
  enabled: z.boolean(),
  disabled_reason: z.string().nullable().describe('Why memberhook disabled it (a 410, or failing for days).'),
  disabled_at: time.nullable(),
  failing_since: time.nullable(),
  created_at: time,
  updated_at: time,
});

export const deliverySchema = z.object({
  id: z.number().int(),
  destination_id: z.number().int(),
  event_id: z.string().describe('The webhook-id header: the same on every attempt and replay.'),
  event_type: z.string(),
  status: z.enum(DELIVERY_STATUSES),
  attempts: z.number().int(),
  next_attempt_at: time.nullable(),
  last_status: z.number().int().nullable(),
  last_error: z.string().nullable(),
  created_at: time.describe('When the change that caused it committed.'),
  updated_at: time,
  delivered_at: time.nullable(),
});

const responseSchema = z.object({ status: z.number().int(), headers, body: z.string(), truncated: z.boolean() });

export const deliveryAttemptSchema = z.object({
  attempt: z.number().int(),
  at: time,
  request: z.object({ method: z.string(), url: z.string(), headers: headers.describe('Secrets (Authorization) redacted.') }),
  response: responseSchema.nullable(),
  error: z.string().nullable(),
  duration_ms: z.number().int(),
});

export const connectionListResponse = z.object({ connections: z.array(connectionSchema) });
export const connectionResponse = z.object({ connection: connectionSchema });
export const connectionWithSecretResponse = z.object({
  connection: connectionSchema,
  signing_secret: z.string().describe('The signing secret (whsec_...): shown this once only.'),
});
export const destinationListResponse = z.object({ destinations: z.array(destinationSchema) });
export const destinationResponse = z.object({ destination: destinationSchema });
export const deliveryListResponse = z.object({ deliveries: z.array(deliverySchema), page: z.number().int(), per_page: z.number().int(), total: z.number().int() });
export const deliveryDetailResponse = z.object({ delivery: deliverySchema.extend({ body: z.string(), attempts_log: z.array(deliveryAttemptSchema) }) });
export const deliveryResponse = z.object({ delivery: deliverySchema });
export const replayFailedResponse = z.object({ replayed: z.number().int() });
export const testSendResponse = z.object({
  test: z.object({
    event: z.object({ id: z.string(), type: z.string(), timestamp: z.string(), data: z.unknown() }),
    request: z.object({ method: z.string(), url: z.string(), headers, body: z.string() }),
    response: responseSchema.nullable(),
    error: z.string().nullable().describe('Why no answer came (timeout, refused address, token endpoint failure).'),
    duration_ms: z.number().int(),
  }),
});
