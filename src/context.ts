import type { Kernel } from './core/kernel.js';
import type { AccessKeyring } from './features/http-post/access-key.js';
import type { KeapClient } from './features/keap/client.js';
import type { MemberService } from './features/members/service.js';
import type { OutboundWebhooks } from './features/outbound-webhooks/service.js';
import type { SiteSettings } from './features/settings/site-settings.js';
import type { PluginHost } from './plugins/host.js';
import type { AdminShell } from './web/admin-shell.js';

/**
 * Everything a running site is: the kernel, the admin shell, the plugin host, and the built-ins' services (as
 * `api.<service>` gives them to plugins), for the app, the command line and tests.
 */
export interface AppContext extends Kernel {
  shell: AdminShell;
  plugins: PluginHost;
  readonly members: MemberService;
  readonly keap: KeapClient;
  readonly site: SiteSettings;
  readonly accessKeys: AccessKeyring;
  readonly outboundWebhooks: OutboundWebhooks;
}
