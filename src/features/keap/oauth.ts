import { systemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import {
  KeapPermanentError,
  KeapReauthorizationRequiredError,
  KeapRetryableError,
  keapFetchFailure,
  keapMessageOf,
} from './errors.js';
import type { KeapTokenStore, StoredTokens } from './types.js';

/**
 * Keap's OAuth2 authorization-code flow: exchanging the code an admin brings back from Keap's authorize page, and
 * keeping the access token fresh. Keap rotates the refresh token on every refresh (the old one dies at once), so:
 * - refreshes are single-flight: however many calls find the token stale or get a 401 together, one request goes
 *   to /token and they all wait for it (two refreshes with one refresh token would lose the connection);
 * - the new pair is saved in one write before anyone uses it;
 * - a call that got a 401 with a token that has since been replaced just uses the new one, without refreshing again.
 */

export interface KeapOAuthOptions {
  clientId: string;
  clientSecret: string;
  /** e.g. https://api.infusionsoft.com/token */
  tokenUrl: string;
  tokenStore: KeapTokenStore;
  logger: Logger;
  clock?: Clock;
  timeoutMs?: number;
  /** Refresh when the access token has less than this left; default 5 minutes. */
  refreshBeforeMs?: number;
  fetch?: typeof fetch;
}

const DEFAULT_REFRESH_BEFORE_MS = 5 * 60_000;
/**
 * The token endpoint waits at least this long. Keap rotates the refresh token when it answers, so an answer the
 * client gave up on cannot be asked for again: the old refresh token is spent and the connection is lost. A slow
 * refresh costs one wait; a lost one costs the admin a new "Connect to Keap".
 */
const TOKEN_TIMEOUT_FLOOR_MS = 30_000;
const TOKEN_PATH = '/token';

export class KeapOAuth {
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private readonly refreshBeforeMs: number;
  private readonly fetchImpl: typeof fetch;
  private inflight: Promise<StoredTokens> | null = null;
  private refreshCount = 0;

  constructor(private readonly options: KeapOAuthOptions) {
    this.clock = options.clock ?? systemClock;
    this.timeoutMs = Math.max(options.timeoutMs ?? 10_000, TOKEN_TIMEOUT_FLOOR_MS);
    this.refreshBeforeMs = options.refreshBeforeMs ?? DEFAULT_REFRESH_BEFORE_MS;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
  }

  /** Whether tokens are stored (an admin has connected Keap). */
  get connected(): boolean {
    return this.options.tokenStore.load() !== null;
  }

  /** The stored connection's access token expiry and scope (never the tokens), or null when not connected. */
  get connection(): { expiresAt: number; scope: string | null } | null {
    const stored = this.options.tokenStore.load();
    return stored && { expiresAt: stored.expiresAt, scope: stored.scope };
  }

  /** Forgets the stored tokens: memberhook stops calling Keap with them until an admin connects again. */
  disconnect(): void {
    this.options.tokenStore.clear();
    this.options.logger.info('keap oauth disconnected');
  }

  /** How many refreshes this process has sent to Keap (for the dashboard and tests). */
  get refreshes(): number {
    return this.refreshCount;
  }

  /** Where to send an admin to approve the connection (Keap's authorize page, scope `full`, the only one). */
  authorizeUrl(authorizeBaseUrl: string, redirectUri: string, state?: string): string {
    const url = new URL(authorizeBaseUrl);
    url.searchParams.set('client_id', this.options.clientId);
    url.searchParams.set('redirect_uri', redirectUri);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('scope', 'full');
    if (state !== undefined) url.searchParams.set('state', state);
    return url.toString();
  }

  /** Trades the authorization code from Keap's redirect for tokens, and stores them. */
  async exchangeAuthorizationCode(code: string, redirectUri: string): Promise<StoredTokens> {
    const tokens = await this.postToken('authorization_code', {
      client_id: this.options.clientId,
      client_secret: this.options.clientSecret,
      code,
      grant_type: 'authorization_code',
      redirect_uri: redirectUri,
    });
    this.options.tokenStore.save(tokens);
    this.options.logger.info({ expiresAt: new Date(tokens.expiresAt).toISOString() }, 'keap oauth connected');
    return tokens;
  }

  /** An access token good for a while yet: refreshed first when it is within `refreshBeforeMs` of expiring. */
  async accessToken(): Promise<string> {
    const stored = this.requireTokens();
    const now = this.clock.now();
    if (stored.expiresAt - now > this.refreshBeforeMs) return stored.accessToken;
    try {
      return (await this.refresh()).accessToken;
    } catch (err) {
      // Keap unreachable for the refresh, but the token still works for a few minutes: use it, try again next call.
      if (err instanceof KeapRetryableError && stored.expiresAt > this.clock.now()) {
        this.options.logger.warn({ error: err.message, expiresInMs: stored.expiresAt - now }, 'keap token refresh failed, using the current token meanwhile');
        return stored.accessToken;
      }
      throw err;
    }
  }

  /**
   * A token to retry with after Keap answered 401 to `rejected`. If the stored token is already another one
   * (refreshed meanwhile, here or in another process), that one; otherwise the result of one shared refresh.
   */
  async accessTokenAfterUnauthorized(rejected: string): Promise<string> {
    const stored = this.requireTokens();
    if (stored.accessToken !== rejected) return stored.accessToken;
    return (await this.refresh()).accessToken;
  }

  /** Refreshes now; concurrent callers share the one request. */
  refresh(): Promise<StoredTokens> {
    this.inflight ??= this.refreshOnce().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async refreshOnce(): Promise<StoredTokens> {
    const current = this.requireTokens();
    this.refreshCount += 1;
    try {
      const fresh = await this.postToken(
        'refresh_token',
        { grant_type: 'refresh_token', refresh_token: current.refreshToken },
        { authorization: `Basic ${Buffer.from(`${this.options.clientId}:${this.options.clientSecret}`).toString('base64')}` },
        current.refreshToken,
      );
      this.options.tokenStore.save(fresh);
      this.options.logger.info({ expiresAt: new Date(fresh.expiresAt).toISOString() }, 'keap oauth token refreshed');
      return fresh;
    } catch (err) {
      if (err instanceof KeapReauthorizationRequiredError) {
        // Another process sharing the database may have rotated the token between our read and our request.
        const now = this.options.tokenStore.load();
        if (now && now.refreshToken !== current.refreshToken) return now;
      }
      throw err;
    }
  }

  private requireTokens(): StoredTokens {
    const stored = this.options.tokenStore.load();
    if (!stored) {
      throw new KeapReauthorizationRequiredError('Keap is not connected: an admin must connect Keap (OAuth) before memberhook can call it', {
        status: 401,
        method: 'POST',
        path: TOKEN_PATH,
      });
    }
    return stored;
  }

  private async postToken(
    grant: 'authorization_code' | 'refresh_token',
    form: Record<string, string>,
    headers: Record<string, string> = {},
    previousRefreshToken?: string,
  ): Promise<StoredTokens> {
    const secrets = [this.options.clientSecret, ...Object.values(form).filter((v) => v.length >= 8)];
    const started = performance.now();
    let res: Response;
    let text: string;
    try {
      res = await this.fetchImpl(this.options.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers },
        body: new URLSearchParams(form).toString(),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw keapFetchFailure(err, { method: 'POST', path: TOKEN_PATH, timeoutMs: this.timeoutMs });
    }
    this.options.logger.debug({ method: 'POST', path: TOKEN_PATH, grant, status: res.status, ms: Math.round(performance.now() - started) }, 'keap call');
    const body = parseJson(text);

    if (res.ok) return this.tokensFrom(body, grant, previousRefreshToken);
    const detail = { status: res.status, method: 'POST', path: TOKEN_PATH, keapMessage: keapMessageOf(body, secrets) };
    const error = typeof (body as { error?: unknown } | undefined)?.error === 'string' ? (body as { error: string }).error : undefined;
    if (res.status === 429 || res.status >= 500) {
      throw new KeapRetryableError(`Keap's token endpoint answered ${res.status}${detail.keapMessage ? `: ${detail.keapMessage}` : ''}`, {
        ...detail,
        reason: res.status === 429 ? 'throttled' : 'server',
        retryAfterMs: res.status === 429 ? 1_000 : 2_000,
      });
    }
    if (error === 'invalid_grant') {
      const what = grant === 'refresh_token' ? 'refresh token' : 'authorization code';
      throw new KeapReauthorizationRequiredError(
        `Keap rejected the ${what} (invalid_grant): the Keap connection must be re-authorized by an admin (connect Keap again)`,
        detail,
      );
    }
    if (error === 'invalid_client') {
      throw new KeapPermanentError('Keap rejected the OAuth client id or secret (invalid_client): check KEAP_CLIENT_ID and KEAP_CLIENT_SECRET', detail);
    }
    throw new KeapPermanentError(`Keap's token endpoint answered ${res.status}${detail.keapMessage ? `: ${detail.keapMessage}` : ''}`, detail);
  }

  private tokensFrom(body: unknown, grant: string, previousRefreshToken: string | undefined): StoredTokens {
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const accessToken = typeof b.access_token === 'string' && b.access_token ? b.access_token : undefined;
    // Keap always rotates; should an answer ever lack a refresh token, the current one is the best left.
    const refreshToken = typeof b.refresh_token === 'string' && b.refresh_token ? b.refresh_token : previousRefreshToken;
    const expiresIn = Number(b.expires_in);
    if (!accessToken || !refreshToken || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw new KeapRetryableError(`Keap's token endpoint answered ${grant} without a usable access_token, refresh_token and expires_in`, {
        status: 200,
        method: 'POST',
        path: TOKEN_PATH,
        reason: 'server',
        retryAfterMs: 2_000,
      });
    }
    return {
      accessToken,
      refreshToken,
      expiresAt: this.clock.now() + expiresIn * 1000,
      scope: typeof b.scope === 'string' ? b.scope : null,
    };
  }
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
