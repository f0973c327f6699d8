import type { Db } from './db.js';

/**
 * Key-value settings stored in the database: values set from the admin pages, and values the app generates
 * once and must keep (the webhook access key). Environment variables, when set, take precedence over these.
 */
export class SettingsStore {
  private readonly getStmt;
  private readonly putStmt;
  private readonly insertIfAbsentStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string], { value: string }>('SELECT value FROM settings WHERE key = ?');
    this.putStmt = db.prepare(
      `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    );
    this.insertIfAbsentStmt = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING');
  }

  get(key: string): string | undefined {
    return this.getStmt.get(key)?.value;
  }

  set(key: string, value: string): void {
    this.putStmt.run(key, value);
  }

  /** Stores `value` unless the key already has one; returns whichever value is stored (race-free across processes). */
  setIfAbsent(key: string, value: string): { value: string; inserted: boolean } {
    const inserted = this.insertIfAbsentStmt.run(key, value).changes === 1;
    return { value: inserted ? value : this.get(key)!, inserted };
  }
}
