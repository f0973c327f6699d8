import express, { type Express } from 'express';
import helmet from 'helmet';
import type { IncomingMessage, RequestListener } from 'node:http';
import proxyaddr from 'proxy-addr';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorHandler } from './core/error-handler.js';
import { notFound } from './core/errors.js';
import type { AppContext } from './context.js';

/** Static files served under /assets; the same relative path works from src and dist. */
export const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'public');

/**
 * The app from what the plugins registered, without listening (supertest drives it in-process): the built-ins'
 * fast routes (Keap's posts, straight from Node's request), then express with the built-ins' program-facing
 * routers, the browser headers, the built-ins' pages and API, the admin shell, and each plugin's router under
 * /plugins/<name>/.
 */
export function createApp(ctx: AppContext): RequestListener {
  const app = expressApp(ctx);
  const fastRoutes = ctx.plugins.fastRoutes();
  const trust = app.get('trust proxy fn') as Parameters<typeof proxyaddr>[1];
  const clientIp = (req: IncomingMessage) => proxyaddr(req, trust);
  return (req, res) => {
    for (const route of fastRoutes) if (route(req, res, clientIp)) return;
    app(req, res);
  };
}

function expressApp(ctx: AppContext): Express {
  const app = express();
  app.disable('x-powered-by');
  // Only the proxies the operator names (TRUST_PROXY) may say who the client is: anyone else's X-Forwarded-For is
  // the client's own claim, and believing it would let any client pick its address for every per-address limit.
  // req.ip, req.secure and the fast routes' clientIp all follow this one setting.
  app.set('trust proxy', ctx.config.trustProxy);
  // Keap's posts come before the browser security headers: they are answered to a program, thousands a
  // minute in a burst, and a dozen headers meant for browsers would only slow the hottest path.
  for (const router of ctx.plugins.receiverRouters()) app.use(router);
  app.use(helmet());
  // A little progressive JavaScript and nothing else; every page works without it.
  app.use('/assets', express.static(PUBLIC_DIR, { maxAge: '1h', index: false, fallthrough: true }));

  app.get('/healthz', (_req, res) => {
    ctx.db.prepare('SELECT 1').get();
    res.json({ ok: true });
  });
  for (const router of ctx.plugins.siteRouters()) app.use(router);
  app.use('/admin', ctx.shell.router());
  app.use('/plugins/:plugin', ctx.plugins.pluginRoutes());

  app.use((req, _res, next) => next(notFound(`no page at ${req.method} ${req.path}`)));
  app.use(errorHandler({ logger: ctx.logger, views: ctx.views, siteName: () => ctx.identity.siteName() }));
  return app;
}
