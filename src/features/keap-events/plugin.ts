import { RejectionLimiter } from '../../core/rejection-limiter.js';
import { SealedSettings } from '../../core/settings.js';
import type { CorePlugin } from '../../plugins/types.js';
import { addMembersSetting, addMembersTagSetting, keapEventsAdminRoutes, onDeleteSetting } from './admin-routes.js';
import { contactDeleted, fanOut, keapContactDeleted, keapHookDelivery } from './delivery.js';
import { HookTokens } from './hook-token.js';
import { kindPolled, POLL_JOBS, POLLED_RESOURCES, poll, pollNow, schedulePoll, type PolledResourceName } from './poller.js';
import { ReportedChanges } from './reported-changes.js';
import { hookFastRoute, hookReceiver } from './receiver.js';

/**
 * Keap's REST hooks: the subscriptions (Settings → Keap events), the receiver Keap posts its deliveries to, and the
 * job that turns each delivery into the member jobs an HTTP Post would queue for the same change.
 */
export const keapEventsPlugin: CorePlugin = {
  name: 'keap-events',
  description: "Keap's REST hooks: subscriptions from the admin, the receiver and its handshake, deliveries fanned out to member updates.",
  setup(api) {
    const { kernel } = api;
    kernel.hooks.declareDurable('keap.event');
    const tokens = new HookTokens(new SealedSettings(kernel.settings, kernel.secretBox), kernel.settings, kernel.clock);
    const reported = new ReportedChanges(kernel.db);
    api.jobs.define({ ...keapHookDelivery, run: (job) => fanOut({ transactions: kernel.transactions, jobs: kernel.jobs, reported, polled: (kind) => kindPolled(kernel.settings, kind), rules: { addMembers: () => addMembersSetting(kernel), addMembersOnlyWithTag: () => addMembersTagSetting(kernel), linkedContacts: (ids) => api.members.linkedContactIds(ids) } }, job) });
    api.jobs.define({ ...keapContactDeleted, run: (job) => contactDeleted({ members: api.members, onDelete: () => onDeleteSetting(kernel), now: () => kernel.clock.now() }, job) });
    const poller = {
      keap: api.keap,
      transactions: kernel.transactions,
      jobs: kernel.jobs,
      events: kernel.events,
      members: api.members,
      settings: kernel.settings,
      reported,
      clock: kernel.clock,
      logger: kernel.logger,
      publicUrl: kernel.config.publicUrl,
      memberMakingTag: () => (addMembersSetting(kernel) ? addMembersTagSetting(kernel) : undefined),
    };
    for (const { name, job } of POLL_JOBS) api.jobs.define({ ...job, run: () => poll(poller, name) });
    // One poll of each resource waits at any time (its dedupe key folds the one each start queues into the one waiting).
    for (const resource of POLLED_RESOURCES) schedulePoll(poller, resource);
    const receiver = { tokens, jobs: kernel.jobs, refusals: new RejectionLimiter(kernel.config.webhooks), logger: kernel.logger };
    // Deliveries as Keap sends them are answered ahead of express; the router answers the rest the same way.
    api.fastRoute(hookFastRoute(receiver));
    api.receiver.use(hookReceiver(receiver));
    api.admin.addPage({
      path: 'settings/keap-events',
      title: 'Keap events',
      menu: { label: 'Keap events', order: 25, parent: 'settings' },
      handler: keapEventsAdminRoutes({ ...kernel, admin: api.admin, keap: api.keap, tokens, pollNow: (resource: PolledResourceName) => pollNow(poller, resource) }),
    });
  },
};
