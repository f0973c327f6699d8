import { z } from 'zod';
import { jobType } from '../../core/jobs/queue.js';

/**
 * Writes a member's password to the member's Keap password field: a generated one, or a changed one. Queued in the
 * transaction that gives the member the password; a retry sends the same stored value. A newer password queued while
 * one waits folds into the waiting job, which sends the newest. Runs in turn with the contact's other jobs.
 */
export const passwordWriteBack = jobType({
  type: 'keap_password_writeback',
  params: z.object({
    member_id: z.number().int().positive(),
    contact_id: z.number().int().positive().optional(),
    /** The job whose work queued this one. */
    caused_by_event: z.number().int().positive().optional(),
  }),
  dedupeKey: (p) => String(p.member_id),
  contactId: (p) => p.contact_id,
  eventType: () => 'member.keap_password_writeback',
});
