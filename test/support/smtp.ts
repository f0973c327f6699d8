import { SMTPServer, type SMTPServerError } from 'smtp-server';
import type { AddressInfo } from 'node:net';

export interface ReceivedMessage {
  /** envelope sender (MAIL FROM) */
  from: string;
  /** envelope recipients (RCPT TO) */
  to: string[];
  raw: string;
  headers: Map<string, string>;
  subject: string;
  text: string;
  html: string | undefined;
}

export interface TestSmtpServer {
  /** `smtp://127.0.0.1:PORT`, with `user:pass@` when the server requires a login */
  url: string;
  messages: ReceivedMessage[];
  /** answer 451 to the next `n` messages */
  failNext(n: number): void;
  close(): Promise<void>;
}

/**
 * A real SMTP server on loopback (smtp-server), plain text, no STARTTLS. With `user`/`pass` it requires that
 * login (over plain text, fine on loopback); otherwise login is optional.
 */
export async function startSmtpServer(
  options: {
    user?: string;
    pass?: string;
    /** answer 451 to the next N messages */
    failNext?: number;
    /** quote the rejected login, password included, in the 535 answer: a badly behaved server */
    echoFailedLogin?: boolean;
  } = {},
): Promise<TestSmtpServer> {
  const messages: ReceivedMessage[] = [];
  let failures = options.failNext ?? 0;
  const requireAuth = options.user !== undefined;

  const server = new SMTPServer({
    logger: false,
    secure: false,
    disabledCommands: requireAuth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    authOptional: !requireAuth,
    allowInsecureAuth: true,
    closeTimeout: 1000,
    onAuth(auth, _session, callback) {
      if (auth.username === options.user && auth.password === options.pass) return callback(null, { user: auth.username });
      const error: SMTPServerError = new Error(
        options.echoFailedLogin ? `Authentication credentials invalid for ${auth.username}:${auth.password ?? ''}` : 'Authentication credentials invalid',
      );
      error.responseCode = 535;
      callback(error);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (err) => callback(err));
      stream.on('end', () => {
        if (failures > 0) {
          failures -= 1;
          const error: SMTPServerError = new Error('Try again later');
          error.responseCode = 451;
          return callback(error);
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const parsed = parseMessage(raw);
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          raw,
          ...parsed,
        });
        callback(null, 'Queued');
      });
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.server.address() as AddressInfo;
  const auth = requireAuth ? `${encodeURIComponent(options.user ?? '')}:${encodeURIComponent(options.pass ?? '')}@` : '';

  return {
    url: `smtp://${auth}127.0.0.1:${port}`,
    messages,
    failNext(n) {
      failures = n;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A small RFC 822/MIME reader, enough for what nodemailer produces: unfolded headers, encoded words in the
 * subject, multipart/alternative, quoted-printable and base64 bodies.
 */
export function parseMessage(raw: string): { headers: Map<string, string>; subject: string; text: string; html: string | undefined } {
  const part = parsePart(raw);
  const subject = decodeWords(part.headers.get('subject') ?? '');
  const leaves = flatten(part);
  const text = leaves.find((leaf) => leaf.type === 'text/plain')?.body ?? '';
  const html = leaves.find((leaf) => leaf.type === 'text/html')?.body;
  return { headers: part.headers, subject, text, html };
}

interface Part {
  headers: Map<string, string>;
  rawBody: string;
}

function parsePart(raw: string): Part {
  const normalised = raw.replace(/\r\n/g, '\n');
  const split = normalised.indexOf('\n\n');
  const head = split === -1 ? normalised : normalised.slice(0, split);
  const rawBody = split === -1 ? '' : normalised.slice(split + 2);
  const headers = new Map<string, string>();
  for (const line of head.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return { headers, rawBody };
}

function flatten(part: Part): Array<{ type: string; body: string }> {
  const contentType = part.headers.get('content-type') ?? 'text/plain';
  const type = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  if (type.startsWith('multipart/')) {
    const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
    if (!boundary) return [];
    const sections = part.rawBody.split(`--${boundary}`).slice(1);
    return sections.filter((section) => !section.startsWith('--')).flatMap((section) => flatten(parsePart(section.replace(/^\n/, ''))));
  }
  const encoding = (part.headers.get('content-transfer-encoding') ?? '7bit').toLowerCase();
  let body = part.rawBody;
  if (encoding === 'quoted-printable') body = decodeQuotedPrintable(body);
  else if (encoding === 'base64') body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  return [{ type, body: body.replace(/\n$/, '') }];
}

function decodeQuotedPrintable(input: string): string {
  const bytes: number[] = [];
  const text = input.replace(/=\n/g, '');
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    const hex = text.slice(i + 1, i + 3);
    if (char === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(char ?? '', 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** RFC 2047 encoded words (`=?UTF-8?Q?...?=`, `=?UTF-8?B?...?=`); whitespace between two of them is dropped. */
function decodeWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, '$1$2')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_match, _charset: string, encoding: string, data: string) =>
      encoding.toUpperCase() === 'B'
        ? Buffer.from(data, 'base64').toString('utf8')
        : decodeQuotedPrintable(data.replace(/_/g, ' ')),
    );
}
