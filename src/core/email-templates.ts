import Handlebars from 'handlebars';
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
