import type { AppContext } from '../../context.js';
import type { Clock } from '../../core/clock.js';
import type { Db } from '../../core/db.js';
import type { ViewRenderer } from '../../core/views.js';
import type { JobHandler } from '../queue/worker.js';
import { PasswordResetStore } from './password-reset-store.js';
import { hashPassword } from './passwords.js';
import { memberSessions } from './sessions.js';
import type { Member } from './store.js';
import type { RenderedEmail } from './welcome-email.js';
import type { MemberMailDeps } from './welcome-sender.js';

declare module '../../core/hooks.js' {
  interface ActionMap {
    /** After the new password is committed and the member's sessions are ended. */
    'member.password_changed': [member: Member, how: 'account' | 'reset'];
  }
  interface FilterMap {
    /** The password reset email just before it is sent (it holds the single-use link: never log it). */
    'password_reset_email.message': [message: RenderedEmail, member: Member];
  }
}

export const PASSWORD_RESET_ACTION = 'password_reset_email';
/** How long an emailed link works. */
export const RESET_TOKEN_TTL_MS = 60 * 60 * 1000;

const resetStores = new WeakMap<Db, PasswordResetStore>();

/** The reset token store of a database (one per connection, so every caller shares its prepared statements). */
export function passwordResets(db: Db): PasswordResetStore {
  let store = resetStores.get(db);
  if (!store) {
    store = new PasswordResetStore(db);
    resetStores.set(db, store);
  }
  return store;
}

/**
 * Queues a password-reset email with a single-use link for the member (used by /password/forgot and the admin).
 * The job's params carry only the member's id: they are shown in the admin's event log, so the token is made
 * by the job itself. A second request while one is still waiting is folded into it.
 */
export async function requestPasswordReset(ctx: AppContext, member: Member): Promise<void> {
  ctx.events.enqueue({
    source: 'member',
    action: PASSWORD_RESET_ACTION,
    // No contact id: a member's Keap jobs run one at a time, and one stuck retrying must not hold up this email.
    contactId: null,
    params: { member_id: member.id },
    eventType: `member.${PASSWORD_RESET_ACTION}`,
    dedupeKey: `${PASSWORD_RESET_ACTION}:${member.id}`,
  });
  ctx.worker.notify();
}

export interface PasswordResetEmailDeps extends MemberMailDeps {
  db: Db;
  clock: Clock;
}

/**
 * The `password_reset_email` job: makes a token, stores its hash and emails the link. Each run makes a fresh token
 * (a retried run cannot know what an earlier one sent); a token whose email failed is taken back at once.
 */
export function passwordResetEmailJob(deps: PasswordResetEmailDeps): JobHandler {
  const store = passwordResets(deps.db);
  return async (job) => {
    const memberId = Number(job.params.member_id);
    const member = deps.members.findById(memberId);
    if (!member) return { status: 'skipped', result: `member ${memberId} no longer exists` };
    const now = deps.clock.now();
    store.purgeExpired(now);
    const token = store.create(member.id, now, now + RESET_TOKEN_TTL_MS);
    try {
      const rendered = renderPasswordResetEmail(deps.views, {
        siteName: deps.siteName,
        firstName: member.firstName,
        username: member.username,
        email: member.email,
        resetUrl: `${deps.publicUrl}/password/reset?token=${token}`,
        forgotUrl: `${deps.publicUrl}/password/forgot`,
        expiresInMinutes: Math.round(RESET_TOKEN_TTL_MS / 60_000),
      });
      const message = await deps.hooks.applyFilters('password_reset_email.message', rendered, member);
      const sent = await deps.mailer.send({ to: member.email, ...message, messageId: `<password-reset-${job.id}.${job.attempts}@memberhook>` });
      return { status: 'done', result: `password reset email sent to ${member.email} (${sent.destination === 'smtp' ? 'SMTP' : 'outbox file'})` };
    } catch (err) {
      store.delete(token);
      throw err;
    }
  };
}

export interface PasswordResetEmailData {
  siteName: string;
  firstName: string;
  username: string;
  email: string;
  resetUrl: string;
  forgotUrl: string;
  expiresInMinutes: number;
}

/** `views/emails/password-reset.{html,text}.hbs`: the HTML part escapes every value, the text part shows them as they are. */
export function renderPasswordResetEmail(views: ViewRenderer, data: PasswordResetEmailData): RenderedEmail {
  const context = { ...data, layout: false as const };
  return {
    subject: `Reset your ${data.siteName} password`.replace(/\s+/g, ' ').trim(),
    text: `${views.render('emails/password-reset.text', context, { noEscape: true }).replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trim()}\n`,
    html: views.render('emails/password-reset.html', context),
  };
}

/** Whether a reset link would work now, without using it (the GET page shows the form only if so). */
export function resetTokenIsLive(ctx: AppContext, token: string): boolean {
  return passwordResets(ctx.db).memberIdFor(token, ctx.clock.now()) !== undefined;
}

/**
 * Sets a new password from a reset link. In one transaction the token is marked used (only if it is still
 * unused and unexpired: of two racing posts exactly one gets it), the password is set, the member's other links
 * are dropped and every session is ended. Returns the member, or undefined when the link no longer works.
 */
export async function resetPasswordWithToken(ctx: AppContext, token: string, newPassword: string): Promise<Member | undefined> {
  const store = passwordResets(ctx.db);
  // A dead link costs no bcrypt: checked first, then checked again for real inside the transaction.
  if (store.memberIdFor(token, ctx.clock.now()) === undefined) return undefined;
  const passwordHash = await hashPassword(newPassword);
  const memberId = ctx.db
    .transaction((): number | undefined => {
      const id = store.consume(token, ctx.clock.now());
      if (id === undefined) return undefined;
      ctx.members.store.update(id, { passwordHash });
      store.deleteOutstandingFor(id);
      memberSessions(ctx).destroyAllFor(id);
      return id;
    })
    .immediate();
  if (memberId === undefined) return undefined;
  const member = ctx.members.findById(memberId);
  if (member) await ctx.hooks.doAction('member.password_changed', member, 'reset');
  return member;
}

/**
 * Sets a new password a logged-in member chose: together with the new hash, every session of theirs ends (the
 * caller starts a fresh one for the browser that asked) and any reset links they had stop working.
 */
export async function changePassword(ctx: AppContext, member: Member, newPassword: string): Promise<void> {
  const passwordHash = await hashPassword(newPassword);
  ctx.db
    .transaction(() => {
      ctx.members.store.update(member.id, { passwordHash });
      passwordResets(ctx.db).deleteOutstandingFor(member.id);
      memberSessions(ctx).destroyAllFor(member.id);
    })
    .immediate();
  await ctx.hooks.doAction('member.password_changed', member, 'account');
}
