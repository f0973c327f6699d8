import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { SettingsStore } from '../../core/settings.js';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { MemberService } from './service.js';
import type { Member, Role } from './types.js';
import { isUniqueViolation } from '../../core/db.js';

/** What setting up an administrator needs (the members feature's context has it; so does the command line). */
export interface AdminSetupContext {
  members: MemberService;
  settings: SettingsStore;
  clock: Clock;
  logger: Logger;
}

/** Set once an administrator exists: from then on the first-run form is gone, even if every admin is deleted later. */
export const SETUP_DONE_SETTING = 'admin.setup_done';
/** The SHA-256 of the current setup code (the code itself is printed once and never stored). */
export const SETUP_CODE_SETTING = 'admin.setup_code_sha256';
export const ADMIN_PASSWORD_MIN = 10;
export const ADMIN_PASSWORD_MAX = 200;

export interface AdminCredentials {
  email: string;
  password: string;
}

/** Per form field, what is wrong with it. */
export type CredentialErrors = Partial<Record<'email' | 'password' | 'confirm' | 'code', string>>;

const emailSchema = z.email().max(254);

/** Checks an administrator's email and password (and the repeated password, when the form asks for it). */
export function validateAdminCredentials(input: { email: string; password: string; confirm?: string }): CredentialErrors {
  const errors: CredentialErrors = {};
  if (!input.email) errors.email = 'Enter an email address.';
  else if (!emailSchema.safeParse(input.email).success) errors.email = 'Enter a valid email address, like you@example.com.';
  if (input.password.length < ADMIN_PASSWORD_MIN) errors.password = `Use at least ${ADMIN_PASSWORD_MIN} characters.`;
  else if (input.password.length > ADMIN_PASSWORD_MAX) errors.password = `Use at most ${ADMIN_PASSWORD_MAX} characters.`;
  else if (input.confirm !== undefined && input.confirm !== input.password) errors.confirm = 'The two passwords are not the same.';
  return errors;
}

/**
 * Whether /admin is still in its first run: no setup recorded and no administrator. An administrator made another
 * way (ADMIN_EMAIL, the CLI) ends the first run too, and is recorded so that it stays ended.
 */
export function setupNeeded(ctx: AdminSetupContext): boolean {
  if (ctx.settings.get(SETUP_DONE_SETTING) !== undefined) return false;
  if (ctx.members.countAdministrators() === 0) return true;
  markSetupDone(ctx, 'an administrator already existed');
  return false;
}

function markSetupDone(ctx: AdminSetupContext, how: string): boolean {
  return ctx.settings.setIfAbsent(SETUP_DONE_SETTING, JSON.stringify({ at: new Date(ctx.clock.now()).toISOString(), how })).inserted;
}

/**
 * A fresh setup code, while the first run lasts: only its hash is stored, replacing any earlier one, so the link
 * printed by the latest start is the only one that works. Undefined once an administrator exists.
 */
export function issueSetupCode(ctx: AdminSetupContext): string | undefined {
  if (!setupNeeded(ctx)) return undefined;
  const code = randomBytes(32).toString('base64url');
  ctx.settings.set(SETUP_CODE_SETTING, hashSetupCode(code));
  return code;
}

/** Whether `given` is the current setup code. Both sides are hashed, so the comparison is constant-time and length-blind. */
export function setupCodeMatches(ctx: AdminSetupContext, given: string): boolean {
  const stored = ctx.settings.get(SETUP_CODE_SETTING);
  if (!stored || !given) return false;
  return timingSafeEqual(Buffer.from(stored, 'hex'), Buffer.from(hashSetupCode(given), 'hex'));
}

function hashSetupCode(code: string): string {
  return createHash('sha256').update(`setup-code:${code}`).digest('hex');
}

/** The link that opens the setup form with its code filled in. */
export function setupLink(baseUrl: string, code: string): string {
  return `${baseUrl}/admin/setup?code=${encodeURIComponent(code)}`;
}

/**
 * On a start before any administrator exists, prints the one-time setup link for the operator (the terminal, never
 * the log), as the generated access key is. Called once the server listens, so the link works when it is seen.
 */
export function announceSetupLink(ctx: AdminSetupContext & { announce(line: string): void }, baseUrl: string): boolean {
  const code = issueSetupCode(ctx);
  if (code === undefined) return false;
  ctx.announce(
    `memberhook has no administrator yet. Open this link to create one (it is shown this once; it works until an administrator exists, and each start prints a new one):\n\n    ${setupLink(baseUrl, code)}\n\nOr create the administrator from a shell: npm run cli -- create-admin --email you@example.com\n`,
  );
  ctx.logger.info('first run: a setup link was printed on the console');
  return true;
}

/** The role new administrators get: the first with admin rights. */
export function adminRole(ctx: AdminSetupContext): Role {
  const role = ctx.members.roles().find((r) => r.isAdmin);
  if (!role) throw new Error('no role with admin rights exists');
  return role;
}

export type FirstAdminResult =
  | { ok: true; member: Member }
  | { ok: false; reason: 'setup_done' }
  | { ok: false; reason: 'taken'; errors: CredentialErrors };

class SetupAlreadyDone extends Error {}

/**
 * Creates the first administrator from the setup form. The setup flag is claimed inside the transaction that
 * inserts the member, so of two setup posts racing each other exactly one commits; the other rolls back whole.
 */
export async function createFirstAdmin(ctx: AdminSetupContext, credentials: AdminCredentials): Promise<FirstAdminResult> {
  if (!setupNeeded(ctx)) return { ok: false, reason: 'setup_done' };
  // A member who already has this email (or username) stays untouched: the open setup form must not become a way
  // to take over an existing account.
  if (ctx.members.findByEmail(credentials.email) || ctx.members.usernameTaken(credentials.email)) {
    return { ok: false, reason: 'taken', errors: { email: 'A member already has this email. Choose another, or give that member admin rights with create-admin.' } };
  }
  try {
    const member = await ctx.members.createAdministrator(
      credentials,
      (created) => {
        // Inside the insert's transaction: another administrator (a racing post, the CLI) means this one loses.
        if (ctx.members.countAdministrators() > 1 || !markSetupDone(ctx, `setup form, member ${created.id}`)) throw new SetupAlreadyDone();
      },
    );
    ctx.logger.info({ memberId: member.id }, 'first administrator created from the setup form');
    return { ok: true, member };
  } catch (err) {
    if (err instanceof SetupAlreadyDone) return { ok: false, reason: 'setup_done' };
    if (isUniqueViolation(err)) return { ok: false, reason: 'taken', errors: { email: 'A member already has this email. Choose another.' } };
    throw err;
  }
}

export type AdminAccountResult = { member: Member; outcome: 'created' | 'promoted' | 'password_set' };

/**
 * `create-admin`: makes sure an administrator with this email exists and has this password. A new member is
 * created (username = email); an existing member is given admin rights if it lacks them and gets the new password
 * (the operator at the shell is the one who decides). Throws an Error with a one-line message on bad input.
 */
export async function createOrPromoteAdmin(ctx: AdminSetupContext, credentials: AdminCredentials): Promise<AdminAccountResult> {
  const errors = validateAdminCredentials(credentials);
  const problem = errors.email ?? errors.password;
  if (problem) throw new AdminInputError(`invalid --${errors.email ? 'email' : 'password'}: ${problem}`);
  const role = adminRole(ctx);
  const existing = ctx.members.findByEmail(credentials.email);
  let result: AdminAccountResult;
  if (!existing) {
    if (ctx.members.usernameTaken(credentials.email)) {
      throw new AdminInputError(`invalid --email: another member has "${credentials.email}" as its username`);
    }
    const member = await ctx.members.createAdministrator(credentials);
    result = { member, outcome: 'created' };
  } else {
    const promoted = !existing.roleIsAdmin;
    // The password first: a member's old one (a Keap member's is readable in Keap) never holds admin rights.
    await ctx.members.changePassword(existing.id, credentials.password, 'command_line');
    if (promoted) await ctx.members.update(existing.id, { profile: {}, role: role.slug });
    result = { member: ctx.members.get(existing.id), outcome: promoted ? 'promoted' : 'password_set' };
  }
  markSetupDone(ctx, `create-admin, member ${result.member.id}`);
  ctx.logger.info({ memberId: result.member.id, outcome: result.outcome }, 'administrator set from the command line');
  return result;
}

/** Bad input to create-admin: its message is one line for the operator. */
export class AdminInputError extends Error {}
