/**
 * One CSV line (RFC 4180: every field quoted, quotes doubled, CRLF at the end). A field that a spreadsheet would read
 * as a formula (starting with = + - @, a tab or a carriage return) is prefixed with an apostrophe, as OWASP's
 * "CSV injection" advice says: member names and emails come from Keap and from sign-ups, not from the admin.
 */
export function csvLine(values: Array<string | number | null | undefined>): string {
  return `${values.map((v) => `"${neutralise(v === null || v === undefined ? '' : String(v)).replaceAll('"', '""')}"`).join(',')}\r\n`;
}

function neutralise(text: string): string {
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}
