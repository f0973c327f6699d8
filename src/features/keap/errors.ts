/**
 * What can go wrong talking to Keap, split by what the caller should do about it: try again later
 * (KeapRetryableError) or stop and tell a person (KeapPermanentError). Messages name the method, path, status and
 * Keap's own message; never a key or token (the client scrubs its secrets out of anything Keap echoes back).
 */

export type KeapRetryReason = 'throttled' | 'server' | 'network' | 'timeout';

export interface KeapErrorDetails {
  /** HTTP status Keap answered; 0 when no answer came (network failure, timeout). */
  status: number;
  method: string;
  /** The request path without the query string, e.g. `/rest/v2/contacts/101` or `/token`. */
  path: string;
  /** Keap's message from the error body, when it sent one. */
  keapMessage?: string | undefined;
  cause?: unknown;
}

export abstract class KeapError extends Error {
  readonly status: number;
  readonly method: string;
  readonly path: string;
  readonly keapMessage: string | undefined;
  abstract readonly retryable: boolean;

  constructor(message: string, details: KeapErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.status = details.status;
    this.method = details.method;
    this.path = details.path;
    this.keapMessage = details.keapMessage;
  }
}

/** Worth trying again: Keap throttled us (429), failed (5xx), or could not be reached in time. */
export class KeapRetryableError extends KeapError {
  override name = 'KeapRetryableError';
  readonly retryable = true;
  readonly reason: KeapRetryReason;
  /**
   * How long to wait before trying again. For a 429 this is the throttle window Keap's headers point at (about a
   * second for the per-second limit; Keap sends no Retry-After); otherwise a suggested back-off.
   */
  readonly retryAfterMs: number;

  constructor(message: string, details: KeapErrorDetails & { reason: KeapRetryReason; retryAfterMs: number }) {
    super(message, details);
    this.reason = details.reason;
    this.retryAfterMs = details.retryAfterMs;
  }

  /** A 429: the request never ran; the limiter is already paused for `retryAfterMs`. */
  get throttled(): boolean {
    return this.reason === 'throttled';
  }
}

/** Trying again will not help: bad request, bad credentials, no rights, no such record. */
export class KeapPermanentError extends KeapError {
  override name = 'KeapPermanentError';
  readonly retryable = false;

  get notFound(): boolean {
    return this.status === 404;
  }

  get unauthorized(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/**
 * The OAuth connection is gone (refresh token rejected, revoked, or never made): every call will fail until an
 * admin connects Keap again. Permanent, but distinct so the admin pages can show a "reconnect" button.
 */
export class KeapReauthorizationRequiredError extends KeapPermanentError {
  override name = 'KeapReauthorizationRequiredError';
  readonly reauthorize = true;
}

export function isKeapError(err: unknown): err is KeapError {
  return err instanceof KeapError;
}

/** The error for a request that got no answer: timed out (AbortSignal.timeout) or failed on the network. */
export function keapFetchFailure(err: unknown, request: { method: string; path: string; timeoutMs: number }): KeapRetryableError {
  const { method, path, timeoutMs } = request;
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new KeapRetryableError(`Keap ${method} ${path} did not answer within ${timeoutMs} ms`, {
      status: 0, method, path, reason: 'timeout', retryAfterMs: 5_000, cause: err,
    });
  }
  // undici's "fetch failed" TypeError carries the socket error (ECONNREFUSED, ECONNRESET, ENOTFOUND) as its cause.
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const detail = typeof cause?.code === 'string' ? cause.code : err instanceof Error ? err.message : String(err);
  return new KeapRetryableError(`Keap ${method} ${path} could not be reached: ${detail}`, {
    status: 0, method, path, reason: 'network', retryAfterMs: 2_000, cause: err,
  });
}

/**
 * Keap's message from an error body: v2 `Error.message`, v1 `{message}`, the gateway's 429 `{code, message,
 * status}`, the gateway's fault (`{"fault":{"faultstring":"..","detail":{"errorcode":".."}}}`, on 401 and 429), or
 * an OAuth error. Secrets are scrubbed out of it: a gateway may quote what the request carried.
 */
export function keapMessageOf(body: unknown, secrets: readonly string[] = []): string | undefined {
  if (typeof body !== 'object' || body === null) return typeof body === 'string' && body.trim() ? scrub(body.trim().slice(0, 300), secrets) : undefined;
  const b = body as Record<string, unknown>;
  const text = [b.message, b.error_description, b.error, gatewayFaultText(b.fault)].find((v): v is string => typeof v === 'string' && v.trim() !== '');
  return text === undefined ? undefined : scrub(text.trim().slice(0, 500), secrets);
}

/** `faultstring (errorcode)` from a gateway fault, or undefined when it has no faultstring. */
function gatewayFaultText(fault: unknown): string | undefined {
  if (typeof fault !== 'object' || fault === null) return undefined;
  const { faultstring, detail } = fault as { faultstring?: unknown; detail?: unknown };
  if (typeof faultstring !== 'string' || faultstring.trim() === '') return undefined;
  const code = typeof detail === 'object' && detail !== null ? (detail as { errorcode?: unknown }).errorcode : undefined;
  return typeof code === 'string' && code.trim() !== '' ? `${faultstring.trim()} (${code.trim()})` : faultstring.trim();
}

/** Removes secrets a server might echo back (a key in an error message) before the text goes anywhere. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}
