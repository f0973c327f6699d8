import type { CorePlugin } from '../../plugins/types.js';
import { eventAdminRoutes } from './admin-routes.js';

/** The event log: everything that arrived and every job it caused, with attempts and replay. */
export const eventsPlugin: CorePlugin = {
  name: 'events',
  description: 'The Events admin pages: the event log with filters, each event with its attempts, and replay.',
  setup(api) {
    const handler = eventAdminRoutes({
      ...api.kernel,
      admin: api.admin,
      memberOfContact: (contactId) => api.members.findByContactId(contactId),
      secrets: () => [api.accessKeys.current()],
    });
    api.admin.addPage({ path: 'events', title: 'Events', menu: { label: 'Events', order: 30 }, handler });
  },
};
