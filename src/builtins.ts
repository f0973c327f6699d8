import { apiPlugin } from './features/api/plugin.js';
import { dashboardPlugin } from './features/dashboard/plugin.js';
import { eventsPlugin } from './features/events/plugin.js';
import { httpPostPlugin } from './features/http-post/plugin.js';
import { keapEventsPlugin } from './features/keap-events/plugin.js';
import { keapImportPlugin } from './features/keap-import/plugin.js';
import { keapPlugin } from './features/keap/plugin.js';
import { memberSyncPlugin } from './features/member-sync/plugin.js';
import { membersPlugin } from './features/members/plugin.js';
import { outboundWebhooksPlugin } from './features/outbound-webhooks/plugin.js';
import { rolesPlugin } from './features/roles/plugin.js';
import { settingsPlugin } from './features/settings/plugin.js';
import { welcomeEmailPlugin } from './features/welcome-email/plugin.js';
import type { CorePlugin } from './plugins/types.js';

/**
 * memberhook's own features, each a plugin on the same API a third party gets, set up in this order (a feature's
 * setup may use the services of those before it; pages and jobs use them only when they run). They cannot be
 * disabled. Third-party plugins start after them, in name order.
 */
export const BUILT_IN_PLUGINS: readonly CorePlugin[] = [
  settingsPlugin,
  membersPlugin,
  keapPlugin,
  httpPostPlugin,
  memberSyncPlugin,
  keapEventsPlugin,
  keapImportPlugin,
  outboundWebhooksPlugin,
  welcomeEmailPlugin,
  rolesPlugin,
  eventsPlugin,
  apiPlugin,
  dashboardPlugin,
];
