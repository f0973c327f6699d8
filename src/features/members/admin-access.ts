import type { Request, RequestHandler, Response } from 'express';
import type { MembersContext } from './context.js';
import { sessionToken, startSession } from './sessions.js';
import type { Member } from './types.js';

/** An admin session ends after this long without an admin page (a member session lasts 14 days). */
export const ADMIN_IDLE_MS = 12 * 60 * 60 * 1000;
/** The idle window is pushed forward at most this often, so browsing admin pages is not a write per request. */
const SLIDE_STEP_MS = 60_000;

/*
 * Admin sessions are member sessions (same table, cookie and CSRF), with a shorter, sliding expiry: logging in at
 * /admin/login (or finishing setup) stores `expires_at = now + 12 h`, and each admin page moves it forward. A
 * session whose expiry lies further out than that was started at /login: it opens the member pages, and the admin
 * pages ask for the admin login. (The last 12 hours of a 14-day member session look the same as an admin session;
 * the member is an administrator who proved their password at /login, so this is accepted.)
 */

/**
 * Logs an administrator in on this response: ends the session the browser came with (a planted session is never
 * upgraded), starts a new one that expires after ADMIN_IDLE_MS without use, and sets the cookie for the browser
 * session only.
 */
export function startAdminSession(ctx: MembersContext, req: Request, res: Response, member: Member): Promise<void> {
  return startSession(ctx, req, res, member, { maxAgeMs: 0, expiresAt: ctx.clock.now() + ADMIN_IDLE_MS });
}

/** Whether the request's session was started as an admin session and is still live (and slides it forward). */
function holdsAdminSession(ctx: MembersContext, req: Request): boolean {
  const token = sessionToken(ctx, req);
  if (!token) return false;
  const expiresAt = ctx.sessions.expiryOf(token);
  const now = ctx.clock.now();
  if (expiresAt === undefined || expiresAt <= now || expiresAt - now > ADMIN_IDLE_MS) return false;
  if (now + ADMIN_IDLE_MS - expiresAt >= SLIDE_STEP_MS) ctx.sessions.setExpiry(token, now + ADMIN_IDLE_MS);
  return true;
}

/** `/admin/login?next=<path>`, keeping the slashes readable. */
export function adminLoginUrl(next?: string): string {
  return next ? `/admin/login?next=${encodeURIComponent(next).replace(/%2F/gi, '/')}` : '/admin/login';
}

/**
 * Lets only administrators with an admin session through, with `res.locals.admin` set. Mount after `loadMember`.
 * No admin session: 303 to the admin login (coming back to the page afterwards, for GET). A member without admin
 * rights: a 403 page.
 */
export function requireAdmin(ctx: MembersContext): RequestHandler {
  return (req, res, next) => {
    const member = res.locals.member;
    if (member && !member.roleIsAdmin) {
      ctx.admin.view(res, 403, 'forbidden', { title: 'No admin rights', bare: true });
      return;
    }
    if (!member || !holdsAdminSession(ctx, req)) {
      const resumable = req.method === 'GET' || req.method === 'HEAD';
      res.redirect(303, adminLoginUrl(resumable ? req.originalUrl : undefined));
      return;
    }
    res.locals.admin = member;
    next();
  };
}

/** Whether the browser already holds a live admin session of an administrator. */
export function isAdminRequest(ctx: MembersContext, req: Request, res: Response): boolean {
  return res.locals.member?.roleIsAdmin === true && holdsAdminSession(ctx, req);
}
