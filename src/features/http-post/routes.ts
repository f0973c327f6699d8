import express, { type RequestHandler, type Router } from 'express';
import { ipKeyGenerator, MemoryStore } from 'express-rate-limit';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQueryString } from 'node:querystring';
import qs from 'qs';
import { errorJson, toAppError } from '../../core/error-handler.js';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { FastRoute } from '../../web/fast-route.js';
import type { WebhookAnswer, WebhookService } from './service.js';

export interface WebhookRoutesOptions {
  /** Rejected requests allowed per client IP in `rejectionWindowMs` before it gets 429s. */
  rejectionLimit: number;
  rejectionWindowMs: number;
}

/** 1 MB, for both readers of a post. */
const BODY_LIMIT_BYTES = 1024 * 1024;
const PARAMETER_LIMIT = 200;
const WEBHOOK_PATHS = new Set(['/', '/webhooks/keap']);

/**
 * `POST /` and `POST /webhooks/keap`. A post as Keap sends it (form fields or JSON in UTF-8, its length given, not
 * compressed) is taken by `fast`, straight from Node's request, ahead of express: thousands of these a minute in a
 * burst are the app's hottest path. Any other post (compressed, chunked, another charset) goes to the express route
 * with body-parser, which reads everything; both end in the same `service.receive` and the same limiter. Keap posts
 * whole bursts from a few addresses, so accepted posts are never throttled: the limiter counts only refusals (a
 * wrong key, bad input), which stops key guessing and nothing else.
 */
export function webhookRoutes(service: WebhookService, logger: Logger, options: WebhookRoutesOptions) {
  const limiter = new RejectionLimiter(options);
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
  const limit: RequestHandler = async (req, res, next) => {
    const ip = () => req.ip ?? 'unknown';
    const retryAfter = await limiter.refusing(ip);
    if (retryAfter !== undefined) return void sendJson(res, 429, limiter.answer, { 'retry-after': String(retryAfter) });
    res.on('finish', () => limiter.answered(ip, res.statusCode));
    next();
  };
  const receive: RequestHandler = async (req, res) => {
    // The address as the rejection limit counts it (an IPv6 /56 is one sender), for the event log's per-address cap.
    const answer = await service.receive(req.query, req.body, () => ipKeyGenerator(req.ip ?? 'unknown'));
    res.status(answer.status).json(answer.body);
  };
  const refuseGet: RequestHandler = (req, _res, next) => {
    if (req.query.wpf_action !== undefined) return next(new AppError(405, 'webhooks must be sent with POST', { code: 'method_not_allowed' }));
    next();
  };

  router.post(['/', '/webhooks/keap'], limit, ...parsers, receive);
  router.get('/', refuseGet);
  router.all('/webhooks/keap', (req, res, next) => {
    if (req.method === 'POST') return next();
    res.set('Allow', 'POST');
    next(new AppError(405, 'webhooks must be sent with POST', { code: 'method_not_allowed' }));
  });
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
    // Worked out only when the limiter needs it: proxy-addr's parsing is a good part of a post's cost otherwise.
    const ip = () => clientIp(req);
    void (async () => {
      const retryAfter = await limiter.refusing(ip);
      if (retryAfter !== undefined) {
        req.resume();
        return sendJson(res, 429, limiter.answer, { 'retry-after': String(retryAfter) });
      }
      let answer: WebhookAnswer;
      try {
        const body = parseBody(await readBody(req));
        answer = await service.receive(q === -1 ? {} : parseQueryString(url.slice(q + 1)), body, () => ipKeyGenerator(ip()));
      } catch (err) {
        const appError = toAppError(err);
        if (appError.status >= 500) logger.error({ err, method: req.method, path: url.slice(0, q === -1 ? undefined : q) }, 'request failed');
        answer = { status: appError.status, body: errorJson(appError) };
      }
      limiter.answered(ip, answer.status);
      sendJson(res, answer.status, answer.body);
    })();
    return true;
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // The length header was checked; this holds a client to it.
      if (size > BODY_LIMIT_BYTES) {
        req.destroy();
        reject(new AppError(413, `request body is larger than ${BODY_LIMIT_BYTES} bytes`, { code: 'too_large' }));
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Counts a client's refused requests (4xx answers other than its own 429) and, past the limit, refuses it until
 * the window passes. The count is taken when a refusal has been answered, never before a request runs:
 * express-rate-limit's skipSuccessfulRequests counts first and takes back later, so fifty accepted posts in
 * flight at once from Keap's one address would look like fifty refusals. Its MemoryStore keeps the windows.
 */
class RejectionLimiter {
  readonly answer = { ok: false, error: 'too many rejected requests from this address; try again later' };
  private readonly store = new MemoryStore();

  constructor(private readonly options: WebhookRoutesOptions) {
    this.store.init({ windowMs: options.rejectionWindowMs } as Parameters<MemoryStore['init']>[0]);
  }

  /** Until when a refusal may still count (epoch ms): before it, an address could be over the limit. */
  private countingUntil = 0;

  /** Seconds until this address may post again, or undefined when it may now. */
  async refusing(ip: () => string): Promise<number | undefined> {
    // Nothing refused within a window: no address can be over the limit, and none need be looked up.
    if (Date.now() > this.countingUntil) return undefined;
    const seen = await this.store.get(ipKeyGenerator(ip()));
    if (!seen || seen.totalHits < this.options.rejectionLimit) return undefined;
    return Math.max(1, Math.ceil(((seen.resetTime?.getTime() ?? Date.now()) - Date.now()) / 1000));
  }

  answered(ip: () => string, status: number): void {
    if (status < 400 || status >= 500 || status === 429) return;
    this.countingUntil = Date.now() + this.options.rejectionWindowMs;
    void this.store.increment(ipKeyGenerator(ip()));
  }
}
