import { parseCookie } from 'cookie';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Config } from '../config.js';
import { AppError } from './errors.js';
import type { SettingsStore } from './settings.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** The token every form on the page must send back as `_csrf`; set by `csrfProtection`. */
      csrfToken?: string;
    }
  }
}

export const CSRF_COOKIE = 'mh_csrf';
/** The hidden form field the token travels in. */
export const CSRF_FIELD = '_csrf';
/** Or this header, for scripts on our own pages. */
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FAILED_MESSAGE = 'This form has expired. Reload the page and try again.';
const SECRET_SETTING = 'csrf.secret';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const SEED_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * Signed double-submit CSRF protection for pages with forms. The browser gets a random `mh_csrf` cookie; each
 * form carries HMAC-SHA256(secret, cookie). A cross-site page can make the browser send the cookie but can
 * neither read it nor compute the HMAC, and a cookie planted by a sibling subdomain is useless without the
 * secret.
 *
 * Sets `res.locals.csrfToken` on every request and refuses POST/PUT/PATCH/DELETE whose token does not match with
 * a 403 before anything runs. Mount it after a body parser, and only on page routes: the webhook (`POST /`,
 * `/webhooks/*`) and `/api/*` are called by programs that have no cookie and authenticate otherwise.
 */
export function csrfProtection(ctx: { settings: SettingsStore; config: Config }): RequestHandler {
  const secret = Buffer.from(ctx.settings.setIfAbsent(SECRET_SETTING, randomBytes(32).toString('base64url')).value, 'base64url');
  const secure = ctx.config.publicUrl.startsWith('https:');
  return (req, res, next) => {
    const header = req.headers.cookie;
    let seed = header ? parseCookie(header)[CSRF_COOKIE] : undefined;
    const hadSeed = seed !== undefined && SEED_PATTERN.test(seed);
    if (!hadSeed) {
      seed = randomBytes(32).toString('base64url');
      // A session cookie: a form is good for as long as the browser is open.
      res.cookie(CSRF_COOKIE, seed, { httpOnly: true, sameSite: 'lax', path: '/', secure });
    }
    const expected = sign(secret, seed!);
    res.locals.csrfToken = expected;
    if (SAFE_METHODS.has(req.method)) return next();
    const body = req.body as Record<string, unknown> | undefined;
    const sent = body?.[CSRF_FIELD] ?? req.get(CSRF_HEADER);
    if (!hadSeed || !tokensMatch(expected, sent)) {
      return next(new AppError(403, CSRF_FAILED_MESSAGE, { code: 'csrf_failed' }));
    }
    next();
  };
}

function sign(secret: Buffer, seed: string): string {
  return createHmac('sha256', secret).update(seed).digest('base64url');
}

function tokensMatch(expected: string, sent: unknown): boolean {
  if (typeof sent !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(sent);
  return a.length === b.length && timingSafeEqual(a, b);
}
