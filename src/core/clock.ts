import { setTimeout as delay } from 'node:timers/promises';

/** Time as the app sees it. Production uses the system clock; tests may drive a manual one. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => (ms > 0 ? delay(ms) : Promise.resolve()),
};
