import express, { type RequestHandler, type Router } from 'express';
import { ipKeyGenerator, MemoryStore } from 'express-rate-limit';
import { AppError } from '../../core/errors.js';
import type { WebhookService } from './service.js';

export interface WebhookRoutesOptions {
  /** Rejected requests allowed per client IP in `rejectionWindowMs` before it gets 429s. */
  rejectionLimit: number;
  rejectionWindowMs: number;
}

export const WEBHOOK_BODY_LIMIT = '1mb';

/**
 * `POST /` and `POST /webhooks/keap`, added straight to the router the app mounts first (a router nested in it
 * would cost the hottest path another layer of express's matching). Keap posts whole bursts from a few addresses,
 * so accepted posts are never throttled: the limiter counts only refusals (a wrong key, bad input), which stops key
 * guessing and nothing else.
 */
export function addWebhookRoutes(router: Router, service: WebhookService, options: WebhookRoutesOptions): void {
  const rejectionLimiter = rejectionsOnlyLimiter(options);
  const parsers = [
    express.urlencoded({ extended: false, limit: WEBHOOK_BODY_LIMIT, parameterLimit: 200 }),
    express.json({ limit: WEBHOOK_BODY_LIMIT, strict: false }),
  ];
  const receive: RequestHandler = async (req, res) => {
    const answer = await service.receive(req.query, req.body);
    res.status(answer.status).json(answer.body);
  };
  const refuseGet: RequestHandler = (req, _res, next) => {
    if (req.query.wpf_action !== undefined) return next(new AppError(405, 'webhooks must be sent with POST', { code: 'method_not_allowed' }));
    next();
  };

  router.post(['/', '/webhooks/keap'], rejectionLimiter, ...parsers, receive);
  router.get('/', refuseGet);
  router.all('/webhooks/keap', (req, res, next) => {
    if (req.method === 'POST') return next();
    res.set('Allow', 'POST');
    next(new AppError(405, 'webhooks must be sent with POST', { code: 'method_not_allowed' }));
  });
}

/**
 * Counts a client's refused requests (4xx answers other than this limiter's own 429) and, past the limit, answers
 * 429 until the window passes. The count is taken when a refusal has been answered, never before a request runs:
 * express-rate-limit's skipSuccessfulRequests counts first and takes back later, so fifty accepted posts in
 * flight at once from Keap's one address would look like fifty refusals. Its MemoryStore keeps the windows.
 */
function rejectionsOnlyLimiter(options: WebhookRoutesOptions): RequestHandler {
  const store = new MemoryStore();
  store.init({ windowMs: options.rejectionWindowMs } as Parameters<MemoryStore['init']>[0]);
  return async (req, res, next) => {
    const key = ipKeyGenerator(req.ip ?? 'unknown');
    const seen = await store.get(key);
    if (seen && seen.totalHits >= options.rejectionLimit) {
      const retryAfter = Math.max(1, Math.ceil(((seen.resetTime?.getTime() ?? Date.now()) - Date.now()) / 1000));
      res.set('Retry-After', String(retryAfter));
      res.status(429).json({ ok: false, error: 'too many rejected requests from this address; try again later' });
      return;
    }
    res.on('finish', () => {
      if (res.statusCode >= 400 && res.statusCode < 500) void store.increment(key);
    });
    next();
  };
}
