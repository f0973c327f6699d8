import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { SandboxHttpError } from './error-bodies.js';
import { sameSecret } from './oauth-server.js';
import type { HookDeliveryBody, HookDeliveryRecord, SandboxChange, SandboxHook, SandboxState } from './state.js';

/**
 * Keap's REST hooks in the sandbox: subscriptions with the `X-Hook-Secret` handshake (immediate and delayed), and
 * deliveries of the sandbox's own changes to Verified hooks, batched and retried on Keap's schedule (KEAP.md "REST
 * hook deliveries"). Every wait is measured on the sandbox's clock, so a test with a manual clock moves through the
 * retry schedule by advancing it and calling `deliverDue()`.
 */

/** The event keys `GET /v1/hooks/event_keys` lists: a live Keap account's list, in its order. */
export const HOOK_EVENT_KEYS = [
  'appointment.add', 'appointment.delete', 'appointment.edit',
  'company.add', 'company.delete', 'company.edit',
  'contact.add', 'contact.delete', 'contact.edit', 'contact.redact',
  'contactGroup.add', 'contactGroup.applied', 'contactGroup.delete', 'contactGroup.edit', 'contactGroup.removed',
  'invoice.add', 'invoice.delete', 'invoice.edit',
  'invoice.payment.add', 'invoice.payment.delete', 'invoice.payment.edit',
  'leadsource.add', 'leadsource.delete', 'leadsource.edit',
  'note.add', 'note.delete', 'note.edit',
  'opportunity.add', 'opportunity.delete', 'opportunity.edit', 'opportunity.stage_move',
  'order.add', 'order.delete', 'order.edit',
  'product.add', 'product.delete', 'product.edit',
  'subscription.add', 'subscription.delete', 'subscription.edit',
  'task.add', 'task.delete', 'task.edit',
  'user.activate', 'user.add', 'user.edit',
] as const;

/** Keap delivers these 5 to 10 minutes after the change instead of 30 to 60 seconds. */
const LATE_EVENT_KEYS = new Set(['contactGroup.applied', 'contactGroup.delete']);

/** Keap's most object_keys in one delivery. */
export const MAX_OBJECT_KEYS = 1000;

export interface HookOptions {
  /**
   * How long after the first change a batch is delivered; changes to the same hook in the meantime join it (up to
   * 1,000 objects). Keap: 30 to 60 s. Default 1000 (1 s), so a trial sees its changes arrive quickly.
   */
  batchWindowMs?: number;
  /** The same for `contactGroup.applied` and `contactGroup.delete` (Keap: 5 to 10 min). Default: `batchWindowMs`. */
  lateEventDelayMs?: number;
  /**
   * Waits before the 2nd, 3rd and 4th attempt of a failed batch; when the last one fails too, the hook goes Inactive.
   * Default Keap's [60000, 300000, 1800000] (it retries after 30-60 s, 5 min, 30 min; the sandbox waits the longest).
   */
  retryDelaysMs?: number[];
  /** How long the sandbox waits for a receiver's answer (handshakes too). Default Keap's 30000. */
  timeoutMs?: number;
  logger?: Logger;
}

export const HOOK_DEFAULTS = {
  batchWindowMs: 1_000,
  retryDelaysMs: [60_000, 300_000, 1_800_000],
  timeoutMs: 30_000,
} as const;

/** How often the running sandbox looks for due batches (real time; what is due is decided on the sandbox clock). */
const TICK_MS = 50;

export interface InjectedDeliveryFailure {
  /** Answer as if the receiver said this status (410 makes the hook Inactive); default: as if no answer came. */
  status?: number;
  /**
   * Send the delivery anyway, then count it failed whatever the receiver answered, as when its answer is lost on
   * the way back: the receiver gets the same batch again on the retry (duplicates). Default false: not sent.
   */
  afterDelivery?: boolean;
}

/** A batch waiting for its first attempt or a retry, as `pending()` shows it. */
export interface PendingHookBatch {
  batch: number;
  hookKey: string;
  eventKey: string;
  ids: number[];
  /** Attempts made so far (0 before the first). */
  attempts: number;
  /** When it is due (sandbox clock). */
  dueAt: number;
}

interface Batch {
  id: number;
  hookKey: string;
  eventKey: string;
  objectType: string;
  keys: Map<number, { id: number; apiUrl: string; timestamp: string }>;
  attempts: number;
  dueAt: number;
  inFlight: boolean;
}

export class SandboxHooks {
  private readonly batchWindowMs: number;
  private readonly lateEventDelayMs: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly timeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly batches = new Map<number, Batch>();
  /** The batch of each hook still taking changes (not yet attempted, not full). */
  private readonly openBatch = new Map<string, Batch>();
  /** The last secret sent to each hook, until a delayedVerify uses it or a new handshake replaces it. */
  private readonly secrets = new Map<string, string>();
  private readonly injected = new Map<string, InjectedDeliveryFailure[]>();
  private readonly running = new Set<Promise<unknown>>();
  private readonly closing = new AbortController();
  private nextBatchId = 1;
  private nextHookKey = 1;
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly state: SandboxState,
    private readonly now: () => number,
    options: HookOptions = {},
  ) {
    this.batchWindowMs = options.batchWindowMs ?? HOOK_DEFAULTS.batchWindowMs;
    this.lateEventDelayMs = options.lateEventDelayMs ?? this.batchWindowMs;
    this.retryDelaysMs = [...(options.retryDelaysMs ?? HOOK_DEFAULTS.retryDelaysMs)];
    this.timeoutMs = options.timeoutMs ?? HOOK_DEFAULTS.timeoutMs;
    this.logger = options.logger;
    const given: Array<[string, number]> = [
      ['batchWindowMs', this.batchWindowMs],
      ['lateEventDelayMs', this.lateEventDelayMs],
      ['timeoutMs', this.timeoutMs],
      ...this.retryDelaysMs.map((d): [string, number] => ['retryDelaysMs', d]),
    ];
    for (const [name, value] of given) {
      if (!Number.isFinite(value) || value < 0) throw new Error(`Keap sandbox: hook option ${name} must be a number of milliseconds >= 0 (got ${value})`);
    }
    state.onChange((change) => this.enqueue(change));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Subscriptions (the API in routes-hooks.ts)

  list(): SandboxHook[] {
    return [...this.state.hooks.values()];
  }

  require(key: string): SandboxHook {
    const hook = this.state.hooks.get(key);
    if (!hook) throw new SandboxHttpError(404, `Hook subscription with key ${key} not found`);
    return hook;
  }

  /** A new subscription starts Unverified; the handshake made before this returns may verify it. */
  async create(eventKey: string, hookUrl: string): Promise<SandboxHook> {
    this.checkEventKey(eventKey);
    checkHookUrl(hookUrl);
    this.checkOnePerEventKey(eventKey, undefined);
    const hook: SandboxHook = { key: String(this.nextHookKey++), eventKey, hookUrl, status: 'Unverified' };
    this.state.hooks.set(hook.key, hook);
    await this.handshake(hook);
    return hook;
  }

  /** A new hook URL must be verified again: the hook goes Unverified and gets a handshake at the new URL. */
  async update(key: string, changes: { eventKey?: string | undefined; hookUrl?: string | undefined }): Promise<SandboxHook> {
    const hook = this.require(key);
    if (changes.eventKey !== undefined) {
      this.checkEventKey(changes.eventKey);
      this.checkOnePerEventKey(changes.eventKey, key);
    }
    if (changes.hookUrl !== undefined) checkHookUrl(changes.hookUrl);
    if (changes.eventKey !== undefined && changes.eventKey !== hook.eventKey) {
      hook.eventKey = changes.eventKey;
      // Changes gathered for the old event key are not this subscription's any more.
      this.dropBatches(key, 'its event key changed');
    }
    if (changes.hookUrl !== undefined && changes.hookUrl !== hook.hookUrl) {
      hook.hookUrl = changes.hookUrl;
      hook.status = 'Unverified';
      await this.handshake(hook);
    }
    return hook;
  }

  remove(key: string): void {
    this.require(key);
    this.state.hooks.delete(key);
    this.secrets.delete(key);
    this.dropBatches(key, 'the subscription was deleted');
  }

  /** Immediate confirmation again: a new secret; an echo makes the hook Verified (an Inactive one reactivated). */
  async verify(key: string): Promise<SandboxHook> {
    const hook = this.require(key);
    await this.handshake(hook);
    return hook;
  }

  /** Delayed confirmation: the receiver sends back the secret it was sent; a match makes the hook Verified. */
  delayedVerify(key: string, secret: string | undefined): SandboxHook {
    const hook = this.require(key);
    if (secret === undefined || secret === '') throw new SandboxHttpError(400, 'X-Hook-Secret: send the secret this hook was sent, as a header');
    const expected = this.secrets.get(key);
    if (expected === undefined || !sameSecret(secret, expected)) {
      throw new SandboxHttpError(403, 'X-Hook-Secret does not match the secret last sent to this hook; request a new one with POST /v1/hooks/{key}/verify');
    }
    this.secrets.delete(key);
    hook.status = 'Verified';
    return hook;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Deliveries

  /** Starts looking for due batches every 50 ms (real time); the running sandbox does this, in-process apps do not. */
  start(): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => {
      this.deliverDue().catch((err: unknown) => this.logger?.error({ err }, 'keap sandbox: hook delivery failed'));
    }, TICK_MS);
    this.ticker.unref();
  }

  /** Stops the ticker and abandons deliveries under way (their records keep status 0). */
  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    this.closing.abort();
    await Promise.allSettled([...this.running]);
  }

  /**
   * Sends every batch due by the sandbox clock (first attempts and retries), one hook's batches in order, and
   * resolves when they and any deliveries already under way have their outcome. Returns the records of the
   * attempts it made.
   */
  deliverDue(): Promise<HookDeliveryRecord[]> {
    const now = this.now();
    return this.run((batch) => batch.dueAt <= now);
  }

  /** Sends every pending batch now, due or not; a batch failing now is retried on its schedule, not in this call. */
  flush(): Promise<HookDeliveryRecord[]> {
    return this.run(() => true);
  }

  /** Batches waiting for their first attempt or a retry. */
  pending(): PendingHookBatch[] {
    return [...this.batches.values()].map((b) => ({ batch: b.id, hookKey: b.hookKey, eventKey: b.eventKey, ids: [...b.keys.keys()], attempts: b.attempts, dueAt: b.dueAt }));
  }

  /**
   * The next `count` event deliveries to `hookUrl` fail: not sent (as if the receiver were down), or with
   * `afterDelivery` sent and then counted failed; as if no answer came, or as if the receiver answered
   * `failure.status`. Handshakes are not affected.
   */
  failNextDeliveries(hookUrl: string, count: number, failure: InjectedDeliveryFailure = {}): void {
    if (!Number.isInteger(count) || count < 1) throw new Error(`failNextDeliveries: count must be a positive integer (got ${count})`);
    const queue = this.injected.get(hookUrl) ?? [];
    for (let i = 0; i < count; i++) queue.push({ ...failure });
    this.injected.set(hookUrl, queue);
  }

  private enqueue(change: SandboxChange): void {
    for (const hook of this.state.hooks.values()) {
      // Keap sends events to Verified hooks only; what happens while a hook is Unverified or Inactive is not sent.
      if (hook.status !== 'Verified' || hook.eventKey !== change.eventKey) continue;
      let batch = this.openBatch.get(hook.key);
      if (!batch || (batch.keys.size >= MAX_OBJECT_KEYS && !batch.keys.has(change.id))) {
        const delay = LATE_EVENT_KEYS.has(change.eventKey) ? this.lateEventDelayMs : this.batchWindowMs;
        batch = { id: this.nextBatchId++, hookKey: hook.key, eventKey: hook.eventKey, objectType: change.objectType, keys: new Map(), attempts: 0, dueAt: this.now() + delay, inFlight: false };
        this.batches.set(batch.id, batch);
        this.openBatch.set(hook.key, batch);
      }
      // One object once per batch: a contact edited twice within the window is one entry, with the later time.
      const existing = batch.keys.get(change.id);
      if (existing) existing.timestamp = change.timestamp;
      else batch.keys.set(change.id, { id: change.id, apiUrl: '', timestamp: change.timestamp });
    }
  }

  private run(pick: (batch: Batch) => boolean): Promise<HookDeliveryRecord[]> {
    const chosen = [...this.batches.values()].filter((b) => !b.inFlight && pick(b)).sort((a, b) => a.id - b.id);
    const byHook = new Map<string, Batch[]>();
    for (const batch of chosen) {
      batch.inFlight = true;
      if (this.openBatch.get(batch.hookKey) === batch) this.openBatch.delete(batch.hookKey);
      byHook.set(batch.hookKey, [...(byHook.get(batch.hookKey) ?? []), batch]);
    }
    const earlier = [...this.running];
    const mine = Promise.all(
      [...byHook.values()].map(async (list) => {
        const records: HookDeliveryRecord[] = [];
        for (const batch of list) records.push(...(await this.attempt(batch)));
        return records;
      }),
    ).then((lists) => lists.flat());
    this.running.add(mine);
    void mine.finally(() => this.running.delete(mine)).catch(() => {});
    return Promise.all([mine, Promise.allSettled(earlier)]).then(([records]) => records);
  }

  private async attempt(batch: Batch): Promise<HookDeliveryRecord[]> {
    const hook = this.state.hooks.get(batch.hookKey);
    if (!hook || hook.status !== 'Verified') {
      this.batches.delete(batch.id);
      return [this.dropRecord(batch, hook, hook ? `the hook is ${hook.status}` : 'the subscription was deleted')];
    }
    batch.attempts += 1;
    const body: HookDeliveryBody = { event_key: batch.eventKey, object_type: batch.objectType, object_keys: [...batch.keys.values()].map((k) => ({ ...k })) };
    const record: HookDeliveryRecord = {
      kind: 'event', hookKey: hook.key, eventKey: hook.eventKey, hookUrl: hook.hookUrl, batch: batch.id, attempt: batch.attempts,
      body, time: this.now(), status: 0, outcome: 'pending', durationMs: 0,
    };
    this.state.hookDeliveries.push(record);
    const injected = this.injected.get(hook.hookUrl)?.shift();
    if (!injected || injected.afterDelivery) {
      const started = performance.now();
      const answer = await this.post(hook.hookUrl, { 'content-type': 'application/json' }, JSON.stringify(body));
      record.durationMs = performance.now() - started;
      record.status = answer.status;
      if (answer.error !== undefined) record.error = answer.error;
    }
    if (injected) {
      record.status = injected.status ?? 0;
      record.error = injected.afterDelivery ? 'injected failure after delivery' : 'injected failure';
    }
    const records = [record];
    if (record.status >= 200 && record.status < 400) {
      record.outcome = 'delivered';
      this.batches.delete(batch.id);
    } else if (record.status === 410) {
      record.outcome = 'gone';
      this.batches.delete(batch.id);
      records.push(...this.deactivate(hook, record));
    } else if (batch.attempts > this.retryDelaysMs.length) {
      record.outcome = 'failed';
      this.batches.delete(batch.id);
      records.push(...this.deactivate(hook, record));
    } else {
      record.outcome = 'failed';
      batch.dueAt = this.now() + (this.retryDelaysMs[batch.attempts - 1] ?? 0);
      record.nextAttemptAt = batch.dueAt;
      batch.inFlight = false;
    }
    return records;
  }

  /** Inactive: nothing more is sent until a verification succeeds, and what was waiting is dropped. */
  private deactivate(hook: SandboxHook, record: HookDeliveryRecord): HookDeliveryRecord[] {
    hook.status = 'Inactive';
    record.hookStatus = 'Inactive';
    this.logger?.info({ hookKey: hook.key, eventKey: hook.eventKey, status: record.status }, 'keap sandbox: hook made Inactive');
    return this.dropBatches(hook.key, 'the hook went Inactive');
  }

  private dropBatches(hookKey: string, reason: string): HookDeliveryRecord[] {
    const hook = this.state.hooks.get(hookKey);
    const dropped: HookDeliveryRecord[] = [];
    for (const batch of [...this.batches.values()]) {
      // One under way finds out itself when its attempt ends.
      if (batch.hookKey !== hookKey || batch.inFlight) continue;
      this.batches.delete(batch.id);
      dropped.push(this.dropRecord(batch, hook, reason));
    }
    if (this.openBatch.get(hookKey) && !this.batches.has(this.openBatch.get(hookKey)!.id)) this.openBatch.delete(hookKey);
    return dropped;
  }

  private dropRecord(batch: Batch, hook: SandboxHook | undefined, reason: string): HookDeliveryRecord {
    const record: HookDeliveryRecord = {
      kind: 'event', hookKey: batch.hookKey, eventKey: batch.eventKey, hookUrl: hook?.hookUrl ?? '', batch: batch.id, attempt: batch.attempts,
      body: { event_key: batch.eventKey, object_type: batch.objectType, object_keys: [...batch.keys.values()].map((k) => ({ ...k })) },
      time: this.now(), status: 0, outcome: 'dropped', error: `not sent: ${reason}`, durationMs: 0,
    };
    this.state.hookDeliveries.push(record);
    return record;
  }

  private checkEventKey(eventKey: string): void {
    if (!(HOOK_EVENT_KEYS as readonly string[]).includes(eventKey)) {
      throw new SandboxHttpError(400, `eventKey: ${JSON.stringify(eventKey)} is not an event key (GET /v1/hooks/event_keys lists them)`);
    }
  }

  private checkOnePerEventKey(eventKey: string, exceptKey: string | undefined): void {
    const existing = [...this.state.hooks.values()].find((h) => h.eventKey === eventKey && h.key !== exceptKey);
    if (existing) throw new SandboxHttpError(400, `eventKey: there is already a subscription for ${eventKey} (key ${existing.key}); update or delete it`);
  }

  /** POSTs the handshake; a 200 echoing the secret in `X-Hook-Secret` verifies the hook, anything else changes nothing. */
  private async handshake(hook: SandboxHook): Promise<void> {
    const secret = randomBytes(24).toString('base64url');
    this.secrets.set(hook.key, secret);
    const record: HookDeliveryRecord = { kind: 'handshake', hookKey: hook.key, eventKey: hook.eventKey, hookUrl: hook.hookUrl, time: this.now(), status: 0, outcome: 'pending', durationMs: 0 };
    this.state.hookDeliveries.push(record);
    const started = performance.now();
    const answer = await this.post(hook.hookUrl, { 'X-Hook-Secret': secret });
    record.status = answer.status;
    record.durationMs = performance.now() - started;
    if (answer.error !== undefined) record.error = answer.error;
    const echoed = answer.status === 200 && answer.echoedSecret !== undefined && sameSecret(answer.echoedSecret, secret);
    record.outcome = echoed ? 'verified' : 'unverified';
    // A delayedVerify may have verified the hook while the handshake waited; only a success changes the status.
    if (echoed && this.state.hooks.get(hook.key) === hook) {
      hook.status = 'Verified';
      record.hookStatus = 'Verified';
      this.secrets.delete(hook.key);
    }
  }

  private async post(url: string, headers: Record<string, string>, body?: string): Promise<{ status: number; echoedSecret?: string; error?: string }> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.closing.signal]);
    try {
      const res = await fetch(url, { method: 'POST', headers, ...(body !== undefined ? { body } : {}), redirect: 'manual', signal });
      // Read the answer to its end so the connection is free, but never keep it.
      await res.arrayBuffer().catch(() => undefined);
      const echoed = res.headers.get('x-hook-secret');
      return { status: res.status, ...(echoed !== null ? { echoedSecret: echoed } : {}) };
    } catch (err) {
      const timedOut = (err as Error).name === 'TimeoutError';
      return { status: 0, error: timedOut ? `no answer within ${this.timeoutMs} ms` : describeFetchError(err) };
    }
  }
}

/** A hook URL is an absolute http(s) URL (Keap itself also wants port 80 or 443; the sandbox lets tests use any). */
function checkHookUrl(hookUrl: string): void {
  let url: URL;
  try {
    url = new URL(hookUrl);
  } catch {
    throw new SandboxHttpError(400, `hookUrl: ${JSON.stringify(hookUrl)} is not an absolute URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new SandboxHttpError(400, `hookUrl: must be an http or https URL (got ${url.protocol})`);
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code && cause.message) return `${cause.code}: ${cause.message}`;
  return cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
}
