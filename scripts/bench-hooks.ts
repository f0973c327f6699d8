/**
 * npm run bench:hooks: Keap REST hook deliveries of 1,000 objects each, posted in bursts to memberhook (started as
 * `npm start` starts it) and, in the same run, to a reference (Node's `http` server that parses the JSON and keeps it
 * whole in one SQLite WAL row). Reports each run's acknowledgement times for both, memberhook's as ratios, and how long
 * the fan-out took: until every delivery's job ran and queued its member jobs (the objects are contacts without
 * members, so those jobs finish without calling Keap, as for a site whose contacts are mostly not members).
 *
 *   npm run bench:hooks                       # 3 runs of 40 deliveries (40,000 objects), 4 posted at a time,
 *                                             # after 4 untimed ones
 *   BENCH_RUNS=5 BENCH_DELIVERIES=80 npm run bench:hooks
 *   BENCH_AT_ONCE=1 npm run bench:hooks       # one delivery at a time (the latency of one, without queueing)
 *
 * The bar (issue 12): acknowledgement p99 under 50 ms, and every delivery fanned out.
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { adminCookie } from './support/http-session.js';
import { KEAP_KEY, startMemberhook, type Memberhook } from './support/memberhook-process.js';
import { startReferenceServer } from './support/reference-servers.js';
import { median, percentile } from './support/stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DELIVERIES = Number(process.env.BENCH_DELIVERIES ?? 40);
const AT_ONCE = Number(process.env.BENCH_AT_ONCE ?? 4);
const OBJECTS = 1_000;
const ADMIN = { email: 'bench-admin@example.com', password: 'bench admin password 0123' };
const P99_BAR_MS = 50;
/** Deliveries posted first and not timed: a fresh process's first requests compile the code paths they take. */
const WARMUP = 4;

/** Deliveries as Keap sends them: contact.edit, 1,000 contacts each (ids no member has). */
function delivery(n: number): string {
  const base = 1_000_000 + n * OBJECTS;
  return JSON.stringify({
    event_key: 'contact.edit',
    object_type: 'contact',
    object_keys: Array.from({ length: OBJECTS }, (_, i) => ({ id: base + i, apiUrl: '', timestamp: new Date().toISOString() })),
  });
}

/** Posts the deliveries AT_ONCE at a time; returns each acknowledgement time (ms) and the wall time. */
async function burst(url: string, bodies: string[]): Promise<{ acks: number[]; seconds: number }> {
  const acks: number[] = [];
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < bodies.length) {
      const body = bodies[next++]!;
      const t0 = performance.now();
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await res.text();
      if (res.status !== 200) throw new Error(`delivery answered ${res.status}`);
      acks.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: AT_ONCE }, worker));
  return { acks: acks.sort((a, b) => a - b), seconds: (performance.now() - started) / 1000 };
}

async function hookUrl(mh: Memberhook): Promise<string> {
  const cookie = await adminCookie(mh.url, ADMIN.email, ADMIN.password);
  const page = await (await fetch(`${mh.url}/admin/settings/keap-events`, { headers: { cookie } })).text();
  const url = /<code id="hook-url" data-hook-url>([^<]+)<\/code>/.exec(page)?.[1];
  if (!url) throw new Error('no hook URL on Settings → Keap events');
  return `${mh.url}${new URL(url).pathname}`;
}

/** Waits until every delivery job has run (its member jobs queued); returns the seconds it took from `since`. */
async function fannedOut(mh: Memberhook, deliveries: number, since: number): Promise<number> {
  const db = new Database(join(mh.dataDir, 'memberhook.db'), { readonly: true });
  try {
    for (;;) {
      const done = db.prepare("SELECT count(*) FROM events WHERE action = 'keap_hook_delivery' AND status = 'done'").pluck().get() as number;
      if (done >= deliveries) return (performance.now() - since) / 1000;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    db.close();
  }
}

const fmt = (ms: number) => ms.toFixed(1);

async function main(): Promise<void> {
  console.log(`bench:hooks on ${cpus().length} × ${cpus()[0]?.model.trim()}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`${RUNS} runs of ${DELIVERIES} deliveries × ${OBJECTS.toLocaleString('en')} objects, ${AT_ONCE} posted at a time\n`);
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY] });
  const bodies = Array.from({ length: DELIVERIES }, (_, n) => delivery(n));
  const warmup = Array.from({ length: WARMUP }, (_, n) => delivery(DELIVERIES + n));
  const rows: string[] = [];
  let pass = true;
  try {
    for (let run = 1; run <= RUNS; run++) {
      const reference = await startReferenceServer('hook-json-sqlite', 'unused');
      await burst(reference.url, warmup);
      const ref = await burst(reference.url, bodies);
      await reference.stop();

      const mh = await startMemberhook(sandbox, { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
      try {
        const url = await hookUrl(mh);
        await burst(url, warmup);
        const started = performance.now();
        const ours = await burst(url, bodies);
        const fanOutSeconds = await fannedOut(mh, WARMUP + DELIVERIES, started);
        const p99 = percentile(ours.acks, 99);
        const ok = p99 < P99_BAR_MS;
        pass &&= ok;
        rows.push(
          `| ${run} | ${fmt(median(ref.acks))} / ${fmt(percentile(ref.acks, 99))} | ${fmt(median(ours.acks))} / ${fmt(p99)} | ${(p99 / percentile(ref.acks, 99)).toFixed(2)} | ${fanOutSeconds.toFixed(1)} s (${Math.round((DELIVERIES * OBJECTS) / fanOutSeconds).toLocaleString('en')} objects/s) | ${Math.round(mh.peakRssMb())} MB | ${ok ? 'PASS' : 'FAIL'} |`,
        );
        console.log(rows.at(-1));
      } finally {
        await mh.stop();
      }
    }
  } finally {
    await sandbox.close();
  }
  console.log('\n| run | reference ack p50 / p99 (ms) | memberhook ack p50 / p99 (ms) | p99 ratio | all fanned out after | peak RSS | p99 < 50 ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  console.log(pass ? '\nall runs pass' : '\nnot every run passes');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
