import type { HookRegistry } from '../../core/hooks.js';
import { PermanentJobError } from '../../core/jobs/failures.js';
import type { Job, JobOutcome, JobQueue } from '../../core/jobs/queue.js';
import type { WebhookJobParams } from '../http-post/jobs.js';
import type { KeapContact, KeapCustomFieldDefinition } from '../keap/types.js';
import { singleEmailAddress } from '../../core/mail.js';
import { generatePassword, verifyPassword } from '../members/passwords.js';
import { isUniqueViolation, type MemberService, type PasswordChangeSource } from '../members/service.js';
import type { Member, MemberTag } from '../members/types.js';
import type { SiteSettings } from '../settings/site-settings.js';
import { welcomeEmail } from '../welcome-email/jobs.js';
import { passwordWriteBack } from './jobs.js';
import type { KeapPasswordSeen } from './keap-password-seen.js';

declare module '../../core/hooks.js' {
  interface FilterMap {
    /**
     * The member's `fields` as taken from the contact (custom fields by label); plugins may add or drop some.
     * @fires in the add and update jobs, before the member is written
     */
    'member.fields_from_contact': [fields: Record<string, unknown>, contact: KeapContact];
    /**
     * The username a new member gets (the Keap username field's value, else the email). If the result is taken or
     * empty, the email is used, then `<email name>-<contact id>`.
     * @fires in the add job, before the member is created
     */
    'member.username': [username: string, contact: KeapContact];
  }
}

/** What member-sync needs from Keap (the Keap client provides it). */
export interface KeapContactApi {
  getContact(id: number): Promise<KeapContact>;
  getContactTags(id: number): Promise<MemberTag[]>;
  getCustomFields(): Promise<KeapCustomFieldDefinition[]>;
  updateContactCustomFields(id: number, fields: Array<{ id: string; content: unknown }>): Promise<void>;
}

export interface MemberSyncDeps {
  keap: KeapContactApi;
  members: MemberService;
  jobs: JobQueue;
  hooks: HookRegistry;
  /** Default role, Keap field names and the welcome setting, read on every job so admin edits apply at once. */
  site: Pick<SiteSettings, 'defaultRole' | 'passwordField' | 'usernameField' | 'alwaysSendWelcome' | 'pushPasswordChanges' | 'takeKeapPasswords'>;
  /** What each member's Keap password field was last known to hold. */
  seen: KeapPasswordSeen;
}

/** Every username a contact could have is taken: that contact cannot become a member as things are. */
export class NoFreeUsernameError extends PermanentJobError {
  override name = 'NoFreeUsernameError';
}

/** What a new member takes from its contact (see KeapMemberSync.newMemberDraft). */
export interface NewMemberDraft {
  username: string;
  /** Custom fields by label, after the `member.fields_from_contact` filter; never the password field. */
  fields: Record<string, unknown>;
  /** The password typed into Keap's password field, when one is configured and set. */
  keapPassword: string | undefined;
}

/** What an `update` did with the password it found in Keap's field. */
type PasswordFromKeap = { taken: true } | { taken: false; note: string } | undefined;

type SyncJob = Job<WebhookJobParams>;

/**
 * Turns Keap contacts into members: the `add`, `update` and `update_tags` jobs, and the password write-back
 * that follows a creation. Keap calls happen here, outside any transaction; the database's unique keys
 * decide races, not timing.
 */
export class KeapMemberSync {
  constructor(private readonly deps: MemberSyncDeps) {}

  /**
   * Creates the contact's member, or links and updates the member with its email, or updates the one linked to it.
   * With `only_with_tag` (Keap events), a contact no member is linked to gets one only if it carries that tag: its
   * tags are read first (the read creating a member needs anyway), and a contact without the tag is skipped before
   * its record is read.
   */
  async add(job: SyncJob): Promise<JobOutcome> {
    const params = job.params;
    const linked = this.deps.members.findByContactId(params.contact_id);
    let tags: MemberTag[] | undefined;
    if (!linked && params.only_with_tag !== undefined) {
      tags = await this.deps.keap.getContactTags(params.contact_id);
      if (!tags.some((t) => t.id === params.only_with_tag)) {
        return { status: 'skipped', result: `contact ${params.contact_id} does not carry tag ${params.only_with_tag}: no member created (contact.add creates members only with that tag)` };
      }
    }
    const contact = withCheckedEmail(await this.deps.keap.getContact(params.contact_id));
    if (linked) return this.updateMember(linked, contact, params, tags);
    if (!contact.email) throw new PermanentJobError(`contact ${params.contact_id} has no email address`);
    const sameEmail = this.deps.members.findByEmail(contact.email);
    if (sameEmail) return this.updateMember(sameEmail, contact, params, tags);
    return this.createMember(contact, params, job, tags);
  }

  /**
   * Pulls the contact into the member linked to it. Only `add` links a contact to a member; a contact nobody is
   * linked to is skipped before any Keap call (as WP Fusion's "No matching user found"): a broadcast to a whole list
   * of contacts, most of them not members, must not spend Keap's rate limit on them.
   */
  async update(job: SyncJob): Promise<JobOutcome> {
    const params = job.params;
    const member = this.deps.members.findByContactId(params.contact_id);
    if (!member) return notLinked(params.contact_id);
    const contact = withCheckedEmail(await this.deps.keap.getContact(params.contact_id));
    return this.updateMember(member, contact, params);
  }

  /** Reloads the linked member's tags only; skipped, with no Keap call, when no member is linked (as `update`). */
  async updateTags(job: SyncJob): Promise<JobOutcome> {
    const params = job.params;
    const member = this.deps.members.findByContactId(params.contact_id);
    if (!member) return notLinked(params.contact_id);
    const tags = await this.deps.keap.getContactTags(params.contact_id);
    const { changed } = await this.deps.members.update(member.id, { profile: { tags }, keapContactId: params.contact_id });
    return { status: 'done', result: describeUpdate(member, changed) };
  }

  /**
   * Writes a member's waiting password (generated, or changed) to Keap's password field; a retry sends the same
   * stored value. Never an administrator's: one promoted since the password was queued is skipped.
   */
  async writeBackPassword(job: Job<{ member_id: number }>): Promise<JobOutcome> {
    const memberId = job.params.member_id;
    const member = this.deps.members.findById(memberId);
    const password = this.deps.members.pendingPassword(memberId, 'keap');
    if (!member || password === undefined) return { status: 'skipped', result: `member ${memberId} no longer waits for a password write-back` };
    // Skipped for good: the password must not wait in the database for a write-back that will not come. Only the
    // password this job was queued for: a newer one waits for the job queued after it.
    const release = () => this.deps.members.releasePendingPassword(memberId, 'keap', job.id);
    if (member.roleIsAdmin) return { status: 'skipped', result: `member ${memberId} has admin rights: an administrator's password is never written to Keap`, onCommit: release };
    if (member.keapContactId === null) return { status: 'skipped', result: `member ${memberId} is not linked to a Keap contact`, onCommit: release };
    const fieldId = await this.passwordFieldId();
    if (fieldId === undefined) return { status: 'skipped', result: 'no Keap password field is configured', onCommit: release };
    await this.deps.keap.updateContactCustomFields(member.keapContactId, [{ id: fieldId, content: password }]);
    return {
      status: 'done',
      result: `password written to contact ${member.keapContactId}`,
      onCommit: () => {
        // Keap's field now holds it: an `update` finding it there takes nothing.
        this.deps.seen.record(memberId, password);
        release();
      },
    };
  }

  /**
   * Runs in the transaction of every password change: queues the new password's write to Keap's field when it should
   * go there. Never one that came from Keap (it would come back as a change), never an administrator's, and only
   * with "Write password changes to Keap" on and a linked contact. A write already waiting takes the newer password.
   */
  queuePasswordWrite(change: { member: Member; password: string; how: PasswordChangeSource }): void {
    const { member, password, how } = change;
    if (how === 'keap' || member.roleIsAdmin || member.keapContactId === null || !this.deps.site.pushPasswordChanges()) return;
    const { id } = this.deps.jobs.enqueue(passwordWriteBack, { member_id: member.id, contact_id: member.keapContactId });
    this.deps.members.savePendingPassword(member.id, password, { keap: true, email: false }, id);
  }

  /**
   * What a new member made from `contact` takes from it: its custom fields by label, the password typed into Keap's
   * password field (if any), and a free username. `reserved` holds lower-cased usernames to avoid besides those in
   * the database (the members of an import's batch, created together).
   */
  /** The contact's custom fields by label, as a member takes them (never the password field). */
  fieldsFrom(contact: KeapContact): Promise<Record<string, unknown>> {
    return this.fieldsFromContact(contact);
  }

  async newMemberDraft(contact: KeapContact, reserved: ReadonlySet<string> = new Set()): Promise<NewMemberDraft> {
    const passwordField = this.deps.site.passwordField();
    const usernameField = this.deps.site.usernameField();
    const fields = await this.fieldsFromContact(contact);
    const keapPassword = passwordField ? textContent(await this.fieldValue(contact, passwordField)) : undefined;
    const username = await this.chooseUsername(contact, usernameField ? textContent(await this.fieldValue(contact, usernameField)) : undefined, reserved);
    return { username, fields, keapPassword };
  }

  private findMember(contactId: number, email: string | null): Member | undefined {
    return this.deps.members.findByContactId(contactId) ?? (email ? this.deps.members.findByEmail(email) : undefined);
  }

  /** `tagsRead`: the contact's tags when this job read them already (for `only_with_tag`). */
  private async createMember(contact: KeapContact, params: WebhookJobParams, job: SyncJob, tagsRead?: MemberTag[]): Promise<JobOutcome> {
    const [tags, { fields, keapPassword, username }] = await Promise.all([tagsRead ?? this.deps.keap.getContactTags(contact.id), this.newMemberDraft(contact)]);
    const password = keapPassword || generatePassword();
    const generated = !keapPassword;
    const writeBack = generated && this.deps.site.passwordField() !== undefined;
    const notify = params.send_notification ?? this.deps.site.alwaysSendWelcome();
    const role = params.role ?? this.deps.site.defaultRole();

    try {
      const member = await this.deps.members.create(
        { email: contact.email!, username, role, password, keapContactId: contact.id, firstName: contact.givenName, lastName: contact.familyName, fields, tags },
        (created) => {
          // In the member's own transaction: the follow-ups exist exactly when the member does.
          const followUp = { member_id: created.id, contact_id: contact.id, caused_by_event: job.id };
          const writeBackJob = writeBack ? this.deps.jobs.enqueue(passwordWriteBack, followUp).id : undefined;
          if (generated && (writeBack || notify)) this.deps.members.savePendingPassword(created.id, password, { keap: writeBack, email: notify }, writeBackJob);
          if (notify) this.deps.jobs.enqueue(welcomeEmail, followUp);
          if (keapPassword) this.deps.seen.record(created.id, keapPassword);
        },
      );
      return { status: 'done', result: `created member ${member.id}${generated ? ' with a generated password' : ''}${notify ? ', welcome email queued' : ''}` };
    } catch (err) {
      // Someone else created this contact's or this email's member between our look-up and insert: theirs stands.
      if (isUniqueViolation(err, 'members.keap_contact_id') || isUniqueViolation(err, 'members.email')) {
        const winner = this.findMember(contact.id, contact.email);
        if (winner) return this.updateMember(winner, contact, params, tagsRead);
      }
      throw err;
    }
  }

  private async updateMember(member: Member, contact: KeapContact, params: WebhookJobParams, tagsRead?: MemberTag[]): Promise<JobOutcome> {
    const [tags, fields] = await Promise.all([tagsRead ?? this.deps.keap.getContactTags(contact.id), this.fieldsFromContact(contact)]);
    const protectedMember = member.roleIsAdmin;
    const newlyLinked = member.keapContactId !== contact.id;
    let email: string | undefined;
    if (!protectedMember && contact.email && contact.email.toLowerCase() !== member.email.toLowerCase()) {
      const holder = this.deps.members.findByEmail(contact.email);
      if (holder && holder.id !== member.id) {
        throw new PermanentJobError(`contact ${contact.id}'s email ${contact.email} already belongs to member ${holder.id}`);
      }
      email = contact.email;
    }
    const profile = { firstName: contact.givenName, lastName: contact.familyName, fields, tags, ...(email ? { email } : {}) };
    const update = {
      profile,
      keapContactId: contact.id,
      ...(params.role !== undefined && !protectedMember ? { role: params.role } : {}),
    };
    try {
      const { changed } = await this.deps.members.update(member.id, update);
      const password = await this.takePasswordFromKeap(member, contact, newlyLinked);
      return { status: 'done', result: describeUpdate(member, changed, password) };
    } catch (err) {
      if (isUniqueViolation(err, 'members.email')) throw new PermanentJobError(`contact ${contact.id}'s email ${contact.email} already belongs to another member`);
      if (isUniqueViolation(err, 'members.keap_contact_id')) throw new PermanentJobError(`contact ${contact.id} is already linked to another member`);
      throw err;
    }
  }

  /**
   * Makes a new password typed into Keap's field the member's password (with "Take a new password typed into Keap's
   * field" on). New means: not empty, not what the field was last known to hold (so a field merely left stale by
   * password changes not written to Keap turns nothing back), and not the member's password already. Never for a
   * member with admin rights, nor while a newer password waits to be written to the field. A member whose field was
   * never seen (linked before memberhook kept track) gets it noted, not taken; one `add` just linked gets it taken.
   */
  private async takePasswordFromKeap(member: Member, contact: KeapContact, newlyLinked: boolean): Promise<PasswordFromKeap> {
    if (!this.deps.site.takeKeapPasswords()) return undefined;
    const fieldId = await this.passwordFieldId();
    const value = textContent(contact.customFields.find((f) => String(f.id) === fieldId)?.content);
    if (!value) return undefined;
    const seen = newlyLinked ? 'unknown' : this.deps.seen.compare(member.id, value);
    if (seen === 'same') return undefined;
    if (await verifyPassword(value, this.deps.members.passwordHash(member.id))) {
      this.deps.seen.record(member.id, value);
      return undefined;
    }
    if (member.roleIsAdmin) return { taken: false, note: `the password in Keap's field was not taken: member ${member.id} has admin rights` };
    if (this.deps.members.awaitsPendingPassword(member.id, 'keap')) {
      return { taken: false, note: `the password in Keap's field was not taken: a newer password of member ${member.id} waits to be written there` };
    }
    if (seen === 'unknown' && !newlyLinked) {
      this.deps.seen.record(member.id, value);
      return { taken: false, note: `Keap's password field noted (it was never seen before); a later change there becomes the member's password` };
    }
    await this.deps.members.changePassword(member.id, value, 'keap');
    this.deps.seen.record(member.id, value);
    return { taken: true };
  }

  private async chooseUsername(contact: KeapContact, fromField: string | undefined, reserved: ReadonlySet<string>): Promise<string> {
    const email = contact.email!;
    const taken = (username: string) => reserved.has(username.toLowerCase()) || this.deps.members.usernameTaken(username);
    const first = fromField && fromField.length <= 60 && !taken(fromField) ? fromField : email;
    const filtered = (await this.deps.hooks.applyFilters('member.username', first, contact)).trim();
    for (const candidate of [filtered, email, `${email.split('@')[0]}-${contact.id}`]) {
      if (candidate && !taken(candidate)) return candidate;
    }
    throw new NoFreeUsernameError(`no free username for contact ${contact.id} (tried "${filtered}" and the email)`);
  }

  /** Custom fields keyed by their Keap label (what people call them), run through the fields filter. */
  private async fieldsFromContact(contact: KeapContact): Promise<Record<string, unknown>> {
    const definitions = await this.deps.keap.getCustomFields();
    const labelOf = new Map(definitions.map((d) => [String(d.id), d.label]));
    const secret = await this.passwordFieldId();
    const fields: Record<string, unknown> = {};
    for (const field of contact.customFields) {
      const id = String(field.id);
      // The password field is a credential, not profile data: it never lands in `fields`.
      if (id === secret || field.content === null || field.content === undefined || field.content === '') continue;
      fields[labelOf.get(id) ?? `field_${id}`] = field.content;
    }
    return this.deps.hooks.applyFilters('member.fields_from_contact', fields, contact);
  }

  private async fieldValue(contact: KeapContact, labelOrId: string): Promise<unknown> {
    const id = await this.customFieldId(labelOrId);
    return id === undefined ? undefined : contact.customFields.find((f) => String(f.id) === id)?.content;
  }

  private async passwordFieldId(): Promise<string | undefined> {
    const field = this.deps.site.passwordField();
    if (!field) return undefined;
    const id = await this.customFieldId(field);
    if (id === undefined) throw new PermanentJobError(`Keap has no contact custom field "${field}" (KEAP_PASSWORD_FIELD)`);
    return id;
  }

  private async customFieldId(labelOrId: string): Promise<string | undefined> {
    const definitions = await this.deps.keap.getCustomFields();
    const wanted = labelOrId.trim().toLowerCase();
    const match = definitions.find((d) => String(d.id) === wanted) ?? definitions.find((d) => d.label.toLowerCase() === wanted);
    return match === undefined ? undefined : String(match.id);
  }
}

/**
 * The contact with its email checked: Keap stores whatever was typed into the field, and a value such as
 * `victim@example.com, attacker@evil.test` is an address list to a mailer (the welcome email and its password to
 * both). Exactly one valid address is taken, trimmed; anything else fails the job for good, before any member is
 * created or changed, naming the value so an administrator can fix the contact in Keap and replay the event.
 */
function withCheckedEmail(contact: KeapContact): KeapContact {
  if (contact.email === null) return contact;
  const address = singleEmailAddress(contact.email);
  if (address === undefined) {
    const shown = contact.email.length > 120 ? `${contact.email.slice(0, 120)}…` : contact.email;
    throw new PermanentJobError(`contact ${contact.id}'s email ${JSON.stringify(shown)} is not one valid email address; fix it in Keap, then replay this event`);
  }
  return address === contact.email ? contact : { ...contact, email: address };
}

function textContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() || undefined;
  if (typeof value === 'number') return String(value);
  return undefined;
}

function describeUpdate(member: Member, changed: string[], password?: PasswordFromKeap): string {
  const done = password?.taken ? [...changed, 'password taken from Keap'] : changed;
  const text = done.length ? `updated member ${member.id}: ${done.join(', ')}` : `member ${member.id} already up to date`;
  return password && !password.taken ? `${text}; ${password.note}` : text;
}

function notLinked(contactId: number): JobOutcome {
  return { status: 'skipped', result: `no member is linked to contact ${contactId}` };
}
