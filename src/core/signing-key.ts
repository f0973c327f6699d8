import { createHmac, randomBytes } from 'node:crypto';
import type { SecretBox } from './secret-box.js';
import { SealedSettings, type SettingsStore } from './settings.js';

/** The stored name predates the device cookies: it was the CSRF secret alone, and keeping it keeps it. */
const SECRET_SETTING = 'csrf.secret';

/** What a key signs (or fingerprints); each gets its own, so a value signed for one use is never valid for another. */
export type SigningPurpose = 'csrf' | 'login-device' | 'keap-password';

/**
 * The one place the server-side secret behind request signing (CSRF tokens, login device cookies) is read: 32
 * random bytes, made on first use and kept in the settings table sealed with the site key (one stored in plaintext
 * by an older version is sealed here). Each purpose gets a key derived from it.
 */
export function signingKey(ctx: { settings: SettingsStore; secretBox: SecretBox }, purpose: SigningPurpose): Buffer {
  const sealed = new SealedSettings(ctx.settings, ctx.secretBox);
  sealed.sealStored(SECRET_SETTING);
  const secret = Buffer.from(sealed.setIfAbsent(SECRET_SETTING, randomBytes(32).toString('base64url')).value, 'base64url');
  return createHmac('sha256', secret).update(`memberhook ${purpose} key`).digest();
}
