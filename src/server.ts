import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { createApp } from './app.js';
import type { Config } from './config.js';
import type { AppContext } from './context.js';
import { openDatabase } from './core/db.js';
import { HookRegistry } from './core/hooks.js';
import { createLogger, type Logger } from './core/logger.js';
import { SettingsStore } from './core/settings.js';
import { ViewRenderer } from './core/views.js';
import { resolveAccessKey } from './features/webhooks/access-key.js';

export interface StartOptions {
  logger?: Logger;
  /** Where to show things meant for the operator's eyes once (a generated access key); never the logger. */
  console?: (line: string) => void;
}

export interface RunningServer {
  ctx: AppContext;
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Checks that only make sense once the database is open; they fail the start with one clear line. */
export class StartupError extends Error {}

/** Opens the database, builds every service, and listens. Used by `npm start` and by tests, in-process. */
export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const show = options.console ?? ((line: string) => process.stdout.write(`${line}\n`));
  const { db, applied } = openDatabase({ filename: config.databaseFile });
  try {
    for (const m of applied) logger.info({ version: m.version, name: m.name }, 'database migration applied');
    const settings = new SettingsStore(db);
    const role = db.prepare<[string], { is_admin: number }>('SELECT is_admin FROM roles WHERE slug = ?').get(config.defaultRole);
    if (!role) throw new StartupError(`Invalid setting DEFAULT_ROLE: no role named "${config.defaultRole}" exists`);
    if (role.is_admin) throw new StartupError(`Invalid setting DEFAULT_ROLE: "${config.defaultRole}" has admin rights and cannot be a default`);

    const accessKey = resolveAccessKey(settings, config.accessKey);
    if (accessKey.source === 'generated') {
      show(`A webhook access key was generated and stored. It is shown this once; put it in your Keap HTTP Posts as access_key:\n\n    ${accessKey.key}\n`);
    }

    const ctx: AppContext = { config, db, logger, hooks: new HookRegistry(logger), views: new ViewRenderer(), settings };
    const app = createApp(ctx);
    const server = createServer(app);
    // No HOST: Node's default, every interface (IPv6 and IPv4 where the machine has them).
    if (config.host) server.listen(config.port, config.host);
    else server.listen(config.port);
    await once(server, 'listening');
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
        if (server.listening) await once(server, 'close').catch(() => undefined);
        clearTimeout(forced);
        db.close();
      })();
      return closing;
    };
    return { ctx, url, server, close };
  } catch (err) {
    db.close();
    throw err;
  }
}
