import type { Db } from '../../core/db.js';
import { SecretBox } from '../../core/secret-box.js';

/**
 * Generated passwords waiting to reach Keap's password field and the welcome email (see migration 002), sealed with
 * the site key and bound to their member (a value copied to another member's row does not open). A password leaves
 * when nothing waits for it any more: both deliveries done, or their jobs ended for good (failed, dead), or when it
 * is older than the sweep's maximum age, whatever became of its jobs.
 */
export class PendingPasswordStore {
  private readonly saveStmt;
  private readonly getStmt;
  private readonly releaseKeapStmt;
  private readonly releaseEmailStmt;
  private readonly dropReleasedStmt;
  private readonly allStmt;
  private readonly resealStmt;
  private readonly sweepStmt;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {
    this.saveStmt = db.prepare('INSERT INTO pending_passwords (member_id, password, awaiting_keap, awaiting_email) VALUES (?, ?, ?, ?)');
    this.getStmt = db.prepare<[number], { password: string }>('SELECT password FROM pending_passwords WHERE member_id = ?');
    this.releaseKeapStmt = db.prepare('UPDATE pending_passwords SET awaiting_keap = 0 WHERE member_id = ?');
    this.releaseEmailStmt = db.prepare('UPDATE pending_passwords SET awaiting_email = 0 WHERE member_id = ?');
    this.dropReleasedStmt = db.prepare('DELETE FROM pending_passwords WHERE member_id = ? AND awaiting_keap = 0 AND awaiting_email = 0');
    this.allStmt = db.prepare<[], { member_id: number; password: string }>('SELECT member_id, password FROM pending_passwords');
    this.resealStmt = db.prepare<[string, number, string]>('UPDATE pending_passwords SET password = ? WHERE member_id = ? AND password = ?');
    this.sweepStmt = db.prepare<[string]>('DELETE FROM pending_passwords WHERE created_at < ?');
  }

  save(memberId: number, password: string, awaiting: { keap: boolean; email: boolean }): void {
    this.saveStmt.run(memberId, this.box.seal(password, contextOf(memberId)), awaiting.keap ? 1 : 0, awaiting.email ? 1 : 0);
  }

  get(memberId: number): string | undefined {
    const row = this.getStmt.get(memberId);
    return row && this.box.open(row.password, contextOf(memberId), `the pending password of member ${memberId}`);
  }

  /** `keap` or `email` no longer needs the password; once neither does, it is deleted. */
  release(memberId: number, by: 'keap' | 'email'): void {
    this.db.transaction(() => {
      (by === 'keap' ? this.releaseKeapStmt : this.releaseEmailStmt).run(memberId);
      this.dropReleasedStmt.run(memberId);
    })();
  }

  /** Deletes the passwords saved before `cutoffIso` (ISO time); returns how many. */
  sweepOlderThan(cutoffIso: string): number {
    return this.sweepStmt.run(cutoffIso).changes;
  }

  /**
   * Seals the passwords stored in plaintext by a version from before encryption, and checks sealed ones open with this
   * key (a wrong site key stops the start here). Safe at every start and from both threads; returns how many it sealed.
   */
  sealStored(): number {
    return this.db.transaction(() => {
      let sealed = 0;
      for (const row of this.allStmt.all()) {
        if (SecretBox.isSealed(row.password)) this.get(row.member_id);
        else sealed += this.resealStmt.run(this.box.seal(row.password, contextOf(row.member_id)), row.member_id, row.password).changes;
      }
      return sealed;
    }).immediate();
  }
}

function contextOf(memberId: number): string {
  return `pending_passwords:${memberId}`;
}
