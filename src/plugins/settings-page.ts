import { Router } from 'express';
import type { z } from 'zod';
import { formFields } from '../core/forms.js';
import type { AdminShell } from '../web/admin-shell.js';
import { describeZodIssue } from '../core/errors.js';
import type { PluginSettingsStore } from './settings.js';

/** `/admin/plugins/<name>/settings`: the form generated from a plugin's settings schema. */
export function pluginSettingsRoutes(shell: AdminShell, plugin: string, settings: PluginSettingsStore<z.ZodObject>): Router {
  const router = Router();
  const render = (res: Parameters<AdminShell['view']>[0], status: number, extra: Record<string, unknown> = {}) =>
    shell.view(res, status, 'plugins/settings', { title: `${plugin} settings`, section: 'plugins', plugin, fields: settings.fields(), ...extra });

  router.get('/', (req, res) => render(res, 200, { saved: req.query.saved === '1' }));

  router.post('/', (req, res) => {
    const values = settings.valuesFromForm(formFields(req));
    try {
      settings.set(values);
    } catch (err) {
      const issue = (err as z.ZodError).issues?.[0];
      if (!issue) throw err;
      const field = String(issue.path[0] ?? '');
      // The form shows what was typed (never a secret's value) with the problem beside its field.
      const fields = settings.fields().map((f) => (f.input === 'password' || !(f.key in values) ? f : { ...f, value: String(values[f.key as keyof typeof values] ?? ''), checked: values[f.key as keyof typeof values] === true }));
      return render(res, 400, { fields: fields.map((f) => ({ ...f, error: f.key === field ? issue.message : undefined })), error: `Not saved: ${describeZodIssue(err as z.ZodError)}` });
    }
    res.redirect(303, `/admin/plugins/${plugin}/settings?saved=1`);
  });

  return router;
}
