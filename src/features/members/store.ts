import type { Db } from '../../core/db.js';
import { searchRanges, type SearchRange } from './search.js';
import type { HeldTag, Member, MemberPage, MemberQuery, MemberSort, MemberTag, Role, RoleCount } from './types.js';

export { prefixRange } from './search.js';

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
  blocked_at: string | null;
  blocked_reason: string | null;
  created_at: string;
  updated_at: string;
}

const MEMBER_COLUMNS = `m.id, m.email, m.username, r.slug AS role_slug, r.is_admin AS role_is_admin, m.first_name, m.last_name,
  m.keap_contact_id, m.fields, m.blocked_at, m.blocked_reason, m.created_at, m.updated_at`;
const MEMBER_FROM = 'members m JOIN roles r ON r.id = m.role_id';

/*
 * Each order ends with the id so that pages never overlap or skip rows among equal names. Every one of them can be
 * read straight off an index: the rowid, members_email_unique (NOCASE) and members_name (migration 003), whose
 * entries end with the rowid.
 */
const ORDER_BY: Record<MemberSort, string> = {
  newest: 'm.id DESC',
  oldest: 'm.id',
  email: 'm.email, m.id',
  name: 'm.last_name COLLATE NOCASE, m.first_name COLLATE NOCASE, m.id',
};

/** A tag held by this many members or more is tested member by member rather than listed (see `commonTag`). */
const COMMON_TAG = 5_000;
/** The tag filter as a list of the tag's members (the usual plan), and as a test of each row (see `commonTag`). */
const TAG_LISTED = 'm.id IN (SELECT t.member_id FROM member_tags t WHERE t.tag_id = @tag)';
const TAG_TESTED = 'EXISTS (SELECT 1 FROM member_tags t WHERE t.member_id = m.id AND t.tag_id = @tag)';

/** A search range holding this many members or more is too wide to build an id set of (about 2 ms per range to find out). */
const WIDE_RANGE = 50_001;

/** For a walk of the list in a sort's order: the table itself (by id) or the index already in that order. */
const WALK_IN_ORDER: Record<MemberSort, string> = {
  newest: 'NOT INDEXED',
  oldest: 'NOT INDEXED',
  email: 'INDEXED BY members_email_unique',
  name: 'INDEXED BY members_name',
};

/** A list query narrowed to a stretch of member ids (a batch of a bulk action: ids after the last one done). */
export interface ListScope extends MemberQuery {
  idAfter?: number;
  idThrough?: number;
}

interface ListSql {
  count: string;
  page: string;
  params: Record<string, unknown>;
  pageParams: Record<string, unknown>;
  /** The WHERE clause of count and page (with its parameters in `params`). */
  clause: string;
  /** For a tag many members hold: a page query that tests the tag row by row instead of listing its members. */
  commonTag: { page: string } | undefined;
  /** A search's ranges, and the queries `list` chooses from when it counts only as far as `countLimit`. */
  search: { ranges: SearchRange[]; filtered: boolean; cappedCount: string; walkPage: string; testedCount: string; testedPage: string } | undefined;
}

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
  private readonly byIdsStmt;
  private readonly tagsByIdsStmt;
  private readonly heldTagsStmt;
  private readonly countAdminsStmt;
  private readonly countByRoleStmt;

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
    this.byIdsStmt = db.prepare<[string], MemberRow>(`SELECT ${MEMBER_COLUMNS} FROM ${MEMBER_FROM} WHERE m.id IN (SELECT value FROM json_each(?))`);
    this.tagsByIdsStmt = db.prepare<[string], MemberTag & { member_id: number }>(
      'SELECT member_id, tag_id AS id, name, category FROM member_tags WHERE member_id IN (SELECT value FROM json_each(?)) ORDER BY name, tag_id',
    );
    this.heldTagsStmt = db.prepare<[], HeldTag>(
      `WITH RECURSIVE held(id) AS (
         SELECT min(tag_id) FROM member_tags
         UNION ALL
         SELECT (SELECT min(tag_id) FROM member_tags WHERE tag_id > held.id) FROM held WHERE held.id IS NOT NULL)
       SELECT id, (SELECT name FROM member_tags WHERE tag_id = held.id LIMIT 1) AS name FROM held WHERE id IS NOT NULL ORDER BY name, id`,
    );
    this.countAdminsStmt = db
      .prepare<[], number>('SELECT count(*) FROM members m WHERE m.role_id IN (SELECT id FROM roles WHERE is_admin = 1)')
      .pluck();
    // One index range per role (members_role), not a scan of the members table.
    this.countByRoleStmt = db.prepare<[], { slug: string; name: string; is_admin: number; n: number }>(
      'SELECT r.slug, r.name, r.is_admin, (SELECT count(*) FROM members m WHERE m.role_id = r.id) AS n FROM roles r ORDER BY r.id',
    );
  }

  countByRole(): RoleCount[] {
    return this.countByRoleStmt.all().map((r) => ({ slug: r.slug, name: r.name, isAdmin: r.is_admin === 1, members: r.n }));
  }

  findById(id: number): Member | undefined {
    return this.hydrate(this.byId.get(id));
  }

  /** Which of these Keap contact ids have a member linked to them: one query for a whole delivery or page. */
  linkedContactIds(contactIds: readonly number[]): Set<number> {
    if (contactIds.length === 0) return new Set();
    const rows = this.db
      .prepare<[string], number>('SELECT keap_contact_id FROM members WHERE keap_contact_id IN (SELECT value FROM json_each(?))')
      .pluck()
      .all(JSON.stringify(contactIds));
    return new Set(rows);
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

  /** Blocks (with when and why) or unblocks (null) a member; call inside the transaction that ends its sessions. */
  setBlocked(id: number, blocked: { at: string; reason: string } | null): boolean {
    return (
      this.db
        .prepare("UPDATE members SET blocked_at = ?, blocked_reason = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?")
        .run(blocked?.at ?? null, blocked?.reason ?? null, id).changes === 1
    );
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

  /**
   * One page of members and how many match. Built to stay fast at a million members (see `npm run bench:members`):
   * - a search is a few index ranges (see search.ts: name prefixes, a full name, an email domain, an id), read as a
   *   union of index ranges; LIKE could use an index only on the two NOCASE columns;
   * - the role is resolved to its id first, so the role filter is a range of members_role, not a join;
   * - the page's ids are chosen from indexes alone, and only those 50 rows (and their tags) are read, so a deep
   *   page skips index entries rather than whole rows;
   * - with `countLimit`, a search that matches more than that many is counted only that far, and its page is found
   *   by testing rows rather than building the id set of every match when that set would be large.
   */
  list(query: ListScope): MemberPage {
    const sql = this.listSql(query);
    if (!sql) return { members: [], total: 0, totalIsLowerBound: false };
    const limit = query.countLimit;
    let total: number;
    let totalIsLowerBound = false;
    let page = sql.page;
    const count = (text: string) => this.db.prepare<Record<string, unknown>, number>(text).pluck().get({ ...sql.params, cap: (limit ?? 0) + 1 })!;
    if (sql.commonTag && sql.search === undefined && query.role) {
      // A role and a common tag: the tag's list of members is long, so the page walks the role's index in the sort's
      // order testing the tag (found within a few hundred rows), and the count stops at the limit when there is one.
      page = sql.commonTag.page;
      if (limit === undefined) total = count(sql.count);
      else {
        const found = count(`SELECT count(*) FROM (SELECT 1 FROM members m ${sql.clause} LIMIT @cap)`);
        [total, totalIsLowerBound] = found > limit ? [limit, true] : [found, false];
      }
    } else if (limit === undefined || sql.search === undefined) {
      total = count(sql.count);
    } else {
      const sizes = this.rangeSizes(sql.search.ranges, sql.search.filtered ? WIDE_RANGE : limit + 1);
      if (!sql.search.filtered && sizes.some((n) => n > limit)) {
        // One range alone holds more than the limit: so does the search, and counting it further is what is slow.
        [total, totalIsLowerBound, page] = [limit, true, sql.search.walkPage];
      } else {
        // A search of modest ranges: its id set is cheap to build, so count through it (as far as the limit). A
        // search with a wide range and a role or tag: test rows along the filter's index instead of building the set.
        const wide = sizes.some((n) => n >= WIDE_RANGE);
        const found = count(wide ? sql.search.testedCount : sql.search.cappedCount);
        [total, totalIsLowerBound] = found > limit ? [limit, true] : [found, false];
        if (wide) page = sql.search.testedPage;
      }
    }
    if (total === 0) return { members: [], total, totalIsLowerBound };
    const rows = this.db.prepare<Record<string, unknown>, number>(page).pluck().all(sql.pageParams);
    return { members: this.membersByIds(rows), total, totalIsLowerBound };
  }

  /**
   * The ids of the members the list's filters match, in the list's order, all of them or the first `limit`: for an
   * export or a bulk action. A search is tested row by row along the list's order when its ranges are wide, as
   * `list` does past its count limit.
   */
  listIds(query: Omit<ListScope, 'page' | 'pageSize'>, limit = -1): number[] {
    const sql = this.listSql({ ...query, page: 1, pageSize: limit });
    if (!sql) return [];
    const wide = sql.search !== undefined && !sql.search.filtered && this.rangeSizes(sql.search.ranges, WIDE_RANGE).some((n) => n >= WIDE_RANGE);
    // LIMIT -1 is SQLite's "no limit".
    return this.db.prepare<Record<string, unknown>, number>(wide ? sql.search!.walkPage : sql.page).pluck().all({ ...sql.pageParams, offset: 0 });
  }

  /** The members with these ids, in this order, with their tags (for reading a long list in batches). */
  byIds(ids: number[]): Member[] {
    return this.membersByIds(ids);
  }

  /** The highest member id so far (0 with no members). */
  maxId(): number {
    return this.db.prepare<[], number>('SELECT coalesce(max(id), 0) FROM members').pluck().get()!;
  }

  /** Whether at least `n` members hold the tag (an index range read, stopped at n). */
  private tagHeldByAtLeast(tag: number, n: number): boolean {
    return this.db.prepare<[number, number], number>('SELECT count(*) FROM (SELECT 1 FROM member_tags WHERE tag_id = ? LIMIT ?)').pluck().get(tag, n)! >= n;
  }

  /**
   * How many members each range holds, counting each no further than `cap` (an index range read, stopped early);
   * once one range reaches the cap the rest are not read.
   */
  private rangeSizes(ranges: SearchRange[], cap: number): number[] {
    const sizes: number[] = [];
    for (const r of ranges) {
      sizes.push(this.db.prepare<Record<string, unknown>, number>(`SELECT count(*) FROM (SELECT 1 FROM members WHERE ${r.where} LIMIT @cap)`).pluck().get({ ...r.params, cap })!);
      if (sizes.at(-1)! >= cap) break;
    }
    return sizes;
  }

  /** What `EXPLAIN QUERY PLAN` says of the list's queries for `query` (the benchmark prints it). */
  explainList(query: MemberQuery): { count: string[]; page: string[]; walkPage: string[] } {
    const sql = this.listSql(query);
    if (!sql) return { count: [], page: [], walkPage: [] };
    const plan = (text: string, params: Record<string, unknown>) =>
      this.db.prepare<Record<string, unknown>, { detail: string }>(`EXPLAIN QUERY PLAN ${text}`).all(params).map((r) => r.detail);
    return { count: plan(sql.count, sql.params), page: plan(sql.page, sql.pageParams), walkPage: sql.search ? plan(sql.search.walkPage, sql.pageParams) : [] };
  }

  /** The list's count and page queries; undefined when nothing can match (a role no role has). */
  private listSql(query: ListScope): ListSql | undefined {
    let roleId: number | undefined;
    if (query.role !== undefined && query.role !== '') {
      roleId = this.roleBySlug.get(query.role)?.id;
      if (roleId === undefined) return undefined;
    }
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (query.email) {
      where.push('m.email = @email');
      params.email = query.email;
    }
    if (roleId !== undefined) {
      where.push('m.role_id = @roleId');
      params.roleId = roleId;
    }
    if (query.tag !== undefined) {
      where.push(TAG_LISTED);
      params.tag = query.tag;
    }
    if (query.idAfter !== undefined) {
      where.push('m.id > @idAfter');
      params.idAfter = query.idAfter;
    }
    if (query.idThrough !== undefined) {
      where.push('m.id <= @idThrough');
      params.idThrough = query.idThrough;
    }
    const filters = [...where];
    const ranges = query.q ? searchRanges(query.q) : [];
    // Text that can mean nothing (an @ alone) matches nobody rather than everybody.
    if (query.q?.trim() && ranges.length === 0) return undefined;
    if (ranges.length > 0) {
      // One index range per part, as a union: SQLite's OR optimisation does not take ranges on COLLATE expressions.
      where.push(`m.id IN (${ranges.map((r) => `SELECT id FROM members WHERE ${r.where}`).join(' UNION ALL ')})`);
      for (const r of ranges) Object.assign(params, r.params);
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    // Counting through `m.id IN (...)` builds the whole id list and then looks every id up in members: at a million
    // members, 75 ms for a tag 6% hold, over 200 ms for a one-letter search (npm run limits). When that set is the
    // only filter it is counted from the indexes alone: a tag's rows in member_tags (each is one member: the primary
    // key is (member_id, tag_id) and the foreign key deletes them with the member), or the search's ids without
    // repeats.
    let count = `SELECT count(*) FROM members m ${clause}`;
    if (where.length === 1 && query.tag !== undefined) count = 'SELECT count(*) FROM member_tags WHERE tag_id = @tag';
    else if (where.length === 1 && ranges.length > 0) count = `SELECT count(*) FROM (${ranges.map((r) => `SELECT id FROM members WHERE ${r.where}`).join(' UNION ')})`;
    const sort = query.sort ?? 'newest';
    const paging = `ORDER BY ${ORDER_BY[sort]} LIMIT @limit OFFSET @offset`;
    const matching = [...filters, `(${ranges.map((r) => `(${r.where})`).join(' OR ')})`].join(' AND ');
    return {
      count,
      page: `SELECT m.id FROM members m ${clause} ${paging}`,
      clause,
      commonTag:
        query.tag !== undefined && this.tagHeldByAtLeast(query.tag, COMMON_TAG)
          ? { page: `SELECT m.id FROM members m WHERE ${where.map((w) => (w === TAG_LISTED ? TAG_TESTED : w)).join(' AND ')} ${paging}` }
          : undefined,
      params,
      pageParams: { ...params, limit: query.pageSize, offset: (query.page - 1) * query.pageSize },
      search:
        ranges.length === 0
          ? undefined
          : {
              ranges,
              filtered: filters.length > 0,
              cappedCount: `SELECT count(*) FROM (SELECT 1 FROM members m ${clause} LIMIT @cap)`,
              // Testing each row as it comes instead of building the id set of every match: walking the list in its
              // order (a page of 50 within 50 / share rows) or along the role's or tag's index.
              walkPage: `SELECT m.id FROM members m ${WALK_IN_ORDER[sort]} WHERE ${matching} ${paging}`,
              testedCount: `SELECT count(*) FROM (SELECT 1 FROM members m WHERE ${matching} LIMIT @cap)`,
              testedPage: `SELECT m.id FROM members m WHERE ${matching} ${paging}`,
            },
    };
  }

  /** The members with these ids, in this order, with their tags: two queries whatever the count. */
  private membersByIds(ids: number[]): Member[] {
    if (ids.length === 0) return [];
    const json = JSON.stringify(ids);
    const rows = this.byIdsStmt.all(json);
    const tagsOf = new Map<number, MemberTag[]>();
    for (const t of this.tagsByIdsStmt.all(json)) {
      let list = tagsOf.get(t.member_id);
      if (!list) tagsOf.set(t.member_id, (list = []));
      list.push({ id: t.id, name: t.name, category: t.category });
    }
    const byId = new Map(rows.map((row) => [row.id, row]));
    return ids.flatMap((id) => {
      const row = byId.get(id);
      return row ? [this.toMember(row, tagsOf.get(id) ?? [])] : [];
    });
  }

  /**
   * Every tag some member holds, by name. A loose index scan of member_tags_tag (one seek per distinct tag), so it
   * costs the number of tags, not the number of members times their tags.
   */
  heldTags(): HeldTag[] {
    return this.heldTagsStmt.all();
  }

  /** Members whose role has admin rights. */
  countAdministrators(): number {
    return this.countAdminsStmt.get()!;
  }

  roleBySlugOrUndefined(slug: string): Role | undefined {
    const row = this.roleBySlug.get(slug);
    return row && toRole(row);
  }

  roles(): Role[] {
    return this.rolesStmt.all().map(toRole);
  }

  private hydrate(row: MemberRow | undefined): Member | undefined {
    return row && this.toMember(row, this.tags(row.id));
  }

  private toMember(row: MemberRow, tags: MemberTag[]): Member {
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
      tags,
      blocked: row.blocked_at === null ? null : { at: row.blocked_at, reason: row.blocked_reason ?? '' },
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
  }
}

/** A row of `roles` as SQLite returns it; the Roles admin store reads the same columns. */
export interface RoleRow {
  id: number;
  slug: string;
  name: string;
  is_admin: number;
  webhook_assignable: number;
}

export function toRole(row: RoleRow): Role {
  return { id: row.id, slug: row.slug, name: row.name, isAdmin: row.is_admin === 1, webhookAssignable: row.webhook_assignable === 1 };
}
