import { AppError } from './core/errors.js';
import { FilterError } from './core/hooks.js';
import { MailError } from './core/mail.js';
import { KeapPermanentError, KeapRetryableError } from './features/keap/errors.js';
import { PermanentJobError, describeError, type FailureKind } from './features/queue/worker.js';

/**
 * Whether a job that threw is worth running again. The queue knows no Keap or SMTP, so this composition-level
 * rule tells it: Keap 429s wait the window Keap names without using an attempt; 5xx, network trouble and
 * transient mail errors back off; what cannot get better by waiting fails at once with its reason.
 * Unknown errors are retried: a bug that persists ends `dead` with its message, and nothing is lost meanwhile.
 */
export function classifyJobError(err: unknown): FailureKind {
  if (err instanceof KeapRetryableError) return { kind: 'retry', message: err.message, delayMs: err.retryAfterMs, throttled: err.throttled };
  if (err instanceof KeapPermanentError) return { kind: 'fail', message: err.message };
  if (err instanceof PermanentJobError || err instanceof FilterError) return { kind: 'fail', message: err.message };
  if (err instanceof MailError) return err.transient ? { kind: 'retry', message: err.message } : { kind: 'fail', message: err.message };
  if (err instanceof AppError && err.status < 500) return { kind: 'fail', message: err.publicMessage };
  return { kind: 'retry', message: describeError(err) };
}
