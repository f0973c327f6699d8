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
 *   BENCH_BACKLOG=100000 BENCH_PART=ack npm run bench  # every memberhook run starts with 100,000 jobs waiting (default 0)
 *
 * The ack part also reports, for each memberhook run, the jobs still waiting when the load ends ("left in queue", in
 * seconds of that run's arrivals; a seeded backlog left out), and holds each run to the bar: posts/s at least half
 * the node http + sqlite row reference's, p99 at most twice its, less than a second of arrivals left in the queue,
 * peak RSS under 150 MB. A run that misses it is reported, not an error: the script still exits 0.
 */
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startKeapSandbox, type KeapSandbox } from '../tools/keap-sandbox/index.js';
import { ACCESS_KEY, KEAP_KEY, LIMITS, startMemberhook } from './support/memberhook-process.js';
import { jobsWaiting, seedBacklog, type Backlog } from './support/queue-backlog.js';
import { startReferenceServer, type ReferenceKind } from './support/reference-servers.js';
import { median } from './support/stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PART = process.env.BENCH_PART ?? 'all';
/** Jobs already waiting in every memberhook run's queue when it starts (`BENCH_BACKLOG`); 0: none. */
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 0);
if (!Number.isInteger(BACKLOG) || BACKLOG < 0) throw new Error(`BENCH_BACKLOG must be a whole number of jobs, not ${process.env.BENCH_BACKLOG}`);

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
  /** memberhook's: the jobs it still had waiting when the load ended, and how many seconds of arrivals that is. */
  left?: { jobs: number; seconds: number };
}

/** The reference each run's memberhook figures are divided by. */
const REFERENCE = 'node http + sqlite row';

/** The bar memberhook's acknowledgements are held to, run by run, against the same run's reference. */
const BAR = { rpsRatio: 0.5, p99Ratio: 2, queueSeconds: 1, rssMb: 150 };

/** memberhook's figures in one run against the bar: a line naming each criterion, and whether it passed them all. */
function againstBar(mh: AckRow, ref: AckRow): { line: string; pass: boolean } {
  const rpsRatio = mh.rps / ref.rps;
  const p99Ratio = mh.p99 / ref.p99;
  const queueSeconds = mh.left?.seconds ?? Number.NaN;
  const criteria = [
    { text: `posts/s ${rpsRatio.toFixed(2)} × reference (>= ${BAR.rpsRatio})`, pass: rpsRatio >= BAR.rpsRatio },
    { text: `p99 ${p99Ratio.toFixed(2)} × reference (<= ${BAR.p99Ratio})`, pass: p99Ratio <= BAR.p99Ratio },
    { text: `left in queue ${queueSeconds.toFixed(2)} s of arrivals (< ${BAR.queueSeconds} s)`, pass: queueSeconds < BAR.queueSeconds },
    { text: `peak RSS ${mh.rss.toFixed(0)} MB (< ${BAR.rssMb} MB)`, pass: mh.rss < BAR.rssMb },
  ];
  return { line: criteria.map((c) => `${c.text} ${c.pass ? 'PASS' : 'FAIL'}`).join(', '), pass: criteria.every((c) => c.pass) };
}

type AckServer = { label: string } & ({ reference: ReferenceKind } | { memberhook: { checkout?: string } });

/**
 * Part 1: acknowledged posts per second and latency at 50 connections, memberhook (its worker running, held by Keap's
 * limits) beside the two reference servers (scripts/support/reference-servers.ts), each run measuring all of them in
 * turn under the same load. For memberhook, also the jobs still waiting the moment the load ends: a worker that keeps
 * up has less than a second of arrivals left. `BENCH_BACKLOG=<n>` starts every memberhook run with n jobs already
 * waiting out a retry (scripts/support/queue-backlog.ts). `BENCH_BASELINE_DIR=<another built checkout>` adds memberhook
 * from there, to compare a change with what it changes in the same run.
 */
async function benchAcks(sandbox: KeapSandbox): Promise<void> {
  const baseline = process.env.BENCH_BASELINE_DIR;
  const servers: AckServer[] = [
    { label: 'node http', reference: 'node-http' },
    { label: REFERENCE, reference: 'node-http-sqlite' },
    { label: 'memberhook', memberhook: {} },
    ...(baseline ? [{ label: `memberhook at ${baseline}`, memberhook: { checkout: baseline } }] : []),
  ];
  const memberhooks = servers.filter((s) => 'memberhook' in s).map((s) => s.label);
  const rows = new Map<string, AckRow[]>(servers.map((s) => [s.label, []]));
  console.log(`load generator: ${WRK ? 'wrk' : 'autocannon'}, 50 connections, 10 s a run (after 2 s of warm-up), every post a new contact`);
  console.log(
    `the bar, run by run: memberhook posts/s >= ${BAR.rpsRatio} × reference and p99 <= ${BAR.p99Ratio} × reference (reference: ${REFERENCE}), ` +
      `left in queue < ${BAR.queueSeconds} s of arrivals, peak RSS < ${BAR.rssMb} MB`,
  );
  // One seeded folder per checkout (each with its own migrations), copied for each of its runs.
  const backlogs = new Map<string | undefined, Backlog>();
  try {
    if (BACKLOG > 0) {
      const started = performance.now();
      for (const server of servers) {
        if ('memberhook' in server) backlogs.set(server.memberhook.checkout, await seedBacklog(sandbox, BACKLOG, server.memberhook.checkout));
      }
      console.log(
        `backlog: every memberhook run starts with ${BACKLOG} jobs waiting (an add each for as many contacts, answered 503 and retrying in an hour, ` +
          `as after a Keap outage; seeded in ${((performance.now() - started) / 1000).toFixed(1)} s); "left in queue" leaves them out`,
      );
    }
    console.log('');

    const measure = async (server: AckServer, run: number): Promise<AckRow> => {
      const load = (url: string) => (WRK ? loadWithWrk(url, run) : loadWithAutocannon(url, run));
      if ('reference' in server) {
        const running = await startReferenceServer(server.reference, ACCESS_KEY);
        const result = await load(running.url);
        const rss = running.peakRssMb();
        await running.stop();
        return { ...result, rss };
      }
      const { checkout } = server.memberhook;
      const backlog = backlogs.get(checkout);
      const dataDir = backlog?.copy();
      try {
        const running = await startMemberhook(sandbox, {}, { ...(checkout ? { checkout } : {}), ...(dataDir ? { dataDir } : {}) });
        const result = await load(running.url);
        // The moment the load ends: the jobs of the run's posts (the warm-up's included) the worker has not finished.
        const jobs = jobsWaiting(running.dataDir, backlog?.lastId);
        const rss = running.peakRssMb();
        await running.stop();
        return { ...result, rss, left: { jobs, seconds: jobs / result.rps } };
      } finally {
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    };

    const verdicts = new Map<string, boolean[]>(memberhooks.map((label) => [label, []]));
    for (let run = 1; run <= RUNS; run++) {
      // Each run starts with the next server: whatever the one before leaves behind (a busy disk, a warm cache) falls
      // on each of them in turn.
      const order = servers.map((_, i) => servers[(i + run - 1) % servers.length]!);
      for (const server of order) {
        const row = await measure(server, run);
        rows.get(server.label)!.push(row);
        const left = row.left ? `, left in queue: ${row.left.jobs} (${row.left.seconds.toFixed(2)} s of arrivals)` : '';
        console.log(
          `run ${run}, ${server.label}: ${row.rps.toFixed(0)} posts/s, p50 ${row.p50} ms, p99 ${row.p99} ms, ${row.errors} errors, peak RSS ${row.rss.toFixed(0)} MB${left}`,
        );
      }
      const ref = rows.get(REFERENCE)!.at(-1)!;
      const mh = rows.get('memberhook')!.at(-1)!;
      console.log(`run ${run}, memberhook / (${REFERENCE}): posts/s ${(mh.rps / ref.rps).toFixed(2)}, p99 ${(mh.p99 / ref.p99).toFixed(2)}`);
      for (const label of memberhooks) {
        const verdict = againstBar(rows.get(label)!.at(-1)!, ref);
        verdicts.get(label)!.push(verdict.pass);
        console.log(`run ${run}, ${label} against the bar: ${verdict.line}`);
      }
      console.log('');
    }

    console.log(`medians of ${RUNS} runs:`);
    // A median of an even count is a mean: 15.399999999999999 ms reads as 15.4.
    const ms = (value: number) => Math.round(value * 100) / 100;
    const ref = rows.get(REFERENCE)!;
    for (const [label, list] of rows) {
      const ratios = list.map((r, i) => ({ rps: r.rps / ref[i]!.rps, p99: r.p99 / ref[i]!.p99 }));
      const left = list.every((r) => r.left) ? `; left in queue ${median(list.map((r) => r.left!.seconds)).toFixed(2)} s of arrivals` : '';
      console.log(
        `  ${label.padEnd(28)} ${median(list.map((r) => r.rps)).toFixed(0).padStart(6)} posts/s, p50 ${ms(median(list.map((r) => r.p50)))} ms, p99 ${ms(median(list.map((r) => r.p99)))} ms, ` +
          `peak RSS ${median(list.map((r) => r.rss)).toFixed(0)} MB; against ${REFERENCE}: posts/s ${median(ratios.map((x) => x.rps)).toFixed(2)}, p99 ${median(ratios.map((x) => x.p99)).toFixed(2)}${left}`,
      );
    }
    if (baseline) {
      const now = rows.get('memberhook')!;
      const before = rows.get(`memberhook at ${baseline}`)!;
      const pair = (pick: (r: AckRow) => number) => now.map((r, i) => pick(r) / pick(before[i]!));
      const show = (values: number[]) => `${values.map((v) => v.toFixed(2)).join(', ')} (median ${median(values).toFixed(2)})`;
      console.log(`  memberhook / memberhook at ${baseline}, run by run: posts/s ${show(pair((r) => r.rps))}; p99 ${show(pair((r) => r.p99))}; peak RSS ${show(pair((r) => r.rss))}`);
    }
    for (const [label, passes] of verdicts) {
      const prefix = label === 'memberhook' ? '' : `${label}, `;
      console.log(`${prefix}all runs pass: ${passes.every(Boolean) ? 'yes' : 'no'} (${passes.filter(Boolean).length} of ${passes.length} runs pass the bar)`);
    }
    console.log('');
  } finally {
    for (const backlog of backlogs.values()) backlog.remove();
  }
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
