import { Router } from 'express';
import type { AppContext } from '../../context.js';

/** Admin pages (mounted after requireAdmin): the Members pages: list, search, member page and its actions, add by hand. */
export function memberAdminRoutes(_ctx: AppContext): Router {
  const router = Router();
  return router;
}
