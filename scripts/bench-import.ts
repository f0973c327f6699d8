/**
 * npm run bench:import: Members → Import from Keap of BENCH_CONTACTS tagged contacts, against the Keap sandbox with
 * Keap's real limits for an API key on (10 requests/s, 240/min: tools/keap-sandbox/limits.ts) and memberhook started
 * as `npm start` starts it, its client set to the same limits. Each run counts the Keap calls the import made, works
 * out how long Keap's limits make any client take for that many calls, and prints the import's wall time against it.
 *
 *   npm run bench:import                                  # 3 runs of 5,000 tagged contacts
 *   BENCH_RUNS=1 BENCH_CONTACTS=500 npm run bench:import  # a quick check that it works
 *   BENCH_TRACE=1 npm run bench:import                    # and when each Keap call was made
 *
 * "The time Keap's limits allow" for N calls: the earliest the N-th call may start when the first starts at the top
 * of a second (and of a minute), no window holding more calls than Keap allows (at most 10 in any second, 240 in any
 * minute), with instant answers. Wall time: from the start (the admin's POST) to the import's recorded finish. The
 * bar (issue 12): wall within 1.2× that. With few calls (a bulk read takes 1,000 contacts a call), the limits allow
 * little time and the ratio mostly measures memberhook's own work; the calls and the time they cost are printed too.
 */
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { KeapRateLimiter } from '../src/features/keap/rate-limiter.js';
import { KEAP_KEY_LIMITS, startKeapSandbox, type KeapSandbox } from '../tools/keap-sandbox/index.js';
import { adminCookie, formToken } from './support/http-session.js';
import { KEAP_KEY, LIMITS, startMemberhook, type Memberhook } from './support/memberhook-process.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const CONTACTS = Number(process.env.BENCH_CONTACTS ?? 5_000);
const ADMIN = { email: 'bench-admin@example.com', password: 'bench admin password 0123' };
const BAR = 1.2;
const FIRST_CONTACT_ID = 100_000;

/**
 * Seconds from the first call's start to the N-th's when every call starts as early as Keap's fixed windows let it
 * (the first at the top of a second and a minute): calls fill each second up to the per-second limit, and once a
 * minute's allowance is used, the next call waits for the next minute.
 */
export function limitBoundSeconds(calls: number, limits: { perSecond: number; perMinute: number }): number {
  let second = 0;
  let inSecond = 0;
  let inMinute = 0;
  for (let call = 1; call < calls; call++) {
    inSecond++;
    inMinute++;
    if (inMinute >= limits.perMinute) {
      second = (Math.floor(second / 60) + 1) * 60;
      inSecond = 0;
      inMinute = 0;
    } else if (inSecond >= limits.perSecond) {
      second++;
      inSecond = 0;
      if (second % 60 === 0) inMinute = 0;
    }
  }
  return second;
}

function seedTag(sandbox: KeapSandbox, run: number): number {
  const tag = sandbox.state.addTag({ name: `Bench import ${run}` });
  const first = FIRST_CONTACT_ID + run * 1_000_000;
  for (let i = 0; i < CONTACTS; i++) {
    sandbox.state.addContact({ id: first + i, given_name: `Given${i}`, family_name: `Family${i}`, email: `bench-${run}-${i}@example.com`, tag_ids: [tag.id] });
  }
  return tag.id;
}

async function importTag(mh: Memberhook, cookie: string, tagId: number): Promise<{ id: number; startedAt: number }> {
  const fields = { source: 'tag', tag_id: String(tagId), role: 'subscriber', on_existing: 'link' };
  const confirm = await fetch(`${mh.url}/admin/members/import/confirm?${new URLSearchParams(fields).toString()}`, { headers: { cookie } });
  const page = await confirm.text();
  if (confirm.status !== 200) throw new Error(`the confirmation answered ${confirm.status}`);
  const count = /data-count="(\d+)"/.exec(page)?.[1];
  if (count === undefined) throw new Error('the confirmation shows no count');
  // An administrator reads the confirmation before starting; the count's call is then out of the per-second window.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  const startedAt = Date.now();
  const started = await fetch(`${mh.url}/admin/members/import`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _csrf: formToken(page), ...fields, count }),
  });
  await started.arrayBuffer();
  const id = /\/admin\/members\/import\/(\d+)$/.exec(started.headers.get('location') ?? '')?.[1];
  if (started.status !== 303 || !id) throw new Error(`starting the import answered ${started.status}`);
  return { id: Number(id), startedAt };
}

interface ImportRow {
  status: string;
  done: number;
  created: number;
  keap_calls: number;
  finished_at: string | null;
  last_error: string | null;
}

async function finished(mh: Memberhook, id: number): Promise<ImportRow> {
  const db = new Database(join(mh.dataDir, 'memberhook.db'), { readonly: true });
  try {
    for (;;) {
      const row = db.prepare('SELECT status, done, created, keap_calls, finished_at, last_error FROM keap_imports WHERE id = ?').get(id) as ImportRow;
      if (row.status !== 'running') return row;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    db.close();
  }
}

/**
 * Seconds until memberhook's own Keap client lets the N-th call start when all are asked for at once: its rate
 * limiter (src/features/keap/rate-limiter.ts) on a clock that jumps ahead instead of sleeping. It keeps a safety
 * margin on each window (calls reach Keap's gateway a little apart), so it is a little slower than the limits
 * themselves: what is left of the wall time beyond this is the import's own work.
 */
async function limiterBoundSeconds(calls: number): Promise<number> {
  let now = 0;
  const clock = { now: () => now, sleep: async (ms: number) => void (now += ms) };
  const limiter = new KeapRateLimiter({ ...LIMITS, clock });
  for (let call = 0; call < calls; call++) await limiter.acquire();
  return now / 1000;
}

async function main(): Promise<void> {
  console.log(`bench:import on ${cpus().length} × ${cpus()[0]?.model.trim()}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`${RUNS} run(s) of ${CONTACTS.toLocaleString('en')} tagged contacts; Keap sandbox limits ${KEAP_KEY_LIMITS.perSecond}/s, ${KEAP_KEY_LIMITS.perMinute}/min; memberhook's client ${LIMITS.perSecond}/s, ${LIMITS.perMinute}/min\n`);
  const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY] });
  const rows: string[] = [];
  let pass = true;
  try {
    for (let run = 1; run <= RUNS; run++) {
      const tagId = seedTag(sandbox, run);
      const mh = await startMemberhook(sandbox, { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
      try {
        const cookie = await adminCookie(mh.url, ADMIN.email, ADMIN.password);
        const cpuBefore = mh.cpuMs();
        const { id, startedAt } = await importTag(mh, cookie, tagId);
        const row = await finished(mh, id);
        if (row.status !== 'done') throw new Error(`the import ended ${row.status}: ${row.last_error ?? ''}`);
        const calls = sandbox.state.requests.filter((r) => r.time >= startedAt && r.path.startsWith('/crm/rest/'));
        const throttled = calls.filter((r) => r.status === 429).length;
        if (process.env.BENCH_TRACE) {
          for (const c of calls) console.log(`  +${String(c.time - startedAt).padStart(5)} ms  ${c.status} ${c.method} ${c.path.replace(/^\/crm\/rest/, '')} (${c.durationMs.toFixed(0)} ms)`);
        }
        const wallSeconds = (Date.parse(row.finished_at!) - startedAt) / 1000;
        const allowedSeconds = limitBoundSeconds(calls.length, KEAP_KEY_LIMITS);
        const limiterSeconds = await limiterBoundSeconds(calls.length);
        const ratio = allowedSeconds > 0 ? wallSeconds / allowedSeconds : Number.POSITIVE_INFINITY;
        // Calls the limits let go at once leave no time to compare with: such a run shows the figures and no verdict.
        const verdict = !Number.isFinite(ratio) ? 'n/a' : ratio <= BAR && row.created === CONTACTS && throttled === 0 ? 'PASS' : 'FAIL';
        pass &&= verdict !== 'FAIL';
        rows.push(
          `| ${run} | ${row.created.toLocaleString('en')} | ${calls.length} (${throttled} answered 429) | ${allowedSeconds.toFixed(1)} s | ${limiterSeconds.toFixed(2)} s | ${wallSeconds.toFixed(2)} s | ${Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a (the limits allow it at once)'} | ${limiterSeconds > 0 ? (wallSeconds / limiterSeconds).toFixed(2) : 'n/a'} | ${Math.round(mh.cpuMs() - cpuBefore)} ms | ${Math.round(mh.peakRssMb())} MB | ${verdict} |`,
        );
        console.log(rows.at(-1));
      } finally {
        await mh.stop();
      }
    }
  } finally {
    await sandbox.close();
  }
  console.log(`\n| run | members created | Keap calls (from the start) | time Keap's limits allow for them | time memberhook's limiter allows | wall time | ratio to Keap's limits | ratio to the limiter | memberhook CPU | peak RSS | ratio to Keap's limits <= ${BAR} |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  console.log(pass ? '\nno run fails' : '\nnot every run passes');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
