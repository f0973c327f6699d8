import { Router } from 'express';
import type { AppContext } from '../../context.js';

/** Admin pages (mounted after requireAdmin): the Events pages: list, detail with attempts, replay. */
export function eventAdminRoutes(_ctx: AppContext): Router {
  const router = Router();
  return router;
}
