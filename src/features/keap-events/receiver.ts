import express, { Router, type ErrorRequestHandler, type Request, type Response } from 'express';
import type { JobQueue } from '../../core/jobs/queue.js';
import type { Logger } from '../../core/logger.js';
import { TOO_MANY_REJECTIONS, type RejectionLimiter } from '../../core/rejection-limiter.js';
import { describeZodIssue } from '../../core/errors.js';
import { hookDelivery, keapHookDelivery, REST_HOOK_SOURCE } from './delivery.js';
import { HOOK_PATH_PREFIX, type HookTokens } from './hook-token.js';

/** A delivery of 1,000 objects is about 100 KB; this leaves room for Keap adding fields, and no more. */
const BODY_LIMIT = '1mb';
/** Keap's handshake secret is a short token; anything longer is not Keap's. */
const MAX_SECRET_LENGTH = 512;

/**
 * `POST /webhooks/keap/hooks/<token>`: Keap's REST hook deliveries and their handshakes.
 * - A wrong token is a 404 that records nothing (it is not our URL), counted as a refusal per address like the HTTP
 *   Post receiver's: past the limit, that address's requests get 429s.
 * - The handshake (`X-Hook-Secret`) is answered 200 with the same header, which is what makes Keap mark the
 *   subscription Verified.
 * - A delivery is checked against Keap's documented shape (400 naming what is wrong), written as one job (the
 *   answer waits for that commit, group-committed with whatever else arrives in the same moment), and answered 200;
 *   its job then fans it out (see delivery.ts).
 */
export function hookReceiver(deps: { tokens: HookTokens; jobs: JobQueue; refusals: RejectionLimiter; logger: Logger }): Router {
  const router = Router();
  const ip = (req: Request) => () => req.ip ?? 'unknown';

  const refuse = async (req: Request, res: Response, status: number, error: string) => {
    const retryAfter = await deps.refusals.refusing(ip(req));
    if (retryAfter !== undefined) {
      res.set('Retry-After', String(retryAfter));
      return res.status(429).json(TOO_MANY_REJECTIONS);
    }
    deps.refusals.answered(ip(req), status);
    res.status(status).json({ ok: false, error });
  };

  router.post(`${HOOK_PATH_PREFIX}:token`, async (req, res, next) => {
    if (!deps.tokens.matches(String(req.params.token))) return refuse(req, res, 404, 'no such hook URL');
    next();
  });

  router.post(`${HOOK_PATH_PREFIX}:token`, express.json({ limit: BODY_LIMIT, type: () => true }), async (req, res) => {
    const secret = req.get('x-hook-secret');
    if (secret !== undefined) {
      if (secret.length === 0 || secret.length > MAX_SECRET_LENGTH || !/^[\x21-\x7e]+$/.test(secret)) {
        return res.status(400).json({ ok: false, error: 'X-Hook-Secret: expected a printable token' });
      }
      deps.logger.info('keap rest hook handshake answered');
      return res.status(200).set('X-Hook-Secret', secret).json({ ok: true });
    }
    const parsed = hookDelivery.safeParse(req.body);
    if (!parsed.success) return res.status(400).json({ ok: false, error: describeZodIssue(parsed.error) });
    const { id } = await deps.jobs.enqueueSoon(keapHookDelivery, parsed.data, { source: REST_HOOK_SOURCE });
    res.status(200).json({ ok: true, event_id: id });
  });

  // A body that is not JSON, or too large: the delivery is refused with the reason (Keap retries, then gives up).
  const unreadable: ErrorRequestHandler = (err, _req, res, next) => {
    const status = typeof err?.status === 'number' ? err.status : 500;
    if (status >= 500) return next(err);
    res.status(status).json({ ok: false, error: status === 413 ? `the delivery is larger than ${BODY_LIMIT}` : 'the delivery is not valid JSON' });
  };
  router.use(HOOK_PATH_PREFIX, unreadable);
  return router;
}
