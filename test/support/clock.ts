import type { Clock } from '../../src/core/clock.js';

/** Time that moves only when a test says so. */
export class ManualClock implements Clock {
  constructor(public ms = Date.now()) {}
  now(): number {
    return this.ms;
  }
  async sleep(): Promise<void> {}
  advance(ms: number): void {
    this.ms += ms;
  }
}
