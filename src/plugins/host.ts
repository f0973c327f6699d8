import { Router, type RequestHandler } from 'express';
import type { FastRoute } from '../web/fast-route.js';
import { basename, extname } from 'node:path';
import { StartupError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import type { AdminShell } from '../web/admin-shell.js';
import { buildPluginApi, publicApi, Scope } from './api.js';
import { discoverPlugins } from './discovery.js';
import { resolveSdkForPlugins } from './sdk-resolution.js';
import { pluginSettingsRoutes } from './settings-page.js';
import type { PluginSettingsStore } from './settings.js';
import { PluginStateStore } from './state-store.js';
import { PLUGIN_API_VERSION, type CorePlugin, type Plugin, type PluginApi, type PluginScope, type RegistrationKind } from './types.js';

export type PluginState = 'running' | 'disabled' | 'failed';

/** A plugin as the plugins page shows it. */
export interface PluginInfo {
  /** The plugin's name, or its file or folder name when it could not be read far enough to know the name. */
  name: string;
  version: string;
  description: string;
  core: boolean;
  /** `built-in`, a path, or an npm package name. */
  source: string;
  state: PluginState;
  error: string | undefined;
  registrations: Array<{ kind: RegistrationKind; label: string }>;
  settingsUrl: string | undefined;
}

export interface PluginHostOptions {
  /** PLUGINS_DIR. */
  dir: string;
  /** PLUGINS: npm package names or paths. */
  packages: readonly string[];
  cwd: string;
  /** How long a plugin's setup may take before it counts as failed. */
  setupTimeoutMs?: number;
}

const NAME_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const DEFAULT_SETUP_TIMEOUT_MS = 10_000;

interface Entry {
  /** The key in `entries`: the plugin's name once known, else its source. */
  id: string;
  name: string;
  version: string;
  description: string;
  core: boolean;
  source: string;
  url: string | undefined;
  plugin: Plugin | CorePlugin | undefined;
  state: PluginState;
  error: string | undefined;
  scope: Scope | undefined;
  router: Router | undefined;
  settings: PluginSettingsStore<any> | undefined;
  /** How often the module was imported: a retry after a failed import loads a fresh copy. */
  imports: number;
}

/** A plugin module whose default export is not a plugin: the message names what is wrong. */
class PluginShapeError extends Error {}

/**
 * Finds, loads, starts and stops plugins. Built-ins start first, in their list's order, and must succeed; then the
 * plugins in PLUGINS_DIR and PLUGINS, in name order, each in isolation: one that fails to import, has a bad export
 * or throws in setup is marked failed with its error, its partial registrations are undone, and the rest run.
 */
export class PluginHost {
  private readonly entries = new Map<string, Entry>();
  private readonly services = new Map<string, (scope: PluginScope) => unknown>();
  private readonly apis = new Map<Scope, object>();
  private readonly coreRouters: Router[] = [];
  private readonly coreReceivers: Router[] = [];
  private readonly coreFastRoutes: FastRoute[] = [];
  private readonly states: PluginStateStore;
  private readonly hostScope: Scope;
  private readonly enabledListeners: Array<(name: string, enabled: boolean) => void> = [];

  constructor(
    private readonly kernel: Kernel,
    private readonly shell: AdminShell,
    private readonly options: PluginHostOptions,
  ) {
    this.states = new PluginStateStore(kernel.db);
    this.hostScope = new Scope('host', true, kernel.logger);
  }

  /** Starts the built-in features; any failure stops the server's start. */
  async startBuiltins(plugins: readonly CorePlugin[]): Promise<void> {
    for (const plugin of plugins) {
      const entry = this.addEntry({ id: plugin.name, name: plugin.name, version: this.kernel.config.version, description: plugin.description, core: true, source: 'built-in', plugin });
      await this.start(entry);
    }
  }

  /** Finds and starts the third-party plugins (in name order); failures are recorded, never thrown. */
  async startPlugins(): Promise<void> {
    const found = discoverPlugins(this.options.dir, this.options.packages, this.options.cwd, (name) => import.meta.resolve(name));
    if (found.length > 0) resolveSdkForPlugins();
    const loaded: Entry[] = [];
    for (const item of found) {
      const entry = this.newEntry({ id: item.source, name: displayName(item.source), version: '', description: '', core: false, source: item.source, url: item.url });
      if (item.error) {
        this.fail(entry, item.error);
        this.entries.set(entry.id, entry);
        continue;
      }
      await this.load(entry);
      loaded.push(entry);
    }
    const named = loaded.filter((e) => e.plugin).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of loaded.filter((e) => !e.plugin)) this.entries.set(entry.id, entry);
    for (const entry of named) {
      const holder = this.entries.get(entry.name);
      if (holder) {
        this.fail(entry, holder.core ? `"${entry.name}" is the name of a built-in feature` : `another plugin named "${entry.name}" is loaded from ${holder.source}`);
        this.entries.set(entry.source, entry);
        continue;
      }
      entry.id = entry.name;
      this.entries.set(entry.id, entry);
      if (this.states.isEnabled(entry.name)) await this.start(entry);
      else entry.state = 'disabled';
    }
    const failed = [...this.entries.values()].filter((e) => e.state === 'failed').length;
    const running = [...this.entries.values()].filter((e) => !e.core && e.state === 'running').map((e) => e.name);
    this.kernel.logger.info({ running, failed }, 'plugins loaded');
  }

  list(): PluginInfo[] {
    return [...this.entries.values()]
      .sort((a, b) => Number(b.core) - Number(a.core) || a.name.localeCompare(b.name))
      .map((e) => ({
        name: e.name,
        version: e.version,
        description: e.description,
        core: e.core,
        source: e.source,
        state: e.state,
        error: e.error,
        registrations: e.scope ? [...e.scope.registrations, ...routesOf(e)] : [],
        settingsUrl: e.settings && e.state === 'running' ? `/admin/plugins/${e.name}/settings` : undefined,
      }));
  }

  get(name: string): PluginInfo | undefined {
    return this.list().find((p) => p.name === name);
  }

  /** Enables a plugin at once (its setup runs) and remembers it; a failed one is loaded afresh and tried again. */
  async enable(name: string): Promise<PluginInfo> {
    const entry = this.findEntry(name);
    if (entry.core) throw new PluginStateError('built-in features are always on');
    if (entry.state === 'running') return this.get(entry.name)!;
    // A plugin that failed is loaded afresh: a fixed file is picked up. One that failed before its name was known
    // (an import error) is filed under its name once it has one.
    if (entry.state === 'failed' && entry.url) {
      await this.load(entry);
      if (entry.plugin && entry.id !== entry.name && !this.entries.has(entry.name)) {
        this.entries.delete(entry.id);
        entry.id = entry.name;
        this.entries.set(entry.id, entry);
      }
    }
    if (entry.plugin) {
      this.states.setEnabled(entry.name, true);
      await this.start(entry);
      this.tellEnabled(entry.name, true);
    }
    return this.list().find((p) => p.source === entry.source)!;
  }

  /** Disables a plugin at once: every registration is undone, its jobs wait; remembered across restarts. */
  async disable(name: string): Promise<PluginInfo> {
    const entry = this.findEntry(name);
    if (entry.core) throw new PluginStateError('built-in features cannot be disabled');
    if (entry.plugin) this.states.setEnabled(entry.name, false);
    if (entry.state === 'running') await this.stop(entry);
    entry.state = 'disabled';
    entry.error = undefined;
    if (entry.plugin) this.tellEnabled(entry.name, false);
    return this.list().find((p) => p.source === entry.source)!;
  }

  /** Hears of every enable and disable made here (the job thread's host follows the request thread's). */
  onEnabledChange(listener: (name: string, enabled: boolean) => void): void {
    this.enabledListeners.push(listener);
  }

  private tellEnabled(name: string, enabled: boolean): void {
    for (const listener of this.enabledListeners) listener(name, enabled);
  }

  /** Stops every plugin, third-party ones first (their onStop callbacks run), then the built-ins, last first. */
  async stopAll(): Promise<void> {
    const running = [...this.entries.values()].filter((e) => e.state === 'running');
    for (const entry of [...running.filter((e) => !e.core), ...running.filter((e) => e.core).reverse()]) await this.stop(entry);
  }

  /** A built-in's service as the composition root (server.ts, the command line, tests) uses it. */
  service<K extends keyof PluginApi>(key: K): PluginApi[K] {
    const factory = this.services.get(String(key));
    if (!factory) throw new Error(`no built-in feature provides api.${String(key)}`);
    return factory(this.hostScope) as PluginApi[K];
  }

  /** The built-ins' fast routes (see FastRoute), tried in their order before express. */
  fastRoutes(): readonly FastRoute[] {
    return this.coreFastRoutes;
  }

  /** The built-ins' program-facing routers (mounted before the browser headers), in their order. */
  receiverRouters(): readonly Router[] {
    return this.coreReceivers;
  }

  /** The built-ins' page and API routers, in their order. */
  siteRouters(): readonly Router[] {
    return this.coreRouters;
  }

  /** `/plugins/:plugin/...`: the plugin's router while it runs, else nothing (a 404). */
  pluginRoutes(): RequestHandler {
    return (req, res, next) => {
      const name = String(req.params.plugin ?? '');
      const entry = this.entries.get(name);
      if (!entry || entry.core || entry.state !== 'running' || !entry.router) return next();
      return entry.router(req, res, next);
    };
  }

  private provide(key: string, factory: (scope: PluginScope) => unknown, by: Scope): void {
    // The providing plugin's own API holds every name the API has (its own parts and the services so far).
    if (this.services.has(key) || key in (this.apis.get(by) ?? {})) throw new Error(`api.${key} exists already; a service needs a name of its own`);
    this.services.set(key, factory);
    by.record('service', `api.${key}`);
    for (const [scope, api] of this.apis) attachService(api, key, factory, scope);
  }

  private async load(entry: Entry): Promise<void> {
    entry.plugin = undefined;
    try {
      entry.imports++;
      const url = entry.imports > 1 ? `${entry.url}${entry.url!.includes('?') ? '&' : '?'}reload=${entry.imports}` : entry.url!;
      const module = (await import(url)) as { default?: unknown };
      const plugin = checkPlugin(module.default);
      entry.plugin = plugin;
      entry.name = plugin.name;
      entry.version = plugin.version;
      entry.description = plugin.description ?? '';
      entry.state = 'disabled';
      entry.error = undefined;
    } catch (err) {
      const message = err instanceof PluginShapeError ? err.message : `could not be imported: ${firstLine(err)}`;
      this.kernel.logger.error({ err: err instanceof PluginShapeError ? undefined : err, source: entry.source }, `plugin ${message}`);
      this.fail(entry, message);
    }
  }

  private async start(entry: Entry): Promise<void> {
    const plugin = entry.plugin!;
    const scope = new Scope(entry.name, entry.core, this.kernel.logger);
    const routers = { router: Router(), receiver: Router(), fast: [] as FastRoute[] };
    const full = buildPluginApi(
      {
        kernel: this.kernel,
        shell: this.shell,
        addSettingsPage: (s, settings) => {
          entry.settings = settings;
          const off = this.shell.addPage({ plugin: s.name, path: `plugins/${s.name}/settings`, title: `${s.name} settings`, menu: undefined, handler: pluginSettingsRoutes(this.shell, s.name, settings) });
          return () => {
            off();
            entry.settings = undefined;
          };
        },
      },
      scope,
      routers,
    );
    if (entry.core) full.provide = (key, factory) => this.provide(String(key), factory, scope);
    const api: object = entry.core ? full : publicApi(full);
    for (const [key, factory] of this.services) attachService(api, key, factory, scope);
    this.apis.set(scope, api);
    try {
      await withTimeout(Promise.resolve((plugin.setup as (api: PluginApi) => unknown)(api as PluginApi)), this.options.setupTimeoutMs ?? DEFAULT_SETUP_TIMEOUT_MS, entry.name);
    } catch (err) {
      this.apis.delete(scope);
      await scope.close();
      if (entry.core) {
        // A built-in that cannot start stops the server's start, with its own words when it says what to fix.
        if (err instanceof StartupError) throw err;
        throw new StartupError(`the built-in feature ${entry.name} failed to start: ${firstLine(err)}`, { cause: err });
      }
      this.kernel.logger.error({ err, plugin: entry.name }, 'plugin setup failed; its registrations were undone');
      this.fail(entry, `setup failed: ${firstLine(err)}`);
      return;
    }
    entry.scope = scope;
    entry.router = routers.router;
    entry.state = 'running';
    entry.error = undefined;
    // Its jobs and durable deliveries may run from now on (they wait while it is not running).
    this.kernel.jobs.setPluginRunning(entry.name, true);
    // Only routers with routes: every router the app mounts is one more step for every request that passes it.
    if (entry.core && routers.receiver.stack.length > 0) this.coreReceivers.push(routers.receiver);
    if (entry.core) this.coreFastRoutes.push(...routers.fast);
    if (entry.core && routers.router.stack.length > 0) this.coreRouters.push(routers.router);
    if (!entry.core) this.kernel.logger.info({ plugin: entry.name, version: entry.version }, 'plugin started');
  }

  private async stop(entry: Entry): Promise<void> {
    this.kernel.jobs.setPluginRunning(entry.name, false);
    entry.router = undefined;
    if (entry.scope) {
      this.apis.delete(entry.scope);
      await entry.scope.close();
      entry.scope = undefined;
    }
    entry.state = 'disabled';
    if (!entry.core) this.kernel.logger.info({ plugin: entry.name }, 'plugin stopped');
  }

  private fail(entry: Entry, message: string): void {
    entry.state = 'failed';
    entry.error = message;
    entry.scope = undefined;
    entry.router = undefined;
  }

  private findEntry(name: string): Entry {
    const entry = this.entries.get(name) ?? [...this.entries.values()].find((e) => e.name === name);
    if (!entry) throw new PluginStateError(`there is no plugin named "${name}"`, 404);
    return entry;
  }

  private addEntry(fields: Omit<Entry, 'url' | 'state' | 'error' | 'scope' | 'router' | 'settings' | 'imports'> & { url?: string }): Entry {
    const entry = this.newEntry(fields);
    this.entries.set(entry.id, entry);
    return entry;
  }

  private newEntry(fields: Omit<Entry, 'url' | 'state' | 'error' | 'scope' | 'router' | 'settings' | 'imports' | 'plugin'> & { url?: string; plugin?: Entry['plugin'] }): Entry {
    return { url: undefined, plugin: undefined, state: 'disabled', error: undefined, scope: undefined, router: undefined, settings: undefined, imports: 0, ...fields };
  }
}

/** Enabling or disabling that cannot be done; `status` is the HTTP answer's. */
export class PluginStateError extends Error {
  constructor(
    message: string,
    readonly status = 409,
  ) {
    super(message);
    this.name = 'PluginStateError';
  }
}

/** Checks a module's default export field by field; the message says what is wrong in a plugin author's terms. */
export function checkPlugin(value: unknown): Plugin {
  if (!value || typeof value !== 'object') throw new PluginShapeError('has no default export object: export default { name, version, apiVersion: 1, setup(api) { ... } }');
  const p = value as Record<string, unknown>;
  if (typeof p.name !== 'string' || !NAME_PATTERN.test(p.name) || p.name.length > 64) {
    throw new PluginShapeError(`has a bad name ${JSON.stringify(p.name)}: use lowercase letters, digits and dashes (at most 64)`);
  }
  if (typeof p.version !== 'string' || p.version.trim() === '' || p.version.length > 64) throw new PluginShapeError(`${p.name}: version must be a string such as "1.0.0"`);
  if (p.apiVersion !== PLUGIN_API_VERSION) {
    throw new PluginShapeError(`${p.name}: apiVersion is ${JSON.stringify(p.apiVersion)}, but this memberhook speaks plugin API version ${PLUGIN_API_VERSION}`);
  }
  if (p.description !== undefined && (typeof p.description !== 'string' || p.description.length > 500)) {
    throw new PluginShapeError(`${p.name}: description must be a string of at most 500 characters`);
  }
  if (typeof p.setup !== 'function') throw new PluginShapeError(`${p.name}: setup must be a function that receives the plugin API`);
  return value as Plugin;
}

function attachService(api: object, key: string, factory: (scope: PluginScope) => unknown, scope: Scope): void {
  let made = false;
  let value: unknown;
  Object.defineProperty(api, key, {
    enumerable: true,
    configurable: true,
    get: () => {
      if (!made) {
        value = factory(scope);
        made = true;
      }
      return value;
    },
  });
}

/** The routes a plugin's router holds, as `GET /plugins/<name>/path`. */
function routesOf(entry: Entry): Array<{ kind: RegistrationKind; label: string }> {
  const stack = (entry.router as unknown as { stack?: Array<{ route?: { path: unknown; methods?: Record<string, boolean> } }> } | undefined)?.stack ?? [];
  const base = entry.core ? '' : `/plugins/${entry.name}`;
  return stack.flatMap((layer) => {
    if (!layer.route) return [];
    const methods = Object.keys(layer.route.methods ?? {}).map((m) => m.toUpperCase()).join(', ');
    const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
    return paths.map((path) => ({ kind: 'route' as const, label: `${methods} ${base}${String(path)}` }));
  });
}

function withTimeout<T>(work: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`plugin ${name} did not finish its setup within ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.slice(0, 500);
}

function displayName(source: string): string {
  const base = basename(source);
  return base.slice(0, base.length - extname(base).length) || source;
}
