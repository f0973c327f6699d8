import bcrypt from 'bcrypt';
import { randomInt } from 'node:crypto';

/** bcrypt cost: about 50 ms a hash on a small server; the async API keeps it off the event loop. */
export const BCRYPT_COST = 10;

export function hashPassword(password: string): Promise<string> {
  return bcrypt.hash(password, BCRYPT_COST);
}

export function verifyPassword(password: string, hash: string | null): Promise<boolean> {
  // Compare against a real hash even when there is none, so a missing account takes as long as a wrong password.
  return bcrypt.compare(password, hash ?? DUMMY_HASH).then((ok) => ok && hash !== null);
}

const DUMMY_HASH = bcrypt.hashSync('no such account', BCRYPT_COST);

// No look-alikes (0/O, 1/l/I): members type these from an email.
const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** 20 characters from a 56-character alphabet by crypto.randomInt: about 116 bits. */
export function generatePassword(length = 20): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}
