/**
 * npm run bench:members: how fast the admin members list answers at 100,000 members. Seeds a temp database in one
 * bulk transaction, starts memberhook in this process, logs in as an administrator over HTTP and times page loads.
 * (`npm run limits` does the same and more at up to a million members, with memberhook as its own process.)
 *
 *   npm run bench:members                      # 100,000 members, 15 timed loads per page
 *   BENCH_MEMBERS=1000000 npm run bench:members
 *   BENCH_RUNS=30 npm run bench:members
 *   BENCH_EXPLAIN=1 npm run bench:members      # also print each list query's plan
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/core/logger.js';
import { MemberStore } from '../src/features/members/store.js';
import { startServer } from '../src/server.js';
import { adminCookie } from './support/http-session.js';
import { memberListPages, timePages } from './support/member-list-pages.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, seedMembers, tagIdOf } from './support/seed-members.js';

const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const WARMUP = 3;
const TARGET_MS = 100;

/** Seeds `count` members (plus the administrator) in one transaction; returns the seconds it took. */
export async function seed(databaseFile: string, count: number): Promise<number> {
  return (await seedMembers(databaseFile, count)).seconds;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'memberhook-bench-members-'));
  try {
    const config = loadConfig({ DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', ACCESS_KEY: 'bench-access-key-0123456789-abcdefghijklmn', LOG_LEVEL: 'warn' });
    console.log(`seeding ${MEMBERS.toLocaleString('en')} members…`);
    const seconds = await seed(config.databaseFile, MEMBERS);
    console.log(`seeded in ${seconds.toFixed(1)} s`);

    const server = await startServer(config, { logger: createLogger({ level: 'warn' }), console: () => {}, worker: { start: false } });
    try {
      const cookie = await adminCookie(server.url, ADMIN_EMAIL, ADMIN_PASSWORD);
      const member = server.ctx.members.findById(Math.floor(MEMBERS / 2))!;
      const pages = memberListPages({ members: MEMBERS, member, tagId: tagIdOf('VIP') });

      if (process.env.BENCH_EXPLAIN) {
        for (const { name, query } of pages) {
          if (!query) continue;
          const plan = new MemberStore(server.ctx.db).explainList(query);
          console.log(`${name}\n  count: ${plan.count.join(' / ')}\n  page:  ${plan.page.join(' / ')}\n  page past 10,000 matches: ${plan.walkPage.join(' / ') || '-'}`);
        }
      }
      const cpuMs = () => {
        const used = process.cpuUsage();
        return (used.user + used.system) / 1000;
      };
      const rows = await timePages(server.url, cookie, pages, { runs: RUNS, warmup: WARMUP, cpuMs });

      const width = Math.max(...rows.map((r) => r.name.length));
      console.log(`\nadmin members pages at ${MEMBERS.toLocaleString('en')} members, ${RUNS} loads each over HTTP (after ${WARMUP} warm-up loads)\n`);
      // CPU time (this process: server and client together) is what the loads cost; wall time also counts the turns of
      // whatever else runs on the machine.
      console.log(`${'page'.padEnd(width)}  median ms  p95 ms  cpu ms   matching`);
      for (const r of rows) {
        const flag = r.p95 > TARGET_MS ? '  over target' : '';
        console.log(`${r.name.padEnd(width)}  ${r.median.toFixed(1).padStart(9)}  ${r.p95.toFixed(1).padStart(6)}  ${r.cpu.toFixed(1).padStart(6)}  ${r.matching.padStart(9)}${flag}`);
      }
      console.log(`\ntarget: under ${TARGET_MS} ms each; load average during the run: ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores`);
    } finally {
      await server.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// Runs when started as a script; other scripts may import `seed`.
if (import.meta.url === pathToFileURL(process.argv[1]!).href) await main();
