import type { Db } from '../../core/db.js';
import { SecretBox } from '../../core/secret-box.js';

/** Who waits for a pending password: Keap's password field (the write-back job) or the welcome email. */
export type PendingPasswordUse = 'keap' | 'email';

/**
 * Passwords waiting to reach Keap's password field and the welcome email (see migrations 002 and 012): a generated
 * one, or a changed one on its way to Keap. Sealed with the site key and bound to their member (a value copied to
 * another member's row does not open). One per member: a newer password replaces the one waiting. A password leaves
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
  private readonly dropStmt;
  private readonly keapJobStmt;
  private readonly releaseKeapOfJobStmt;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {
    // A replaced password starts its maximum age afresh (created_at takes its default again).
    this.saveStmt = db.prepare('INSERT OR REPLACE INTO pending_passwords (member_id, password, awaiting_keap, awaiting_email, keap_job_id) VALUES (?, ?, ?, ?, ?)');
    this.getStmt = db.prepare<[number], { password: string; awaiting_keap: number; awaiting_email: number }>(
      'SELECT password, awaiting_keap, awaiting_email FROM pending_passwords WHERE member_id = ?',
    );
    this.dropStmt = db.prepare<[number]>('DELETE FROM pending_passwords WHERE member_id = ?');
    this.keapJobStmt = db.prepare<[number, number]>('UPDATE pending_passwords SET keap_job_id = ? WHERE member_id = ?');
    this.releaseKeapOfJobStmt = db.prepare<[number, number]>(
      'UPDATE pending_passwords SET awaiting_keap = 0 WHERE member_id = ? AND (keap_job_id IS NULL OR keap_job_id = ?)',
    );
    this.releaseKeapStmt = db.prepare('UPDATE pending_passwords SET awaiting_keap = 0 WHERE member_id = ?');
    this.releaseEmailStmt = db.prepare('UPDATE pending_passwords SET awaiting_email = 0 WHERE member_id = ?');
    this.dropReleasedStmt = db.prepare('DELETE FROM pending_passwords WHERE member_id = ? AND awaiting_keap = 0 AND awaiting_email = 0');
    this.allStmt = db.prepare<[], { member_id: number; password: string }>('SELECT member_id, password FROM pending_passwords');
    this.resealStmt = db.prepare<[string, number, string]>('UPDATE pending_passwords SET password = ? WHERE member_id = ? AND password = ?');
    this.sweepStmt = db.prepare<[string]>('DELETE FROM pending_passwords WHERE created_at < ?');
  }

  /** Stores `password` for the member, replacing whatever password waited before (and what waited for it). */
  save(memberId: number, password: string, awaiting: { keap: boolean; email: boolean }, keapJobId?: number): void {
    this.saveStmt.run(memberId, this.box.seal(password, contextOf(memberId)), awaiting.keap ? 1 : 0, awaiting.email ? 1 : 0, keapJobId ?? null);
  }

  /** The write-back job that is to deliver the password to Keap (see `release`). */
  setKeapJob(memberId: number, jobId: number): void {
    this.keapJobStmt.run(jobId, memberId);
  }

  /** The password waiting for `use`; undefined when none does (one waiting only for the other use is not shown). */
  get(memberId: number, use: PendingPasswordUse): string | undefined {
    const row = this.getStmt.get(memberId);
    if (!row || (use === 'keap' ? row.awaiting_keap : row.awaiting_email) !== 1) return undefined;
    return this.box.open(row.password, contextOf(memberId), `the pending password of member ${memberId}`);
  }

  awaits(memberId: number, use: PendingPasswordUse): boolean {
    const row = this.getStmt.get(memberId);
    return row !== undefined && (use === 'keap' ? row.awaiting_keap : row.awaiting_email) === 1;
  }

  /** Deletes the member's waiting password, whatever waits for it (it is no longer the member's password). */
  drop(memberId: number): void {
    this.dropStmt.run(memberId);
  }

  /**
   * `keap` or `email` no longer needs the password; once neither does, it is deleted. With `keapJobId`, Keap's claim
   * is released only if that job is the one the password waits for: a job still running when a newer password
   * replaced the one it sent leaves the newer one to the job queued for it.
   */
  release(memberId: number, by: PendingPasswordUse, keapJobId?: number): void {
    this.db.transaction(() => {
      if (by === 'email') this.releaseEmailStmt.run(memberId);
      else if (keapJobId === undefined) this.releaseKeapStmt.run(memberId);
      else this.releaseKeapOfJobStmt.run(memberId, keapJobId);
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
        if (SecretBox.isSealed(row.password)) this.box.open(row.password, contextOf(row.member_id), `the pending password of member ${row.member_id}`);
        else sealed += this.resealStmt.run(this.box.seal(row.password, contextOf(row.member_id)), row.member_id, row.password).changes;
      }
      return sealed;
    }).immediate();
  }
}

function contextOf(memberId: number): string {
  return `pending_passwords:${memberId}`;
}
