import type { Db } from './db.js';
import { SecretBox } from './secret-box.js';

/**
 * Key-value settings stored in the database: values set from the admin pages, and values the app generates
 * once and must keep (the webhook access key). Environment variables, when set, take precedence over these.
 */
export class SettingsStore {
  private readonly getStmt;
  private readonly putStmt;
  private readonly insertIfAbsentStmt;
  private readonly compareAndSetStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string], { value: string }>('SELECT value FROM settings WHERE key = ?');
    this.putStmt = db.prepare(
      `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    );
    this.insertIfAbsentStmt = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING');
    this.compareAndSetStmt = db.prepare<[string, string, string]>(
      "UPDATE settings SET value = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE key = ? AND value = ?",
    );
  }

  get(key: string): string | undefined {
    return this.getStmt.get(key)?.value;
  }

  set(key: string, value: string): void {
    this.putStmt.run(key, value);
  }

  /** Replaces the value only if it is still `expected` (another process may have changed it); true when it did. */
  compareAndSet(key: string, expected: string, value: string): boolean {
    return this.compareAndSetStmt.run(value, key, expected).changes === 1;
  }

  /** Stores `value` unless the key already has one; returns whichever value is stored (race-free across processes). */
  setIfAbsent(key: string, value: string): { value: string; inserted: boolean } {
    const inserted = this.insertIfAbsentStmt.run(key, value).changes === 1;
    return { value: inserted ? value : this.get(key)!, inserted };
  }
}

/**
 * Settings that are secrets (a stored API key, a signing secret): sealed with the site key (see secret-box.ts) in the
 * same settings table, each bound to its key. An empty value is stored as it is: it means "none" and hides nothing.
 */
export class SealedSettings {
  constructor(
    private readonly store: SettingsStore,
    private readonly box: SecretBox,
  ) {}

  get(key: string): string | undefined {
    const stored = this.store.get(key);
    if (stored === undefined || stored === '') return stored;
    return this.box.open(stored, contextOf(key), `the setting ${key}`);
  }

  set(key: string, value: string): void {
    this.store.set(key, value === '' ? '' : this.box.seal(value, contextOf(key)));
  }

  /** As SettingsStore.setIfAbsent, for a secret: returns whichever value is stored, opened. */
  setIfAbsent(key: string, value: string): { value: string; inserted: boolean } {
    const { inserted } = this.store.setIfAbsent(key, value === '' ? '' : this.box.seal(value, contextOf(key)));
    return { value: inserted ? value : this.get(key)!, inserted };
  }

  /**
   * Seals a value stored in plaintext by a version from before encryption, and checks that a sealed one opens with
   * this key (a wrong key stops the start here, with the setting named, not later in a job). Safe to run at every
   * start and from both threads. Returns true when it sealed something.
   */
  sealStored(key: string): boolean {
    const stored = this.store.get(key);
    if (stored === undefined || stored === '') return false;
    if (SecretBox.isSealed(stored)) {
      this.get(key);
      return false;
    }
    return this.store.compareAndSet(key, stored, this.box.seal(stored, contextOf(key)));
  }
}

function contextOf(key: string): string {
  return `settings:${key}`;
}
