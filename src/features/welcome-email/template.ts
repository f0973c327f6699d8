import { defaultEmailTemplate, EmailTemplateError, renderEmailTemplate, type EmailPart, type EmailTemplateOverrides, type EmailTemplateSpec } from '../../core/email-templates.js';
import type { RenderedEmail } from '../../core/mail.js';
import type { ViewRenderer } from '../../core/views.js';

export interface WelcomeEmailData {
  siteName: string;
  username: string;
  email: string;
  firstName: string;
  /** only when memberhook generated it */
  password?: string;
  loginUrl: string;
  /** where a member without a password sets one; defaults to `/password/forgot` beside the login page */
  resetUrl?: string;
}

export type WelcomeEmailOverrides = EmailTemplateOverrides;
export type WelcomeEmailPart = EmailPart;
/** A broken welcome template (the sandbox's error, kept under the name callers know). */
export { EmailTemplateError as WelcomeTemplateError };

export const DEFAULT_WELCOME_SUBJECT = 'Welcome to {{siteName}}';

const WELCOME_TEMPLATE: EmailTemplateSpec = { label: 'welcome email', subject: DEFAULT_WELCOME_SUBJECT, view: 'emails/welcome' };

/** What a welcome template can use, for the admin who edits one. */
export const WELCOME_EMAIL_VARIABLES: ReadonlyArray<{ name: string; description: string }> = [
  { name: 'siteName', description: 'the site’s name' },
  { name: 'firstName', description: 'the member’s first name, from Keap (may be empty)' },
  { name: 'username', description: 'the username to log in with' },
  { name: 'email', description: 'the member’s email address' },
  { name: 'password', description: 'the password, only when memberhook generated it (use {{#if password}}…{{else}}…{{/if}})' },
  { name: 'loginUrl', description: 'the login page' },
  { name: 'resetUrl', description: 'where a member sets a new password' },
];

/** The built-in templates' sources (what "Reset to default" goes back to, and what the editor starts from). */
export function defaultWelcomeTemplate(): Required<WelcomeEmailOverrides> {
  return defaultEmailTemplate(WELCOME_TEMPLATE);
}

/** Made-up member data for previews and for trying a template before it is saved. */
export function sampleWelcomeData(siteName: string, publicUrl: string, options: { password?: boolean } = {}): WelcomeEmailData {
  return {
    siteName,
    username: 'ada',
    email: 'ada@example.com',
    firstName: 'Ada',
    ...(options.password === false ? {} : { password: 'Sample-Passw0rd-7' }),
    loginUrl: `${publicUrl}/login`,
  };
}

/**
 * Throws WelcomeTemplateError when an edited template would fail to render: a syntax error, a helper other than
 * #if and #unless, a partial, in either branch of `{{#if password}}` (Handlebars reports some of these only when it runs a branch).
 */
export function checkWelcomeTemplate(views: ViewRenderer, overrides: WelcomeEmailOverrides, sample: WelcomeEmailData): void {
  renderWelcomeEmail(views, { ...sample, password: sample.password ?? 'Sample-Passw0rd-7' }, overrides);
  const { password: _password, ...withoutPassword } = sample;
  renderWelcomeEmail(views, withoutPassword, overrides);
}

/** The welcome email from `views/emails/welcome.{html,text}.hbs` or an admin's override. */
export function renderWelcomeEmail(views: ViewRenderer, data: WelcomeEmailData, overrides: WelcomeEmailOverrides = {}): RenderedEmail {
  return renderEmailTemplate(views, WELCOME_TEMPLATE, { ...data, password: data.password ? data.password : undefined, resetUrl: data.resetUrl ?? resetUrlFor(data.loginUrl) }, overrides);
}

/**
 * `https://site/members/login?x` → `https://site/members/password/forgot`, keeping a path prefix the site may
 * live under. A login URL that is not a `/login` page (an auto-login link) gives the origin's reset page; a
 * caller that knows better passes `resetUrl`.
 */
function resetUrlFor(loginUrl: string): string {
  try {
    const url = new URL(loginUrl);
    const path = url.pathname.replace(/\/+$/, '');
    const base = path.endsWith('/login') ? path.slice(0, -'/login'.length) : '';
    return `${url.origin}${base}/password/forgot`;
  } catch {
    return '/password/forgot';
  }
}
