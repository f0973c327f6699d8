import type { ErrorRequestHandler, Request } from 'express';
import { AppError } from './errors.js';
import type { Logger } from './logger.js';
import type { ViewRenderer } from './views.js';

/** Paths whose clients are programs (Keap, scripts): they get JSON errors rather than pages. */
export function wantsJson(req: Request): boolean {
  return req.path.startsWith('/api/') || req.path.startsWith('/webhooks/') || req.path === '/' && req.method !== 'GET';
}

/**
 * The last middleware: turns anything thrown into a response. AppErrors say what was wrong; body-parser's
 * errors become 400/413 naming the problem; everything else is a 500 whose details stay in the log.
 */
export function errorHandler(deps: { logger: Logger; views: ViewRenderer; siteName: () => string }): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) return next(err);
    const appError = toAppError(err);
    if (appError.status >= 500) {
      deps.logger.error({ err, method: req.method, path: req.path }, 'request failed');
    }
    res.status(appError.status);
    if (wantsJson(req)) {
      res.json(errorJson(appError));
      return;
    }
    res.type('html').send(
      deps.views.render('error', {
        title: 'Error',
        siteName: deps.siteName(),
        status: appError.status,
        heading: appError.status === 404 ? 'Not found' : appError.status >= 500 ? 'Something went wrong' : 'That did not work',
        message: appError.publicMessage,
      }),
    );
  };
}

/** The JSON answer programs get for an error: what was wrong, and which field when one was. */
export function errorJson(appError: AppError): Record<string, unknown> {
  const body: Record<string, unknown> = { ok: false, error: appError.publicMessage };
  if (appError.field) body.field = appError.field;
  return body;
}

/** Anything thrown, as the AppError it is answered with (body-parser's own errors name what was wrong). */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  // body-parser marks its errors with `type` and `status`; their messages are safe and useful.
  const e = err as { type?: string; status?: number; limit?: number; code?: unknown } | undefined;
  if (e?.type === 'entity.too.large') return new AppError(413, `request body is larger than ${e.limit ?? 'the limit'} bytes`, { code: 'too_large' });
  if (e?.type === 'entity.parse.failed') return new AppError(400, 'malformed JSON body', { code: 'invalid_input' });
  if (e?.type === 'charset.unsupported' || e?.type === 'encoding.unsupported') return new AppError(415, 'unsupported body encoding', { code: 'unsupported' });
  if (e?.type === 'parameters.too.many') return new AppError(413, 'too many form parameters', { code: 'too_large' });
  // zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR) come through body-parser as a bare 400: a Content-Encoding that lies.
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) return new AppError(400, 'the request body could not be decompressed', { code: 'invalid_input' });
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new AppError(e.status, 'bad request');
  return new AppError(500, 'internal error', { code: 'internal' });
}
