import { Router, type Response } from 'express';
import { formFields, formText } from '../core/forms.js';
import type { AdminShell } from '../web/admin-shell.js';
import { PluginStateError, type PluginHost, type PluginInfo } from './host.js';

const STATE_LABELS = { running: 'Enabled', disabled: 'Disabled', failed: 'Failed' } as const;

/**
 * `/admin/plugins`: every plugin found, built-ins first: what each registered, whether it runs, and why one failed.
 * Enable and disable apply at once and are remembered.
 */
export function pluginAdminRoutes(host: PluginHost, shell: AdminShell): Router {
  const router = Router();

  const render = (res: Response, status: number, extra: Record<string, unknown> = {}) => {
    const plugins = host.list().map(view);
    shell.view(res, status, 'plugins/list', {
      title: 'Plugins',
      builtIns: plugins.filter((p) => p.core),
      plugins: plugins.filter((p) => !p.core),
      ...extra,
    });
  };

  router.get('/', (req, res) => {
    const done = typeof req.query.done === 'string' ? req.query.done : undefined;
    const name = typeof req.query.plugin === 'string' && /^[a-z0-9-]{1,64}$/.test(req.query.plugin) ? req.query.plugin : undefined;
    const notice = done && name ? noticeFor(done, host.get(name)) : undefined;
    render(res, 200, { notice });
  });

  router.post('/', async (req, res) => {
    const body = formFields(req);
    const name = formText(body.plugin);
    const action = formText(body.action);
    if (action !== 'enable' && action !== 'disable') return render(res, 400, { error: 'Choose Enable or Disable for a plugin.' });
    try {
      const info = action === 'enable' ? await host.enable(name) : await host.disable(name);
      res.redirect(303, `/admin/plugins?done=${action}&plugin=${encodeURIComponent(info.name)}`);
    } catch (err) {
      if (!(err instanceof PluginStateError)) throw err;
      render(res, err.status, { error: `${name ? `${name}: ` : ''}${err.message}.` });
    }
  });

  return router;
}

function noticeFor(done: string, plugin: PluginInfo | undefined): string | undefined {
  if (!plugin) return undefined;
  if (plugin.state === 'failed') return undefined;
  if (done === 'enable' && plugin.state === 'running') return `${plugin.name} is enabled.`;
  if (done === 'disable' && plugin.state === 'disabled') return `${plugin.name} is disabled; its jobs wait until it is enabled again.`;
  return undefined;
}

function view(p: PluginInfo) {
  const byKind = (kind: string) => p.registrations.filter((r) => r.kind === kind).map((r) => r.label);
  const groups = [
    { label: 'Actions', items: byKind('action') },
    { label: 'Filters', items: byKind('filter') },
    { label: 'Routes', items: byKind('route') },
    { label: 'Admin pages', items: byKind('page') },
    { label: 'Jobs', items: byKind('job') },
    { label: 'Keap HTTP Post actions', items: byKind('webhook') },
    { label: 'Settings', items: byKind('setting') },
    { label: 'Tables', items: byKind('table') },
    { label: 'Services', items: byKind('service') },
  ].filter((g) => g.items.length > 0);
  return {
    ...p,
    stateLabel: STATE_LABELS[p.state],
    badge: p.state === 'running' ? 'ok' : p.state === 'failed' ? 'bad' : '',
    running: p.state === 'running',
    canToggle: !p.core && p.state !== 'failed',
    canRetry: !p.core && p.state === 'failed',
    groups,
  };
}
