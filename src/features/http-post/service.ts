import { addressKey } from '../../core/client-address.js';
import { AppError, badRequest, forbidden } from '../../core/errors.js';
import type { HookRegistry } from '../../core/hooks.js';
import type { JobQueue } from '../../core/jobs/queue.js';
import type { EventRecord, EventStore } from '../../core/jobs/store.js';
import type { Logger } from '../../core/logger.js';
import type { Role } from '../members/types.js';
import { accessKeyMatches } from './access-key.js';
import type { WebhookJobParams } from './jobs.js';
import { TOO_MANY_REJECTIONS, type RejectionLimiter } from '../../core/rejection-limiter.js';
import { describeRejectedParams, mergeParams, parseAction, parseWebhookRequest, singleValue, type WebhookRequest } from './params.js';

declare module '../../core/hooks.js' {
  interface ActionMap {
    /**
     * A Keap HTTP Post was accepted and its job is durably queued (not fired for a post folded into a waiting one).
     * The post's answer waits for the handlers: keep them quick.
     * @fires after the job's row commits, before the post is answered
     */
    'webhook.received': [event: EventRecord, request: WebhookRequest];
  }
}

export const WEBHOOK_SOURCE = 'http_post';
/** Answered at once, for checking the URL and key from Keap's campaign builder (which sends no contact). */
const TEST_ACTION = 'test';

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
  /** Set on a 429: seconds until the sender's keyless posts are heard again (the Retry-After header). */
  retryAfterSeconds?: number;
}

export interface WebhookServiceDeps {
  events: EventStore;
  jobs: JobQueue;
  hooks: HookRegistry;
  logger: Logger;
  accessKey: () => string;
  findRole: (slug: string) => Role | undefined;
  /** Counts refusals per address and holds back keyless posts from an address past the limit. */
  refusals: RejectionLimiter;
}

interface WebhookAction {
  name: string;
  /** The job type its posts queue. */
  jobType: string;
  /** Registered by a built-in: listed before `test` in messages, as WP Fusion's own actions. */
  core: boolean;
}

/**
 * The receiver's rules: authenticate, validate, then one durable row and an answer. No Keap call and no member
 * work happens here; Keap resends until it gets a 200, so this path must be fast and idempotent. Which
 * `wpf_action`s exist is registered (`addAction`): the built-in add, update and update_tags as any plugin's.
 */
export class WebhookService {
  private actions: WebhookAction[] = [];
  /** Kept with `actions` rather than built again for every post. */
  private names: string[] = [TEST_ACTION];

  constructor(private readonly deps: WebhookServiceDeps) {}

  /** The `wpf_action` values accepted: the built-ins', `test`, then the plugins'. */
  validActions(): readonly string[] {
    return this.names;
  }

  /** Accepts another `wpf_action` whose posts queue a job of `jobType` (with WebhookJobParams). Returns the undo. */
  addAction(name: string, jobType: string, core: boolean): () => void {
    if (!/^[a-z][a-z0-9_]{0,39}$/.test(name)) throw new Error(`webhook action name "${name}" must be lowercase letters, digits and _`);
    if (this.validActions().includes(name)) throw new Error(`webhook action "${name}" is already registered`);
    const action: WebhookAction = { name, jobType, core };
    this.setActions([...this.actions, action]);
    return () => this.setActions(this.actions.filter((a) => a !== action));
  }

  private setActions(actions: WebhookAction[]): void {
    this.actions = actions;
    this.names = [...actions.filter((a) => a.core).map((a) => a.name), TEST_ACTION, ...actions.filter((a) => !a.core).map((a) => a.name)];
  }

  /**
   * Handles one post from the address `from` gives (worked out only if the post is refused). Refusals are recorded
   * (without secrets, with the client's address as the refusal limit counts it) and answered; acceptances are queued.
   * A post without the right key from an address past the refusal limit is answered 429 and not recorded; a post
   * with the right key is never held back.
   */
  async receive(query: unknown, body: unknown, from: () => string): Promise<WebhookAnswer> {
    let params: Record<string, unknown> = {};
    let keyed = false;
    try {
      params = mergeParams(query, body);
      if (!accessKeyMatches(this.deps.accessKey(), singleValueOrUndefined(params, 'access_key'))) {
        throw forbidden('invalid access key');
      }
      keyed = true;
      const action = parseAction(params, this.validActions());
      if (action === TEST_ACTION) return { status: 200, body: { ok: true, test: true } };
      const request = parseWebhookRequest(params, action);
      this.checkRole(request.role);
      return await this.accept(request);
    } catch (err) {
      if (!(err instanceof AppError) || err.status >= 500) throw err;
      if (!keyed) {
        const retryAfterSeconds = await this.deps.refusals.refusing(from);
        if (retryAfterSeconds !== undefined) return { status: 429, body: TOO_MANY_REJECTIONS, retryAfterSeconds };
      }
      this.recordRejection(params, err.publicMessage, addressKey(from()));
      return { status: err.status, body: { ok: false, error: err.publicMessage } };
    }
  }

  private checkRole(slug: string | undefined): void {
    if (slug === undefined) return;
    const role = this.deps.findRole(slug);
    if (!role) throw badRequest(`role "${slug}" does not exist`, 'role');
    if (role.isAdmin || !role.webhookAssignable) throw badRequest(`role "${slug}" cannot be assigned by webhook`, 'role');
  }

  private async accept(request: WebhookRequest): Promise<WebhookAnswer> {
    const action = this.actions.find((a) => a.name === request.action)!;
    const params: WebhookJobParams = { contact_id: request.contactId, ...request.extra };
    if (request.sendNotification !== undefined) params.send_notification = request.sendNotification;
    if (request.role !== undefined) params.role = request.role;
    const { id, coalesced } = await this.deps.jobs.enqueueSoon(action.jobType, params, { source: WEBHOOK_SOURCE });
    // Reading the row back costs a query on the hot path, so only when a handler wants it.
    if (!coalesced && this.deps.hooks.hasAction('webhook.received')) {
      await this.deps.hooks.doAction('webhook.received', this.deps.events.get(id)!, request);
    }
    return { status: 200, body: { ok: true, event_id: id, status: 'queued' } };
  }

  private recordRejection(params: Record<string, unknown>, reason: string, clientAddress: string | undefined): void {
    const action = typeof params.wpf_action === 'string' && params.wpf_action ? params.wpf_action.slice(0, 40) : '(none)';
    const rawContact = params.contactId ?? params.contact_id;
    const contactId = typeof rawContact === 'string' && /^[1-9]\d{0,14}$/.test(rawContact) ? Number(rawContact) : null;
    try {
      this.deps.events.recordRejected({ source: WEBHOOK_SOURCE, action, contactId, params: describeRejectedParams(params), clientAddress: clientAddress ?? null }, reason);
    } catch (err) {
      // The refusal itself must still be answered; losing its log row is the lesser harm.
      this.deps.logger.error({ err }, 'could not record a rejected webhook');
    }
    this.deps.logger.info({ action, contactId, reason }, 'webhook rejected');
  }
}

function singleValueOrUndefined(params: Record<string, unknown>, name: string): string | undefined {
  try {
    return singleValue(params, name);
  } catch {
    return undefined;
  }
}
