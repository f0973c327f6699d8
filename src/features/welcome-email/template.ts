import Handlebars from 'handlebars';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RenderedEmail } from '../../core/mail.js';
import { VIEWS_DIR, type ViewRenderer } from '../../core/views.js';

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

export const DEFAULT_WELCOME_SUBJECT = 'Welcome to {{siteName}}';

export type WelcomeEmailPart = 'subject' | 'text' | 'html';

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

/** A broken template, with the part it is in and the line when Handlebars names one. */
export class WelcomeTemplateError extends Error {
  override name = 'WelcomeTemplateError';
  constructor(
    readonly part: WelcomeEmailPart,
    /** Handlebars' own words. */
    readonly reason: string,
    readonly line: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(`The welcome email ${part} template is broken${line === undefined ? '' : ` (line ${line})`}: ${reason}`, options);
  }
}

/**
 * What an admin's template may call: the two conditionals the variables need (`{{#if password}}`). Every other
 * helper is out: `log` would write a value (the password) to the console past the log's redaction, and `each`,
 * `with` and `lookup` serve no value a welcome email has. Partials and decorators are out too (the admin pages'
 * partials are not email).
 */
const TEMPLATE_HELPERS = ['if', 'unless'] as const;
/** Handlebars' own fallbacks, which its compiled code calls for a plain `{{#section}}` or a missing value. */
const INTERNAL_HELPERS = new Set(['helperMissing', 'blockHelperMissing']);
const BUILT_IN_HELPERS = new Set(Object.keys(Handlebars.create().helpers));

/**
 * The admin's templates render in a Handlebars environment of their own, holding only the allowed helpers and no
 * partials, compiled with `knownHelpersOnly`: even a template stored before this check (or written straight to the
 * database) cannot reach another helper.
 */
const sandbox = Handlebars.create();
for (const name of Object.keys(sandbox.helpers)) {
  if (!(TEMPLATE_HELPERS as readonly string[]).includes(name) && !INTERNAL_HELPERS.has(name)) sandbox.unregisterHelper(name);
}
const SANDBOX_OPTIONS = { strict: false, knownHelpersOnly: true, knownHelpers: Object.fromEntries(TEMPLATE_HELPERS.map((name) => [name, true])) };

/** A template calling what email templates cannot use, named, with its line; thrown before anything renders. */
class NotAllowedInTemplate extends Error {
  constructor(
    message: string,
    readonly lineNumber: number | undefined,
  ) {
    super(message);
  }
}

function compileSandboxed(source: string, options: { noEscape?: boolean } = {}): Handlebars.TemplateDelegate {
  refuseWhatTemplatesCannotUse(Handlebars.parse(source));
  return sandbox.compile(source, { ...SANDBOX_OPTIONS, ...(options.noEscape ? { noEscape: true } : {}) });
}

interface HbsNode {
  type: string;
  loc?: { start: { line: number } };
  path?: { type: string; original?: unknown };
  params?: HbsNode[];
  hash?: { pairs: Array<{ value: HbsNode }> };
  program?: { body: HbsNode[] } | null;
  inverse?: { body: HbsNode[] } | null;
  body?: HbsNode[];
}

/** Walks the parsed template: a helper other than #if and #unless, a partial or a decorator is refused by name. */
function refuseWhatTemplatesCannotUse(node: HbsNode): void {
  const line = node.loc?.start.line;
  if (node.type === 'PartialStatement' || node.type === 'PartialBlockStatement') {
    throw new NotAllowedInTemplate('partials ({{> name}}) are not available in email templates', line);
  }
  if (node.type === 'Decorator' || node.type === 'DecoratorBlock') {
    throw new NotAllowedInTemplate('decorators ({{* name}}) are not available in email templates', line);
  }
  if (node.type === 'MustacheStatement' || node.type === 'BlockStatement' || node.type === 'SubExpression') {
    const name = node.path?.type === 'PathExpression' ? String(node.path.original) : undefined;
    const callsHelper = (node.params?.length ?? 0) > 0 || (node.hash?.pairs.length ?? 0) > 0 || (name !== undefined && BUILT_IN_HELPERS.has(name));
    if (callsHelper && !(TEMPLATE_HELPERS as readonly string[]).includes(name ?? '')) {
      throw new NotAllowedInTemplate(
        `the helper "${name ?? String(node.path?.original)}" is not available in email templates (they can use {{#if}} and {{#unless}})`,
        line,
      );
    }
  }
  const children = [...(node.params ?? []), ...(node.hash?.pairs.map((pair) => pair.value) ?? []), node.path as HbsNode | undefined, ...(node.body ?? []), ...(node.program?.body ?? []), ...(node.inverse?.body ?? [])];
  for (const child of children) if (child && typeof child === 'object' && 'type' in child) refuseWhatTemplatesCannotUse(child);
}

/** The built-in templates' sources (what "Reset to default" goes back to, and what the editor starts from). */
export function defaultWelcomeTemplate(): Required<WelcomeEmailOverrides> {
  const read = (name: string) => readFileSync(join(VIEWS_DIR, 'emails', name), 'utf8');
  return { subject: DEFAULT_WELCOME_SUBJECT, text: read('welcome.text.hbs'), html: read('welcome.html.hbs') };
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

/**
 * The welcome email from `views/emails/welcome.{html,text}.hbs` or an admin's override (rendered in the sandbox
 * above). The HTML part escapes every value; the subject and the text part are not HTML and must show `&` and `<`
 * as they are.
 */
export function renderWelcomeEmail(views: ViewRenderer, data: WelcomeEmailData, overrides: WelcomeEmailOverrides = {}): RenderedEmail {
  const context = {
    ...data,
    password: data.password ? data.password : undefined,
    resetUrl: data.resetUrl ?? resetUrlFor(data.loginUrl),
    layout: false as const,
  };

  const subject = renderPart('subject', () => compileSandboxed(overrides.subject?.trim() || DEFAULT_WELCOME_SUBJECT, { noEscape: true })(context));
  const text = renderPart('text', () =>
    overrides.text?.trim() ? compileSandboxed(overrides.text, { noEscape: true })(context) : views.render('emails/welcome.text', context, { noEscape: true }),
  );
  const html = renderPart('html', () => (overrides.html?.trim() ? compileSandboxed(overrides.html)(context) : views.render('emails/welcome.html', context)));

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
function renderPart(part: WelcomeEmailPart, render: () => string): string {
  try {
    return render();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new WelcomeTemplateError(part, reason, lineOf(err, reason), { cause: err });
  }
}

/** Handlebars puts the line in `lineNumber` for some errors and only in the message ("on line 3", "- 3:5") for others. */
function lineOf(err: unknown, reason: string): number | undefined {
  const fromError = (err as { lineNumber?: unknown } | null)?.lineNumber;
  if (typeof fromError === 'number') return fromError;
  const match = /on line (\d+)/.exec(reason) ?? / - (\d+):\d+$/.exec(reason);
  return match ? Number(match[1]) : undefined;
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
