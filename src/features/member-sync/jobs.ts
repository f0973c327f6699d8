import { z } from 'zod';
import { jobType } from '../../core/jobs/queue.js';

/**
 * Writes a generated password to the member's Keap password field. Queued in the member's own transaction; a
 * retry sends the same stored value. Runs in turn with the contact's other jobs.
 */
export const passwordWriteBack = jobType({
  type: 'keap_password_writeback',
  params: z.object({
    member_id: z.number().int().positive(),
    contact_id: z.number().int().positive().optional(),
    /** The job whose work queued this one. */
    caused_by_event: z.number().int().positive().optional(),
  }),
  contactId: (p) => p.contact_id,
  eventType: () => 'member.keap_password_writeback',
});
