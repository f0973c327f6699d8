import type { Logger } from '../../core/logger.js';
import type { MemberService } from './service.js';

/**
 * ADMIN_EMAIL / ADMIN_PASSWORD: make sure this administrator exists. An existing member with that email is
 * promoted; its password is set only when it has none, so a password changed in the site is not undone by
 * every restart.
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
  if (!existing.roleIsAdmin) {
    await members.update(existing.id, { profile: {}, role: adminRole.slug });
    logger.info({ member: existing.id }, 'member from ADMIN_EMAIL given admin rights');
  }
  if (members.passwordHash(existing.id) === null) await members.changePassword(existing.id, admin.password, 'configured');
}
