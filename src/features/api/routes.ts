import express, { Router, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';
import { AppError, badRequest, conflict, notFound, unauthorized } from '../../core/errors.js';
import { EVENT_STATUSES, type EventRecord } from '../../core/jobs/store.js';
import type { Kernel } from '../../core/kernel.js';
import { accessKeyMatches } from '../http-post/access-key.js';
import type { MemberService } from '../members/service.js';
import { publicMember } from '../members/public-shape.js';
import type { Member } from '../members/types.js';
import type { OutboundWebhooks } from '../outbound-webhooks/service.js';
import { isUniqueViolation } from '../../core/db.js';
import { buildOpenApiDocument } from './openapi.js';
import { eventQuery, idParam, userPatch, userQuery, type EventJson, type UserJson } from './schemas.js';
import { outboundApiRoutes } from './outbound-routes.js';
import { parse, requireScope } from './request-checks.js';
import type { ApiScope } from './scopes.js';
export { insufficientScopeMessage } from './request-checks.js';
import type { ApiTokenStore } from './tokens.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** What the request's bearer token may do, set by the API's token check. */
      apiScope?: ApiScope;
    }
  }
}

/** What the JSON API works with. */
export interface ApiContext extends Kernel {
  readonly members: MemberService;
  readonly outboundWebhooks: OutboundWebhooks;
  tokens: ApiTokenStore;
}

/** `/api/v1`: JSON for scripts, behind `Authorization: Bearer <token>` (API_TOKEN or a token made in the admin). */
export function apiRoutes(ctx: ApiContext): Router {
  const router = Router();
  // The description is public, like the README that documents the same routes: a client needs it before it has a token.
  // Built on the first request, not at start: generating it allocates a great deal, and the job thread (which sets up
  // these routes too but serves no requests) and most sites never need it.
  let openApiDocument: ReturnType<typeof buildOpenApiDocument> | undefined;
  router.get('/api/v1/openapi.json', (_req, res) => {
    openApiDocument ??= buildOpenApiDocument({ version: ctx.config.version, serverUrl: ctx.config.publicUrl });
    res.json(openApiDocument);
  });
  router.use('/api', requireApiToken(ctx), express.json({ limit: '100kb' }));

  router.get('/api/v1/users', (req, res) => {
    const q = parse(userQuery, req.query, 'query');
    const { members, total } = ctx.members.list({ ...q, pageSize: q.per_page });
    res.json({ users: members.map(userJson), page: q.page, per_page: q.per_page, total });
  });

  router.get('/api/v1/users/:id', (req, res) => {
    res.json({ user: userJson(ctx.members.get(parse(idParam, req.params.id, 'id'))) });
  });

  router.patch('/api/v1/users/:id', async (req, res) => {
    requireScope(res, 'members:write', 'changing a user');
    const id = parse(idParam, req.params.id, 'id');
    const body = parse(userPatch, req.body ?? {}, 'body');
    const target = ctx.members.get(id);
    const newRole = body.role === undefined ? undefined : ctx.members.role(body.role);
    if (body.role !== undefined && !newRole) throw badRequest(`role "${body.role}" does not exist`, 'role');
    if (target.roleIsAdmin) requireScope(res, 'admin', 'changing an administrator');
    if (newRole?.isAdmin) requireScope(res, 'admin', 'giving a role with admin rights');
    try {
      await ctx.members.update(id, {
        profile: {
          ...(body.email !== undefined ? { email: body.email } : {}),
          ...(body.first_name !== undefined ? { firstName: body.first_name } : {}),
          ...(body.last_name !== undefined ? { lastName: body.last_name } : {}),
        },
        ...(body.username !== undefined ? { username: body.username } : {}),
        ...(body.role !== undefined ? { role: body.role } : {}),
      }, { keepAnAdministrator: true });
    } catch (err) {
      if (isUniqueViolation(err, 'members.email')) throw conflict('another member has that email');
      if (isUniqueViolation(err, 'members.username')) throw conflict('another member has that username');
      throw err;
    }
    if (body.password !== undefined) await ctx.members.changePassword(id, body.password, 'api');
    res.json({ user: userJson(ctx.members.get(id)) });
  });

  router.delete('/api/v1/users/:id', async (req, res) => {
    requireScope(res, 'members:write', 'deleting a user');
    const target = ctx.members.get(parse(idParam, req.params.id, 'id'));
    if (target.roleIsAdmin) requireScope(res, 'admin', 'deleting an administrator');
    // As on the admin pages: the site never loses its last administrator (409).
    await ctx.members.delete(target.id, { keepAnAdministrator: true });
    res.json({ ok: true });
  });

  router.get('/api/v1/events', (req, res) => {
    const q = parse(eventQuery, req.query, 'query');
    const { events, total } = ctx.events.list({
      page: q.page,
      pageSize: q.per_page,
      ...(q.contact_id !== undefined ? { contactId: q.contact_id } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.action !== undefined ? { action: q.action } : {}),
      ...(q.source !== undefined ? { source: q.source } : {}),
    });
    res.json({ events: events.map(eventJson), page: q.page, per_page: q.per_page, total });
  });

  router.get('/api/v1/events/:id', (req, res) => {
    const event = findEvent(ctx, parse(idParam, req.params.id, 'id'));
    res.json({ event: { ...eventJson(event), attempts_log: ctx.events.attempts(event.id) } });
  });

  router.post('/api/v1/events/:id/replay', (req, res) => {
    requireScope(res, 'members:write', 'replaying an event');
    const event = findEvent(ctx, parse(idParam, req.params.id, 'id'));
    if (event.status === 'rejected') throw badRequest(`event ${event.id} was rejected when it arrived; there is no job to replay`);
    if (event.status === 'queued' || event.status === 'processing') throw conflict(`event ${event.id} is ${event.status} already`);
    ctx.events.replay(event.id);
    ctx.jobs.wake();
    res.json({ ok: true, event: eventJson(ctx.events.get(event.id)!) });
  });

  outboundApiRoutes(router, ctx);
  return router;
}

/** What a caller without a usable token is told when the API has no token at all yet. */
export const NO_API_TOKENS_MESSAGE =
  'the JSON API has no tokens yet: an administrator can create one at /admin/settings/api-tokens (Settings, API tokens), or set API_TOKEN';
export const INVALID_TOKEN_MESSAGE = 'missing or invalid bearer token';
export const REVOKED_TOKEN_MESSAGE = 'this API token was revoked';

/**
 * `Authorization: Bearer <token>` with API_TOKEN from the environment (compared in constant time) or a live token
 * created in the admin (looked up by its hash; see ApiTokenStore).
 */
function requireApiToken(ctx: ApiContext): RequestHandler {
  const tokens = ctx.tokens;
  return (req, res, next) => {
    const envToken = ctx.config.apiToken;
    const given = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    if (given !== undefined) {
      // API_TOKEN is the operator's own token: every right.
      if (envToken && accessKeyMatches(envToken, given)) {
        res.locals.apiScope = 'admin';
        return next();
      }
      const check = tokens.check(given);
      if (check.ok) {
        res.locals.apiScope = check.token.scope;
        return next();
      }
      if (check.reason === 'revoked') {
        res.set('WWW-Authenticate', 'Bearer realm="memberhook API", error="invalid_token"');
        return next(unauthorized(REVOKED_TOKEN_MESSAGE));
      }
    }
    res.set('WWW-Authenticate', 'Bearer realm="memberhook API"');
    // Only refusals pay for this query: accepted requests never reach it.
    if (!envToken && !tokens.anyLive()) return next(unauthorized(NO_API_TOKENS_MESSAGE));
    next(unauthorized(INVALID_TOKEN_MESSAGE));
  };
}

function findEvent(ctx: ApiContext, id: number): EventRecord {
  const event = ctx.events.get(id);
  if (!event) throw notFound(`no event with id ${id}`);
  return event;
}

/** The API's user is the public member shape (schemas.ts's userSchema describes the same fields for OpenAPI). */
export function userJson(m: Member): UserJson {
  return publicMember(m);
}

export function eventJson(e: EventRecord): EventJson {
  return {
    id: e.id,
    source: e.source,
    action: e.action,
    contact_id: e.contactId,
    object_type: e.objectType,
    object_id: e.objectId,
    event_type: e.eventType,
    status: e.status,
    attempts: e.attempts,
    error: e.error,
    result: e.result,
    params: e.params,
    coalesced: e.coalesced,
    created_at: e.createdAt,
    updated_at: e.updatedAt,
  };
}
