import express, { type Express } from 'express';
import helmet from 'helmet';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppContext } from './context.js';
import { errorHandler } from './core/error-handler.js';
import { notFound } from './core/errors.js';
import { adminRoutes } from './features/admin/routes.js';
import { apiRoutes } from './features/api/routes.js';
import { memberRoutes } from './features/members/routes.js';
import { webhookRoutes } from './features/webhooks/routes.js';

export const SITE_NAME = 'memberhook';

/** Static files served under /assets; the same relative path works from src and dist. */
export const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'public');

export interface AppOptions {
  /** Rejected webhook requests allowed per client IP per window before 429s (stops key guessing). */
  webhookRejectionLimit?: number;
  webhookRejectionWindowMs?: number;
}

/** Builds the express app from its parts without listening, so tests drive it in-process with supertest. */
export function createApp(ctx: AppContext, options: AppOptions = {}): Express {
  const app = express();
  app.disable('x-powered-by');
  // Behind one reverse proxy (the usual deployment) req.ip must be the client's, or per-IP limits punish everyone.
  app.set('trust proxy', 'loopback, linklocal, uniquelocal');
  // Keap's posts come before the browser security headers: they are answered to a program, thousands a
  // minute in a burst, and a dozen headers meant for browsers would only slow the hottest path.
  app.use(
    webhookRoutes(ctx.webhooks, {
      rejectionLimit: options.webhookRejectionLimit ?? ctx.config.webhooks.rejectionLimit,
      rejectionWindowMs: options.webhookRejectionWindowMs ?? ctx.config.webhooks.rejectionWindowMs,
    }),
  );
  app.use(helmet());
  // A little progressive JavaScript and nothing else; every page works without it.
  app.use('/assets', express.static(PUBLIC_DIR, { maxAge: '1h', index: false, fallthrough: true }));

  app.get('/healthz', (_req, res) => {
    ctx.db.prepare('SELECT 1').get();
    res.json({ ok: true });
  });
  app.use(apiRoutes(ctx));
  app.use(memberRoutes(ctx));
  app.use(adminRoutes(ctx));

  app.use((req, _res, next) => next(notFound(`no page at ${req.method} ${req.path}`)));
  app.use(errorHandler({ logger: ctx.logger, views: ctx.views, siteName: SITE_NAME }));
  return app;
}
