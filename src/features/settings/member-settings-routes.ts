import { Router, type Response } from 'express';
import { formFields } from '../../core/forms.js';
import type { RenderedEmail } from '../../core/mail.js';
import {
  checkWelcomeTemplate,
  defaultWelcomeTemplate,
  renderWelcomeEmail,
  sampleWelcomeData,
  WELCOME_EMAIL_VARIABLES,
  WelcomeTemplateError,
  type WelcomeEmailPart,
} from '../welcome-email/template.js';
import type { SettingsContext } from './context.js';

export const MEMBER_SETTINGS_PATH = '/admin/settings/members';


/** Per template part; the three together stay under the admin form parser's 64 KB. */
const TEMPLATE_MAX: Record<WelcomeEmailPart, number> = { subject: 500, text: 20_000, html: 40_000 };
const PART_NAMES: Record<WelcomeEmailPart, string> = { subject: 'subject', text: 'text body', html: 'HTML body' };

const NOTICES = {
  saved: 'The member settings are saved.',
  template_saved: 'The welcome email is saved. The next welcome email uses it.',
  template_reset: 'The welcome email is back to the built-in one.',
} as const;
type Notice = keyof typeof NOTICES;

type Template = Record<WelcomeEmailPart, string>;

interface PageExtras {
  notice?: string;
  errors?: { default_role?: string };
  /** The template as the admin sent it (a refused save or a preview), instead of the stored one. */
  template?: Template;
  templateErrors?: Partial<Record<WelcomeEmailPart, string>>;
  templateError?: string;
  preview?: RenderedEmail;
}

/** Admin pages (mounted after requireAdmin): Settings, Members and email tab: default role, always send welcome, welcome email template with preview. */
export function memberSettingsRoutes(ctx: SettingsContext): Router {
  const router = Router();
  const sample = () => sampleWelcomeData(ctx.siteName, ctx.config.publicUrl);

  const render = (res: Response, status: number, extras: PageExtras = {}) => {
    const defaultRole = ctx.site.defaultRole();
    const roles = ctx.members
      .roles()
      .filter((r) => !r.isAdmin)
      .map((r) => ({ slug: r.slug, name: r.name, selected: r.slug === defaultRole }));
    ctx.admin.view(res, status, 'settings/members', {
      title: 'Members & welcome email',
      defaultRole,
      defaultRoleFixedBy: ctx.site.fixedByEnvironment('defaultRole'),
      roles,
      alwaysSendWelcome: ctx.site.alwaysSendWelcome(),
      template: extras.template ?? currentTemplate(ctx),
      templateCustomized: Object.values(ctx.site.welcomeTemplate()).some((part) => part !== undefined),
      variables: WELCOME_EMAIL_VARIABLES.map((v) => ({ ...v, tag: `{{${v.name}}}` })),
      ...extras,
    });
  };

  router.get('/', (req, res) => {
    const done = typeof req.query.done === 'string' && Object.hasOwn(NOTICES, req.query.done) ? (req.query.done as Notice) : undefined;
    render(res, 200, done ? { notice: NOTICES[done] } : {});
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

  router.post('/welcome/preview', (req, res) => {
    const read = readTemplate(formFields(req));
    if (!read.ok) return render(res, 400, { template: read.template, templateErrors: read.errors });
    try {
      const preview = renderWelcomeEmail(ctx.views, sample(), read.template);
      render(res, 200, { template: read.template, preview });
    } catch (err) {
      render(res, 400, { template: read.template, ...templateFailure(err) });
    }
  });

  router.post('/welcome', (req, res) => {
    const read = readTemplate(formFields(req));
    if (!read.ok) return render(res, 400, { template: read.template, templateErrors: read.errors });
    try {
      checkWelcomeTemplate(ctx.views, read.template, sample());
    } catch (err) {
      return render(res, 400, { template: read.template, ...templateFailure(err) });
    }
    // A part identical to the built-in one is stored as "built-in", so it follows later improvements to the default.
    const builtIn = defaultWelcomeTemplate();
    const same = (part: WelcomeEmailPart) => read.template[part].trim() === builtIn[part].trim() || read.template[part].trim() === '';
    ctx.site.setWelcomeTemplate({
      subject: same('subject') ? '' : read.template.subject,
      text: same('text') ? '' : read.template.text,
      html: same('html') ? '' : read.template.html,
    });
    ctx.logger.info({ adminId: res.locals.admin?.id }, 'welcome email template saved');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=template_saved`);
  });

  router.post('/welcome/reset', (_req, res) => {
    ctx.site.setWelcomeTemplate({ subject: '', text: '', html: '' });
    ctx.logger.info({ adminId: res.locals.admin?.id }, 'welcome email template reset to the built-in one');
    res.redirect(303, `${MEMBER_SETTINGS_PATH}?done=template_reset`);
  });

  return router;
}

/** The stored template, each empty part filled with the built-in one, as the editor starts from. */
function currentTemplate(ctx: SettingsContext): Template {
  const stored = ctx.site.welcomeTemplate();
  const builtIn = defaultWelcomeTemplate();
  return { subject: stored.subject ?? builtIn.subject, text: stored.text ?? builtIn.text, html: stored.html ?? builtIn.html };
}

function readTemplate(b: Record<string, unknown>): { ok: true; template: Template } | { ok: false; template: Template; errors: Partial<Record<WelcomeEmailPart, string>> } {
  // Browsers send textarea line breaks as CRLF; templates are stored with plain LF.
  const read = (name: string) => (typeof b[name] === 'string' ? (b[name] as string).replace(/\r\n?/g, '\n') : '');
  const template: Template = { subject: read('subject').trim(), text: read('text'), html: read('html') };
  const errors: Partial<Record<WelcomeEmailPart, string>> = {};
  for (const part of ['subject', 'text', 'html'] as const) {
    if (template[part].length > TEMPLATE_MAX[part]) errors[part] = `The ${PART_NAMES[part]} is too long: at most ${TEMPLATE_MAX[part].toLocaleString('en')} characters.`;
  }
  if (/[\r\n]/.test(template.subject)) errors.subject = 'The subject is one line.';
  return Object.keys(errors).length > 0 ? { ok: false, template, errors } : { ok: true, template };
}

function templateFailure(err: unknown): Pick<PageExtras, 'templateErrors' | 'templateError'> {
  if (err instanceof WelcomeTemplateError) {
    const where = err.line === undefined ? '' : ` on line ${err.line}`;
    return {
      templateErrors: { [err.part]: `The ${PART_NAMES[err.part]} does not compile${where}: ${err.reason}` },
      templateError: `The ${PART_NAMES[err.part]} has an error${where}; nothing was saved.`,
    };
  }
  throw err;
}
