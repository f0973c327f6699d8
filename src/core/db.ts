import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Db = Database.Database;

/** The repository's migrations folder; the same relative path works from src/core and dist/core. */
export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

export interface OpenDatabaseOptions {
  /** A file path, or ':memory:'. */
  filename: string;
  migrationsDir?: string;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Opens the database with the pragmas the app relies on and brings its schema up to date. */
export function openDatabase(options: OpenDatabaseOptions): { db: Db; applied: Migration[] } {
  if (options.filename !== ':memory:') {
    mkdirSync(dirname(options.filename), { recursive: true, mode: 0o700 });
    // SQLite would create the file 0644 (less the umask) and gives its -wal and -shm the database's mode: made here
    // first, owner-only, all three stay so. An existing file is left as it is (see core/data-dir.ts).
    closeSync(openSync(options.filename, 'a', 0o600));
  }
  const db = new Database(options.filename);
  // WAL lets readers (admin pages, API) run while the worker writes; NORMAL sync is durable across process
  // crashes in WAL mode, which is the failure this app must survive (not power loss mid-fsync).
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Writers from other processes (the CLI while the server runs) wait instead of failing at once.
  db.pragma('busy_timeout = 5000');
  // After a checkpoint lets the WAL start over, its file is cut back to this size instead of staying at its peak.
  db.pragma('journal_size_limit = 33554432');
  const applied = migrate(db, readMigrations(options.migrationsDir ?? MIGRATIONS_DIR));
  return { db, applied };
}

export function readMigrations(dir: string): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d+_[\w-]+\.sql$/.test(file))
    .map((file) => {
      const [number, ...rest] = file.replace(/\.sql$/, '').split('_');
      return { version: Number(number), name: rest.join('_'), sql: readFileSync(join(dir, file), 'utf8') };
    })
    .sort((a, b) => a.version - b.version);
}

/** Applies, in order and each in its own transaction, the migrations newer than the database's version. */
export function migrate(db: Db, migrations: Migration[]): Migration[] {
  const seen = new Set<number>();
  for (const m of migrations) {
    if (seen.has(m.version)) throw new Error(`two migrations are numbered ${m.version}`);
    seen.add(m.version);
  }
  const current = db.pragma('user_version', { simple: true }) as number;
  const pending = migrations.filter((m) => m.version > current);
  for (const m of pending) {
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return pending;
}

/** Current time in the format every timestamp column uses. */
export function isoNow(ms: number = Date.now()): string {
  return new Date(ms).toISOString();
}

/** True for SQLite's unique-constraint error on the given column (e.g. `members.email`). */
export function isUniqueViolation(err: unknown, column?: string): boolean {
  const e = err as { code?: string; message?: string };
  if (e?.code !== 'SQLITE_CONSTRAINT_UNIQUE') return false;
  return column === undefined || (e.message ?? '').includes(column);
}
