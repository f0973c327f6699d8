import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths pino blanks out wherever they appear in a log object. Secrets are also kept out of log calls by the
 * code itself; this is the net under it (a plugin logging a whole request, a Keap error carrying headers).
 */
export const REDACTED_PATHS = [
  'access_key', '*.access_key', 'accessKey', '*.accessKey',
  'password', '*.password', 'newPassword', '*.newPassword',
  'token', '*.token', 'access_token', '*.access_token', 'refresh_token', '*.refresh_token',
  'apiKey', '*.apiKey', 'api_key', '*.api_key', 'clientSecret', '*.clientSecret', 'client_secret', '*.client_secret',
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'headers["x-keap-api-key"]', '*.headers["x-keap-api-key"]', 'headers.cookie', '*.headers.cookie',
];

export interface LoggerOptions {
  level?: string;
  /** Where lines go; tests pass a stream to capture them. Defaults to stdout. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    options.destination,
  );
}
