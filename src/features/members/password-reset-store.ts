import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../../core/db.js';

/** 32 random bytes as base64url: exactly 43 characters. Anything else is not one of ours and is not looked up. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function isWellFormedResetToken(token: unknown): token is string {
  return typeof token === 'string' && TOKEN_PATTERN.test(token);
}

/**
 * The `password_resets` table. The token travels in the emailed link only; the table holds its SHA-256, so
 * neither a database copy nor the admin's event log can be turned into a working link.
 */
export class PasswordResetStore {
  private readonly insertStmt;
  private readonly findStmt;
  private readonly consumeStmt;
  private readonly deleteStmt;
  private readonly deleteOutstandingStmt;
  private readonly purgeStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare('INSERT INTO password_resets (token_hash, member_id, expires_at, created_at) VALUES (?, ?, ?, ?)');
    this.findStmt = db.prepare<[string, number], { member_id: number }>(
      'SELECT member_id FROM password_resets WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?',
    );
    // One statement decides which of two racing posts gets the token: the other finds used_at set and changes nothing.
    this.consumeStmt = db.prepare<[number, string, number], { member_id: number }>(
      'UPDATE password_resets SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING member_id',
    );
    this.deleteStmt = db.prepare('DELETE FROM password_resets WHERE token_hash = ?');
    this.deleteOutstandingStmt = db.prepare('DELETE FROM password_resets WHERE member_id = ? AND used_at IS NULL');
    this.purgeStmt = db.prepare('DELETE FROM password_resets WHERE expires_at <= ?');
  }

  /** A new token for the member, good until `expiresAt`; returns it (to be emailed, never stored or logged). */
  create(memberId: number, now: number, expiresAt: number): string {
    const token = randomBytes(32).toString('base64url');
    this.insertStmt.run(hashResetToken(token), memberId, expiresAt, now);
    return token;
  }

  /** The member a token would reset, if it is unused and unexpired; changes nothing. */
  memberIdFor(token: string, now: number): number | undefined {
    if (!isWellFormedResetToken(token)) return undefined;
    return this.findStmt.get(hashResetToken(token), now)?.member_id;
  }

  /** Marks the token used if it still can be; returns its member, or undefined if it was used, expired or unknown. */
  consume(token: string, now: number): number | undefined {
    if (!isWellFormedResetToken(token)) return undefined;
    return this.consumeStmt.get(now, hashResetToken(token), now)?.member_id;
  }

  /** Takes back a token whose email could not be sent. */
  delete(token: string): void {
    this.deleteStmt.run(hashResetToken(token));
  }

  /** Drops a member's unused tokens (after one was used, every older link stops working). */
  deleteOutstandingFor(memberId: number): number {
    return this.deleteOutstandingStmt.run(memberId).changes;
  }

  /** Expired rows are of no use to anyone; swept as new tokens are made. */
  purgeExpired(now: number): number {
    return this.purgeStmt.run(now).changes;
  }
}

export function hashResetToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
