import type { Kernel } from '../../core/kernel.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import type { AccessKeyring } from '../http-post/access-key.js';
import type { KeapClient } from '../keap/client.js';
import type { MemberService } from '../members/service.js';
import type { SiteSettings } from './site-settings.js';

/** What the Settings pages work with: the site settings, and the services whose settings they show. */
export interface SettingsContext extends Kernel {
  site: SiteSettings;
  readonly keap: KeapClient;
  readonly members: MemberService;
  readonly accessKeys: AccessKeyring;
  admin: CorePluginAdmin;
}
