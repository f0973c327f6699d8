/**
 * Keap's throttles and quotas, per credential, in fixed windows: per second, per minute, per UTC day (the daily
 * quota resets at 00:00 UTC, as Keap documents). Every answer to an authenticated API request carries Keap's
 * informational headers so a client can pace itself from them.
 *
 * Header mapping (names and units as Keap sends them, all lower case, values as decimal strings):
 * - `x-keap-product-throttle-*`: the per-minute window, `time-unit: minute`, `interval: 1` (Keap: "currently
 *   minute for all consumers").
 * - `x-keap-product-quota-*`: the daily quota, `time-unit: day`, `interval: 1`, plus `expiry-time`, the epoch
 *   milliseconds at which the bucket resets (the next 00:00 UTC; Keap sends e.g. 1723680000000).
 * - `x-keap-tenant-throttle-*`: the per-second window, `time-unit: second`, `interval: 1`. Real Keap reports a
 *   per-minute, per-tenant bucket here and enforces the 10/s key limit without a header; the sandbox reports the
 *   per-second window so a client has one place to read it from.
 *
 * A request rejected with 429 does not use up quota: at a gateway it never reached the API. So `used` stops at
 * the limit and `available` at 0 until the window rolls over, and hammering does not lengthen the lockout.
 */

export interface RateLimits {
  perSecond: number;
  perMinute: number;
  perDay: number;
}

/** Keap's figures for a Personal Access Token or Service Account Key. */
export const KEAP_KEY_LIMITS: RateLimits = { perSecond: 10, perMinute: 240, perDay: 30_000 };

const SECOND = 1_000;
const MINUTE = 60_000;
const DAY = 86_400_000;

interface WindowCount {
  /** Index of the window since the epoch (time / length). */
  index: number;
  used: number;
}

interface Buckets {
  second: WindowCount;
  minute: WindowCount;
  day: WindowCount;
}

export interface RateDecision {
  allowed: boolean;
  /** Which limit refused the request, when one did. */
  exceeded?: 'second' | 'minute' | 'day';
  headers: Record<string, string>;
}

export class SandboxRateLimiter {
  private readonly buckets = new Map<string, Buckets>();

  constructor(
    private readonly limits: RateLimits,
    private readonly now: () => number,
  ) {}

  /** Counts one request against `credential` if every window has room; otherwise refuses it without counting. */
  take(credential: string): RateDecision {
    const time = this.now();
    const b = this.current(credential, time);
    const exceeded =
      b.day.used >= this.limits.perDay ? 'day' : b.minute.used >= this.limits.perMinute ? 'minute' : b.second.used >= this.limits.perSecond ? 'second' : undefined;
    if (exceeded === undefined) {
      b.second.used += 1;
      b.minute.used += 1;
      b.day.used += 1;
      return { allowed: true, headers: this.headers(b) };
    }
    return { allowed: false, exceeded, headers: this.headers(b) };
  }

  private current(credential: string, time: number): Buckets {
    const index = { second: Math.floor(time / SECOND), minute: Math.floor(time / MINUTE), day: Math.floor(time / DAY) };
    let b = this.buckets.get(credential);
    if (!b) {
      b = { second: { index: index.second, used: 0 }, minute: { index: index.minute, used: 0 }, day: { index: index.day, used: 0 } };
      this.buckets.set(credential, b);
    }
    for (const unit of ['second', 'minute', 'day'] as const) {
      if (b[unit].index !== index[unit]) b[unit] = { index: index[unit], used: 0 };
    }
    return b;
  }

  private headers(b: Buckets): Record<string, string> {
    const { perSecond, perMinute, perDay } = this.limits;
    const left = (limit: number, used: number) => String(Math.max(0, limit - used));
    return {
      'x-keap-product-throttle-limit': String(perMinute),
      'x-keap-product-throttle-time-unit': 'minute',
      'x-keap-product-throttle-interval': '1',
      'x-keap-product-throttle-available': left(perMinute, b.minute.used),
      'x-keap-product-throttle-used': String(b.minute.used),
      'x-keap-product-quota-limit': String(perDay),
      'x-keap-product-quota-time-unit': 'day',
      'x-keap-product-quota-interval': '1',
      'x-keap-product-quota-available': left(perDay, b.day.used),
      'x-keap-product-quota-used': String(b.day.used),
      'x-keap-product-quota-expiry-time': String((b.day.index + 1) * DAY),
      'x-keap-tenant-throttle-limit': String(perSecond),
      'x-keap-tenant-throttle-time-unit': 'second',
      'x-keap-tenant-throttle-interval': '1',
      'x-keap-tenant-throttle-available': left(perSecond, b.second.used),
      'x-keap-tenant-throttle-used': String(b.second.used),
    };
  }
}
