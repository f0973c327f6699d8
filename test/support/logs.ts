import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/core/logger.js';

/** A real pino logger whose lines are kept in memory, so tests can read what would have been logged. */
export function captureLogs(level = 'debug'): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = createLogger({ level, destination });
  const text = () => chunks.join('');
  const lines = () =>
    text()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, text };
}
