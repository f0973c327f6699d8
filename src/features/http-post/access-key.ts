import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { SealedSettings, SettingsStore } from '../../core/settings.js';

const SETTING = 'webhook.access_key';
const ROTATION_SETTING = 'webhook.access_key_rotated';
/** Set while a generated key has not yet been printed by a start that went on to listen (see `unseen`). */
const UNSEEN_SETTING = 'webhook.access_key_unseen';

/** 32 random bytes, base64url: 43 characters, far beyond guessing (WP Fusion's are 8 hex characters). */
export function generateAccessKey(): string {
  return randomBytes(32).toString('base64url');
}

export interface ResolvedAccessKey {
  key: string;
  source: 'environment' | 'stored' | 'generated';
}

/**
 * The key Keap must send. ACCESS_KEY from the environment wins; otherwise the stored key; otherwise a new
 * one is generated and stored, and the caller shows it once. Stored sealed with the site key: a copy of the database
 * alone cannot post to the site. A key stored in plaintext by an older version is sealed here.
 */
export function resolveAccessKey(secrets: SealedSettings, fromEnvironment: string | undefined): ResolvedAccessKey {
  // Sealed even while ACCESS_KEY wins: the stored one comes back when the variable is removed.
  secrets.sealStored(SETTING);
  if (fromEnvironment) return { key: fromEnvironment, source: 'environment' };
  const stored = secrets.get(SETTING);
  if (stored) return { key: stored, source: 'stored' };
  const { value, inserted } = secrets.setIfAbsent(SETTING, generateAccessKey());
  return { key: value, source: inserted ? 'generated' : 'stored' };
}

/** Who rotated the key last and when (in the settings table; never the key). */
export interface AccessKeyRotation {
  at: string;
  by: { id: number; email: string };
}

declare module '../../core/hooks.js' {
  interface ActionMap {
    /**
     * An admin replaced the webhook access key; the old one is refused from now on. The key itself is not passed.
     * @fires after the new key is stored
     */
    'access_key.rotated': [rotation: AccessKeyRotation];
  }
}

/** Rotation is refused when ACCESS_KEY fixes the key: the next start would bring the old one back. */
export class AccessKeyFixedError extends Error {
  constructor() {
    super('the webhook access key is set by ACCESS_KEY in the environment and cannot be rotated here');
    this.name = 'AccessKeyFixedError';
  }
}

/** The current webhook access key, kept in memory for the hot path and replaced at once on rotation. */
export class AccessKeyring {
  private key: string;
  private resolvedFrom: ResolvedAccessKey['source'];

  constructor(
    private readonly settings: SettingsStore,
    private readonly secrets: SealedSettings,
    fromEnvironment: string | undefined,
  ) {
    const resolved = resolveAccessKey(secrets, fromEnvironment);
    this.key = resolved.key;
    this.resolvedFrom = resolved.source;
    if (resolved.source === 'generated') settings.set(UNSEEN_SETTING, '1');
  }

  /** Where the key came from: `generated` only for the start that made it, `stored` after a rotation. */
  get source(): ResolvedAccessKey['source'] {
    return this.resolvedFrom;
  }

  /**
   * A generated key no start has printed yet: the start that made it failed before listening (the port taken), so
   * the next one shows it. Cleared by `markSeen` once printed.
   */
  get unseen(): boolean {
    return this.resolvedFrom !== 'environment' && this.settings.get(UNSEEN_SETTING) === '1';
  }

  markSeen(): void {
    this.settings.set(UNSEEN_SETTING, '0');
  }

  /** Whether ACCESS_KEY fixes the key (the admin page then offers no rotation). */
  get fixedByEnvironment(): boolean {
    return this.resolvedFrom === 'environment';
  }

  current(): string {
    return this.key;
  }

  matches(given: unknown): boolean {
    return accessKeyMatches(this.key, given);
  }

  /**
   * A short, non-secret fingerprint of the current key. A rotation form carries it so a resubmitted or stale
   * form does not rotate a key its sender never saw.
   */
  fingerprint(): string {
    return createHash('sha256').update(`fingerprint:${this.key}`).digest('hex').slice(0, 16);
  }

  /**
   * Replaces the key with a new generated one, stored before it takes effect; the old key is refused from the
   * next request on (the receiver reads `current()` on every post). Returns the new key for showing once.
   */
  rotate(by: AccessKeyRotation['by'], at: string): string {
    if (this.fixedByEnvironment) throw new AccessKeyFixedError();
    const key = generateAccessKey();
    this.secrets.set(SETTING, key);
    this.settings.set(ROTATION_SETTING, JSON.stringify({ at, by: { id: by.id, email: by.email } } satisfies AccessKeyRotation));
    this.key = key;
    this.resolvedFrom = 'stored';
    return key;
  }

  /** The last rotation, if the key was ever rotated. */
  lastRotation(): AccessKeyRotation | undefined {
    const raw = this.settings.get(ROTATION_SETTING);
    if (!raw) return undefined;
    try {
      return JSON.parse(raw) as AccessKeyRotation;
    } catch {
      return undefined;
    }
  }
}

/**
 * Constant-time comparison. Both sides are hashed first so the comparison time does not even reveal the
 * key's length.
 */
export function accessKeyMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string' || given.length === 0) return false;
  return timingSafeEqual(expectedDigest(expected), createHash('sha256').update(given).digest());
}

/** The key's digest, kept while the key stays the same: every post is checked against it. */
let lastExpected: { key: string; digest: Buffer } | undefined;
function expectedDigest(key: string): Buffer {
  if (lastExpected?.key !== key) lastExpected = { key, digest: createHash('sha256').update(key).digest() };
  return lastExpected.digest;
}
