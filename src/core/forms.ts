import express, { type Request, type RequestHandler } from 'express';

/**
 * The parser for a router's HTML forms. Express 5 leaves req.body undefined when no parser matched (a JSON, text
 * or empty POST), so the second step makes it `{}`: every form handler reads fields without a guard, and a
 * request that is not a form finds every field missing (a 400 in the form, never a TypeError).
 */
export function formBodyParser(options: { limit: string; parameterLimit: number }): RequestHandler[] {
  return [
    express.urlencoded({ extended: false, ...options }),
    (req, _res, next) => {
      req.body ??= {};
      next();
    },
  ];
}

/** The fields of a form posted through `formBodyParser`. */
export function formFields(req: Request): Record<string, unknown> {
  return req.body as Record<string, unknown>;
}

/** A form field as text: a string as sent, anything else (missing, repeated into an array, an object) as ''. */
export function formText(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The client's address for per-address limits (req.ip honours the trusted reverse proxy). */
export function clientIp(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}
