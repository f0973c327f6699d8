import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import type { SealedSettings, SettingsStore } from '../../core/settings.js';

const TOKEN = 'keap_hooks.token';
const PREVIOUS = 'keap_hooks.previous_token';
const PREVIOUS_UNTIL = 'keap_hooks.previous_until';

/** Where Keap posts its REST hook deliveries: the token is the last path segment. */
export const HOOK_PATH_PREFIX = '/webhooks/keap/hooks/';

/**
 * The credential in the REST hook URL (`PUBLIC_URL/webhooks/keap/hooks/<token>`). Keap signs nothing and sends no
 * secret with a delivery, so an unguessable path is what tells Keap's posts from anyone's. Stored sealed with the
 * site key. Rotating keeps the old token working for a grace period the admin chooses (while Keap's subscriptions
 * are moved to the new URL), then refuses it.
 */
export class HookTokens {
  private cached: { current: string; previous: string | undefined; previousUntil: number } | undefined;

  constructor(
    private readonly sealed: SealedSettings,
    private readonly settings: SettingsStore,
    private readonly clock: Clock,
  ) {}

  /** The token in the URL Keap should post to (made on first use). */
  current(): string {
    return this.load().current;
  }

  /** Whether `given` is the current token, or the previous one within its grace period (compared in constant time). */
  matches(given: string): boolean {
    const { current, previous, previousUntil } = this.load();
    if (equal(current, given)) return true;
    return previous !== undefined && this.clock.now() < previousUntil && equal(previous, given);
  }

  /** Until when the previous token still works (epoch ms), or null when none does. */
  previousValidUntil(): number | null {
    const { previous, previousUntil } = this.load();
    return previous !== undefined && this.clock.now() < previousUntil ? previousUntil : null;
  }

  /** A new token; the old one keeps working for `graceMs` (0: refused at once). Returns the new token. */
  rotate(graceMs: number): string {
    const old = this.current();
    const fresh = newToken();
    this.sealed.set(PREVIOUS, old);
    this.settings.set(PREVIOUS_UNTIL, String(this.clock.now() + graceMs));
    this.sealed.set(TOKEN, fresh);
    this.cached = undefined;
    return fresh;
  }

  private load() {
    if (!this.cached) {
      const current = this.sealed.setIfAbsent(TOKEN, newToken()).value;
      const previous = this.sealed.get(PREVIOUS) || undefined;
      this.cached = { current, previous, previousUntil: Number(this.settings.get(PREVIOUS_UNTIL) ?? 0) };
    }
    return this.cached;
  }
}

/** 32 random bytes in base64url: a path segment nobody guesses. */
function newToken(): string {
  return randomBytes(32).toString('base64url');
}

function equal(expected: string, given: string): boolean {
  return timingSafeEqual(createHash('sha256').update(expected).digest(), createHash('sha256').update(given).digest());
}
