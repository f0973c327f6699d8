import { z } from 'zod';
import { EVENT_STATUSES } from '../../core/jobs/store.js';

/**
 * The JSON API's requests and answers as zod schemas: the routes validate with the request schemas and build their
 * answers to the response schemas' types, and the OpenAPI document (openapi.ts) is generated from the same schemas,
 * so the description cannot drift from what the routes do.
 */

export const PAGE_SIZE_DEFAULT = 50;
export const PAGE_SIZE_MAX = 200;

const pageParams = {
  page: z.coerce.number().int().min(1).max(1_000_000).default(1).describe('Page number, from 1.'),
  per_page: z.coerce.number().int().min(1).max(PAGE_SIZE_MAX).default(PAGE_SIZE_DEFAULT).describe('Items per page.'),
};

export const idParam = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER).describe('The id.');

export const userQuery = z.strictObject({
  email: z.string().max(254).optional().describe('Exactly this email, in any case.'),
  role: z.string().max(64).optional().describe('Members with this role (its slug).'),
  tag: z.coerce.number().int().nonnegative().optional().describe('Members holding this Keap tag (its id).'),
  q: z.string().max(100).optional().describe('What a person would type in a search box: the start of an email, username, first or last name; a full name ("Grace Hopper", "Hopper, Grace"); an email domain ("@example.com"); a member or Keap contact id.'),
  ...pageParams,
});

export const userPatch = z
  .strictObject({
    email: z.email().max(254).optional(),
    username: z.string().trim().min(1).max(254).optional(),
    role: z.string().max(64).optional().describe('A role slug. A role with admin rights needs the admin scope.'),
    first_name: z.string().max(200).optional(),
    last_name: z.string().max(200).optional(),
    password: z.string().min(10).max(200).optional().describe("A new password: ends the member's sessions and reset links."),
  })
  .describe('The fields to change; those left out stay as they are.');

export const eventQuery = z.strictObject({
  contact_id: z.coerce.number().int().positive().optional().describe('Events of this Keap contact.'),
  status: z.enum(EVENT_STATUSES).optional(),
  action: z.string().max(64).optional().describe('e.g. add, update, update_tags.'),
  source: z.string().max(64).optional().describe('e.g. http_post, admin, member.'),
  ...pageParams,
});

const time = z.string().describe('ISO 8601 time (UTC).');

export const tagSchema = z.object({ id: z.number().int(), name: z.string(), category: z.string() });

export const userSchema = z
  .object({
    id: z.number().int(),
    email: z.string(),
    username: z.string(),
    role: z.string().describe('Role slug.'),
    first_name: z.string(),
    last_name: z.string(),
    keap_contact_id: z.number().int().nullable(),
    tags: z.array(tagSchema),
    fields: z.record(z.string(), z.unknown()).describe('Custom fields from Keap, by label.'),
    created_at: time,
    updated_at: time,
  });

export const eventSchema = z
  .object({
    id: z.number().int(),
    source: z.string(),
    action: z.string(),
    contact_id: z.number().int().nullable(),
    object_type: z.string().nullable(),
    object_id: z.string().nullable(),
    event_type: z.string().nullable(),
    status: z.enum(EVENT_STATUSES),
    attempts: z.number().int(),
    error: z.string().nullable(),
    result: z.string().nullable(),
    params: z.record(z.string(), z.unknown()),
    coalesced: z.number().int().describe('How many later identical posts were folded into this one.'),
    created_at: time,
    updated_at: time,
  });

export const eventAttemptSchema = z
  .object({
    attempt: z.number().int(),
    startedAt: time,
    finishedAt: time.nullable(),
    outcome: z.string().nullable(),
    error: z.string().nullable(),
  });

const paging = { page: z.number().int(), per_page: z.number().int(), total: z.number().int() };

export const userListResponse = z.object({ users: z.array(userSchema), ...paging });
export const userResponse = z.object({ user: userSchema });
export const okResponse = z.object({ ok: z.literal(true) });
export const eventListResponse = z.object({ events: z.array(eventSchema), ...paging });
export const eventDetailResponse = z.object({ event: eventSchema.extend({ attempts_log: z.array(eventAttemptSchema) }) });
export const replayResponse = z.object({ ok: z.literal(true), event: eventSchema });

/** Every error answer (see core/error-handler.ts). */
export const errorResponse = z
  .object({
    ok: z.literal(false),
    error: z.string().describe('What was wrong, for a person to read.'),
    field: z.string().optional().describe('The parameter or body field it was about, when there was one.'),
  });

export type UserJson = z.output<typeof userSchema>;
export type EventJson = z.output<typeof eventSchema>;
