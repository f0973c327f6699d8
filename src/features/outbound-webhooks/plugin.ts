import { randomUUID } from 'node:crypto';
import { isoNow } from '../../core/db.js';
import type { ActionMap } from '../../core/hooks.js';
import { DAY_MS } from '../../core/maintenance.js';
import type { CorePlugin, CorePluginApi } from '../../plugins/types.js';
import { publicMember } from '../members/public-shape.js';
import type { Member } from '../members/types.js';
import { outboundAdminRoutes } from './admin-routes.js';
import { OutboundAuth } from './auth.js';
import { OutboundDispatcher, type DispatcherOptions } from './dispatcher.js';
import { keapEventData, MEMBER_EVENT_TYPES, type MemberEventType } from './events.js';
import { OutboundWebhooks, type EventSubject } from './service.js';
import type { DestinationRow } from './store.js';
import type { OutboundEvent } from './template.js';

declare module '../../plugins/types.js' {
  interface PluginApi {
    /** Outbound webhooks: connections, destinations, the delivery log, replays and test sends (see service.ts). */
    readonly outboundWebhooks: OutboundWebhooks;
  }
}

/** How long finished deliveries (and their attempts) stay in the delivery log. */
export const KEEP_FINISHED_DELIVERIES_MS = 30 * DAY_MS;

/**
 * The dispatcher's tuning for tests and benchmarks (the defaults suit a site): set before the plugins start. Not a
 * setting: a site has no reason to change it.
 */
export const dispatcherTuning: { options: DispatcherOptions; created?: (dispatcher: OutboundDispatcher) => void } = { options: {} };

/**
 * Outbound webhooks (issue 13): member and Keap events delivered to other systems. Each event is recorded by a
 * durable hook handler (the transactional outbox: committed with the change, run as a job) as one delivery per
 * enabled destination that takes it; the dispatcher, a background service on the thread that runs the jobs, sends
 * them signed (Standard Webhooks), retried on a schedule, each attempt logged.
 */
export const outboundWebhooksPlugin: CorePlugin = {
  name: 'outbound-webhooks',
  description: 'Outbound webhooks: connections and destinations that receive member and Keap events, signed, retried and logged.',
  setup(api) {
    const { kernel } = api;
    const allowPrivate = () => kernel.config.outbound.allowPrivate;
    // Token failures are kept in the settings table: the deliveries (on the job thread) record them, the connection page
    // (on the request thread) shows them.
    const auth = new OutboundAuth({ clock: kernel.clock, allowPrivate, errorBoard: kernel.settings });
    const sender = { allowPrivate, userAgent: `memberhook/${kernel.config.version} (+outbound webhooks)` };
    let dispatcher: OutboundDispatcher | undefined;
    const service = new OutboundWebhooks({
      db: kernel.db,
      clock: kernel.clock,
      secretBox: kernel.secretBox,
      auth,
      sender,
      // On the thread that runs the dispatcher this wakes it at once; elsewhere (the request thread, for a replay)
      // the job queue's wake-up reaches the job thread, where the dispatcher listens for it.
      wake: () => (kernel.background.running ? dispatcher?.wake() : kernel.jobs.wake()),
    });
    dispatcher = new OutboundDispatcher(
      { service, sender: { ...sender, auth }, clock: kernel.clock, logger: api.logger, onDisabled: (destination, reason) => void tellAdministrators(api, service, destination, reason) },
      dispatcherTuning.options,
    );
    dispatcherTuning.created?.(dispatcher);
    kernel.jobs.onWake(() => dispatcher.wake());
    api.onStop(kernel.background.add('outbound-webhooks', dispatcher));
    api.onStop(
      kernel.maintenance.add('outbound-deliveries', (now) => {
        const purged = service.store.purge(now - KEEP_FINISHED_DELIVERIES_MS);
        return purged > 0 ? `deleted ${purged} finished outbound deliveries older than ${KEEP_FINISHED_DELIVERIES_MS / DAY_MS} days` : undefined;
      }),
    );
    recordMemberEvents(api, service);
    api.hooks.addAction(
      'keap.event',
      (event) => {
        const contactId = event.objectType === 'contact' && /^\d+$/.test(event.objectId) ? Number(event.objectId) : undefined;
        const member = contactId === undefined ? undefined : api.members.findByContactId(contactId);
        service.recordEvent(outboundEvent(api, `keap.${event.eventType}`, keapEventData(event, member)), member ? subjectOf(member) : null);
      },
      { durable: true, wanted: (event) => service.takesEvent(`keap.${event.eventType}`) },
    );
    api.provide('outboundWebhooks', () => service);
    api.admin.addPage({
      path: 'settings/outbound-webhooks',
      title: 'Outbound webhooks',
      menu: { label: 'Outbound webhooks', order: 30, parent: 'settings' },
      handler: outboundAdminRoutes({ admin: api.admin, service, members: api.members, logger: api.logger, clock: kernel.clock }),
    });
  },
};

/** One durable handler per member action, each recording the action as the outbound event of the same name. */
function recordMemberEvents(api: CorePluginApi, service: OutboundWebhooks): void {
  const on = <N extends keyof ActionMap & MemberEventType>(name: N, data: (...args: ActionMap[N]) => { member: Member } & Record<string, unknown>) => {
    api.hooks.addAction(
      name,
      (...args: ActionMap[N]) => {
        const payload = data(...args);
        service.recordEvent(outboundEvent(api, name, { ...payload, member: publicMember(payload.member) }), subjectOf(payload.member));
      },
      { durable: true, wanted: () => service.takesEvent(name) },
    );
  };
  on('member.created', (member) => ({ member }));
  on('member.updated', (member, changed) => ({ member, changed }));
  on('member.tags_changed', (member, change) => ({ member, added: change.added, removed: change.removed }));
  on('member.role_changed', (member, change) => ({ member, from: change.from, to: change.to }));
  on('member.deleted', (member) => ({ member }));
  on('member.logged_in', (member) => ({ member }));
  on('member.password_changed', (member, how) => ({ member, how }));
  void MEMBER_EVENT_TYPES;
}

/**
 * The event for the recorded action this durable handler runs for: its id is the outbox row's (with the time, as
 * row ids may be reused once old rows are purged), the same on every run, so a second run records nothing new and
 * receivers see one `webhook-id` per change; its timestamp is the change's commit.
 */
function outboundEvent(api: CorePluginApi, type: string, data: unknown): OutboundEvent {
  const recorded = api.kernel.outbox.recordedAction();
  if (!recorded) return { id: `evt_${randomUUID()}`, type, timestamp: isoNow(api.kernel.clock.now()), data };
  return { id: `evt_${Date.parse(recorded.recordedAt).toString(36)}_${recorded.id}`, type, timestamp: recorded.recordedAt, data };
}

function subjectOf(member: Member): EventSubject {
  return { tagIds: member.tags.map((t) => t.id), role: member.role };
}

/** A destination was disabled by the dispatcher: an email to every administrator (the dashboard shows it too). */
async function tellAdministrators(api: CorePluginApi, service: OutboundWebhooks, destination: DestinationRow, reason: string): Promise<void> {
  const connection = service.store.connection(destination.connection_id);
  const addresses = new Set<string>();
  for (const role of api.members.roles().filter((r) => r.isAdmin)) {
    for (const admin of api.members.list({ role: role.slug, page: 1, pageSize: 50 }).members) addresses.add(admin.email);
  }
  if (api.kernel.config.admin) addresses.add(api.kernel.config.admin.email);
  const where = `${api.kernel.config.publicUrl.replace(/\/$/, '')}/admin/settings/outbound-webhooks`;
  for (const to of addresses) {
    try {
      await api.mail.send({
        to,
        subject: `Outbound webhook destination "${destination.name}" was disabled`,
        text:
          `The destination "${destination.name}" of the connection "${connection?.name ?? ''}" was disabled: ${reason}.\n\n` +
          `Its deliveries wait until it is enabled again (${where}); failed ones can be replayed from its delivery log.\n`,
      });
    } catch (err) {
      api.logger.error({ err, destination: destination.id }, 'the email telling an administrator that a destination was disabled could not be sent');
    }
  }
}
