import type { AppContext } from '../../context.js';
import type { Member } from './store.js';

/** Queues a password-reset email with a single-use link for the member (used by /password/forgot and the admin). */
export async function requestPasswordReset(_ctx: AppContext, _member: Member): Promise<void> {
  throw new Error('password reset is being built');
}
