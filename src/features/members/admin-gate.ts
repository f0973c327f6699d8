import { Router, type Request, type Response } from 'express';
import { formFields, formText } from '../../core/forms.js';
import type { AdminGate } from '../../plugins/types.js';
import { isAdminRequest, requireAdmin, startAdminSession } from './admin-access.js';
import { ADMIN_PASSWORD_MIN, createFirstAdmin, setupNeeded, validateAdminCredentials, type CredentialErrors } from './admin-setup.js';
import type { MembersContext } from './context.js';
import { loginAttempt } from './login-devices.js';
import { verifyPassword } from './passwords.js';
import { LOGIN_FAILED_MESSAGE, safeNextPath, tooManyAttempts } from './routes.js';
import { loadMember, logOut } from './sessions.js';

export const NO_ADMIN_RIGHTS_MESSAGE = 'This account has no admin rights.';

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

  const renderSetup = (res: Response, status: number, form: { email?: string; errors?: CredentialErrors; error?: string }) =>
    ctx.admin.view(res, status, 'setup', { title: 'Set up memberhook', bare: true, minLength: ADMIN_PASSWORD_MIN, ...form });

  // First run: until an administrator exists, the setup form is all /admin shows.
  admin.use((req, res, next) => {
    if (!setupNeeded(ctx)) return next();
    if (req.path === '/setup' && req.method === 'POST') return next();
    if (req.method === 'GET' || req.method === 'HEAD') return renderSetup(res, 200, {});
    res.redirect(303, '/admin/setup');
  });

  admin.post('/setup', async (req, res) => {
    // The first-run gate let this through only while setup is open; once it is done, there is no form to post.
    if (!setupNeeded(ctx)) return res.redirect(303, '/admin/login');
    const body = formFields(req);
    const email = formText(body.email).trim();
    const password = formText(body.password);
    const confirm = formText(body.confirm);
    const errors = validateAdminCredentials({ email, password, confirm });
    if (Object.keys(errors).length > 0) return renderSetup(res, 400, { email, errors });
    const result = await createFirstAdmin(ctx, { email, password });
    if (!result.ok) {
      if (result.reason === 'setup_done') return res.redirect(303, '/admin/login');
      return renderSetup(res, 400, { email, errors: result.errors });
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
