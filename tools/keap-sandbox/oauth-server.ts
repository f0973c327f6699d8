import { randomBytes, timingSafeEqual } from 'node:crypto';

export interface SandboxOAuthClient {
  clientId: string;
  clientSecret: string;
  redirectUri?: string;
}

export interface TokenAnswer {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  refresh_token: string;
  scope: 'full';
}

/** An OAuth error as the token endpoint answers it (RFC 6749 section 5.2). */
export class OAuthError extends Error {
  override name = 'OAuthError';
  constructor(
    readonly status: 400 | 401,
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type',
    readonly description: string,
  ) {
    super(description);
  }
}

interface AccessTokenRecord {
  clientId: string;
  expiresAt: number;
}

interface CodeRecord {
  redirectUri: string | undefined;
  expiresAt: number;
}

/** Keap's authorization codes are short-lived; ten minutes is the common figure. */
const CODE_TTL_MS = 10 * 60_000;

export type AccessTokenCheck = { ok: true; clientId: string } | { ok: false; reason: 'unknown' | 'expired' };

/**
 * Keap's OAuth server in miniature: authorization codes (single use), access tokens with a lifetime, and refresh
 * tokens that rotate: every refresh answers a new refresh token and the one presented stops working, which is the
 * behaviour that loses a connection when a client fails to store the new one.
 */
export class SandboxOAuthServer {
  private readonly codes = new Map<string, CodeRecord>();
  private readonly accessTokens = new Map<string, AccessTokenRecord>();
  /** Refresh tokens still usable, by token, with their client. */
  private readonly refreshTokens = new Map<string, string>();

  constructor(
    readonly client: SandboxOAuthClient,
    private readonly accessTokenTtlSeconds: number,
    private readonly now: () => number,
  ) {}

  issueAuthorizationCode(redirectUri: string | undefined = this.client.redirectUri): string {
    const code = randomToken();
    this.codes.set(code, { redirectUri, expiresAt: this.now() + CODE_TTL_MS });
    return code;
  }

  exchangeCode(input: { clientId?: string; clientSecret?: string; code?: string; redirectUri?: string }): TokenAnswer {
    this.authenticateClient(input.clientId, input.clientSecret);
    if (!input.code) throw new OAuthError(400, 'invalid_request', 'code is required');
    if (!input.redirectUri) throw new OAuthError(400, 'invalid_request', 'redirect_uri is required');
    const record = this.codes.get(input.code);
    // Single use: a code is gone once presented, even when the exchange then fails.
    this.codes.delete(input.code);
    if (!record || record.expiresAt <= this.now()) throw new OAuthError(400, 'invalid_grant', 'Invalid authorization code');
    if (record.redirectUri !== undefined && record.redirectUri !== input.redirectUri) {
      throw new OAuthError(400, 'invalid_grant', 'redirect_uri does not match the one the code was issued for');
    }
    return this.issueTokens(this.client.clientId);
  }

  refresh(input: { clientId?: string; clientSecret?: string; refreshToken?: string }): TokenAnswer {
    this.authenticateClient(input.clientId, input.clientSecret);
    if (!input.refreshToken) throw new OAuthError(400, 'invalid_request', 'refresh_token is required');
    const owner = this.refreshTokens.get(input.refreshToken);
    if (owner === undefined || owner !== input.clientId) throw new OAuthError(400, 'invalid_grant', 'Invalid refresh token');
    this.refreshTokens.delete(input.refreshToken);
    return this.issueTokens(owner);
  }

  checkAccessToken(token: string): AccessTokenCheck {
    const record = this.accessTokens.get(token);
    if (!record) return { ok: false, reason: 'unknown' };
    if (record.expiresAt <= this.now()) return { ok: false, reason: 'expired' };
    return { ok: true, clientId: record.clientId };
  }

  /** Every access token issued so far expires now; refresh tokens keep working, as after a day of idleness. */
  expireAccessTokens(): void {
    const now = this.now();
    for (const record of this.accessTokens.values()) record.expiresAt = Math.min(record.expiresAt, now);
  }

  private authenticateClient(clientId: string | undefined, clientSecret: string | undefined): void {
    if (clientId === undefined || clientSecret === undefined || !sameSecret(clientId, this.client.clientId) || !sameSecret(clientSecret, this.client.clientSecret)) {
      throw new OAuthError(401, 'invalid_client', 'Invalid client credentials');
    }
  }

  private issueTokens(clientId: string): TokenAnswer {
    const accessToken = randomToken();
    const refreshToken = randomToken();
    this.accessTokens.set(accessToken, { clientId, expiresAt: this.now() + this.accessTokenTtlSeconds * 1000 });
    this.refreshTokens.set(refreshToken, clientId);
    return { access_token: accessToken, token_type: 'bearer', expires_in: this.accessTokenTtlSeconds, refresh_token: refreshToken, scope: 'full' };
  }
}

function randomToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Constant-time comparison, so the sandbox does not teach clients that timing leaks are fine. */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
