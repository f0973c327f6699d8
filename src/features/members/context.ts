import type { Kernel } from '../../core/kernel.js';
import type { CorePluginAdmin } from '../../plugins/types.js';
import type { KeapClient } from '../keap/client.js';
import type { SiteSettings } from '../settings/site-settings.js';
import type { BulkActionStore } from './bulk-action-store.js';
import type { LoginDevices } from './login-devices.js';
import type { LoginThrottle } from './login-throttle.js';
import type { PasswordResetStore } from './password-reset-store.js';
import type { RoleService } from './role-service.js';
import type { MemberService } from './service.js';
import type { MemberSessions } from './session-store.js';

/** What the members feature's pages and jobs work with: the kernel, its own services, and the admin shell. */
export interface MembersContext extends Kernel {
  members: MemberService;
  roles: RoleService;
  sessions: MemberSessions;
  resets: PasswordResetStore;
  /** The login forms' brute-force throttle (member and admin login, password change share its counters). */
  loginThrottle: LoginThrottle;
  /** Device cookies: browsers that logged in to an account before, which the throttle counts apart. */
  devices: LoginDevices;
  admin: CorePluginAdmin;
  /** Bulk actions on members (change role, resync, reset, delete), with their progress. */
  bulk: BulkActionStore;
  /** Admin-editable settings (the default role, the Keap password field). */
  site: SiteSettings;
  /** The Keap client (set up after this feature: read when a page asks), for linking members added by hand. */
  readonly keap: KeapClient;
}
