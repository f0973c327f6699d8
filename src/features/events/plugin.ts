import { EventRetention } from '../../core/jobs/retention.js';
import type { CorePlugin } from '../../plugins/types.js';
import { eventAdminRoutes } from './admin-routes.js';

/** The event log: everything that arrived and every job it caused, with attempts and replay; and its daily clean-up. */
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

    // Without it, finished events and refused posts would add rows forever.
    const retention = new EventRetention(api.kernel.db, api.kernel.events);
    const policy = api.kernel.config.retention;
    api.onStop(
      api.kernel.maintenance.add('event-retention', async (now) => {
        const { finished, refused, refusedOverCap } = await retention.run(now, policy);
        if (finished + refused + refusedOverCap === 0) return undefined;
        return `deleted ${finished} finished events older than ${policy.finishedDays} days, ${refused} refused requests older than ${policy.refusedDays} days and ${refusedOverCap} beyond ${policy.refusedPerAddress} from one address`;
      }),
    );
  },
};
