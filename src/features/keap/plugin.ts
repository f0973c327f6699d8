import type { CorePlugin } from '../../plugins/types.js';
import type { KeapClient } from './client.js';
import { createKeapClient } from './index.js';
import { KeapRateLimiter } from './rate-limiter.js';
import { SqliteKeapTokenStore } from './token-store.js';

declare module '../../plugins/types.js' {
  interface PluginApi {
    /** The Keap client: the site's API key or OAuth connection, Keap's rate limits, retries and typed errors. */
    readonly keap: KeapClient;
  }
}

/**
 * The Keap REST client every feature that talks to Keap shares. Each thread has one (the request thread's and the job
 * thread's instances of the app), and their rate limiters keep one log in the process's shared memory: Keap counts
 * the calls of a key, whichever thread makes them.
 */
export const keapPlugin: CorePlugin = {
  name: 'keap',
  description: "The Keap API client: API key or OAuth2, Keap's rate limits from its headers, retries with back-off.",
  setup(api) {
    const { kernel } = api;
    const site = api.siteSettings;
    const tokens = new SqliteKeapTokenStore(kernel.db, kernel.secretBox);
    if (tokens.sealStored()) kernel.logger.info('encrypted the stored Keap OAuth tokens with the site key');
    const { rateLimit } = kernel.config.keap;
    const limiter = new KeapRateLimiter({
      ...rateLimit,
      clock: kernel.clock,
      logger: kernel.logger,
      shared: kernel.sharedMemory.block('keap-rate-limit', KeapRateLimiter.sharedBytes(rateLimit)),
    });
    const client = createKeapClient(kernel.config, kernel.logger, kernel.clock, { keapApiKey: () => site.keapApiKey() }, tokens, limiter);
    api.provide('keap', () => client);
  },
};
