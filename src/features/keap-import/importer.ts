import { z } from 'zod';
import type { Clock } from '../../core/clock.js';
import { PermanentJobError } from '../../core/jobs/failures.js';
import type { Job, JobOutcome, JobQueue } from '../../core/jobs/queue.js';
import { jobType } from '../../core/jobs/queue.js';
import type { Logger } from '../../core/logger.js';
import { singleEmailAddress } from '../../core/mail.js';
import type { TransactionScope } from '../../core/outbox.js';
import { idFilterChunks, type KeapClient } from '../keap/client.js';
import { KeapPermanentError, KeapRetryableError } from '../keap/errors.js';
import type { KeapContact } from '../keap/types.js';
import { passwordWriteBack } from '../member-sync/jobs.js';
import { NoFreeUsernameError, type NewMemberDraft } from '../member-sync/service.js';
import { generatePassword } from '../members/passwords.js';
import type { MemberService, NewMemberInput } from '../members/service.js';
import type { Member, MemberTag } from '../members/types.js';
import { welcomeEmail } from '../welcome-email/jobs.js';
import { ReadAhead } from './read-ahead.js';
import type { BatchTally, KeapImport, KeapImportStore } from './store.js';

/** Where an import's events come from, in the event log and on `keap.event` (`source`). */
export const IMPORT_SOURCE = 'import';
/**
 * The event type of an imported contact. Not `contact.add`: nothing happened in Keap, and a plugin that welcomes new
 * Keap contacts must not take a year-old contact for a new one.
 */
export const IMPORT_EVENT_TYPE = 'contact.import';

/** Contacts per batch: Keap's largest page (1,000), so a batch costs one list call (plus the id look-ups of a tag). */
export const IMPORT_PAGE_SIZE = 1_000;
/**
 * Pages read ahead of the batch being written: enough for Keap's calls to run back to back while batches are written
 * (Keap's limits let about five pages' calls go in a second), few enough to keep memory small (5,000 contacts).
 */
const READ_AHEAD_PAGES = 5;

/** Why a contact was not made a member; the summary counts each. */
export const SKIP_REASONS = {
  noEmail: 'no email address',
  invalidEmail: 'not one valid email address',
  duplicateEmail: 'duplicate email in Keap (another contact has it)',
  existingMember: 'email belongs to a member not linked to Keap (skip was chosen)',
  gone: 'no longer in Keap',
  takenMeanwhile: 'became a member meanwhile (another job took the email, username or contact)',
  noUsername: 'no free username (the email and every other choice are taken)',
} as const;

/**
 * One batch of an import: reads a page of contacts from Keap, creates or links their members, and queues the next
 * batch, all committed in one transaction with the import's counts and page token (its checkpoint). A restart
 * carries on with the queued batch; a batch cut off half-way runs again from its start, its members not yet written.
 */
export const keapImportBatch = jobType({
  type: 'keap_import_batch',
  params: z.object({ import_id: z.number().int().positive(), batch: z.number().int().min(0) }),
  source: IMPORT_SOURCE,
  dedupeKey: (p) => String(p.import_id),
  eventType: () => IMPORT_EVENT_TYPE,
});

export interface KeapImporterDeps {
  keap: Pick<KeapClient, 'listTags' | 'listContacts' | 'listContactIdsWithTag' | 'getContactsByIds' | 'getCustomFields'>;
  members: MemberService;
  memberSync: {
    newMemberDraft(contact: KeapContact, reserved?: ReadonlySet<string>): Promise<NewMemberDraft>;
    fieldsFrom(contact: KeapContact): Promise<Record<string, unknown>>;
  };
  jobs: JobQueue;
  store: KeapImportStore;
  clock: Clock;
  logger: Logger;
  /** The Keap password field, when one is configured (a generated password goes there, as an `add` sends it). */
  passwordField(): string | undefined;
}

/** A page read from Keap: its contacts (complete), ids listed but gone since, the next token and what it cost. */
interface PageRead {
  contacts: KeapContact[];
  goneIds: number[];
  nextPageToken: string | null;
  keapCalls: number;
}

/** Thrown inside a batch's transaction when the import was cancelled meanwhile: the batch rolls back whole. */
class ImportStopped extends Error {}

export class KeapImporter {
  /** Each running import's pages read ahead of its batches (see read-ahead.ts). */
  private readonly readers = new Map<number, ReadAhead<PageRead>>();

  constructor(private readonly deps: KeapImporterDeps) {}

  async runBatch(job: Job<{ import_id: number; batch: number }>): Promise<JobOutcome> {
    const { import_id: id, batch } = job.params;
    const current = this.deps.store.get(id);
    if (!current) return { status: 'skipped', result: `import ${id} no longer exists` };
    if (current.status !== 'running') {
      this.forget(id);
      return { status: 'skipped', result: `import ${id} is ${current.status}` };
    }
    // A batch repeated after a crash between its commit and the worker recording it: its work is in already.
    if (current.batches !== batch) return { status: 'skipped', result: `batch ${batch + 1} of import ${id} was committed already` };

    let read: PageRead;
    try {
      // Tag names and categories for every member of the import, read once; and the custom field labels (cached by
      // the client), asked for now so that call does not queue behind the pages read ahead.
      if (current.tags === null) await Promise.all([this.readTags(current), this.deps.keap.getCustomFields()]);
      read = await this.readPage(current);
    } catch (err) {
      if (err instanceof KeapRetryableError) this.deps.store.noteProblem(id, `waiting for Keap: ${err.message}`);
      else if (err instanceof KeapPermanentError) {
        // Retrying will not mend it (the tag was deleted, the key revoked): the import stops, saying why.
        this.deps.store.finish(id, 'failed', this.deps.clock.now(), err.message);
        throw new PermanentJobError(`import ${id} stopped: ${err.message}`);
      }
      throw err;
    }
    const imp = this.deps.store.get(id)!;
    const tally = await this.writeBatch(imp, batch, read);
    if (tally === undefined) {
      this.forget(id);
      return { status: 'done', result: `import ${id} was cancelled; batch ${batch + 1} left unwritten` };
    }
    if (tally.nextPageToken === null) this.forget(id);
    const skipped = tally.skipped.length;
    return {
      status: 'done',
      result: `batch ${batch + 1} of import ${id}: ${tally.done} contacts, ${tally.created} created, ${tally.linked} linked, ${tally.alreadyMembers} already members, ${skipped} skipped; ${tally.keapCalls} Keap calls`,
    };
  }

  /** A batch that failed for good, whatever the reason: the import stops rather than wait for it forever. */
  giveUp(job: Job<{ import_id: number; batch: number }>): void {
    this.deps.store.finish(job.params.import_id, 'failed', this.deps.clock.now(), `batch ${job.params.batch + 1} failed for good: see its entry in the event log`);
  }

  /** Stops reading ahead for an import that ended (finished or cancelled). */
  forget(importId: number): void {
    this.readers.get(importId)?.stop();
    this.readers.delete(importId);
  }

  private async readTags(imp: KeapImport): Promise<MemberTag[]> {
    const tags = await this.deps.keap.listTags();
    this.deps.store.saveTags(imp.id, tags, Math.max(1, Math.ceil(tags.length / IMPORT_PAGE_SIZE)));
    return tags;
  }

  /** The batch's page: read ahead already, or read now (the first batch, after a restart, or when reading ahead failed). */
  private async readPage(imp: KeapImport): Promise<PageRead> {
    const ahead = this.readers.get(imp.id)?.take(imp.pageToken);
    if (ahead) {
      const settled = await ahead;
      if (settled.ok) return settled.value;
    }
    this.forget(imp.id);
    const reader = new ReadAhead<PageRead>((token, listed) => this.fetchPage(imp, token, listed), READ_AHEAD_PAGES);
    this.readers.set(imp.id, reader);
    reader.start(imp.pageToken);
    const settled = await reader.take(imp.pageToken)!;
    if (!settled.ok) throw settled.error;
    return settled.value;
  }

  private async fetchPage(imp: KeapImport, pageToken: string | null, listed: (next: string | null) => void): Promise<PageRead> {
    const page = { pageSize: IMPORT_PAGE_SIZE, pageToken };
    if (imp.tagId === null) {
      const { contacts, nextPageToken } = await this.deps.keap.listContacts(page);
      listed(nextPageToken);
      return { contacts, goneIds: [], nextPageToken, keapCalls: 1 };
    }
    const { contactIds, nextPageToken } = await this.deps.keap.listContactIdsWithTag(imp.tagId, page);
    // The next page can be listed while this one's contacts are looked up.
    listed(nextPageToken);
    const contacts = contactIds.length > 0 ? await this.deps.keap.getContactsByIds(contactIds) : [];
    const found = new Set(contacts.map((c) => c.id));
    return { contacts, goneIds: contactIds.filter((cid) => !found.has(cid)), nextPageToken, keapCalls: 1 + idFilterChunks(contactIds).length };
  }

  /** Decides each contact's fate, then writes the batch; undefined when the import was cancelled meanwhile. */
  private async writeBatch(imp: KeapImport, batch: number, read: PageRead): Promise<BatchTally | undefined> {
    const tally: BatchTally = { nextPageToken: read.nextPageToken, keapCalls: read.keapCalls, done: 0, created: 0, linked: 0, alreadyMembers: 0, skipped: [] };
    const tagsById = new Map((imp.tags ?? []).map((t) => [t.id, t]));
    const tagsOf = (contact: KeapContact): MemberTag[] => contact.tagIds.map((t) => tagsById.get(t) ?? { id: t, name: `Tag ${t}`, category: '' });
    const skip = (contactId: number, reason: string) => tally.skipped.push({ reason, contactId });
    for (const goneId of read.goneIds) skip(goneId, SKIP_REASONS.gone);

    const linkedAlready = this.deps.members.linkedContactIds(read.contacts.map((c) => c.id));
    const emailsInBatch = new Set<string>();
    const reservedUsernames = new Set<string>();
    const toCreate: Array<{ contact: KeapContact; input: NewMemberInput; keapPassword: string | undefined }> = [];
    const toLink: Array<{ contact: KeapContact; member: Member }> = [];
    for (const contact of read.contacts) {
      if (linkedAlready.has(contact.id)) {
        tally.alreadyMembers++;
        continue;
      }
      if (contact.email === null) {
        skip(contact.id, SKIP_REASONS.noEmail);
        continue;
      }
      const email = singleEmailAddress(contact.email);
      if (email === undefined) {
        skip(contact.id, SKIP_REASONS.invalidEmail);
        continue;
      }
      const key = email.toLowerCase();
      if (emailsInBatch.has(key)) {
        skip(contact.id, SKIP_REASONS.duplicateEmail);
        continue;
      }
      emailsInBatch.add(key);
      const holder = this.deps.members.findByEmail(email);
      if (holder) {
        if (holder.keapContactId !== null) skip(contact.id, SKIP_REASONS.duplicateEmail);
        else if (imp.onExisting === 'skip') skip(contact.id, SKIP_REASONS.existingMember);
        else toLink.push({ contact: { ...contact, email }, member: holder });
        continue;
      }
      const checked = { ...contact, email };
      let draft: NewMemberDraft;
      try {
        draft = await this.deps.memberSync.newMemberDraft(checked, reservedUsernames);
      } catch (err) {
        if (!(err instanceof NoFreeUsernameError)) throw err;
        skip(contact.id, SKIP_REASONS.noUsername);
        continue;
      }
      reservedUsernames.add(draft.username.toLowerCase());
      // No password unless someone will be told it: the welcome email, or Keap's password field already holding one.
      const password = draft.keapPassword ?? (imp.sendWelcome ? generatePassword() : null);
      toCreate.push({
        contact: checked,
        keapPassword: draft.keapPassword,
        input: { email, username: draft.username, role: imp.role, password, keapContactId: contact.id, firstName: contact.givenName, lastName: contact.familyName, fields: draft.fields, tags: tagsOf(contact) },
      });
    }

    // Links first, each in its own transaction (the members service's update): a crash before the batch commits
    // leaves them linked, and the batch run again counts them as already members.
    const linkedEvents: KeapContact[] = [];
    for (const { contact, member } of toLink) {
      const fresh = this.deps.members.findById(member.id);
      if (!fresh || fresh.keapContactId !== null) {
        skip(contact.id, SKIP_REASONS.takenMeanwhile);
        continue;
      }
      const fields = await this.deps.memberSync.fieldsFrom(contact);
      await this.deps.members.update(member.id, { profile: { firstName: contact.givenName, lastName: contact.familyName, fields, tags: tagsOf(contact) }, keapContactId: contact.id });
      tally.linked++;
      linkedEvents.push(contact);
    }
    tally.done = read.contacts.length + read.goneIds.length;

    const passwordField = this.deps.passwordField();
    try {
      await this.deps.members.createMany(
        toCreate.map((c) => c.input),
        (outcomes, tx) => {
          outcomes.forEach((outcome, i) => {
            const { contact, input, keapPassword } = toCreate[i]!;
            if (outcome instanceof Error) return skip(contact.id, SKIP_REASONS.takenMeanwhile);
            tally.created++;
            this.followUps(outcome, contact, { sendWelcome: imp.sendWelcome, generated: input.password !== null && keapPassword === undefined ? input.password : undefined, passwordField });
            emitImported(tx, contact, 'created', outcome.id);
          });
          for (const contact of linkedEvents) emitImported(tx, contact, 'linked');
          if (!this.deps.store.saveBatch(imp.id, batch, tally)) throw new ImportStopped();
          if (tally.nextPageToken !== null) this.deps.jobs.enqueue(keapImportBatch, { import_id: imp.id, batch: batch + 1 });
          else this.deps.store.finish(imp.id, 'done', this.deps.clock.now());
        },
      );
    } catch (err) {
      if (err instanceof ImportStopped) return undefined;
      throw err;
    }
    return tally;
  }

  /** What an `add` queues with a new member: the welcome email, and a generated password's way to Keap's field. */
  private followUps(member: Member, contact: KeapContact, options: { sendWelcome: boolean; generated: string | undefined; passwordField: string | undefined }): void {
    const followUp = { member_id: member.id, contact_id: contact.id };
    const writeBack = options.generated !== undefined && options.passwordField !== undefined;
    const writeBackJob = writeBack ? this.deps.jobs.enqueue(passwordWriteBack, followUp).id : undefined;
    if (options.generated !== undefined) this.deps.members.savePendingPassword(member.id, options.generated, { keap: writeBack, email: options.sendWelcome }, writeBackJob);
    if (options.sendWelcome) this.deps.jobs.enqueue(welcomeEmail, followUp);
  }
}

/** The normalized event of one imported contact, for plugins and outbound webhooks (see `keap.event`). */
function emitImported(tx: TransactionScope, contact: KeapContact, outcome: 'created' | 'linked', memberId?: number): void {
  tx.emit('keap.event', {
    objectType: 'contact',
    objectId: String(contact.id),
    eventType: IMPORT_EVENT_TYPE,
    source: IMPORT_SOURCE,
    raw: { id: contact.id, outcome, ...(memberId !== undefined ? { member_id: memberId } : {}) },
  });
}

