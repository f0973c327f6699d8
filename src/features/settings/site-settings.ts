import type { Config } from '../../config.js';
import type { SealedSettings, SettingsStore } from '../../core/settings.js';
import type { EmailTemplateOverrides } from '../../core/email-templates.js';

/** Keys in the settings table for what admins edit on the settings pages. */
export const SITE_SETTING = {
  defaultRole: 'members.default_role',
  passwordField: 'keap.password_field',
  pushPasswordChanges: 'keap.password_push',
  takeKeapPasswords: 'keap.password_pull',
  usernameField: 'keap.username_field',
  alwaysSendWelcome: 'welcome.always_send',
  welcomeSubject: 'welcome.subject',
  welcomeText: 'welcome.text',
  welcomeHtml: 'welcome.html',
  passwordResetSubject: 'password_reset.subject',
  passwordResetText: 'password_reset.text',
  passwordResetHtml: 'password_reset.html',
  keapApiKey: 'keap.api_key',
} as const;

/** The environment variable that, when set, fixes a setting so the admin page shows it read-only. */
export const ENV_OF = {
  defaultRole: 'DEFAULT_ROLE',
  passwordField: 'KEAP_PASSWORD_FIELD',
  usernameField: 'KEAP_USERNAME_FIELD',
  keapApiKey: 'KEAP_API_KEY',
} as const;

export type EnvFixedSetting = keyof typeof ENV_OF;

/**
 * The settings admins can change at run time, read fresh on every use (a job picks up a change at once).
 * Precedence: an environment variable that is set wins (it is the deployer's word, and the page says so);
 * then the value stored from the admin pages; then the built-in default.
 */
export class SiteSettings {
  constructor(
    private readonly store: SettingsStore,
    private readonly config: Pick<Config, 'defaultRole' | 'fromEnvironment'> & { keap: Pick<Config['keap'], 'passwordField' | 'usernameField' | 'apiKey'> },
    /** Where the secrets among them (the Keap API key) are kept, sealed with the site key. */
    private readonly sealed: SealedSettings,
  ) {}

  /**
   * Seals a Keap API key stored in plaintext before encryption came in, and checks a sealed one opens (a wrong site
   * key stops the start, naming the setting). Run at every start; true when it sealed one.
   */
  sealStoredSecrets(): boolean {
    return this.sealed.sealStored(SITE_SETTING.keapApiKey);
  }

  /** Whether an environment variable fixes this setting (the admin page then shows it read-only). */
  fixedByEnvironment(setting: EnvFixedSetting): string | undefined {
    const name = ENV_OF[setting];
    return this.config.fromEnvironment.has(name) ? name : undefined;
  }

  defaultRole(): string {
    if (this.fixedByEnvironment('defaultRole')) return this.config.defaultRole;
    return this.store.get(SITE_SETTING.defaultRole) ?? this.config.defaultRole;
  }

  /** The Keap custom field (label or id) holding the member's password; undefined when none is used. */
  passwordField(): string | undefined {
    return this.optionalField('passwordField', this.config.keap.passwordField);
  }

  /**
   * Whether a password a member or an administrator sets is written to Keap's password field (never an
   * administrator's own). On unless turned off; never without a password field.
   */
  pushPasswordChanges(): boolean {
    return this.passwordField() !== undefined && this.store.get(SITE_SETTING.pushPasswordChanges) !== '0';
  }

  /**
   * Whether an `update` post that finds a new password in Keap's field makes it the member's password (never an
   * administrator's). On unless turned off; never without a password field.
   */
  takeKeapPasswords(): boolean {
    return this.passwordField() !== undefined && this.store.get(SITE_SETTING.takeKeapPasswords) !== '0';
  }

  /** The two stored choices as saved, whether or not a password field is set now (the settings page shows them). */
  passwordSyncChoices(): { push: boolean; take: boolean } {
    return { push: this.store.get(SITE_SETTING.pushPasswordChanges) !== '0', take: this.store.get(SITE_SETTING.takeKeapPasswords) !== '0' };
  }

  setPasswordSync(choices: { push: boolean; take: boolean }): void {
    this.store.set(SITE_SETTING.pushPasswordChanges, choices.push ? '1' : '0');
    this.store.set(SITE_SETTING.takeKeapPasswords, choices.take ? '1' : '0');
  }

  /** The Keap custom field (label or id) holding the member's username; undefined means "use the email". */
  usernameField(): string | undefined {
    return this.optionalField('usernameField', this.config.keap.usernameField);
  }

  /**
   * The Keap API key (PAT or SAK) the client sends: KEAP_API_KEY when set, else the one stored from the settings
   * page. Read on every Keap request (one indexed row), so storing or clearing a key needs no restart.
   */
  keapApiKey(): string | undefined {
    if (this.fixedByEnvironment('keapApiKey')) return this.config.keap.apiKey;
    return this.sealed.get(SITE_SETTING.keapApiKey) || undefined;
  }

  /** Where the API key in use comes from, for the settings page (which never shows the key itself). */
  keapApiKeySource(): 'environment' | 'stored' | undefined {
    if (this.fixedByEnvironment('keapApiKey') && this.config.keap.apiKey) return 'environment';
    return this.store.get(SITE_SETTING.keapApiKey) ? 'stored' : undefined;
  }

  alwaysSendWelcome(): boolean {
    return this.store.get(SITE_SETTING.alwaysSendWelcome) === '1';
  }

  /** The admin's welcome email templates; an empty part falls back to the built-in one. */
  welcomeTemplate(): EmailTemplateOverrides {
    return this.emailTemplate('welcome');
  }

  /** The admin's password reset email templates; an empty part falls back to the built-in one. */
  passwordResetTemplate(): EmailTemplateOverrides {
    return this.emailTemplate('passwordReset');
  }

  setDefaultRole(slug: string): void {
    this.store.set(SITE_SETTING.defaultRole, slug);
  }

  /**
   * An empty string stores "no field" (which overrides nothing set in the environment). A field left out keeps
   * its stored value (the page leaves out the ones an environment variable fixes).
   */
  setKeapFields(fields: { passwordField?: string; usernameField?: string }): void {
    if (fields.passwordField !== undefined) this.store.set(SITE_SETTING.passwordField, fields.passwordField);
    if (fields.usernameField !== undefined) this.store.set(SITE_SETTING.usernameField, fields.usernameField);
  }

  /** Stores the Keap API key the client uses unless KEAP_API_KEY is set; an empty string clears it. */
  setKeapApiKey(key: string): void {
    this.sealed.set(SITE_SETTING.keapApiKey, key);
  }

  setAlwaysSendWelcome(on: boolean): void {
    this.store.set(SITE_SETTING.alwaysSendWelcome, on ? '1' : '0');
  }

  setWelcomeTemplate(template: { subject: string; text: string; html: string }): void {
    this.setEmailTemplate('welcome', template);
  }

  setPasswordResetTemplate(template: { subject: string; text: string; html: string }): void {
    this.setEmailTemplate('passwordReset', template);
  }

  private emailTemplate(email: 'welcome' | 'passwordReset'): EmailTemplateOverrides {
    return {
      subject: this.store.get(SITE_SETTING[`${email}Subject`]) || undefined,
      text: this.store.get(SITE_SETTING[`${email}Text`]) || undefined,
      html: this.store.get(SITE_SETTING[`${email}Html`]) || undefined,
    };
  }

  private setEmailTemplate(email: 'welcome' | 'passwordReset', template: { subject: string; text: string; html: string }): void {
    this.store.set(SITE_SETTING[`${email}Subject`], template.subject);
    this.store.set(SITE_SETTING[`${email}Text`], template.text);
    this.store.set(SITE_SETTING[`${email}Html`], template.html);
  }

  private optionalField(setting: 'passwordField' | 'usernameField', fromConfig: string | undefined): string | undefined {
    if (this.fixedByEnvironment(setting)) return fromConfig;
    const stored = this.store.get(SITE_SETTING[setting]);
    // A stored empty value is the admin's "none", which beats nothing in the environment.
    return stored === undefined ? fromConfig : stored || undefined;
  }
}
