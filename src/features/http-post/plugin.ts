import type { Job, JobOutcome } from '../../core/jobs/queue.js';
import { SealedSettings } from '../../core/settings.js';
import type { CorePlugin } from '../../plugins/types.js';
import { AccessKeyring } from './access-key.js';
import { webhookJobType, type WebhookJobParams } from './jobs.js';
import { RejectionLimiter } from '../../core/rejection-limiter.js';
import { webhookRoutes } from './routes.js';
import { WebhookService } from './service.js';

/** What `api.webhooks` gives a plugin. */
export interface WebhookActions {
  /**
   * Accepts a new `wpf_action` in Keap's HTTP Posts. Its posts are authenticated, validated and queued like the
   * built-in ones; the job runs `job` (a function, which becomes the job type `<plugin>.<action>`, or the name of a
   * job type the plugin defined with params that accept WebhookJobParams). Undone when the plugin stops.
   */
  addAction(wpfAction: string, job: string | ((job: Job<WebhookJobParams>) => Promise<JobOutcome | void>)): void;
}

declare module '../../plugins/types.js' {
  interface PluginApi {
    /** Keap HTTP Post actions (`wpf_action`). */
    readonly webhooks: WebhookActions;
    /** The webhook access key Keap's posts must carry (shown and rotated in Settings). */
    readonly accessKeys: AccessKeyring;
  }
}

/**
 * The Keap HTTP Post receiver at `POST /` and `POST /webhooks/keap`: WP Fusion's wire format, checked with the
 * access key, one durable row per accepted post, answered in milliseconds.
 */
export const httpPostPlugin: CorePlugin = {
  name: 'http-post',
  description: "Receives Keap's campaign HTTP Posts (wpf_action, access_key, contactId) and queues their jobs.",
  setup(api) {
    const { kernel } = api;
    const accessKeys = new AccessKeyring(kernel.settings, new SealedSettings(kernel.settings, kernel.secretBox), kernel.config.accessKey);
    // Printed once the server listens, and again at the next start if this one never got that far.
    if (accessKeys.unseen) {
      kernel.announce(
        `A webhook access key was generated and stored. It is shown this once; put it in your Keap HTTP Posts as access_key:\n\n    ${accessKeys.current()}\n`,
        () => accessKeys.markSeen(),
      );
    }
    const refusals = new RejectionLimiter(kernel.config.webhooks);
    const service = new WebhookService({
      events: kernel.events,
      jobs: kernel.jobs,
      hooks: kernel.hooks,
      logger: kernel.logger,
      accessKey: () => accessKeys.current(),
      findRole: (slug) => api.members.role(slug),
      refusals,
    });
    api.provide('accessKeys', () => accessKeys);
    api.provide('webhooks', (scope) => ({
      addAction(wpfAction, job) {
        let type: string;
        if (typeof job === 'function') {
          type = scope.core ? wpfAction : `${scope.name}.${wpfAction}`;
          scope.addUndo(kernel.jobs.define({ ...webhookJobType(wpfAction, type), run: job }, scope.core ? null : scope.name));
        } else {
          type = !scope.core && kernel.jobs.has(`${scope.name}.${job}`) ? `${scope.name}.${job}` : job;
          if (!kernel.jobs.has(type)) throw new Error(`webhook action "${wpfAction}": no job type "${job}" is defined`);
        }
        scope.addUndo(service.addAction(wpfAction, type, scope.core));
        scope.record('webhook', wpfAction);
      },
    }));
    const routes = webhookRoutes(service, refusals, kernel.logger);
    api.fastRoute(routes.fast);
    routes.addTo(api.receiver);
  },
};
