import type { Db } from '../../core/db.js';
import { toRole, type RoleRow } from './store.js';
import type { Role, RoleSummary } from './types.js';

interface RoleSummaryRow extends RoleRow {
  members: number;
  created_at: string;
}

const SUMMARY = `SELECT r.id, r.slug, r.name, r.is_admin, r.webhook_assignable, r.created_at, count(m.id) AS members
  FROM roles r LEFT JOIN members m ON m.role_id = r.id`;

/** The SQL for the roles table. Other features go through RoleService (or MemberService for lookups), not this. */
export class RoleStore {
  private readonly listStmt;
  private readonly byIdStmt;
  private readonly bySlugStmt;
  private readonly insertStmt;
  private readonly renameStmt;
  private readonly webhookStmt;
  private readonly deleteStmt;

  constructor(private readonly db: Db) {
    // One GROUP BY for every role's member count (members_role index).
    this.listStmt = db.prepare<[], RoleSummaryRow>(`${SUMMARY} GROUP BY r.id ORDER BY r.is_admin DESC, r.name COLLATE NOCASE, r.id`);
    this.byIdStmt = db.prepare<[number], RoleSummaryRow>(`${SUMMARY} WHERE r.id = ? GROUP BY r.id`);
    this.bySlugStmt = db.prepare<[string], RoleSummaryRow>(`${SUMMARY} WHERE r.slug = ? GROUP BY r.id`);
    // Never an admin role from here: admin rights come only with the seeded administrator role.
    this.insertStmt = db.prepare<{ slug: string; name: string; webhookAssignable: number }, { id: number }>(
      'INSERT INTO roles (slug, name, is_admin, webhook_assignable) VALUES (@slug, @name, 0, @webhookAssignable) RETURNING id',
    );
    this.renameStmt = db.prepare('UPDATE roles SET name = ? WHERE id = ?');
    this.webhookStmt = db.prepare('UPDATE roles SET webhook_assignable = ? WHERE id = ? AND is_admin = 0');
    // The member check and the delete in one statement: a member given the role in between cannot be orphaned
    // (the foreign key would refuse anyway; this makes the refusal an answer instead of an error).
    this.deleteStmt = db.prepare(
      'DELETE FROM roles WHERE id = @id AND is_admin = 0 AND slug <> @keep AND NOT EXISTS (SELECT 1 FROM members WHERE role_id = @id)',
    );
  }

  list(): RoleSummary[] {
    return this.listStmt.all().map(toSummary);
  }

  findById(id: number): RoleSummary | undefined {
    const row = this.byIdStmt.get(id);
    return row && toSummary(row);
  }

  findBySlug(slug: string): RoleSummary | undefined {
    const row = this.bySlugStmt.get(slug);
    return row && toSummary(row);
  }

  /** Throws SQLite's UNIQUE error untouched when the slug is taken. */
  insert(role: { slug: string; name: string; webhookAssignable: boolean }): number {
    return this.insertStmt.get({ slug: role.slug, name: role.name, webhookAssignable: role.webhookAssignable ? 1 : 0 })!.id;
  }

  rename(id: number, name: string): boolean {
    return this.renameStmt.run(name, id).changes === 1;
  }

  setWebhookAssignable(id: number, on: boolean): boolean {
    return this.webhookStmt.run(on ? 1 : 0, id).changes === 1;
  }

  /** Deletes a role no member holds, that has no admin rights and is not `keep` (the default role). */
  deleteUnused(id: number, keep: string): boolean {
    return this.deleteStmt.run({ id, keep }).changes === 1;
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }
}

function toSummary(row: RoleSummaryRow): RoleSummary {
  return { ...toRole(row), members: row.members, createdAt: row.created_at };
}
