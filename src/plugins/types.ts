import type { Response, Router } from 'express';
import type { FastRoute } from '../web/fast-route.js';
import type { z } from 'zod';
import type { ActionMap, FilterMap } from '../core/hooks.js';
import type { Job, JobOutcome } from '../core/jobs/queue.js';
import type { Kernel } from '../core/kernel.js';
import type { Logger } from '../core/logger.js';
import type { MailMessage, SentMail } from '../core/mail.js';
import type { AdminGate, AdminPage, AdminViewData, SafeHtml } from '../web/pages.js';

export type { AdminGate, AdminPage, AdminViewData, SafeHtml };

/** The plugin API this host speaks; a plugin names the version it was written for. */
export const PLUGIN_API_VERSION = 1;

/** What a plugin module's default export is. */
export interface Plugin {
  /** Lowercase letters, digits and dashes; names its routes, pages, tables, settings and jobs. */
  name: string;
  version: string;
  apiVersion: typeof PLUGIN_API_VERSION;
  description?: string;
  /** Registers everything the plugin does. Runs at start and again whenever the plugin is enabled. */
  setup(api: PluginApi): void | Promise<void>;
}

export type { Job, JobOutcome };

/** A job type as a plugin defines it; `type` is prefixed with the plugin's name (`my-plugin.sync`). */
export interface PluginJobDefinition<P> {
  type: string;
  params: z.ZodType<P>;
  /** Identical pending jobs (same key) coalesce into the first. */
  dedupeKey?: (params: P) => string | undefined;
  /** Jobs of one Keap contact run one at a time, in order. */
  contactId?: (params: P) => number | null | undefined;
  run(job: Job<P>): Promise<JobOutcome | void>;
  /**
   * Runs in the transaction that records the job failed for good (`failed`, or `dead` after its retries): drop what
   * was kept only for its runs (a secret waiting to be delivered). Synchronous database work only.
   */
  onGiveUp?(job: Job<P>): void;
}

export interface PluginHooks {
  addAction<N extends keyof ActionMap>(
    name: N,
    fn: (...args: ActionMap[N]) => void | Promise<void>,
    options?: { priority?: number; durable?: boolean; wanted?: (...args: ActionMap[N]) => boolean },
  ): () => void;
  addFilter<N extends keyof FilterMap>(
    name: N,
    fn: (...args: FilterMap[N]) => FilterResult<FilterMap[N]> | Promise<FilterResult<FilterMap[N]>>,
    options?: { priority?: number },
  ): () => void;
  /** Fires an action (the plugin's own, declared by merging into ActionMap). */
  doAction<N extends keyof ActionMap>(name: N, ...args: ActionMap[N]): Promise<void>;
  applyFilters<N extends keyof FilterMap>(name: N, ...args: FilterMap[N]): Promise<FilterResult<FilterMap[N]>>;
}

type FilterResult<T> = T extends [infer V, ...unknown[]] ? V : never;

export interface PluginJobs {
  /** Defines a job type; its jobs wait while the plugin is disabled. */
  define<P>(definition: PluginJobDefinition<P>): void;
  /** Queues a job of one of this plugin's types (the short name given to `define`). */
  enqueue<P>(type: string, params: P, options?: { runAfter?: number }): Promise<{ id: number; coalesced: boolean }>;
}



export interface PluginAdmin {
  addPage(page: AdminPage): void;
  /** Sends `html` inside the admin layout (navigation, account, styles). */
  render(res: Response, page: { title: string; html: SafeHtml | string; status?: number }): void;
  /** A tagged template that escapes every value: html`<p>${member.email}</p>`. */
  html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml;
  /** The hidden CSRF field every form on an admin page must carry. */
  csrfField(res: Response): SafeHtml;
}

/** A settings object stored in the database and edited on a generated admin form. */
export interface PluginSettingsHandle<T> {
  get(): T;
  /** Validates and stores; throws a ZodError naming the field when a value is wrong. */
  set(values: Partial<T>): T;
}

export interface PluginSettings {
  /**
   * The plugin's settings: a zod object of strings, numbers, booleans and enums (`.describe()` gives a field its
   * help text; `.meta({ secret: true })` hides a string's value on the form). Edited at
   * `/admin/plugins/<plugin>/settings`.
   */
  define<S extends z.ZodObject>(schema: S, defaults: z.input<S>): PluginSettingsHandle<z.output<S>>;
}

export interface PluginDb {
  /**
   * The plugin's own schema: each string is one migration, applied once, in order, each in a transaction. Tables
   * and indexes must be named with the plugin's prefix (`api.db.table('notes')` → `my_plugin_notes`).
   */
  migrate(migrations: string[]): Promise<void>;
  /** The prefixed name of one of the plugin's tables. */
  table(name: string): string;
  all<R = Record<string, unknown>>(sql: string, params?: unknown[] | Record<string, unknown>): Promise<R[]>;
  get<R = Record<string, unknown>>(sql: string, params?: unknown[] | Record<string, unknown>): Promise<R | undefined>;
  run(sql: string, params?: unknown[] | Record<string, unknown>): Promise<{ changes: number; lastInsertRowid: number }>;
}

export interface PluginMail {
  send(message: MailMessage): Promise<SentMail>;
}

/**
 * Encryption with the site key (AES-256-GCM), for secrets a plugin keeps in its own tables (a password, a signing
 * secret): a copy of the database alone reveals none of them. Sealed values are bound to the plugin and to `label`
 * (say, the table and row the value belongs to): opened with another label, or by another plugin, they do not open.
 */
export interface PluginSecrets {
  /** Text to store: `enc:v1:...`. */
  seal(plaintext: string, label?: string): string;
  /** The plaintext; throws, naming the label and where the site key comes from (never the value), when it cannot. */
  open(sealed: string, label?: string): string;
  /** Whether a stored value is sealed (one from before the plugin sealed its values is not). */
  isSealed(value: string): boolean;
}

/**
 * What `setup(api)` receives: bound to the plugin's name, so every registration is undone when the plugin is
 * disabled. Built-in features add their services to it by declaration merging (`api.members`, `api.keap`,
 * `api.webhooks`, ...).
 */
export interface PluginApi extends PluginApiBase {}

/** The plugin API without the built-ins' services. */
export interface PluginApiBase {
  readonly name: string;
  readonly site: { name: string; url: string };
  /** A child logger carrying the plugin's name. */
  readonly logger: Logger;
  readonly hooks: PluginHooks;
  readonly jobs: PluginJobs;
  /** An express Router mounted at `/plugins/<name>/`. */
  readonly router: Router;
  readonly admin: PluginAdmin;
  readonly settings: PluginSettings;
  readonly db: PluginDb;
  readonly mail: PluginMail;
  readonly secrets: PluginSecrets;
  /** Runs when the plugin is disabled and when the server stops. */
  onStop(fn: () => void | Promise<void>): void;
}

/** The names the built-ins' services take on the API. */
export type ServiceKey = Exclude<keyof PluginApi, keyof PluginApiBase>;

/** What kind of thing a plugin registered, for the plugins page. */
export type RegistrationKind = 'action' | 'filter' | 'route' | 'page' | 'job' | 'webhook' | 'setting' | 'table' | 'service';

/** The plugin a service is handed to, so a service can tie what it registers to that plugin's life. */
export interface PluginScope {
  readonly name: string;
  readonly core: boolean;
  readonly logger: Logger;
  /** Lists something on the plugins page. */
  record(kind: RegistrationKind, label: string): void;
  /** Runs when the plugin stops (disabled, failed in setup, server shutdown), last registered first. */
  addUndo(fn: () => void | Promise<void>): void;
}


/** The built-ins' admin extras: Handlebars views in `views/admin/`, and the gate that guards `/admin`. */
export interface CorePluginAdmin extends PluginAdmin {
  /** Renders `views/admin/<view>.hbs` in the admin layout. `section` marks the current top-navigation entry. */
  view(res: Response, status: number, view: string, data: AdminViewData): void;
  setGate(gate: AdminGate): void;
}


/**
 * What a built-in feature's setup receives: the same API, plus the kernel its stores are built on, a router for
 * program-facing endpoints mounted before the browser security headers, and `provide` to hand its service to
 * other plugins (`api.members`, ...). Built-ins mount at the site root and `/admin/` instead of under `/plugins/`.
 */
export interface CorePluginApi extends PluginApi {
  readonly kernel: Kernel;
  readonly receiver: Router;
  /** Answers requests it recognizes before express sees them (see FastRoute): for the hottest program-facing path. */
  fastRoute(route: FastRoute): void;
  readonly admin: CorePluginAdmin;
  /** Makes `api[key]` available to every plugin; `factory` is called once per plugin that uses it. */
  provide<K extends ServiceKey>(key: K, factory: (scope: PluginScope) => PluginApi[K]): void;
  /** The scope of this plugin, for registering into services that undo with it. */
  readonly scope: PluginScope;
}

export interface CorePlugin {
  name: string;
  description: string;
  setup(api: CorePluginApi): void | Promise<void>;
}
