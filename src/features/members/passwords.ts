import bcrypt from 'bcrypt';
import { createHash, randomInt } from 'node:crypto';

/** bcrypt cost: about 50 ms a hash on a small server; the async API keeps it off the event loop. */
export const BCRYPT_COST = 10;

/**
 * The rules for a password a person chooses (account page, reset link), the same as the administrator's
 * (`ADMIN_PASSWORD_MIN`/`_MAX` in admin/setup.ts). Generated and Keap-supplied passwords are not held to them.
 */
export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 200;

/** bcrypt reads at most this many bytes of its input and silently ignores the rest. */
export const BCRYPT_MAX_BYTES = 72;

/**
 * Marks a hash of a password longer than bcrypt reads: the stored value is this marker followed by an ordinary
 * bcrypt hash of the password's SHA-256 (base64, 44 bytes). Without it, two 200-character passwords sharing their
 * first 72 bytes would both open the account. Passwords of 72 bytes or fewer are hashed as they are, so hashes
 * made before the marker existed keep working.
 */
const PREHASH_MARKER = '$mh-sha256';

export function hashPassword(password: string): Promise<string> {
  if (Buffer.byteLength(password, 'utf8') <= BCRYPT_MAX_BYTES) return bcrypt.hash(password, BCRYPT_COST);
  return bcrypt.hash(prehash(password), BCRYPT_COST).then((hash) => `${PREHASH_MARKER}${hash}`);
}

export function verifyPassword(password: string, hash: string | null): Promise<boolean> {
  // Compare against a real hash even when there is none, so a missing account takes as long as a wrong password.
  if (hash?.startsWith(PREHASH_MARKER)) return bcrypt.compare(prehash(password), hash.slice(PREHASH_MARKER.length));
  return bcrypt.compare(password, hash ?? DUMMY_HASH).then((ok) => ok && hash !== null);
}

function prehash(password: string): string {
  return createHash('sha256').update(password, 'utf8').digest('base64');
}

const DUMMY_HASH = bcrypt.hashSync('no such account', BCRYPT_COST);

/** Per form field, what is wrong with a newly chosen password and its confirmation. */
export type NewPasswordErrors = Partial<Record<'password' | 'confirm', string>>;

/** Checks a password a member chose, and that the confirmation repeats it; no errors means it is fine. */
export function newPasswordErrors(password: string, confirm: string): NewPasswordErrors {
  if (!password) return { password: 'Enter a new password.' };
  if (password.length < PASSWORD_MIN_LENGTH) return { password: `Use at least ${PASSWORD_MIN_LENGTH} characters.` };
  if (password.length > PASSWORD_MAX_LENGTH) return { password: `Use at most ${PASSWORD_MAX_LENGTH} characters.` };
  if (confirm !== password) return { confirm: 'The two passwords are not the same.' };
  return {};
}

// No look-alikes (0/O, 1/l/I): members type these from an email.
const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** 20 characters from a 56-character alphabet by crypto.randomInt: about 116 bits. */
export function generatePassword(length = 20): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}
