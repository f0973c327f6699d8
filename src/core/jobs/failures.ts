import { errorMessage } from '../errors.js';

/**
 * How a job that threw is treated, read off the error itself: whoever throws knows best whether waiting helps.
 * An error says so with these properties (any error may carry them; a plugin written in plain JavaScript can
 * `throw Object.assign(new Error('...'), { retryable: false })`):
 * - `retryable: false`: running again cannot help (no such contact, a clash a person must resolve): the job fails
 *   at once with the error's message, and can be replayed from the event log;
 * - `throttled: true` with `retryAfterMs`: the other side asked us to slow down; the job waits that long without
 *   using up one of its attempts;
 * - anything else is retried with back-off (`retryAfterMs`, when given, is the least wait), until the attempts
 *   are used up and it is `dead`. An unknown error is retried too: a bug that persists ends `dead` with its
 *   message, and nothing is lost meanwhile.
 */
export interface JobFailureTraits {
  retryable?: boolean;
  throttled?: boolean;
  retryAfterMs?: number;
  /** A message meant for the event log, when it differs from `message` (AppError's public message). */
  publicMessage?: string;
}

export type FailureKind =
  | { kind: 'retry'; message: string; delayMs?: number; throttled?: boolean }
  | { kind: 'fail'; message: string };

/** A job that cannot succeed by running again (no email on the contact, a clash only a person can resolve). */
export class PermanentJobError extends Error {
  readonly retryable = false;
  constructor(message: string) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

/** A job that should run again later; `retryAfterMs` is the least wait. */
export class RetryableJobError extends Error {
  readonly retryable = true;
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RetryableJobError';
  }
}

/** The message of an unexpected error, for the event log (callers must not put secrets in error messages). */
export function describeError(err: unknown): string {
  return errorMessage(err).slice(0, 1_000);
}

export function failureOf(err: unknown): FailureKind {
  const traits = (typeof err === 'object' && err !== null ? err : {}) as JobFailureTraits;
  const message = typeof traits.publicMessage === 'string' ? traits.publicMessage.slice(0, 1_000) : describeError(err);
  if (traits.retryable === false) return { kind: 'fail', message };
  const delayMs = typeof traits.retryAfterMs === 'number' && Number.isFinite(traits.retryAfterMs) && traits.retryAfterMs >= 0 ? traits.retryAfterMs : undefined;
  return { kind: 'retry', message, ...(delayMs === undefined ? {} : { delayMs }), ...(traits.throttled === true ? { throttled: true } : {}) };
}
