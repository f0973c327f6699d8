import type { Clock } from '../../core/clock.js';
import type { BackgroundService } from '../../core/background.js';
import type { Logger } from '../../core/logger.js';
import { sendOnce, type AttemptResult, type SenderDeps } from './sender.js';
import type { OutboundWebhooks } from './service.js';
import type { AttemptOutcome, DeliveryRow, DestinationRow, NewAttempt } from './store.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/**
 * The wait before each retry, after the 1st, 2nd, ... attempt failed (the first attempt is immediate): the schedule
 * of the webhook senders receivers know (Svix, Stripe-like), about 28 hours in all. Then the delivery is dead.
 */
export const RETRY_SCHEDULE_MS: readonly number[] = [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR];
/** Attempts in all: the first, then one per step of the schedule. */
export const MAX_ATTEMPTS = RETRY_SCHEDULE_MS.length + 1;
/** Each wait is stretched or shrunk by up to this much at random, so a destination back from an outage is not hit by every retry at once. */
export const RETRY_JITTER = 0.1;
/** The longest a Retry-After is honoured; a longer one waits this long. */
const MAX_RETRY_AFTER_MS = 24 * HOUR;
/**
 * Attempts that end within this many milliseconds are recorded in one commit (the look for what to send next follows
 * it at once, freed slots and all): the job thread also commits the Keap posts the request thread acknowledges, and every dispatcher
 * commit is one more wait for SQLite's write lock on both threads (a commit per event-loop turn measured twice the
 * ack p99 of this).
 */
const COMMIT_COALESCE_MS = 5;

export interface DispatcherOptions {
  /** Deliveries in flight at once, all destinations together. */
  concurrency?: number;
  /** Deliveries in flight at once to one destination: a slow one holds only its own slots. */
  perDestination?: number;
  /** A destination whose every attempt has failed this long is disabled. */
  disableAfterFailingMs?: number;
  /** How long a claimed delivery is held before another dispatcher may take it (it is sent well within this). */
  leaseMs?: number;
  /** Longest sleep between looks at the queue when nothing wakes the dispatcher. */
  idleMs?: number;
  random?: () => number;
}

export interface DispatcherDeps {
  service: OutboundWebhooks;
  sender: SenderDeps;
  clock: Clock;
  logger: Logger;
  /** A destination was disabled by the dispatcher (410, or failing for days): tell the administrators. */
  onDisabled: (destination: DestinationRow, reason: string) => void;
}

/** The wait before the next attempt after `attempt` failed; `retryAfterMs` (a 429's or 503's Retry-After) wins when given. */
export function retryDelay(attempt: number, retryAfterMs: number | undefined, random: () => number = Math.random): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  const base = RETRY_SCHEDULE_MS[Math.min(attempt, RETRY_SCHEDULE_MS.length) - 1]!;
  return Math.round(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * random()));
}

/** Retry-After as seconds or an HTTP date, in ms from `now`; undefined when missing or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * SECOND;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** What an attempt's answer means for its delivery. */
export function outcomeOf(result: AttemptResult, attempt: number, now: number, random: () => number): AttemptOutcome & { gone?: true } {
  const status = result.response?.status ?? null;
  if (status !== null && status >= 200 && status < 300) return { kind: 'delivered', status };
  let error: string;
  let retryAfterMs: number | undefined;
  if (status === null) {
    error = result.error ? `${result.error.code}: ${result.error.message}` : 'no answer';
    // Addresses the guard refuses and URLs that cannot be sent to will not get better by waiting.
    if (result.error && ['blocked_address', 'bad_url'].includes(result.error.code)) return { kind: 'failed', status, error };
  } else if (status === 410) {
    return { kind: 'failed', status, error: 'the destination answered 410 Gone: it was disabled', gone: true };
  } else if (status === 408 || status === 429 || status >= 500) {
    error = `the destination answered ${status}`;
    if (status === 429 || status === 503) retryAfterMs = parseRetryAfter(result.response!.headers['retry-after'], now);
  } else {
    // Other answers (a 3xx, which is never followed; a 4xx) say the request itself is wrong: sending it again cannot help.
    return { kind: 'failed', status, error: `the destination answered ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}` };
  }
  if (attempt >= MAX_ATTEMPTS) return { kind: 'dead', status, error: `${error}; gave up after ${attempt} attempts` };
  return { kind: 'retry', status, error, at: now + retryDelay(attempt, retryAfterMs, random) };
}

/**
 * Sends the queued outbound deliveries. Runs on the thread that runs the jobs (a background service), beside the job
 * worker but with slots of its own, so webhooks never take the Keap jobs' turn: at most `concurrency` deliveries in
 * flight, at most `perDestination` to any one destination, so a slow or dead destination fills only its own slots
 * while the others' deliveries go on. It wakes when deliveries are recorded or replayed and otherwise sleeps until
 * the next one is due. A claimed delivery is leased: one a crashed process left half-sent is sent again (receivers
 * deduplicate on `webhook-id`), so delivery is at least once.
 */
export class OutboundDispatcher implements BackgroundService {
  private readonly opts: Required<DispatcherOptions>;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly perDestination = new Map<number, number>();
  private readonly sends = new Set<Promise<void>>();
  private pumping = false;
  private turn = 0;
  private pumpScheduled = false;
  private finishing: Array<{ destination: DestinationRow; delivery: DeliveryRow; attempt: NewAttempt; outcome: ReturnType<typeof outcomeOf>; settle: (err?: unknown) => void }> = [];
  private nextLeaseCheck = 0;
  private pumpAgain = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly deps: DispatcherDeps,
    options: DispatcherOptions = {},
  ) {
    this.opts = {
      concurrency: 16,
      perDestination: 4,
      disableAfterFailingMs: 3 * DAY,
      leaseMs: 5 * MINUTE,
      idleMs: 60 * SECOND,
      random: Math.random,
      ...options,
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    // This is the only dispatcher on this database: what was being sent when the last process stopped is sent again.
    const recovered = this.deps.service.store.requeueAbandoned(this.deps.clock.now(), true);
    if (recovered > 0) this.deps.logger.warn({ deliveries: recovered }, 'outbound deliveries left in flight by a stopped process were queued again');
    this.pump();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    // Sends under way finish (each within its timeout) and record their outcome before the database closes.
    while (this.sends.size > 0) await Promise.all([...this.sends]);
  }

  /** Deliveries were recorded or replayed: look at the queue now. Calls within a few milliseconds fold into one look. */
  wake(): void {
    if (!this.running || this.wakeTimer) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.pump();
    }, 2);
  }

  /** Resolves once nothing is in flight and nothing is due now (tests and benchmarks wait on it). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Looks at the queue now (tests call it after moving a driven clock). */
  poke(): void {
    this.pump();
  }

  private isIdle(): boolean {
    if (!this.running || this.inFlight > 0) return this.inFlight === 0;
    const now = this.deps.clock.now();
    return this.deps.service.store.enabledDestinations().every((d) => (this.deps.service.store.nextDueOf(d.id) ?? Infinity) > now);
  }

  /** Claims what is due into the free slots, starts sending it, and sets the timer for the next due delivery. */
  private pump(): void {
    if (!this.running) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.claimAndSend();
      } while (this.pumpAgain && this.running);
    } catch (err) {
      this.deps.logger.error({ err }, 'the outbound dispatcher could not read its queue; it looks again shortly');
      this.setTimer(5 * SECOND);
    } finally {
      this.pumping = false;
    }
    this.settleIdle();
  }

  /**
   * Every enabled destination with free slots gets due deliveries up to its free slots (the starting destination
   * turns with each look, so none is always served first when the total is the limit). Then the timer is set for the
   * earliest due delivery of a destination with a free slot; a full destination's are taken when a slot frees.
   */
  private claimAndSend(): void {
    const { store } = this.deps.service;
    const now = this.deps.clock.now();
    if (now >= this.nextLeaseCheck) {
      // Expired leases: a dispatcher elsewhere (another instance) died holding them.
      store.requeueAbandoned(now, false);
      this.nextLeaseCheck = now + this.opts.leaseMs / 2;
    }
    const destinations = store.enabledDestinations();
    const turn = destinations.length ? this.turn++ % destinations.length : 0;
    let nextDue = now + this.opts.idleMs;
    // Every destination's claim in one commit (see recordFinished).
    const claims = store.inTransaction(() => {
      const claims: Array<{ destination: DestinationRow; deliveries: DeliveryRow[] }> = [];
      let free = this.opts.concurrency - this.inFlight;
      for (const destination of [...destinations.slice(turn), ...destinations.slice(0, turn)]) {
        const room = Math.min(this.opts.perDestination - (this.perDestination.get(destination.id) ?? 0), free);
        if (room <= 0) continue;
        const deliveries = store.claim(destination.id, now, room, now + this.opts.leaseMs);
        free -= deliveries.length;
        claims.push({ destination, deliveries });
        if (deliveries.length < room) {
          const due = store.nextDueOf(destination.id);
          if (due !== null) nextDue = Math.min(nextDue, Math.max(due, now + 1));
        }
      }
      return claims;
    });
    for (const { destination, deliveries } of claims) for (const delivery of deliveries) this.startSend(destination, delivery);
    this.setTimer(nextDue - now);
  }

  private setTimer(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.pump(), Math.max(1, ms));
    this.timer.unref();
  }

  private startSend(destination: DestinationRow, delivery: DeliveryRow): void {
    this.inFlight++;
    this.perDestination.set(destination.id, (this.perDestination.get(destination.id) ?? 0) + 1);
    const send = this.send(destination, delivery)
      .catch((err: unknown) => this.deps.logger.error({ err, delivery: delivery.id }, 'an outbound delivery could not be recorded; its lease runs out and it is sent again'))
      .finally(() => {
        this.inFlight--;
        const left = (this.perDestination.get(destination.id) ?? 1) - 1;
        if (left > 0) this.perDestination.set(destination.id, left);
        else this.perDestination.delete(destination.id);
        this.sends.delete(send);
        this.pumpSoon();
      });
    this.sends.add(send);
  }

  private async send(destination: DestinationRow, delivery: DeliveryRow): Promise<void> {
    const { service, clock } = this.deps;
    const connection = service.store.connection(destination.connection_id);
    if (!connection) return; // Deleted meanwhile: its deliveries went with it.
    const result = await sendOnce(this.deps.sender, { connection, secrets: service.secretsOf(connection), destination }, { eventId: delivery.event_id, body: delivery.body, at: clock.now() });
    const now = clock.now();
    const outcome = outcomeOf(result, delivery.attempts, now, this.opts.random);
    const attempt: NewAttempt = {
      deliveryId: delivery.id,
      attempt: delivery.attempts,
      method: result.request.method,
      url: result.request.url,
      headers: result.request.headers,
      responseStatus: result.response?.status ?? null,
      responseHeaders: result.response?.headers ?? null,
      responseBody: result.response?.body ?? null,
      responseTruncated: result.response?.truncated ?? false,
      error: outcome.kind === 'delivered' ? null : outcome.error,
      durationMs: result.durationMs,
      at: now,
    };
    await new Promise<void>((resolve, reject) => {
      this.finishing.push({ destination, delivery, attempt, outcome, settle: (err) => (err ? reject(err) : resolve()) });
      // The attempts that end in this turn of the event loop are recorded in one commit: the request thread writes
      // too (every change of a member), and a commit per attempt would wait for its write lock twice as often.
      if (this.finishing.length === 1) setTimeout(() => this.recordFinished(), COMMIT_COALESCE_MS);
    });
  }

  /** Records the attempts that ended (and what they mean for their destinations) in one transaction. */
  private recordFinished(): void {
    const batch = this.finishing;
    this.finishing = [];
    const { store } = this.deps.service;
    const disabled: Array<{ destination: DestinationRow; reason: string }> = [];
    try {
      store.inTransaction(() => {
        for (const { destination, delivery, attempt, outcome } of batch) {
          store.finish(attempt, outcome);
          if (outcome.kind === 'delivered') {
            store.markHealthy(destination.id);
            continue;
          }
          let reason: string | undefined;
          if (outcome.gone) reason = `it answered 410 Gone (delivery ${delivery.id}, ${delivery.event_type})`;
          else {
            const failingSince = store.markFailing(destination.id, attempt.at);
            if (attempt.at - failingSince >= this.opts.disableAfterFailingMs) {
              const days = Math.round((attempt.at - failingSince) / DAY);
              reason = `every delivery has failed for ${days} day${days === 1 ? '' : 's'} (the last: ${outcome.error})`;
            }
          }
          if (reason && store.disableDestination(destination.id, reason, attempt.at)) disabled.push({ destination, reason });
        }
      });
    } catch (err) {
      for (const { settle } of batch) settle(err);
      return;
    }
    for (const { settle } of batch) settle();
    for (const { destination, reason } of disabled) {
      this.deps.logger.warn({ destination: destination.id, reason }, 'an outbound webhook destination was disabled');
      this.deps.onDisabled(destination, reason);
    }
  }

  /** Looks at the queue after this turn of the event loop: attempts ending together cost one look. */
  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private settleIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
