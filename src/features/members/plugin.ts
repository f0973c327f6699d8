import { StartupError } from '../../core/errors.js';
import { DAY_MS } from '../../core/maintenance.js';
import type { CorePlugin } from '../../plugins/types.js';
import { adminGate } from './admin-gate.js';
import { memberAdminRoutes } from './admin-routes.js';
import { BulkActionStore, memberBulkAction } from './bulk-action-store.js';
import { runBulkAction } from './bulk-actions.js';
import type { MembersContext } from './context.js';
import { LoginDevices } from './login-devices.js';
import { LoginThrottle } from './login-throttle.js';
import { passwordResetEmail, sendPasswordResetEmail } from './password-reset.js';
import { PasswordResetStore } from './password-reset-store.js';
import { RoleService } from './role-service.js';
import { memberRoutes } from './routes.js';
import { DURABLE_MEMBER_ACTIONS, MemberService } from './service.js';
import { MemberSessions } from './session-store.js';

/** How long a generated password may wait for its deliveries (Keap's field, the welcome email) before it is deleted. */
export const PENDING_PASSWORD_MAX_AGE_MS = 7 * DAY_MS;

declare module '../../plugins/types.js' {
  interface PluginApi {
    /** Members: find, list, create, update, delete (hooks fire as for any other change). */
    readonly members: MemberService;
    /** Roles: list with member counts, add, rename, delete. */
    readonly roles: RoleService;
  }
}

/**
 * Members and their roles, tags, passwords and sessions: the member pages (log in, account, password change and
 * reset), the admin login and first-run setup (administrators are members), and the Members admin pages.
 */
export const membersPlugin: CorePlugin = {
  name: 'members',
  description: 'Members, roles and tags; member login, account and password pages; the admin login, first-run setup and Members pages.',
  setup(api) {
    const { kernel } = api;
    const sessions = new MemberSessions(kernel.db, kernel.clock);
    const resets = new PasswordResetStore(kernel.db);
    const members = new MemberService(kernel.db, kernel.transactions, { sessions, resets }, kernel.secretBox);
    const sealed = members.sealStoredPendingPasswords();
    if (sealed > 0) kernel.logger.info({ passwords: sealed }, 'encrypted the pending passwords stored in plaintext with the site key');
    const site = api.siteSettings;
    const ctx: MembersContext = {
      ...kernel,
      members,
      roles: new RoleService(kernel.db, kernel.hooks, () => site.defaultRole()),
      sessions,
      resets,
      loginThrottle: new LoginThrottle(kernel.db, kernel.clock),
      bulk: new BulkActionStore(kernel.db),
      devices: new LoginDevices(kernel),
      admin: api.admin,
      site,
      get keap() {
        return api.keap;
      },
    };
    checkDefaultRole(ctx);
    // Deliveries normally release a password within a day (a job's retries span about 20 hours); one still here after
    // this long waits for nothing that will come, and a plaintext password must not sit in the database indefinitely.
    api.onStop(
      kernel.maintenance.add('pending-passwords', (now) => {
        const swept = members.sweepPendingPasswords(now, PENDING_PASSWORD_MAX_AGE_MS);
        return swept > 0 ? `deleted ${swept} pending passwords older than ${PENDING_PASSWORD_MAX_AGE_MS / DAY_MS} days` : undefined;
      }),
    );
    kernel.hooks.declareDurable(...DURABLE_MEMBER_ACTIONS, 'member.logged_in');
    api.provide('members', () => members);
    api.provide('roles', () => ctx.roles);

    api.jobs.define({ ...passwordResetEmail, run: (job) => sendPasswordResetEmail(ctx, job) });
    api.jobs.define({ ...memberBulkAction, run: (job) => runBulkAction(ctx, ctx.bulk, job) });
    api.router.use(memberRoutes(ctx));
    api.admin.setGate(adminGate(ctx));
    api.admin.addPage({ path: 'members', title: 'Members', menu: { label: 'Members', order: 20 }, handler: memberAdminRoutes(ctx) });
  },
};

/** The default role must exist and must not carry admin rights: checked once the database is open. */
function checkDefaultRole(ctx: MembersContext): void {
  const defaultRole = ctx.site.defaultRole();
  const role = ctx.members.role(defaultRole);
  if (!role) throw new StartupError(`Invalid setting DEFAULT_ROLE: no role named "${defaultRole}" exists`);
  if (role.isAdmin) throw new StartupError(`Invalid setting DEFAULT_ROLE: "${defaultRole}" has admin rights and cannot be a default`);
}
