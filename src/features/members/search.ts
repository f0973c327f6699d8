/**
 * How the members list reads a search box: the text becomes a few index ranges, each a `SELECT id FROM members
 * WHERE ...` that one index answers, and a member matches when any of them holds it. What people type:
 * - the start of an email, username, first or last name: `ada`, `grace@exa`, `Hop`;
 * - a full name, either way round: `Grace Hopper`, `Hopper Grace`, `Hopper, Grace` (and `Mary Ann Smith` split at
 *   each space, since a first or last name may have spaces of its own);
 * - an email domain: `@example.com`, or `example.com` (the start of a domain, so `@example` works too);
 * - a number: a member id or a Keap contact id, as well as the start of a username.
 * Comparisons fold ASCII letters only, as SQLite's NOCASE does.
 */

/** One index range: the condition on a members row (`SELECT id FROM members WHERE <where>`) and its parameters. */
export interface SearchRange {
  where: string;
  params: Record<string, string | number>;
}

/** The email's domain, as the members_email_domain index (migration 008) holds it; queries must spell it the same. */
export const EMAIL_DOMAIN_SQL = "substr(email, instr(email, '@') + 1) COLLATE NOCASE";

const MAX_NAME_WORDS = 4;
const MAX_ID = 999_999_999_999_999;

/** The ranges that together find what `text` could mean; none for text with nothing to search by. */
export function searchRanges(text: string): SearchRange[] {
  const q = text.trim().replace(/\s+/g, ' ');
  if (q === '') return [];
  const ranges: SearchRange[] = [];
  let n = 0;
  // Every parameter gets its own name, so the ranges can be joined into one statement.
  const prefix = (column: string, value: string): { where: string; params: Record<string, string> } => {
    const { lo, hi } = prefixRange(value);
    const name = `s${n++}`;
    const params: Record<string, string> = { [`${name}lo`]: lo };
    if (hi === undefined) return { where: `${column} >= @${name}lo`, params };
    params[`${name}hi`] = hi;
    return { where: `${column} >= @${name}lo AND ${column} < @${name}hi`, params };
  };
  const add = (...parts: Array<{ where: string; params: Record<string, string | number> }>) =>
    ranges.push({ where: parts.map((p) => p.where).join(' AND '), params: Object.assign({}, ...parts.map((p) => p.params)) });

  if (q.startsWith('@')) {
    const domain = q.slice(1);
    if (domain !== '') add(prefix(EMAIL_DOMAIN_SQL, domain));
    return ranges;
  }
  for (const column of ['email', 'username', 'first_name COLLATE NOCASE', 'last_name COLLATE NOCASE']) add(prefix(column, q));

  if (/^\d+$/.test(q) && Number(q) <= MAX_ID && Number(q) > 0) {
    const name = `s${n++}`;
    add({ where: `id = @${name}`, params: { [name]: Number(q) } });
    add({ where: `keap_contact_id = @${name}`, params: { [name]: Number(q) } });
  } else if (/^[^\s@]+\.[^\s@]+$/.test(q)) {
    add(prefix(EMAIL_DOMAIN_SQL, q));
  }

  // "Last, First" says which is which; words without a comma may be either way round.
  const comma = /^([^,]+),([^,]+)$/.exec(q);
  const last = 'last_name COLLATE NOCASE';
  const first = 'first_name COLLATE NOCASE';
  if (comma) {
    add(prefix(last, comma[1]!.trim()), prefix(first, comma[2]!.trim()));
  } else {
    const words = q.split(' ');
    if (words.length >= 2 && words.length <= MAX_NAME_WORDS) {
      for (let i = 1; i < words.length; i++) {
        const before = words.slice(0, i).join(' ');
        const after = words.slice(i).join(' ');
        // The last name leads: members_name is (last, first), so the first name is checked inside that range.
        add(prefix(last, after), prefix(first, before));
        add(prefix(last, before), prefix(first, after));
      }
    }
  }
  return ranges;
}

/**
 * The NOCASE range holding every string that starts with `prefix`: `lo <= x < hi` compares like SQLite's NOCASE,
 * which folds only ASCII letters. `hi` is undefined when no string bounds it (the prefix is all U+10FFFF).
 */
export function prefixRange(prefix: string): { lo: string; hi: string | undefined } {
  const lo = prefix.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const points = Array.from(lo, (c) => c.codePointAt(0)!);
  while (points.length > 0) {
    let last = points.pop()! + 1;
    if (last > 0x10ffff) continue;
    if (last === 0xd800) last = 0xe000; // past the surrogates, which are not characters
    // After '@' comes 'A', which NOCASE reads as 'a': the next character a folded string can hold is '['.
    if (last === 0x41) last = 0x5b;
    return { lo, hi: String.fromCodePoint(...points, last) };
  }
  return { lo, hi: undefined };
}
