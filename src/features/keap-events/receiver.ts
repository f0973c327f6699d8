import express, { Router, type ErrorRequestHandler, type Request, type Response } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JobQueue } from '../../core/jobs/queue.js';
import type { Logger } from '../../core/logger.js';
import { TOO_MANY_REJECTIONS, type RejectionLimiter } from '../../core/rejection-limiter.js';
import { describeZodIssue } from '../../core/errors.js';
import { readFastRouteBody, type FastRoute } from '../../web/fast-route.js';
import { hookDelivery, isHookDelivery, keapHookDelivery, REST_HOOK_SOURCE } from './delivery.js';
import { HOOK_PATH_PREFIX, type HookTokens } from './hook-token.js';

/** A delivery of 1,000 objects is about 100 KB; this leaves room for Keap adding fields, and no more. */
const BODY_LIMIT = '1mb';
const BODY_LIMIT_BYTES = 1024 * 1024;
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
  // The router above takes what the fast route leaves (see hookFastRoute): the same answers, through express.

  // A body that is not JSON, or too large: the delivery is refused with the reason (Keap retries, then gives up).
  const unreadable: ErrorRequestHandler = (err, _req, res, next) => {
    const status = typeof err?.status === 'number' ? err.status : 500;
    if (status >= 500) return next(err);
    res.status(status).json({ ok: false, error: status === 413 ? `the delivery is larger than ${BODY_LIMIT}` : 'the delivery is not valid JSON' });
  };
  router.use(HOOK_PATH_PREFIX, unreadable);
  return router;
}

type ReceiverDeps = Parameters<typeof hookReceiver>[0];

/**
 * The same receiver straight from Node's request, ahead of express, for a delivery as Keap sends it (its length
 * given, not compressed, at most 1 MB): a burst of 1,000-object deliveries is answered in a few milliseconds each,
 * where express, body-parser and zod over every object took several times the durable write. The body is checked in
 * one plain pass (`isHookDelivery`; zod only names what is wrong with a refused one) and stored as the JSON text it
 * came as. The answers are the router's: the handshake echoed, a wrong token a 404 counted by the refusal limiter
 * (429 past it), a bad body a 400 naming what is wrong, and a 200 only once the delivery's row has committed.
 * Anything else (chunked, compressed, too large) is left to the router, which answers it as before.
 */
export function hookFastRoute(deps: ReceiverDeps): FastRoute {
  return (req, res, clientIp) => {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    if (!url.startsWith(HOOK_PATH_PREFIX)) return false;
    const q = url.indexOf('?');
    const segment = url.slice(HOOK_PATH_PREFIX.length, q === -1 ? undefined : q);
    if (segment === '' || segment.includes('/')) return false;
    const length = req.headers['content-length'];
    if (length === undefined || req.headers['transfer-encoding'] !== undefined || Number(length) > BODY_LIMIT_BYTES) return false;
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
    void answer(deps, req, res, segment, () => clientIp(req)).catch((err: unknown) => {
      deps.logger.error({ err }, 'keap rest hook delivery failed');
      if (!res.headersSent) send(res, 500, { ok: false, error: 'the delivery could not be stored; send it again' });
    });
    return true;
  };
}

async function answer(deps: ReceiverDeps, req: IncomingMessage, res: ServerResponse, segment: string, ip: () => string): Promise<void> {
  let token: string;
  try {
    token = decodeURIComponent(segment);
  } catch {
    token = '';
  }
  if (!deps.tokens.matches(token)) {
    const retryAfter = await deps.refusals.refusing(ip);
    if (retryAfter !== undefined) return send(res, 429, TOO_MANY_REJECTIONS, { 'retry-after': String(retryAfter) });
    deps.refusals.answered(ip, 404);
    return send(res, 404, { ok: false, error: 'no such hook URL' });
  }
  const text = await readFastRouteBody(req, BODY_LIMIT_BYTES);
  if (text === undefined) return send(res, 413, { ok: false, error: `the delivery is larger than ${BODY_LIMIT}` });
  const secret = req.headers['x-hook-secret'];
  if (secret !== undefined) {
    const value = Array.isArray(secret) ? secret.join(', ') : secret;
    if (value.length === 0 || value.length > MAX_SECRET_LENGTH || !/^[\x21-\x7e]+$/.test(value)) {
      return send(res, 400, { ok: false, error: 'X-Hook-Secret: expected a printable token' });
    }
    deps.logger.info('keap rest hook handshake answered');
    return send(res, 200, { ok: true }, { 'x-hook-secret': value });
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return send(res, 400, { ok: false, error: 'the delivery is not valid JSON' });
  }
  if (isHookDelivery(body)) {
    const { id } = await deps.jobs.enqueueSoonChecked(keapHookDelivery, { params: body as never, json: text }, { source: REST_HOOK_SOURCE });
    return send(res, 200, { ok: true, event_id: id });
  }
  // Refused by the plain check: the schema names what is wrong (or, should it accept what the check did not, it
  // is stored as the schema reads it).
  const parsed = hookDelivery.safeParse(body);
  if (!parsed.success) return send(res, 400, { ok: false, error: describeZodIssue(parsed.error) });
  const { id } = await deps.jobs.enqueueSoon(keapHookDelivery, parsed.data, { source: REST_HOOK_SOURCE });
  send(res, 200, { ok: true, event_id: id });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
