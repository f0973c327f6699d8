import { Router } from 'express';
import type { FastRoute } from '../web/fast-route.js';
import type { Kernel } from '../core/kernel.js';
import type { Logger } from '../core/logger.js';
import { SecretBox } from '../core/secret-box.js';
import { csrfField, html, type AdminShell } from '../web/admin-shell.js';
import { pluginDatabase } from './database.js';
import { PluginSettingsStore } from './settings.js';
import type {
  AdminPage,
  CorePluginApi,
  PluginApi,
  PluginJobDefinition,
  PluginSecrets,
  PluginScope,
  RegistrationKind,
  ServiceKey,
} from './types.js';

/** One plugin's life from setup to stop: what it registered (for the plugins page) and how to undo it. */
export class Scope implements PluginScope {
  readonly logger: Logger;
  readonly registrations: Array<{ kind: RegistrationKind; label: string }> = [];
  private readonly undo: Array<() => void | Promise<void>> = [];
  private open = true;

  constructor(
    readonly name: string,
    readonly core: boolean,
    logger: Logger,
  ) {
    this.logger = logger.child({ plugin: name });
  }

  /** Registrations after the plugin stopped (a setup that outlived its timeout, a late callback) are refused. */
  assertOpen(): void {
    if (!this.open) throw new Error(`plugin ${this.name} is not running`);
  }

  record(kind: RegistrationKind, label: string): void {
    this.assertOpen();
    this.registrations.push({ kind, label });
  }

  addUndo(fn: () => void | Promise<void>): void {
    this.assertOpen();
    this.undo.push(fn);
  }

  /** Undoes every registration, last first; a failing step is logged and the others still run. */
  async close(): Promise<void> {
    this.open = false;
    for (const fn of this.undo.reverse()) {
      try {
        await fn();
      } catch (err) {
        this.logger.error({ err }, 'plugin stop step failed');
      }
    }
    this.undo.length = 0;
  }
}

export interface ApiDeps {
  kernel: Kernel;
  shell: AdminShell;
  /** Admin pages of plugin settings forms are added by the host (it owns their view). */
  addSettingsPage(scope: Scope, settings: PluginSettingsStore<any>): () => void;
}

/** The API a plugin's setup receives, bound to its scope. Built-ins get the core extras too. */
export function buildPluginApi(deps: ApiDeps, scope: Scope, routers: { router: Router; receiver: Router; fast: FastRoute[] }): CorePluginApi {
  const { kernel, shell } = deps;
  const { name, core } = scope;
  const fullJobType = (type: string) => (core ? type : `${name}.${type}`);
  let settingsDefined = false;
  // Bound to the plugin: its sealed values open for it only, and an error names it (never the value).
  const secrets: PluginSecrets = {
    seal: (plaintext, label = '') => kernel.secretBox.seal(plaintext, `plugin:${name}:${label}`),
    open: (sealed, label = '') => kernel.secretBox.open(sealed, `plugin:${name}:${label}`, `a secret of plugin ${name}${label ? ` (${label})` : ''}`),
    isSealed: (value) => SecretBox.isSealed(value),
  };

  const addPage = (page: AdminPage) => {
    scope.assertOpen();
    const path = String(page.path ?? '').replace(/^\/+|\/+$/g, '');
    if (path !== '' && !/^[a-z0-9][a-z0-9_/-]{0,120}$/.test(path)) throw new Error(`admin page path "${page.path}" must be lowercase letters, digits, -, _ and /`);
    if (typeof page.handler !== 'function') throw new Error(`admin page "${path}" needs a handler function`);
    const full = core ? path : ['plugins', name, path].filter(Boolean).join('/');
    const menu = page.menu ? { label: page.menu.label ?? page.title, order: page.menu.order ?? 100, ...(typeof page.menu.parent === 'string' ? { parent: page.menu.parent.replace(/^\/+|\/+$/g, '') } : {}) } : undefined;
    scope.addUndo(shell.addPage({ plugin: name, path: full, title: page.title, menu, handler: page.handler }));
    scope.record('page', `/admin${full ? `/${full}` : ''}`);
  };

  // The built-ins' services (`api.members`, ...) are not here: the host adds them as getters (host.ts).
  const api: Omit<CorePluginApi, ServiceKey> = {
    name,
    site: {
      // Read at each use: an administrator can rename the site while plugins run.
      get name() {
        return kernel.identity.siteName();
      },
      url: kernel.config.publicUrl,
    },
    logger: scope.logger,
    kernel,
    scope,
    router: routers.router,
    receiver: routers.receiver,
    fastRoute(route) {
      scope.assertOpen();
      routers.fast.push(route);
    },
    hooks: {
      addAction(hook, fn, options = {}) {
        scope.assertOpen();
        const off = kernel.hooks.addAction(hook, fn, { priority: options.priority, plugin: name, durable: options.durable === true, ...(options.wanted ? { wanted: options.wanted as never } : {}) });
        scope.record('action', `${String(hook)}${options.durable ? ' (durable)' : ''}`);
        scope.addUndo(off);
        return off;
      },
      addFilter(hook, fn, options = {}) {
        scope.assertOpen();
        const off = kernel.hooks.addFilter(hook, fn as never, { priority: options.priority, plugin: name });
        scope.record('filter', String(hook));
        scope.addUndo(off);
        return off;
      },
      doAction: (hook, ...args) => kernel.hooks.doAction(hook, ...(args as never)),
      applyFilters: (hook, ...args) => kernel.hooks.applyFilters(hook, ...(args as never)) as never,
    },
    jobs: {
      define<P>(definition: PluginJobDefinition<P>) {
        scope.assertOpen();
        const type = fullJobType(String(definition.type ?? ''));
        const off = kernel.jobs.define({ source: core ? 'internal' : `plugin:${name}`, ...definition, type }, core ? null : name);
        scope.record('job', type);
        scope.addUndo(off);
      },
      async enqueue(type, params, options = {}) {
        scope.assertOpen();
        const full = fullJobType(type);
        if (!kernel.jobs.has(full)) throw new Error(`plugin ${name} has no job type "${type}"`);
        return kernel.jobs.enqueue(full, params, options.runAfter === undefined ? {} : { runAfter: options.runAfter });
      },
    },
    admin: {
      addPage,
      render: (res, page) => shell.renderHtml(res, page),
      html,
      csrfField,
      view: (res, status, view, data) => shell.view(res, status, view, data),
      setGate: (gate) => shell.setGate(gate),
    },
    settings: {
      define(schema, defaults) {
        scope.assertOpen();
        if (settingsDefined) throw new Error(`plugin ${name} defined its settings already`);
        settingsDefined = true;
        const store = new PluginSettingsStore(
          kernel.settings,
          name,
          schema,
          defaults,
          (message) => scope.logger.warn({ problem: message }, 'stored plugin settings no longer fit the schema; using the defaults'),
          secrets,
        );
        if (store.sealStoredSecrets()) scope.logger.info('encrypted the secret settings stored in plaintext with the site key');
        scope.addUndo(deps.addSettingsPage(scope, store));
        scope.record('setting', Object.keys(schema.shape).join(', '));
        return store;
      },
    },
    db: pluginDatabase(kernel.db, name, (table) => {
      if (!scope.registrations.some((r) => r.kind === 'table' && r.label === table)) scope.record('table', table);
    }),
    mail: { send: (message) => kernel.mailer.send(message) },
    secrets,
    onStop(fn) {
      scope.addUndo(fn);
    },
    provide() {
      throw new Error('only built-in plugins provide services');
    },
  };
  return api as CorePluginApi;
}

/** The plugin-facing part of the API: the core extras are left off, so a plugin cannot reach for the kernel. */
export function publicApi(api: CorePluginApi): PluginApi {
  const { kernel: _kernel, receiver: _receiver, fastRoute: _fastRoute, provide: _provide, scope: _scope, admin, ...rest } = api;
  return { ...rest, admin: { addPage: admin.addPage, render: admin.render, html: admin.html, csrfField: admin.csrfField } } as PluginApi;
}

