import express, { type ErrorRequestHandler, type RequestHandler, type Router } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQueryString } from 'node:querystring';
import qs from 'qs';
import { errorJson, toAppError } from '../../core/error-handler.js';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { readFastRouteBody, type FastRoute } from '../../web/fast-route.js';
import { TOO_MANY_REJECTIONS, type RejectionLimiter } from '../../core/rejection-limiter.js';
import type { WebhookAnswer, WebhookService } from './service.js';

/** 1 MB, for both readers of a post. */
const BODY_LIMIT_BYTES = 1024 * 1024;
const PARAMETER_LIMIT = 200;
const WEBHOOK_PATHS = new Set(['/', '/webhooks/keap']);

/**
 * `POST /` and `POST /webhooks/keap`. A post as Keap sends it (form fields or JSON in UTF-8, its length given, not
 * compressed) is taken by `fast`, straight from Node's request, ahead of express: thousands of these a minute in a
 * burst are the app's hottest path. Any other post (compressed, chunked, another charset) goes to the express route
 * with body-parser, which reads everything; both end in the same `service.receive` and the same limiter. Keap posts
 * whole bursts from a few addresses, so a post with the right key is never throttled: the limiter counts only
 * refusals (a wrong key, bad input) and holds back only posts without the key, which stops key guessing and
 * nothing else. A body that cannot be read is a refusal without the key.
 */
export function webhookRoutes(service: WebhookService, limiter: RejectionLimiter, logger: Logger) {
  return {
    fast: webhookFastRoute(service, limiter, logger),
    addTo: (router: Router) => addWebhookRoutes(router, service, limiter),
  };
}

function addWebhookRoutes(router: Router, service: WebhookService, limiter: RejectionLimiter): void {
  const parsers = [
    express.urlencoded({ extended: false, limit: BODY_LIMIT_BYTES, parameterLimit: PARAMETER_LIMIT }),
    express.json({ limit: BODY_LIMIT_BYTES, strict: false }),
  ];
  const receive: RequestHandler = async (req, res) => {
    const ip = () => req.ip ?? 'unknown';
    const answer = await service.receive(req.query, req.body, ip);
    limiter.answered(ip, answer.status);
    sendAnswer(res, answer);
  };
  // A body body-parser could not read: the same answer as the fast path's for it (429 past the limit).
  const unreadable: ErrorRequestHandler = async (err, req, res, next) => {
    const appError = toAppError(err);
    if (appError.status >= 500) return next(err);
    const ip = () => req.ip ?? 'unknown';
    const answer = await refusalOfUnreadable(limiter, ip, { status: appError.status, body: errorJson(appError) });
    limiter.answered(ip, answer.status);
    sendAnswer(res, answer);
  };
  const refuseGet: RequestHandler = (req, _res, next) => {
    if (req.query.wpf_action !== undefined) return next(new AppError(405, 'webhooks must be sent with POST', { code: 'method_not_allowed' }));
    next();
  };

  router.post(['/', '/webhooks/keap'], ...parsers, receive, unreadable);
  router.get('/', refuseGet);
  router.all('/webhooks/keap', (req, res, next) => {
    if (req.method === 'POST') return next();
    res.set('Allow', 'POST');
    next(new AppError(405, 'webhooks must be sent with POST', { code: 'method_not_allowed' }));
  });
}

/** A post whose body could not be read carried no key anyone could check: past the limit it is a 429. */
async function refusalOfUnreadable(limiter: RejectionLimiter, ip: () => string, refusal: WebhookAnswer): Promise<WebhookAnswer> {
  const retryAfterSeconds = await limiter.refusing(ip);
  return retryAfterSeconds === undefined ? refusal : { status: 429, body: TOO_MANY_REJECTIONS, retryAfterSeconds };
}

/** The parser for a body as Keap sends it, or undefined for anything the express route should read. */
function plainBodyParser(req: IncomingMessage): ((text: string) => unknown) | undefined {
  const length = req.headers['content-length'];
  if (length === undefined || req.headers['transfer-encoding'] !== undefined) return undefined;
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return undefined;
  if (Number(length) > BODY_LIMIT_BYTES) return undefined;
  const [type, ...params] = (req.headers['content-type'] ?? '').toLowerCase().split(';').map((part) => part.trim());
  if (params.some((p) => p !== 'charset=utf-8' && p !== 'charset="utf-8"')) return undefined;
  if (type === 'application/x-www-form-urlencoded') return parseForm;
  if (type === 'application/json') return parseJson;
  return undefined;
}

/** As body-parser's urlencoded parser with `extended: false` reads a form (qs, no nesting). */
function parseForm(text: string): unknown {
  if (text.length === 0) return {};
  let fields = 1;
  for (let i = text.indexOf('&'); i !== -1; i = text.indexOf('&', i + 1)) {
    if (++fields > PARAMETER_LIMIT) throw new AppError(413, 'too many form parameters', { code: 'too_large' });
  }
  return qs.parse(text, { allowPrototypes: true, arrayLimit: fields, depth: 0, parameterLimit: PARAMETER_LIMIT, strictDepth: true, charset: 'utf-8' });
}

/** As body-parser's json parser with `strict: false`: any JSON value (the service refuses all but objects). */
function parseJson(text: string): unknown {
  if (text.length === 0) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError(400, 'malformed JSON body', { code: 'invalid_input' });
  }
}

function webhookFastRoute(service: WebhookService, limiter: RejectionLimiter, logger: Logger): FastRoute {
  return (req, res, clientIp) => {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if (!WEBHOOK_PATHS.has(q === -1 ? url : url.slice(0, q))) return false;
    const parseBody = plainBodyParser(req);
    if (!parseBody) return false;
    // Worked out only for a refusal: proxy-addr's parsing is a good part of a post's cost otherwise.
    const ip = () => clientIp(req);
    void (async () => {
      let answer: WebhookAnswer;
      let body: unknown;
      try {
        body = parseBody(await readBody(req));
      } catch (err) {
        const appError = toAppError(err);
        answer = await refusalOfUnreadable(limiter, ip, { status: appError.status, body: errorJson(appError) });
        limiter.answered(ip, answer.status);
        return sendAnswer(res, answer);
      }
      try {
        answer = await service.receive(q === -1 ? {} : parseQueryString(url.slice(q + 1)), body, ip);
      } catch (err) {
        const appError = toAppError(err);
        if (appError.status >= 500) logger.error({ err, method: req.method, path: url.slice(0, q === -1 ? undefined : q) }, 'request failed');
        answer = { status: appError.status, body: errorJson(appError) };
      }
      limiter.answered(ip, answer.status);
      sendAnswer(res, answer);
    })();
    return true;
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const text = await readFastRouteBody(req, BODY_LIMIT_BYTES);
  if (text === undefined) throw new AppError(413, `request body is larger than ${BODY_LIMIT_BYTES} bytes`, { code: 'too_large' });
  return text;
}

function sendAnswer(res: ServerResponse, answer: WebhookAnswer): void {
  if (res.destroyed) return;
  const text = JSON.stringify(answer.body);
  const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) };
  if (answer.retryAfterSeconds !== undefined) headers['retry-after'] = String(answer.retryAfterSeconds);
  res.writeHead(answer.status, headers);
  res.end(text);
}
