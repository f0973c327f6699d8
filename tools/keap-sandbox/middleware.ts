import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { gatewayFaultBody, sendGatewayError, sendKeapError, THROTTLED_BODY, type GatewayErrorShape } from './error-bodies.js';
import type { SandboxRateLimiter } from './limits.js';
import { sameSecret, type SandboxOAuthServer } from './oauth-server.js';
import { describeFault, type FaultQueue, type SandboxFault } from './faults.js';
import type { CredentialKind, RecordedRequest, SandboxState } from './state.js';

export { FaultQueue } from './faults.js';

/** What authentication found, kept on res.locals for the limiter and the request record. */
interface ResolvedCredential {
  kind: CredentialKind;
  /** Whose quota the request uses: an API key counts alone, OAuth tokens count per client (as at Keap). */
  bucket?: string;
}

function credentialOf(res: Response): ResolvedCredential | undefined {
  return res.locals.keapCredential as ResolvedCredential | undefined;
}

/**
 * Records every request in `state.requests`. The record is completed when the status line is written (not on
 * 'finish'), so a test that awaited the answer always finds its request already recorded.
 */
export function recordRequests(state: SandboxState, now: () => number, logger: Logger | undefined): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const entry: RecordedRequest = {
      method: req.method,
      path: req.path,
      query: plainQuery(req.query),
      status: 0,
      time: now(),
      durationMs: 0,
      credential: 'none',
    };
    state.requests.push(entry);
    res.locals.sandboxRecord = entry;
    const writeHead = res.writeHead;
    const complete = () => {
      if (entry.status !== 0) return;
      entry.status = res.statusCode;
      entry.durationMs = now() - entry.time;
      // Inside a mounted router req.path is relative, so the paths below come from the record, not req.
      entry.credential = credentialOf(res)?.kind ?? (entry.path === '/token' ? 'client' : 'none');
      // The token endpoint's body holds client secrets, codes and refresh tokens: never keep it.
      if (entry.path.startsWith('/crm/') && req.body !== undefined) entry.body = structuredClone(req.body as unknown);
      state.countStatus(entry.status);
    };
    res.writeHead = function (this: Response, ...args: unknown[]) {
      // writeHead(status, ...) sets the status itself; read it before our record is completed.
      if (typeof args[0] === 'number') res.statusCode = args[0];
      complete();
      return (writeHead as (...a: unknown[]) => Response).apply(this, args);
    } as typeof res.writeHead;
    res.on('finish', () => {
      logger?.debug({ method: entry.method, path: entry.path, status: entry.status, credential: entry.credential, ms: entry.durationMs }, 'keap sandbox answered');
    });
    next();
  };
}

/** Artificial latency before each API answer, to exercise client timeouts and concurrency. */
export function delayAnswers(latencyMs: number): RequestHandler {
  return async (_req, _res, next) => {
    if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, latencyMs));
    next();
  };
}

/** `X-Keap-API-Key: <key>` (PAT or SAK) or `Authorization: Bearer <access token>`; anything else is a 401. */
export function authenticate(apiKeys: readonly string[], oauth: SandboxOAuthServer, shape: GatewayErrorShape = 'keap'): RequestHandler {
  return (req, res, next) => {
    const key = req.get('x-keap-api-key');
    if (key !== undefined) {
      res.locals.keapCredential = { kind: 'key', bucket: `key:${key}` } satisfies ResolvedCredential;
      if (apiKeys.some((known) => sameSecret(key, known))) return next();
      return sendGatewayError(req, res, 401, 'Invalid API key', shape);
    }
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    if (bearer !== undefined) {
      const check = oauth.checkAccessToken(bearer);
      res.locals.keapCredential = { kind: 'bearer', ...(check.ok ? { bucket: `client:${check.clientId}` } : {}) } satisfies ResolvedCredential;
      if (check.ok) return next();
      return sendGatewayError(req, res, 401, check.reason === 'expired' ? 'Access token expired' : 'Invalid access token', shape);
    }
    res.locals.keapCredential = { kind: 'none' } satisfies ResolvedCredential;
    sendGatewayError(req, res, 401, 'Missing credentials: send X-Keap-API-Key or Authorization: Bearer', shape);
  };
}

/** Counts the request against its credential's windows and answers Keap's 429 when one is full. */
export function enforceRateLimits(limiter: SandboxRateLimiter, shape: GatewayErrorShape = 'keap'): RequestHandler {
  return (req, res, next) => {
    const bucket = credentialOf(res)?.bucket;
    if (bucket === undefined) return next();
    const decision = limiter.take(bucket);
    res.set(decision.headers);
    if (decision.allowed) return next();
    sendGatewayError(req, res, 429, 'Quota Exceeded', shape);
  };
}

/**
 * Chaos may expire every access token just before a request is authenticated (see faults.ts). Runs before
 * `authenticate`, so that very request meets the expiry.
 */
export function expireTokensByChance(faults: FaultQueue, oauth: SandboxOAuthServer): RequestHandler {
  return (_req, _res, next) => {
    if (faults.drawTokenExpiry()) {
      oauth.expireAccessTokens();
      const entry = recordOf(_res);
      if (entry) entry.fault = 'tokens expired';
    }
    next();
  };
}

/**
 * Answers a queued or chaos fault instead of the real answer (see faults.ts). It runs after authentication and the
 * rate limiter: the injected fault stands for Keap's service (or the network) failing behind its gateway, so the
 * request has used quota and an error answer carries the throttle headers, and a request with bad credentials still
 * gets its 401.
 */
export function injectFaults(faults: FaultQueue, shape: GatewayErrorShape = 'keap'): RequestHandler {
  return (req, res, next) => {
    const fault = faults.take({ method: req.method, path: req.originalUrl.split('?')[0]! });
    if (fault === undefined) return next();
    const entry = recordOf(res);
    if (entry) entry.fault = entry.fault ? `${entry.fault}, ${describeFault(fault)}` : describeFault(fault);
    // Writing to a connection the client already gave up on must not take the sandbox down.
    res.on('error', () => {});
    switch (fault.kind) {
      case 'status':
        return answerStatus(req, res, fault, shape);
      case 'slow':
        if (fault.phase === 'mid-body') {
          interceptBody(res, (body, end) => {
            const half = Math.max(1, Math.floor(body.length / 2));
            res.write(body.subarray(0, half));
            setTimeout(() => {
              if (!res.destroyed && !req.socket.destroyed) res.write(body.subarray(half));
              end();
            }, fault.delayMs);
          });
          return next();
        }
        setTimeout(next, fault.delayMs);
        return;
      case 'drop':
        if (fault.phase === 'before-processing') {
          req.socket.destroy();
          return;
        }
        if (fault.phase === 'after-processing') {
          interceptBody(res, () => req.socket.destroy());
          return next();
        }
        interceptBody(res, (body) => {
          const half = Math.max(1, Math.floor(body.length / 2));
          res.write(body.subarray(0, half), () => req.socket.destroy());
        });
        return next();
    }
  };
}

function answerStatus(req: Request, res: Response, fault: Extract<SandboxFault, { kind: 'status' }>, shape: GatewayErrorShape): void {
  const { status } = fault;
  if (fault.retryAfterSeconds !== undefined) res.set('Retry-After', String(fault.retryAfterSeconds));
  if (status === 429) {
    // What Keap's gateway reports when the key's per-second window is used up (by another program on the key).
    const limit = res.getHeader('x-keap-tenant-throttle-limit');
    if (limit !== undefined) res.set({ 'x-keap-tenant-throttle-available': '0', 'x-keap-tenant-throttle-used': String(limit) });
  }
  let message = fault.message ?? (status === 401 ? 'Invalid access token' : status === 429 ? THROTTLED_BODY.message : `Injected failure (sandbox failNext ${status})`);
  if (fault.echoCredential) {
    const credential = req.get('x-keap-api-key') ?? /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    message += ` (credential presented: ${credential ?? 'none'})`;
  }
  // 401 and 429 stand for the gateway refusing the request; other statuses for the service behind it.
  if (shape === 'fault' && (status === 401 || status === 429)) {
    res.status(status).json(gatewayFaultBody(status, message));
    return;
  }
  sendKeapError(req, res, status, message);
}

/**
 * Takes over the end of the answer: `onBody` gets the whole body the route produced (headers already set, nothing
 * sent yet) and `end` to finish the answer normally.
 */
function interceptBody(res: Response, onBody: (body: Buffer, end: () => void) => void): void {
  const originalEnd = res.end.bind(res) as (...args: unknown[]) => Response;
  res.end = function (this: Response, chunk?: unknown, encoding?: unknown, callback?: unknown) {
    const body =
      chunk === undefined || typeof chunk === 'function'
        ? Buffer.alloc(0)
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(String(chunk), typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    res.end = originalEnd as typeof res.end;
    onBody(body, () => {
      if (res.destroyed) return;
      originalEnd(...(typeof callback === 'function' ? [callback] : []));
    });
    return this;
  } as typeof res.end;
}

function recordOf(res: Response): RecordedRequest | undefined {
  return res.locals.sandboxRecord as RecordedRequest | undefined;
}

function plainQuery(query: Request['query']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(query)) {
    if (typeof value === 'string') out[key] = value;
    else if (Array.isArray(value)) out[key] = value.map(String);
    else if (value !== undefined) out[key] = String(value);
  }
  return out;
}
