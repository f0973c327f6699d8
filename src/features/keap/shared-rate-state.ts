import { SharedMemory, type SharedBlock } from '../../core/shared-memory.js';

/**
 * What KeapRateLimiter decides by: its log of call start times and Keap's pause, kept in shared memory so that the
 * request thread's limiter and the job thread's draw from one limit (Keap counts per key, not per thread; two
 * limiters with a limit each once let an admin page's call and an import's calls together past Keap's per-second
 * limit). Shared memory rather than messages to one owner thread: a call asks for its slot synchronously under a
 * lock held for microseconds, and never waits for the other thread's event loop, which may be busy for hundreds of
 * milliseconds. What each thread keeps to itself: its queue of waiters and the timer that wakes them (a thread that
 * finds the window full works out from the shared log when the next slot frees, as a single limiter does).
 *
 * Every accessor must be used inside `hold`. Without a block handed in (a limiter of its own, as in unit tests),
 * the same layout lives in a block nobody else sees, so one code path serves both.
 */
export class SharedRateState {
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly ring: Float64Array;
  private readonly reasonBytes: Uint8Array;

  constructor(
    private readonly block: SharedBlock,
    readonly perSecond: number,
    readonly perMinute: number,
  ) {
    const capacity = capacityFor(perSecond, perMinute);
    let offset = block.buffer.byteLength - block.dataBytes;
    this.ints = new Int32Array(block.buffer, offset, INT_FIELDS);
    offset += INT_FIELDS * 4;
    this.floats = new Float64Array(block.buffer, offset, FLOAT_FIELDS);
    offset += FLOAT_FIELDS * 8;
    this.ring = new Float64Array(block.buffer, offset, capacity);
    offset += capacity * 8;
    this.reasonBytes = new Uint8Array(block.buffer, offset, MAX_REASON_BYTES);
    this.hold(() => {
      if (this.ints[Int.initialized] === 0) {
        this.ints[Int.perSecond] = perSecond;
        this.ints[Int.perMinute] = perMinute;
        this.ints[Int.initialized] = 1;
      } else if (this.ints[Int.perSecond] !== perSecond || this.ints[Int.perMinute] !== perMinute) {
        // Both threads read the same settings; different figures mean two keys' limiters in one block.
        throw new Error(`the shared Keap rate limit is ${this.ints[Int.perSecond]}/s and ${this.ints[Int.perMinute]}/min, not ${perSecond}/s and ${perMinute}/min`);
      }
    });
  }

  /** The data bytes a block needs for these limits. */
  static bytesFor(perSecond: number, perMinute: number): number {
    return INT_FIELDS * 4 + FLOAT_FIELDS * 8 + capacityFor(perSecond, perMinute) * 8 + MAX_REASON_BYTES;
  }

  /** A state for one limiter alone. */
  static local(perSecond: number, perMinute: number): SharedRateState {
    return new SharedRateState(new SharedMemory().block('keap-rate-limit', SharedRateState.bytesFor(perSecond, perMinute)), perSecond, perMinute);
  }

  /** Runs `critical` with the state to itself; it must be synchronous and quick (no await, no logging). */
  hold<T>(critical: () => T): T {
    return this.block.lock.hold(critical);
  }

  /** Calls in the log (the most recent ones, up to max(perSecond, perMinute)). */
  get recorded(): number {
    return this.ints[Int.count]!;
  }

  /** The start time of the `k`-th most recent call (1: the latest); k must be between 1 and `recorded`. */
  startFromNewest(k: number): number {
    return this.ring[(this.ints[Int.head]! - k + this.ring.length) % this.ring.length]!;
  }

  /**
   * Logs a call started at `now`. Two threads may read their clocks in one order and take the lock in the other: the
   * later of the two times is logged, so the log stays in order (a start logged a moment late only holds the next
   * calls back that moment longer, never lets one through early).
   */
  record(now: number): void {
    const at = this.recorded > 0 ? Math.max(now, this.startFromNewest(1)) : now;
    const head = this.ints[Int.head]!;
    this.ring[head] = at;
    this.ints[Int.head] = (head + 1) % this.ring.length;
    this.ints[Int.count] = Math.min(this.recorded + 1, this.ring.length);
  }

  get pausedUntil(): number {
    return this.floats[Float.pausedUntil]!;
  }

  set pausedUntil(until: number) {
    this.floats[Float.pausedUntil] = until;
  }

  get pauseReason(): string | null {
    const length = this.ints[Int.reasonLength]!;
    return length === 0 ? null : Buffer.from(this.reasonBytes.slice(0, length)).toString('utf8');
  }

  set pauseReason(reason: string | null) {
    const bytes = Buffer.from(reason ?? '', 'utf8').subarray(0, MAX_REASON_BYTES);
    this.reasonBytes.set(bytes);
    this.ints[Int.reasonLength] = bytes.length;
  }

  /** See KeapRateLimiter.pauseForThrottledWindow. */
  get windowPause(): { windowMs: number; until: number } | null {
    const windowMs = this.floats[Float.windowPauseMs]!;
    return windowMs === 0 ? null : { windowMs, until: this.floats[Float.windowPauseUntil]! };
  }

  set windowPause(pause: { windowMs: number; until: number } | null) {
    this.floats[Float.windowPauseMs] = pause?.windowMs ?? 0;
    this.floats[Float.windowPauseUntil] = pause?.until ?? 0;
  }

  get repeatedThrottles(): number {
    return this.ints[Int.repeatedThrottles]!;
  }

  set repeatedThrottles(count: number) {
    this.ints[Int.repeatedThrottles] = count;
  }
}

/** Where each whole-number field sits in the block's Int32 view. */
const Int = {
  initialized: 0,
  perSecond: 1,
  perMinute: 2,
  /** Where the next start goes in the ring. */
  head: 3,
  count: 4,
  repeatedThrottles: 5,
  reasonLength: 6,
  // 7: padding, so the floats after the ints start 8-byte aligned.
} as const;
const INT_FIELDS = 8;

/** Where each time sits in the block's Float64 view (epoch ms). */
const Float = {
  pausedUntil: 0,
  /** 0: no window pause. */
  windowPauseMs: 1,
  windowPauseUntil: 2,
} as const;
const FLOAT_FIELDS = 3;

/** A pause reason longer than this is cut (they are a line of text). */
const MAX_REASON_BYTES = 512;

function capacityFor(perSecond: number, perMinute: number): number {
  return Math.max(perSecond, perMinute);
}
