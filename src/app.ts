import express, { type Express } from 'express';
import helmet from 'helmet';
import type { AppContext } from './context.js';
import { errorHandler } from './core/error-handler.js';
import { notFound } from './core/errors.js';

export const SITE_NAME = 'memberhook';

/** Builds the express app from its parts without listening, so tests drive it in-process with supertest. */
export function createApp(ctx: AppContext): Express {
  const app = express();
  app.disable('x-powered-by');
  // Behind one reverse proxy (the usual deployment) req.ip must be the client's, or per-IP limits punish everyone.
  app.set('trust proxy', 'loopback, linklocal, uniquelocal');
  app.use(helmet());

  app.get('/healthz', (_req, res) => {
    ctx.db.prepare('SELECT 1').get();
    res.json({ ok: true });
  });

  app.use((req, _res, next) => next(notFound(`no page at ${req.method} ${req.path}`)));
  app.use(errorHandler({ logger: ctx.logger, views: ctx.views, siteName: SITE_NAME }));
  return app;
}
