import { AppError, badRequest, forbidden } from '../../core/errors.js';
import type { HookRegistry } from '../../core/hooks.js';
import type { Logger } from '../../core/logger.js';
import type { EventRecord, EventStore } from '../queue/store.js';
import type { JobHandler, QueueWorker } from '../queue/worker.js';
import type { Role } from '../members/store.js';
import { accessKeyMatches } from './access-key.js';
import { describeRejectedParams, mergeParams, parseAction, parseWebhookRequest, singleValue, type WebhookRequest } from './params.js';

declare module '../../core/hooks.js' {
  interface ActionMap {
    /** A Keap HTTP Post was accepted and its job is durably queued. */
    'webhook.received': [event: EventRecord, request: WebhookRequest];
  }
}

export const WEBHOOK_SOURCE = 'http_post';
const BUILT_IN_ACTIONS = ['add', 'update', 'update_tags', 'test'] as const;

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface WebhookServiceDeps {
  events: EventStore;
  worker: QueueWorker;
  hooks: HookRegistry;
  logger: Logger;
  accessKey: () => string;
  findRole: (slug: string) => Role | undefined;
  /**
   * BENCHMARK MODE ONLY (MEMBERHOOK_BENCH_INLINE=1): run the job and its follow-ups inside the request, before the
   * answer, as WordPress + WP Fusion does, so `npm run bench:inline` can compare the two. Never for production.
   */
  inline?: boolean;
}

/**
 * The receiver's rules: authenticate, validate, then one durable row and an answer. No Keap call and no
 * member work happens here (except in the benchmark-only inline mode, `inline`); Keap resends until it gets a
 * 200, so this path must be fast and idempotent.
 */
export class WebhookService {
  private readonly extraActions: string[] = [];

  constructor(private readonly deps: WebhookServiceDeps) {}

  /** The `wpf_action` values accepted: the built-in ones and any a plugin registered. */
  validActions(): string[] {
    return [...BUILT_IN_ACTIONS, ...this.extraActions];
  }

  /** Lets a plugin accept another `wpf_action`; its job runs `handler` in the worker like the built-in ones. */
  registerAction(name: string, handler: JobHandler): void {
    if (!/^[a-z][a-z0-9_]{0,39}$/.test(name)) throw new Error(`webhook action name "${name}" must be lowercase letters, digits and _`);
    if (this.validActions().includes(name)) throw new Error(`webhook action "${name}" is already registered`);
    this.deps.worker.register(name, handler);
    this.extraActions.push(name);
  }

  /** Handles one post. Refusals are recorded (without secrets) and answered; acceptances are queued. */
  async receive(query: unknown, body: unknown): Promise<WebhookAnswer> {
    let params: Record<string, unknown> = {};
    try {
      params = mergeParams(query, body);
      if (!accessKeyMatches(this.deps.accessKey(), singleValueOrUndefined(params, 'access_key'))) {
        throw forbidden('invalid access key');
      }
      const action = parseAction(params, this.validActions());
      // `test` checks the URL and key from Keap's campaign builder, which sends no contact.
      if (action === 'test') return { status: 200, body: { ok: true, test: true } };
      const request = parseWebhookRequest(params, action);
      this.checkRole(request.role);
      return await this.accept(request);
    } catch (err) {
      if (!(err instanceof AppError) || err.status >= 500) throw err;
      this.recordRejection(params, err.publicMessage);
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
    const params: Record<string, unknown> = { contact_id: request.contactId, ...request.extra };
    if (request.sendNotification !== undefined) params.send_notification = request.sendNotification;
    if (request.role !== undefined) params.role = request.role;
    const { id, coalesced } = await this.deps.events.enqueueSoon({
      source: WEBHOOK_SOURCE,
      action: request.action,
      contactId: request.contactId,
      params,
      eventType: `contact.${request.action}`,
      dedupeKey: [request.action, request.contactId, request.role ?? '', String(request.sendNotification ?? '')].join('|'),
    });
    this.deps.worker.notify();
    // Reading the row back costs a query on the hot path, so only when a handler wants it.
    if (!coalesced && this.deps.hooks.hasAction('webhook.received')) {
      await this.deps.hooks.doAction('webhook.received', this.deps.events.get(id)!, request);
    }
    if (this.deps.inline) return this.runInline(id);
    return { status: 200, body: { ok: true, event_id: id, status: 'queued' } };
  }

  /** Benchmark mode: answers once the job and its follow-ups ran; 200 only when all of them are done or skipped. */
  private async runInline(id: number): Promise<WebhookAnswer> {
    const records = await this.deps.worker.runInline(id);
    const ok = records.length > 0 && records.every((r) => r.status === 'done' || r.status === 'skipped');
    const body: Record<string, unknown> = { ok, event_id: id, status: records[0]?.status ?? 'unknown', jobs: records.map((r) => ({ id: r.id, action: r.action, status: r.status })) };
    if (!ok) body.error = records.find((r) => r.error)?.error ?? 'the job did not finish in the request';
    return { status: ok ? 200 : 500, body };
  }

  private recordRejection(params: Record<string, unknown>, reason: string): void {
    const action = typeof params.wpf_action === 'string' && params.wpf_action ? params.wpf_action.slice(0, 40) : '(none)';
    const rawContact = params.contactId ?? params.contact_id;
    const contactId = typeof rawContact === 'string' && /^[1-9]\d{0,14}$/.test(rawContact) ? Number(rawContact) : null;
    try {
      this.deps.events.recordRejected({ source: WEBHOOK_SOURCE, action, contactId, params: describeRejectedParams(params) }, reason);
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
