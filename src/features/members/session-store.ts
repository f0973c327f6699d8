import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import type { Db } from '../../core/db.js';

/** How long a member session lasts (an admin session ends sooner; see admin-access.ts). */
export const SESSION_TTL_MS = 14 * 24 * 60 * 60 * 1000;

/** 32 random bytes as base64url: exactly 43 characters. Anything else in the cookie is not ours. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * Member login sessions. The cookie holds 32 random bytes; the database only their SHA-256, so a copy of the
 * database (a backup, a leaked file) opens no session. Expired rows are ignored and swept as new ones are made.
 */
export class MemberSessions {
  private readonly insertStmt;
  private readonly lookupStmt;
  private readonly deleteStmt;
  private readonly deleteForMemberStmt;
  private readonly purgeStmt;
  private readonly setExpiryStmt;

  constructor(
    db: Db,
    private readonly clock: Clock,
  ) {
    this.insertStmt = db.prepare('INSERT INTO sessions (id_hash, member_id, expires_at) VALUES (?, ?, ?)');
    this.lookupStmt = db.prepare<[string], { member_id: number; expires_at: number }>('SELECT member_id, expires_at FROM sessions WHERE id_hash = ?');
    this.deleteStmt = db.prepare('DELETE FROM sessions WHERE id_hash = ?');
    this.deleteForMemberStmt = db.prepare('DELETE FROM sessions WHERE member_id = ?');
    this.purgeStmt = db.prepare('DELETE FROM sessions WHERE expires_at <= ?');
    this.setExpiryStmt = db.prepare('UPDATE sessions SET expires_at = ? WHERE id_hash = ?');
  }

  /**
   * Starts a session, ending at `expiresAt` (a member's: in 14 days); returns the cookie value (shown to the browser
   * once, never stored) and its expiry.
   */
  create(memberId: number, expiresAt: number = this.clock.now() + SESSION_TTL_MS): { token: string; expiresAt: number } {
    this.purgeExpired();
    const token = randomBytes(32).toString('base64url');
    this.insertStmt.run(hashToken(token), memberId, expiresAt);
    return { token, expiresAt };
  }

  /** The member a cookie value belongs to, if it is a live session. */
  memberIdFor(token: string | undefined): number | undefined {
    if (!token || !TOKEN_PATTERN.test(token)) return undefined;
    const idHash = hashToken(token);
    const row = this.lookupStmt.get(idHash);
    if (!row) return undefined;
    if (row.expires_at <= this.clock.now()) {
      this.deleteStmt.run(idHash);
      return undefined;
    }
    return row.member_id;
  }

  destroy(token: string | undefined): void {
    if (token && TOKEN_PATTERN.test(token)) this.deleteStmt.run(hashToken(token));
  }

  /** Ends every session of a member (password changed, member banned); returns how many there were. */
  destroyAllFor(memberId: number): number {
    return this.deleteForMemberStmt.run(memberId).changes;
  }

  purgeExpired(): number {
    return this.purgeStmt.run(this.clock.now()).changes;
  }

  /** A session's expiry (epoch ms) by its cookie value, if it is one of ours and exists. */
  expiryOf(token: string): number | undefined {
    if (!TOKEN_PATTERN.test(token)) return undefined;
    return this.lookupStmt.get(hashToken(token))?.expires_at;
  }

  /** Moves a session's expiry (admin sessions slide; see admin-access.ts). */
  setExpiry(token: string, expiresAt: number): void {
    if (TOKEN_PATTERN.test(token)) this.setExpiryStmt.run(expiresAt, hashToken(token));
  }
}

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

