/**
 * npm run bench:members: how fast the admin members list answers at 100,000 members. Seeds a temp database in one
 * bulk transaction, starts memberhook in this process, logs in as an administrator over HTTP and times page loads.
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
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/core/db.js';
import { createLogger } from '../src/core/logger.js';
import { hashPassword } from '../src/features/members/passwords.js';
import type { MemberQuery } from '../src/features/members/store.js';
import { startServer } from '../src/server.js';

const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const WARMUP = 3;
const TARGET_MS = 100;
const ADMIN_EMAIL = 'bench-admin@example.com';
const ADMIN_PASSWORD = 'bench admin password 0123';

const FIRST = ('Ada Alan Grace Linus Margaret Ken Barbara Dennis Frances Edsger Radia Niklaus Hedy Tim Katherine John Mary Claude ' +
  'Sophie Donald Joan Bjarne Anita Guido Shafi Leslie Jean Vint Lynn Robert Annie Brian Karen Ivan Evelyn James Susan Andrew ' +
  'Lucy Peter Olivia Noah Emma Liam Mia Lucas Chloe Mateo Zoe Hugo Nora Felix Iris Oscar Clara Theo Ruth Leo Alice Max Ines ' +
  'Jonas Ella Omar Lea Yusuf Sara Mohamed Aiko Kenji Priya Arjun Mei Wei Fatima Ali Elena Pablo Lucia Diego').split(' ');
const LAST = ('Lovelace Turing Hopper Torvalds Hamilton Thompson Liskov Ritchie Allen Dijkstra Perlman Wirth Lamarr Berners-Lee ' +
  'Johnson McCarthy Shannon Wilson Knuth Clarke Stroustrup Borg Rossum Goldwasser Lamport Sammet Cerf Conway Kahn Easley ' +
  'Kernighan Jones Sutherland Boyd Gosling Kare Tanenbaum Moore Smith Brown Taylor Martin Bernard Dubois Schmidt Muller Weber ' +
  'Fischer Rossi Russo Garcia Martinez Lopez Gonzalez Novak Horvat Nowak Kowalski Jansen Bakker Visser Larsen Nielsen Hansen ' +
  'Andersen Virtanen Korhonen Tanaka Suzuki Sato Kim Lee Park Nguyen Tran Singh Patel Khan Ahmed Silva Santos Costa Oliveira ' +
  'Ferreira Murphy Kelly Walsh Byrne Ryan OBrien Evans Davies Hughes Price').split(' ');
const DOMAINS = ['example.com', 'mail.example.org', 'inbox.example.net', 'company.example', 'school.example.edu'];
const TAGS = ['Customer', 'Newsletter', 'Webinar attendee', 'Gold member', 'Silver member', 'Trial', 'Payment failed', 'Cancelled',
  'Course A', 'Course B', 'Course C', 'VIP', 'Affiliate', 'Coaching', 'Early bird', 'Lead', 'Podcast', 'Workshop 2025', 'Workshop 2026',
  'Community', 'Beta tester', 'Partner', 'Donor', 'Volunteer', 'Speaker', 'Alumni', 'Referral', 'Survey done', 'Onboarded', 'Renewal due'];

/** A small deterministic generator, so every run seeds the same members. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeds `count` members (plus the administrator) in one transaction; returns the seconds it took. */
export async function seed(databaseFile: string, count: number): Promise<number> {
  const started = performance.now();
  const { db } = openDatabase({ filename: databaseFile });
  const roles = new Map(db.prepare<[], { slug: string; id: number }>('SELECT slug, id FROM roles').all().map((r) => [r.slug, r.id]));
  // One real hash for everybody: bcrypt at cost 10 for 100,000 members would take over an hour.
  const hash = await hashPassword('member password 0123');
  const adminHash = await hashPassword(ADMIN_PASSWORD);
  const insertMember = db.prepare(
    `INSERT INTO members (id, email, username, role_id, password_hash, first_name, last_name, keap_contact_id, fields, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertTag = db.prepare('INSERT INTO member_tags (member_id, tag_id, name, category) VALUES (?, ?, ?, ?)');
  const next = random(42);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const start = Date.parse('2023-01-01T00:00:00Z');
  const step = (Date.parse('2026-06-01T00:00:00Z') - start) / count;
  db.transaction(() => {
    insertMember.run(1, ADMIN_EMAIL, ADMIN_EMAIL, roles.get('administrator'), adminHash, 'Bench', 'Admin', null, '{}', new Date(start).toISOString(), new Date(start).toISOString());
    for (let i = 2; i <= count + 1; i++) {
      const first = pick(FIRST);
      const last = pick(LAST);
      const email = `${first}.${last}${i}@${pick(DOMAINS)}`.toLowerCase();
      // Most members come from Keap with username = email; some picked their own.
      const username = next() < 0.8 ? email : `${first.toLowerCase()}${last.slice(0, 3).toLowerCase()}${i}`;
      const r = next();
      const role = r < 0.7 ? 'subscriber' : r < 0.9995 ? 'member' : 'administrator';
      const created = new Date(start + i * step).toISOString();
      const fields = next() < 0.5 ? JSON.stringify({ Phone: `+1 555 ${String(i).padStart(7, '0')}`, Company: `${last} Ltd` }) : '{}';
      insertMember.run(i, email, username, roles.get(role), hash, first, last, 100_000 + i, fields, created, created);
      const tagCount = Math.floor(next() * 5);
      const held = new Set<number>();
      for (let t = 0; t < tagCount; t++) held.add(Math.floor(next() * next() * TAGS.length));
      for (const t of held) insertTag.run(i, 1000 + t, TAGS[t], t < 10 ? 'Status' : 'Marketing');
    }
  }).immediate();
  db.exec('ANALYZE');
  db.close();
  return (performance.now() - started) / 1000;
}

/** Cookies and form token of a logged-in administrator. */
async function logIn(url: string): Promise<string> {
  const form = await fetch(`${url}/admin/login`);
  const jar = new Map<string, string>();
  const keep = (res: Response) => {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const [name, ...value] = pair!.split('=');
      jar.set(name!, value.join('='));
    }
  };
  keep(form);
  const token = /name="_csrf" value="([^"]+)"/.exec(await form.text())![1]!;
  const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(`${url}/admin/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie() },
    body: new URLSearchParams({ _csrf: token, login: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
  });
  if (res.status !== 303) throw new Error(`admin login failed: ${res.status}`);
  keep(res);
  return cookie();
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'memberhook-bench-members-'));
  try {
    const config = loadConfig({ DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', ACCESS_KEY: 'bench-access-key-0123456789-abcdefghijklmn', LOG_LEVEL: 'warn' });
    console.log(`seeding ${MEMBERS.toLocaleString('en')} members…`);
    const seconds = await seed(config.databaseFile, MEMBERS);
    console.log(`seeded in ${seconds.toFixed(1)} s`);

    const server = await startServer(config, { logger: createLogger({ level: 'warn' }), console: () => {}, worker: { start: false } });
    try {
      const cookie = await logIn(server.url);
      const lastPage = Math.ceil((MEMBERS + 1) / 50);
      const sample = server.ctx.members.findById(Math.floor(MEMBERS / 2))!;
      const tag = server.ctx.members.store.heldTags().find((t) => t.name === 'VIP')!;
      const emailPrefix = sample.email.slice(0, sample.email.indexOf('.') + 3);
      const namePrefix = sample.lastName.slice(0, 4);
      const pages: Array<[string, string, MemberQuery?]> = [
        ['first page', '/admin/members', { page: 1, pageSize: 50 }],
        ['deep page (middle)', `/admin/members?page=${Math.ceil(lastPage / 2)}`, { page: Math.ceil(lastPage / 2), pageSize: 50 }],
        ['last page', `/admin/members?page=${lastPage}`, { page: lastPage, pageSize: 50 }],
        ['search email prefix', `/admin/members?q=${encodeURIComponent(emailPrefix)}`, { q: emailPrefix, page: 1, pageSize: 50 }],
        ['search last-name prefix', `/admin/members?q=${encodeURIComponent(namePrefix)}`, { q: namePrefix, page: 1, pageSize: 50 }],
        ['search one letter', '/admin/members?q=m', { q: 'm', page: 1, pageSize: 50 }],
        ['role filter', '/admin/members?role=member', { role: 'member', page: 1, pageSize: 50 }],
        ['tag filter', `/admin/members?tag=${tag.id}`, { tag: tag.id, page: 1, pageSize: 50 }],
        ['sort by name', '/admin/members?sort=name', { sort: 'name', page: 1, pageSize: 50 }],
        ['sort by name, deep page', `/admin/members?sort=name&page=${Math.ceil(lastPage / 2)}`, { sort: 'name', page: Math.ceil(lastPage / 2), pageSize: 50 }],
        ['role + sort by name', '/admin/members?role=subscriber&sort=name', { role: 'subscriber', sort: 'name', page: 1, pageSize: 50 }],
        ['role + tag + sort by email', `/admin/members?role=subscriber&tag=${tag.id}&sort=email`, { role: 'subscriber', tag: tag.id, sort: 'email', page: 1, pageSize: 50 }],
        ['member page', `/admin/members/${sample.id}`],
      ];

      const rows: Array<{ name: string; path: string; median: number; p95: number; cpu: number; members: string }> = [];
      if (process.env.BENCH_EXPLAIN) {
        for (const [name, , query] of pages) {
          if (!query) continue;
          const plan = server.ctx.members.store.explainList(query);
          console.log(`${name}\n  count: ${plan.count.join(' / ')}\n  page:  ${plan.page.join(' / ')}`);
        }
      }
      for (const [name, path] of pages) {
        const times: number[] = [];
        const cpu: number[] = [];
        let shown = '';
        for (let run = 0; run < WARMUP + RUNS; run++) {
          const t0 = performance.now();
          const c0 = process.cpuUsage();
          const res = await fetch(`${server.url}${path}`, { headers: { cookie } });
          const html = await res.text();
          const ms = performance.now() - t0;
          const used = process.cpuUsage(c0);
          if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
          if (run >= WARMUP) {
            times.push(ms);
            cpu.push((used.user + used.system) / 1000);
          }
          shown = /data-total="(\d+)"/.exec(html)?.[1] ?? '';
        }
        times.sort((a, b) => a - b);
        cpu.sort((a, b) => a - b);
        rows.push({ name, path, median: percentile(times, 50), p95: percentile(times, 95), cpu: percentile(cpu, 50), members: shown });
      }

      const width = Math.max(...rows.map((r) => r.name.length));
      console.log(`\nadmin members pages at ${MEMBERS.toLocaleString('en')} members, ${RUNS} loads each over HTTP (after ${WARMUP} warm-up loads)\n`);
      // CPU time (this process: server and client together) is what the loads cost; wall time also counts the turns of
      // whatever else runs on the machine.
      console.log(`${'page'.padEnd(width)}  median ms  p95 ms  cpu ms   matching`);
      for (const r of rows) {
        const flag = r.p95 > TARGET_MS ? '  over target' : '';
        console.log(`${r.name.padEnd(width)}  ${r.median.toFixed(1).padStart(9)}  ${r.p95.toFixed(1).padStart(6)}  ${r.cpu.toFixed(1).padStart(6)}  ${r.members.padStart(9)}${flag}`);
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
