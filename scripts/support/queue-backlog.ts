/**
 * The queue side of `npm run bench`'s ack part: how many jobs memberhook still has waiting when the load ends (is
 * the worker keeping up with what it acknowledges?), and, for `BENCH_BACKLOG`, a data folder whose queue already
 * holds a deep backlog, as after a Keap outage, for every memberhook run to start from.
 */
import Database from 'better-sqlite3';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeapSandbox } from '../../tools/keap-sandbox/index.js';
import { startMemberhook } from './memberhook-process.js';

/** memberhook's database in its data folder. */
export const databaseIn = (dataDir: string) => join(dataDir, 'memberhook.db');

/**
 * Jobs still waiting or running (status queued or processing) in the database of the memberhook using `dataDir`,
 * leaving out those with an id up to `afterId` (a seeded backlog). Opens the database read-only beside the running
 * process.
 */
export function jobsWaiting(dataDir: string, afterId = 0): number {
  const db = new Database(databaseIn(dataDir), { readonly: true });
  try {
    return db.prepare<[number], number>("SELECT count(*) FROM events WHERE status IN ('queued', 'processing') AND id > ?").pluck().get(afterId)!;
  } finally {
    db.close();
  }
}

/** Backlog contacts are `BACKLOG_CONTACT_BASE + i`, far above the load generators' ids (a million per run). */
export const BACKLOG_CONTACT_BASE = 900_000_000;
/** How long the backlog's jobs wait out their retry, counted from the seeding. */
export const BACKLOG_RETRY_MS = 60 * 60 * 1000;

export interface Backlog {
  /** How many jobs wait in the seeded queue. */
  rows: number;
  /** The highest event id in the seeded database: what a run adds has ids above it. */
  lastId: number;
  /** A new data folder holding a copy of the seeded one, for one run; `remove` it afterwards. */
  copy(): string;
  /** Deletes the seeded folder. */
  remove(): void;
}

/**
 * A data folder whose queue holds `rows` jobs waiting, as after a Keap outage: an `add` for each of `rows` distinct
 * contacts, each tried once, answered 503 and waiting out its retry for an hour, so a worker must step past them
 * rather than run them. The schema is memberhook's own: memberhook (from `checkout`, when given) starts once on the
 * new folder and stops, then the rows go in, in one transaction.
 */
export async function seedBacklog(sandbox: KeapSandbox, rows: number, checkout?: string): Promise<Backlog> {
  const dir = mkdtempSync(join(tmpdir(), 'memberhook-backlog-'));
  const mh = await startMemberhook(sandbox, {}, { dataDir: dir, ...(checkout ? { checkout } : {}) });
  await mh.stop();
  const db = new Database(databaseIn(dir));
  let lastId: number;
  try {
    const columns = new Set(db.prepare<[], string>("SELECT name FROM pragma_table_info('events')").pluck().all());
    // The columns the receiver fills for a contact's post (src/core/jobs/store.ts), plus a retry's: the rest keep
    // their defaults.
    const values: Record<string, string> = {
      source: "'http_post'",
      action: "'add'",
      contact_id: '@contact',
      object_type: "'contact'",
      object_id: '@objectId',
      event_type: "'contact.add'",
      params: '@params',
      status: "'queued'",
      attempts: '1',
      last_error: "'Keap answered 503'",
      run_after: '@runAfter',
      created_at: '@now',
      updated_at: '@now',
    };
    const missing = Object.keys(values).filter((c) => !columns.has(c));
    if (missing.length) throw new Error(`memberhook's events table has no ${missing.join(', ')} column: the backlog seeding needs updating`);
    const insert = db.prepare(`INSERT INTO events (${Object.keys(values).join(', ')}) VALUES (${Object.values(values).join(', ')})`);
    const now = new Date();
    const at = { now: now.toISOString(), runAfter: now.getTime() + BACKLOG_RETRY_MS };
    db.transaction(() => {
      for (let i = 1; i <= rows; i++) {
        const contact = BACKLOG_CONTACT_BASE + i;
        insert.run({ ...at, contact, objectId: String(contact), params: JSON.stringify({ contact_id: contact }) });
      }
    }).immediate();
    lastId = db.prepare<[], number>('SELECT coalesce(max(id), 0) FROM events').pluck().get()!;
    // Everything into memberhook.db, so the folder copies without its -wal and -shm files.
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  return {
    rows,
    lastId,
    copy() {
      const target = mkdtempSync(join(tmpdir(), 'memberhook-bench-'));
      cpSync(dir, target, { recursive: true, filter: (source) => !/-(wal|shm)$/.test(source) });
      return target;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
