import { MemoryStore } from 'express-rate-limit';
import { addressKey } from './client-address.js';

export interface RejectionLimits {
  /** Refused requests allowed per client address in `rejectionWindowMs` before its keyless posts get 429s. */
  rejectionLimit: number;
  rejectionWindowMs: number;
}

/** What a post from an address over the limit is told, with a Retry-After. */
export const TOO_MANY_REJECTIONS = { ok: false, error: 'too many rejected requests from this address; try again later' } as const;

/**
 * Counts a client address's refused posts (4xx answers other than its own 429) and, past the limit, holds back that
 * address's posts that do not carry the access key until the window passes. A post with the right key is never
 * held back: Keap posts from a few shared addresses, and whoever else can post (or claim to post) from one of them
 * must not be able to stop the site's campaign posts by getting refused there.
 *
 * The count is taken when a refusal has been answered, never before a request runs: express-rate-limit's
 * skipSuccessfulRequests counts first and takes back later, so fifty accepted posts in flight at once from Keap's
 * one address would look like fifty refusals. Its MemoryStore keeps the windows.
 */
export class RejectionLimiter {
  private readonly store = new MemoryStore();
  /** Until when a refusal may still count (epoch ms): before it, an address could be over the limit. */
  private countingUntil = 0;

  constructor(private readonly limits: RejectionLimits) {
    this.store.init({ windowMs: limits.rejectionWindowMs } as Parameters<MemoryStore['init']>[0]);
  }

  /** Seconds until this address's keyless posts are heard again, or undefined when they are now. */
  async refusing(ip: () => string): Promise<number | undefined> {
    // Nothing refused within a window: no address can be over the limit, and none need be looked up.
    if (Date.now() > this.countingUntil) return undefined;
    const seen = await this.store.get(addressKey(ip()));
    if (!seen || seen.totalHits < this.limits.rejectionLimit) return undefined;
    return Math.max(1, Math.ceil(((seen.resetTime?.getTime() ?? Date.now()) - Date.now()) / 1000));
  }

  /** Counts an answer if it was a refusal; anything else costs one comparison (and `ip` is not called). */
  answered(ip: () => string, status: number): void {
    if (status < 400 || status >= 500 || status === 429) return;
    this.countingUntil = Date.now() + this.limits.rejectionWindowMs;
    void this.store.increment(addressKey(ip()));
  }
}
