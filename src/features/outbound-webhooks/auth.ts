import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../../core/clock.js';
import { OutboundError, safeRequest, type OutboundResponse } from '../../core/safe-http.js';

/**
 * How an outbound webhook connection authenticates to its receiver: nothing, HTTP Basic, a fixed bearer token, or
 * an OAuth 2.0 access token fetched from the receiver's token endpoint with one of three grants (client credentials,
 * resource owner password, RFC 7523 JWT bearer) and cached until shortly before it expires.
 */
export type ConnectionAuth =
  | { type: 'none' }
  | { type: 'basic'; username: string; password: string }
  | { type: 'bearer'; token: string }
  | {
      type: 'oauth2';
      grant: 'client_credentials' | 'password' | 'jwt_bearer';
      tokenUrl: string;
      clientId: string;
      clientSecret: string;
      scope?: string;
      username?: string;
      password?: string;
      assertion?: string;
    };

export type OAuthGrant = Extract<ConnectionAuth, { type: 'oauth2' }>['grant'];
export const AUTH_TYPES = ['none', 'basic', 'bearer', 'oauth2'] as const;
export const OAUTH_GRANTS = ['client_credentials', 'password', 'jwt_bearer'] as const;

const text = (what: string, max: number) => z.string({ error: `expected ${what}` }).trim().min(1, `expected ${what}`).max(max, `expected at most ${max} characters`);
const oneLine = (what: string, max: number) => text(what, max).refine((value) => !/[\r\n]/.test(value), 'expected one line');
/** A field a grant may leave out: empty counts as left out. */
const optionalLine = (max: number) =>
  z
    .string()
    .trim()
    .max(max, `expected at most ${max} characters`)
    .refine((value) => !/[\r\n]/.test(value), 'expected one line')
    .optional()
    .transform((value) => (value === '' ? undefined : value));
const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/;
const tokenUrl = z
  .string({ error: 'expected the access token URL' })
  .trim()
  .max(2_000, 'expected at most 2000 characters')
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username && !url.password;
    } catch {
      return false;
    }
  }, 'expected an http(s) URL without a user name or password');

/**
 * The JSON form of ConnectionAuth, as the API and the admin form give it. Header values must be one line (a newline
 * in a header value is refused by Node, and would mean header injection elsewhere); a Basic user name must not hold
 * a colon (RFC 7617). Fields the grant does not use are dropped.
 */
export const connectionAuthSchema: z.ZodType<ConnectionAuth> = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('none') }),
    z.object({
      type: z.literal('basic'),
      username: oneLine('a user name', 256).refine((value) => !value.includes(':'), 'expected a user name without ":" (HTTP Basic cannot carry one)'),
      password: oneLine('a password', 1_024),
    }),
    z.object({ type: z.literal('bearer'), token: oneLine('a token', 8_192) }),
    z
      .object({
        type: z.literal('oauth2'),
        grant: z.enum(OAUTH_GRANTS, 'expected client_credentials, password or jwt_bearer'),
        tokenUrl,
        clientId: oneLine('a client id', 1_024),
        clientSecret: oneLine('a client secret', 4_096),
        scope: optionalLine(2_048),
        username: optionalLine(256),
        password: optionalLine(1_024),
        assertion: optionalLine(16_384),
      })
      .superRefine((auth, ctx) => {
        if (auth.grant === 'password') {
          if (!auth.username) ctx.addIssue({ code: 'custom', path: ['username'], message: 'expected a user name (the password grant needs one)' });
          if (!auth.password) ctx.addIssue({ code: 'custom', path: ['password'], message: 'expected a password (the password grant needs one)' });
        }
        if (auth.grant === 'jwt_bearer') {
          if (!auth.assertion) ctx.addIssue({ code: 'custom', path: ['assertion'], message: 'expected the JSON Web Token (the JWT bearer grant needs one)' });
          else if (!JWT_SHAPE.test(auth.assertion)) ctx.addIssue({ code: 'custom', path: ['assertion'], message: 'expected a JSON Web Token (three base64url parts separated by dots)' });
        }
      })
      .transform((auth): ConnectionAuth => {
        const base = { type: 'oauth2' as const, grant: auth.grant, tokenUrl: auth.tokenUrl, clientId: auth.clientId, clientSecret: auth.clientSecret, ...(auth.scope ? { scope: auth.scope } : {}) };
        if (auth.grant === 'password') return { ...base, username: auth.username!, password: auth.password! };
        if (auth.grant === 'jwt_bearer') return { ...base, assertion: auth.assertion! };
        return base;
      }),
  ],
  { error: 'expected an authentication type: none, basic, bearer or oauth2' },
);

/** Why the token endpoint gave no token; the message is the admin's to read (status, the endpoint's error code and description). */
export class TokenEndpointError extends Error {
  override name = 'TokenEndpointError';
  constructor(
    message: string,
    /** A network failure, a timeout, 429 or 5xx: the same request may work later. A 400/401 needs the admin. */
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
  }
}

interface CachedToken {
  authHash: string;
  accessToken: string;
  /** Clock ms after which the token is fetched again (shortly before the endpoint's expires_in). */
  renewAt: number;
}

/** Tokens are fetched again this long before they expire, so one never runs out on its way to the receiver. */
const RENEW_EARLY_MS = 60_000;
/** An endpoint that gives no expires_in: the token is kept this long (a 401 fetches a new one sooner). */
const DEFAULT_TOKEN_LIFETIME_MS = 3_600_000;
const TOKEN_TIMEOUT_MS = 10_000;
const TOKEN_MAX_RESPONSE_BYTES = 64 * 1024;
/** The endpoint's own words are kept to this many characters in an error. */
const MAX_DESCRIPTION = 300;

const GRANT_TYPES: Record<OAuthGrant, string> = {
  client_credentials: 'client_credentials',
  password: 'password',
  jwt_bearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
};

/**
 * Where token endpoint failures are kept so every thread sees them: the deliveries run on the job thread, the admin
 * page that shows the failure on the request thread. The settings table does it (core/settings.ts); an empty value
 * means none.
 */
export interface TokenErrorBoard {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

const BOARD_PREFIX = 'outbound.token_error.';

/**
 * The headers that authenticate one delivery, per connection. OAuth access tokens are cached per connection and
 * per auth configuration (a changed client secret or token URL never reuses the old token), fetched once however
 * many deliveries ask together, and forgotten when a receiver answers 401 (the caller then asks once more).
 * A failing token endpoint's error is kept for the admin page (`tokenError`) until a token is fetched again.
 */
export class OutboundAuth {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly fetching = new Map<string, Promise<CachedToken>>();
  private readonly errors = new Map<string, { message: string; at: string }>();

  constructor(private readonly deps: { clock: Clock; allowPrivate: () => boolean; errorBoard?: TokenErrorBoard }) {}

  /** The Authorization header (or none) for a delivery on this connection. Throws TokenEndpointError. */
  async headers(connectionKey: string, auth: ConnectionAuth): Promise<Record<string, string>> {
    switch (auth.type) {
      case 'none':
        return {};
      case 'basic':
        return { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`, 'utf8').toString('base64')}` };
      case 'bearer':
        return { authorization: `Bearer ${auth.token}` };
      case 'oauth2': {
        const token = await this.accessToken(connectionKey, auth);
        return { authorization: `Bearer ${token}` };
      }
    }
  }

  /** Drops the connection's cached token and kept error: after a 401, or when the connection changes or goes. */
  forget(connectionKey: string): void {
    this.tokens.delete(connectionKey);
    this.clearError(connectionKey);
  }

  /** The token endpoint's last failure for this connection (on whichever thread), until a token is fetched (or `forget`). */
  tokenError(connectionKey: string): { message: string; at: string } | undefined {
    const board = this.deps.errorBoard;
    if (!board) return this.errors.get(connectionKey);
    const kept = board.get(BOARD_PREFIX + connectionKey);
    if (!kept) return undefined;
    try {
      const parsed = JSON.parse(kept) as { message?: unknown; at?: unknown };
      return typeof parsed.message === 'string' && typeof parsed.at === 'string' ? { message: parsed.message, at: parsed.at } : undefined;
    } catch {
      return undefined;
    }
  }

  private recordError(connectionKey: string, error: { message: string; at: string }): void {
    this.errors.set(connectionKey, error);
    this.deps.errorBoard?.set(BOARD_PREFIX + connectionKey, JSON.stringify(error));
  }

  private clearError(connectionKey: string): void {
    this.errors.delete(connectionKey);
    // Read before writing: a token fetched with no failure kept (the usual case) costs no write.
    const board = this.deps.errorBoard;
    if (board?.get(BOARD_PREFIX + connectionKey)) board.set(BOARD_PREFIX + connectionKey, '');
  }

  private async accessToken(connectionKey: string, auth: Extract<ConnectionAuth, { type: 'oauth2' }>): Promise<string> {
    const authHash = hashAuth(auth);
    const cached = this.tokens.get(connectionKey);
    if (cached && cached.authHash === authHash && this.deps.clock.now() < cached.renewAt) return cached.accessToken;
    const flightKey = `${connectionKey}\n${authHash}`;
    let flight = this.fetching.get(flightKey);
    if (!flight) {
      flight = this.fetchToken(auth, authHash).then(
        (token) => {
          this.fetching.delete(flightKey);
          this.tokens.set(connectionKey, token);
          this.clearError(connectionKey);
          return token;
        },
        (err: unknown) => {
          this.fetching.delete(flightKey);
          const failure = err instanceof TokenEndpointError ? err : new TokenEndpointError('the token endpoint could not be asked', true);
          this.tokens.delete(connectionKey);
          this.recordError(connectionKey, { message: failure.message, at: new Date(this.deps.clock.now()).toISOString() });
          throw failure;
        },
      );
      this.fetching.set(flightKey, flight);
    }
    return (await flight).accessToken;
  }

  private async fetchToken(auth: Extract<ConnectionAuth, { type: 'oauth2' }>, authHash: string): Promise<CachedToken> {
    const form = new URLSearchParams({ grant_type: GRANT_TYPES[auth.grant] });
    if (auth.grant === 'password') {
      form.set('username', auth.username ?? '');
      form.set('password', auth.password ?? '');
    }
    if (auth.grant === 'jwt_bearer') form.set('assertion', auth.assertion ?? '');
    if (auth.scope) form.set('scope', auth.scope);
    // RFC 6749 2.3.1: the client id and secret are form-encoded, then joined for HTTP Basic.
    const clientCredentials = `${formEncode(auth.clientId)}:${formEncode(auth.clientSecret)}`;
    const secrets = [auth.clientSecret, auth.password, auth.assertion].filter((value): value is string => Boolean(value));
    const requestedAt = this.deps.clock.now();
    let response: OutboundResponse;
    try {
      response = await safeRequest(
        {
          method: 'POST',
          url: auth.tokenUrl,
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            accept: 'application/json',
            authorization: `Basic ${Buffer.from(clientCredentials, 'utf8').toString('base64')}`,
          },
          body: form.toString(),
          timeoutMs: TOKEN_TIMEOUT_MS,
          maxResponseBytes: TOKEN_MAX_RESPONSE_BYTES,
        },
        { allowPrivate: this.deps.allowPrivate() },
      );
    } catch (err) {
      const reason = err instanceof OutboundError ? err.message : 'the request failed';
      throw new TokenEndpointError(`The token endpoint could not be reached: ${redact(reason, secrets)}`, !(err instanceof OutboundError && (err.code === 'blocked_address' || err.code === 'bad_url')));
    }
    const answer = parseJsonObject(response.body);
    if (response.status < 200 || response.status >= 300) {
      const code = typeof answer?.error === 'string' ? answer.error.slice(0, 100) : undefined;
      const description = typeof answer?.error_description === 'string' ? answer.error_description.slice(0, MAX_DESCRIPTION) : undefined;
      const said = [code, description && `(${description})`].filter(Boolean).join(' ');
      const redirect = response.status >= 300 && response.status < 400 ? ' (redirects are not followed: use the final token URL)' : '';
      const message = `The token endpoint answered ${response.status}${said ? `: ${said}` : ''}${redirect}`;
      const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
      throw new TokenEndpointError(redact(message, secrets), retryable, response.status);
    }
    const accessToken = answer?.access_token;
    if (typeof accessToken !== 'string' || accessToken === '' || /[\r\n]/.test(accessToken)) {
      throw new TokenEndpointError(`The token endpoint answered ${response.status} without an access_token`, false, response.status);
    }
    const tokenType = answer?.token_type;
    if (tokenType !== undefined && (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer')) {
      throw new TokenEndpointError(`The token endpoint gave a token of type ${JSON.stringify(String(tokenType).slice(0, 40))}; only bearer tokens are supported`, false, response.status);
    }
    const expiresIn = Number(answer?.expires_in);
    const lifetimeMs = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_TOKEN_LIFETIME_MS;
    // A token shorter-lived than two minutes is renewed at half its life rather than a minute early.
    const renewEarly = Math.min(RENEW_EARLY_MS, lifetimeMs / 2);
    return { authHash, accessToken, renewAt: requestedAt + lifetimeMs - renewEarly };
  }
}

/** A digest of the whole auth configuration, so a change to any part of it (the secret too) fetches a new token. */
function hashAuth(auth: ConnectionAuth): string {
  const fields = Object.entries(auth).sort(([a], [b]) => a.localeCompare(b));
  return createHash('sha256').update(JSON.stringify(fields)).digest('base64url');
}

/** application/x-www-form-urlencoded, as RFC 6749 appendix B asks for the client id and secret. */
function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

function parseJsonObject(body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** An endpoint might echo what it was sent: no secret of the connection survives into a message. */
function redact(message: string, secrets: string[]): string {
  let result = message;
  for (const secret of secrets) if (secret.length >= 4) result = result.split(secret).join('[redacted]');
  return result;
}
