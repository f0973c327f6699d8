import { parseCookie } from 'cookie';
import type { CookieOptions, Request } from 'express';

/** The member session's cookie. Core knows it because the CSRF check binds every form token to it. */
export const SESSION_COOKIE = 'mh_session';

/** A cookie of ours as this request must name and set it. */
export interface PageCookie {
  name: string;
  options: CookieOptions;
}

/**
 * How a cookie of ours is named and set on this request. On an HTTPS site (PUBLIC_URL is https, or the request
 * came over HTTPS, directly or through a trusted proxy) it is `Secure` and named `__Host-<base>`: a browser takes a
 * `__Host-` cookie only from this very host over HTTPS, with Path=/ and no Domain, so neither a sibling subdomain
 * nor a plain-http page can plant or overwrite it. On http://localhost the plain name is used, so trials work.
 */
export function pageCookie(publicUrl: string, req: Request, base: string): PageCookie {
  const secure = publicUrl.startsWith('https:') || req.secure;
  return { name: secure ? `__Host-${base}` : base, options: { httpOnly: true, sameSite: 'lax', path: '/', secure } };
}

/**
 * The value of our cookie `base` on this request, read under the name this request uses: on an HTTPS site a
 * plain-named copy (which anyone on a sibling subdomain could have set) is ignored.
 */
export function readPageCookie(publicUrl: string, req: Request, base: string): string | undefined {
  const header = req.headers.cookie;
  return header ? parseCookie(header)[pageCookie(publicUrl, req, base).name] : undefined;
}
