import { Router, type Response } from 'express';
import { EmailTemplateError, type EmailPart, type EmailTemplateOverrides } from '../../core/email-templates.js';
import { formFields } from '../../core/forms.js';
import { MailError, singleEmailAddress, type RenderedEmail } from '../../core/mail.js';
import type { StoredSiteIdentity } from '../../core/site-identity.js';
import {
  defaultPasswordResetTemplate,
  PASSWORD_RESET_EMAIL_VARIABLES,
  renderPasswordResetEmail,
  samplePasswordResetData,
} from '../members/password-reset.js';
import { checkWelcomeTemplate, defaultWelcomeTemplate, renderWelcomeEmail, sampleWelcomeData, WELCOME_EMAIL_VARIABLES } from '../welcome-email/template.js';
import type { SettingsContext } from './context.js';

export const MEMBER_SETTINGS_PATH = '/admin/settings/members';
export const MEMBER_SETTINGS_TITLE = 'Site, members & emails';

/** Per template part; the three together stay under the admin form parser's 64 KB. */
const TEMPLATE_MAX: Record<EmailPart, number> = { subject: 500, text: 20_000, html: 40_000 };
const PART_NAMES: Record<EmailPart, string> = { subject: 'subject', text: 'text body', html: 'HTML body' };
/** A name shown in page titles and the From header: one short line. */
const NAME_MAX = 100;

const NOTICES = {
  saved: 'The member settings are saved.',
  site_saved: 'The site name and sender are saved. Pages and the next emails use them.',
  template_saved: 'The email is saved. The next one sent uses it.',
  template_reset: 'The email is back to the built-in one.',
  test_sent: '',
} as const;
type Notice = keyof typeof NOTICES;

type Template = Record<EmailPart, string>;
type EmailKey = 'welcome' | 'password-reset';

/** One email an admin edits on this page: where its templates are stored and how a sample of it renders. */
interface EditableEmail {
  key: EmailKey;
  heading: string;
  hint: string;
  variables: ReadonlyArray<{ name: string; description: string }>;
  builtIn(): Template;
  stored(): EmailTemplateOverrides;
  save(template: Template): void;
  /** Renders the sample member's email; throws EmailTemplateError for a broken template. */
  preview(template: Template): RenderedEmail;
  /** Throws EmailTemplateError when the template would fail for some member (every branch tried). */
  check(template: Template): void;
  /** A variable an edited body must use, or the email is pointless (the reset link). */
  requires?: string;
}

interface PageExtras {
  notice?: string;
  errors?: { default_role?: string };
  /** The site name and sender as the admin sent them (a refused save), with what was wrong. */
  identity?: StoredSiteIdentity;
  identityErrors?: Partial<Record<keyof StoredSiteIdentity, string>>;
  /** The email whose form was sent, with the template as sent (a refused save or a preview) instead of the stored one. */
  email?: EmailKey;
  template?: Template;
  templateErrors?: Partial<Record<EmailPart, string>>;
  templateError?: string;
  preview?: RenderedEmail;
}

/**
 * Admin pages (mounted after requireAdmin), Settings, "Site, members & emails": the site's name and its emails'
 * sender, the default role, "always send the welcome email", and the welcome and password reset emails'
 * templates with preview, a test send and "Reset to default".
 */
export function memberSettingsRoutes(ctx: SettingsContext): Router {
  const router = Router();
  const siteName = () => ctx.identity.siteName();

  const emails: Record<EmailKey, EditableEmail> = {
    welcome: {
      key: 'welcome',
      heading: 'Welcome email',
      hint: 'Sent to a new member: <code>{{#if password}}…{{else}}…{{/if}}</code> shows text only when memberhook generated the password.',
      variables: WELCOME_EMAIL_VARIABLES,
      builtIn: defaultWelcomeTemplate,
      stored: () => ctx.site.welcomeTemplate(),
      save: (template) => ctx.site.setWelcomeTemplate(template),
      preview: (template) => renderWelcomeEmail(ctx.views, sampleWelcomeData(siteName(), ctx.config.publicUrl), template),
      check: (template) => checkWelcomeTemplate(ctx.views, template, sampleWelcomeData(siteName(), ctx.config.publicUrl)),
    },
    'password-reset': {
      key: 'password-reset',
      heading: 'Password reset email',
      hint: 'Sent when a member (or an admin for them) asks to reset a password. The bodies must show <code>{{resetUrl}}</code>, the single-use link.',
      variables: PASSWORD_RESET_EMAIL_VARIABLES,
      builtIn: defaultPasswordResetTemplate,
      stored: () => ctx.site.passwordResetTemplate(),
      save: (template) => ctx.site.setPasswordResetTemplate(template),
      preview: (template) => renderPasswordResetEmail(ctx.views, samplePasswordResetData(siteName(), ctx.config.publicUrl), template),
      check: (template) => void renderPasswordResetEmail(ctx.views, samplePasswordResetData(siteName(), ctx.config.publicUrl), template),
      requires: 'resetUrl',
    },
  };

  const render = (res: Response, status: number, extras: PageExtras = {}) => {
    const defaultRole = ctx.site.defaultRole();
    const roles = ctx.members
      .roles()
      .filter((r) => !r.isAdmin)
      .map((r) => ({ slug: r.slug, name: r.name, selected: r.slug === defaultRole }));
    const defaults = ctx.identity.defaults;
    ctx.admin.view(res, status, 'settings/members', {
      title: MEMBER_SETTINGS_TITLE,
      defaultRole,
      defaultRoleFixedBy: ctx.site.fixedByEnvironment('defaultRole'),
      roles,
      alwaysSendWelcome: ctx.site.alwaysSendWelcome(),
      identity: extras.identity ?? ctx.identity.stored(),
      identityErrors: extras.identityErrors,
      identityDefaults: {
        siteName: defaults.siteName,
        siteNameFrom: ctx.config.fromEnvironment.has('SITE_NAME') ? 'SITE_NAME' : undefined,
        senderName: defaults.sender.name ?? 'the site name',
        senderAddress: defaults.sender.address,
        senderFrom: ctx.config.fromEnvironment.has('MAIL_FROM') ? 'MAIL_FROM' : undefined,
      },
      sender: ctx.identity.sender(),
      adminEmail: res.locals.admin?.email,
      emails: Object.values(emails).map((email) => {
        const sent = extras.email === email.key;
        return {
          key: email.key,
          heading: email.heading,
          hint: email.hint,
          variables: email.variables.map((v) => ({ ...v, tag: `{{${v.name}}}` })),
          template: (sent ? extras.template : undefined) ?? currentTemplate(email),
          customized: Object.values(email.stored()).some((part) => part !== undefined),
          ...(sent ? { errors: extras.templateErrors, error: extras.templateError, preview: extras.preview } : {}),
        };
      }),
      notice: extras.notice,
      errors: extras.errors,
    });
  };

  router.get('/', (req, res) => {
    const done = typeof req.query.done === 'string' && Object.hasOwn(NOTICES, req.query.done) ? (req.query.done as Notice) : undefined;
    // Test emails go to the admin's own address: named from the session, never from the URL.
    const notice = done === 'test_sent' ? `A test email was sent to ${String(res.locals.admin?.email ?? 'your address')}.` : done ? NOTICES[done] : undefined;
    render(res, 200, notice ? { notice } : {});
  });

  router.post('/', (req, res) => {
    const body = formFields(req);
    const sentRole = body.default_role;
    const fixedBy = ctx.site.fixedByEnvironment('defaultRole');
    let role: string | undefined;
    if (sentRole !== undefined) {
      if (fixedBy) return render(res, 400, { errors: { default_role: `The default role is set by ${fixedBy} in the environment and cannot be changed here.` } });
      const slug = typeof sentRole === 'string' ? sentRole.trim() : '';
      const found = slug ? ctx.members.role(slug) : undefined;
      if (!found) return render(res, 400, { errors: { default_role: 'Choose one of the roles listed.' } });
      if (found.isAdmin) return render(res, 400, { errors: { default_role: `“${found.name}” has admin rights and cannot be the default role.` } });
      role = found.slug;
    }
    // Checkboxes send nothing when unticked.
    const alwaysSend = body.always_send_welcome === '1' || body.always_send_welcome === 'on';
    if (role !== undefined) ctx.site.setDefaultRole(role);
    ctx.site.setAlwaysSendWelcome(alwaysSend);
    ctx.logger.info({ adminId: res.locals.admin?.id, defaultRole: ctx.site.defaultRole(), alwaysSendWelcome: alwaysSend }, 'member settings saved');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=saved`);
  });

  router.post('/site', (req, res) => {
    const read = readIdentity(formFields(req));
    if (!read.ok) return render(res, 400, { identity: read.identity, identityErrors: read.errors });
    ctx.identity.set(read.identity);
    const sender = ctx.identity.sender();
    ctx.logger.info({ adminId: res.locals.admin?.id, siteName: ctx.identity.siteName(), sender: sender.address }, 'site name and sender saved');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=site_saved#site`);
  });

  const emailOf = (key: string | undefined): EditableEmail | undefined => (key === 'welcome' || key === 'password-reset' ? emails[key] : undefined);

  /** The sent template, checked: its length and lines, then that it renders for every kind of member. */
  const checked = (email: EditableEmail, b: Record<string, unknown>): { ok: true; template: Template } | { ok: false; extras: PageExtras } => {
    const read = readTemplate(b);
    if (!read.ok) return { ok: false, extras: { email: email.key, template: read.template, templateErrors: read.errors, templateError: `The ${email.heading.toLowerCase()} was not saved: ${Object.values(read.errors)[0]}` } };
    try {
      email.check(read.template);
    } catch (err) {
      return { ok: false, extras: { email: email.key, template: read.template, ...templateFailure(email, err) } };
    }
    const missing = email.requires ? missingVariable(read.template, email.requires) : undefined;
    if (missing) {
      const error = `The ${PART_NAMES[missing]} must show {{${email.requires}}}: without it the email is of no use.`;
      return { ok: false, extras: { email: email.key, template: read.template, templateErrors: { [missing]: error }, templateError: `The ${email.heading.toLowerCase()} was not saved: ${error}` } };
    }
    return { ok: true, template: read.template };
  };

  router.post('/:email/preview', (req, res, next) => {
    const email = emailOf(req.params.email);
    if (!email) return next();
    const result = checked(email, formFields(req));
    if (!result.ok) return render(res, 400, result.extras);
    render(res, 200, { email: email.key, template: result.template, preview: email.preview(result.template) });
  });

  router.post('/:email/test', async (req, res, next) => {
    const email = emailOf(req.params.email);
    if (!email) return next();
    const result = checked(email, formFields(req));
    if (!result.ok) return render(res, 400, result.extras);
    const to = res.locals.admin?.email as string | undefined;
    if (!to) return next();
    const message = email.preview(result.template);
    try {
      await ctx.mailer.send({ to, subject: `[Test] ${message.subject}`, text: message.text, html: message.html });
    } catch (err) {
      if (!(err instanceof MailError)) throw err;
      // MailError's message never holds the SMTP password (core/mail.ts).
      return render(res, 502, { email: email.key, template: result.template, templateError: `The test email could not be sent: ${err.message}` });
    }
    ctx.logger.info({ adminId: res.locals.admin?.id, email: email.key }, 'test email sent');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=test_sent#${email.key}-email`);
  });

  router.post('/:email/reset', (req, res, next) => {
    const email = emailOf(req.params.email);
    if (!email) return next();
    email.save({ subject: '', text: '', html: '' });
    ctx.logger.info({ adminId: res.locals.admin?.id, email: email.key }, 'email template reset to the built-in one');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=template_reset#${email.key}-email`);
  });

  router.post('/:email', (req, res, next) => {
    const email = emailOf(req.params.email);
    if (!email) return next();
    const result = checked(email, formFields(req));
    if (!result.ok) return render(res, 400, result.extras);
    // A part identical to the built-in one is stored as "built-in", so it follows later improvements to the default.
    const builtIn = email.builtIn();
    const same = (part: EmailPart) => result.template[part].trim() === builtIn[part].trim() || result.template[part].trim() === '';
    email.save({
      subject: same('subject') ? '' : result.template.subject,
      text: same('text') ? '' : result.template.text,
      html: same('html') ? '' : result.template.html,
    });
    ctx.logger.info({ adminId: res.locals.admin?.id, email: email.key }, 'email template saved');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=template_saved#${email.key}-email`);
  });

  /** The stored template, each empty part filled with the built-in one, as the editor starts from. */
  function currentTemplate(email: EditableEmail): Template {
    const stored = email.stored();
    const builtIn = email.builtIn();
    return { subject: stored.subject ?? builtIn.subject, text: stored.text ?? builtIn.text, html: stored.html ?? builtIn.html };
  }

  return router;
}

function readIdentity(b: Record<string, unknown>): { ok: true; identity: StoredSiteIdentity } | { ok: false; identity: StoredSiteIdentity; errors: Partial<Record<keyof StoredSiteIdentity, string>> } {
  const read = (name: string) => (typeof b[name] === 'string' ? (b[name] as string).trim() : '');
  const identity: StoredSiteIdentity = { siteName: read('site_name'), senderName: read('sender_name'), senderAddress: read('sender_address') };
  const errors: Partial<Record<keyof StoredSiteIdentity, string>> = {};
  // eslint-disable-next-line no-control-regex
  const oneLine = (value: string) => !/[\u0000-\u001f\u007f]/.test(value);
  if (identity.siteName.length > NAME_MAX) errors.siteName = `The site name is too long: at most ${NAME_MAX} characters.`;
  else if (!oneLine(identity.siteName)) errors.siteName = 'The site name is one line of text.';
  if (identity.senderName.length > NAME_MAX) errors.senderName = `The sender name is too long: at most ${NAME_MAX} characters.`;
  else if (!oneLine(identity.senderName)) errors.senderName = 'The sender name is one line of text.';
  if (identity.senderAddress !== '') {
    const address = singleEmailAddress(identity.senderAddress);
    if (address === undefined) errors.senderAddress = 'The sender address must be one email address, like no-reply@example.com (no name, no list).';
  }
  return Object.keys(errors).length > 0 ? { ok: false, identity, errors } : { ok: true, identity };
}

function readTemplate(b: Record<string, unknown>): { ok: true; template: Template } | { ok: false; template: Template; errors: Partial<Record<EmailPart, string>> } {
  // Browsers send textarea line breaks as CRLF; templates are stored with plain LF.
  const read = (name: string) => (typeof b[name] === 'string' ? (b[name] as string).replace(/\r\n?/g, '\n') : '');
  const template: Template = { subject: read('subject').trim(), text: read('text'), html: read('html') };
  const errors: Partial<Record<EmailPart, string>> = {};
  for (const part of ['subject', 'text', 'html'] as const) {
    if (template[part].length > TEMPLATE_MAX[part]) errors[part] = `The ${PART_NAMES[part]} is too long: at most ${TEMPLATE_MAX[part].toLocaleString('en')} characters.`;
  }
  if (/[\r\n]/.test(template.subject)) errors.subject = 'The subject is one line.';
  return Object.keys(errors).length > 0 ? { ok: false, template, errors } : { ok: true, template };
}

/** The first edited body that never uses `variable` (an empty body is the built-in one, which does). */
function missingVariable(template: Template, variable: string): 'text' | 'html' | undefined {
  const uses = new RegExp(`\\{\\{\\{?~?\\s*${variable}\\s*~?\\}?\\}\\}`);
  return (['text', 'html'] as const).find((part) => template[part].trim() !== '' && !uses.test(template[part]));
}

function templateFailure(email: EditableEmail, err: unknown): Pick<PageExtras, 'templateErrors' | 'templateError'> {
  if (err instanceof EmailTemplateError) {
    const where = err.line === undefined ? '' : ` on line ${err.line}`;
    return {
      templateErrors: { [err.part]: `The ${PART_NAMES[err.part]} does not compile${where}: ${err.reason}` },
      templateError: `The ${PART_NAMES[err.part]} of the ${email.heading.toLowerCase()} has an error${where}; nothing was saved.`,
    };
  }
  throw err;
}
