import type { Transporter } from 'nodemailer';
import { randomUUID } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from './logger.js';

/** One recipient, as nodemailer takes it: the address is never parsed, so it can never become a list. */
export interface MailRecipient {
  address: string;
  /** The display name; '' or absent for none. */
  name?: string;
}

export interface MailMessage {
  /**
   * Exactly one recipient. A string must be one plain address (`ada@example.com`): a value nodemailer would read as a
   * list (`victim@example.com, attacker@evil.test`) or with a display name is refused, never sent to anyone.
   */
  to: string | MailRecipient;
  subject: string;
  text: string;
  html?: string;
  /** stable id so a resend after a crash can be recognised */
  messageId?: string;
}

/** An email as it is about to be sent (rendered from its templates, run through its filter). */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export interface SentMail {
  /** The Message-ID header as sent, in angle brackets: `<id@host>` */
  messageId: string;
  /** where it went: 'smtp' or the .eml file path */
  destination: string;
}

export interface Mailer {
  send(message: MailMessage): Promise<SentMail>;
  close(): void;
  readonly kind: 'smtp' | 'outbox';
}

export interface MailerOptions {
  /** `smtp://user:pass@host:port` or `smtps://...`; unset: messages are written as .eml files to `outboxDir` */
  smtpUrl?: string | undefined;
  /**
   * The From of every message: `Name <address>` or an address, or a function asked at every send (the site's
   * sender, which an administrator can change while the app runs).
   */
  from: string | MailRecipient | (() => MailRecipient);
  outboxDir: string;
  logger: Logger;
  /** connection, greeting and socket timeouts of the SMTP connection; default 15 s */
  timeoutMs?: number;
}

/**
 * A failed send. The message never holds the SMTP password; `transient` says whether trying again later may
 * help (a 4xx answer, a timeout, a dropped connection) or not (bad login, a 5xx rejection).
 */
export class MailError extends Error {
  override readonly name = 'MailError';
  readonly code: string | undefined;
  readonly responseCode: number | undefined;
  readonly transient: boolean;

  constructor(message: string, details: { code?: string | undefined; responseCode?: number | undefined; transient: boolean }) {
    super(message);
    this.code = details.code;
    this.responseCode = details.responseCode;
    this.transient = details.transient;
  }

  /** For the job queue (core/jobs/failures.ts): a transient failure is worth another try later. */
  get retryable(): boolean {
    return this.transient;
  }
}

/** The same check as the admin forms' email fields: one address, nothing around it. */
const emailAddressSchema = z.email().max(254);

/**
 * `value` as one email address (trimmed), or undefined when it is not exactly one valid address: empty, a list
 * (`a@x.test, b@y.test`, `a@x.test; b@y.test`), a display name (`Ada <a@x.test>`), or anything else.
 */
export function singleEmailAddress(value: string): string | undefined {
  const address = value.trim();
  return emailAddressSchema.safeParse(address).success ? address : undefined;
}

/**
 * A From as MAIL_FROM gives it: `Name <address>`, `"Name" <address>` or a bare address, with exactly one valid
 * address; undefined otherwise. The name may be absent.
 */
export function parseSender(value: string): { name?: string; address: string } | undefined {
  const text = value.trim();
  const bare = singleEmailAddress(text);
  if (bare !== undefined) return { address: bare };
  const match = /^(.*?)\s*<([^<>]+)>$/.exec(text);
  if (!match) return undefined;
  const address = singleEmailAddress(match[2]!);
  if (address === undefined) return undefined;
  const name = match[1]!.trim().replace(/^"(.*)"$/, '$1').trim();
  if (/[\r\n<>"]/.test(name)) return undefined;
  return name ? { name, address } : { address };
}

/** The mailer's From at this moment, as an address object (nodemailer never parses it as a list). */
function senderOf(from: MailerOptions['from']): MailRecipient {
  const given = typeof from === 'function' ? from() : from;
  if (typeof given !== 'string') return given;
  const parsed = parseSender(given);
  return parsed ? { name: parsed.name ?? '', address: parsed.address } : { name: '', address: given };
}

/** The message's one recipient as an address object; a permanent MailError when it is not exactly one address. */
function recipientOf(to: MailMessage['to']): { name: string; address: string } {
  const given = typeof to === 'string' ? { address: to, name: '' } : { address: String(to.address ?? ''), name: typeof to.name === 'string' ? to.name : '' };
  const address = singleEmailAddress(given.address);
  if (address === undefined) {
    throw new MailError(`Not one valid email address: ${JSON.stringify(given.address.slice(0, 320))}; nothing was sent`, { transient: false });
  }
  // A name is a header value: no line breaks into it.
  return { name: given.name.replace(/[\r\n]+/g, ' ').trim(), address };
}

export function createMailer(options: MailerOptions): Mailer {
  return options.smtpUrl ? createSmtpMailer({ ...options, smtpUrl: options.smtpUrl }) : createOutboxMailer(options);
}

/**
 * nodemailer is loaded with the first email, not at start: a process's request thread sends none while the jobs
 * have a thread of their own, and the library is several megabytes of memory in every thread that loads it.
 */
function lazyTransport(create: (mailer: typeof import('nodemailer')['default']) => Transporter): { get(): Promise<Transporter>; close(): void } {
  let transport: Promise<Transporter> | undefined;
  return {
    get: () => (transport ??= import('nodemailer').then((m) => create(m.default))),
    close() {
      void transport?.then((t) => t.close());
    },
  };
}

function createSmtpMailer(options: MailerOptions & { smtpUrl: string }): Mailer {
  const timeout = options.timeoutMs ?? 15_000;
  const transport = lazyTransport((nodemailer) => nodemailer.createTransport(
    {
      url: options.smtpUrl,
      pool: true,
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
      // nodemailer's own logging would write SMTP traffic (AUTH lines included) somewhere; keep it off
      logger: false,
      debug: false,
    },
  ));
  const secrets = secretsOf(options.smtpUrl);
  const host = safeHost(options.smtpUrl);

  return {
    kind: 'smtp',
    async send(message) {
      const from = senderOf(options.from);
      const messageId = normaliseMessageId(message.messageId, from.address);
      const to = recipientOrLog(options.logger, 'smtp', message, messageId);
      try {
        const info = await (await transport.get()).sendMail(mailOptions(message, from, to, messageId));
        const sent: SentMail = { messageId: info.messageId || messageId, destination: 'smtp' };
        logSent(options.logger, 'smtp', to, message, sent);
        return sent;
      } catch (err) {
        const error = toMailError(err, secrets, host);
        options.logger.warn({ kind: 'smtp', to: to.address, subject: message.subject, messageId, error: error.message, code: error.code, responseCode: error.responseCode }, 'mail not sent');
        throw error;
      }
    },
    close() {
      transport.close();
    },
  };
}

function createOutboxMailer(options: MailerOptions): Mailer {
  // nodemailer builds the RFC 822 message (encodings, headers, multipart) exactly as it would send it
  const transport = lazyTransport((nodemailer) => nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' }));

  return {
    kind: 'outbox',
    async send(message) {
      const from = senderOf(options.from);
      const messageId = normaliseMessageId(message.messageId, from.address);
      const to = recipientOrLog(options.logger, 'outbox', message, messageId);
      try {
        const info = await (await transport.get()).sendMail(mailOptions(message, from, to, messageId));
        const raw = info.message as unknown;
        if (!Buffer.isBuffer(raw)) throw new Error('nodemailer did not return the message as a buffer');
        await mkdir(options.outboxDir, { recursive: true, mode: 0o700 });
        const name = `${fileTimestamp(new Date())}-${slug(info.messageId || messageId)}.eml`;
        const path = join(options.outboxDir, name);
        await writeAtomically(path, raw);
        const sent: SentMail = { messageId: info.messageId || messageId, destination: path };
        logSent(options.logger, 'outbox', to, message, sent);
        return sent;
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        options.logger.warn({ kind: 'outbox', to: to.address, subject: message.subject, messageId, error: error.message }, 'mail not written');
        throw new MailError(`Could not write the email to the outbox: ${error.message}`, { code: (error as NodeJS.ErrnoException).code, transient: true });
      }
    },
    close() {
      // nothing to release: every send opens and closes its own file
    },
  };
}

function recipientOrLog(logger: Logger, kind: Mailer['kind'], message: MailMessage, messageId: string): { name: string; address: string } {
  try {
    return recipientOf(message.to);
  } catch (err) {
    logger.warn({ kind, subject: message.subject, messageId, error: (err as Error).message }, 'mail not sent');
    throw err;
  }
}

function mailOptions(message: MailMessage, from: MailRecipient, to: { name: string; address: string }, messageId: string) {
  return {
    from: { name: (from.name ?? '').replace(/[\r\n]+/g, ' ').trim(), address: from.address },
    // An object, never the string: nodemailer parses a string as an address list.
    to,
    subject: message.subject,
    text: message.text,
    ...(message.html !== undefined ? { html: message.html } : {}),
    messageId,
  };
}

/** Logs who and what, never the body: a welcome email carries the member's password. */
function logSent(logger: Logger, kind: Mailer['kind'], to: MailRecipient, message: MailMessage, sent: SentMail): void {
  logger.info({ kind, to: to.address, subject: message.subject, messageId: sent.messageId, destination: sent.destination }, 'mail sent');
}

/**
 * A Message-ID in `<local@domain>` form. A caller's stable id (e.g. `welcome-42`) is kept so a resend after a
 * crash carries the same id; without one a random id is made on the sender's domain.
 */
function normaliseMessageId(id: string | undefined, fromAddress: string): string {
  const domain = /@([^\s>@]+)$/.exec(fromAddress.trim())?.[1] ?? 'memberhook.invalid';
  let value = (id ?? '').trim().replace(/^<|>$/g, '').replace(/[\s<>]/g, '');
  if (!value) value = randomUUID();
  if (!value.includes('@')) value = `${value}@${domain}`;
  return `<${value}>`;
}

/** An ISO 8601 time usable in a file name everywhere (no colons), sorting in send order. */
function fileTimestamp(date: Date): string {
  return date.toISOString().replace(/:/g, '-');
}

function slug(messageId: string): string {
  const safe = messageId
    .replace(/^<|>$/g, '')
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 80);
  return safe || 'message';
}

/**
 * Writes under a temporary name that does not end in `.eml`, flushes, then renames: the rename is atomic on one
 * file system, so anything reading the outbox sees either no file or the whole message.
 */
async function writeAtomically(path: string, data: Buffer): Promise<void> {
  const temp = join(path, '..', `.${randomUUID()}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Every form in which the URL's password could show up in an error text. */
function secretsOf(smtpUrl: string): string[] {
  const secrets = new Set<string>();
  try {
    const url = new URL(smtpUrl);
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    if (pass) {
      secrets.add(pass);
      secrets.add(url.password);
      secrets.add(encodeURIComponent(pass));
      // AUTH PLAIN and AUTH LOGIN carry it base64-encoded
      secrets.add(Buffer.from(pass).toString('base64'));
      secrets.add(Buffer.from(`\0${user}\0${pass}`).toString('base64'));
    }
  } catch {
    // an unparsable URL: nodemailer reports that itself, and the whole URL is hidden below anyway
  }
  secrets.add(smtpUrl);
  return [...secrets].filter((secret) => secret.length > 0).sort((a, b) => b.length - a.length);
}

function safeHost(smtpUrl: string): string {
  try {
    const url = new URL(smtpUrl);
    return `${url.hostname}${url.port ? `:${url.port}` : ''}`;
  } catch {
    return 'the SMTP server';
  }
}

const TRANSIENT_CODES = new Set(['ETIMEDOUT', 'ECONNECTION', 'ESOCKET', 'EDNS', 'ECONNRESET', 'ECONNREFUSED', 'EPROTOCOL']);

/**
 * A fresh error built from the transport's: only its message (scrubbed), code and SMTP reply code are kept, so
 * the original's `command`, `response` and stack (which can hold the AUTH line) go nowhere.
 */
function toMailError(err: unknown, secrets: string[], host: string): MailError {
  const source = (err ?? {}) as { message?: unknown; code?: unknown; responseCode?: unknown };
  let text = typeof source.message === 'string' ? source.message : String(err);
  for (const secret of secrets) text = text.split(secret).join('[redacted]');
  const code = typeof source.code === 'string' ? source.code : undefined;
  const responseCode = typeof source.responseCode === 'number' ? source.responseCode : undefined;
  const transient = responseCode !== undefined ? responseCode >= 400 && responseCode < 500 : code !== 'EAUTH' && (code === undefined || TRANSIENT_CODES.has(code));
  return new MailError(`SMTP send via ${host} failed: ${text}`, { code, responseCode, transient });
}
