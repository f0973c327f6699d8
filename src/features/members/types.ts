/** The members feature's records, as every other feature sees them (its SQL stays in store.ts). */

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
  /** When and why the member was blocked (it cannot log in), or null. */
  blocked: { at: string; reason: string } | null;
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

/** The orders a member list may be sorted in; the SQL for each is a constant here, never taken from a request. */
export const MEMBER_SORTS = ['newest', 'oldest', 'email', 'name'] as const;
export type MemberSort = (typeof MEMBER_SORTS)[number];

export interface MemberQuery {
  /** Exact email (case-insensitive). */
  email?: string;
  /** Role slug; a slug no role has matches nobody. */
  role?: string;
  /** Keap tag id the member holds. */
  tag?: number;
  /**
   * What someone typed in a search box: the start of an email, username, first or last name, a full name, an email
   * domain, a member or Keap contact id (ASCII case-insensitive; see search.ts).
   */
  q?: string;
  /** Default `newest`. */
  sort?: MemberSort;
  page: number;
  pageSize: number;
  /** Stop counting a search past this many: the total is then this figure and only a lower bound. */
  countLimit?: number;
}

export interface MemberPage {
  members: Member[];
  total: number;
  /** The search matched more than the query's countLimit; `total` is that limit. */
  totalIsLowerBound: boolean;
}

/** A role and how many members hold it. */
export interface RoleCount {
  slug: string;
  name: string;
  isAdmin: boolean;
  members: number;
}

/** A tag at least one member holds. */
export interface HeldTag {
  id: number;
  name: string;
}

/** A role as the admin Roles page sees it: the role and how many members hold it. */
export interface RoleSummary extends Role {
  members: number;
  createdAt: string;
}

