import type { Db } from '../../core/db.js';
import type { HookRegistry } from '../../core/hooks.js';
import { RoleStore } from './role-store.js';
import type { RoleSummary } from './types.js';
import { isUniqueViolation } from '../../core/db.js';

declare module '../../core/hooks.js' {
  interface ActionMap {
    /**
     * An administrator added a role.
     * @fires after the role is stored
     */
    'role.created': [role: RoleSummary];
    /**
     * A role was renamed or its "Keap posts may assign it" choice changed; `changed` says which.
     * @fires after the change is stored
     */
    'role.updated': [role: RoleSummary, changed: Array<'name' | 'webhook_assignable'>];
    /**
     * A role was deleted.
     * @fires after the delete
     */
    'role.deleted': [role: RoleSummary];
  }
}

export const ROLE_SLUG_PATTERN = /^[a-z0-9_-]{1,64}$/;
export const ROLE_NAME_MAX = 100;

export const ROLE_MESSAGES = {
  slugMissing: 'Enter a slug: the value a Keap HTTP Post sends as its role parameter.',
  slugInvalid: 'A slug is 1 to 64 lowercase letters, digits, hyphens (-) or underscores (_), with no spaces.',
  slugTaken: (slug: string) => `A role with the slug "${slug}" already exists.`,
  nameMissing: 'Enter a name.',
  nameTooLong: `A name is at most ${ROLE_NAME_MAX} characters.`,
  adminNotAssignable: 'A role with admin rights can never be assigned by a webhook.',
} as const;

export interface RoleFormErrors {
  slug?: string;
  name?: string;
}

export type RoleResult = { ok: true; role: RoleSummary } | { ok: false; errors: RoleFormErrors };

/** Why a role cannot be deleted, when it cannot. */
export type DeleteBlocker =
  | { reason: 'admin'; message: string }
  | { reason: 'default'; message: string }
  | { reason: 'members'; message: string; members: number };

/** The rules for roles; hooks fire after the change commits. */
export class RoleService {
  private readonly store: RoleStore;

  constructor(
    db: Db,
    private readonly hooks: HookRegistry,
    /** The slug of the role new members get when a post names none. */
    private readonly defaultRole: () => string,
  ) {
    this.store = new RoleStore(db);
  }

  list(): RoleSummary[] {
    return this.store.list();
  }

  get(id: number): RoleSummary | undefined {
    return this.store.findById(id);
  }

  findBySlug(slug: string): RoleSummary | undefined {
    return this.store.findBySlug(slug);
  }

  isDefault(role: RoleSummary): boolean {
    return role.slug === this.defaultRole();
  }

  /** Adds a role without admin rights (admin rights belong to the built-in administrator role only). */
  async create(input: { slug: string; name: string; webhookAssignable: boolean }): Promise<RoleResult> {
    const slug = input.slug.trim().toLowerCase();
    const name = input.name.trim();
    const errors: RoleFormErrors = {};
    if (!slug) errors.slug = ROLE_MESSAGES.slugMissing;
    else if (!ROLE_SLUG_PATTERN.test(slug)) errors.slug = ROLE_MESSAGES.slugInvalid;
    const nameError = validateName(name);
    if (nameError) errors.name = nameError;
    if (errors.slug || errors.name) return { ok: false, errors };
    let id: number;
    try {
      id = this.store.insert({ slug, name, webhookAssignable: input.webhookAssignable });
    } catch (err) {
      if (isUniqueViolation(err, 'roles.slug')) return { ok: false, errors: { slug: ROLE_MESSAGES.slugTaken(slug) } };
      throw err;
    }
    const role = this.store.findById(id)!;
    await this.hooks.doAction('role.created', role);
    return { ok: true, role };
  }

  /** Changes the name only: the slug is what Keap posts send, so it never changes. */
  async rename(role: RoleSummary, rawName: string): Promise<RoleResult> {
    const name = rawName.trim();
    const nameError = validateName(name);
    if (nameError) return { ok: false, errors: { name: nameError } };
    if (name === role.name) return { ok: true, role };
    this.store.rename(role.id, name);
    const updated = this.store.findById(role.id)!;
    await this.hooks.doAction('role.updated', updated, ['name']);
    return { ok: true, role: updated };
  }

  /** Whether a Keap post may assign this role. Never for a role with admin rights (the table refuses it too). */
  async setWebhookAssignable(role: RoleSummary, on: boolean): Promise<{ ok: true; role: RoleSummary } | { ok: false; message: string }> {
    if (role.isAdmin) return { ok: false, message: ROLE_MESSAGES.adminNotAssignable };
    if (role.webhookAssignable === on) return { ok: true, role };
    this.store.setWebhookAssignable(role.id, on);
    const updated = this.store.findById(role.id)!;
    await this.hooks.doAction('role.updated', updated, ['webhook_assignable']);
    return { ok: true, role: updated };
  }

  /** What stops this role from being deleted now, if anything. */
  deleteBlocker(role: RoleSummary): DeleteBlocker | undefined {
    if (role.isAdmin) return { reason: 'admin', message: `${role.name} has admin rights; it cannot be deleted, so there is always a way into the admin.` };
    if (this.isDefault(role)) {
      return { reason: 'default', message: `${role.name} is the default role new members get; choose another default role in the settings before deleting it.` };
    }
    if (role.members > 0) {
      const who = role.members === 1 ? '1 member holds it' : `${role.members} members hold it`;
      return { reason: 'members', members: role.members, message: `${role.name} cannot be deleted while ${who}: give them another role first.` };
    }
    return undefined;
  }

  /** Deletes the role if nothing blocks it; otherwise says what does (checked again atomically by the delete). */
  async delete(role: RoleSummary): Promise<{ ok: true } | { ok: false; blocker: DeleteBlocker }> {
    const blocker = this.deleteBlocker(role);
    if (blocker) return { ok: false, blocker };
    if (!this.store.deleteUnused(role.id, this.defaultRole())) {
      // Something changed since the role was read (a member was given it): report the current reason.
      const now = this.store.findById(role.id);
      if (!now) return { ok: true };
      const current = this.deleteBlocker(now);
      return { ok: false, blocker: current ?? { reason: 'members', members: now.members, message: `${now.name} could not be deleted; try again.` } };
    }
    await this.hooks.doAction('role.deleted', role);
    return { ok: true };
  }
}

function validateName(name: string): string | undefined {
  if (!name) return ROLE_MESSAGES.nameMissing;
  if (name.length > ROLE_NAME_MAX) return ROLE_MESSAGES.nameTooLong;
  return undefined;
}
