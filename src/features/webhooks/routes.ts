import express, { Router, type RequestHandler } from 'express';
import { rateLimit } from 'express-rate-limit';
import { AppError } from '../../core/errors.js';
import type { WebhookService } from './service.js';

export interface WebhookRoutesOptions {
  /** Rejected requests allowed per client IP in `rejectionWindowMs` before it gets 429s. */
  rejectionLimit: number;
  rejectionWindowMs: number;
}

export const WEBHOOK_BODY_LIMIT = '1mb';

/**
 * `POST /` and `POST /webhooks/keap`. Keap posts whole bursts from a few addresses, so accepted posts are never
 * throttled: the limiter counts only refusals (a wrong key, bad input), which stops key guessing and nothing else.
 */
export function webhookRoutes(service: WebhookService, options: WebhookRoutesOptions): Router {
  const router = Router();
  const rejectionLimiter = rateLimit({
    windowMs: options.rejectionWindowMs,
    limit: options.rejectionLimit,
    skipSuccessfulRequests: true,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (_req, res) => {
      res.status(429).json({ ok: false, error: 'too many rejected requests from this address; try again later' });
    },
  });
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
  return router;
}
