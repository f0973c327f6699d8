import { z } from 'zod';
import { jobType, type JobType } from '../../core/jobs/queue.js';

/**
 * What a job queued by a Keap HTTP Post gets: the contact, the optional welcome-email and role choices, and the
 * post's other parameters (sanitized, as strings), kept for plugins and the event log.
 */
export const webhookJobParams = z.looseObject({
  contact_id: z.number().int().positive(),
  send_notification: z.boolean().optional(),
  role: z.string().optional(),
  /**
   * Set by Keap events only (never by a post): `add` creates or links a member only if the contact carries this tag
   * when the job reads its tags (the admin's "contact.add creates a member, only with the tag"); else it is skipped.
   * A contact already linked to a member is updated either way.
   */
  only_with_tag: z.number().int().positive().optional(),
});

export type WebhookJobParams = z.infer<typeof webhookJobParams>;

/**
 * The job type behind a `wpf_action`. Keap resends a post until it sees a 200, so identical posts for a contact
 * whose job is still waiting (same action, role and welcome choice) fold into it; a contact's jobs run in order.
 */
export function webhookJobType(action: string, type: string = action): JobType<WebhookJobParams> {
  return jobType({
    type,
    params: webhookJobParams,
    source: 'http_post',
    // A conditional `add` never takes in an unconditional one (nor the other way round): the tag is part of the key.
    dedupeKey: (p) => [p.contact_id, p.role ?? '', String(p.send_notification ?? ''), ...(p.only_with_tag === undefined ? [] : [`tag ${p.only_with_tag}`])].join('|'),
    contactId: (p) => p.contact_id,
    eventType: () => `contact.${action}`,
  });
}
