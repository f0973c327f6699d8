import type { Config } from '../../config.js';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { KeapClient } from './client.js';
import type { KeapRateLimiter } from './rate-limiter.js';
import type { KeapTokenStore } from './types.js';

export { KeapClient, findCustomField, normalizeContact, type KeapClientOptions } from './client.js';
export { KeapError, KeapPermanentError, KeapReauthorizationRequiredError, KeapRetryableError, isKeapError, type KeapRetryReason } from './errors.js';
export { KeapOAuth, type KeapOAuthOptions } from './oauth.js';
export { KeapRateLimiter, type HeaderSource, type KeapRateLimiterOptions } from './rate-limiter.js';
export { MemoryKeapTokenStore, SqliteKeapTokenStore } from './token-store.js';
export type * from './types.js';

/**
 * The app's Keap client from its settings: an API key when one is set (KEAP_API_KEY, else one an admin stored on
 * the settings page, read on every request so a change applies at once), else OAuth with tokens in `tokenStore`.
 */
export function createKeapClient(
  config: Pick<Config, 'keap'>,
  logger: Logger,
  clock: Clock,
  site: { keapApiKey(): string | undefined },
  tokenStore: KeapTokenStore,
  /** Made from the settings' rate limit when not given. */
  limiter?: KeapRateLimiter,
): KeapClient {
  const k = config.keap;
  return new KeapClient({
    apiUrl: k.apiUrl,
    apiKey: () => site.keapApiKey(),
    oauth: k.oauth ? { clientId: k.oauth.clientId, clientSecret: k.oauth.clientSecret, tokenUrl: k.tokenUrl } : undefined,
    tokenStore,
    rateLimit: k.rateLimit,
    ...(limiter ? { limiter } : {}),
    timeoutMs: k.timeoutMs,
    clock,
    logger,
  });
}
