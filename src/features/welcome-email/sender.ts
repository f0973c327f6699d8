import type { Job, JobOutcome, ParamsOf } from '../../core/jobs/queue.js';
import type { Kernel } from '../../core/kernel.js';
import type { RenderedEmail } from '../../core/mail.js';
import type { MemberService } from '../members/service.js';
import type { Member } from '../members/types.js';
import type { welcomeEmail } from './jobs.js';
import { renderWelcomeEmail, type WelcomeEmailOverrides } from './template.js';

declare module '../../core/hooks.js' {
  interface FilterMap {
    /**
     * The welcome email just before it is sent (it may hold the member's generated password: never log it).
     * @fires in the welcome_email job, before sending
     */
    'welcome_email.message': [message: RenderedEmail, member: Member];
  }
}

export interface WelcomeSenderDeps {
  kernel: Kernel;
  members: MemberService;
  /** The admin's edited templates, read on every send. */
  template: () => WelcomeEmailOverrides;
}

type WelcomeParams = ParamsOf<typeof welcomeEmail>;

/**
 * The `welcome_email` job: runs after the member's transaction, so a mail server that is down delays the
 * email (the worker retries it) and never the member.
 */
export class WelcomeSender {
  constructor(private readonly deps: WelcomeSenderDeps) {}

  async run(job: Job<WelcomeParams>): Promise<JobOutcome> {
    const { kernel, members } = this.deps;
    const memberId = job.params.member_id;
    const member = members.findById(memberId);
    if (!member) return { status: 'skipped', result: `member ${memberId} no longer exists` };
    const password = members.pendingPassword(memberId, 'email');
    const rendered = renderWelcomeEmail(kernel.views, {
      siteName: kernel.identity.siteName(),
      username: member.username,
      email: member.email,
      firstName: member.firstName,
      ...(password === undefined ? {} : { password }),
      loginUrl: `${kernel.config.publicUrl}/login`,
    }, this.deps.template());
    const message = await kernel.hooks.applyFilters('welcome_email.message', rendered, member);
    // The job id makes the Message-ID: a resend after a crash is recognisable as the same message.
    const sent = await kernel.mailer.send({ to: member.email, ...message, messageId: `<welcome-${job.id}@memberhook>` });
    // Released in the transaction that records the job done: a crash before that commit re-runs the job, and the
    // re-run must send the same email (same Message-ID, same password), not one without the password.
    const onCommit = password === undefined ? undefined : () => members.releasePendingPassword(memberId, 'email');
    return { status: 'done', result: `welcome email sent to ${member.email} (${sent.destination === 'smtp' ? 'SMTP' : 'outbox file'})`, ...(onCommit ? { onCommit } : {}) };
  }
}
