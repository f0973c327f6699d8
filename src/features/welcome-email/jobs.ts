import { z } from 'zod';
import { jobType } from '../../core/jobs/queue.js';

/**
 * The welcome email to a member. Queued in the member's own transaction by whoever creates one (member-sync, the
 * admin's "add a member"), or by an admin's "send the welcome email again"; two requests waiting at once send one
 * email. A Keap-linked member's email waits its turn behind the contact's other jobs.
 */
export const welcomeEmail = jobType({
  type: 'welcome_email',
  params: z.object({
    member_id: z.number().int().positive(),
    contact_id: z.number().int().positive().optional(),
    /** The job whose work queued this one (a Keap post's `add`). */
    caused_by_event: z.number().int().positive().optional(),
    /** The administrator who asked for it. */
    requested_by: z.number().int().positive().optional(),
  }),
  dedupeKey: (p) => String(p.member_id),
  contactId: (p) => p.contact_id,
  eventType: () => 'member.welcome_email',
});
