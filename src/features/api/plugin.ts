import type { CorePlugin } from '../../plugins/types.js';
import { apiTokenAdminRoutes } from './admin-routes.js';
import { apiRoutes, type ApiContext } from './routes.js';
import { ApiTokenStore } from './tokens.js';

/** The JSON API under /api/v1 for scripts, and its tokens (Settings → API tokens). */
export const apiPlugin: CorePlugin = {
  name: 'api',
  description: 'The JSON API under /api/v1 (users, events, replay) and its bearer tokens.',
  setup(api) {
    const { kernel } = api;
    const tokens = new ApiTokenStore(kernel.db, kernel.clock);
    const ctx: ApiContext = {
      ...kernel,
      tokens,
      get members() {
        return api.members;
      },
      get outboundWebhooks() {
        return api.outboundWebhooks;
      },
    };
    api.router.use(apiRoutes(ctx));
    api.admin.addPage({
      path: 'settings/api-tokens',
      title: 'API tokens',
      menu: { label: 'API tokens', order: 40, parent: 'settings' },
      handler: apiTokenAdminRoutes({ ...kernel, admin: api.admin }, tokens),
    });
  },
};
