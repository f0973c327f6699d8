import type { MailRecipient } from './mail.js';
import type { SettingsStore } from './settings.js';

/** Keys in the settings table for the site's name and the sender of its emails. */
export const SITE_IDENTITY_SETTING = {
  siteName: 'site.name',
  senderName: 'mail.sender_name',
  senderAddress: 'mail.sender_address',
} as const;

export interface SiteIdentityDefaults {
  /** SITE_NAME, else "memberhook". */
  siteName: string;
  /** From MAIL_FROM: its display name (absent: the site's name is used) and its one address. */
  sender: { name?: string | undefined; address: string };
}

/** What an administrator stored; an empty or missing value means "the default" (from the environment). */
export interface StoredSiteIdentity {
  siteName: string;
  senderName: string;
  senderAddress: string;
}

/**
 * The site's name (page titles, headers, emails) and the From of its emails, read from the database on every use:
 * both threads (requests and jobs) see an administrator's edit at once, and no copy taken at start goes stale.
 * The environment gives the defaults; a value stored from the admin page wins over them.
 */
export class SiteIdentity {
  constructor(
    private readonly store: SettingsStore,
    readonly defaults: SiteIdentityDefaults,
  ) {}

  siteName(): string {
    return this.store.get(SITE_IDENTITY_SETTING.siteName) || this.defaults.siteName;
  }

  /** The From of every email: the stored name and address, else MAIL_FROM's, the name else the site's name. */
  sender(): MailRecipient {
    const stored = this.stored();
    return {
      name: stored.senderName || this.defaults.sender.name || this.siteName(),
      address: stored.senderAddress || this.defaults.sender.address,
    };
  }

  stored(): StoredSiteIdentity {
    return {
      siteName: this.store.get(SITE_IDENTITY_SETTING.siteName) ?? '',
      senderName: this.store.get(SITE_IDENTITY_SETTING.senderName) ?? '',
      senderAddress: this.store.get(SITE_IDENTITY_SETTING.senderAddress) ?? '',
    };
  }

  /** Stores what the admin page sent, already validated; '' goes back to the default. */
  set(values: StoredSiteIdentity): void {
    this.store.set(SITE_IDENTITY_SETTING.siteName, values.siteName);
    this.store.set(SITE_IDENTITY_SETTING.senderName, values.senderName);
    this.store.set(SITE_IDENTITY_SETTING.senderAddress, values.senderAddress);
  }
}
