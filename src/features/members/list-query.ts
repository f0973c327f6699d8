import type { Request } from 'express';
import type { MembersContext } from './context.js';
import { MEMBER_SORTS, type MemberQuery, type MemberSort } from './types.js';

/** The members list's query string: read by the list, its CSV export and its bulk actions alike. */

export const PAGE_SIZE = 50;
export const ID_PATTERN = /^[1-9]\d{0,14}$/;

export interface ListForm {
  q: string;
  role: string;
  tag: string;
  sort: MemberSort;
  page: number;
}

/**
 * The list's query string as the form shows it and as the store takes it. A value that makes no sense (page=-1,
 * sort=evil, a role that does not exist) is dropped and named in `problems`; the page then answers 400.
 */
export function parseListQuery(ctx: MembersContext, raw: Request['query']): { form: ListForm; query: MemberQuery; problems: string[] } {
  const problems: string[] = [];
  const value = (name: string): string => {
    const v = raw[name];
    if (v === undefined) return '';
    if (typeof v === 'string') return v.trim();
    problems.push(`${name}: give it once.`);
    return '';
  };
  const form: ListForm = { q: value('q'), role: value('role'), tag: value('tag'), sort: 'newest', page: 1 };
  if (form.q.length > 100) {
    problems.push('Search: use at most 100 characters.');
    form.q = '';
  }
  if (form.role && !ctx.members.role(form.role)) {
    problems.push(`Role: there is no role "${form.role}".`);
    form.role = '';
  }
  if (form.tag && !ID_PATTERN.test(form.tag)) {
    problems.push('Tag: expected a tag id (a whole number).');
    form.tag = '';
  }
  const sort = value('sort');
  if ((MEMBER_SORTS as readonly string[]).includes(sort)) form.sort = sort as MemberSort;
  else if (sort) problems.push(`Sort: expected one of ${MEMBER_SORTS.join(', ')}.`);
  const page = value('page');
  if (/^\d{1,7}$/.test(page) && Number(page) >= 1) form.page = Number(page);
  else if (page) problems.push('Page: expected a whole number from 1.');
  const query: MemberQuery = { page: form.page, pageSize: PAGE_SIZE, sort: form.sort };
  if (form.q) query.q = form.q;
  if (form.role) query.role = form.role;
  if (form.tag) query.tag = Number(form.tag);
  return { form, query, problems };
}

/** `/admin/members?...` with only the values that differ from the defaults. */
export function listHref(form: ListForm): string {
  const params = new URLSearchParams();
  if (form.q) params.set('q', form.q);
  if (form.role) params.set('role', form.role);
  if (form.tag) params.set('tag', form.tag);
  if (form.sort !== 'newest') params.set('sort', form.sort);
  if (form.page > 1) params.set('page', String(form.page));
  const qs = params.toString();
  return qs ? `/admin/members?${qs}` : '/admin/members';
}
