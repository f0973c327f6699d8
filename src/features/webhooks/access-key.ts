import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { SettingsStore } from '../../core/settings.js';

const SETTING = 'webhook.access_key';

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
 * one is generated and stored, and the caller shows it once.
 */
export function resolveAccessKey(settings: SettingsStore, fromEnvironment: string | undefined): ResolvedAccessKey {
  if (fromEnvironment) return { key: fromEnvironment, source: 'environment' };
  const stored = settings.get(SETTING);
  if (stored) return { key: stored, source: 'stored' };
  const { value, inserted } = settings.setIfAbsent(SETTING, generateAccessKey());
  return { key: value, source: inserted ? 'generated' : 'stored' };
}

/** The current webhook access key, kept in memory for the hot path and replaced at once on rotation. */
export class AccessKeyring {
  private key: string;
  readonly source: ResolvedAccessKey['source'];

  constructor(private readonly settings: SettingsStore, fromEnvironment: string | undefined) {
    const resolved = resolveAccessKey(settings, fromEnvironment);
    this.key = resolved.key;
    this.source = resolved.source;
  }

  current(): string {
    return this.key;
  }

  matches(given: unknown): boolean {
    return accessKeyMatches(this.key, given);
  }
}

/**
 * Constant-time comparison. Both sides are hashed first so the comparison time does not even reveal the
 * key's length.
 */
export function accessKeyMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string' || given.length === 0) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}
