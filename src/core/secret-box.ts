import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { StartupError } from './errors.js';

/**
 * Sealed values start with this: the format's version, so a later key rotation (a v2 naming its key) can tell old
 * values from new ones and re-seal them. Nothing else stored starts with it (Keap keys, OAuth tokens and generated
 * passwords never do), which is how a plaintext value from before encryption is recognised.
 */
export const SEALED_PREFIX = 'enc:v1:';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** A value sealed with another key, or changed: what the operator must fix, never the value itself. */
export class SecretUnreadableError extends StartupError {
  constructor(what: string, keySource: string) {
    super(
      `${what} cannot be decrypted with the site key from ${keySource}: it was encrypted with another key (or changed). ` +
        'Restore the site key that was backed up with this database (see "Site key and backups" in the README).',
    );
    this.name = 'SecretUnreadableError';
  }
}

/**
 * Authenticated encryption of short strings (AES-256-GCM) with the site key, kept outside the database: a copy of
 * the database alone reveals no secret. Each value gets a random nonce; `context` (e.g. `settings:keap.api_key`) is
 * bound in as associated data, so a sealed value moved to another column or row does not open there.
 */
export class SecretBox {
  private readonly key: Buffer;

  /** `keySource` names where the key came from (a file, `SITE_KEY`) for error messages; never the key. */
  constructor(key: Buffer, readonly keySource: string) {
    if (key.length !== KEY_BYTES) throw new Error(`a site key is ${KEY_BYTES} bytes, not ${key.length}`);
    this.key = Buffer.from(key);
  }

  static isSealed(value: string): boolean {
    return value.startsWith(SEALED_PREFIX);
  }

  seal(plaintext: string, context = ''): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return SEALED_PREFIX + Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
  }

  /**
   * The plaintext of a sealed value. Throws SecretUnreadableError, naming `what` (or the context) and the key's
   * source, when the value was sealed with another key, for another context, or changed.
   */
  open(sealed: string, context = '', what = context || 'a stored secret'): string {
    if (!SecretBox.isSealed(sealed)) throw new SecretUnreadableError(what, this.keySource);
    const raw = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64url');
    if (raw.length < NONCE_BYTES + TAG_BYTES) throw new SecretUnreadableError(what, this.keySource);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretUnreadableError(what, this.keySource);
    }
  }

  /** A value as stored before encryption came in is sealed; a sealed one is left as it is (so a migration can run twice). */
  sealIfPlain(value: string, context = ''): string {
    return SecretBox.isSealed(value) ? value : this.seal(value, context);
  }

  /** A new random key, as the key file holds it (base64url, 43 characters). */
  static generateKey(): string {
    return randomBytes(KEY_BYTES).toString('base64url');
  }

  /** The key's bytes from its text (base64 or base64url of 32 bytes, spaces around it ignored); undefined if not one. */
  static parseKey(text: string): Buffer | undefined {
    const trimmed = text.trim();
    if (!/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(trimmed)) return undefined;
    const key = Buffer.from(trimmed, 'base64');
    return key.length === KEY_BYTES ? key : undefined;
  }
}
