import { SealedSettings } from '../../core/settings.js';
import type { CorePlugin } from '../../plugins/types.js';
import type { SettingsContext } from './context.js';
import { keapSettingsRoutes } from './keap-routes.js';
import { memberSettingsRoutes } from './member-settings-routes.js';
import { settingsAdminRoutes } from './routes.js';
import { SiteSettings } from './site-settings.js';

declare module '../../plugins/types.js' {
  interface PluginApi {
    /** The settings admins edit (default role, Keap fields and key, welcome email), over environment variables. */
    readonly siteSettings: SiteSettings;
  }
}

/** Settings admins edit, over environment defaults, and the Settings pages for them. */
export const settingsPlugin: CorePlugin = {
  name: 'settings',
  description: 'Admin-editable settings and the Settings pages: webhook and access key, Keap connection, members and welcome email.',
  setup(api) {
    const { kernel } = api;
    const site = new SiteSettings(kernel.settings, kernel.config, new SealedSettings(kernel.settings, kernel.secretBox));
    if (site.sealStoredSecrets()) kernel.logger.info('encrypted the stored Keap API key with the site key');
    api.provide('siteSettings', () => site);
    // The services shown here come from built-ins set up after this one: read when a page is asked for.
    const ctx: SettingsContext = {
      ...kernel,
      site,
      admin: api.admin,
      get keap() {
        return api.keap;
      },
      get members() {
        return api.members;
      },
      get accessKeys() {
        return api.accessKeys;
      },
    };
    api.admin.addPage({ path: 'settings', title: 'Webhook & access key', menu: { label: 'Settings', order: 40 }, handler: settingsAdminRoutes(ctx) });
    api.admin.addPage({ path: 'settings/keap', title: 'Keap connection', menu: { label: 'Keap connection', order: 10, parent: 'settings' }, handler: keapSettingsRoutes(ctx) });
    api.admin.addPage({ path: 'settings/members', title: 'Site, members & emails', menu: { label: 'Site, members & emails', order: 20, parent: 'settings' }, handler: memberSettingsRoutes(ctx) });
  },
};
