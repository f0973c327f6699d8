import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Db } from '../../core/db.js';

/**
 * What memberhook last knew Keap's password field to hold for each member (see migration 012): a password written
 * there, taken from there, or found there. Kept as an HMAC with a key of its own (derived from the signing secret,
 * sealed with the site key), so the table reveals no password and a copy of it alone cannot test guesses.
 */
export class KeapPasswordSeen {
  private readonly getStmt;
  private readonly putStmt;
  private key: Buffer | undefined;

  constructor(
    db: Db,
    /** Read on first use: the secret behind it is made then if the site has none yet. */
    private readonly loadKey: () => Buffer,
  ) {
    this.getStmt = db.prepare<[number], { fingerprint: string }>('SELECT fingerprint FROM keap_password_seen WHERE member_id = ?');
    this.putStmt = db.prepare<[number, string]>(
      `INSERT INTO keap_password_seen (member_id, fingerprint) VALUES (?, ?)
       ON CONFLICT (member_id) DO UPDATE SET fingerprint = excluded.fingerprint, seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`,
    );
  }

  /** `same`: the field holds what was last seen; `changed`: something else; `unknown`: nothing was seen yet. */
  compare(memberId: number, value: string): 'same' | 'changed' | 'unknown' {
    const row = this.getStmt.get(memberId);
    if (!row) return 'unknown';
    const stored = Buffer.from(row.fingerprint, 'base64url');
    const now = Buffer.from(this.fingerprint(memberId, value), 'base64url');
    return stored.length === now.length && timingSafeEqual(stored, now) ? 'same' : 'changed';
  }

  record(memberId: number, value: string): void {
    this.putStmt.run(memberId, this.fingerprint(memberId, value));
  }

  private fingerprint(memberId: number, value: string): string {
    this.key ??= this.loadKey();
    return createHmac('sha256', this.key).update(`${memberId}\n${value}`).digest('base64url');
  }
}
