import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { isoNow, type Db } from '../../core/db.js';
import type { ApiScope } from './scopes.js';

/** What the admin sees of a token; the token itself exists only in the answer to `create`. */
export interface ApiTokenRecord {
  id: number;
  name: string;
  /** The token's first characters (`mh_` and 8 more): enough to tell tokens apart, useless for guessing. */
  prefix: string;
  /** What the token may do (see scopes.ts). */
  scope: ApiScope;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export const API_TOKEN_NAME_MAX = 100;
const TOKEN_PREFIX = 'mh_';
const SHOWN_PREFIX_LENGTH = TOKEN_PREFIX.length + 8;
/** last_used_at is a write on the hottest API path; a minute's precision is all the admin page needs. */
const LAST_USED_PRECISION_MS = 60_000;

const COLUMNS = 'id, name, prefix, scope, created_at, last_used_at, revoked_at';

interface TokenRow {
  id: number;
  name: string;
  prefix: string;
  scope: ApiScope;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export type TokenCheck = { ok: true; token: ApiTokenRecord } | { ok: false; reason: 'unknown' | 'revoked' };

/** `mh_` and 32 random bytes in base64url (46 characters). */
export function generateApiToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function hashApiToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The name an admin typed, trimmed, or what is wrong with it (shown under the form field). */
export function validateTokenName(raw: unknown): { name: string; error?: undefined } | { name: string; error: string } {
  const name = typeof raw === 'string' ? raw.trim() : '';
  if (!name) return { name, error: 'Enter a name that says what will use the token, e.g. "nightly export script".' };
  if (name.length > API_TOKEN_NAME_MAX) return { name, error: `The name can be at most ${API_TOKEN_NAME_MAX} characters (it has ${name.length}).` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return { name, error: 'The name cannot contain line breaks or control characters.' };
  return { name };
}

/**
 * API tokens: created in the admin, stored as SHA-256 hashes, checked on every API request. The check is a lookup
 * by hash: timing can at most tell an attacker about hashes of their own guesses, never about a stored token.
 * Revocation is one UPDATE and every request reads the row, so a revoked token is refused from the next request on.
 */
export class ApiTokenStore {
  private readonly insertStmt;
  private readonly byHashStmt;
  private readonly touchStmt;
  private readonly listStmt;
  private readonly getStmt;
  private readonly revokeStmt;
  private readonly anyLiveStmt;
  private readonly liveNameStmt;

  constructor(db: Db, private readonly clock: Clock) {
    this.insertStmt = db.prepare<[string, string, string, ApiScope, string], TokenRow>(
      `INSERT INTO api_tokens (name, token_hash, prefix, scope, created_at) VALUES (?, ?, ?, ?, ?) RETURNING ${COLUMNS}`,
    );
    this.byHashStmt = db.prepare<[string], TokenRow>(`SELECT ${COLUMNS} FROM api_tokens WHERE token_hash = ?`);
    this.touchStmt = db.prepare<[string, number, string]>('UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)');
    this.listStmt = db.prepare<[], TokenRow>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY revoked_at IS NOT NULL, id DESC`);
    this.getStmt = db.prepare<[number], TokenRow>(`SELECT ${COLUMNS} FROM api_tokens WHERE id = ?`);
    this.revokeStmt = db.prepare<[string, number]>('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
    this.anyLiveStmt = db.prepare<[], number>('SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)').pluck();
    this.liveNameStmt = db.prepare<[string], number>('SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ? AND revoked_at IS NULL)').pluck();
  }

  /** A new token: the caller shows `token` once; only its hash is kept. Undefined when a live token has that name. */
  create(name: string, scope: ApiScope): { token: string; record: ApiTokenRecord } | undefined {
    if (this.nameInUse(name)) return undefined;
    const token = generateApiToken();
    try {
      const row = this.insertStmt.get(name, hashApiToken(token), token.slice(0, SHOWN_PREFIX_LENGTH), scope, isoNow(this.clock.now()))!;
      return { token, record: toRecord(row) };
    } catch (err) {
      // Two admins creating the same name at once: the partial unique index decides.
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' && this.nameInUse(name)) return undefined;
      throw err;
    }
  }

  nameInUse(name: string): boolean {
    return this.liveNameStmt.get(name) === 1;
  }

  /** Checks a bearer token and, at most once a minute per token, records that it was used. */
  check(token: string): TokenCheck {
    if (!token.startsWith(TOKEN_PREFIX)) return { ok: false, reason: 'unknown' };
    const row = this.byHashStmt.get(hashApiToken(token));
    if (!row) return { ok: false, reason: 'unknown' };
    if (row.revoked_at !== null) return { ok: false, reason: 'revoked' };
    const now = this.clock.now();
    if (row.last_used_at === null || Date.parse(row.last_used_at) <= now - LAST_USED_PRECISION_MS) {
      const at = isoNow(now);
      this.touchStmt.run(at, row.id, isoNow(now - LAST_USED_PRECISION_MS + 1));
      row.last_used_at = at;
    }
    return { ok: true, token: toRecord(row) };
  }

  list(): ApiTokenRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  get(id: number): ApiTokenRecord | undefined {
    const row = this.getStmt.get(id);
    return row ? toRecord(row) : undefined;
  }

  /** Revokes a live token; false when there is no such token or it was revoked already. */
  revoke(id: number): boolean {
    return this.revokeStmt.run(isoNow(this.clock.now()), id).changes === 1;
  }

  /** Whether any token could be accepted (for telling a caller how to get one when none exists). */
  anyLive(): boolean {
    return this.anyLiveStmt.get() === 1;
  }
}

function toRecord(row: TokenRow): ApiTokenRecord {
  return { id: row.id, name: row.name, prefix: row.prefix, scope: row.scope, createdAt: row.created_at, lastUsedAt: row.last_used_at, revokedAt: row.revoked_at };
}
