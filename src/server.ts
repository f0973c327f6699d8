import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { createApp, SITE_NAME } from './app.js';
import type { Config } from './config.js';
import type { AppContext } from './context.js';
import { startCheckpointer } from './core/checkpointer.js';
import { systemClock, type Clock } from './core/clock.js';
import { openDatabase } from './core/db.js';
import { HookRegistry } from './core/hooks.js';
import { createLogger, type Logger } from './core/logger.js';
import { createMailer } from './core/mail.js';
import { SettingsStore } from './core/settings.js';
import { ViewRenderer } from './core/views.js';
import { createKeapClient } from './features/keap/index.js';
import { classifyJobError } from './job-failures.js';
import { KeapMemberSync, WELCOME_ACTION, WRITE_BACK_ACTION } from './features/keap/member-sync.js';
import { ensureConfiguredAdmin } from './features/members/admin-account.js';
import { MemberService } from './features/members/service.js';
import { WelcomeSender } from './features/members/welcome-sender.js';
import { passwordResetEmailJob, PASSWORD_RESET_ACTION } from './features/members/password-reset.js';
import { SiteSettings } from './features/settings/site-settings.js';
import { EventStore } from './features/queue/store.js';
import { DEFAULT_RETRY_POLICY, QueueWorker, type RetryPolicy } from './features/queue/worker.js';
import { AccessKeyring } from './features/webhooks/access-key.js';
import { WebhookService } from './features/webhooks/service.js';

export interface StartOptions {
  logger?: Logger;
  /** Where to show things meant for the operator's eyes once (a generated access key); never the logger. */
  console?: (line: string) => void;
  clock?: Clock;
  /** Worker tuning, for tests and benchmarks. */
  worker?: { concurrency?: number; retry?: RetryPolicy; pollMs?: number; start?: boolean };
}

export interface RunningServer {
  ctx: AppContext;
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Checks that only make sense once the database is open; they fail the start with one clear line. */
export class StartupError extends Error {}

/** Opens the database and builds every service; nothing listens or runs yet. */
export async function buildContext(config: Config, options: StartOptions = {}): Promise<AppContext> {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const clock = options.clock ?? systemClock;
  const show = options.console ?? ((line: string) => process.stdout.write(`${line}\n`));
  const { db, applied } = openDatabase({ filename: config.databaseFile });
  try {
    for (const m of applied) logger.info({ version: m.version, name: m.name }, 'database migration applied');
    const settings = new SettingsStore(db);
    const hooks = new HookRegistry(logger);
    const views = new ViewRenderer();
    const members = new MemberService(db, hooks);
    const site = new SiteSettings(settings, config);
    const defaultRole = site.defaultRole();
    const role = members.role(defaultRole);
    if (!role) throw new StartupError(`Invalid setting DEFAULT_ROLE: no role named "${defaultRole}" exists`);
    if (role.isAdmin) throw new StartupError(`Invalid setting DEFAULT_ROLE: "${defaultRole}" has admin rights and cannot be a default`);

    const accessKeys = new AccessKeyring(settings, config.accessKey);
    if (accessKeys.source === 'generated') {
      show(`A webhook access key was generated and stored. It is shown this once; put it in your Keap HTTP Posts as access_key:\n\n    ${accessKeys.current()}\n`);
    }
    if (config.admin) await ensureConfiguredAdmin(members, config.admin, logger);

    const events = new EventStore(db);
    const mailer = createMailer({ smtpUrl: config.mail.smtpUrl, from: config.mail.from, outboxDir: join(config.dataDir, 'outbox'), logger });
    const keap = createKeapClient(config, db, logger, clock);
    const worker = new QueueWorker({
      store: events,
      logger,
      clock,
      classifyError: classifyJobError,
      concurrency: config.jobs.concurrency,
      retry: { ...DEFAULT_RETRY_POLICY, maxAttempts: config.jobs.maxAttempts, baseDelayMs: config.jobs.retryBaseMs },
      ...options.worker,
    });
    const memberSync = new KeapMemberSync({ keap, members, events, hooks, site, logger, onEnqueued: () => worker.notify() });
    const welcome = new WelcomeSender({ members, mailer, views, hooks, siteName: SITE_NAME, publicUrl: config.publicUrl, template: () => site.welcomeTemplate() });
    const webhooks = new WebhookService({ events, worker, hooks, logger, accessKey: () => accessKeys.current(), findRole: (slug) => members.role(slug), inline: config.benchInline });
    worker.register('add', (job) => memberSync.add(job));
    worker.register('update', (job) => memberSync.update(job));
    worker.register('update_tags', (job) => memberSync.updateTags(job));
    worker.register(WRITE_BACK_ACTION, (job) => memberSync.writeBackPassword(job));
    worker.register(WELCOME_ACTION, (job) => welcome.run(job));
    worker.register(PASSWORD_RESET_ACTION, passwordResetEmailJob({ db, clock, members, mailer, views, hooks, siteName: SITE_NAME, publicUrl: config.publicUrl }));
    return { config, db, logger, clock, hooks, views, settings, site, mailer, keap, members, events, worker, memberSync, webhooks, accessKeys };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Builds everything, starts the worker and listens. Used by `npm start` and by tests, in-process. */
export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const ctx = await buildContext(config, options);
  const checkpointer = startCheckpointer(ctx.db, ctx.logger);
  const app = createApp(ctx);
  const server = createServer(app);
  // No HOST: Node's default, every interface (IPv6 and IPv4 where the machine has them).
  if (config.host) server.listen(config.port, config.host);
  else server.listen(config.port);
  await once(server, 'listening');
  if (config.benchInline) {
    // Benchmark mode (MEMBERHOOK_BENCH_INLINE=1): requests run their own jobs; no background worker.
    ctx.logger.warn('MEMBERHOOK_BENCH_INLINE=1: benchmark mode, jobs run inside the webhook request and the worker is off; not for production');
  } else if (options.worker?.start !== false) {
    ctx.worker.start();
  }
  const address = server.address() as AddressInfo;
  const shownHost = !config.host || config.host === '::' || config.host === '0.0.0.0' ? 'localhost' : config.host;
  const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}`;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      server.close();
      server.closeIdleConnections();
      // Requests in flight get a moment to finish; then the rest are cut so shutdown never hangs.
      const forced = setTimeout(() => server.closeAllConnections(), 5_000);
      forced.unref();
      await ctx.worker.stop();
      if (server.listening) await once(server, 'close').catch(() => undefined);
      clearTimeout(forced);
      ctx.mailer.close();
      await checkpointer.stop();
      ctx.db.close();
    })();
    return closing;
  };
  return { ctx, url, server, close };
}
