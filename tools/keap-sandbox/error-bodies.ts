import type { Request, Response } from 'express';

/**
 * Error answers in the shapes Keap's specs give them, so a client's error handling is tested against what it
 * will really parse:
 * - v2 `Error`: `{ code: <integer status>, message, status: <reason name>, details? }`.
 * - v1 `Error` (a serialized Java Throwable in the spec): `{ message }` is the part Keap fills in.
 * - 429 from Keap's gateway, for both versions: `{ code: "429", message: "Quota Exceeded", status: "Request Throttled" }`
 *   (the code is a string there, unlike v2's integer; no operation in either spec documents 429).
 * - With the sandbox's `gatewayErrors: 'fault'`, what Keap's gateway itself answers (KEAP.md: its 401s and 429s "may
 *   instead carry" this): `{ fault: { faultstring, detail: { errorcode } } }`. KEAP.md gives the shape, not the
 *   values: the faultstring is the sandbox's message and the errorcode names the sandbox (`sandbox.gateway.*`).
 */

/** Thrown by sandbox routes; the error middleware turns it into the right body for the API version. */
export class SandboxHttpError extends Error {
  override name = 'SandboxHttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const THROTTLED_BODY = { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' } as const;

/** Reason names in the style Keap's v2 API uses for `Error.status` (gRPC-like canonical codes). */
const V2_STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'ALREADY_EXISTS',
  500: 'INTERNAL',
  501: 'UNIMPLEMENTED',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

export function v2ErrorBody(status: number, message: string): { code: number; message: string; status: string } {
  return { code: status, message, status: V2_STATUS_NAMES[status] ?? 'UNKNOWN' };
}

export function v1ErrorBody(message: string): { message: string } {
  return { message };
}

/** True for v1 paths (`/crm/rest/v1/...`), which answer errors in the v1 shape. */
export function isV1Request(req: Request): boolean {
  return req.originalUrl.includes('/rest/v1/');
}

/** How the gateway in front of the API (authentication and throttling: the 401s and 429s) words its errors. */
export type GatewayErrorShape = 'keap' | 'fault';

export function gatewayFaultBody(status: number, message: string): { fault: { faultstring: string; detail: { errorcode: string } } } {
  return { fault: { faultstring: message, detail: { errorcode: status === 429 ? 'sandbox.gateway.throttled' : 'sandbox.gateway.unauthorized' } } };
}

export function sendKeapError(req: Request, res: Response, status: number, message: string): void {
  if (status === 429) {
    res.status(429).json(THROTTLED_BODY);
    return;
  }
  res.status(status).json(isV1Request(req) ? v1ErrorBody(message) : v2ErrorBody(status, message));
}

/** A 401 or 429 from the gateway: in Keap's API shapes (sendKeapError), or as the gateway's fault. */
export function sendGatewayError(req: Request, res: Response, status: 401 | 429, message: string, shape: GatewayErrorShape): void {
  if (shape === 'fault') {
    res.status(status).json(gatewayFaultBody(status, message));
    return;
  }
  sendKeapError(req, res, status, message);
}
