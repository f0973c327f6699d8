/**
 * Reading an import's pages from Keap ahead of the batches that write them, so Keap's calls (paced by the client's
 * rate limiter) and the database writes overlap instead of taking turns. A page can be asked for as soon as the page
 * before it has been listed (its `next_page_token` is known), before that page's contacts are even looked up.
 *
 * Only a speed-up, held in memory: after a restart, or when a read ahead failed, the batch reads its page itself.
 */

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Reads the page at `token`; calls `listed` with the next page's token (null after the last) as soon as Keap has
 * answered it, then finishes reading the page.
 */
export type PageFetcher<P> = (token: string | null, listed: (next: string | null) => void) => Promise<P>;

export class ReadAhead<P> {
  private readonly pages = new Map<string, Promise<Settled<P>>>();
  /** A next page known but not started yet (the window was full). */
  private waiting: string | null = null;
  private started = 0;
  private taken = 0;
  private stopped = false;

  constructor(
    private readonly fetchPage: PageFetcher<P>,
    /** Pages read but not yet taken, at most. */
    private readonly depth: number,
  ) {}

  /** Starts reading at `token` (the page the next batch wants). */
  start(token: string | null): void {
    const key = keyOf(token);
    if (this.stopped || this.pages.has(key)) return;
    this.started++;
    const read = this.fetchPage(token, (next) => {
      if (next === null || this.stopped) return;
      if (this.started - this.taken < this.depth) this.start(next);
      else this.waiting = next;
    }).then(
      (value): Settled<P> => ({ ok: true, value }),
      (error: unknown): Settled<P> => ({ ok: false, error }),
    );
    this.pages.set(key, read);
  }

  /** The page at `token` if it was read (or is being read) ahead; undefined otherwise. Frees room for the next. */
  take(token: string | null): Promise<Settled<P>> | undefined {
    const key = keyOf(token);
    const read = this.pages.get(key);
    if (!read) return undefined;
    this.pages.delete(key);
    this.taken++;
    if (this.waiting !== null && this.started - this.taken < this.depth) {
      const next = this.waiting;
      this.waiting = null;
      this.start(next);
    }
    return read;
  }

  /** Starts nothing more (the import ended); reads under way finish and are dropped. */
  stop(): void {
    this.stopped = true;
    this.pages.clear();
  }
}

function keyOf(token: string | null): string {
  return token === null ? '' : `t:${token}`;
}
