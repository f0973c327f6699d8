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

export interface WelcomeEmailOverrides {
  /** Handlebars sources, as an admin edited them; an empty or missing one falls back to the built-in template */
  subject?: string;
  text?: string;
  html?: string;
}

export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export const DEFAULT_WELCOME_SUBJECT = 'Welcome to {{siteName}}';

/**
 * The welcome email from `views/emails/welcome.{html,text}.hbs` or an admin's override. The HTML part escapes
 * every value; the subject and the text part are not HTML and must show `&` and `<` as they are.
 */
export function renderWelcomeEmail(views: ViewRenderer, data: WelcomeEmailData, overrides: WelcomeEmailOverrides = {}): RenderedEmail {
  const context = {
    ...data,
    password: data.password ? data.password : undefined,
    resetUrl: data.resetUrl ?? resetUrlFor(data.loginUrl),
    layout: false as const,
  };

  const subject = renderPart('subject', () => views.compile(overrides.subject?.trim() || DEFAULT_WELCOME_SUBJECT, { noEscape: true })(context));
  const text = renderPart('text', () =>
    overrides.text?.trim() ? views.compile(overrides.text, { noEscape: true })(context) : views.render('emails/welcome.text', context, { noEscape: true }),
  );
  const html = renderPart('html', () => (overrides.html?.trim() ? views.compile(overrides.html)(context) : views.render('emails/welcome.html', context)));

  return {
    // a header is one line; nodemailer would fold it anyway, but a stray newline from a template is never meant
    subject: subject.replace(/\s+/g, ' ').trim(),
    text: tidyText(text),
    html,
  };
}

/**
 * Handlebars parses lazily, so a syntax error and a missing helper both surface on the first call: catch both
 * here and say which part of the email is broken, for the admin who edited it.
 */
function renderPart(part: 'subject' | 'text' | 'html', render: () => string): string {
  try {
    return render();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`The welcome email ${part} template is broken: ${reason}`, { cause: err });
  }
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

/** Block helpers leave blank lines behind in plain text; keep at most one empty line in a row. */
function tidyText(text: string): string {
  return `${text.replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trim()}\n`;
}
