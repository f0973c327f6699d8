import { Router } from 'express';
import type { AppContext } from '../../context.js';

/** Admin pages (mounted after requireAdmin): Settings: webhook URL and Keap pairs, access key rotation, API tokens. */
export function settingsAdminRoutes(_ctx: AppContext): Router {
  const router = Router();
  return router;
}
