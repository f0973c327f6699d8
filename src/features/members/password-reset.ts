import { z } from 'zod';
import { defaultEmailTemplate, renderEmailTemplate, type EmailTemplateOverrides, type EmailTemplateSpec } from '../../core/email-templates.js';
import { jobType, type JobOutcome } from '../../core/jobs/queue.js';
import type { RenderedEmail } from '../../core/mail.js';
import type { ViewRenderer } from '../../core/views.js';
import type { MembersContext } from './context.js';
import { hashPassword } from './passwords.js';
import type { Member } from './types.js';

declare module '../../core/hooks.js' {
  interface FilterMap {
    /**
     * The password reset email just before it is sent (it holds the single-use link: never log it).
     * @fires in the password_reset_email job, before sending
     */
    'password_reset_email.message': [message: RenderedEmail, member: Member];
  }
}

/** How long an emailed link works. */
export const RESET_TOKEN_TTL_MS = 60 * 60 * 1000;

/**
 * The password reset email. Its params carry only the member's id: they are shown in the admin's event log, so the
 * token is made by the job itself. A second request while one is still waiting is folded into it. No contact id:
 * a member's Keap jobs run one at a time, and one stuck retrying must not hold up this email.
 */
export const passwordResetEmail = jobType({
  type: 'password_reset_email',
  params: z.object({ member_id: z.number().int().positive() }),
  source: 'member',
  dedupeKey: (p) => String(p.member_id),
  eventType: () => 'member.password_reset_email',
});

/** Queues a password-reset email with a single-use link for the member (used by /password/forgot and the admin). */
export function requestPasswordReset(ctx: MembersContext, member: Member): void {
  ctx.jobs.enqueue(passwordResetEmail, { member_id: member.id });
}

/**
 * The `password_reset_email` job: makes a token, stores its hash and emails the link. Each run makes a fresh token
 * (a retried run cannot know what an earlier one sent); a token whose email failed is taken back at once.
 */
export async function sendPasswordResetEmail(ctx: MembersContext, job: { id: number; attempt: number; params: { member_id: number } }): Promise<JobOutcome> {
  const memberId = job.params.member_id;
  const member = ctx.members.findById(memberId);
  if (!member) return { status: 'skipped', result: `member ${memberId} no longer exists` };
  const now = ctx.clock.now();
  ctx.resets.purgeExpired(now);
  const token = ctx.resets.create(member.id, now, now + RESET_TOKEN_TTL_MS);
  const publicUrl = ctx.config.publicUrl;
  try {
    const rendered = renderPasswordResetEmail(ctx.views, {
      siteName: ctx.identity.siteName(),
      firstName: member.firstName,
      username: member.username,
      email: member.email,
      resetUrl: `${publicUrl}/password/reset?token=${token}`,
      forgotUrl: `${publicUrl}/password/forgot`,
      expiresInMinutes: Math.round(RESET_TOKEN_TTL_MS / 60_000),
    }, ctx.site.passwordResetTemplate());
    const message = await ctx.hooks.applyFilters('password_reset_email.message', rendered, member);
    const sent = await ctx.mailer.send({ to: member.email, ...message, messageId: `<password-reset-${job.id}.${job.attempt}@memberhook>` });
    return { status: 'done', result: `password reset email sent to ${member.email} (${sent.destination === 'smtp' ? 'SMTP' : 'outbox file'})` };
  } catch (err) {
    ctx.resets.delete(token);
    throw err;
  }
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

export const DEFAULT_PASSWORD_RESET_SUBJECT = 'Reset your {{siteName}} password';

const PASSWORD_RESET_TEMPLATE: EmailTemplateSpec = { label: 'password reset email', subject: DEFAULT_PASSWORD_RESET_SUBJECT, view: 'emails/password-reset' };

/** What a password reset template can use, for the admin who edits one. */
export const PASSWORD_RESET_EMAIL_VARIABLES: ReadonlyArray<{ name: string; description: string }> = [
  { name: 'siteName', description: 'the site’s name' },
  { name: 'firstName', description: 'the member’s first name (may be empty)' },
  { name: 'username', description: 'the member’s username' },
  { name: 'email', description: 'the member’s email address' },
  { name: 'resetUrl', description: 'the single-use link that sets a new password (the email must show it)' },
  { name: 'forgotUrl', description: 'where to ask for a new link once this one expired' },
  { name: 'expiresInMinutes', description: 'how many minutes the link works' },
];

/** The built-in templates' sources (what "Reset to default" goes back to, and what the editor starts from). */
export function defaultPasswordResetTemplate(): Required<EmailTemplateOverrides> {
  return defaultEmailTemplate(PASSWORD_RESET_TEMPLATE);
}

/** Made-up data for previews and test emails: the link in it works nowhere. */
export function samplePasswordResetData(siteName: string, publicUrl: string): PasswordResetEmailData {
  return {
    siteName,
    firstName: 'Ada',
    username: 'ada',
    email: 'ada@example.com',
    resetUrl: `${publicUrl}/password/reset?token=sample-link-that-does-not-work`,
    forgotUrl: `${publicUrl}/password/forgot`,
    expiresInMinutes: Math.round(RESET_TOKEN_TTL_MS / 60_000),
  };
}

/**
 * `views/emails/password-reset.{html,text}.hbs` or an admin's override (rendered in the email template sandbox):
 * the HTML part escapes every value, the text part shows them as they are.
 */
export function renderPasswordResetEmail(views: ViewRenderer, data: PasswordResetEmailData, overrides: EmailTemplateOverrides = {}): RenderedEmail {
  return renderEmailTemplate(views, PASSWORD_RESET_TEMPLATE, data, overrides);
}

/** Whether a reset link would work now, without using it (the GET page shows the form only if so). */
export function resetTokenIsLive(ctx: MembersContext, token: string): boolean {
  return ctx.resets.memberIdFor(token, ctx.clock.now()) !== undefined;
}

/**
 * Sets a new password from a reset link. In one transaction the token is marked used (only if it is still
 * unused and unexpired: of two racing posts exactly one gets it), the password is set, the member's other links
 * are dropped and every session is ended. Returns the member, or undefined when the link no longer works.
 */
export async function resetPasswordWithToken(ctx: MembersContext, token: string, newPassword: string): Promise<Member | undefined> {
  // A dead link costs no bcrypt: checked first, then checked again for real inside the transaction.
  if (ctx.resets.memberIdFor(token, ctx.clock.now()) === undefined) return undefined;
  const passwordHash = await hashPassword(newPassword);
  return ctx.transactions.run((tx): Member | undefined => {
    const id = ctx.resets.consume(token, ctx.clock.now());
    if (id === undefined) return undefined;
    return ctx.members.applyNewPassword(id, { password: newPassword, passwordHash }, 'reset', tx);
  });
}

/**
 * Sets a new password a logged-in member chose: together with the new hash, every session of theirs ends (the
 * caller starts a fresh one for the browser that asked) and any reset links they had stop working.
 */
export async function changePassword(ctx: MembersContext, member: Member, newPassword: string): Promise<void> {
  await ctx.members.changePassword(member.id, newPassword, 'account');
}
