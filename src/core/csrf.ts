import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Config } from '../config.js';
import { pageCookie, readPageCookie, SESSION_COOKIE } from './cookies.js';
import { AppError } from './errors.js';
import type { SecretBox } from './secret-box.js';
import type { SettingsStore } from './settings.js';
import { signingKey } from './signing-key.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** The token every form on the page must send back as `_csrf`; set by `csrfProtection`. */
      csrfToken?: string;
    }
  }
}

/** The pre-session cookie (`__Host-mh_csrf` on an HTTPS site): what a form's token is bound to before a login. */
export const CSRF_COOKIE = 'mh_csrf';
/** The hidden form field the token travels in. */
export const CSRF_FIELD = '_csrf';
/** Or this header, for scripts on our own pages. */
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FAILED_MESSAGE = 'This form has expired. Reload the page and try again.';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** 32 random bytes as base64url, as both the session and the pre-session cookie hold. */
const COOKIE_VALUE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * CSRF protection for pages with forms: every form carries a token bound to the browser's session, HMAC-SHA256 of
 * the session cookie under the server's key (`signingKey(settings, 'csrf')`). A cross-site page can make the browser
 * send the session cookie but can neither read it nor compute the HMAC; and a token someone obtained for their own
 * session or cookie is worth nothing in anyone else's session, so planting a cookie gains nothing.
 *
 * A browser without a session (the login, setup, forgot and reset forms) gets a random pre-session cookie and
 * tokens bound to that; a browser with a session cookie is held to the session binding alone, so a pre-session
 * cookie planted beside a live session forges nothing. On an HTTPS site both cookies are `__Host-` cookies
 * (core/cookies.ts), which no sibling subdomain can set.
 *
 * Sets `res.locals.csrfToken` on every request and refuses POST/PUT/PATCH/DELETE whose token does not match with
 * a 403 before anything runs. Mount it after a body parser, and only on page routes: the webhook (`POST /`,
 * `/webhooks/*`) and `/api/*` are called by programs that have no cookie and authenticate otherwise.
 */
export function csrfProtection(ctx: { settings: SettingsStore; secretBox: SecretBox; config: Config }): RequestHandler {
  const key = signingKey(ctx, 'csrf');
  const { publicUrl } = ctx.config;
  return (req, res, next) => {
    const session = readPageCookie(publicUrl, req, SESSION_COOKIE);
    let binding: string;
    let hadBinding = true;
    if (session !== undefined && COOKIE_VALUE_PATTERN.test(session)) {
      binding = `session\0${session}`;
    } else {
      let preSession = readPageCookie(publicUrl, req, CSRF_COOKIE);
      if (preSession === undefined || !COOKIE_VALUE_PATTERN.test(preSession)) {
        hadBinding = false;
        preSession = randomBytes(32).toString('base64url');
        const cookie = pageCookie(publicUrl, req, CSRF_COOKIE);
        // A browser-session cookie: a form is good for as long as the browser is open.
        res.cookie(cookie.name, preSession, cookie.options);
      }
      binding = `pre-session\0${preSession}`;
    }
    const expected = createHmac('sha256', key).update(binding).digest('base64url');
    res.locals.csrfToken = expected;
    if (SAFE_METHODS.has(req.method)) return next();
    const body = req.body as Record<string, unknown> | undefined;
    const sent = body?.[CSRF_FIELD] ?? req.get(CSRF_HEADER);
    if (!hadBinding || !tokensMatch(expected, sent)) {
      return next(new AppError(403, CSRF_FAILED_MESSAGE, { code: 'csrf_failed' }));
    }
    next();
  };
}

function tokensMatch(expected: string, sent: unknown): boolean {
  if (typeof sent !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(sent);
  return a.length === b.length && timingSafeEqual(a, b);
}
