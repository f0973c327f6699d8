import { Router, type Request, type RequestHandler, type Response } from 'express';
import { csrfProtection } from '../../core/csrf.js';
import { clientIp, formBodyParser, formFields, formText } from '../../core/forms.js';
import type { MembersContext } from './context.js';
import { verifyPassword } from './passwords.js';
import { loginAttempt } from './login-devices.js';
import { addPasswordRoutes, noticeFor } from './password-routes.js';
import { loadMember, logOut, requireMember, startSession } from './sessions.js';
import type { Member } from './types.js';

/** The one answer to a wrong password and to an unknown login alike, so the form never says which. */
export const BLOCKED_MESSAGE = 'This account is blocked. If you think that is a mistake, contact the site.';
export const LOGIN_FAILED_MESSAGE = 'Email/username or password is wrong';

/**
 * Member pages: `/login`, `/logout`, `/account`, `GET /` (to the account), and the password pages
 * (`/account/password`, `/password/forgot`, `/password/reset`, in password-routes.ts).
 */
export function memberRoutes(ctx: MembersContext): Router {
  const router = Router();
  const throttle = ctx.loginThrottle;
  const formBody = formBodyParser({ limit: '16kb', parameterLimit: 20 });
  const noStore: RequestHandler = (_req, res, next) => {
    // Pages with a member's data or a form token: never kept by a shared cache or the back button.
    res.set('Cache-Control', 'no-store');
    next();
  };
  // Only these paths get the form parser and CSRF check: POST / is Keap's webhook and must stay untouched.
  router.use(['/login', '/logout', '/account', '/password'], ...formBody, csrfProtection(ctx), noStore, loadMember(ctx));

  const render = (res: Response, status: number, view: string, data: Record<string, unknown>) => {
    res
      .status(status)
      .type('html')
      .send(ctx.views.render(`member/${view}`, { siteName: ctx.identity.siteName(), csrfToken: res.locals.csrfToken, member: res.locals.member, ...data }));
  };

  router.get('/', (_req, res) => res.redirect(303, '/account'));

  router.get('/login', (req, res) => {
    const next = safeNextPath(req.query.next);
    if (res.locals.member) return res.redirect(303, next ?? '/account');
    render(res, 200, 'login', { title: 'Log in', next, notice: noticeFor(req.query.notice) });
  });

  router.post('/login', async (req, res) => {
    const body = formFields(req);
    const login = formText(body.login).trim();
    const password = formText(body.password);
    const next = safeNextPath(body.next);
    const form = { title: 'Log in', login, next };
    if (!login || !password) return render(res, 400, 'login', { ...form, error: 'Enter your email or username and your password.' });

    const member = ctx.members.findByLogin(login);
    // Counted under the account (email and username alike), the address, and this browser if it is a known device.
    const attempt = loginAttempt(ctx, req, member, login);
    // Before bcrypt: a locked attempt costs nothing and says nothing about the password.
    const verdict = throttle.admit(attempt);
    if (!verdict.allowed) {
      res.set('Retry-After', String(Math.ceil(verdict.retryAfterMs / 1000)));
      return render(res, 429, 'login', { ...form, error: tooManyAttempts(verdict.retryAfterMs) });
    }
    // verifyPassword compares against a dummy hash when there is no member, so both failures take as long.
    const ok = await verifyPassword(password, member ? ctx.members.passwordHash(member.id) : null);
    if (!member || !ok) {
      ctx.logger.info({ ip: attempt.ip }, 'member login failed');
      return render(res, 401, 'login', { ...form, error: LOGIN_FAILED_MESSAGE });
    }
    throttle.succeeded(attempt);
    if (member.blocked) {
      // The password was right, so saying why tells a stranger nothing; no session is started.
      ctx.logger.info({ memberId: member.id }, 'member login refused: blocked');
      return render(res, 403, 'login', { ...form, error: BLOCKED_MESSAGE });
    }
    ctx.devices.remember(req, res, member);
    await startSession(ctx, req, res, member);
    ctx.logger.info({ memberId: member.id }, 'member logged in');
    res.redirect(303, next ?? '/account');
  });

  // GET never changes state (link prefetchers and crawlers follow links): it asks, the form does it.
  router.get('/logout', (_req, res) => {
    if (!res.locals.member) return res.redirect(303, '/login');
    render(res, 200, 'logout', { title: 'Log out' });
  });

  router.post('/logout', async (req, res) => {
    await logOut(ctx, req, res, 'member');
    res.redirect(303, '/login');
  });

  router.get('/account', requireMember(ctx), (req, res) => {
    const member = res.locals.member!;
    render(res, 200, 'account', {
      title: 'Your account',
      notice: noticeFor(req.query.notice),
      name: displayName(member),
      roleName: ctx.members.role(member.role)?.name ?? member.role,
    });
  });

  addPasswordRoutes(router, ctx, { render, loginThrottle: throttle, clientIp, tooManyAttempts });

  return router;
}

/**
 * Where to go after logging in: a path on this site only. `//evil.com` and `/\evil.com` are other sites to a
 * browser, so a second slash or any backslash, control character or space is refused.
 */
export function safeNextPath(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2048) return undefined;
  if (!value.startsWith('/') || value.startsWith('//')) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\\\u0000-\u0020\u007f]/.test(value)) return undefined;
  return value;
}

export function tooManyAttempts(retryAfterMs: number): string {
  // An account's cool-off is seconds long; "1 minute" would send its owner away for longer than needed.
  if (retryAfterMs < 59_500) {
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    return `Too many attempts. Try again in ${seconds} second${seconds === 1 ? '' : 's'}.`;
  }
  const minutes = Math.max(1, Math.ceil(retryAfterMs / 60_000));
  return `Too many attempts. Try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`;
}

function displayName(member: Member): string {
  return `${member.firstName} ${member.lastName}`.trim() || member.username;
}
