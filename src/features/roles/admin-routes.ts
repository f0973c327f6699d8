import { Router } from 'express';
import type { AppContext } from '../../context.js';

/** Admin pages (mounted after requireAdmin): the Roles page: list, add, rename, delete, webhook-assignable. */
export function roleAdminRoutes(_ctx: AppContext): Router {
  const router = Router();
  return router;
}
