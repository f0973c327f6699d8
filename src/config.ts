import { z } from 'zod';
import { readFileSync } from 'node:fs';
import proxyaddr from 'proxy-addr';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSender } from './core/mail.js';
import { SecretBox } from './core/secret-box.js';

/**
 * Every setting the app reads from the environment, validated once at start. A bad value stops the start with
 * one line naming the variable and what was expected (never echoing a secret's value).
 */
const SECRET_SETTINGS = new Set(['ACCESS_KEY', 'KEAP_API_KEY', 'KEAP_CLIENT_SECRET', 'ADMIN_PASSWORD', 'API_TOKEN', 'SMTP_URL', 'SITE_KEY']);

const port = z.coerce.number({ error: 'expected a port number' }).int('expected a whole number').min(0, 'expected 0 to 65535').max(65535, 'expected 0 to 65535');
const positiveInt = (what: string) => z.coerce.number({ error: `expected ${what}` }).int(`expected ${what}`).positive(`expected ${what}`);
const httpUrl = z
  .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
  .transform((url) => url.replace(/\/+$/, ''));
const roleSlug = z.string().regex(/^[a-z0-9_-]{1,64}$/, 'expected a role slug (lowercase letters, digits, - and _)');
const printableSecret = (min: number) =>
  z.string().min(min, `expected at least ${min} characters`).max(512, 'expected at most 512 characters').regex(/^[\x21-\x7e]+$/, 'expected printable characters without spaces');

/**
 * TRUST_PROXY as express's `trust proxy` takes it: a hop count, or the proxies' addresses, subnets (CIDR) and
 * proxy-addr's named ranges (loopback, linklocal, uniquelocal), separated by commas. `0` and `false` trust none;
 * `true` (every hop, so any client's own X-Forwarded-For) is refused.
 */
const trustProxy = z.string().transform((value, ctx): false | number | string[] => {
  const text = value.trim().toLowerCase();
  if (text === 'false' || /^0+$/.test(text)) return false;
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops <= 100) return hops;
  }
  const entries = text.split(',').map((entry) => entry.trim()).filter(Boolean);
  const wrong = text === 'true' ? [] : entries.filter((entry) => {
    try {
      proxyaddr.compile(entry);
      return false;
    } catch {
      return true;
    }
  });
  if (text === 'true' || entries.length === 0 || wrong.length > 0) {
    const what = text === 'true' ? 'a hop count or the proxies\' addresses (true would let any client set its own address)' : 'a hop count (up to 100) or IP addresses, CIDR subnets, loopback, linklocal, uniquelocal, separated by commas';
    ctx.addIssue({ code: 'custom', message: `expected ${what}` });
    return z.NEVER;
  }
  return entries;
});

const envSchema = z
  .object({
    PORT: port.default(3000),
    HOST: z.string().min(1).optional(),
    TRUST_PROXY: trustProxy.optional(),
    DATA_DIR: z.string().min(1).default('./data'),
    PLUGINS_DIR: z.string().min(1).default('./plugins'),
    PLUGINS: z
      .string()
      .transform((list) => list.split(',').map((item) => item.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^(?:@[\w.-]+\/)?[\w.-]+$|^\.{0,2}\//, 'expected npm package names or paths, separated by commas')))
      .optional(),
    PUBLIC_URL: httpUrl.optional(),
    ACCESS_KEY: printableSecret(32).optional(),
    KEAP_API_URL: httpUrl.default('https://api.infusionsoft.com/crm'),
    KEAP_API_KEY: printableSecret(8).optional(),
    KEAP_CLIENT_ID: z.string().min(1).optional(),
    KEAP_CLIENT_SECRET: z.string().min(1).optional(),
    KEAP_TOKEN_URL: httpUrl.optional(),
    KEAP_AUTHORIZE_URL: httpUrl.default('https://accounts.infusionsoft.com/app/oauth/authorize'),
    KEAP_PASSWORD_FIELD: z.string().trim().min(1).max(255).optional(),
    KEAP_USERNAME_FIELD: z.string().trim().min(1).max(255).optional(),
    // Keap publishes 10/s for keys but spike-arrests service account keys at 5/s (KEAP.md): 5 is what it enforces.
    KEAP_RATE_PER_SECOND: positiveInt('a positive whole number of requests').default(5),
    KEAP_RATE_PER_MINUTE: positiveInt('a positive whole number of requests').default(240),
    KEAP_TIMEOUT_MS: positiveInt('a positive whole number of milliseconds').default(10_000),
    DEFAULT_ROLE: roleSlug.default('subscriber'),
    SMTP_URL: z.url({ protocol: /^smtps?$/, error: 'expected an smtp:// or smtps:// URL' }).optional(),
    MAIL_FROM: z.string().trim().min(3).max(320).refine((value) => parseSender(value) !== undefined, 'expected one email address, with a name or without: Site <no-reply@example.com>').optional(),
    SITE_NAME: z.string().trim().min(1).max(100).refine((value) => !/[\r\n]/.test(value), 'expected one line').optional(),
    ADMIN_EMAIL: z.email('expected an email address').optional(),
    ADMIN_PASSWORD: z.string().min(10, 'expected at least 10 characters').max(200, 'expected at most 200 characters').optional(),
    API_TOKEN: printableSecret(24).optional(),
    WEBHOOK_REJECTION_LIMIT: positiveInt('a positive whole number of requests').default(30),
    WEBHOOK_REJECTION_WINDOW_MS: positiveInt('a positive whole number of milliseconds').default(600_000),
    JOB_MAX_ATTEMPTS: positiveInt('a positive whole number').default(8),
    JOB_RETRY_BASE_MS: positiveInt('a positive whole number of milliseconds').default(60_000),
    // Jobs that wait for Keap wait in its rate limiter; the rest (a skip, a local update) end in microseconds, and the
    // worker claims as many at once as there are free places: 64 keeps up with ten thousand posts a second on 2 cores.
    WORKER_CONCURRENCY: positiveInt('a positive whole number').default(64),
    EVENTS_KEEP_DAYS: positiveInt('a positive whole number of days').default(90),
    EVENTS_KEEP_REFUSED_DAYS: positiveInt('a positive whole number of days').default(7),
    EVENTS_KEEP_REFUSED_PER_ADDRESS: positiveInt('a positive whole number of requests').default(1000),
    SITE_KEY: z.string().refine((key) => SecretBox.parseKey(key) !== undefined, 'expected 32 random bytes in base64 (openssl rand -base64 32)').optional(),
    SITE_KEY_FILE: z.string().min(1).optional(),
    OUTBOUND_ALLOW_PRIVATE: z.enum(['0', '1', 'true', 'false'], 'expected 1 (allow) or 0 (refuse)').optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'expected one of fatal, error, warn, info, debug, trace, silent').default('info'),
  })
  .superRefine((env, ctx) => {
    if (Boolean(env.KEAP_CLIENT_ID) !== Boolean(env.KEAP_CLIENT_SECRET)) {
      const missing = env.KEAP_CLIENT_ID ? 'KEAP_CLIENT_SECRET' : 'KEAP_CLIENT_ID';
      ctx.addIssue({ code: 'custom', path: [missing], message: 'expected KEAP_CLIENT_ID and KEAP_CLIENT_SECRET to be set together' });
    }
    if (Boolean(env.ADMIN_EMAIL) !== Boolean(env.ADMIN_PASSWORD)) {
      const missing = env.ADMIN_EMAIL ? 'ADMIN_PASSWORD' : 'ADMIN_EMAIL';
      ctx.addIssue({ code: 'custom', path: [missing], message: 'expected ADMIN_EMAIL and ADMIN_PASSWORD to be set together' });
    }
    if (env.SITE_KEY && env.SITE_KEY_FILE) {
      ctx.addIssue({ code: 'custom', path: ['SITE_KEY_FILE'], message: 'expected SITE_KEY or SITE_KEY_FILE, not both' });
    }
    if (env.KEAP_RATE_PER_SECOND > env.KEAP_RATE_PER_MINUTE) {
      ctx.addIssue({ code: 'custom', path: ['KEAP_RATE_PER_SECOND'], message: 'expected no more than KEAP_RATE_PER_MINUTE' });
    }
  });

export interface Config {
  /** memberhook's version (package.json). */
  version: string;
  port: number;
  host: string | undefined;
  /**
   * Which reverse proxies' X-Forwarded-For (and -Proto) to believe, as express's `trust proxy` takes it: false
   * (none: the client is the connection's peer), a hop count, or addresses and subnets.
   */
  trustProxy: false | number | string[];
  dataDir: string;
  databaseFile: string;
  /** Where plugin folders and files are found (PLUGINS_DIR, default ./plugins). */
  pluginsDir: string;
  /** PLUGINS: installed npm packages or paths to load as plugins too. */
  plugins: string[];
  publicUrl: string;
  /** Set when the environment gives one; otherwise the stored (or newly generated) key is used. */
  accessKey: string | undefined;
  keap: {
    apiUrl: string;
    apiKey: string | undefined;
    oauth: { clientId: string; clientSecret: string } | undefined;
    tokenUrl: string;
    authorizeUrl: string;
    passwordField: string | undefined;
    usernameField: string | undefined;
    rateLimit: { perSecond: number; perMinute: number };
    timeoutMs: number;
  };
  defaultRole: string;
  /** SITE_NAME: the site's name in pages and emails until an administrator changes it. */
  siteName: string;
  /** `from` as MAIL_FROM gives it (or made from PUBLIC_URL's host), and the same split into its name and address. */
  mail: { smtpUrl: string | undefined; from: string; sender: { name?: string; address: string } };
  admin: { email: string; password: string } | undefined;
  apiToken: string | undefined;
  webhooks: { rejectionLimit: number; rejectionWindowMs: number };
  jobs: { maxAttempts: number; retryBaseMs: number; concurrency: number };
  /** How long the event log keeps what (see core/jobs/retention.ts). */
  retention: { finishedDays: number; refusedDays: number; refusedPerAddress: number };
  /**
   * The key that encrypts the secrets stored in the database: SITE_KEY itself, or the file SITE_KEY_FILE names, or
   * else `<dataDir>/site.key` (made on first start). See core/site-key.ts.
   */
  siteKey: {
    key: string | undefined;
    file: string;
    /** The file is the operator's (SITE_KEY_FILE): it is never created, only read. */
    fileFromSetting: boolean;
  };
  /**
   * Outbound requests to admin-given URLs (outbound webhooks, their OAuth token endpoints): `allowPrivate` lets them
   * reach loopback, private and link-local addresses (OUTBOUND_ALLOW_PRIVATE=1; tests, a receiver on the same network).
   */
  outbound: { allowPrivate: boolean };
  logLevel: string;
  /** The variables that were set in the environment (not defaulted): those fix a setting against admin edits. */
  fromEnvironment: ReadonlySet<string>;
}

/** The same relative path works from src and dist. */
const VERSION = (JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8')) as { version: string }).version;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Reads and validates the settings; throws ConfigError with one line naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env, cwd: string = process.cwd()): Config {
  // An empty value (`PORT=` in an env file) means "not set", as it does for most tools.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    const given = present[name];
    const shown = given !== undefined && !SECRET_SETTINGS.has(name) ? ` (got ${JSON.stringify(given.slice(0, 80))})` : '';
    throw new ConfigError(`Invalid setting ${name}: ${issue.message}${shown}`);
  }
  const e = parsed.data;
  const dataDir = isAbsolute(e.DATA_DIR) ? e.DATA_DIR : resolve(cwd, e.DATA_DIR);
  const pluginsDir = isAbsolute(e.PLUGINS_DIR) ? e.PLUGINS_DIR : resolve(cwd, e.PLUGINS_DIR);
  const publicUrl = e.PUBLIC_URL ?? `http://localhost:${e.PORT}`;
  return {
    version: VERSION,
    port: e.PORT,
    host: e.HOST,
    trustProxy: e.TRUST_PROXY ?? false,
    dataDir,
    databaseFile: resolve(dataDir, 'memberhook.db'),
    pluginsDir,
    plugins: e.PLUGINS ?? [],
    publicUrl,
    accessKey: e.ACCESS_KEY,
    keap: {
      apiUrl: e.KEAP_API_URL,
      apiKey: e.KEAP_API_KEY,
      oauth: e.KEAP_CLIENT_ID && e.KEAP_CLIENT_SECRET ? { clientId: e.KEAP_CLIENT_ID, clientSecret: e.KEAP_CLIENT_SECRET } : undefined,
      // Keap serves /token beside /crm on the same host, so a sandbox or proxy at KEAP_API_URL gets it too.
      tokenUrl: e.KEAP_TOKEN_URL ?? new URL('/token', e.KEAP_API_URL).toString(),
      authorizeUrl: e.KEAP_AUTHORIZE_URL,
      passwordField: e.KEAP_PASSWORD_FIELD,
      usernameField: e.KEAP_USERNAME_FIELD,
      rateLimit: { perSecond: e.KEAP_RATE_PER_SECOND, perMinute: e.KEAP_RATE_PER_MINUTE },
      timeoutMs: e.KEAP_TIMEOUT_MS,
    },
    defaultRole: e.DEFAULT_ROLE,
    siteName: e.SITE_NAME ?? DEFAULT_SITE_NAME,
    mail: mailSettings(e.SMTP_URL, e.MAIL_FROM, publicUrl),
    admin: e.ADMIN_EMAIL && e.ADMIN_PASSWORD ? { email: e.ADMIN_EMAIL, password: e.ADMIN_PASSWORD } : undefined,
    apiToken: e.API_TOKEN,
    webhooks: { rejectionLimit: e.WEBHOOK_REJECTION_LIMIT, rejectionWindowMs: e.WEBHOOK_REJECTION_WINDOW_MS },
    jobs: { maxAttempts: e.JOB_MAX_ATTEMPTS, retryBaseMs: e.JOB_RETRY_BASE_MS, concurrency: e.WORKER_CONCURRENCY },
    retention: { finishedDays: e.EVENTS_KEEP_DAYS, refusedDays: e.EVENTS_KEEP_REFUSED_DAYS, refusedPerAddress: e.EVENTS_KEEP_REFUSED_PER_ADDRESS },
    siteKey: {
      key: e.SITE_KEY,
      file: e.SITE_KEY_FILE ? resolve(cwd, e.SITE_KEY_FILE) : resolve(dataDir, 'site.key'),
      fileFromSetting: e.SITE_KEY_FILE !== undefined,
    },
    outbound: { allowPrivate: e.OUTBOUND_ALLOW_PRIVATE === '1' || e.OUTBOUND_ALLOW_PRIVATE === 'true' },
    logLevel: e.LOG_LEVEL,
    fromEnvironment: new Set(Object.keys(present).filter((name) => name in envSchema.shape)),
  };
}

/** The site's name when neither SITE_NAME nor the admin page gives one. */
export const DEFAULT_SITE_NAME = 'memberhook';

function mailSettings(smtpUrl: string | undefined, mailFrom: string | undefined, publicUrl: string): Config['mail'] {
  // Without MAIL_FROM the sender has no name of its own: the site's name (which an admin may change) is used.
  const sender = (mailFrom === undefined ? undefined : parseSender(mailFrom)) ?? { address: `no-reply@${new URL(publicUrl).hostname}` };
  return { smtpUrl, from: mailFrom ?? `${DEFAULT_SITE_NAME} <${sender.address}>`, sender };
}
