/**
 * npm run bench:inline: the same burst of Keap HTTP Posts against memberhook twice, once as it runs (the post is
 * stored as a job and answered at once; the worker does the work) and once in the benchmark-only inline mode
 * (scripts/support/inline-server.ts: the request creates the member, writes the password back to Keap and sends the
 * welcome email before it answers, the way WordPress + WP Fusion does). Same validation, event rows, job handlers,
 * Keap client and rate limiter in both; only when the work runs differs.
 *
 * The burst: 300 `add` posts for new sandbox contacts with send_notification, sent by 50 concurrent connections,
 * against the Keap sandbox held to one key's limits (10/s, 240/min), with KEAP_PASSWORD_FIELD=Password so every
 * new member's generated password is written back. No SMTP_URL: welcome emails go to DATA_DIR/outbox.
 *
 * Keap's HTTP Post gives up on an answer after a while: KEAP.md documents no figure for campaign HTTP Posts (only
 * 30 s for REST hook deliveries), so the client gives up after 30 s and counts such a post as not answered. A post
 * given up on is not resent (Keap resends a few times; that would only add load to the inline run).
 *
 *   npm run bench:inline                       # 1 run of each mode
 *   BENCH_RUNS=3 npm run bench:inline          # medians of 3
 *   BENCH_COUNT=50 BENCH_MODES=inline npm run bench:inline
 */
import Database from 'better-sqlite3';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { ACCESS_KEY, KEAP_KEY, LIMITS, startMemberhook } from './support/memberhook-process.js';
import { median } from './support/stats.js';

const COUNT = Number(process.env.BENCH_COUNT ?? 300);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 30_000);
/** Longest wait for the work to finish after the burst, before the run is reported as unfinished. */
const MAX_WAIT_MS = Number(process.env.BENCH_MAX_WAIT_MS ?? 15 * 60_000);
const MODES = (process.env.BENCH_MODES ?? 'queued,inline').split(',') as Mode[];

type Mode = 'queued' | 'inline';

interface RunResult {
  mode: Mode;
  answered: number;
  errors: number;
  timeouts: number;
  p50: number;
  p99: number;
  members: number;
  emails: number;
  unfinished: number;
  failed: number;
  burstSeconds: number;
  workSeconds: number;
  keapCalls: number;
  keap429: number;
  rssMb: number;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

async function runOnce(mode: Mode): Promise<RunResult> {
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], limits: LIMITS });
  const ids: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    ids.push(sandbox.state.addContact({ given_name: `Inline${i}`, family_name: 'Member', email: `inline${i}@example.test` }).id);
  }
  const mh = await startMemberhook(sandbox, { KEAP_PASSWORD_FIELD: 'Password' }, { inline: mode === 'inline' });
  const db = new Database(join(mh.dataDir, 'memberhook.db'), { readonly: true });
  try {
    const requestsBefore = sandbox.state.requests.length;
    // Latency of every post in ms; a post given up on counts as Infinity (not answered).
    const latencies: number[] = [];
    let answered = 0;
    let errors = 0;
    let timeouts = 0;
    let next = 0;
    let settled = 0;
    const started = performance.now();
    const connection = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const t0 = performance.now();
        try {
          const res = await fetch(`${mh.url}/`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: `contactId=${id}&wpf_action=add&access_key=${ACCESS_KEY}&send_notification=true`,
            signal: AbortSignal.timeout(TIMEOUT_MS),
          });
          await res.arrayBuffer();
          const ms = performance.now() - t0;
          latencies.push(ms);
          if (res.status >= 200 && res.status < 300) answered++;
          else errors++;
        } catch (err) {
          latencies.push(Infinity);
          if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) timeouts++;
          else errors++;
        } finally {
          settled++;
        }
      }
    };
    const burst = Promise.all(Array.from({ length: CONNECTIONS }, connection)).then(() => performance.now());

    // All work finished: nothing queued or running and, inline, every post settled (a post given up on by the
    // client still runs to the end in the server). Inline leaves a job queued only after a failed run (no worker
    // retries it), so there "finished" is: every post settled and nothing running for two looks in a row.
    const count = db.prepare<[string], number>('SELECT count(*) FROM events WHERE status = ?').pluck();
    let quietLooks = 0;
    for (;;) {
      await delay(250);
      const running = count.get('processing')!;
      const queued = count.get('queued')!;
      if (settled === ids.length && running === 0 && (queued === 0 || (mode === 'inline' && ++quietLooks >= 2))) break;
      if (running > 0 || settled < ids.length) quietLooks = 0;
      if (performance.now() - started > MAX_WAIT_MS) break;
    }
    const workSeconds = (performance.now() - started) / 1000;
    const burstSeconds = ((await burst) - started) / 1000;
    const calls = sandbox.state.requests.slice(requestsBefore);
    const members = db.prepare('SELECT count(*) FROM members').pluck().get() as number;
    const unfinished = (count.get('queued') ?? 0) + (count.get('processing') ?? 0);
    const failed = (count.get('failed') ?? 0) + (count.get('dead') ?? 0);
    const outbox = join(mh.dataDir, 'outbox');
    const emails = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')).length : 0;
    const sorted = [...latencies].sort((a, b) => a - b);
    return {
      mode,
      answered,
      errors,
      timeouts,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      members,
      emails,
      unfinished,
      failed,
      burstSeconds,
      workSeconds,
      keapCalls: calls.length,
      keap429: calls.filter((r) => r.status === 429).length,
      rssMb: mh.peakRssMb(),
    };
  } finally {
    db.close();
    await mh.stop();
    await sandbox.close();
  }
}

const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(value < 100 ? 1 : 0) : `> ${TIMEOUT_MS / 1000} s`);

function row(r: RunResult): string {
  return [
    r.mode,
    `${r.answered} / ${COUNT}`,
    `${r.errors} / ${r.timeouts}`,
    `${ms(r.p50)} / ${ms(r.p99)}`,
    `${r.members}`,
    `${r.emails}`,
    `${r.burstSeconds.toFixed(1)}`,
    `${r.workSeconds.toFixed(1)}${r.unfinished > 0 ? ` (${r.unfinished} left)` : ''}`,
    `${r.keapCalls} / ${r.keap429}`,
    `${r.failed}`,
    `${r.rssMb.toFixed(0)}`,
  ].join(' | ');
}

const HEADER =
  `| mode | answered 2xx in ${TIMEOUT_MS / 1000} s | errors / timeouts | ack latency p50 / p99 (ms) | members created | welcome emails | burst sent in (s) | all work finished after (s) | Keap calls / 429s | failed jobs | peak RSS (MB) |\n` +
  '|---|---|---|---|---|---|---|---|---|---|---|';

function medianOf(rows: RunResult[]): RunResult {
  const m = (pick: (r: RunResult) => number) => median(rows.map(pick));
  return {
    mode: rows[0]!.mode,
    answered: m((r) => r.answered),
    errors: m((r) => r.errors),
    timeouts: m((r) => r.timeouts),
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    members: m((r) => r.members),
    emails: m((r) => r.emails),
    unfinished: m((r) => r.unfinished),
    failed: m((r) => r.failed),
    burstSeconds: m((r) => r.burstSeconds),
    workSeconds: m((r) => r.workSeconds),
    keapCalls: m((r) => r.keapCalls),
    keap429: m((r) => r.keap429),
    rssMb: m((r) => r.rssMb),
  };
}

async function main(): Promise<void> {
  console.log(
    `${COUNT} add posts (new contacts, send_notification, password write-back), ${CONNECTIONS} connections, client timeout ${TIMEOUT_MS / 1000} s, ` +
      `Keap sandbox at ${LIMITS.perSecond}/s and ${LIMITS.perMinute}/min, ${RUNS} run(s) of each mode`,
  );
  const results = new Map<Mode, RunResult[]>(MODES.map((mode) => [mode, []]));
  for (let run = 1; run <= RUNS; run++) {
    for (const mode of MODES) {
      const result = await runOnce(mode);
      results.get(mode)!.push(result);
      console.log(`run ${run} ${row(result)}`);
    }
  }
  console.log(`\n${RUNS > 1 ? `medians of ${RUNS} runs` : 'one run'}:\n${HEADER}`);
  for (const mode of MODES) console.log(`| ${row(medianOf(results.get(mode)!))} |`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
