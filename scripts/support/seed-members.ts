/**
 * Bulk seeding of realistic members for the benchmarks (`bench:members`, `limits`): a deterministic mix of names,
 * emails, usernames, roles and tags, written in one transaction straight through SQL. bcrypt at cost 10 takes
 * about 50 ms a hash, so every member gets one of a handful of real hashes made up front (member `id` has the
 * password `memberPassword(id)`): logins against the seeded members run the real bcrypt verify.
 */
import { performance } from 'node:perf_hooks';
import { openDatabase } from '../../src/core/db.js';
import { hashPassword } from '../../src/features/members/passwords.js';

export const ADMIN_EMAIL = 'bench-admin@example.com';
export const ADMIN_PASSWORD = 'bench admin password 0123';
/** The administrator is member 1; the seeded members are 2 .. count + 1. */
export const ADMIN_ID = 1;
/** Keap contact id of member `id`. */
export const contactIdOf = (id: number) => 100_000 + id;
/** How many different password hashes the seeded members share. */
export const PASSWORD_POOL = 8;
/** The password of seeded member `id`. */
export const memberPassword = (id: number) => `member password ${id % PASSWORD_POOL}`;

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
/** Tag `1000 + i` is `TAGS[i]`; low indexes are held far more often than high ones. */
export const TAGS = ['Customer', 'Newsletter', 'Webinar attendee', 'Gold member', 'Silver member', 'Trial', 'Payment failed', 'Cancelled',
  'Course A', 'Course B', 'Course C', 'VIP', 'Affiliate', 'Coaching', 'Early bird', 'Lead', 'Podcast', 'Workshop 2025', 'Workshop 2026',
  'Community', 'Beta tester', 'Partner', 'Donor', 'Volunteer', 'Speaker', 'Alumni', 'Referral', 'Survey done', 'Onboarded', 'Renewal due'];
export const tagIdOf = (name: string) => 1000 + TAGS.indexOf(name);

/** A small deterministic generator, so every run seeds the same members. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SeedOptions {
  /**
   * Run ANALYZE at the end (default true). memberhook itself never runs ANALYZE, so a database it grew has no
   * sqlite_stat1: leave this off to measure the query plans such a database gets.
   */
  analyze?: boolean;
  /** Called every 100,000 members with how many are in. */
  progress?: (done: number) => void;
}

export interface SeedResult {
  /** Seconds for the whole seeding, hashes and ANALYZE included. */
  seconds: number;
  /** Seconds for the inserts and their commit alone. */
  insertSeconds: number;
  tagRows: number;
}

/**
 * Seeds `count` members (plus the administrator, id 1) into a fresh database at `databaseFile` (migrated first),
 * in one transaction. Roles: about 70% subscriber, 30% member, 0.05% administrator; 0 to 4 tags each (2 on
 * average, the first tags far more common); half have Keap custom fields.
 */
export async function seedMembers(databaseFile: string, count: number, options: SeedOptions = {}): Promise<SeedResult> {
  const started = performance.now();
  const { db } = openDatabase({ filename: databaseFile });
  try {
    // Enough page cache for the indexes being built (email, username, names: random order), so the transaction does
    // not spill half-written pages into the WAL over and over. Only this connection's.
    db.pragma('cache_size = -1000000');
    const roles = new Map(db.prepare<[], { slug: string; id: number }>('SELECT slug, id FROM roles').all().map((r) => [r.slug, r.id]));
    const hashes = await Promise.all(Array.from({ length: PASSWORD_POOL }, (_, k) => hashPassword(memberPassword(k))));
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
    let tagRows = 0;
    const insertsStarted = performance.now();
    db.transaction(() => {
      const at = new Date(start).toISOString();
      insertMember.run(ADMIN_ID, ADMIN_EMAIL, ADMIN_EMAIL, roles.get('administrator'), adminHash, 'Bench', 'Admin', null, '{}', at, at);
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
        insertMember.run(i, email, username, roles.get(role), hashes[i % PASSWORD_POOL], first, last, contactIdOf(i), fields, created, created);
        const tagCount = Math.floor(next() * 5);
        const held = new Set<number>();
        for (let t = 0; t < tagCount; t++) held.add(Math.floor(next() * next() * TAGS.length));
        for (const t of held) insertTag.run(i, 1000 + t, TAGS[t], t < 10 ? 'Status' : 'Marketing');
        tagRows += held.size;
        if (options.progress && (i - 1) % 100_000 === 0) options.progress(i - 1);
      }
    }).immediate();
    const insertSeconds = (performance.now() - insertsStarted) / 1000;
    if (options.analyze ?? true) db.exec('ANALYZE');
    return { seconds: (performance.now() - started) / 1000, insertSeconds, tagRows };
  } finally {
    db.close();
  }
}
