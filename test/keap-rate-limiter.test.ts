import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Clock } from '../src/core/clock.js';
import { SharedMemory } from '../src/core/shared-memory.js';
import { KeapRateLimiter } from '../src/features/keap/rate-limiter.js';

const START = Date.UTC(2025, 0, 15, 10, 30, 0);

/** A clock the test moves by hand: sleepers wake in time order as it passes their deadline. */
function manualClock(start = START): Clock & { advance(ms: number): Promise<void>; sleepers(): number } {
  let now = start;
  const timers: Array<{ at: number; resolve: () => void }> = [];
  const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    now: () => now,
    sleep: (ms) => new Promise<void>((resolve) => void timers.push({ at: now + Math.max(0, ms), resolve })),
    sleepers: () => timers.length,
    async advance(ms) {
      const target = now + ms;
      for (;;) {
        await flush();
        timers.sort((a, b) => a.at - b.at);
        const next = timers[0];
        if (!next || next.at > target) break;
        timers.shift();
        now = Math.max(now, next.at);
        next.resolve();
      }
      now = target;
      await flush();
    },
  };
}

/** Starts `count` acquisitions at once and records, per caller, when (clock time) it was let through. */
function burst(limiter: KeapRateLimiter, clock: Clock, count: number): { granted: Array<{ who: number; at: number }>; all: Promise<void> } {
  const granted: Array<{ who: number; at: number }> = [];
  const all = Promise.all(Array.from({ length: count }, (_, who) => limiter.acquire().then(() => void granted.push({ who, at: clock.now() - START })))).then(() => undefined);
  return { granted, all };
}

function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0; i < sorted.length; i++) {
    let n = 0;
    for (let j = i; j < sorted.length && sorted[j]! < sorted[i]! + windowMs; j++) n++;
    max = Math.max(max, n);
  }
  return max;
}

test('callers are let through in the order they asked, a full burst at once and the rest as the second window slides', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 2, perMinute: 100, clock, safetyMarginMs: 0 });
  const { granted, all } = burst(limiter, clock, 6);
  await clock.advance(0);
  assert.deepEqual(granted, [{ who: 0, at: 0 }, { who: 1, at: 0 }], 'two go at once, the others wait');
  assert.equal(limiter.waiting, 4);
  await clock.advance(999);
  assert.equal(granted.length, 2, 'nobody else before the second has passed');
  await clock.advance(1_001);
  await all;
  assert.deepEqual(granted, [
    { who: 0, at: 0 },
    { who: 1, at: 0 },
    { who: 2, at: 1_000 },
    { who: 3, at: 1_000 },
    { who: 4, at: 2_000 },
    { who: 5, at: 2_000 },
  ]);
});

test('both limits hold: never more than perSecond in any second nor perMinute in any minute', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 5, perMinute: 12, clock, safetyMarginMs: 0 });
  const { granted, all } = burst(limiter, clock, 30);
  for (let i = 0; i < 200 && granted.length < 30; i++) await clock.advance(1_000);
  await all;
  const times = granted.map((g) => g.at);
  assert.equal(maxInWindow(times, 1_000), 5);
  assert.equal(maxInWindow(times, 60_000), 12);
  assert.deepEqual(times.slice(0, 13), [0, 0, 0, 0, 0, 1_000, 1_000, 1_000, 1_000, 1_000, 2_000, 2_000, 60_000], 'the 13th waits for the first minute to pass');
  assert.deepEqual(granted.map((g) => g.who), Array.from({ length: 30 }, (_, i) => i), 'strictly first come, first served');
});

test('the safety margin stretches each window so a call counted late by Keap still lands in the next one', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 1, perMinute: 100, clock, safetyMarginMs: 50 });
  const { granted, all } = burst(limiter, clock, 2);
  await clock.advance(1_049);
  assert.equal(granted.length, 1);
  await clock.advance(1);
  await all;
  assert.deepEqual(granted.map((g) => g.at), [0, 1_050]);
});

test('Keap saying a throttle window is used up (available=0) pauses every call until that window has passed', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 10, perMinute: 240, clock, safetyMarginMs: 0 });
  // Someone else on the same key used this second's budget: our own log is empty, Keap's header says 0.
  const held = limiter.observe(
    {
      'x-keap-tenant-throttle-limit': '10',
      'x-keap-tenant-throttle-available': '0',
      'x-keap-tenant-throttle-used': '10',
      'x-keap-tenant-throttle-time-unit': 'second',
      'x-keap-tenant-throttle-interval': '1',
    },
    200,
  );
  assert.equal(held, 1_000);
  assert.equal(limiter.pausedUntil, START + 1_000);
  assert.match(limiter.pauseReason ?? '', /tenant throttle/);
  const { granted, all } = burst(limiter, clock, 3);
  await clock.advance(999);
  assert.equal(granted.length, 0, 'no call while paused');
  await clock.advance(1);
  await all;
  assert.deepEqual(granted.map((g) => g.at), [1_000, 1_000, 1_000]);

  // The per-minute product throttle at 0 holds calls for a minute.
  limiter.observe({ 'x-keap-product-throttle-available': '0', 'x-keap-product-throttle-time-unit': 'minute', 'x-keap-product-throttle-interval': '1' }, 200);
  assert.equal(limiter.pausedUntil, START + 1_000 + 60_000);
});

test('the daily quota at 0 pauses until its expiry-time', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 10, perMinute: 240, clock });
  const midnight = START - (START % 86_400_000) + 86_400_000;
  limiter.observe(
    {
      'x-keap-product-quota-limit': '30000',
      'x-keap-product-quota-available': '0',
      'x-keap-product-quota-used': '30000',
      'x-keap-product-quota-time-unit': 'day',
      'x-keap-product-quota-interval': '1',
      'x-keap-product-quota-expiry-time': String(midnight),
    },
    200,
  );
  assert.equal(limiter.pausedUntil, midnight);
  let through = false;
  const waiting = limiter.acquire().then(() => void (through = true));
  await clock.advance(midnight - START - 1);
  assert.equal(through, false);
  await clock.advance(1);
  await waiting;
  assert.equal(through, true);
});

test('a window at 0 that our own calls explain adds no pause beyond our own log', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 3, perMinute: 240, clock, safetyMarginMs: 0 });
  for (let i = 0; i < 3; i++) await limiter.acquire();
  await clock.advance(400);
  const held = limiter.observe({ 'x-keap-tenant-throttle-available': '0', 'x-keap-tenant-throttle-time-unit': 'second', 'x-keap-tenant-throttle-interval': '1' }, 200);
  assert.equal(held, 0);
  assert.equal(limiter.pausedUntil, null);
  assert.equal(limiter.delayAt(clock.now()), 600, 'the next call waits for our own window, not a second from now');
});

test('a 429 pauses the whole limiter for the throttle window, not just the call that got it', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 10, perMinute: 240, clock, safetyMarginMs: 0 });
  // No window reported as used up: Keap's per-second window, about a second.
  assert.equal(limiter.observe({ 'x-keap-tenant-throttle-available': '4', 'x-keap-tenant-throttle-time-unit': 'second' }, 429), 1_000);
  const { granted, all } = burst(limiter, clock, 5);
  await clock.advance(999);
  assert.equal(granted.length, 0, 'every caller waits, not only the one that was throttled');
  await clock.advance(1);
  await all;
  assert.equal(granted.length, 5);

  // A 429 whose headers say the minute is used up waits for the minute, even though our own log is nearly empty.
  assert.equal(limiter.observe({ 'x-keap-product-throttle-available': '0', 'x-keap-product-throttle-time-unit': 'minute', 'x-keap-product-throttle-interval': '1' }, 429), 60_000);
});

const MINUTE_USED_UP = { 'x-keap-product-throttle-available': '0', 'x-keap-product-throttle-time-unit': 'minute', 'x-keap-product-throttle-interval': '1' };
const MINUTE_LEFT = { 'x-keap-product-throttle-available': '200', 'x-keap-product-throttle-time-unit': 'minute', 'x-keap-product-throttle-interval': '1' };

test('a 429 again after a used-up minute was waited out backs off briefly, doubling, not another full minute', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 5, perMinute: 240, clock, safetyMarginMs: 0 });
  // t: a new member's job is throttled, Keap saying the minute is used up. Everyone waits the minute.
  assert.equal(limiter.observe(MINUTE_USED_UP, 429), 60_000);
  // A call that was already on its way when the 429 came answers 429 too: the same minute, no back-off step.
  await clock.advance(100);
  assert.equal(limiter.observe(MINUTE_USED_UP, 429), 60_000);
  const first = burst(limiter, clock, 3);
  await clock.advance(59_999);
  assert.equal(first.granted.length, 0, 'nobody goes during the minute');
  await clock.advance(1);
  await first.all;
  assert.deepEqual(first.granted.map((g) => g.at), [60_100, 60_100, 60_100]);

  // t+60 s: the window has rolled over, yet Keap throttles again (its per-second spike arrest, or the headers'
  // stale figures): a second, not another minute. All three calls let through together answer 429: one step.
  for (let i = 0; i < 3; i++) assert.equal(limiter.observe(MINUTE_USED_UP, 429), 1_000);
  assert.match(limiter.pauseReason ?? '', /again after the window was waited out/);
  const second = burst(limiter, clock, 2);
  await clock.advance(1_000);
  await second.all;
  assert.deepEqual(second.granted.map((g) => g.at), [61_100, 61_100], 'the calls went on a second later, not a minute');
  // Keap asks for exponential back-off: each further 429 doubles the pause.
  assert.equal(limiter.observe(MINUTE_USED_UP, 429), 2_000);
  await clock.advance(2_000);
  assert.equal(limiter.observe(MINUTE_USED_UP, 429), 4_000);
  await clock.advance(4_000);

  // A call gets through: the trouble is over. The next used-up minute is waited out in full again.
  assert.equal(limiter.observe(MINUTE_LEFT, 200), 0);
  assert.equal(limiter.observe(MINUTE_USED_UP, 429), 60_000);
});

test('the doubling back-off after a waited-out window stops at the window itself', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 5, perMinute: 240, clock, safetyMarginMs: 0 });
  limiter.observe(MINUTE_USED_UP, 429);
  await clock.advance(60_000);
  const pauses: number[] = [];
  for (let i = 0; i < 8; i++) {
    const held = limiter.observe(MINUTE_USED_UP, 429);
    pauses.push(held);
    await clock.advance(held);
  }
  assert.deepEqual(pauses, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
});

test('lastReported keeps the latest throttle and quota figures for the dashboard', () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 10, perMinute: 240, clock });
  assert.equal(limiter.lastReported, null);
  const headers = new Headers({
    'x-keap-product-throttle-limit': '240',
    'x-keap-product-throttle-available': '239',
    'x-keap-product-throttle-used': '1',
    'x-keap-product-throttle-time-unit': 'minute',
    'x-keap-product-throttle-interval': '1',
    'x-keap-product-quota-available': '29999',
    'x-keap-product-quota-expiry-time': '1736985600000',
  });
  limiter.observe(headers, 200);
  const report = limiter.lastReported!;
  assert.equal(report.at, START);
  assert.deepEqual(report.productThrottle, [{ limit: 240, available: 239, used: 1, timeUnit: 'minute', interval: 1, expiryTime: null }]);
  assert.equal(report.productQuota[0]?.available, 29_999);
  assert.equal(report.productQuota[0]?.expiryTime, 1_736_985_600_000);
  assert.deepEqual(report.tenantThrottle, []);
  limiter.observe(new Headers({ 'content-type': 'application/json' }), 200);
  assert.equal(limiter.lastReported, report, 'a response without the headers keeps the last figures');
});

test('tenant throttle headers with pipe-separated windows (10000|250000, minute|day) are read window by window', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 5, perMinute: 240, clock, safetyMarginMs: 0 });
  const tenant = (available: string) => ({
    'x-keap-tenant-throttle-limit': '10000|250000',
    'x-keap-tenant-throttle-available': available,
    'x-keap-tenant-throttle-used': '10000|12000',
    'x-keap-tenant-throttle-time-unit': 'minute|day',
    'x-keap-tenant-throttle-interval': '1',
  });
  assert.equal(limiter.observe(tenant('25|238000'), 200), 0);
  assert.deepEqual(limiter.lastReported!.tenantThrottle, [
    { limit: 10_000, available: 25, used: 10_000, timeUnit: 'minute', interval: 1, expiryTime: null },
    { limit: 250_000, available: 238_000, used: 12_000, timeUnit: 'day', interval: 1, expiryTime: null },
  ]);

  // The tenant's minute is used up (someone else on the account): every call waits the minute.
  assert.equal(limiter.observe(tenant('0|238000'), 200), 60_000);
  assert.equal(limiter.pauseReason, 'Keap tenant throttle used up (10000 per minute)');

  // The tenant's day is used up: calls wait until Keap's daily reset at 00:00 UTC, not a day from now.
  await clock.advance(60_000);
  const midnight = START - (START % 86_400_000) + 86_400_000;
  assert.equal(limiter.observe(tenant('9000|0'), 200), midnight - clock.now());
  assert.equal(limiter.pausedUntil, midnight);
  assert.equal(limiter.pauseReason, 'Keap tenant throttle used up (250000 per day)');
});

test('a caller that gives up leaves the line and the next one takes its place', async () => {
  const clock = manualClock();
  const limiter = new KeapRateLimiter({ perSecond: 1, perMinute: 100, clock, safetyMarginMs: 0 });
  await limiter.acquire();
  const controller = new AbortController();
  const quitter = limiter.acquire(controller.signal);
  const patient = limiter.acquire();
  controller.abort(new Error('gave up'));
  await assert.rejects(quitter, /gave up/);
  assert.equal(limiter.waiting, 1);
  await clock.advance(1_000);
  await patient;
  assert.equal(limiter.waiting, 0);
});

/** Two limiters on one shared block, as the request thread's and the job thread's are (here in one thread). */
function sharedPair(clock: Clock, limits: { perSecond: number; perMinute: number }, safetyMarginMs = 0): [KeapRateLimiter, KeapRateLimiter] {
  const memory = new SharedMemory();
  const make = () => new KeapRateLimiter({ ...limits, clock, safetyMarginMs, shared: memory.block('keap-rate-limit', KeapRateLimiter.sharedBytes(limits)) });
  return [make(), make()];
}

test('limiters sharing one block share one limit: together never more than perSecond in any second', async () => {
  const clock = manualClock();
  const [requests, jobs] = sharedPair(clock, { perSecond: 3, perMinute: 100 });
  const fromJobs = burst(jobs, clock, 5);
  const fromRequests = burst(requests, clock, 4);
  for (let i = 0; i < 10 && fromJobs.granted.length + fromRequests.granted.length < 9; i++) await clock.advance(1_000);
  await Promise.all([fromJobs.all, fromRequests.all]);
  const times = [...fromJobs.granted, ...fromRequests.granted].map((g) => g.at);
  assert.equal(maxInWindow(times, 1_000), 3, 'three a second between them, not three each');
  assert.deepEqual([...times].sort((a, b) => a - b), [0, 0, 0, 1_000, 1_000, 1_000, 2_000, 2_000, 2_000]);
  assert.deepEqual(fromJobs.granted.map((g) => g.who), [0, 1, 2, 3, 4], 'each keeps its own callers in order');
  assert.deepEqual(fromRequests.granted.map((g) => g.who), [0, 1, 2, 3]);
});

test('a 429 one limiter sees holds the other too, with its reason; a call let through clears the back-off for both', async () => {
  const clock = manualClock();
  const [requests, jobs] = sharedPair(clock, { perSecond: 5, perMinute: 240 });
  assert.equal(jobs.observe(MINUTE_USED_UP, 429), 60_000);
  assert.equal(requests.pausedUntil, START + 60_000);
  assert.equal(requests.pauseReason, 'Keap product throttle used up (? per minute)');
  const held = burst(requests, clock, 1);
  await clock.advance(59_999);
  assert.equal(held.granted.length, 0, "the other thread's calls wait the minute out too");
  await clock.advance(1);
  await held.all;
  // The window was waited out (by either): a 429 now, on the other limiter, is a spike arrest and backs off a second.
  assert.equal(requests.observe(MINUTE_USED_UP, 429), 1_000);
  await clock.advance(1_000);
  assert.equal(jobs.observe(MINUTE_USED_UP, 429), 2_000, 'the doubling counts both limiters’ 429s');
  await clock.advance(2_000);
  assert.equal(requests.observe(MINUTE_LEFT, 200), 0);
  assert.equal(jobs.observe(MINUTE_USED_UP, 429), 60_000, 'a call got through: the next used-up minute is waited out in full');
});

test('a block keeps the limits it was made for: a limiter with other figures cannot join it', () => {
  const memory = new SharedMemory();
  const limits = { perSecond: 5, perMinute: 240 };
  new KeapRateLimiter({ ...limits, shared: memory.block('keap-rate-limit', KeapRateLimiter.sharedBytes(limits)) });
  assert.throws(
    () => new KeapRateLimiter({ perSecond: 240, perMinute: 5, shared: memory.block('keap-rate-limit', KeapRateLimiter.sharedBytes(limits)) }),
    /5\/s and 240\/min, not 240\/s and 5\/min/,
  );
});

test('limits must be whole numbers of at least one', () => {
  assert.throws(() => new KeapRateLimiter({ perSecond: 0, perMinute: 10 }), /perSecond/);
  assert.throws(() => new KeapRateLimiter({ perSecond: 1, perMinute: 1.5 }), /perMinute/);
});
