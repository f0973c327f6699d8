import { threadId } from 'node:worker_threads';

/**
 * Memory every thread of the process works on together, for state that must be ONE per process rather than one per
 * thread (Keap's rate limit: one API key, one limit, whichever thread makes the call). Shared memory, not messages:
 * a thread reads and changes such state synchronously, in microseconds, without waiting for the other thread's event
 * loop to answer (which can be busy for hundreds of milliseconds), and without the two ever disagreeing.
 *
 * The request thread makes the blocks as its built-ins start (before the job thread exists) and hands all of them
 * to the job thread in its workerData (job-thread.ts); the job thread's instance of the app then finds them here by
 * name. Each block starts with a lock (`SharedLock`) its users take around every read and change.
 */
export class SharedMemory {
  private readonly blocks: Map<string, SharedBlock>;

  /**
   * `handedOver`: the blocks another thread made (the job thread's workerData). A block asked for that is not among
   * them is an error: made here, it would silently be this thread's alone.
   */
  constructor(private readonly handedOver?: Record<string, SharedArrayBuffer>) {
    this.blocks = new Map(Object.entries(handedOver ?? {}).map(([name, buffer]) => [name, new SharedBlock(buffer)]));
  }

  /** The block named `name` with room for `bytes` bytes of data after its lock; made (zeroed) on first ask. */
  block(name: string, bytes: number): SharedBlock {
    const found = this.blocks.get(name);
    if (found) {
      if (found.dataBytes !== bytes) throw new Error(`shared memory block ${name} holds ${found.dataBytes} bytes, not ${bytes}`);
      return found;
    }
    if (this.handedOver) throw new Error(`shared memory block ${name} was not made by the thread that started this one`);
    const block = new SharedBlock(new SharedArrayBuffer(SharedBlock.DATA_OFFSET + bytes));
    this.blocks.set(name, block);
    return block;
  }

  /** Every block, to hand to a thread being started (SharedArrayBuffers cross in workerData without being copied). */
  toHandOver(): Record<string, SharedArrayBuffer> {
    return Object.fromEntries([...this.blocks].map(([name, block]) => [name, block.buffer]));
  }

  /**
   * A thread that ended: any lock it held is let go. A thread ends between two statements of its JavaScript only
   * when it is terminated from outside (or runs out of memory), but then it may have been inside a lock, and the
   * other thread must not wait for it forever.
   */
  releaseLocksOf(deadThreadId: number): void {
    for (const block of this.blocks.values()) block.lock.releaseIfHeldBy(deadThreadId);
  }
}

/** A SharedArrayBuffer whose first bytes are a lock; the data starts at `DATA_OFFSET` (aligned for Float64Array). */
export class SharedBlock {
  static readonly DATA_OFFSET = 8;
  readonly lock: SharedLock;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.lock = new SharedLock(new Int32Array(buffer, 0, 1));
  }

  get dataBytes(): number {
    return this.buffer.byteLength - SharedBlock.DATA_OFFSET;
  }
}

/** How long a thread waits for a held lock before looking again (a lock is held for microseconds). */
const WAIT_SLICE_MS = 5;

/**
 * A mutual-exclusion lock across threads: a word holding 0 (free) or the holder's thread id + 1, taken with
 * compare-exchange. A thread that finds it held blocks in `Atomics.wait` until it is let go, which is right for the
 * few microseconds a holder keeps it: never hold it across an `await` or any input or output.
 */
export class SharedLock {
  private readonly me = threadId + 1;

  constructor(private readonly word: Int32Array) {}

  hold<T>(critical: () => T): T {
    for (;;) {
      const holder = Atomics.compareExchange(this.word, 0, 0, this.me);
      if (holder === 0) break;
      if (holder === this.me) throw new Error('a shared lock was taken again by the thread that holds it');
      Atomics.wait(this.word, 0, holder, WAIT_SLICE_MS);
    }
    try {
      return critical();
    } finally {
      Atomics.store(this.word, 0, 0);
      Atomics.notify(this.word, 0, 1);
    }
  }

  releaseIfHeldBy(holderThreadId: number): void {
    if (Atomics.compareExchange(this.word, 0, holderThreadId + 1, 0) === holderThreadId + 1) Atomics.notify(this.word, 0, 1);
  }
}
