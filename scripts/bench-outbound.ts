/**
 * npm run bench:outbound: member events fanned out to three outbound webhook destinations on loopback. memberhook runs
 * as `npm start` runs it (jobs and the dispatcher on the job thread); the script changes members through the JSON API
 * (PATCH /api/v1/users/:id, one member.updated event each, a few requests at a time), and three receivers here (Node
 * `http`, answering 200 at once) note when each delivery arrives. Reports per run: deliveries per second (from the
 * first change's commit to the last delivery's arrival), the time from a change's commit (the event's `timestamp`) to
 * the receiver's 2xx, p50 / p99 / max, the API's answer times meanwhile, and peak RSS. Beside it, Keap HTTP Posts
 * arrive at a steady rate (`update` for contacts no member has: acknowledged and skipped, no Keap call), and their
 * acknowledgement times are reported twice: while the same member changes run with no destination (the baseline),
 * and while they are fanned out: the webhook ack figures must not move.
 *
 *   npm run bench:outbound                     # 3 runs of 10,000 events × 3 destinations
 *   BENCH_EVENTS=500 BENCH_RUNS=1 npm run bench:outbound
 *   BENCH_AT_ONCE=16 npm run bench:outbound    # API requests in flight at once (default 8)
 *   BENCH_POSTS_PER_S=200 npm run bench:outbound  # the Keap HTTP Posts beside it (default 100 a second)
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { ACCESS_KEY, startMemberhook } from './support/memberhook-process.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, seedMembers } from './support/seed-members.js';
import { median, percentile } from './support/stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const EVENTS = Number(process.env.BENCH_EVENTS ?? 10_000);
const AT_ONCE = Number(process.env.BENCH_AT_ONCE ?? 8);
const DESTINATIONS = 3;
/** Members changed in turn (each change is a new first name, so every PATCH is a change and an event). */
const MEMBERS = Math.min(EVENTS, 2_000);
const API_TOKEN = 'bench-api-token-0123456789-abcdefghijkl';
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 600_000);
const POSTS_PER_S = Number(process.env.BENCH_POSTS_PER_S ?? 100);

interface Receiver {
  url: string;
  /** Commit-to-arrival times (ms) of every delivery, and the latest arrival (epoch ms). */
  latencies: number[];
  firstCommit: number;
  lastArrival: number;
  server: Server;
}

async function startReceiver(): Promise<Receiver> {
  const receiver: Receiver = { url: '', latencies: [], firstCommit: Infinity, lastArrival: 0, server: undefined as unknown as Server };
  receiver.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const arrived = Date.now();
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      const committed = Date.parse((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { timestamp: string }).timestamp);
      receiver.latencies.push(arrived - committed);
      receiver.firstCommit = Math.min(receiver.firstCommit, committed);
      receiver.lastArrival = Math.max(receiver.lastArrival, arrived);
    });
  });
  receiver.server.listen(0, '127.0.0.1');
  await once(receiver.server, 'listening');
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`;
  return receiver;
}

async function api(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as unknown;
  if (res.status !== 200) throw new Error(`${method} ${path} answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

/**
 * Keap HTTP Posts at POSTS_PER_S, each `update` for a contact no member has (acknowledged, its job skipped without a
 * Keap call), until `stop`, which resolves to every acknowledgement time (ms), sorted.
 */
function postStream(base: string): { stop(): Promise<number[]> } {
  const acks: number[] = [];
  const pending = new Set<Promise<void>>();
  let n = 0;
  const timer = setInterval(() => {
    const t0 = performance.now();
    const post = fetch(`${base}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ access_key: ACCESS_KEY, wpf_action: 'update', contactId: String(900_000 + n++) }),
    })
      .then(async (res) => {
        await res.text();
        if (res.status !== 200) throw new Error(`a Keap post answered ${res.status}`);
        acks.push(performance.now() - t0);
      })
      .finally(() => pending.delete(post));
    pending.add(post);
  }, 1000 / POSTS_PER_S);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      return acks.sort((a, b) => a - b);
    },
  };
}

/** Sends the member changes AT_ONCE at a time (`round` makes each change new); returns each answer's time (ms). */
async function changeMembers(base: string, round: string): Promise<number[]> {
  const answers: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < EVENTS) {
      const n = next++;
      const id = 2 + (n % MEMBERS);
      const t0 = performance.now();
      await api(base, 'PATCH', `/api/v1/users/${id}`, { first_name: `Bench ${round} ${n}` });
      answers.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: AT_ONCE }, worker));
  return answers.sort((a, b) => a - b);
}

const fmt = (ms: number) => ms.toFixed(1);

async function main(): Promise<void> {
  console.log(`bench:outbound on ${cpus().length} × ${cpus()[0]?.model.trim()}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`${RUNS} runs of ${EVENTS.toLocaleString('en')} member events × ${DESTINATIONS} destinations, ${AT_ONCE} API requests at a time, ${POSTS_PER_S} Keap posts a second beside them\n`);
  const sandbox = await startKeapSandbox({ apiKeys: ['bench-keap-key'] });
  const rows: string[] = [];
  try {
    for (let run = 1; run <= RUNS; run++) {
      const dataDir = mkdtempSync(join(tmpdir(), 'memberhook-bench-outbound-'));
      await seedMembers(join(dataDir, 'memberhook.db'), MEMBERS);
      const receivers = await Promise.all(Array.from({ length: DESTINATIONS }, startReceiver));
      const mh = await startMemberhook(sandbox, { API_TOKEN, OUTBOUND_ALLOW_PRIVATE: '1', ADMIN_EMAIL, ADMIN_PASSWORD }, { dataDir });
      try {
        // The baseline: the same member changes with no destination (nothing is recorded for them), posts beside them.
        const baselineStream = postStream(mh.url);
        await changeMembers(mh.url, 'baseline');
        const baselineAcks = await baselineStream.stop();

        for (const [i, receiver] of receivers.entries()) {
          const { connection } = (await api(mh.url, 'POST', '/api/v1/outbound/connections', { name: `receiver ${i + 1}`, base_url: receiver.url })) as { connection: { id: number } };
          await api(mh.url, 'POST', '/api/v1/outbound/destinations', { connection_id: connection.id, name: 'members', path: '/hooks', events: ['member.updated'] });
        }
        const stream = postStream(mh.url);
        const answers = await changeMembers(mh.url, 'fan-out');
        const expected = EVENTS * DESTINATIONS;
        const deadline = Date.now() + TIMEOUT_MS;
        const arrived = () => receivers.reduce((sum, r) => sum + r.latencies.length, 0);
        while (arrived() < expected) {
          if (Date.now() > deadline) throw new Error(`only ${arrived()} of ${expected} deliveries arrived within ${TIMEOUT_MS} ms`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const acks = await stream.stop();
        const latencies = receivers.flatMap((r) => r.latencies).sort((a, b) => a - b);
        const seconds = (Math.max(...receivers.map((r) => r.lastArrival)) - Math.min(...receivers.map((r) => r.firstCommit))) / 1000;
        rows.push(
          `| ${run} | ${expected.toLocaleString('en')} | ${Math.round(expected / seconds).toLocaleString('en')} | ${fmt(median(latencies))} / ${fmt(percentile(latencies, 99))} / ${fmt(latencies.at(-1)!)} | ${fmt(median(answers))} / ${fmt(percentile(answers, 99))} | ${fmt(median(baselineAcks))} / ${fmt(percentile(baselineAcks, 99))} | ${fmt(median(acks))} / ${fmt(percentile(acks, 99))} | ${Math.round(mh.peakRssMb())} MB |`,
        );
        console.log(rows.at(-1));
      } finally {
        await mh.stop();
        for (const r of receivers) r.server.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  } finally {
    await sandbox.close();
  }
  console.log('\n| run | deliveries | deliveries/s | commit → receiver 2xx p50 / p99 / max (ms) | API PATCH answer p50 / p99 (ms) | Keap post ack p50 / p99 (ms), no destination | the same while fanned out | peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
