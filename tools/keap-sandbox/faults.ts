/**
 * Misbehaviour on demand: the ways a real Keap (or the network in front of it) lets a client down, so tests can
 * check that memberhook survives each of them. Two sources, asked in this order for every authenticated API request
 * that got past the throttle:
 * - a queue of faults (`failNext`, `troubleNext`), answered to the next requests in order;
 * - a seeded chaos mode that draws a misbehaviour at random for each request, at rates the test sets. The same seed
 *   and the same sequence of requests give the same faults, so a failing run can be replayed.
 *
 * What each misbehaviour stands for (and what the answer looks like on the wire):
 * - `status`: Keap's service failing behind its gateway (500/502/503), or the gateway throttling (429). The answer is
 *   the Keap-shaped error body of error-bodies.ts with the throttle headers; a 429 says the per-second window is used
 *   up (another program on the same key took it), and `retryAfterSeconds` adds a `Retry-After` header, which Keap does
 *   not document but proxies and gateways in front of it send.
 * - `slow`: the real answer, `delayMs` late: before anything is sent (`phase: 'before-answer'`), or after the status
 *   line, the headers and half the body (`'mid-body'`). The request is still carried out (a PATCH still writes), as
 *   when a client gives up on a Keap that is merely slow.
 * - `drop`: the connection is destroyed: before the request is carried out (`'before-processing'`: nothing happened),
 *   after it was carried out but before any answer (`'after-processing'`: a PATCH wrote, the client cannot know), or
 *   half-way through the answer's body (`'mid-body'`).
 * Chaos may also expire every access token just before a request is authenticated (`expireTokens`), as when a day-old
 * token runs out in the middle of a burst; that request then gets Keap's 401 and a client must refresh.
 */

export type SandboxFault =
  | {
      kind: 'status';
      status: number;
      retryAfterSeconds?: number;
      /** Replaces the injected error's message. */
      message?: string;
      /** Quotes the credential the request carried in the message, as careless gateways do (tests check it is scrubbed). */
      echoCredential?: boolean;
    }
  | { kind: 'slow'; delayMs: number; phase?: 'before-answer' | 'mid-body' }
  | { kind: 'drop'; phase: 'before-processing' | 'after-processing' | 'mid-body' };

/** What chaos can draw for a request; each has its own rate. */
export type ChaosKind =
  | 'status429'
  | 'status500'
  | 'status502'
  | 'status503'
  | 'slow'
  | 'slowBody'
  | 'dropBeforeProcessing'
  | 'dropAfterProcessing'
  | 'dropMidBody';

export interface ChaosOptions {
  /** Seed of the pseudo-random sequence; the same seed draws the same faults for the same requests. */
  seed: number;
  /** Chance (0 to 1) that a request gets each misbehaviour; together at most 1. Absent kinds never happen. */
  rates: Partial<Record<ChaosKind, number>>;
  /** Chance (0 to 1), per request, that every access token expires just before it is authenticated. */
  expireTokens?: number;
  /** How late a `slow` or `slowBody` answer is; default 2000 ms. */
  slowMs?: number;
  /** `Retry-After` on chaos 429s, in seconds; none by default (as Keap). */
  retryAfterSeconds?: number;
}

const CHAOS_KINDS: readonly ChaosKind[] = [
  'status429',
  'status500',
  'status502',
  'status503',
  'slow',
  'slowBody',
  'dropBeforeProcessing',
  'dropAfterProcessing',
  'dropMidBody',
];

/** A short label for the request log, e.g. `status 503`, `slow 2000 ms mid-body`, `drop after-processing`. */
export function describeFault(fault: SandboxFault): string {
  switch (fault.kind) {
    case 'status':
      return `status ${fault.status}`;
    case 'slow':
      return `slow ${fault.delayMs} ms${fault.phase === 'mid-body' ? ' mid-body' : ''}`;
    case 'drop':
      return `drop ${fault.phase}`;
  }
}

export function validateFault(fault: SandboxFault): void {
  if (fault.kind === 'status') {
    if (!Number.isInteger(fault.status) || fault.status < 400 || fault.status > 599) throw new RangeError('status must be an HTTP error status (400-599)');
    if (fault.retryAfterSeconds !== undefined && !(Number.isInteger(fault.retryAfterSeconds) && fault.retryAfterSeconds >= 0)) {
      throw new RangeError('retryAfterSeconds must be a whole number of seconds');
    }
  } else if (fault.kind === 'slow') {
    if (!Number.isFinite(fault.delayMs) || fault.delayMs < 0) throw new RangeError('delayMs must be a number of milliseconds');
  }
}

/** mulberry32: tiny, fast, and good enough to spread faults; not for anything secret. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Faults queued by tests, then seeded chaos; see the file comment. */
export class FaultQueue {
  private readonly pending: Array<{ fault: SandboxFault; path: string | RegExp | undefined; method: string | undefined }> = [];
  private chaosOptions: ChaosOptions | null = null;
  private random: () => number = Math.random;

  /** The next `count` requests answer `status` with a Keap-shaped error body. */
  failNext(count: number, status: number, options: { retryAfterSeconds?: number } = {}): void {
    this.troubleNext(count, { kind: 'status', status, ...options });
  }

  /**
   * The next `count` requests get `fault`; with `path` (the full path without the query, e.g.
   * `/crm/rest/v2/contacts/105`, or a pattern) and/or `method`, the next `count` requests that match. Faults are
   * handed out in the order they were queued.
   */
  troubleNext(count: number, fault: SandboxFault, options: { path?: string | RegExp; method?: string } = {}): void {
    if (!Number.isInteger(count) || count < 0) throw new RangeError('count must be a whole number');
    validateFault(fault);
    const method = options.method?.toUpperCase();
    for (let i = 0; i < count; i += 1) this.pending.push({ fault: { ...fault }, path: options.path, method });
  }

  /** Starts (or, with null, stops) seeded chaos. Queued faults still come first. */
  chaos(options: ChaosOptions | null): void {
    if (options === null) {
      this.chaosOptions = null;
      return;
    }
    let total = 0;
    for (const [kind, rate] of Object.entries(options.rates)) {
      if (!CHAOS_KINDS.includes(kind as ChaosKind)) throw new RangeError(`unknown chaos kind ${kind}`);
      if (!(typeof rate === 'number' && rate >= 0 && rate <= 1)) throw new RangeError(`the rate of ${kind} must be between 0 and 1`);
      total += rate;
    }
    if (total > 1 + 1e-9) throw new RangeError('chaos rates add up to more than 1');
    const expire = options.expireTokens ?? 0;
    if (!(expire >= 0 && expire <= 1)) throw new RangeError('expireTokens must be between 0 and 1');
    this.chaosOptions = { ...options, rates: { ...options.rates } };
    this.random = seededRandom(options.seed);
  }

  /** Whether chaos expires the access tokens before this request is authenticated (one draw per API request). */
  drawTokenExpiry(): boolean {
    const rate = this.chaosOptions?.expireTokens ?? 0;
    return rate > 0 && this.random() < rate;
  }

  /** The fault for a request, if any: the first queued one that matches it, else a chaos draw. */
  take(request: { method: string; path: string } = { method: '', path: '' }): SandboxFault | undefined {
    const index = this.pending.findIndex(
      (p) =>
        (p.method === undefined || p.method === request.method) &&
        (p.path === undefined || (typeof p.path === 'string' ? p.path === request.path : p.path.test(request.path))),
    );
    if (index >= 0) return this.pending.splice(index, 1)[0]!.fault;
    const chaos = this.chaosOptions;
    if (!chaos) return undefined;
    let roll = this.random();
    for (const kind of CHAOS_KINDS) {
      const rate = chaos.rates[kind] ?? 0;
      if (roll < rate) return chaosFault(kind, chaos);
      roll -= rate;
    }
    return undefined;
  }

  get size(): number {
    return this.pending.length;
  }
}

function chaosFault(kind: ChaosKind, chaos: ChaosOptions): SandboxFault {
  const slowMs = chaos.slowMs ?? 2_000;
  switch (kind) {
    case 'status429':
      return { kind: 'status', status: 429, ...(chaos.retryAfterSeconds !== undefined ? { retryAfterSeconds: chaos.retryAfterSeconds } : {}) };
    case 'status500':
      return { kind: 'status', status: 500 };
    case 'status502':
      return { kind: 'status', status: 502 };
    case 'status503':
      return { kind: 'status', status: 503 };
    case 'slow':
      return { kind: 'slow', delayMs: slowMs, phase: 'before-answer' };
    case 'slowBody':
      return { kind: 'slow', delayMs: slowMs, phase: 'mid-body' };
    case 'dropBeforeProcessing':
      return { kind: 'drop', phase: 'before-processing' };
    case 'dropAfterProcessing':
      return { kind: 'drop', phase: 'after-processing' };
    case 'dropMidBody':
      return { kind: 'drop', phase: 'mid-body' };
  }
}
