import { isoNow, isUniqueViolation, type Db } from '../../core/db.js';
import { badRequest, conflict, notFound } from '../../core/errors.js';
import type { Transactions, TransactionScope } from '../../core/outbox.js';
import type { SecretBox } from '../../core/secret-box.js';
import { PendingPasswordStore, type PendingPasswordUse } from './pending-password-store.js';
import { MemberStore, type ListScope, type MemberChanges } from './store.js';
import type { HeldTag, Member, MemberPage, MemberQuery, MemberTag, Role, RoleCount } from './types.js';
import { hashPassword } from './passwords.js';
import type { PasswordResetStore } from './password-reset-store.js';
import type { MemberSessions } from './session-store.js';

declare module '../../core/hooks.js' {
  interface ActionMap {
    /**
     * A member was created (by a Keap post, an admin, the setup form or the command line).
     * @fires after the member's transaction commits
     * @durable
     */
    'member.created': [member: Member];
    /**
     * A member's profile, role, tags or Keap link changed; `changed` names what (`email`, `first_name`, `tags`, ...).
     * @fires after the change commits
     * @durable
     */
    'member.updated': [member: Member, changed: string[]];
    /**
     * A member gained or lost Keap tags (also fired with every tag of a new member that has some).
     * @fires after the change commits, after member.updated
     * @durable
     */
    'member.tags_changed': [member: Member, change: { added: MemberTag[]; removed: MemberTag[] }];
    /**
     * A member's role changed (role slugs).
     * @fires after the change commits, after member.updated
     * @durable
     */
    'member.role_changed': [member: Member, change: { from: string; to: string }];
    /**
     * A member was deleted; `member` is how it was just before.
     * @fires after the delete commits
     * @durable
     */
    'member.deleted': [member: Member];
    /**
     * A member's password was changed: on the account page (`account`), with a reset link (`reset`), through the JSON
     * API (`api`), by `create-admin` (`command_line`), from ADMIN_PASSWORD at start (`configured`) or taken from
     * Keap's password field by an `update` post (`keap`). The member's sessions and reset links were ended with it.
     * The password itself is not passed.
     * @fires after the new password commits
     * @durable
     */
    'member.password_changed': [member: Member, how: PasswordChangeSource];
  }
}

/** Where a new password came from (see `member.password_changed`). */
export type PasswordChangeSource = 'account' | 'reset' | 'api' | 'command_line' | 'configured' | 'keap';

/**
 * Work that must happen in the transaction of every password change and needs the new password itself (member-sync
 * queues its write to Keap's password field). Not a hook: the plaintext goes to the built-in features that register
 * one, never to hooks' arguments, logs or events.
 */
export type PasswordChangeStep = (change: { member: Member; password: string; how: PasswordChangeSource }, tx: TransactionScope) => void;

/** The member actions recorded in the outbox, so handlers may ask for durable delivery. */
export const DURABLE_MEMBER_ACTIONS = ['member.created', 'member.updated', 'member.tags_changed', 'member.role_changed', 'member.deleted', 'member.password_changed'] as const;

/** A member as it should be after applying what Keap says about its contact. */
export interface MemberProfile {
  email: string;
  firstName: string;
  lastName: string;
  fields: Record<string, unknown>;
  tags: MemberTag[];
}

export interface NewMemberInput extends MemberProfile {
  username: string;
  role: string;
  /**
   * Plain password; hashed here. Null for none: the member cannot log in until a reset link or a welcome email gives
   * it one (an import's members, whose passwords nobody would ever be told).
   */
  password: string | null;
  keapContactId: number | null;
}

export interface ProfileUpdate {
  profile: Partial<MemberProfile>;
  username?: string;
  role?: string;
  keapContactId?: number;
}

export const LAST_ADMINISTRATOR_MESSAGE = 'This is the last administrator: make another member an administrator first.';

export interface KeepAnAdministrator {
  /**
   * Refuse (409) to take admin rights from the last member holding them. Checked in the write's own transaction.
   * The admin pages ask for it; scripts and the CLI may leave a site without administrators on purpose.
   */
  keepAnAdministrator?: boolean;
}

/**
 * The member rules every other feature goes through: SQL stays in the store; what a change causes is emitted in its
 * transaction (durable handlers get it through the outbox, the others right after the commit).
 */
export class MemberService {
  private readonly store: MemberStore;
  private readonly pending: PendingPasswordStore;
  private readonly passwordChangeSteps: PasswordChangeStep[] = [];

  constructor(
    private readonly db: Db,
    private readonly transactions: Transactions,
    /** What a password change ends with it: the member's sessions and outstanding reset links. */
    private readonly credentials: { sessions: MemberSessions; resets: PasswordResetStore },
    secretBox: SecretBox,
  ) {
    this.store = new MemberStore(db);
    this.pending = new PendingPasswordStore(db, secretBox);
  }

  get(id: number): Member {
    const member = this.store.findById(id);
    if (!member) throw notFound(`no member with id ${id}`);
    return member;
  }

  findById(id: number): Member | undefined {
    return this.store.findById(id);
  }

  /** Which of these Keap contact ids have a member linked to them (one query, for a delivery or a page of changes). */
  linkedContactIds(contactIds: readonly number[]): Set<number> {
    return this.store.linkedContactIds(contactIds);
  }

  /** How many members a list query matches (optionally within a stretch of ids), counted exactly. */
  count(query: Omit<ListScope, 'page' | 'pageSize'>): number {
    return this.store.list({ ...query, page: 1, pageSize: 1 }).total;
  }

  findByContactId(contactId: number): Member | undefined {
    return this.store.findByContactId(contactId);
  }

  findByEmail(email: string): Member | undefined {
    return this.store.findByEmail(email);
  }

  /** Email or username, as typed on the login form. */
  findByLogin(login: string): Member | undefined {
    return this.store.findByEmail(login) ?? this.store.findByUsername(login);
  }

  passwordHash(id: number): string | null {
    return this.store.passwordHash(id);
  }

  usernameTaken(username: string): boolean {
    return this.store.findByUsername(username) !== undefined;
  }

  list(query: MemberQuery): MemberPage {
    return this.store.list(query);
  }

  /** The ids of the first `limit` members a list query matches, in its order (a bulk action's next batch). */
  listIds(query: Omit<ListScope, 'page' | 'pageSize'>, limit: number): number[] {
    return this.store.listIds(query, limit);
  }

  /** The highest member id so far: a bulk action over a filter stops there, so members who join later are left out. */
  maxId(): number {
    return this.store.maxId();
  }

  /** Every member a list query matches, in its order, read `batchSize` at a time (an export of a million stays small). */
  *listAll(query: Omit<MemberQuery, 'page' | 'pageSize'>, batchSize = 500): Generator<Member[]> {
    const ids = this.store.listIds(query);
    for (let i = 0; i < ids.length; i += batchSize) yield this.store.byIds(ids.slice(i, i + batchSize));
  }

  /** Every tag some member holds (for the admin's tag filter). */
  heldTags(): HeldTag[] {
    return this.store.heldTags();
  }

  countAdministrators(): number {
    return this.store.countAdministrators();
  }

  role(slug: string): Role | undefined {
    return this.store.roleBySlugOrUndefined(slug);
  }

  roles(): Role[] {
    return this.store.roles();
  }

  /**
   * Creates a member. `withinTransaction` runs in the same transaction as the insert (to queue follow-up
   * work atomically with the member). A clash on email, username or contact id throws SQLite's UNIQUE
   * error untouched so the caller can tell a lost race from a bug.
   */
  async create(input: NewMemberInput, withinTransaction?: (member: Member, tx: TransactionScope) => void): Promise<Member> {
    const role = this.requireRole(input.role);
    const passwordHash = input.password === null ? null : await hashPassword(input.password);
    return this.transactions.run((tx) => {
      const created = this.insertMember(input, role, passwordHash);
      withinTransaction?.(created, tx);
      emitCreated(created, tx);
      return created;
    });
  }

  /**
   * Creates many members in one transaction (an import's batch: one commit instead of hundreds). Each input either
   * becomes a member or, when its email, username or contact id is taken by then, comes back as SQLite's UNIQUE error
   * in its place, the others going ahead. `withinTransaction` sees the outcome and runs in the same transaction (a
   * checkpoint saved with the batch), so either all of it commits or none.
   */
  async createMany<T>(
    inputs: readonly NewMemberInput[],
    withinTransaction: (outcomes: Array<Member | Error>, tx: TransactionScope) => T,
  ): Promise<{ outcomes: Array<Member | Error>; result: T }> {
    const bySlug = new Map<string, Role>();
    const roles = inputs.map((input) => bySlug.get(input.role) ?? bySlug.set(input.role, this.requireRole(input.role)).get(input.role)!);
    const hashes = await Promise.all(inputs.map((input) => (input.password === null ? null : hashPassword(input.password))));
    return this.transactions.run((tx) => {
      const outcomes = inputs.map((input, i): Member | Error => {
        try {
          // A savepoint per member: a clash undoes that member's rows only.
          return this.db.transaction(() => this.insertMember(input, roles[i]!, hashes[i]!))();
        } catch (err) {
          if (isUniqueViolation(err)) return err as Error;
          throw err;
        }
      });
      const result = withinTransaction(outcomes, tx);
      for (const outcome of outcomes) if (!(outcome instanceof Error)) emitCreated(outcome, tx);
      return { outcomes, result };
    });
  }

  private insertMember(input: NewMemberInput, role: Role, passwordHash: string | null): Member {
    const id = this.store.insert({
      email: input.email,
      username: input.username,
      roleId: role.id,
      passwordHash,
      firstName: input.firstName,
      lastName: input.lastName,
      keapContactId: input.keapContactId,
      fields: input.fields,
    });
    this.store.replaceTags(id, input.tags);
    return this.store.findById(id)!;
  }

  /**
   * Applies the parts of `update.profile` that are given. Returns the member as it is afterwards and the names
   * of what changed; fires member.updated / tags_changed / role_changed after commit when something did.
   */
  async update(memberId: number, update: ProfileUpdate, options: KeepAnAdministrator = {}): Promise<{ member: Member; changed: string[] }> {
    const before = this.get(memberId);
    const { profile } = update;
    const changes: MemberChanges = {};
    const changed: string[] = [];
    const set = <K extends keyof MemberChanges>(key: K, name: string, value: MemberChanges[K], current: unknown) => {
      if (value === undefined || JSON.stringify(value) === JSON.stringify(current)) return;
      changes[key] = value;
      changed.push(name);
    };
    if (profile.email !== undefined && profile.email.toLowerCase() !== before.email.toLowerCase()) set('email', 'email', profile.email, before.email);
    if (update.username !== undefined && update.username !== before.username) set('username', 'username', update.username, before.username);
    set('firstName', 'first_name', profile.firstName, before.firstName);
    set('lastName', 'last_name', profile.lastName, before.lastName);
    set('fields', 'fields', profile.fields, before.fields);
    set('keapContactId', 'keap_contact_id', update.keapContactId, before.keapContactId);
    let roleChange: { from: string; to: string } | undefined;
    let losesAdminRights = false;
    if (update.role !== undefined && update.role !== before.role) {
      const role = this.requireRole(update.role);
      changes.roleId = role.id;
      losesAdminRights = before.roleIsAdmin && !role.isAdmin;
      changed.push('role');
      roleChange = { from: before.role, to: update.role };
    }
    const tagChange = profile.tags ? diffTags(before.tags, profile.tags) : undefined;
    if (tagChange && (tagChange.added.length || tagChange.removed.length || tagsRenamed(before.tags, profile.tags!))) changed.push('tags');

    if (changed.length === 0) return { member: before, changed };
    const member = await this.transactions.run((tx) => {
      if (losesAdminRights && options.keepAnAdministrator) this.refuseLastAdministrator(before);
      this.store.update(memberId, changes);
      if (changed.includes('tags')) this.store.replaceTags(memberId, profile.tags!);
      const after = this.store.findById(memberId)!;
      tx.emit('member.updated', after, changed);
      if (tagChange && (tagChange.added.length || tagChange.removed.length)) tx.emit('member.tags_changed', after, tagChange);
      if (roleChange) tx.emit('member.role_changed', after, roleChange);
      return after;
    });
    return { member, changed };
  }

  /**
   * A new administrator: username = email, the role with admin rights, no Keap link. The one place that knows
   * what an admin account made outside Keap looks like (setup form, create-admin, ADMIN_EMAIL).
   */
  createAdministrator(credentials: { email: string; password: string }, withinTransaction?: (member: Member, tx: TransactionScope) => void): Promise<Member> {
    const role = this.store.roles().find((r) => r.isAdmin);
    if (!role) throw new Error('no role with admin rights exists');
    const input: NewMemberInput = { email: credentials.email, username: credentials.email, role: role.slug, password: credentials.password, keapContactId: null, firstName: '', lastName: '', fields: {}, tags: [] };
    return this.create(input, withinTransaction);
  }

  /**
   * Gives a member a new password, however it was asked for (account page, API, create-admin, ADMIN_PASSWORD, Keap's
   * field): in one transaction the hash is stored, every session of the member ends and every outstanding reset link
   * stops working, and `member.password_changed` is recorded. A caller that wants its own browser to stay logged in
   * starts a fresh session afterwards.
   */
  async changePassword(memberId: number, password: string, how: PasswordChangeSource): Promise<Member> {
    this.get(memberId); // an unknown member is a 404 before bcrypt's work, not after
    const passwordHash = await hashPassword(password);
    return this.transactions.run((tx) => this.applyNewPassword(memberId, { password, passwordHash }, how, tx));
  }

  /**
   * `changePassword`'s work inside a transaction of the caller's, for a change decided in that same transaction (a
   * reset link consumed). Hash first, with `hashPassword`, outside the transaction: bcrypt is slow. This is the one
   * place a password is replaced; nothing else writes `password_hash` of an existing member. A password still waiting
   * for its deliveries (a generated one for the welcome email or Keap) is dropped: it is no longer the password.
   */
  applyNewPassword(memberId: number, next: { password: string; passwordHash: string }, how: PasswordChangeSource, tx: TransactionScope): Member {
    this.store.update(memberId, { passwordHash: next.passwordHash });
    const member = this.store.findById(memberId);
    if (!member) throw notFound(`no member with id ${memberId}`);
    this.credentials.resets.deleteOutstandingFor(memberId);
    this.credentials.sessions.destroyAllFor(memberId);
    this.pending.drop(memberId);
    for (const step of this.passwordChangeSteps) step({ member, password: next.password, how }, tx);
    tx.emit('member.password_changed', member, how);
    return member;
  }

  /** Registers a step every password change runs in its transaction (see PasswordChangeStep); returns its removal. */
  onPasswordChange(step: PasswordChangeStep): () => void {
    this.passwordChangeSteps.push(step);
    return () => {
      const at = this.passwordChangeSteps.indexOf(step);
      if (at >= 0) this.passwordChangeSteps.splice(at, 1);
    };
  }

  /**
   * Blocks a member: it cannot log in, its sessions and reset links end, its data stays (unblock undoes it). Fires
   * member.updated with `blocked`. An administrator is never blocked here: take the admin rights first.
   */
  async block(memberId: number, reason: string, now: number): Promise<Member> {
    const member = this.get(memberId);
    if (member.roleIsAdmin) throw conflict('An administrator cannot be blocked: take away the admin rights first.');
    if (member.blocked) return member;
    return this.transactions.run((tx) => {
      this.store.setBlocked(memberId, { at: new Date(now).toISOString(), reason });
      this.credentials.sessions.destroyAllFor(memberId);
      this.credentials.resets.deleteOutstandingFor(memberId);
      const after = this.store.findById(memberId)!;
      tx.emit('member.updated', after, ['blocked']);
      return after;
    });
  }

  async unblock(memberId: number): Promise<Member> {
    const member = this.get(memberId);
    if (!member.blocked) return member;
    return this.transactions.run((tx) => {
      this.store.setBlocked(memberId, null);
      const after = this.store.findById(memberId)!;
      tx.emit('member.updated', after, ['blocked']);
      return after;
    });
  }

  async delete(memberId: number, options: KeepAnAdministrator = {}): Promise<void> {
    const member = this.get(memberId);
    await this.transactions.run((tx) => {
      if (options.keepAnAdministrator) this.refuseLastAdministrator(member);
      this.store.delete(memberId);
      tx.emit('member.deleted', member);
    });
  }

  /** Members per role, every role listed (the dashboard): one index range per role. */
  countByRole(): RoleCount[] {
    return this.store.countByRole();
  }

  /**
   * A password waits here until Keap's field and the welcome email have it (see migrations 002 and 012): a generated
   * one, or a changed one on its way to Keap. Save it in the transaction that gives the member this password (the
   * `create` callback, a password change step); it replaces any password waiting before. `keapJobId`: the write-back
   * job queued for it.
   */
  savePendingPassword(memberId: number, password: string, awaiting: { keap: boolean; email: boolean }, keapJobId?: number): void {
    this.pending.save(memberId, password, awaiting, keapJobId);
  }

  /** Records which write-back job is to deliver the waiting password (one queued after the password was saved). */
  setPendingPasswordKeapJob(memberId: number, jobId: number): void {
    this.pending.setKeapJob(memberId, jobId);
  }

  /** The password waiting for `use` (Keap's field or the welcome email), if one does. */
  pendingPassword(memberId: number, use: PendingPasswordUse): string | undefined {
    return this.pending.get(memberId, use);
  }

  /** Whether a password waits for `use`, without opening it. */
  awaitsPendingPassword(memberId: number, use: PendingPasswordUse): boolean {
    return this.pending.awaits(memberId, use);
  }

  /**
   * `keap` or `email` no longer needs the password (it was delivered, or its job ended for good); once neither does,
   * it is deleted. A write-back job passes its id: it releases only the password it was queued for.
   */
  releasePendingPassword(memberId: number, by: PendingPasswordUse, keapJobId?: number): void {
    this.pending.release(memberId, by, keapJobId);
  }

  /** Deletes the pending passwords older than `maxAgeMs` at `now`, whatever became of their jobs; returns how many. */
  sweepPendingPasswords(now: number, maxAgeMs: number): number {
    return this.pending.sweepOlderThan(isoNow(now - maxAgeMs));
  }

  /** Seals pending passwords left in plaintext by an older version (see PendingPasswordStore.sealStored). */
  sealStoredPendingPasswords(): number {
    return this.pending.sealStored();
  }

  /** Throws when `member` (as it is now in the database) is the only member with admin rights. */
  private refuseLastAdministrator(member: Member): void {
    const current = this.store.findById(member.id);
    if (current?.roleIsAdmin && this.store.countAdministrators() <= 1) throw conflict(LAST_ADMINISTRATOR_MESSAGE);
  }

  private requireRole(slug: string): Role {
    const role = this.store.roleBySlugOrUndefined(slug);
    if (!role) throw badRequest(`role "${slug}" does not exist`, 'role');
    return role;
  }
}

export { isUniqueViolation } from '../../core/db.js';

function emitCreated(created: Member, tx: TransactionScope): void {
  tx.emit('member.created', created);
  if (created.tags.length > 0) tx.emit('member.tags_changed', created, { added: created.tags, removed: [] });
}

function diffTags(before: MemberTag[], after: MemberTag[]): { added: MemberTag[]; removed: MemberTag[] } {
  const beforeIds = new Set(before.map((t) => t.id));
  const afterIds = new Set(after.map((t) => t.id));
  return { added: after.filter((t) => !beforeIds.has(t.id)), removed: before.filter((t) => !afterIds.has(t.id)) };
}

function tagsRenamed(before: MemberTag[], after: MemberTag[]): boolean {
  const byId = new Map(before.map((t) => [t.id, t]));
  return after.some((t) => {
    const old = byId.get(t.id);
    return old !== undefined && (old.name !== t.name || old.category !== t.category);
  });
}
