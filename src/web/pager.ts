/** What the admin list pages' pager partial shows: the page, the count shown, the links before and after. */
export interface Pager {
  page: number;
  pages: number;
  /** The 1-based positions of the first and last row shown (0 and 0 for an empty page). */
  from: number;
  to: number;
  prev: string | undefined;
  next: string | undefined;
  /** A page past the end of a list that has rows (an old link): the page offers the first one. */
  beyond: boolean;
  firstUrl: string;
}

/** The pager of page `page` (1-based) of `total` rows, `shown` of them on this page; `urlOf` links another page. */
export function pagerFor(page: number, pageSize: number, total: number, shown: number, urlOf: (page: number) => string): Pager {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const first = (page - 1) * pageSize;
  return {
    page,
    pages,
    from: shown ? first + 1 : 0,
    to: first + shown,
    prev: page > 1 ? urlOf(Math.min(page - 1, pages)) : undefined,
    next: page < pages ? urlOf(page + 1) : undefined,
    beyond: shown === 0 && total > 0,
    firstUrl: urlOf(1),
  };
}
