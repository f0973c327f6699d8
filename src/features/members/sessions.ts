import { parseCookie } from 'cookie';
import { createHash, randomBytes } from 'node:crypto';
import type { CookieOptions, Request, RequestHandler, Response } from 'express';
import type { AppContext } from '../../context.js';
import type { Clock } from '../../core/clock.js';
import type { Db } from '../../core/db.js';
import type { Member } from './store.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** The logged-in member, set by `loadMember` / `requireMember`. */
      member?: Member;
    }
  }
}

export const SESSION_COOKIE = 'mh_session';
export const SESSION_TTL_MS = 14 * 24 * 60 * 60 * 1000;

/** 32 random bytes as base64url: exactly 43 characters. Anything else in the cookie is not ours. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * Member login sessions. The cookie holds 32 random bytes; the database only their SHA-256, so a copy of the
 * database (a backup, a leaked file) opens no session. Expired rows are ignored and swept as new ones are made.
 */
export class MemberSessions {
  private readonly insertStmt;
  private readonly lookupStmt;
  private readonly deleteStmt;
  private readonly deleteForMemberStmt;
  private readonly purgeStmt;

  constructor(
    db: Db,
    private readonly clock: Clock,
  ) {
    this.insertStmt = db.prepare('INSERT INTO sessions (id_hash, member_id, expires_at) VALUES (?, ?, ?)');
    this.lookupStmt = db.prepare<[string], { member_id: number; expires_at: number }>('SELECT member_id, expires_at FROM sessions WHERE id_hash = ?');
    this.deleteStmt = db.prepare('DELETE FROM sessions WHERE id_hash = ?');
    this.deleteForMemberStmt = db.prepare('DELETE FROM sessions WHERE member_id = ?');
    this.purgeStmt = db.prepare('DELETE FROM sessions WHERE expires_at <= ?');
  }

  /** Starts a session; returns the cookie value (shown to the browser once, never stored) and its expiry. */
  create(memberId: number): { token: string; expiresAt: number } {
    this.purgeExpired();
    const token = randomBytes(32).toString('base64url');
    const expiresAt = this.clock.now() + SESSION_TTL_MS;
    this.insertStmt.run(hashToken(token), memberId, expiresAt);
    return { token, expiresAt };
  }

  /** The member a cookie value belongs to, if it is a live session. */
  memberIdFor(token: string | undefined): number | undefined {
    if (!token || !TOKEN_PATTERN.test(token)) return undefined;
    const idHash = hashToken(token);
    const row = this.lookupStmt.get(idHash);
    if (!row) return undefined;
    if (row.expires_at <= this.clock.now()) {
      this.deleteStmt.run(idHash);
      return undefined;
    }
    return row.member_id;
  }

  destroy(token: string | undefined): void {
    if (token && TOKEN_PATTERN.test(token)) this.deleteStmt.run(hashToken(token));
  }

  /** Ends every session of a member (password changed, member banned); returns how many there were. */
  destroyAllFor(memberId: number): number {
    return this.deleteForMemberStmt.run(memberId).changes;
  }

  purgeExpired(): number {
    return this.purgeStmt.run(this.clock.now()).changes;
  }
}

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

const sessionsByContext = new WeakMap<AppContext, MemberSessions>();

/** The session store of an app (one per context, so every router that asks shares its prepared statements). */
export function memberSessions(ctx: AppContext): MemberSessions {
  let sessions = sessionsByContext.get(ctx);
  if (!sessions) {
    sessions = new MemberSessions(ctx.db, ctx.clock);
    sessionsByContext.set(ctx, sessions);
  }
  return sessions;
}

export function sessionCookieOptions(ctx: AppContext): CookieOptions {
  return { httpOnly: true, sameSite: 'lax', path: '/', secure: ctx.config.publicUrl.startsWith('https:') };
}

function sessionToken(req: Request): string | undefined {
  const header = req.headers.cookie;
  return header ? parseCookie(header)[SESSION_COOKIE] : undefined;
}

/**
 * Logs a member in on this response: ends the session the browser came with (so a session planted before login
 * is never upgraded) and sets a new cookie.
 */
export function startSession(ctx: AppContext, req: Request, res: Response, memberId: number): void {
  const sessions = memberSessions(ctx);
  sessions.destroy(sessionToken(req));
  const { token } = sessions.create(memberId);
  res.cookie(SESSION_COOKIE, token, { ...sessionCookieOptions(ctx), maxAge: SESSION_TTL_MS });
  res.locals.member = ctx.members.findById(memberId);
}

/** Ends the browser's session (if any) and clears its cookie. */
export function endSession(ctx: AppContext, req: Request, res: Response): void {
  memberSessions(ctx).destroy(sessionToken(req));
  res.clearCookie(SESSION_COOKIE, sessionCookieOptions(ctx));
  delete res.locals.member;
}

/** Ends the session and fires `member.logged_out` (member and admin logout share this). */
export async function logOut(ctx: AppContext, req: Request, res: Response, where: 'member' | 'admin'): Promise<void> {
  const member = res.locals.member;
  endSession(ctx, req, res);
  if (!member) return;
  ctx.logger.info({ memberId: member.id }, `${where} logged out`);
  await ctx.hooks.doAction('member.logged_out', member);
}

/** The member whose session cookie came with the request, if it is a live session. */
export function currentMember(ctx: AppContext, req: Request): Member | undefined {
  const memberId = memberSessions(ctx).memberIdFor(sessionToken(req));
  return memberId === undefined ? undefined : ctx.members.findById(memberId);
}

/** Sets `res.locals.member` when the request has a live session; lets every request through. */
export function loadMember(ctx: AppContext): RequestHandler {
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
export function requireMember(ctx: AppContext): RequestHandler {
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
