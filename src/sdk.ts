/**
 * `memberhook/plugin`: what a plugin author imports. `definePlugin` only adds types (it returns its argument);
 * `z` is memberhook's own zod, for job params and settings schemas (a plugin needs no copy of its own); the rest are
 * types, and two error classes a job may throw to say whether running it again can help.
 *
 *   import { definePlugin, z } from 'memberhook/plugin';
 *   export default definePlugin({ name: 'my-plugin', version: '1.0.0', apiVersion: 1, setup(api) { ... } });
 *
 * The host resolves `memberhook/plugin` for every plugin it loads, wherever the plugin lives.
 */
import type { Plugin } from './plugins/types.js';

export function definePlugin<T extends Plugin>(plugin: T): T {
  return plugin;
}

export { z } from 'zod';
export { PLUGIN_API_VERSION } from './plugins/types.js';
export type { AdminPage, Job, JobOutcome, Plugin, PluginApi, PluginApiBase, PluginDb, PluginHooks, PluginJobs, PluginJobDefinition, PluginSecrets, PluginSettingsHandle, SafeHtml } from './plugins/types.js';
export { PermanentJobError, RetryableJobError } from './core/jobs/failures.js';
export type { ActionMap, FilterMap } from './core/hooks.js';
export type { RenderedEmail, MailMessage } from './core/mail.js';
export type { EventRecord } from './core/jobs/store.js';
// The built-ins declare their hooks and services where they live; these re-exports keep every declaration in view
// for a TypeScript plugin (ActionMap, FilterMap and PluginApi are merged from them).
export type { Member, MemberTag, Role, RoleSummary } from './features/members/types.js';
export type { MemberService } from './features/members/service.js';
export type {} from './features/members/plugin.js';
export type { RoleService } from './features/members/role-service.js';
export type { KeapContact } from './features/keap/types.js';
export type { KeapClient } from './features/keap/client.js';
export type {} from './features/keap/plugin.js';
export type { WebhookActions } from './features/http-post/plugin.js';
export type { WebhookJobParams } from './features/http-post/jobs.js';
export type { WebhookRequest } from './features/http-post/params.js';
export type { SiteSettings } from './features/settings/site-settings.js';
export type {} from './features/settings/plugin.js';
export type { AccessKeyring } from './features/http-post/access-key.js';
export type {} from './features/members/sessions.js';
export type {} from './features/members/password-reset.js';
export type { NewMemberDraft } from './features/member-sync/service.js';
export type {} from './features/member-sync/plugin.js';
export type {} from './features/welcome-email/sender.js';
export type {} from './features/http-post/service.js';
