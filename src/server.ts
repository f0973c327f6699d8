import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { createApp } from './app.js';
import { BUILT_IN_PLUGINS } from './builtins.js';
import type { Config } from './config.js';
import { startCheckpointer } from './core/checkpointer.js';
import { createKernel, type KernelOptions } from './core/kernel.js';
import type { AppContext } from './context.js';
import { ensureConfiguredAdmin } from './features/members/admin-account.js';
import { announceSetupLink } from './features/members/admin-setup.js';
import { pluginAdminRoutes } from './plugins/admin-routes.js';
import { PluginHost } from './plugins/host.js';
import type { PluginApi } from './plugins/types.js';
import { JobThread } from './job-thread.js';
import { AdminShell } from './web/admin-shell.js';

export type { AppContext } from './context.js';
export { StartupError } from './core/errors.js';

export interface StartOptions extends KernelOptions {
  /** Worker tuning, for tests and benchmarks; `start: false` leaves the worker stopped. */
  worker?: KernelOptions['worker'] & { start?: boolean };
  /**
   * Where jobs run: `thread` (the default) gives them a thread and database connection of their own (job-thread.ts),
   * so answering requests keeps a core to itself; `in-process` runs them beside the requests, as tests do that hand
   * in a clock or logger (those cannot cross to another thread).
   */
  jobs?: 'thread' | 'in-process';
  /** How long a plugin's setup may take (tests shorten it). */
  pluginSetupTimeoutMs?: number;
}

export interface BuildOptions extends StartOptions {
  /** `job-thread`: the job thread's instance, which leaves what happens once per process to the request thread's. */
  role?: 'server' | 'job-thread';
}

export interface RunningServer {
  ctx: AppContext;
  /** Where the jobs run: their own thread, or beside the requests (asked for, or the thread could not start). */
  jobs: 'thread' | 'in-process' | 'stopped';
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Opens the database, starts the built-ins and the plugins; nothing listens and no job runs yet. */
export async function buildContext(config: Config, options: BuildOptions = {}): Promise<AppContext> {
  const kernel = createKernel(config, options);
  try {
    const shell = new AdminShell(kernel);
    const host = new PluginHost(kernel, shell, {
      dir: config.pluginsDir,
      packages: config.plugins,
      cwd: process.cwd(),
      ...(options.pluginSetupTimeoutMs === undefined ? {} : { setupTimeoutMs: options.pluginSetupTimeoutMs }),
    });
    await host.startBuiltins(BUILT_IN_PLUGINS);
    shell.addPage({ plugin: 'plugins', path: 'plugins', title: 'Plugins', menu: { label: 'Plugins', order: 60 }, handler: pluginAdminRoutes(host, shell) });
    await host.startPlugins();
    const service = <K extends keyof PluginApi>(key: K): PluginApi[K] => host.service(key);
    // After the plugins: one that asked for durable member.created hears of this administrator too.
    if (config.admin && options.role !== 'job-thread') await ensureConfiguredAdmin(service('members'), config.admin, kernel.logger);
    return {
      ...kernel,
      shell,
      plugins: host,
      get members() {
        return service('members');
      },
      get keap() {
        return service('keap');
      },
      get site() {
        return service('siteSettings');
      },
      get accessKeys() {
        return service('accessKeys');
      },
      get outboundWebhooks() {
        return service('outboundWebhooks');
      },
    };
  } catch (err) {
    kernel.mailer.close();
    kernel.db.close();
    throw err;
  }
}

/** Builds everything, starts the worker and listens. Used by `npm start` and by tests, in-process. */
export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const ctx = await buildContext(config, options);
  const app = createApp(ctx);
  const server = createServer(app);
  // No HOST: Node's default, every interface (IPv6 and IPv4 where the machine has them).
  if (config.host) server.listen(config.port, config.host);
  else server.listen(config.port);
  await once(server, 'listening');
  const jobThread = options.worker?.start === false ? undefined : await startJobs(ctx, config, options);
  // The job thread checkpoints the WAL itself; without it, a thread of its own does (see checkpointer.ts).
  const checkpointer = jobThread ? undefined : startCheckpointer(ctx.db, ctx.logger);
  // The daily clean-ups run where the jobs run: the job thread runs its own.
  const maintenance = jobThread || options.worker?.start === false ? undefined : ctx.maintenance.start();
  // So do the features' background services (see core/background.ts).
  if (!jobThread && options.worker?.start !== false) ctx.background.startAll();
  ctx.outbox.purge(ctx.clock.now());
  const purge = setInterval(() => ctx.outbox.purge(ctx.clock.now()), 24 * 60 * 60 * 1000);
  purge.unref();
  const address = server.address() as AddressInfo;
  const shownHost = !config.host || config.host === '::' || config.host === '0.0.0.0' ? 'localhost' : config.host;
  const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}`;
  // Only now that the server listens: a key or link printed by a start that then failed would be lost, and a link
  // printed earlier could be opened (and fail) before it works.
  ctx.flushAnnouncements();
  announceSetupLink(ctx, config.fromEnvironment.has('PUBLIC_URL') ? config.publicUrl : url);

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearInterval(purge);
      server.close();
      server.closeIdleConnections();
      // Requests in flight get a moment to finish; then the rest are cut so shutdown never hangs.
      const forced = setTimeout(() => server.closeAllConnections(), 5_000);
      forced.unref();
      if (jobThread) await jobThread.stop();
      else await ctx.worker.stop();
      await ctx.background.stopAll();
      await maintenance?.stop();
      ctx.jobs.commitSoonThrough(undefined);
      if (server.listening) await once(server, 'close').catch(() => undefined);
      clearTimeout(forced);
      await ctx.plugins.stopAll();
      ctx.mailer.close();
      await checkpointer?.stop();
      ctx.db.close();
    })();
    return closing;
  };
  const jobs = jobThread ? 'thread' : options.worker?.start === false ? 'stopped' : 'in-process';
  return { ctx, url, server, jobs, close };
}

/**
 * Starts the jobs: in their own thread (see job-thread.ts), or here. A thread that cannot start leaves the jobs
 * to this thread's worker rather than to nobody.
 */
async function startJobs(ctx: AppContext, config: Config, options: StartOptions): Promise<JobThread | undefined> {
  if (options.jobs === 'in-process') {
    ctx.worker.start();
    return undefined;
  }
  if (options.clock || options.logger || options.worker) throw new Error('a clock, logger or worker tuning given to startServer needs jobs: "in-process"');
  let thread: JobThread;
  try {
    thread = await JobThread.start({ config, logger: ctx.logger, db: ctx.db, fallback: ctx.events, sharedMemory: ctx.sharedMemory });
  } catch (err) {
    ctx.logger.error({ err }, 'the job thread could not start; jobs run beside the requests instead');
    ctx.worker.start();
    return undefined;
  }
  ctx.jobs.commitSoonThrough(thread);
  ctx.jobs.onWake(() => thread.wake());
  ctx.plugins.onEnabledChange((name, enabled) => thread.pluginChanged(name, enabled));
  return thread;
}
