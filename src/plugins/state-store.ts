import type { Db } from '../core/db.js';

/** Which plugins an administrator turned off (the `plugins` table); a plugin without a row runs. */
export class PluginStateStore {
  private readonly getStmt;
  private readonly setStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string], number>('SELECT enabled FROM plugins WHERE name = ?').pluck();
    this.setStmt = db.prepare(
      `INSERT INTO plugins (name, enabled, updated_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
       ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at`,
    );
  }

  isEnabled(name: string): boolean {
    return this.getStmt.get(name) !== 0;
  }

  setEnabled(name: string, enabled: boolean): void {
    this.setStmt.run(name, enabled ? 1 : 0);
  }
}
