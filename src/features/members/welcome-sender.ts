import type { HookRegistry } from '../../core/hooks.js';
import type { Mailer } from '../../core/mail.js';
import type { ViewRenderer } from '../../core/views.js';
import type { EventRecord } from '../queue/store.js';
import type { JobOutcome } from '../queue/worker.js';
import type { MemberService } from './service.js';
import type { Member } from './store.js';
import { renderWelcomeEmail, type RenderedEmail, type WelcomeEmailOverrides } from './welcome-email.js';

declare module '../../core/hooks.js' {
  interface FilterMap {
    /** The welcome email just before it is sent. */
    'welcome_email.message': [message: RenderedEmail, member: Member];
  }
}

/** What a job that emails a member needs: the member, the mailer, the templates, the hooks and the site's address. */
export interface MemberMailDeps {
  members: MemberService;
  mailer: Mailer;
  views: ViewRenderer;
  hooks: HookRegistry;
  siteName: string;
  publicUrl: string;
}

export interface WelcomeSenderDeps extends MemberMailDeps {
  /** The admin's edited templates, read on every send. */
  template: () => WelcomeEmailOverrides;
}

/**
 * The `welcome_email` job: runs after the member's transaction, so a mail server that is down delays the
 * email (the worker retries it) and never the member.
 */
export class WelcomeSender {
  constructor(private readonly deps: WelcomeSenderDeps) {}

  async run(job: EventRecord): Promise<JobOutcome> {
    const memberId = Number(job.params.member_id);
    const member = this.deps.members.findById(memberId);
    if (!member) return { status: 'skipped', result: `member ${memberId} no longer exists` };
    const password = this.deps.members.store.pendingPassword(memberId);
    const rendered = renderWelcomeEmail(this.deps.views, {
      siteName: this.deps.siteName,
      username: member.username,
      email: member.email,
      firstName: member.firstName,
      ...(password === undefined ? {} : { password }),
      loginUrl: `${this.deps.publicUrl}/login`,
    }, this.deps.template());
    const message = await this.deps.hooks.applyFilters('welcome_email.message', rendered, member);
    // The job id makes the Message-ID: a resend after a crash is recognisable as the same message.
    const sent = await this.deps.mailer.send({ to: member.email, ...message, messageId: `<welcome-${job.id}@memberhook>` });
    // Released in the transaction that records the job done: a crash before that commit re-runs the job, and the
    // re-run must send the same email (same Message-ID, same password), not one without the password.
    const onCommit = password === undefined ? undefined : () => this.deps.members.store.releasePendingPassword(memberId, 'email');
    return { status: 'done', result: `welcome email sent to ${member.email} (${sent.destination === 'smtp' ? 'SMTP' : 'outbox file'})`, ...(onCommit ? { onCommit } : {}) };
  }
}
