/**
 * npm run bench: how fast memberhook acknowledges Keap's HTTP Posts, measured beside two reference servers under the
 * same load in the same run (so the figures to compare are ratios), and how long 500 `add`s take end to end against
 * the Keap sandbox held to Keap's published key limits. memberhook runs as its own process (the built dist/), as in
 * production; the load generator and the sandbox run in this one.
 *
 *   npm run bench                 # both parts, 3 ack runs
 *   BENCH_RUNS=5 npm run bench    # more runs for a steadier median
 *   BENCH_PART=ack npm run bench  # only the ack part (BENCH_PART=e2e for the other)
 *   BENCH_BASELINE_DIR=/tmp/before BENCH_PART=ack npm run bench  # also memberhook from another built checkout
 */
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startKeapSandbox, type KeapSandbox } from '../tools/keap-sandbox/index.js';
import { ACCESS_KEY, KEAP_KEY, LIMITS, startMemberhook } from './support/memberhook-process.js';
import { startReferenceServer } from './support/reference-servers.js';
import { median } from './support/stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PART = process.env.BENCH_PART ?? 'all';


// wrk (Debian package `wrk`) is a C load generator; autocannon, in Node, tops out near 3,000 requests/s on a
// 2-core machine, so with it the bench measures the load generator as much as memberhook.
const WRK = spawnSync('which', ['wrk']).status === 0 && process.env.BENCH_LOADGEN !== 'autocannon';

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function loadWithAutocannon(url: string, run: number): Promise<LoadResult> {
  let contact = 1_000_000 * run;
  const result = await autocannon({
    url: `${url}/`,
    connections: 50,
    duration: 10,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        // A different contact each time: no coalescing, every post is a new durable row.
        setupRequest: (req) => ({ ...req, body: `contactId=${++contact}&wpf_action=update&access_key=${ACCESS_KEY}` }),
      },
    ],
  });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.non2xx + result.errors + result.timeouts };
}

async function loadWithWrk(url: string, run: number): Promise<LoadResult> {
  const script = join(mkdtempSync(join(tmpdir(), 'memberhook-wrk-')), 'post.lua');
  writeFileSync(
    script,
    `counter = ${1_000_000 * run}
request = function()
  counter = counter + 1
  return wrk.format("POST", "/", {["Content-Type"] = "application/x-www-form-urlencoded"}, "contactId=" .. counter .. "&wpf_action=update&access_key=${ACCESS_KEY}")
end
`,
  );
  // A 2 s warm-up first (JIT, page cache), then the measured 10 s.
  spawnSync('wrk', ['-t1', '-c50', '-d2s', '-s', script, `${url}/`]);
  const out = spawnSync('wrk', ['-t1', '-c50', '-d10s', '--latency', '-s', script, `${url}/`], { encoding: 'utf8' }).stdout;
  const ms = (label: string) => {
    const m = new RegExp(`${label}\\s+([\\d.]+)(us|ms|s)`).exec(out);
    if (!m) throw new Error(`wrk output without ${label}:\n${out}`);
    return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
  };
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors: connect (\d+)/.exec(out)?.[1] ?? 0);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]), p50: Math.round(ms('50%') * 10) / 10, p99: Math.round(ms('99%') * 10) / 10, errors };
}

interface AckRow {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  rss: number;
}

/**
 * Part 1: acknowledged posts per second and latency at 50 connections, memberhook (its worker running, held by Keap's
 * limits) beside the two reference servers (scripts/support/reference-servers.ts), each run measuring all of them in
 * turn under the same load. `BENCH_BASELINE_DIR=<another built checkout>` adds memberhook from there, to compare a
 * change with what it changes in the same run.
 */
async function benchAcks(sandbox: KeapSandbox): Promise<void> {
  const baseline = process.env.BENCH_BASELINE_DIR;
  const servers: Array<{ label: string; start: () => Promise<{ url: string; peakRssMb(): number; stop(): Promise<void> }> }> = [
    { label: 'node http', start: () => startReferenceServer('node-http', ACCESS_KEY) },
    { label: 'node http + sqlite row', start: () => startReferenceServer('node-http-sqlite', ACCESS_KEY) },
    { label: 'memberhook', start: () => startMemberhook(sandbox) },
    ...(baseline ? [{ label: `memberhook at ${baseline}`, start: () => startMemberhook(sandbox, {}, { checkout: baseline }) }] : []),
  ];
  const rows = new Map<string, AckRow[]>(servers.map((s) => [s.label, []]));
  console.log(`load generator: ${WRK ? 'wrk' : 'autocannon'}, 50 connections, 10 s a run (after 2 s of warm-up), every post a new contact`);
  for (let run = 1; run <= RUNS; run++) {
    // Each run starts with the next server: whatever the one before leaves behind (a busy disk, a warm cache) falls
    // on each of them in turn.
    const order = servers.map((_, i) => servers[(i + run - 1) % servers.length]!);
    for (const server of order) {
      const running = await server.start();
      const result = WRK ? await loadWithWrk(running.url, run) : await loadWithAutocannon(running.url, run);
      const rss = running.peakRssMb();
      await running.stop();
      rows.get(server.label)!.push({ ...result, rss });
      console.log(`run ${run}, ${server.label}: ${result.rps.toFixed(0)} posts/s, p50 ${result.p50} ms, p99 ${result.p99} ms, ${result.errors} errors, peak RSS ${rss.toFixed(0)} MB`);
    }
    const mh = rows.get('memberhook')!.at(-1)!;
    const ref = rows.get('node http + sqlite row')!.at(-1)!;
    console.log(`run ${run}, memberhook / (node http + sqlite row): posts/s ${(mh.rps / ref.rps).toFixed(2)}, p99 ${(mh.p99 / ref.p99).toFixed(2)}\n`);
  }
  console.log(`medians of ${RUNS} runs:`);
  const ref = rows.get('node http + sqlite row')!;
  for (const [label, list] of rows) {
    const ratios = list.map((r, i) => ({ rps: r.rps / ref[i]!.rps, p99: r.p99 / ref[i]!.p99 }));
    console.log(
      `  ${label.padEnd(28)} ${median(list.map((r) => r.rps)).toFixed(0).padStart(6)} posts/s, p50 ${median(list.map((r) => r.p50))} ms, p99 ${median(list.map((r) => r.p99))} ms, ` +
        `peak RSS ${median(list.map((r) => r.rss)).toFixed(0)} MB; against node http + sqlite row: posts/s ${median(ratios.map((x) => x.rps)).toFixed(2)}, p99 ${median(ratios.map((x) => x.p99)).toFixed(2)}`,
    );
  }
  if (baseline) {
    const now = rows.get('memberhook')!;
    const before = rows.get(`memberhook at ${baseline}`)!;
    const pair = (pick: (r: AckRow) => number) => now.map((r, i) => pick(r) / pick(before[i]!));
    const show = (values: number[]) => `${values.map((v) => v.toFixed(2)).join(', ')} (median ${median(values).toFixed(2)})`;
    console.log(`  memberhook / memberhook at ${baseline}, run by run: posts/s ${show(pair((r) => r.rps))}; p99 ${show(pair((r) => r.p99))}; peak RSS ${show(pair((r) => r.rss))}`);
  }
  console.log('');
}

/** The least time Keap's limits allow for `calls` requests: 10 per second and 240 in any minute. */
export function minimumSeconds(calls: number, limits = LIMITS): number {
  if (calls <= 0) return 0;
  const fullMinutes = Math.floor((calls - 1) / limits.perMinute);
  const rest = (calls - 1) % limits.perMinute;
  return fullMinutes * 60 + rest / limits.perSecond;
}

/** Part 2: 500 adds end to end (member, password write-back, welcome email to the outbox) at Keap's key limits. */
async function benchAdds(): Promise<void> {
  const COUNT = 500;
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], limits: LIMITS });
  const ids: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    ids.push(sandbox.state.addContact({ given_name: `Bench${i}`, family_name: 'Member', email: `bench${i}@example.test` }).id);
  }
  const mh = await startMemberhook(sandbox, { KEAP_PASSWORD_FIELD: 'Password' });
  const requestsBefore = sandbox.state.requests.length;
  const started = performance.now();
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).map(async (id) => {
        const res = await fetch(`${mh.url}/`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: `contactId=${id}&wpf_action=add&access_key=${ACCESS_KEY}&send_notification=true`,
        });
        if (res.status !== 200) throw new Error(`post for ${id} answered ${res.status}`);
      }),
    );
  }
  const acked = performance.now();
  const db = new Database(join(mh.dataDir, 'memberhook.db'), { readonly: true });
  const pending = db.prepare("SELECT count(*) FROM events WHERE status IN ('queued', 'processing')").pluck();
  while ((pending.get() as number) > 0) await delay(250);
  const seconds = (performance.now() - started) / 1000;
  const statuses = db.prepare('SELECT status, count(*) AS n FROM events GROUP BY status').all();
  const members = db.prepare('SELECT count(*) FROM members').pluck().get() as number;
  db.close();
  const calls = sandbox.state.requests.slice(requestsBefore);
  const throttled = calls.filter((r) => r.status === 429).length;
  const minimum = minimumSeconds(calls.length - throttled);
  const rss = mh.peakRssMb();
  await mh.stop();
  await sandbox.close();
  console.log(`500 adds: all ${COUNT} posts acknowledged in ${((acked - started) / 1000).toFixed(2)} s; jobs finished in ${seconds.toFixed(1)} s`);
  console.log(`  Keap calls: ${calls.length} (${throttled} answered 429); the limits allow them in no less than ${minimum.toFixed(1)} s: ratio ${(seconds / minimum).toFixed(3)} (target <= 1.2)`);
  console.log(`  members: ${members}; events by status: ${JSON.stringify(statuses)}; peak RSS ${rss.toFixed(0)} MB`);
}

async function main(): Promise<void> {
  if (PART === 'all' || PART === 'ack') {
    const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], limits: LIMITS });
    await benchAcks(sandbox);
    await sandbox.close();
  }
  if (PART === 'all' || PART === 'e2e') await benchAdds();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
