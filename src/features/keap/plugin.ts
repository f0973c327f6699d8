import type { CorePlugin } from '../../plugins/types.js';
import type { KeapClient } from './client.js';
import { createKeapClient } from './index.js';

declare module '../../plugins/types.js' {
  interface PluginApi {
    /** The Keap client: the site's API key or OAuth connection, Keap's rate limits, retries and typed errors. */
    readonly keap: KeapClient;
  }
}

/** The Keap REST client every feature that talks to Keap shares (one rate limiter for the site's key). */
export const keapPlugin: CorePlugin = {
  name: 'keap',
  description: "The Keap API client: API key or OAuth2, Keap's rate limits from its headers, retries with back-off.",
  setup(api) {
    const { kernel } = api;
    const site = api.siteSettings;
    const client = createKeapClient(kernel.config, kernel.db, kernel.logger, kernel.clock, { keapApiKey: () => site.keapApiKey() });
    api.provide('keap', () => client);
  },
};
