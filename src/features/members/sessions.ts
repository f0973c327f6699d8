import type { Request, RequestHandler, Response } from 'express';
import type { Config } from '../../config.js';
import { pageCookie, readPageCookie, SESSION_COOKIE, type PageCookie } from '../../core/cookies.js';
import type { MembersContext } from './context.js';
import { SESSION_TTL_MS } from './session-store.js';
import type { Member } from './types.js';

declare module '../../core/hooks.js' {
  interface ActionMap {
    /**
     * A member (or administrator) logged in: at /login, /admin/login or by finishing the first-run setup.
     * @fires after the new session is stored
     * @durable
     */
    'member.logged_in': [member: Member];
    /**
     * A member logged out (member or admin pages).
     * @fires after the session is ended
     */
    'member.logged_out': [member: Member];
  }
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** The logged-in member, set by `loadMember` / `requireMember`. */
      member?: Member;
    }
  }
}

/** The session cookie's name (`mh_session`, or `__Host-mh_session` on an HTTPS site) and attributes on this request. */
export function sessionCookie(ctx: { config: Pick<Config, 'publicUrl'> }, req: Request): PageCookie {
  return pageCookie(ctx.config.publicUrl, req, SESSION_COOKIE);
}

/** The session cookie's value on a request, if any (on an HTTPS site, only the `__Host-` cookie counts). */
export function sessionToken(ctx: { config: Pick<Config, 'publicUrl'> }, req: Request): string | undefined {
  return readPageCookie(ctx.config.publicUrl, req, SESSION_COOKIE);
}

/**
 * Logs a member in on this response: ends the session the browser came with (so a session planted before login
 * is never upgraded) and sets a new cookie. `member.logged_in` is recorded with the new session, unless this is a
 * new session for someone already logged in (after a password change).
 */
export async function startSession(ctx: MembersContext, req: Request, res: Response, member: Member, options: { loggedIn?: boolean; maxAgeMs?: number; expiresAt?: number } = {}): Promise<void> {
  const token = await ctx.transactions.run((tx) => {
    ctx.sessions.destroy(sessionToken(ctx, req));
    const { token } = ctx.sessions.create(member.id, options.expiresAt);
    if (options.loggedIn !== false) tx.emit('member.logged_in', member);
    return token;
  });
  const maxAge = options.maxAgeMs === undefined ? SESSION_TTL_MS : options.maxAgeMs;
  const cookie = sessionCookie(ctx, req);
  res.cookie(cookie.name, token, { ...cookie.options, ...(maxAge > 0 ? { maxAge } : {}) });
  res.locals.member = ctx.members.findById(member.id);
}

/** Ends the browser's session (if any) and clears its cookie. */
export function endSession(ctx: MembersContext, req: Request, res: Response): void {
  ctx.sessions.destroy(sessionToken(ctx, req));
  const cookie = sessionCookie(ctx, req);
  res.clearCookie(cookie.name, cookie.options);
  delete res.locals.member;
}

/** Ends the session and fires `member.logged_out` (member and admin logout share this). */
export async function logOut(ctx: MembersContext, req: Request, res: Response, where: 'member' | 'admin'): Promise<void> {
  const member = res.locals.member;
  endSession(ctx, req, res);
  if (!member) return;
  ctx.logger.info({ memberId: member.id }, `${where} logged out`);
  await ctx.hooks.doAction('member.logged_out', member);
}

/** The member whose session cookie came with the request, if it is a live session. */
export function currentMember(ctx: MembersContext, req: Request): Member | undefined {
  const memberId = ctx.sessions.memberIdFor(sessionToken(ctx, req));
  const member = memberId === undefined ? undefined : ctx.members.findById(memberId);
  // Blocking ends the sessions; this is the net under it (a session started in the same moment).
  return member?.blocked ? undefined : member;
}

/** Sets `res.locals.member` when the request has a live session; lets every request through. */
export function loadMember(ctx: MembersContext): RequestHandler {
  return (req, res, next) => {
    if (!res.locals.member) {
      const member = currentMember(ctx, req);
      if (member) res.locals.member = member;
    }
    next();
  };
}

/**
 * Lets only logged-in members through (with `res.locals.member` set). Others are sent to the login page with a
 * 303, and come back to the page they asked for after logging in (GET pages only: a form post cannot be resumed).
 */
export function requireMember(ctx: MembersContext): RequestHandler {
  const load = loadMember(ctx);
  return (req, res, next) => {
    load(req, res, () => {
      if (res.locals.member) return next();
      res.set('Cache-Control', 'no-store');
      res.redirect(303, req.method === 'GET' || req.method === 'HEAD' ? loginUrl(req.originalUrl) : '/login');
    });
  };
}

/** `/login?next=<path>`, keeping the slashes readable. */
export function loginUrl(next: string): string {
  return `/login?next=${encodeURIComponent(next).replace(/%2F/gi, '/')}`;
}
