import type { Config } from './config.js';
import type { Db } from './core/db.js';
import type { HookRegistry } from './core/hooks.js';
import type { Logger } from './core/logger.js';
import type { SettingsStore } from './core/settings.js';
import type { ViewRenderer } from './core/views.js';

/** What every feature may use: built once at start (see server.ts), passed down, never global. */
export interface AppContext {
  config: Config;
  db: Db;
  logger: Logger;
  hooks: HookRegistry;
  views: ViewRenderer;
  settings: SettingsStore;
}
