import { Router, type Request, type Response } from 'express';
import { clientIp, formFields, formText } from '../../core/forms.js';
import type { AdminGate } from '../../plugins/types.js';
import { isAdminRequest, requireAdmin, startAdminSession } from './admin-access.js';
import { ADMIN_PASSWORD_MIN, createFirstAdmin, setupCodeMatches, setupNeeded, validateAdminCredentials, type CredentialErrors } from './admin-setup.js';
import type { MembersContext } from './context.js';
import { LoginThrottle, type ThrottleRule } from './login-throttle.js';
import { loginAttempt } from './login-devices.js';
import { verifyPassword } from './passwords.js';
import { LOGIN_FAILED_MESSAGE, safeNextPath, tooManyAttempts } from './routes.js';
import { loadMember, logOut } from './sessions.js';

export const NO_ADMIN_RIGHTS_MESSAGE = 'This account has no admin rights.';
export const WRONG_SETUP_CODE_MESSAGE =
  'This setup code is not the current one. Open the setup link memberhook printed when it last started (each start prints a new one).';

/**
 * Wrong setup codes from one address: 10 in 15 minutes, then a minute's wait doubling up to an hour. The code is
 * 256 random bits, so this is not what keeps it safe; it keeps a stranger from hammering the open form.
 */
export const SETUP_CODE_IP_RULE: ThrottleRule = { maxFailures: 10, windowMs: 15 * 60_000, firstLockMs: 60_000, maxLockMs: 60 * 60_000 };

/**
 * Who may use `/admin`, for the admin shell: administrators are members with admin rights, logged in with an admin
 * session. The public part is the first-run setup (until an administrator exists it is all /admin shows), the
 * admin login and logout.
 */
export function adminGate(ctx: MembersContext): AdminGate {
  return { identify: loadMember(ctx), publicRoutes: adminPublicRoutes(ctx), requireAdmin: requireAdmin(ctx) };
}

function adminPublicRoutes(ctx: MembersContext): Router {
  const admin = Router();
  const throttle = ctx.loginThrottle;

  // Attempts at the setup code name no account, so only the per-address rule ever counts.
  const setupCodeThrottle = new LoginThrottle(ctx.db, ctx.clock, { ip: SETUP_CODE_IP_RULE, account: SETUP_CODE_IP_RULE }, { scope: 'setup-code' });

  const renderSetup = (res: Response, status: number, form: { email?: string; code?: string; errors?: CredentialErrors; error?: string }) =>
    ctx.admin.view(res, status, 'setup', { title: 'Set up memberhook', bare: true, minLength: ADMIN_PASSWORD_MIN, ...form });

  // First run: until an administrator exists, the setup form is all /admin shows. The setup link fills in its code.
  admin.use((req, res, next) => {
    if (!setupNeeded(ctx)) return next();
    if (req.path === '/setup' && req.method === 'POST') return next();
    if (req.method === 'GET' || req.method === 'HEAD') return renderSetup(res, 200, { code: formText(req.query.code).trim() });
    res.redirect(303, '/admin/setup');
  });

  admin.post('/setup', async (req, res) => {
    // The first-run gate let this through only while setup is open; once it is done, there is no form to post.
    if (!setupNeeded(ctx)) return res.redirect(303, '/admin/login');
    const body = formFields(req);
    const email = formText(body.email).trim();
    const password = formText(body.password);
    const confirm = formText(body.confirm);
    const code = formText(body.code).trim();

    // The code first: without it, nothing about the form is looked at. Counted before the check, taken back if right.
    const attempt = { ip: clientIp(req) };
    const verdict = setupCodeThrottle.admit(attempt);
    if (!verdict.allowed) {
      res.set('Retry-After', String(Math.ceil(verdict.retryAfterMs / 1000)));
      return renderSetup(res, 429, { email, error: tooManyAttempts(verdict.retryAfterMs) });
    }
    if (!setupCodeMatches(ctx, code)) {
      ctx.logger.warn({ ip: attempt.ip }, 'setup form posted with a wrong setup code');
      return renderSetup(res, 403, { email, errors: { code: code ? WRONG_SETUP_CODE_MESSAGE : 'Enter the setup code from the link memberhook printed when it started.' } });
    }
    setupCodeThrottle.succeeded(attempt);

    const errors = validateAdminCredentials({ email, password, confirm });
    if (Object.keys(errors).length > 0) return renderSetup(res, 400, { email, code, errors });
    const result = await createFirstAdmin(ctx, { email, password });
    if (!result.ok) {
      if (result.reason === 'setup_done') return res.redirect(303, '/admin/login');
      return renderSetup(res, 400, { email, code, errors: result.errors });
    }
    await startAdminSession(ctx, req, res, result.member);
    res.redirect(303, '/admin');
  });
  admin.get('/setup', (_req, res) => res.redirect(303, '/admin/login'));

  admin.get('/login', (req, res) => {
    const next = adminNextPath(req.query.next);
    if (isAdminRequest(ctx, req, res)) return res.redirect(303, next ?? '/admin');
    ctx.admin.view(res, 200, 'login', { title: 'Admin log in', bare: true, next });
  });

  admin.post('/login', async (req, res) => {
    const body = formFields(req);
    const login = formText(body.login).trim();
    const password = formText(body.password);
    const next = adminNextPath(body.next);
    const form = { title: 'Admin log in', bare: true, login, next };
    if (!login || !password) return ctx.admin.view(res, 400, 'login', { ...form, error: 'Enter your email or username and your password.' });

    // The member login's counters and rules: guesses here and at /login add up, under the account whichever of
    // its names is typed.
    const member = ctx.members.findByLogin(login);
    const attempt = loginAttempt(ctx, req, member, login);
    const verdict = throttle.admit(attempt);
    if (!verdict.allowed) {
      res.set('Retry-After', String(Math.ceil(verdict.retryAfterMs / 1000)));
      return ctx.admin.view(res, 429, 'login', { ...form, error: tooManyAttempts(verdict.retryAfterMs) });
    }
    const ok = await verifyPassword(password, member ? ctx.members.passwordHash(member.id) : null);
    if (!member || !ok) {
      ctx.logger.info({ ip: attempt.ip }, 'admin login failed');
      return ctx.admin.view(res, 401, 'login', { ...form, error: LOGIN_FAILED_MESSAGE });
    }
    throttle.succeeded(attempt);
    ctx.devices.remember(req, res, member);
    if (!member.roleIsAdmin) {
      // The password was right, so saying so tells nothing /login would not; no session is started here.
      ctx.logger.info({ memberId: member.id }, 'admin login refused: no admin rights');
      return ctx.admin.view(res, 403, 'login', { ...form, error: NO_ADMIN_RIGHTS_MESSAGE });
    }
    await startAdminSession(ctx, req, res, member);
    ctx.logger.info({ memberId: member.id }, 'admin logged in');
    res.redirect(303, next ?? '/admin');
  });

  admin.post('/logout', async (req, res) => {
    await logOut(ctx, req, res, 'admin');
    res.redirect(303, '/admin/login');
  });

  return admin;
}

/** A path under /admin to return to after logging in; anything else (another site, a member page) is dropped. */
function adminNextPath(value: unknown): string | undefined {
  const path = safeNextPath(value);
  return path !== undefined && /^\/admin(?:[/?#]|$)/.test(path) ? path : undefined;
}
