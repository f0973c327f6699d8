import { Webhook } from 'standardwebhooks';
import { OutboundError, safeRequest, type OutboundResponse } from '../../core/safe-http.js';
import type { ConnectionAuth, OutboundAuth } from './auth.js';
import type { ConnectionRow, DestinationRow } from './store.js';

/** The longest a destination may take to answer one attempt. */
export const DELIVERY_TIMEOUT_MS = 10_000;
/** What is kept of an answer's body (the delivery log shows it; nothing reads more). */
export const MAX_RESPONSE_BYTES = 16 * 1024;

/** A connection's secrets, opened: for sending only, never shown. */
export interface ConnectionSecrets {
  auth: ConnectionAuth;
  /** The current signing secret first, then the previous one while its overlap lasts. */
  signing: string[];
}

/** A request as the delivery log keeps it: the headers that carry a secret are replaced by a placeholder. */
export interface LoggedRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** One attempt: what was sent, and the answer or why there was none. */
export interface AttemptResult {
  request: LoggedRequest;
  response: OutboundResponse | null;
  error: { code: string; message: string } | null;
  durationMs: number;
}

export const REDACTED = '[redacted]';

/** The destination's URL: the connection's base URL (its port replaced when the connection sets one) and the path. */
export function destinationUrl(connection: Pick<ConnectionRow, 'base_url' | 'port'>, destination: Pick<DestinationRow, 'path'>): string {
  const url = new URL(connection.base_url);
  if (connection.port !== null) url.port = String(connection.port);
  if (destination.path) {
    const [path, query] = destination.path.split('?', 2) as [string, string | undefined];
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
    if (query !== undefined) url.search = url.search ? `${url.search}&${query}` : `?${query}`;
  }
  return url.toString();
}

/**
 * The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of id.timestamp.body>` with each secret (the current one,
 * and during a rotation's overlap the previous one too), space-separated, as Standard Webhooks specifies, so a
 * receiver still holding the old secret verifies as well as one holding the new.
 */
export function signatureHeader(secrets: readonly string[], eventId: string, at: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(eventId, at, body)).join(' ');
}

export interface SenderDeps {
  auth: OutboundAuth;
  allowPrivate: () => boolean;
  userAgent: string;
}

/**
 * Sends one delivery's body to its destination, signed, with the connection's authentication. A 401 under OAuth 2
 * forgets the cached token and tries once more with a new one (the token may have been revoked before its expiry).
 */
export async function sendOnce(
  deps: SenderDeps,
  target: { connection: ConnectionRow; secrets: ConnectionSecrets; destination: DestinationRow },
  message: { eventId: string; body: string; at: number },
): Promise<AttemptResult> {
  const { connection, secrets, destination } = target;
  const started = performance.now();
  const url = destinationUrl(connection, destination);
  const sendsBody = destination.method !== 'GET';
  const body = sendsBody ? message.body : '';
  const signed: Record<string, string> = {
    'user-agent': deps.userAgent,
    'webhook-id': message.eventId,
    'webhook-timestamp': String(Math.floor(message.at / 1000)),
    'webhook-signature': signatureHeader(secrets.signing, message.eventId, new Date(message.at), body),
    ...(sendsBody ? { 'content-type': destination.content_type } : {}),
  };
  const connectionKey = `connection:${connection.id}`;
  let request: LoggedRequest = { method: destination.method, url, headers: signed, body };
  try {
    const send = async () => {
      const authHeaders = await deps.auth.headers(connectionKey, secrets.auth);
      request = { ...request, headers: { ...signed, ...redacted(authHeaders) } };
      const options = { method: destination.method, url, headers: { ...signed, ...authHeaders }, ...(sendsBody ? { body } : {}), timeoutMs: DELIVERY_TIMEOUT_MS, maxResponseBytes: MAX_RESPONSE_BYTES };
      return safeRequest(options, { allowPrivate: deps.allowPrivate() });
    };
    let response = await send();
    if (response.status === 401 && secrets.auth.type === 'oauth2') {
      deps.auth.forget(connectionKey);
      response = await send();
    }
    return { request, response, error: null, durationMs: Math.round(performance.now() - started) };
  } catch (err) {
    const code = err instanceof OutboundError ? err.code : 'auth';
    // The error's message names what failed (an address, a token endpoint's status), never a secret: the auth module
    // and safeRequest build their messages without one.
    const messageText = err instanceof Error ? err.message : String(err);
    return { request, response: null, error: { code, message: messageText }, durationMs: Math.round(performance.now() - started) };
  }
}

function redacted(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(headers).map((name) => [name, REDACTED]));
}
