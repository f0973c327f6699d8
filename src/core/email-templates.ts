import type Handlebars from 'handlebars';
import { handlebarsSandbox } from './handlebars-sandbox.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RenderedEmail } from './mail.js';
import { VIEWS_DIR, type ViewRenderer } from './views.js';

/**
 * Emails an administrator can edit (the welcome email, the password reset email): built-in templates in
 * `views/emails/`, replaced part by part by the admin's Handlebars sources, which render in a sandbox.
 */

export type EmailPart = 'subject' | 'text' | 'html';

export interface EmailTemplateOverrides {
  /** Handlebars sources, as an admin edited them; an empty or missing one falls back to the built-in template */
  subject?: string | undefined;
  text?: string | undefined;
  html?: string | undefined;
}

/** One editable email's built-in parts: the subject's source, and the views of its two bodies. */
export interface EmailTemplateSpec {
  /** How the email is named in errors: "welcome email". */
  label: string;
  subject: string;
  /** `emails/welcome` for `views/emails/welcome.text.hbs` and `.html.hbs`. */
  view: string;
}

/** A broken template, with the email and part it is in and the line when Handlebars names one. */
export class EmailTemplateError extends Error {
  override name = 'EmailTemplateError';
  constructor(
    readonly email: string,
    readonly part: EmailPart,
    /** Handlebars' own words. */
    readonly reason: string,
    readonly line: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(`The ${email} ${part} template is broken${line === undefined ? '' : ` (line ${line})`}: ${reason}`, options);
  }
}

/**
 * What an admin's template may call: the two conditionals the variables need (`{{#if password}}`). Every other
 * helper is out: `log` would write a value (the password, a reset link) to the console past the log's redaction,
 * and `each`, `with` and `lookup` serve no value an email has. Partials and decorators are out too (the admin
 * pages' partials are not email).
 */
const TEMPLATE_HELPERS = ['if', 'unless'] as const;
/**
 * The admin's templates render in a sandbox of their own (core/handlebars-sandbox.ts) holding only the two helpers
 * above.
 */
const sandbox = handlebarsSandbox({ kind: 'email templates', builtIns: TEMPLATE_HELPERS, canUse: 'they can use {{#if}} and {{#unless}}' });

function compileSandboxed(source: string, options: { noEscape?: boolean } = {}): Handlebars.TemplateDelegate {
  return sandbox.compile(source, options);
}

/** The built-in templates' sources (what "Reset to default" goes back to, and what the editor starts from). */
export function defaultEmailTemplate(spec: EmailTemplateSpec): Required<Record<EmailPart, string>> {
  const read = (kind: 'text' | 'html') => readFileSync(join(VIEWS_DIR, `${spec.view}.${kind}.hbs`), 'utf8');
  return { subject: spec.subject, text: read('text'), html: read('html') };
}

/**
 * The email from its built-in views or an admin's override (rendered in the sandbox above). The HTML part
 * escapes every value; the subject and the text part are not HTML and must show `&` and `<` as they are.
 */
export function renderEmailTemplate(views: ViewRenderer, spec: EmailTemplateSpec, data: object, overrides: EmailTemplateOverrides = {}): RenderedEmail {
  const context = { ...data, layout: false as const };
  const renderPart = (part: EmailPart, render: () => string): string => {
    // Handlebars parses lazily, so a syntax error and a missing helper both surface on the first call: catch both
    // here and say which part of which email is broken, for the admin who edited it.
    try {
      return render();
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new EmailTemplateError(spec.label, part, reason, lineOf(err, reason), { cause: err });
    }
  };
  const subject = renderPart('subject', () => compileSandboxed(overrides.subject?.trim() || spec.subject, { noEscape: true })(context));
  const text = renderPart('text', () =>
    overrides.text?.trim() ? compileSandboxed(overrides.text, { noEscape: true })(context) : views.render(`${spec.view}.text`, context, { noEscape: true }),
  );
  const html = renderPart('html', () => (overrides.html?.trim() ? compileSandboxed(overrides.html)(context) : views.render(`${spec.view}.html`, context)));
  return {
    // a header is one line; nodemailer would fold it anyway, but a stray newline from a template is never meant
    subject: subject.replace(/\s+/g, ' ').trim(),
    text: tidyText(text),
    html,
  };
}

/** Handlebars puts the line in `lineNumber` for some errors and only in the message ("on line 3", "- 3:5") for others. */
function lineOf(err: unknown, reason: string): number | undefined {
  const fromError = (err as { lineNumber?: unknown } | null)?.lineNumber;
  if (typeof fromError === 'number') return fromError;
  const match = /on line (\d+)/.exec(reason) ?? / - (\d+):\d+$/.exec(reason);
  return match ? Number(match[1]) : undefined;
}

/** Block helpers leave blank lines behind in plain text; keep at most one empty line in a row. */
function tidyText(text: string): string {
  return `${text.replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trim()}\n`;
}
