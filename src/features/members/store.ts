import type { Db } from '../../core/db.js';
import { selectPage } from '../../core/paging.js';

/** A member as every other feature sees it. */
export interface Member {
  id: number;
  email: string;
  username: string;
  role: string;
  roleIsAdmin: boolean;
  firstName: string;
  lastName: string;
  keapContactId: number | null;
  fields: Record<string, unknown>;
  tags: MemberTag[];
  createdAt: string;
  updatedAt: string;
}

export interface MemberTag {
  id: number;
  name: string;
  category: string;
}

export interface Role {
  id: number;
  slug: string;
  name: string;
  isAdmin: boolean;
  webhookAssignable: boolean;
}

export interface NewMember {
  email: string;
  username: string;
  roleId: number;
  passwordHash: string | null;
  firstName: string;
  lastName: string;
  keapContactId: number | null;
  fields: Record<string, unknown>;
}

export type MemberChanges = Partial<Pick<NewMember, 'email' | 'username' | 'roleId' | 'passwordHash' | 'firstName' | 'lastName' | 'keapContactId' | 'fields'>>;

export interface MemberQuery {
  email?: string;
  role?: string;
  tag?: number;
  /** Matches the start of email, username, first or last name. */
  q?: string;
  page: number;
  pageSize: number;
}

interface MemberRow {
  id: number;
  email: string;
  username: string;
  role_slug: string;
  role_is_admin: number;
  first_name: string;
  last_name: string;
  keap_contact_id: number | null;
  fields: string;
  created_at: string;
  updated_at: string;
}

const MEMBER_COLUMNS = `m.id, m.email, m.username, r.slug AS role_slug, r.is_admin AS role_is_admin, m.first_name, m.last_name,
  m.keap_contact_id, m.fields, m.created_at, m.updated_at`;
const MEMBER_FROM = 'members m JOIN roles r ON r.id = m.role_id';

const COLUMN_OF: Record<keyof MemberChanges, string> = {
  email: 'email',
  username: 'username',
  roleId: 'role_id',
  passwordHash: 'password_hash',
  firstName: 'first_name',
  lastName: 'last_name',
  keapContactId: 'keap_contact_id',
  fields: 'fields',
};

/** The SQL for members, their tags and roles. Other features go through MemberService, not this. */
export class MemberStore {
  private readonly byId;
  private readonly byContact;
  private readonly byEmail;
  private readonly byUsername;
  private readonly passwordHashStmt;
  private readonly insertStmt;
  private readonly deleteStmt;
  private readonly tagsStmt;
  private readonly deleteTagsStmt;
  private readonly insertTagStmt;
  private readonly roleBySlug;
  private readonly rolesStmt;
  private readonly savePendingStmt;
  private readonly pendingStmt;
  private readonly releaseKeapStmt;
  private readonly releaseEmailStmt;
  private readonly dropReleasedStmt;

  constructor(private readonly db: Db) {
    const one = (where: string) => db.prepare<[unknown], MemberRow>(`SELECT ${MEMBER_COLUMNS} FROM ${MEMBER_FROM} WHERE ${where}`);
    this.byId = one('m.id = ?');
    this.byContact = one('m.keap_contact_id = ?');
    this.byEmail = one('m.email = ?');
    this.byUsername = one('m.username = ?');
    this.passwordHashStmt = db.prepare<[number], { password_hash: string | null }>('SELECT password_hash FROM members WHERE id = ?');
    this.insertStmt = db.prepare(
      `INSERT INTO members (email, username, role_id, password_hash, first_name, last_name, keap_contact_id, fields)
       VALUES (@email, @username, @roleId, @passwordHash, @firstName, @lastName, @keapContactId, @fields)`,
    );
    this.deleteStmt = db.prepare('DELETE FROM members WHERE id = ?');
    this.tagsStmt = db.prepare<[number], MemberTag>('SELECT tag_id AS id, name, category FROM member_tags WHERE member_id = ? ORDER BY name, tag_id');
    this.deleteTagsStmt = db.prepare('DELETE FROM member_tags WHERE member_id = ?');
    this.insertTagStmt = db.prepare('INSERT INTO member_tags (member_id, tag_id, name, category) VALUES (?, ?, ?, ?)');
    const roleColumns = 'id, slug, name, is_admin, webhook_assignable';
    this.roleBySlug = db.prepare<[string], RoleRow>(`SELECT ${roleColumns} FROM roles WHERE slug = ?`);
    this.rolesStmt = db.prepare<[], RoleRow>(`SELECT ${roleColumns} FROM roles ORDER BY id`);
    this.savePendingStmt = db.prepare('INSERT INTO pending_passwords (member_id, password, awaiting_keap, awaiting_email) VALUES (?, ?, ?, ?)');
    this.pendingStmt = db.prepare<[number], { password: string }>('SELECT password FROM pending_passwords WHERE member_id = ?');
    this.releaseKeapStmt = db.prepare('UPDATE pending_passwords SET awaiting_keap = 0 WHERE member_id = ?');
    this.releaseEmailStmt = db.prepare('UPDATE pending_passwords SET awaiting_email = 0 WHERE member_id = ?');
    this.dropReleasedStmt = db.prepare('DELETE FROM pending_passwords WHERE member_id = ? AND awaiting_keap = 0 AND awaiting_email = 0');
  }

  /** Keeps a generated password until Keap's field and the welcome email both have it (see migration 002). */
  savePendingPassword(memberId: number, password: string, awaiting: { keap: boolean; email: boolean }): void {
    this.savePendingStmt.run(memberId, password, awaiting.keap ? 1 : 0, awaiting.email ? 1 : 0);
  }

  pendingPassword(memberId: number): string | undefined {
    return this.pendingStmt.get(memberId)?.password;
  }

  /** `keap` or `email` no longer needs the password; once neither does, it is deleted. */
  releasePendingPassword(memberId: number, by: 'keap' | 'email'): void {
    this.db.transaction(() => {
      (by === 'keap' ? this.releaseKeapStmt : this.releaseEmailStmt).run(memberId);
      this.dropReleasedStmt.run(memberId);
    })();
  }

  findById(id: number): Member | undefined {
    return this.hydrate(this.byId.get(id));
  }

  findByContactId(contactId: number): Member | undefined {
    return this.hydrate(this.byContact.get(contactId));
  }

  /** Case-insensitive (the column's collation). */
  findByEmail(email: string): Member | undefined {
    return this.hydrate(this.byEmail.get(email));
  }

  findByUsername(username: string): Member | undefined {
    return this.hydrate(this.byUsername.get(username));
  }

  passwordHash(id: number): string | null {
    return this.passwordHashStmt.get(id)?.password_hash ?? null;
  }

  /** Inserts a member; a clash on email, username or contact id throws SQLite's UNIQUE error. */
  insert(member: NewMember): number {
    const result = this.insertStmt.run({ ...member, fields: JSON.stringify(member.fields) });
    return Number(result.lastInsertRowid);
  }

  update(id: number, changes: MemberChanges): void {
    const entries = Object.entries(changes).filter(([, v]) => v !== undefined) as Array<[keyof MemberChanges, unknown]>;
    if (entries.length === 0) return;
    const sets = entries.map(([key]) => `${COLUMN_OF[key]} = @${key}`).join(', ');
    const params = Object.fromEntries(entries.map(([key, value]) => [key, key === 'fields' ? JSON.stringify(value) : value]));
    this.db
      .prepare(`UPDATE members SET ${sets}, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = @id`)
      .run({ ...params, id });
  }

  delete(id: number): boolean {
    return this.deleteStmt.run(id).changes === 1;
  }

  tags(memberId: number): MemberTag[] {
    return this.tagsStmt.all(memberId);
  }

  /** Makes the member's tags exactly `tags`; call inside a transaction. */
  replaceTags(memberId: number, tags: MemberTag[]): void {
    this.deleteTagsStmt.run(memberId);
    for (const tag of tags) this.insertTagStmt.run(memberId, tag.id, tag.name, tag.category);
  }

  list(query: MemberQuery): { members: Member[]; total: number } {
    // Prefix matches can use the NOCASE indexes on email and username; names are a scan of the filtered set.
    const prefix = query.q ? `${query.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : undefined;
    const { rows, total } = selectPage<MemberRow>(
      this.db,
      {
        columns: MEMBER_COLUMNS,
        from: MEMBER_FROM,
        conditions: [
          { sql: 'm.email = @email', param: 'email', value: query.email },
          { sql: 'r.slug = @role', param: 'role', value: query.role },
          { sql: 'EXISTS (SELECT 1 FROM member_tags t WHERE t.member_id = m.id AND t.tag_id = @tag)', param: 'tag', value: query.tag },
          {
            sql: `(m.email LIKE @q ESCAPE '\\' OR m.username LIKE @q ESCAPE '\\' OR m.first_name LIKE @q ESCAPE '\\' OR m.last_name LIKE @q ESCAPE '\\')`,
            param: 'q',
            value: prefix,
          },
        ],
        orderBy: 'm.id',
      },
      query,
    );
    return { members: rows.map((row) => this.hydrate(row)!), total };
  }

  roleBySlugOrUndefined(slug: string): Role | undefined {
    const row = this.roleBySlug.get(slug);
    return row && toRole(row);
  }

  roles(): Role[] {
    return this.rolesStmt.all().map(toRole);
  }

  private hydrate(row: MemberRow | undefined): Member | undefined {
    if (!row) return undefined;
    return {
      id: row.id,
      email: row.email,
      username: row.username,
      role: row.role_slug,
      roleIsAdmin: row.role_is_admin === 1,
      firstName: row.first_name,
      lastName: row.last_name,
      keapContactId: row.keap_contact_id,
      fields: JSON.parse(row.fields) as Record<string, unknown>,
      tags: this.tags(row.id),
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
  }
}

interface RoleRow {
  id: number;
  slug: string;
  name: string;
  is_admin: number;
  webhook_assignable: number;
}

function toRole(row: RoleRow): Role {
  return { id: row.id, slug: row.slug, name: row.name, isAdmin: row.is_admin === 1, webhookAssignable: row.webhook_assignable === 1 };
}

/** True for SQLite's unique-constraint error on the given column (e.g. `members.email`). */
export function isUniqueViolation(err: unknown, column?: string): boolean {
  const e = err as { code?: string; message?: string };
  if (e?.code !== 'SQLITE_CONSTRAINT_UNIQUE') return false;
  return column === undefined || (e.message ?? '').includes(column);
}
