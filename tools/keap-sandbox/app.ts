import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Clock } from '../../src/core/clock.js';
import { systemClock } from '../../src/core/clock.js';
import { sendKeapError, SandboxHttpError, type GatewayErrorShape } from './error-bodies.js';
import { KEAP_KEY_LIMITS, SandboxRateLimiter, type RateLimits } from './limits.js';
import { FaultQueue, type ChaosOptions } from './faults.js';
import { SandboxHooks } from './hooks.js';
import { authenticate, delayAnswers, enforceRateLimits, expireTokensByChance, injectFaults, recordRequests } from './middleware.js';
import { SandboxOAuthServer, type SandboxOAuthClient } from './oauth-server.js';
import { hookRoutes } from './routes-hooks.js';
import { v1Routes } from './routes-v1.js';
import { v2Routes } from './routes-v2.js';
import { seedSandboxState } from './seed.js';
import { SandboxState, SandboxStateError } from './state.js';
import { tokenRoutes } from './token-routes.js';

export interface KeapSandboxOptions {
  /** Default 0: a free port chosen by the system. */
  port?: number;
  /** Default 127.0.0.1: loopback only. */
  host?: string;
  /** Accepted `X-Keap-API-Key` values; default ['sandbox-api-key']. */
  apiKeys?: string[];
  /** Default { clientId: 'sandbox-client', clientSecret: 'sandbox-secret' }. */
  oauthClient?: SandboxOAuthClient;
  /** Default 86400 (Keap's 24 h). */
  accessTokenTtlSeconds?: number;
  /** Per credential; defaults are Keap's PAT/SAK figures: 10/s, 240/min, 30000/day. */
  limits?: { perSecond?: number; perMinute?: number; perDay?: number };
  /** Artificial delay before each API answer; default 0. */
  latencyMs?: number;
  /** Seeded random misbehaviour from the start (429s, 5xx, slow answers, dropped connections, token expiry); see faults.ts. */
  chaos?: ChaosOptions;
  logger?: Logger;
  /** Time for windows, timestamps and token expiry; tests pass a manual clock to cross windows on purpose. */
  clock?: Clock;
  /** Default true: start with the seed contacts, tags and custom fields (see SEED). */
  seed?: boolean;
  /**
   * How the gateway words its 401s and 429s (authentication, throttling, and injected 401/429 faults): 'keap' (the
   * default) in the API's own error shapes, 'fault' as Keap's gateway may (`{"fault":{"faultstring",..}}`, KEAP.md).
   */
  gatewayErrors?: GatewayErrorShape;
  /**
   * REST hooks: how long after a change its delivery goes out, changes in the meantime joining it (Keap: 30-60 s).
   * Default 1000.
   */
  hookBatchWindowMs?: number;
  /** The same for `contactGroup.applied` and `contactGroup.delete` (Keap: 5-10 min). Default: `hookBatchWindowMs`. */
  hookLateEventDelayMs?: number;
  /**
   * Waits before the retries of a failed delivery, on the sandbox clock; after the last retry fails the hook goes
   * Inactive. Default Keap's schedule [60000, 300000, 1800000] (four attempts in all).
   */
  hookRetryDelaysMs?: number[];
  /** How long a hook receiver may take to answer a delivery or handshake (real time). Default Keap's 30000. */
  hookTimeoutMs?: number;
}

export const SANDBOX_DEFAULTS = {
  apiKey: 'sandbox-api-key',
  oauthClient: { clientId: 'sandbox-client', clientSecret: 'sandbox-secret' },
  accessTokenTtlSeconds: 86_400,
} as const;

/** The sandbox's parts, for tests that drive the app in-process (supertest) instead of over a port. */
export interface KeapSandboxApp {
  app: Express;
  state: SandboxState;
  oauth: SandboxOAuthServer;
  faults: FaultQueue;
  hooks: SandboxHooks;
}

export function createKeapSandboxApp(options: KeapSandboxOptions = {}): KeapSandboxApp {
  const clock = options.clock ?? systemClock;
  const now = () => clock.now();
  const state = new SandboxState(now);
  if (options.seed !== false) seedSandboxState(state, now());
  const oauth = new SandboxOAuthServer(options.oauthClient ?? { ...SANDBOX_DEFAULTS.oauthClient }, options.accessTokenTtlSeconds ?? SANDBOX_DEFAULTS.accessTokenTtlSeconds, now);
  const limits: RateLimits = { ...KEAP_KEY_LIMITS, ...definedOnly(options.limits ?? {}) };
  const limiter = new SandboxRateLimiter(limits, now);
  const faults = new FaultQueue();
  if (options.chaos) faults.chaos(options.chaos);
  const apiKeys = options.apiKeys ?? [SANDBOX_DEFAULTS.apiKey];
  // After seeding: the seed's changes happen before any hook exists.
  const hooks = new SandboxHooks(state, now, {
    ...definedOnly({
      batchWindowMs: options.hookBatchWindowMs,
      lateEventDelayMs: options.hookLateEventDelayMs,
      retryDelaysMs: options.hookRetryDelaysMs,
      timeoutMs: options.hookTimeoutMs,
    }),
    ...(options.logger ? { logger: options.logger } : {}),
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(recordRequests(state, now, options.logger));
  app.use(tokenRoutes(oauth));

  // Order matters and mirrors Keap's gateway: delay, authenticate (after chaos may have expired the tokens), count
  // against quota, then the service (which may fail or misbehave on purpose), and only then parse the body.
  const api = express.Router();
  api.use(delayAnswers(options.latencyMs ?? 0));
  api.use(expireTokensByChance(faults, oauth));
  const gateway = options.gatewayErrors ?? 'keap';
  api.use(authenticate(apiKeys, oauth, gateway));
  api.use(enforceRateLimits(limiter, gateway));
  api.use(injectFaults(faults, gateway));
  api.use(express.json({ limit: '1mb' }));
  api.use('/rest/v2', v2Routes(state));
  api.use('/rest/v1/hooks', hookRoutes(hooks));
  api.use('/rest/v1', v1Routes(state));
  api.use(((req, res) => sendKeapError(req, res, 404, `The sandbox has no endpoint ${req.method} ${req.baseUrl}${req.path}`)) satisfies RequestHandler);
  api.use(apiErrors(options.logger));
  app.use('/crm', api);

  app.use(((req, res) => {
    res.status(404).json({ message: `Not found: ${req.method} ${req.path}` });
  }) satisfies RequestHandler);
  return { app, state, oauth, faults, hooks };
}

function apiErrors(logger: Logger | undefined): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (err instanceof SandboxHttpError) return sendKeapError(req, res, err.status, err.message);
    if (err instanceof SandboxStateError) return sendKeapError(req, res, 400, err.message);
    // body-parser's errors carry the status to answer (400 bad JSON, 413 too large, 415 bad charset).
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendKeapError(req, res, status, status === 400 ? 'The request body is not valid JSON' : (err as Error).message);
    }
    logger?.error({ err, path: req.path }, 'keap sandbox failed');
    sendKeapError(req, res, 500, 'Internal error in the Keap sandbox');
  };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
