import type { Db } from './db.js';

export interface PageRequest {
  /** 1-based. */
  page: number;
  pageSize: number;
}

/** A filter condition that applies only when its value is given; `sql` names the value as `@param`. */
export interface OptionalCondition {
  sql: string;
  param: string;
  value: unknown;
}

/**
 * One page of a filtered list and the total it is a page of. The SQL fragments are the caller's constants; only
 * values travel as parameters.
 */
export function selectPage<Row>(
  db: Db,
  query: { columns: string; from: string; conditions: OptionalCondition[]; orderBy: string },
  page: PageRequest,
): { rows: Row[]; total: number } {
  const given = query.conditions.filter((c) => c.value !== undefined && c.value !== null && c.value !== '');
  const clause = given.length ? `WHERE ${given.map((c) => c.sql).join(' AND ')}` : '';
  const params = Object.fromEntries(given.map((c) => [c.param, c.value]));
  const total = db.prepare<Record<string, unknown>, { n: number }>(`SELECT count(*) AS n FROM ${query.from} ${clause}`).get(params)!.n;
  const rows = db
    .prepare<Record<string, unknown>, Row>(`SELECT ${query.columns} FROM ${query.from} ${clause} ORDER BY ${query.orderBy} LIMIT @limit OFFSET @offset`)
    .all({ ...params, limit: page.pageSize, offset: (page.page - 1) * page.pageSize });
  return { rows, total };
}
