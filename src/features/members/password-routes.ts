import type { Request, RequestHandler, Response, Router } from 'express';
import { loginAttempt } from './login-devices.js';
import { LoginThrottle, type ThrottleRule, type ThrottleVerdict } from './login-throttle.js';
import { isWellFormedResetToken } from './password-reset-store.js';
import { changePassword, requestPasswordReset, resetPasswordWithToken, resetTokenIsLive, RESET_TOKEN_TTL_MS } from './password-reset.js';
import { newPasswordErrors, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, verifyPassword } from './passwords.js';
import { endSession, requireMember, startSession } from './sessions.js';
import type { MembersContext } from './context.js';
import type { Member } from './types.js';
import { formFields, formText } from '../../core/forms.js';

const MINUTE = 60_000;

/**
 * "Forgot password" requests from one address: 10 in 15 minutes, then a 15-minute wait that doubles up to an hour.
 * Enough for someone who mistypes their address a few times; useless for flooding.
 */
export const FORGOT_IP_RULE: ThrottleRule = { maxFailures: 10, windowMs: 15 * MINUTE, firstLockMs: 15 * MINUTE, maxLockMs: 60 * MINUTE };
/** Reset emails to one account: 3 an hour, then an hour's pause that doubles up to a day, whoever asks. */
export const FORGOT_ACCOUNT_RULE: ThrottleRule = { maxFailures: 3, windowMs: 60 * MINUTE, firstLockMs: 60 * MINUTE, maxLockMs: 24 * 60 * MINUTE };

/** Fixed messages a redirect may ask a page to show (`?notice=`); nothing from the URL is ever shown as such. */
export const NOTICES = {
  password_changed: 'Your password was changed. You were logged out everywhere else.',
  password_reset: 'Your password was changed. Log in with your new password.',
} as const;

export function noticeFor(value: unknown): string | undefined {
  return typeof value === 'string' && Object.hasOwn(NOTICES, value) ? NOTICES[value as keyof typeof NOTICES] : undefined;
}

export interface MemberPageTools {
  render(res: Response, status: number, view: string, data: Record<string, unknown>): void;
  /** The login forms' throttle: a wrong current password counts against the account and address like a wrong login. */
  loginThrottle: LoginThrottle;
  clientIp(req: Request): string;
  tooManyAttempts(retryAfterMs: number): string;
}

/** `/account/password`, `/password/forgot`, `/password/reset`. The caller mounts body parsing, CSRF and no-store. */
export function addPasswordRoutes(router: Router, ctx: MembersContext, tools: MemberPageTools): void {
  const { render, loginThrottle, clientIp, tooManyAttempts } = tools;
  // Per address and per account whoever asks (no per-address or device counting: this limits emails, not guesses).
  const forgotThrottle = new LoginThrottle(ctx.db, ctx.clock, { ip: FORGOT_IP_RULE, account: FORGOT_ACCOUNT_RULE }, { scope: 'reset-email' });
  const lengths = { minLength: PASSWORD_MIN_LENGTH, maxLength: PASSWORD_MAX_LENGTH };
  const refuse = (res: Response, verdict: Extract<ThrottleVerdict, { allowed: false }>, view: string, data: Record<string, unknown>) => {
    res.set('Retry-After', String(Math.ceil(verdict.retryAfterMs / 1000)));
    render(res, 429, view, { ...data, error: tooManyAttempts(verdict.retryAfterMs) });
  };
  // The reset link's token is in the page's URL: no Referer may carry it to another site (helmet already sends
  // no-referrer everywhere; this keeps it so if that default is ever loosened), and no cache may keep the page.
  const noReferrer: RequestHandler = (_req, res, next) => {
    res.set('Referrer-Policy', 'no-referrer');
    next();
  };

  // ---- change password (logged in) ----

  const changeForm = { title: 'Change your password', ...lengths };

  router.get('/account/password', requireMember(ctx), (_req, res) => {
    render(res, 200, 'password', changeForm);
  });

  router.post('/account/password', requireMember(ctx), async (req, res) => {
    const member = res.locals.member!;
    const body = formFields(req);
    const current = formText(body.current_password);
    const password = formText(body.new_password);
    const confirm = formText(body.confirm_password);

    const errors: Record<string, string> = {};
    if (!current) errors.current_password = 'Enter your current password.';
    const fresh = newPasswordErrors(password, confirm);
    if (fresh.password) errors.new_password = fresh.password;
    if (fresh.confirm) errors.confirm_password = fresh.confirm;
    if (Object.keys(errors).length > 0) return render(res, 400, 'password', { ...changeForm, errors });

    // Someone at an unattended, logged-in browser must not get unlimited guesses at the password either.
    const attempt = loginAttempt(ctx, req, member, member.email);
    const verdict = loginThrottle.admit(attempt);
    if (!verdict.allowed) return refuse(res, verdict, 'password', changeForm);
    if (!(await verifyPassword(current, ctx.members.passwordHash(member.id)))) {
      ctx.logger.info({ memberId: member.id, ip: attempt.ip }, 'member password change: wrong current password');
      return render(res, 400, 'password', { ...changeForm, errors: { current_password: 'Your current password is not right.' } });
    }
    loginThrottle.succeeded(attempt);
    await changePassword(ctx, member, password);
    // Every session ended with the change; this browser gets a new one (a stolen cookie of this one is void too).
    await startSession(ctx, req, res, member, { loggedIn: false });
    ctx.logger.info({ memberId: member.id }, 'member changed password');
    res.redirect(303, '/account?notice=password_changed');
  });

  // ---- forgot password ----

  const forgotForm = { title: 'Forgot your password?' };

  router.get('/password/forgot', (_req, res) => {
    render(res, 200, 'password-forgot', forgotForm);
  });

  /**
   * The same page whether or not the account exists, and the same work in the request either way (one look-up,
   * one throttle write; the email is made and sent by a job): the form says nothing about who has an account.
   */
  router.post('/password/forgot', async (req, res) => {
    const body = formFields(req);
    const login = formText(body.login).trim();
    if (!login) return render(res, 400, 'password-forgot', { ...forgotForm, errors: { login: 'Enter your email address or username.' } });
    if (login.length > 254) return render(res, 400, 'password-forgot', { ...forgotForm, errors: { login: 'That is longer than any email address or username (254 characters).' } });

    const member = ctx.members.findByLogin(login);
    const ip = clientIp(req);
    // Counted per member (whichever way it was typed) and per address; an unknown login is counted as typed.
    const verdict = forgotThrottle.admit({ ip, account: LoginThrottle.account(member, login) });
    if (!verdict.allowed && verdict.lockedBy.includes('ip')) return refuse(res, verdict, 'password-forgot', { ...forgotForm, login });
    // Enough emails went to this account lately: say nothing different, send nothing more.
    const queued = verdict.allowed && member !== undefined;
    if (queued) await requestPasswordReset(ctx, member);
    // One line either way (never the login as typed: it may be someone's mistyped password).
    ctx.logger.info({ ip, memberId: member?.id, queued, accountLocked: !verdict.allowed }, 'password reset asked for');
    render(res, 200, 'password-forgot-sent', { title: 'Check your email', expiresInMinutes: Math.round(RESET_TOKEN_TTL_MS / MINUTE) });
  });

  // ---- reset from the emailed link ----

  const resetForm = { title: 'Choose a new password', ...lengths };
  const deadLink = (res: Response, status: 400 | 410) => render(res, status, 'password-reset-invalid', { title: 'Link expired' });

  // GET only shows the form; it never uses the token, so a mail scanner that opens links spends nothing.
  router.get('/password/reset', noReferrer, (req, res) => {
    const token = req.query.token;
    if (!isWellFormedResetToken(token)) return deadLink(res, 400);
    if (!resetTokenIsLive(ctx, token)) return deadLink(res, 410);
    render(res, 200, 'password-reset', { ...resetForm, token });
  });

  router.post('/password/reset', noReferrer, async (req, res) => {
    const body = formFields(req);
    const token = body.token;
    if (!isWellFormedResetToken(token)) return deadLink(res, 400);
    const password = formText(body.new_password);
    const confirm = formText(body.confirm_password);
    const fresh = newPasswordErrors(password, confirm);
    if (fresh.password || fresh.confirm) {
      if (!resetTokenIsLive(ctx, token)) return deadLink(res, 410);
      const errors = { ...(fresh.password ? { new_password: fresh.password } : {}), ...(fresh.confirm ? { confirm_password: fresh.confirm } : {}) };
      return render(res, 400, 'password-reset', { ...resetForm, token, errors });
    }
    const member = await resetPasswordWithToken(ctx, token, password);
    if (!member) return deadLink(res, 410);
    // Whoever was locked out of this account by wrong guesses has now proved it is theirs.
    loginThrottle.forgetAccount(LoginThrottle.account(member, member.email));
    // The browser that reset may have carried a session (of this member or another): it is over either way.
    endSession(ctx, req, res);
    ctx.logger.info({ memberId: member.id }, 'member reset password');
    res.redirect(303, '/login?notice=password_reset');
  });
}
