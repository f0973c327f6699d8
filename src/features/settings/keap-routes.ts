import { Router } from 'express';
import type { AppContext } from '../../context.js';

/** Admin pages (mounted after requireAdmin): Settings, Keap tab: API key or OAuth connection, test connection, username and password fields. */
export function keapSettingsRoutes(_ctx: AppContext): Router {
  const router = Router();
  return router;
}
