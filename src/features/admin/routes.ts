import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { AppContext } from '../../context.js';
import { csrfProtection } from '../../core/csrf.js';
import { LoginThrottle } from '../members/login-throttle.js';
import { verifyPassword } from '../members/passwords.js';
import { LOGIN_FAILED_MESSAGE, safeNextPath, tooManyAttempts } from '../members/routes.js';
import { loadMember, logOut } from '../members/sessions.js';
import { memberAdminRoutes } from '../members/admin-routes.js';
import { eventAdminRoutes } from '../queue/admin-routes.js';
import { roleAdminRoutes } from '../roles/admin-routes.js';
import { keapSettingsRoutes } from '../settings/keap-routes.js';
import { memberSettingsRoutes } from '../settings/member-settings-routes.js';
import { settingsAdminRoutes } from '../settings/routes.js';
import { isAdminRequest, requireAdmin, startAdminSession } from './access.js';
import { loadDashboard } from './dashboard.js';
import { renderAdmin } from './pages.js';
import { ADMIN_PASSWORD_MIN, createFirstAdmin, setupNeeded, validateAdminCredentials, type CredentialErrors } from './setup.js';
import { clientIp, formBodyParser, formFields, formText } from '../../core/forms.js';

export const NO_ADMIN_RIGHTS_MESSAGE = 'This account has no admin rights.';

/**
 * `/admin`: first-run setup, admin login and logout, and the dashboard. Admin pages of other features mount their
 * routers after `requireAdmin` here (they get the form parser, CSRF check, no-store and `res.locals.admin`).
 */
export function adminRoutes(ctx: AppContext): Router {
  const router = Router();
  const admin = Router();
  const throttle = new LoginThrottle(ctx.db, ctx.clock);
  // 64 KB: the welcome email's HTML template is the largest thing an admin form carries.
  const formBody = formBodyParser({ limit: '64kb', parameterLimit: 50 });
  const noStore: RequestHandler = (_req, res, next) => {
    // Admin pages carry members' data and form tokens: never kept by a cache or the back button.
    res.set('Cache-Control', 'no-store');
    next();
  };
  router.use('/admin', noStore, ...formBody, csrfProtection(ctx), loadMember(ctx), admin);

  const renderSetup = (res: Response, status: number, form: { email?: string; errors?: CredentialErrors; error?: string }) =>
    renderAdmin(ctx, res, status, 'setup', { title: 'Set up memberhook', bare: true, minLength: ADMIN_PASSWORD_MIN, ...form });

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
    startAdminSession(ctx, req, res, result.member);
    await ctx.hooks.doAction('member.logged_in', result.member);
    res.redirect(303, '/admin');
  });
  admin.get('/setup', (_req, res) => res.redirect(303, '/admin/login'));

  admin.get('/login', (req, res) => {
    const next = adminNextPath(req.query.next);
    if (isAdminRequest(ctx, req, res)) return res.redirect(303, next ?? '/admin');
    renderAdmin(ctx, res, 200, 'login', { title: 'Admin log in', bare: true, next });
  });

  admin.post('/login', async (req, res) => {
    const body = formFields(req);
    const login = formText(body.login).trim();
    const password = formText(body.password);
    const next = adminNextPath(body.next);
    const form = { title: 'Admin log in', bare: true, login, next };
    if (!login || !password) return renderAdmin(ctx, res, 400, 'login', { ...form, error: 'Enter your email or username and your password.' });

    // The member login's counters and rules: guesses here and at /login add up.
    const attempt = { ip: clientIp(req), login };
    const verdict = throttle.admit(attempt);
    if (!verdict.allowed) {
      res.set('Retry-After', String(Math.ceil(verdict.retryAfterMs / 1000)));
      return renderAdmin(ctx, res, 429, 'login', { ...form, error: tooManyAttempts(verdict.retryAfterMs) });
    }
    const member = ctx.members.findByLogin(login);
    const ok = await verifyPassword(password, member ? ctx.members.passwordHash(member.id) : null);
    if (!member || !ok) {
      ctx.logger.info({ ip: attempt.ip }, 'admin login failed');
      return renderAdmin(ctx, res, 401, 'login', { ...form, error: LOGIN_FAILED_MESSAGE });
    }
    throttle.succeeded(attempt);
    if (!member.roleIsAdmin) {
      // The password was right, so saying so tells nothing /login would not; no session is started here.
      ctx.logger.info({ memberId: member.id }, 'admin login refused: no admin rights');
      return renderAdmin(ctx, res, 403, 'login', { ...form, error: NO_ADMIN_RIGHTS_MESSAGE });
    }
    startAdminSession(ctx, req, res, member);
    ctx.logger.info({ memberId: member.id }, 'admin logged in');
    await ctx.hooks.doAction('member.logged_in', member);
    res.redirect(303, next ?? '/admin');
  });

  admin.post('/logout', async (req, res) => {
    await logOut(ctx, req, res, 'admin');
    res.redirect(303, '/admin/login');
  });

  admin.use(requireAdmin(ctx));

  admin.get('/', (_req, res) => {
    renderAdmin(ctx, res, 200, 'dashboard', { title: 'Dashboard', section: 'dashboard', ...loadDashboard(ctx) });
  });
  // Each feature owns its admin pages; they get the form parser, CSRF check, no-store and res.locals.admin from here.
  admin.use(memberAdminRoutes(ctx));
  admin.use(eventAdminRoutes(ctx));
  admin.use(roleAdminRoutes(ctx));
  admin.use(settingsAdminRoutes(ctx));
  admin.use(keapSettingsRoutes(ctx));
  admin.use(memberSettingsRoutes(ctx));

  return router;
}

/** A path under /admin to return to after logging in; anything else (another site, a member page) is dropped. */
function adminNextPath(value: unknown): string | undefined {
  const path = safeNextPath(value);
  return path !== undefined && /^\/admin(?:[/?#]|$)/.test(path) ? path : undefined;
}
