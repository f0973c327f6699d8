/** The admin members-list pages the benchmarks time, and the timing loop (`bench:members`, `limits`). */
import { performance } from 'node:perf_hooks';
import type { MemberQuery } from '../../src/features/members/types.js';
import { percentile } from './stats.js';

export interface ListPage {
  name: string;
  path: string;
  /** The store query behind the page, for EXPLAIN QUERY PLAN; none for a page that is not a list. */
  query?: MemberQuery;
}

/** What the pages are built from: the member count, one member in the middle and a tag many members hold. */
export interface PageSample {
  members: number;
  member: { id: number; email: string; firstName: string; lastName: string; keapContactId: number | null };
  tagId: number;
}

const PAGE_SIZE = 50;

/** Every list page `bench:members` times. */
export function memberListPages({ members, member, tagId }: PageSample): ListPage[] {
  const lastPage = Math.ceil((members + 1) / PAGE_SIZE);
  const middle = Math.ceil(lastPage / 2);
  const emailPrefix = member.email.slice(0, member.email.indexOf('.') + 3);
  const namePrefix = member.lastName.slice(0, 4);
  const fullName = `${member.firstName} ${member.lastName}`;
  const domain = member.email.slice(member.email.indexOf('@'));
  const contactId = String(member.keapContactId ?? member.id);
  const page = (name: string, path: string, query: Omit<MemberQuery, 'pageSize' | 'page'> & { page?: number }): ListPage => ({
    name,
    path,
    // As the admin page asks: a search is counted no further than 10,000.
    query: { page: 1, pageSize: PAGE_SIZE, countLimit: 10_000, ...query },
  });
  return [
    page('first page', '/admin/members', {}),
    page('deep page (middle)', `/admin/members?page=${middle}`, { page: middle }),
    page('last page', `/admin/members?page=${lastPage}`, { page: lastPage }),
    page('search email prefix', `/admin/members?q=${encodeURIComponent(emailPrefix)}`, { q: emailPrefix }),
    page('search last-name prefix', `/admin/members?q=${encodeURIComponent(namePrefix)}`, { q: namePrefix }),
    page('search one letter', '/admin/members?q=m', { q: 'm' }),
    page('search full name', `/admin/members?q=${encodeURIComponent(fullName)}`, { q: fullName }),
    page('search email domain', `/admin/members?q=${encodeURIComponent(domain)}`, { q: domain }),
    page('search Keap contact id', `/admin/members?q=${contactId}`, { q: contactId }),
    page('role filter', '/admin/members?role=member', { role: 'member' }),
    page('tag filter', `/admin/members?tag=${tagId}`, { tag: tagId }),
    page('sort by name', '/admin/members?sort=name', { sort: 'name' }),
    page('sort by name, deep page', `/admin/members?sort=name&page=${middle}`, { sort: 'name', page: middle }),
    page('role + sort by name', '/admin/members?role=subscriber&sort=name', { role: 'subscriber', sort: 'name' }),
    page('role + tag + sort by email', `/admin/members?role=subscriber&tag=${tagId}&sort=email`, { role: 'subscriber', tag: tagId, sort: 'email' }),
    { name: 'member page', path: `/admin/members/${member.id}` },
  ];
}

export interface PageTiming {
  name: string;
  path: string;
  median: number;
  p95: number;
  /** Mean CPU ms per timed load, as `cpuMs` counts it (a total over the runs, so a coarse clock still adds up). */
  cpu: number;
  /** The list's `data-total` (members matching), as the page shows it. */
  matching: string;
}

/**
 * Loads each page `warmup + runs` times in turn over HTTP with the administrator's cookie and times the last
 * `runs` (the whole response, body read). `cpuMs` says how much CPU time has been used so far by whatever is to
 * be counted (this process, or the server's).
 */
export async function timePages(url: string, cookie: string, pages: ListPage[], options: { runs: number; warmup: number; cpuMs: () => number }): Promise<PageTiming[]> {
  const rows: PageTiming[] = [];
  for (const { name, path } of pages) {
    const times: number[] = [];
    let cpu = 0;
    let matching = '';
    for (let run = 0; run < options.warmup + options.runs; run++) {
      const c0 = options.cpuMs();
      const t0 = performance.now();
      const res = await fetch(`${url}${path}`, { headers: { cookie } });
      const html = await res.text();
      const ms = performance.now() - t0;
      const used = options.cpuMs() - c0;
      if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
      if (run >= options.warmup) {
        times.push(ms);
        cpu += used;
      }
      matching = /data-total="(\d+)"/.exec(html)?.[1] ?? '';
    }
    times.sort((a, b) => a - b);
    rows.push({ name, path, median: percentile(times, 50), p95: percentile(times, 95), cpu: cpu / options.runs, matching });
  }
  return rows;
}
