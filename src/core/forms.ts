import type { Request } from 'express';

/** A form field as text: a string as sent, anything else (missing, repeated into an array, an object) as ''. */
export function formText(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The client's address for per-address limits (req.ip honours the trusted reverse proxy). */
export function clientIp(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}
