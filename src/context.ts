import type { Config } from './config.js';
import type { Clock } from './core/clock.js';
import type { Db } from './core/db.js';
import type { HookRegistry } from './core/hooks.js';
import type { Logger } from './core/logger.js';
import type { Mailer } from './core/mail.js';
import type { SettingsStore } from './core/settings.js';
import type { ViewRenderer } from './core/views.js';
import type { KeapClient } from './features/keap/client.js';
import type { KeapMemberSync } from './features/keap/member-sync.js';
import type { MemberService } from './features/members/service.js';
import type { EventStore } from './features/queue/store.js';
import type { SiteSettings } from './features/settings/site-settings.js';
import type { QueueWorker } from './features/queue/worker.js';
import type { AccessKeyring } from './features/webhooks/access-key.js';
import type { WebhookService } from './features/webhooks/service.js';

/** What every feature may use: built once at start (see server.ts), passed down, never global. */
export interface AppContext {
  config: Config;
  db: Db;
  logger: Logger;
  clock: Clock;
  hooks: HookRegistry;
  views: ViewRenderer;
  settings: SettingsStore;
  /** What admins edit on the settings pages (over environment defaults). */
  site: SiteSettings;
  mailer: Mailer;
  keap: KeapClient;
  members: MemberService;
  events: EventStore;
  worker: QueueWorker;
  memberSync: KeapMemberSync;
  webhooks: WebhookService;
  accessKeys: AccessKeyring;
}
