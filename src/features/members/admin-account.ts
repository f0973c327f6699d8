import type { Logger } from '../../core/logger.js';
import { verifyPassword } from './passwords.js';
import type { MemberService } from './service.js';

/**
 * ADMIN_EMAIL / ADMIN_PASSWORD: make sure this administrator exists, with this password. While the variables are set,
 * ADMIN_PASSWORD is the administrator's password: a start that finds the account with any other password (one
 * changed in the site, or one a Keap member brought along) sets ADMIN_PASSWORD through the members service, which
 * ends the account's sessions and reset links. A start that finds it already in place changes nothing, so a plain
 * restart logs nobody out.
 *
 * Why not keep the password a member already had: a member synced from Keap may have a password that every Keap user
 * and integration can read in the contact's Password field; promoting it with that password would give them the
 * admin. The password is set before admin rights are given, so the account never holds both.
 */
export async function ensureConfiguredAdmin(members: MemberService, admin: { email: string; password: string }, logger: Logger): Promise<void> {
  const adminRole = members.roles().find((r) => r.isAdmin);
  if (!adminRole) throw new Error('no role with admin rights exists');
  const existing = members.findByEmail(admin.email);
  if (!existing) {
    const member = await members.createAdministrator(admin);
    logger.info({ member: member.id }, 'administrator from ADMIN_EMAIL created');
    return;
  }
  if (!(await verifyPassword(admin.password, members.passwordHash(existing.id)))) {
    await members.changePassword(existing.id, admin.password, 'configured');
    logger.info({ member: existing.id }, 'member from ADMIN_EMAIL given ADMIN_PASSWORD; its sessions and reset links were ended');
  }
  if (!existing.roleIsAdmin) {
    await members.update(existing.id, { profile: {}, role: adminRole.slug });
    logger.info({ member: existing.id }, 'member from ADMIN_EMAIL given admin rights');
  }
}
