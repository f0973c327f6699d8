import { Router } from 'express';
import type { AppContext } from '../../context.js';

/** Admin pages (mounted after requireAdmin): Settings, Members and email tab: default role, always send welcome, welcome email template with preview. */
export function memberSettingsRoutes(_ctx: AppContext): Router {
  const router = Router();
  return router;
}
