import { systemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { SharedBlock } from '../../core/shared-memory.js';
import { SharedRateState } from './shared-rate-state.js';
import type { KeapLimitFigures, KeapRateReport } from './types.js';

/**
 * Keeps the app's Keap calls under Keap's limits (for a key: 5 per second, its spike arrest, and 240 per minute) so
 * a burst of webhook jobs slows down instead of collecting 429s.
 *
 * Algorithm: a sliding-window log. A call may start when fewer than `perSecond` calls started in the last second
 * and fewer than `perMinute` in the last minute (each window stretched by a small safety margin). Why not a token
 * bucket: Keap counts in fixed windows (the per-second and per-minute counters reset at the boundary), and a bucket
 * that refills continuously lets N calls go at the end of one second and a few more early in the next, which a
 * fixed-window counter on the other side can see as N+1 in one window. The log guarantees at most N in EVERY window
 * of that length, hence in any fixed window too, and still lets a full burst of N go at once. The margin absorbs the
 * difference between when we start a call and when Keap's gateway counts it.
 *
 * Waiters are served strictly in arrival order (FIFO), one pump handing out slots, so a call never starves behind
 * later ones. Keap's own figures steer it too: every response is fed to `observe`, which pauses the whole limiter
 * when Keap says a window or the daily quota is used up (and our own log does not already explain it), and for the
 * hinted window after a 429 (or for a Retry-After, should a proxy send one). Time comes from the Clock, so tests can drive it by hand.
 *
 * One limit per process: the request thread and the job thread each have a limiter, but given the same `shared`
 * block both keep their log and pause there (see SharedRateState), so together they stay under Keap's limits and a
 * 429 either one sees holds both. Each keeps its own line of waiters, served in order within that thread.
 */

const SECOND = 1_000;
const MINUTE = 60_000;
const DAY = 86_400_000;
/** Keap sends no Retry-After; a 429 with no exhausted window in its headers waits this long (its per-second window). */
const DEFAULT_THROTTLE_PAUSE_MS = SECOND;
/** An expiry-time further away than this is not believed (a clock or unit mix-up); a day plus slack is the most. */
const MAX_QUOTA_PAUSE_MS = DAY + 3_600_000;
/** See `safetyMarginMs`. */
const DEFAULT_SAFETY_MARGIN_MS = 250;
/** A Retry-After longer than this is not believed either (a proxy's mistake); the per-minute window is the cap. */
const MAX_RETRY_AFTER_MS = MINUTE;
/**
 * The first pause after a 429 that comes once a full window has been waited out, doubled for each further one (Keap
 * asks for exponential back-off on 429). Such a 429 is no longer the window: that has rolled over since. It is Keap's
 * per-second spike arrest (reported at 5 requests/s for service account keys), which a second clears.
 */
const REPEAT_THROTTLE_BASE_MS = SECOND;

export interface KeapRateLimiterOptions {
  perSecond: number;
  perMinute: number;
  clock?: Clock;
  /**
   * Added to each window's length; default 250 ms. The limiter counts a call when it starts, Keap when it arrives,
   * and two calls do not travel equally fast: one that has to open a new (TLS) connection, or waits for a busy event
   * loop, arrives a hundred milliseconds or more after one on a warm connection. The margin must cover that spread,
   * or Keap sees N+1 calls in a window the limiter counted N in (the trouble tests measured 200 ms on a busy machine).
   * It costs a burst little: the per-minute window, not the per-second one, bounds any run of more than a few seconds.
   */
  safetyMarginMs?: number;
  logger?: Logger;
  /**
   * Where the log and the pause live when other limiters must share them (the process's block, see
   * KeapRateLimiter.sharedBytes); a limiter of its own otherwise.
   */
  shared?: SharedBlock;
}

/** Response headers as fetch gives them, or a plain object (lower-case names). */
export type HeaderSource = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

/** A pause made inside the lock, logged after it is let go. */
interface Pause {
  until: number;
  reason: string;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

export class KeapRateLimiter {
  readonly perSecond: number;
  readonly perMinute: number;
  private readonly clock: Clock;
  private readonly marginMs: number;
  private readonly logger: Logger | undefined;
  /**
   * The start times of the most recent calls and Keap's pause (its reason, the last full-window pause a 429 caused and
   * the 429s since, for pauseForThrottledWindow): possibly shared with the other thread, so only read or changed
   * inside `state.hold`.
   */
  private readonly state: SharedRateState;
  /** This thread's callers waiting for a slot, in the order they asked. */
  private readonly queue: Waiter[] = [];
  private pumping = false;
  /** This thread's latest figures from Keap. */
  private report: KeapRateReport | null = null;

  constructor(options: KeapRateLimiterOptions) {
    for (const name of ['perSecond', 'perMinute'] as const) {
      const value = options[name];
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a whole number of at least 1 (got ${value})`);
    }
    this.perSecond = options.perSecond;
    this.perMinute = options.perMinute;
    this.clock = options.clock ?? systemClock;
    this.marginMs = Math.max(0, options.safetyMarginMs ?? DEFAULT_SAFETY_MARGIN_MS);
    this.logger = options.logger;
    this.state = options.shared ? new SharedRateState(options.shared, this.perSecond, this.perMinute) : SharedRateState.local(this.perSecond, this.perMinute);
  }

  /** The size of the `shared` block limiters with these limits need. */
  static sharedBytes(limits: { perSecond: number; perMinute: number }): number {
    return SharedRateState.bytesFor(limits.perSecond, limits.perMinute);
  }

  /** The latest throttle and quota figures Keap reported, or null before the first response. */
  get lastReported(): KeapRateReport | null {
    return this.report;
  }

  /** Epoch ms until which the limiter holds every call because Keap said so, or null when it does not. */
  get pausedUntil(): number | null {
    const until = this.state.hold(() => this.state.pausedUntil);
    return until > this.clock.now() ? until : null;
  }

  get pauseReason(): string | null {
    const now = this.clock.now();
    return this.state.hold(() => (this.state.pausedUntil > now ? this.state.pauseReason : null));
  }

  /** Calls waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Resolves when a call may start, and counts it as started. Callers are served in the order they asked.
   * An aborted signal takes the caller out of the line (the promise rejects with the signal's reason).
   */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length === 0 && this.tryStart(this.clock.now()) <= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) this.queue.splice(index, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
      void this.pump();
    });
  }

  /** Holds every call until `until` (epoch ms); an earlier time than a pause already set changes nothing. */
  pauseUntil(until: number, reason: string): void {
    const now = this.clock.now();
    const paused = this.state.hold(() => this.extendPause(until, reason));
    if (paused) this.logPauses(now, [paused]);
  }

  /** Inside `state.hold`: the pause, unless one already lasts as long; returns it to be logged once the lock is let go. */
  private extendPause(until: number, reason: string): Pause | null {
    if (until <= this.state.pausedUntil) return null;
    this.state.pausedUntil = until;
    this.state.pauseReason = reason;
    return { until, reason };
  }

  private logPauses(now: number, pauses: Pause[]): void {
    for (const { until, reason } of pauses) this.logger?.info({ pauseMs: until - now, reason }, 'keap calls paused');
  }

  /**
   * Reads Keap's throttle and quota headers from a response. When a window's `available` is 0 the limiter pauses
   * until that window has passed (for the daily quota: until its expiry-time), unless our own log already holds
   * calls back for that window. A 429 always pauses everything for the window its headers point at, a second when
   * they point at none; a repeated 429 after a full window was waited out backs off briefly instead (see
   * pauseForThrottledWindow). Returns how long, from now, calls are held (0 when they are not).
   */
  observe(headers: HeaderSource, status: number): number {
    const now = this.clock.now();
    const report: KeapRateReport = {
      at: now,
      productThrottle: readFigures(headers, 'x-keap-product-throttle'),
      productQuota: readFigures(headers, 'x-keap-product-quota'),
      tenantThrottle: readFigures(headers, 'x-keap-tenant-throttle'),
    };
    const reported = report.productThrottle.length + report.productQuota.length + report.tenantThrottle.length > 0;
    if (reported) this.report = report;
    const retryAfter = status === 429 || status === 503 ? retryAfterMs(header(headers, 'retry-after'), now) : null;
    const pauses: Pause[] = [];
    const heldMs = this.state.hold(() => {
      this.applyReport(report, status, retryAfter, now, pauses);
      return Math.max(0, this.state.pausedUntil - now);
    });
    this.logPauses(now, pauses);
    return heldMs;
  }

  /** Inside `state.hold`: what `observe` read, applied to the shared state; the pauses made go to `pauses`. */
  private applyReport(report: KeapRateReport, status: number, retryAfter: number | null, now: number, pauses: Pause[]): void {
    const pause = (until: number, reason: string) => {
      const made = this.extendPause(until, reason);
      if (made) pauses.push(made);
    };
    const throttled = status === 429;
    if (!throttled) {
      // Keap's gateway let a call through: whatever throttled us before is over.
      this.state.windowPause = null;
      this.state.repeatedThrottles = 0;
    }
    let exhausted = false;

    const windows = [
      ...report.productThrottle.map((figures) => ['product throttle', figures] as const),
      ...report.tenantThrottle.map((figures) => ['tenant throttle', figures] as const),
    ];
    for (const [name, figures] of windows) {
      if (figures.available !== 0) continue;
      exhausted = true;
      const windowMs = windowLength(figures) ?? SECOND;
      // Our own log already waits out a window we filled ourselves; pausing on top would only lose throughput.
      if (!throttled && this.ownLogFull(windowMs, now)) continue;
      const reason = `Keap ${name} used up (${figures.limit ?? '?'} per ${describeWindow(windowMs)})`;
      const until = windowEnd(now, windowMs);
      if (throttled && windowMs > SECOND) this.pauseForThrottledWindow(now, windowMs, until, reason, pause);
      else pause(until, reason);
    }
    for (const quota of report.productQuota) {
      if (quota.available !== 0) continue;
      exhausted = true;
      const windowMs = windowLength(quota) ?? DAY;
      const expiry = quota.expiryTime !== null && quota.expiryTime > now ? Math.min(quota.expiryTime, now + MAX_QUOTA_PAUSE_MS) : windowEnd(now, windowMs);
      pause(expiry, `Keap quota used up (${quota.limit ?? '?'} per ${describeWindow(windowMs)})`);
    }
    // Keap documents no Retry-After, but a gateway or proxy in front of it may send one with a 429 or 503: it is the
    // one hint that names the wait outright, so it is honoured (on top of, never instead of, what the windows say).
    if (retryAfter !== null && retryAfter > 0) pause(now + retryAfter, `Keap answered ${status} with Retry-After`);
    if (throttled && !exhausted) pause(now + DEFAULT_THROTTLE_PAUSE_MS, 'Keap answered 429');
  }

  /**
   * A 429 whose headers say a window longer than a second is used up. The first waits the whole window out. One that
   * comes after that pause has ended, with no call let through since, cannot be that window any more (it has rolled
   * over): it backs off a second, doubling with each further 429 up to the window, instead of holding every Keap
   * call for another full window. A 429 that arrives during the full pause (a call sent before it) just extends it.
   */
  private pauseForThrottledWindow(now: number, windowMs: number, until: number, reason: string, pause: (until: number, reason: string) => void): void {
    const previous = this.state.windowPause;
    if (previous && previous.windowMs >= windowMs && now >= previous.until) {
      // Calls let through together when a pause ends answer together: one back-off step for all of them.
      if (this.state.pausedUntil > now) return;
      this.state.repeatedThrottles += 1;
      const backoffMs = Math.min(windowMs, REPEAT_THROTTLE_BASE_MS * 2 ** (this.state.repeatedThrottles - 1));
      pause(now + backoffMs, `${reason}, again after the window was waited out: backing off ${backoffMs / SECOND} s`);
      return;
    }
    pause(until, reason);
    this.state.windowPause = { windowMs: Math.max(windowMs, previous?.windowMs ?? 0), until: this.state.pausedUntil };
  }

  /** How long, from `now`, until the next call may start. */
  delayAt(now: number): number {
    return this.state.hold(() => this.delayWithin(now));
  }

  /** Inside `state.hold`: `delayAt`. */
  private delayWithin(now: number): number {
    const { state } = this;
    let until = state.pausedUntil;
    const n = state.recorded;
    if (n >= this.perSecond) until = Math.max(until, state.startFromNewest(this.perSecond) + SECOND + this.marginMs);
    if (n >= this.perMinute) until = Math.max(until, state.startFromNewest(this.perMinute) + MINUTE + this.marginMs);
    return until - now;
  }

  /**
   * Takes a slot at `now` if one is free (logging the start), in one step under the lock: the other thread cannot
   * take the same slot between the look and the log. Returns 0 when taken, else how long until one may be free.
   */
  private tryStart(now: number): number {
    return this.state.hold(() => {
      const wait = this.delayWithin(now);
      if (wait <= 0) this.state.record(now);
      return Math.max(0, wait);
    });
  }

  /** Inside `state.hold`: whether the log alone already holds back calls for a window of `windowMs`. */
  private ownLogFull(windowMs: number, now: number): boolean {
    const limit = windowMs === SECOND ? this.perSecond : windowMs === MINUTE ? this.perMinute : undefined;
    if (limit === undefined) return false;
    const since = now - windowMs - this.marginMs;
    let count = 0;
    while (count < this.state.recorded && this.state.startFromNewest(count + 1) > since) count++;
    return count >= limit;
  }

  /** The one loop that hands out slots, in order; it runs while anyone waits. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        // The other thread may take the slot this sleep was for: then the next look finds the next one.
        const wait = this.tryStart(this.clock.now());
        if (wait > 0) {
          await this.clock.sleep(wait);
          continue;
        }
        const waiter = this.queue.shift()!;
        waiter.cleanup();
        waiter.resolve();
      }
    } catch (err) {
      // Only a broken clock gets here; fail the waiters rather than leave them hanging.
      for (const waiter of this.queue.splice(0)) {
        waiter.cleanup();
        waiter.reject(err);
      }
    } finally {
      this.pumping = false;
    }
  }
}

function header(headers: HeaderSource, name: string): string | null {
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(name: string): string | null }).get(name);
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
}

function numberOrNull(value: string | null): number | null {
  if (value === null || value.trim() === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/**
 * One header group's figures, one entry per window. Keap may report several windows in one group, the values
 * pipe-separated in the same order in every header (`limit: 10000|250000`, `time-unit: minute|day`); a header with a
 * single value applies to every window (an `interval: 1` beside two units). [] when the group is absent.
 */
function readFigures(headers: HeaderSource, prefix: string): KeapLimitFigures[] {
  const names = ['limit', 'available', 'used', 'time-unit', 'interval', 'expiry-time'] as const;
  const parts = Object.fromEntries(names.map((name) => [name, header(headers, `${prefix}-${name}`)?.split('|').map((v) => v.trim()) ?? []])) as Record<
    (typeof names)[number],
    string[]
  >;
  const count = Math.max(...names.map((name) => parts[name].length));
  const at = (name: (typeof names)[number], i: number): string | null => {
    const values = parts[name];
    return (values.length === 1 ? values[0] : values[i]) ?? null;
  };
  const windows: KeapLimitFigures[] = [];
  for (let i = 0; i < count; i++) {
    const timeUnit = at('time-unit', i);
    const figures: KeapLimitFigures = {
      limit: numberOrNull(at('limit', i)),
      available: numberOrNull(at('available', i)),
      used: numberOrNull(at('used', i)),
      timeUnit: timeUnit === null || timeUnit === '' ? null : timeUnit,
      interval: numberOrNull(at('interval', i)),
      expiryTime: numberOrNull(at('expiry-time', i)),
    };
    if (Object.values(figures).some((v) => v !== null)) windows.push(figures);
  }
  return windows;
}

/** Retry-After as seconds or an HTTP date, in ms from `now`, capped; null when absent or unreadable. */
function retryAfterMs(value: string | null, now: number): number | null {
  if (value === null || value.trim() === '') return null;
  const text = value.trim();
  const ms = /^\d+(\.\d+)?$/.test(text) ? Number(text) * SECOND : Date.parse(text) - now;
  if (!Number.isFinite(ms)) return null;
  return Math.min(Math.max(0, Math.round(ms)), MAX_RETRY_AFTER_MS);
}

const UNIT_MS: Record<string, number> = { millisecond: 1, second: SECOND, minute: MINUTE, hour: 3_600_000, day: DAY };

/** A window's length from its `time-unit` and `interval` headers, or null when the unit is unknown. */
function windowLength(figures: KeapLimitFigures): number | null {
  const unit = figures.timeUnit?.trim().toLowerCase().replace(/s$/, '');
  const ms = unit === undefined ? undefined : UNIT_MS[unit];
  if (ms === undefined) return null;
  const interval = figures.interval !== null && figures.interval > 0 ? figures.interval : 1;
  return ms * interval;
}

/**
 * When a used-up window of `windowMs` is over: a day ends at 00:00 UTC (Keap resets its daily figures then; a full
 * day from now would hold calls for hours after the reset); shorter windows last their length from now.
 */
function windowEnd(now: number, windowMs: number): number {
  return windowMs === DAY ? now - (now % DAY) + DAY : now + windowMs;
}

function describeWindow(ms: number): string {
  if (ms === SECOND) return 'second';
  if (ms === MINUTE) return 'minute';
  if (ms === DAY) return 'day';
  return `${ms} ms`;
}
