import type { Db } from '../../core/db.js';
import { SecretBox } from '../../core/secret-box.js';
import type { KeapTokenStore, StoredTokens } from './types.js';

export type { KeapTokenStore, StoredTokens } from './types.js';

const ACCESS_CONTEXT = 'keap_oauth_tokens.access_token';
const REFRESH_CONTEXT = 'keap_oauth_tokens.refresh_token';

interface TokenRow {
  access_token: string;
  refresh_token: string;
  expires_at: number;
  scope: string | null;
}

/**
 * The OAuth connection in `keap_oauth_tokens` (one row, id 1). Every refresh answers a new refresh token and kills
 * the old one, so both tokens are written by one UPSERT: a crash can leave the old pair or the new pair, never half.
 * Reads go to the database each time, so a refresh made by another process is seen at once. Both tokens are sealed
 * with the site key: a copy of the database alone connects nobody to the site's Keap account.
 */
export class SqliteKeapTokenStore implements KeapTokenStore {
  private readonly loadStmt;
  private readonly saveStmt;
  private readonly clearStmt;
  private readonly resealStmt;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {
    this.loadStmt = db.prepare<[], TokenRow>('SELECT access_token, refresh_token, expires_at, scope FROM keap_oauth_tokens WHERE id = 1');
    this.saveStmt = db.prepare<[string, string, number, string | null]>(
      `INSERT INTO keap_oauth_tokens (id, access_token, refresh_token, expires_at, scope, updated_at)
       VALUES (1, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
       ON CONFLICT (id) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
         expires_at = excluded.expires_at, scope = excluded.scope, updated_at = excluded.updated_at`,
    );
    this.clearStmt = db.prepare('DELETE FROM keap_oauth_tokens WHERE id = 1');
    this.resealStmt = db.prepare<[string, string, string, string]>(
      'UPDATE keap_oauth_tokens SET access_token = ?, refresh_token = ? WHERE id = 1 AND access_token = ? AND refresh_token = ?',
    );
  }

  load(): StoredTokens | null {
    const row = this.loadStmt.get();
    if (!row) return null;
    return {
      accessToken: this.box.open(row.access_token, ACCESS_CONTEXT, 'the Keap OAuth access token'),
      refreshToken: this.box.open(row.refresh_token, REFRESH_CONTEXT, 'the Keap OAuth refresh token'),
      expiresAt: row.expires_at,
      scope: row.scope,
    };
  }

  save(tokens: StoredTokens): void {
    this.saveStmt.run(this.box.seal(tokens.accessToken, ACCESS_CONTEXT), this.box.seal(tokens.refreshToken, REFRESH_CONTEXT), Math.round(tokens.expiresAt), tokens.scope);
  }

  /**
   * Seals tokens stored in plaintext by a version from before encryption, and checks sealed ones open with this key
   * (a wrong site key stops the start here, naming the tokens). Safe at every start and from both threads; true
   * when it sealed them.
   */
  sealStored(): boolean {
    return this.db.transaction(() => {
      const row = this.loadStmt.get();
      if (!row) return false;
      if (SecretBox.isSealed(row.access_token) && SecretBox.isSealed(row.refresh_token)) {
        this.load();
        return false;
      }
      const access = this.box.sealIfPlain(row.access_token, ACCESS_CONTEXT);
      const refresh = this.box.sealIfPlain(row.refresh_token, REFRESH_CONTEXT);
      return this.resealStmt.run(access, refresh, row.access_token, row.refresh_token).changes === 1;
    }).immediate();
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
