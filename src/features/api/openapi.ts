import { z } from 'zod';
import { API_SCOPE_DESCRIPTIONS, API_SCOPES, type ApiScope } from './scopes.js';
import { connectionCreate, connectionPatch, deliveryQuery, destinationCreate, destinationPatch, replayFailedInput, rotateSecretInput, sendTestInput } from '../outbound-webhooks/service.js';
import { destinationListQuery, noQuery } from './outbound-routes.js';
import * as outbound from './outbound-schemas.js';
import * as schemas from './schemas.js';

/**
 * The OpenAPI 3.1 description of `/api/v1`, served at `/api/v1/openapi.json`. Every schema in it is generated from
 * the zod schemas the routes validate with and answer to (schemas.ts), so the document says what the code does; a
 * test walks every route with real requests and validates each answer against it, and fails on a route it lacks.
 */

type Method = 'get' | 'patch' | 'delete' | 'post';

interface ApiOperation {
  method: Method;
  /** Express style (`/api/v1/users/:id`); written `{id}` in the document. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  /** The scope a token needs; null: no token needed. */
  scope: ApiScope | null;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** The component the 200 answer is. */
  answer: keyof typeof ANSWERS;
  /** Error answers besides 400, 401 and the body parser's (413, 415), which every route with a token can give. */
  errors: Partial<Record<403 | 404 | 409, string>>;
}

const ANSWERS = {
  UserList: schemas.userListResponse,
  UserAnswer: schemas.userResponse,
  Ok: schemas.okResponse,
  EventList: schemas.eventListResponse,
  EventDetail: schemas.eventDetailResponse,
  ReplayAnswer: schemas.replayResponse,
  OpenApiDocument: z.looseObject({ openapi: z.string() }).describe('This document.'),
  ConnectionList: outbound.connectionListResponse,
  ConnectionAnswer: outbound.connectionResponse,
  ConnectionWithSecret: outbound.connectionWithSecretResponse,
  DestinationList: outbound.destinationListResponse,
  DestinationAnswer: outbound.destinationResponse,
  DeliveryList: outbound.deliveryListResponse,
  DeliveryDetail: outbound.deliveryDetailResponse,
  DeliveryAnswer: outbound.deliveryResponse,
  ReplayFailedAnswer: outbound.replayFailedResponse,
  TestSendAnswer: outbound.testSendResponse,
} as const;

const NEEDS_ADMIN = 'The token lacks the `admin` scope.';
const NAME_TAKEN = 'Another connection (or, for a destination, another destination of its connection) has this name (`field` is `name`).';

const ID = { name: 'id', schema: schemas.idParam };

/** Every route of the JSON API. */
export const API_OPERATIONS: readonly ApiOperation[] = [
  {
    method: 'get', path: '/api/v1/openapi.json', operationId: 'getOpenApiDocument', summary: 'This OpenAPI document', scope: null, answer: 'OpenApiDocument', errors: {},
  },
  {
    method: 'get', path: '/api/v1/users', operationId: 'listUsers', summary: 'List and search users', scope: 'read', query: schemas.userQuery, answer: 'UserList', errors: {},
    description: 'Newest first. A query parameter not listed here is a 400.',
  },
  {
    method: 'get', path: '/api/v1/users/:id', operationId: 'getUser', summary: 'One user', scope: 'read', answer: 'UserAnswer', errors: { 404: 'No user has this id.' },
  },
  {
    method: 'patch', path: '/api/v1/users/:id', operationId: 'updateUser', summary: 'Change a user', scope: 'members:write', body: schemas.userPatch, answer: 'UserAnswer',
    description: 'Changing an administrator, or giving a role with admin rights, needs the `admin` scope. A new password ends the member\'s sessions and reset links.',
    errors: {
      403: 'The token lacks the scope this needs (`members:write`; `admin` for an administrator or a role with admin rights).',
      404: 'No user has this id.',
      409: 'Another member has that email or username, or this would take away the last administrator\'s admin rights.',
    },
  },
  {
    method: 'delete', path: '/api/v1/users/:id', operationId: 'deleteUser', summary: 'Delete a user', scope: 'members:write', answer: 'Ok',
    description: 'Deleting an administrator needs the `admin` scope.',
    errors: {
      403: 'The token lacks the scope this needs (`members:write`; `admin` for an administrator).',
      404: 'No user has this id.',
      409: 'This is the last administrator.',
    },
  },
  {
    method: 'get', path: '/api/v1/events', operationId: 'listEvents', summary: 'List events (what arrived and the job it became)', scope: 'read', query: schemas.eventQuery, answer: 'EventList', errors: {},
    description: 'Newest first. A query parameter not listed here is a 400.',
  },
  {
    method: 'get', path: '/api/v1/events/:id', operationId: 'getEvent', summary: 'One event, with every run of its job', scope: 'read', answer: 'EventDetail', errors: { 404: 'No event has this id.' },
  },
  {
    method: 'post', path: '/api/v1/events/:id/replay', operationId: 'replayEvent', summary: "Run a finished event's job again", scope: 'members:write', answer: 'ReplayAnswer',
    errors: {
      403: 'The token lacks the `members:write` scope.',
      404: 'No event has this id.',
      409: 'The event is queued or running already.',
    },
  },
  {
    method: 'get', path: '/api/v1/outbound/connections', operationId: 'listOutboundConnections', summary: 'Outbound webhook connections', scope: 'admin', query: noQuery, answer: 'ConnectionList', errors: { 403: NEEDS_ADMIN },
    description: 'Their authentication without secrets: `auth.secrets_set` names the secrets stored.',
  },
  {
    method: 'post', path: '/api/v1/outbound/connections', operationId: 'createOutboundConnection', summary: 'Add a connection', scope: 'admin', body: connectionCreate, answer: 'ConnectionWithSecret',
    description: 'The answer holds the new signing secret (`whsec_...`), the only time it is shown: receivers verify deliveries with it.',
    errors: { 403: NEEDS_ADMIN, 409: NAME_TAKEN },
  },
  {
    method: 'get', path: '/api/v1/outbound/connections/:id', operationId: 'getOutboundConnection', summary: 'One connection', scope: 'admin', answer: 'ConnectionAnswer', errors: { 403: NEEDS_ADMIN, 404: 'No connection has this id.' },
  },
  {
    method: 'patch', path: '/api/v1/outbound/connections/:id', operationId: 'updateOutboundConnection', summary: 'Change a connection', scope: 'admin', body: connectionPatch, answer: 'ConnectionAnswer',
    description: 'Fields left out stay as they are; in `auth`, a secret left out keeps the stored one when the type stays the same.',
    errors: { 403: NEEDS_ADMIN, 404: 'No connection has this id.', 409: NAME_TAKEN },
  },
  {
    method: 'delete', path: '/api/v1/outbound/connections/:id', operationId: 'deleteOutboundConnection', summary: 'Delete a connection, its destinations and their deliveries', scope: 'admin', answer: 'Ok',
    errors: { 403: NEEDS_ADMIN, 404: 'No connection has this id.' },
  },
  {
    method: 'post', path: '/api/v1/outbound/connections/:id/rotate-secret', operationId: 'rotateOutboundSigningSecret', summary: 'A new signing secret', scope: 'admin', body: rotateSecretInput, answer: 'ConnectionWithSecret',
    description: 'Shown once in the answer. The previous secret still signs for `overlap_hours` (deliveries carry both signatures), so receivers can switch without refusing one.',
    errors: { 403: NEEDS_ADMIN, 404: 'No connection has this id.' },
  },
  {
    method: 'get', path: '/api/v1/outbound/destinations', operationId: 'listOutboundDestinations', summary: 'Outbound webhook destinations', scope: 'admin', query: destinationListQuery, answer: 'DestinationList',
    errors: { 403: NEEDS_ADMIN, 404: 'No connection has this id.' },
  },
  {
    method: 'post', path: '/api/v1/outbound/destinations', operationId: 'createOutboundDestination', summary: 'Add a destination to a connection', scope: 'admin', body: destinationCreate, answer: 'DestinationAnswer',
    description: 'Events: `member.created`, `member.updated`, `member.tags_changed`, `member.role_changed`, `member.deleted`, `member.logged_in`, `member.password_changed`, `member.*`, `keap.<Keap event key>` (`keap.contact.edit`), `keap.contact.*`, `keap.*`, `*`. The template is checked on save.',
    errors: { 403: NEEDS_ADMIN, 409: NAME_TAKEN },
  },
  {
    method: 'get', path: '/api/v1/outbound/destinations/:id', operationId: 'getOutboundDestination', summary: 'One destination', scope: 'admin', answer: 'DestinationAnswer', errors: { 403: NEEDS_ADMIN, 404: 'No destination has this id.' },
  },
  {
    method: 'patch', path: '/api/v1/outbound/destinations/:id', operationId: 'updateOutboundDestination', summary: 'Change a destination (enable, disable, ...)', scope: 'admin', body: destinationPatch, answer: 'DestinationAnswer',
    description: 'Enabling a destination memberhook disabled clears its reason; its queued deliveries go out at once.',
    errors: { 403: NEEDS_ADMIN, 404: 'No destination has this id.', 409: NAME_TAKEN },
  },
  {
    method: 'delete', path: '/api/v1/outbound/destinations/:id', operationId: 'deleteOutboundDestination', summary: 'Delete a destination and its deliveries', scope: 'admin', answer: 'Ok',
    errors: { 403: NEEDS_ADMIN, 404: 'No destination has this id.' },
  },
  {
    method: 'post', path: '/api/v1/outbound/destinations/:id/test', operationId: 'sendOutboundTest', summary: 'Send a sample event now', scope: 'admin', body: sendTestInput, answer: 'TestSendAnswer',
    description: 'Signed and authenticated as a delivery is; answers with the request (secrets redacted) and the destination\'s answer, or why there was none. Records nothing.',
    errors: { 403: NEEDS_ADMIN, 404: 'No destination has this id.' },
  },
  {
    method: 'post', path: '/api/v1/outbound/destinations/:id/replay-failed', operationId: 'replayFailedOutboundDeliveries', summary: 'Queue again the failed and dead deliveries of a time range', scope: 'admin', body: replayFailedInput, answer: 'ReplayFailedAnswer',
    errors: { 403: NEEDS_ADMIN, 404: 'No destination has this id.' },
  },
  {
    method: 'get', path: '/api/v1/outbound/deliveries', operationId: 'listOutboundDeliveries', summary: 'The outbound delivery log', scope: 'admin', query: deliveryQuery, answer: 'DeliveryList', errors: { 403: NEEDS_ADMIN },
    description: 'Newest first. A query parameter not listed here is a 400.',
  },
  {
    method: 'get', path: '/api/v1/outbound/deliveries/:id', operationId: 'getOutboundDelivery', summary: 'One delivery: its body and every attempt', scope: 'admin', answer: 'DeliveryDetail',
    errors: { 403: NEEDS_ADMIN, 404: 'No delivery has this id.' },
  },
  {
    method: 'post', path: '/api/v1/outbound/deliveries/:id/replay', operationId: 'replayOutboundDelivery', summary: 'Send a finished delivery again', scope: 'admin', answer: 'DeliveryAnswer',
    description: 'Same event id and body; attempts start again from the first.',
    errors: { 403: NEEDS_ADMIN, 404: 'No delivery has this id.', 409: 'The delivery is queued or being sent already.' },
  },
];

/** `/api/v1/users/:id` → `/api/v1/users/{id}`. */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:(\w+)/g, '{$1}');
}

type JsonObject = Record<string, unknown>;

/** A zod schema as a JSON Schema to embed in the document (no `$schema`: the document's dialect applies). */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, target: 'draft-2020-12' }) as JsonObject;
  return rest;
}

/** The named answer shapes, generated together so User, Event, ... are referenced rather than repeated. */
function components(): Record<string, JsonObject> {
  const registry = z.registry<{ id: string }>();
  const named: Record<string, z.ZodType> = {
    User: schemas.userSchema,
    Tag: schemas.tagSchema,
    Event: schemas.eventSchema,
    EventAttempt: schemas.eventAttemptSchema,
    OutboundConnection: outbound.connectionSchema,
    OutboundDestination: outbound.destinationSchema,
    OutboundDelivery: outbound.deliverySchema,
    OutboundDeliveryAttempt: outbound.deliveryAttemptSchema,
    Error: schemas.errorResponse,
    ...ANSWERS,
  };
  for (const [id, schema] of Object.entries(named)) registry.add(schema, { id });
  const generated = z.toJSONSchema(registry, { io: 'output', target: 'draft-2020-12', uri: (id) => `#/components/schemas/${id}` }) as { schemas: Record<string, JsonObject> };
  // A fragment-only $id is not allowed in JSON Schema 2020-12; the references point into the document instead.
  return Object.fromEntries(Object.entries(generated.schemas).map(([id, { $schema: _d, $id: _i, ...rest }]) => [id, rest]));
}

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const errorAnswer = (description: string, extra: JsonObject = {}) => ({ description, content: { 'application/json': { schema: ref('Error') } }, ...extra });
const challenge = { 'WWW-Authenticate': { description: 'Bearer realm="memberhook API" (with error="invalid_token" for a revoked token, error="insufficient_scope" and scope="..." for a 403)', schema: { type: 'string' } } };

function operationObject(op: ApiOperation): JsonObject {
  const parameters: JsonObject[] = [];
  for (const name of op.path.match(/:(\w+)/g)?.map((p) => p.slice(1)) ?? []) {
    parameters.push({ name, in: 'path', required: true, schema: jsonSchema(ID.schema, 'input'), description: ID.schema.description });
  }
  for (const [name, field] of Object.entries(op.query?.shape ?? {})) {
    const schema = jsonSchema(field as z.ZodType, 'input');
    const { description, ...withoutDescription } = schema;
    parameters.push({ name, in: 'query', required: false, schema: withoutDescription, ...(description ? { description } : {}) });
  }
  const responses: JsonObject = {
    200: { description: 'Done.', content: { 'application/json': { schema: ref(op.answer) } } },
  };
  if (op.scope !== null) {
    responses[400] = errorAnswer('Bad input: a parameter or body field that is malformed, out of range or unknown (`field` names it), or a body that is not JSON.');
    responses[401] = errorAnswer('No bearer token, or one that is unknown or revoked.', { headers: challenge });
    for (const [status, description] of Object.entries(op.errors)) {
      responses[status] = errorAnswer(description, Number(status) === 403 ? { headers: challenge } : {});
    }
    responses[413] = errorAnswer('The request body is larger than 100 kB.');
    responses[415] = errorAnswer("The request body's encoding or charset is not supported.");
  }
  responses['5XX'] = errorAnswer('Something went wrong on the server; the details are in its log.');
  return {
    operationId: op.operationId,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: [op.path.split('/')[3]!.replace('.json', '')],
    security: op.scope === null ? [] : [{ bearerAuth: [op.scope] }],
    ...(op.scope === null ? {} : { 'x-required-scope': op.scope }),
    ...(parameters.length ? { parameters } : {}),
    ...(op.body ? { requestBody: { required: false, content: { 'application/json': { schema: jsonSchema(op.body, 'input') } } } } : {}),
    responses,
  };
}

/** The document, for a site whose API lives at `serverUrl` (PUBLIC_URL). */
export function buildOpenApiDocument(options: { version: string; serverUrl: string }): JsonObject {
  const paths: Record<string, JsonObject> = {};
  for (const op of API_OPERATIONS) (paths[openApiPath(op.path)] ??= {})[op.method] = operationObject(op);
  const scopes = API_SCOPES.map((s) => `- \`${s}\`: ${API_SCOPE_DESCRIPTIONS[s]}`).join('\n');
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'memberhook JSON API',
      version: options.version,
      description: `Members and the event log of a memberhook site, for scripts. Send \`Authorization: Bearer <token>\` with a token made in the admin (Settings, API tokens) or the API_TOKEN variable. Each token has a scope; each includes the ones before it:\n\n${scopes}\n\nThe API_TOKEN variable's token has \`admin\`. A token without the scope an operation needs gets a 403 naming it.`,
    },
    servers: [{ url: options.serverUrl }],
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas: components(),
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: `An API token. Scopes (listed in each operation's security requirement and x-required-scope): ${API_SCOPES.join(', ')}.` },
      },
    },
  };
}
