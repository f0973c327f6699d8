/**
 * The one error type the HTTP layer understands. `publicMessage` is what a client may read; anything else
 * (stack, cause) stays in the logs. Throwing an AppError from a route or service is how a feature says
 * "this is the caller's fault" (4xx) without knowing about express.
 */
export class AppError extends Error {
  readonly status: number;
  readonly publicMessage: string;
  /** A short machine-readable reason, e.g. `invalid_input`, `not_found`. */
  readonly code: string;
  /** The input field the error is about, when there is one. */
  readonly field: string | undefined;

  constructor(status: number, publicMessage: string, options: { code?: string; field?: string; cause?: unknown } = {}) {
    super(publicMessage, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.status = status;
    this.publicMessage = publicMessage;
    this.code = options.code ?? codeForStatus(status);
    this.field = options.field;
  }

  /** A job that threw this: the caller's fault (4xx) cannot get better by running again (see core/jobs/failures.ts). */
  get retryable(): boolean {
    return this.status >= 500;
  }
}

export const badRequest = (message: string, field?: string): AppError =>
  new AppError(400, message, field === undefined ? { code: 'invalid_input' } : { code: 'invalid_input', field });
export const notFound = (message: string): AppError => new AppError(404, message, { code: 'not_found' });
export const forbidden = (message: string): AppError => new AppError(403, message, { code: 'forbidden' });
export const unauthorized = (message: string): AppError => new AppError(401, message, { code: 'unauthorized' });
export const conflict = (message: string): AppError => new AppError(409, message, { code: 'conflict' });

function codeForStatus(status: number): string {
  if (status === 400) return 'invalid_input';
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status === 413) return 'too_large';
  if (status === 429) return 'rate_limited';
  return status >= 500 ? 'internal' : 'error';
}

/** "field.path: message" for the first problem zod found (job params, plugin settings). */
export function describeZodIssue(error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> }): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.length ? `${issue.path.map(String).join('.')}: ` : ''}${issue.message}`;
}

/** Message of anything thrown, for logs and event records (never for secrets: callers pass sanitized errors). */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A start that cannot go on (a bad setting found once the database is open, a built-in that failed): one line for the operator. */
export class StartupError extends Error {}
