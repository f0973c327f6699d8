/**
 * npm run limits: how memberhook holds up with many members. For each member count it seeds a fresh data folder
 * (one bulk transaction, a handful of real bcrypt hashes shared by everyone), starts memberhook on it as its own
 * process (dist/, as in production, with the Keap sandbox held to Keap's limits), and measures:
 *
 * - the admin members list over HTTP, logged in as an administrator (target: under 100 ms);
 * - member logins (`POST /login` with its CSRF token, the real bcrypt verify), one after another and in small
 *   concurrent batches;
 * - webhook ack latency at a moderate steady load (200 posts/s over 20 connections, 10 s; target: p99 under 25 ms);
 * - the database's size per member, and how long seeding took.
 *
 * Run by hand (minutes, and about 1 GB of disk at a million members); not part of `npm test`.
 *
 *   npm run limits                                  # 100,000 and 1,000,000 members
 *   LIMITS_MEMBERS=20000 npm run limits             # a quick look
 *   LIMITS_RUNS=30 npm run limits                   # loads per list page (default 15, after 3 warm-up loads)
 *   LIMITS_ACK_RUNS=5 npm run limits                # ack runs (default 3)
 *   LIMITS_EXPLAIN=1 npm run limits                 # print each list query's plan
 *   LIMITS_ANALYZE=1 npm run limits                 # ANALYZE after seeding (memberhook itself never does)
 *   LIMITS_KEEP=1 npm run limits                    # keep the seeded data folders
 *   LIMITS_PARTS=acks npm run limits                # only some parts (default pages,logins,acks)
 */
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync, statSync, statfsSync } from 'node:fs';
import { cpus, freemem, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startKeapSandbox } from '../tools/keap-sandbox/index.js';
import { MemberStore } from '../src/features/members/store.js';
import { adminCookie, openLoginForm, postLogin } from './support/http-session.js';
import { median, percentile } from './support/stats.js';
import { ACCESS_KEY, KEAP_KEY, LIMITS, startMemberhook, type Memberhook } from './support/memberhook-process.js';
import { memberListPages, timePages, type PageTiming } from './support/member-list-pages.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, contactIdOf, memberPassword, random, seedMembers, tagIdOf } from './support/seed-members.js';

const COUNTS = (process.env.LIMITS_MEMBERS ?? '100000,1000000').split(',').map((s) => Number(s.replace(/_/g, '').trim()));
const PAGE_RUNS = Number(process.env.LIMITS_RUNS ?? 15);
const PAGE_WARMUP = 3;
const LOGIN_RUNS = Number(process.env.LIMITS_LOGIN_RUNS ?? 20);
const LOGIN_BATCH = 8;
const LOGIN_BATCHES = 3;
const ACK_RUNS = Number(process.env.LIMITS_ACK_RUNS ?? 3);
const ACK_RATE = 200;
const ACK_CONNECTIONS = 20;
const ACK_SECONDS = 10;
const PARTS = new Set((process.env.LIMITS_PARTS ?? 'pages,logins,acks').split(',').map((s) => s.trim()));
const LIST_TARGET_MS = 100;
const ACK_P99_TARGET_MS = 25;

const MB = 1024 * 1024;
const fmt = (n: number, digits = 1) => n.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits });

interface Sizes {
  dbBytes: number;
  walBytes: number;
  vacuumedBytes: number;
  vacuumSeconds: number;
  /** The largest tables and indexes, bytes (from the dbstat table, when SQLite has it). */
  objects: Array<{ name: string; bytes: number }>;
}

interface LoginFigures {
  sequential: { median: number; p95: number; runs: number };
  concurrent: { median: number; p95: number; perSecond: number; requests: number };
}

interface AckRun {
  rps: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
}

interface Result {
  members: number;
  seedSeconds: number;
  insertSeconds: number;
  tagRows: number;
  sizes: Sizes;
  pages: PageTiming[];
  logins: LoginFigures | undefined;
  acks: AckRun[];
  startSeconds: number;
  peakRssMb: number;
}

const fileSize = (path: string) => (existsSync(path) ? statSync(path).size : 0);

/** The database's files after a checkpoint, what VACUUM would make of it, and where the bytes are. */
function measureSizes(databaseFile: string, dataDir: string): Sizes {
  const db = new Database(databaseFile);
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
    const dbBytes = fileSize(databaseFile);
    const walBytes = fileSize(`${databaseFile}-wal`);
    let objects: Sizes['objects'] = [];
    try {
      objects = db
        .prepare<[], { name: string; bytes: number }>('SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC LIMIT 8')
        .all();
    } catch {
      // SQLite built without the dbstat table: no breakdown.
    }
    const vacuumed = join(dataDir, 'vacuumed.db');
    const started = performance.now();
    db.prepare('VACUUM INTO ?').run(vacuumed);
    const vacuumSeconds = (performance.now() - started) / 1000;
    const vacuumedBytes = fileSize(vacuumed);
    rmSync(vacuumed, { force: true });
    return { dbBytes, walBytes, vacuumedBytes, vacuumSeconds, objects };
  } finally {
    db.close();
  }
}

/** Member logins over HTTP: the form is loaded first (CSRF cookie and token), then only the POST is timed. */
async function measureLogins(url: string, databaseFile: string, members: number): Promise<LoginFigures> {
  const next = random(7);
  const db = new Database(databaseFile, { readonly: true });
  const loginOf = db.prepare<[number], { email: string; username: string }>('SELECT email, username FROM members WHERE id = ?');
  // Half log in with their email, half with their username (the second lookup when it is not an email).
  const credentials = (i: number) => {
    const id = 2 + Math.floor(next() * members);
    const row = loginOf.get(id)!;
    return { login: i % 2 === 0 ? row.email : row.username, password: memberPassword(id) };
  };
  const one = async (login: string, password: string, form: Awaited<ReturnType<typeof openLoginForm>>) => {
    const t0 = performance.now();
    const res = await postLogin(url, '/login', form, login, password);
    const ms = performance.now() - t0;
    if (res.status !== 303) throw new Error(`member login as ${login} answered ${res.status}`);
    return ms;
  };
  try {
    // Warm-up: the first verify loads bcrypt's code paths and the member pages' templates.
    for (let i = 0; i < 2; i++) {
      const c = credentials(i);
      await one(c.login, c.password, await openLoginForm(url, '/login'));
    }
    const sequential: number[] = [];
    for (let i = 0; i < LOGIN_RUNS; i++) {
      const c = credentials(i);
      sequential.push(await one(c.login, c.password, await openLoginForm(url, '/login')));
    }
    sequential.sort((a, b) => a - b);

    // Small concurrent batches: bcrypt runs on libuv's thread pool (4 threads), on 2 cores here.
    const concurrent: number[] = [];
    let wall = 0;
    for (let b = 0; b < LOGIN_BATCHES; b++) {
      const batch = await Promise.all(
        Array.from({ length: LOGIN_BATCH }, async (_, i) => ({ ...credentials(i), form: await openLoginForm(url, '/login') })),
      );
      const t0 = performance.now();
      concurrent.push(...(await Promise.all(batch.map((c) => one(c.login, c.password, c.form)))));
      wall += performance.now() - t0;
    }
    concurrent.sort((a, b) => a - b);
    return {
      sequential: { median: percentile(sequential, 50), p95: percentile(sequential, 95), runs: sequential.length },
      concurrent: { median: percentile(concurrent, 50), p95: percentile(concurrent, 95), perSecond: (concurrent.length / wall) * 1000, requests: concurrent.length },
    };
  } finally {
    db.close();
  }
}

/**
 * Webhook posts at a steady 200/s over 20 connections, each for a different seeded member's contact (no
 * coalescing: every post is a new durable row). autocannon paces the requests and corrects for coordinated
 * omission. The worker runs alongside, held to Keap's limits by the sandbox.
 */
async function measureAcks(url: string, members: number): Promise<AckRun[]> {
  let contact = 0;
  const run = async (seconds: number): Promise<AckRun> => {
    const result = await autocannon({
      url: `${url}/`,
      connections: ACK_CONNECTIONS,
      overallRate: ACK_RATE,
      duration: seconds,
      requests: [
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          setupRequest: (req) => ({ ...req, body: `contactId=${contactIdOf(2 + (contact++ % members))}&wpf_action=update&access_key=${ACCESS_KEY}` }),
        },
      ],
    });
    return {
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      max: result.latency.max,
      errors: result.non2xx + result.errors + result.timeouts,
    };
  };
  await run(2); // warm-up
  const runs: AckRun[] = [];
  for (let i = 0; i < ACK_RUNS; i++) runs.push(await run(ACK_SECONDS));
  return runs;
}

async function limitsAt(members: number): Promise<Result> {
  const dataDir = mkdtempSync(join(tmpdir(), 'memberhook-limits-'));
  const databaseFile = join(dataDir, 'memberhook.db');
  try {
    console.log(`\n=== ${members.toLocaleString('en')} members (${dataDir}) ===`);
    const seeded = await seedMembers(databaseFile, members, {
      analyze: Boolean(process.env.LIMITS_ANALYZE),
      progress: process.stdout.isTTY ? (done) => process.stdout.write(`  seeded ${done.toLocaleString('en')}\r`) : undefined,
    });
    console.log(`seeded in ${fmt(seeded.seconds)} s (inserts and commit ${fmt(seeded.insertSeconds)} s), ${seeded.tagRows.toLocaleString('en')} tag rows`);
    const sizes = measureSizes(databaseFile, dataDir);
    console.log(`database ${fmt(sizes.dbBytes / MB)} MB + WAL ${fmt(sizes.walBytes / MB)} MB after a checkpoint; VACUUM INTO: ${fmt(sizes.vacuumedBytes / MB)} MB in ${fmt(sizes.vacuumSeconds)} s`);

    const sampleDb = new Database(databaseFile, { readonly: true });
    const middle = Math.floor(members / 2) + 1;
    const member = sampleDb
      .prepare<[number], { id: number; email: string; firstName: string; lastName: string; keapContactId: number | null }>(
        'SELECT id, email, first_name AS firstName, last_name AS lastName, keap_contact_id AS keapContactId FROM members WHERE id = ?',
      )
      .get(middle)!;
    const pages = memberListPages({ members, member, tagId: tagIdOf('VIP') });
    if (process.env.LIMITS_EXPLAIN) {
      const store = new MemberStore(sampleDb);
      for (const { name, query } of pages) {
        if (!query) continue;
        const plan = store.explainList(query);
        console.log(`${name}\n  count: ${plan.count.join(' / ')}\n  page:  ${plan.page.join(' / ')}\n  page past 10,000 matches: ${plan.walkPage.join(' / ') || '-'}`);
      }
    }
    sampleDb.close();

    const sandbox = await startKeapSandbox({ apiKeys: [KEAP_KEY], limits: LIMITS });
    const startedAt = performance.now();
    const mh: Memberhook = await startMemberhook(sandbox, {}, { dataDir });
    const startSeconds = (performance.now() - startedAt) / 1000;
    try {
      const cookie = await adminCookie(mh.url, ADMIN_EMAIL, ADMIN_PASSWORD);
      if (PARTS.has('pages')) console.log('timing the admin members list…');
      const pageRows = PARTS.has('pages') ? await timePages(mh.url, cookie, pages, { runs: PAGE_RUNS, warmup: PAGE_WARMUP, cpuMs: mh.cpuMs }) : [];
      if (PARTS.has('logins')) console.log('timing member logins…');
      const logins = PARTS.has('logins') ? await measureLogins(mh.url, databaseFile, members) : undefined;
      if (PARTS.has('acks')) console.log(`timing webhook acks (${ACK_RUNS} × ${ACK_SECONDS} s at ${ACK_RATE}/s)…`);
      const acks = PARTS.has('acks') ? await measureAcks(mh.url, members) : [];
      const result: Result = {
        members,
        seedSeconds: seeded.seconds,
        insertSeconds: seeded.insertSeconds,
        tagRows: seeded.tagRows,
        sizes,
        pages: pageRows,
        logins,
        acks,
        startSeconds,
        peakRssMb: mh.peakRssMb(),
      };
      printResult(result);
      return result;
    } finally {
      await mh.stop();
      await sandbox.close();
    }
  } finally {
    if (process.env.LIMITS_KEEP) console.log(`kept ${dataDir}`);
    else rmSync(dataDir, { recursive: true, force: true });
  }
}

function printResult(r: Result): void {
  const n = r.members;
  if (r.pages.length) {
    console.log(`\n--- ${n.toLocaleString('en')} members: admin members list (${PAGE_RUNS} loads each over HTTP after ${PAGE_WARMUP} warm-up) ---`);
    const width = Math.max(...r.pages.map((p) => p.name.length));
    console.log(`${'page'.padEnd(width)}  median ms  p95 ms  server cpu ms  matching`);
    for (const p of r.pages) {
      const flag = p.p95 > LIST_TARGET_MS ? `  over ${LIST_TARGET_MS} ms` : '';
      console.log(`${p.name.padEnd(width)}  ${fmt(p.median).padStart(9)}  ${fmt(p.p95).padStart(6)}  ${fmt(p.cpu).padStart(13)}  ${p.matching.padStart(8)}${flag}`);
    }
  }

  const l = r.logins;
  if (l) {
    console.log(`\n--- member login (POST /login, bcrypt cost 10) ---`);
    console.log(`sequential (${l.sequential.runs}):            median ${fmt(l.sequential.median)} ms, p95 ${fmt(l.sequential.p95)} ms`);
    console.log(
      `concurrent (${LOGIN_BATCHES} batches of ${LOGIN_BATCH}): median ${fmt(l.concurrent.median)} ms, p95 ${fmt(l.concurrent.p95)} ms, ${fmt(l.concurrent.perSecond)} logins/s`,
    );
  }

  if (r.acks.length) {
    console.log(`\n--- webhook acks: ${ACK_RATE} posts/s, ${ACK_CONNECTIONS} connections, ${ACK_SECONDS} s a run ---`);
    r.acks.forEach((a, i) =>
      console.log(`run ${i + 1}: ${fmt(a.rps, 0)} posts/s, p50 ${a.p50} ms, p99 ${a.p99} ms, max ${a.max} ms, ${a.errors} errors`),
    );
    const p99 = median(r.acks.map((a) => a.p99));
    console.log(
      `median of ${r.acks.length}: p50 ${median(r.acks.map((a) => a.p50))} ms, p99 ${p99} ms (target < ${ACK_P99_TARGET_MS} ms${p99 >= ACK_P99_TARGET_MS ? ': NOT MET' : ''})`,
    );
  }

  const s = r.sizes;
  console.log(`\n--- database and seeding ---`);
  console.log(`seeding: ${fmt(r.seedSeconds)} s (${fmt(n / r.insertSeconds, 0)} members/s in the insert transaction), ${r.tagRows.toLocaleString('en')} tag rows`);
  console.log(
    `size: ${fmt(s.dbBytes / MB)} MB + ${fmt(s.walBytes / MB)} MB WAL after a checkpoint = ${fmt((s.dbBytes + s.walBytes) / n, 0)} bytes a member; ` +
      `VACUUMed ${fmt(s.vacuumedBytes / MB)} MB = ${fmt(s.vacuumedBytes / n, 0)} bytes a member (VACUUM INTO took ${fmt(s.vacuumSeconds)} s)`,
  );
  if (s.objects.length) console.log(`largest: ${s.objects.map((o) => `${o.name} ${fmt(o.bytes / MB)} MB`).join(', ')}`);
  console.log(`memberhook start on it: ${fmt(r.startSeconds, 2)} s; peak RSS ${fmt(r.peakRssMb, 0)} MB`);
}

function printSummary(results: Result[]): void {
  if (results.length < 2) return;
  console.log('\n=== summary ===');
  const head = ['', ...results.map((r) => `${r.members.toLocaleString('en')}`)];
  const rows: string[][] = [head];
  const pageNames = results[0]!.pages.map((p) => p.name);
  for (const name of pageNames) {
    rows.push([`${name}: median / p95 ms`, ...results.map((r) => {
      const p = r.pages.find((x) => x.name === name)!;
      return `${fmt(p.median)} / ${fmt(p.p95)}`;
    })]);
  }
  if (PARTS.has('logins')) {
    rows.push(['login sequential: median / p95 ms', ...results.map((r) => `${fmt(r.logins!.sequential.median)} / ${fmt(r.logins!.sequential.p95)}`)]);
    rows.push([`login ×${LOGIN_BATCH} concurrent: median / p95 ms`, ...results.map((r) => `${fmt(r.logins!.concurrent.median)} / ${fmt(r.logins!.concurrent.p95)}`)]);
    rows.push(['logins/s (concurrent)', ...results.map((r) => fmt(r.logins!.concurrent.perSecond))]);
  }
  if (PARTS.has('acks')) {
    rows.push([`ack p50 / p99 ms at ${ACK_RATE}/s (median of runs)`, ...results.map((r) => `${median(r.acks.map((a) => a.p50))} / ${median(r.acks.map((a) => a.p99))}`)]);
  }
  rows.push(['bytes a member (db + WAL / VACUUMed)', ...results.map((r) => `${fmt((r.sizes.dbBytes + r.sizes.walBytes) / r.members, 0)} / ${fmt(r.sizes.vacuumedBytes / r.members, 0)}`)]);
  rows.push(['seeding s', ...results.map((r) => fmt(r.seedSeconds))]);
  rows.push(['peak RSS MB', ...results.map((r) => fmt(r.peakRssMb, 0))]);
  const widths = head.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
}

async function main(): Promise<void> {
  const fs = statfsSync(tmpdir());
  console.log(
    `memberhook limits: ${COUNTS.map((c) => c.toLocaleString('en')).join(', ')} members; ${cpus().length} cores, ` +
      `${fmt(freemem() / 1024 / MB)} GB memory free, ${fmt((fs.bavail * fs.bsize) / 1024 / MB)} GB free in ${tmpdir()}, load average ${fmt(loadavg()[0]!, 2)}`,
  );
  const results: Result[] = [];
  for (const count of COUNTS) results.push(await limitsAt(count));
  printSummary(results);
  console.log(`\nload average at the end: ${fmt(loadavg()[0]!, 2)} (1 min) on ${cpus().length} cores`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
