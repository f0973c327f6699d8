import { Router } from 'express';
import type { CorePlugin } from '../../plugins/types.js';
import { describeKeapConnection } from '../keap/connection-state.js';
import { loadDashboard } from './dashboard.js';

/** The admin's front page: members by role, the last day's events, the queue, Keap's connection and limits. */
export const dashboardPlugin: CorePlugin = {
  name: 'dashboard',
  description: 'The admin dashboard: members by role, events of the last 24 hours, the queue, Keap and recent failures.',
  setup(api) {
    const { kernel } = api;
    const router = Router();
    router.get('/', (_req, res) => {
      const data = loadDashboard({
        events: kernel.events,
        now: () => kernel.clock.now(),
        membersByRole: () => api.members.countByRole(),
        keapState: () => describeKeapConnection(api.keap, kernel.config.keap.apiUrl, () => api.siteSettings.keapApiKeySource()),
        disabledDestinations: () => api.outboundWebhooks.disabledNotices(),
      });
      api.admin.view(res, 200, 'dashboard', { title: 'Dashboard', ...data });
    });
    api.admin.addPage({ path: '', title: 'Dashboard', menu: { label: 'Dashboard', order: 10 }, handler: router });
  },
};
