import type { Db } from '../../core/db.js';
import type { KeapTokenStore, StoredTokens } from './types.js';

export type { KeapTokenStore, StoredTokens } from './types.js';

interface TokenRow {
  access_token: string;
  refresh_token: string;
  expires_at: number;
  scope: string | null;
}

/**
 * The OAuth connection in `keap_oauth_tokens` (one row, id 1). Every refresh answers a new refresh token and kills
 * the old one, so both tokens are written by one UPSERT: a crash can leave the old pair or the new pair, never half.
 * Reads go to the database each time, so a refresh made by another process is seen at once.
 */
export class SqliteKeapTokenStore implements KeapTokenStore {
  private readonly loadStmt;
  private readonly saveStmt;
  private readonly clearStmt;

  constructor(db: Db) {
    this.loadStmt = db.prepare<[], TokenRow>('SELECT access_token, refresh_token, expires_at, scope FROM keap_oauth_tokens WHERE id = 1');
    this.saveStmt = db.prepare<[string, string, number, string | null]>(
      `INSERT INTO keap_oauth_tokens (id, access_token, refresh_token, expires_at, scope, updated_at)
       VALUES (1, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
       ON CONFLICT (id) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
         expires_at = excluded.expires_at, scope = excluded.scope, updated_at = excluded.updated_at`,
    );
    this.clearStmt = db.prepare('DELETE FROM keap_oauth_tokens WHERE id = 1');
  }

  load(): StoredTokens | null {
    const row = this.loadStmt.get();
    if (!row) return null;
    return { accessToken: row.access_token, refreshToken: row.refresh_token, expiresAt: row.expires_at, scope: row.scope };
  }

  save(tokens: StoredTokens): void {
    this.saveStmt.run(tokens.accessToken, tokens.refreshToken, Math.round(tokens.expiresAt), tokens.scope);
  }

  /** Forgets the connection (an admin disconnecting Keap). */
  clear(): void {
    this.clearStmt.run();
  }
}

/** Tokens in memory only: for tests and one-off scripts. */
export class MemoryKeapTokenStore implements KeapTokenStore {
  private tokens: StoredTokens | null;

  constructor(initial: StoredTokens | null = null) {
    this.tokens = initial ? { ...initial } : null;
  }

  load(): StoredTokens | null {
    return this.tokens ? { ...this.tokens } : null;
  }

  save(tokens: StoredTokens): void {
    this.tokens = { ...tokens };
  }

  clear(): void {
    this.tokens = null;
  }
}
