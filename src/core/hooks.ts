import type { Logger } from './logger.js';

/**
 * The names of the actions the app fires, mapped to the arguments each one passes. Features (and plugins)
 * add their own by declaration merging:
 *
 *   declare module '../../core/hooks.js' { interface ActionMap { 'member.created': [member: Member] } }
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ActionMap {}

/** Filter names mapped to `[value, ...context]`: a filter receives the value and returns it (changed or not). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface FilterMap {}

export interface HookOptions {
  /** Lower runs earlier; WordPress's default of 10 so that plugin authors' intuition carries over. */
  priority?: number;
  /** Who registered the handler: named in logs when it fails, and used to remove a plugin's handlers. */
  plugin?: string;
  /**
   * Deliver through the outbox instead of in-process after commit: the action is recorded in the transaction that
   * causes it, and the handler runs as a job (retried on failure, even after a crash right after the commit). Only
   * for actions that are recorded durably (see `declareDurable`); the handler gets the arguments as JSON data.
   */
  durable?: boolean;
  /**
   * For a durable handler: asked with the action's arguments in the transaction that records it; false records
   * nothing for this handler (it has nothing to do with this one: the outbound webhooks while no destination takes
   * the event), so an action nobody wants adds no outbox row and no job.
   */
  wanted?: (...args: never[]) => boolean;
}

/** A durable handler as the outbox sees it: `key` stays the same from one start to the next. */
export interface DurableHandler {
  key: string;
  plugin: string;
  fn: (...args: unknown[]) => unknown;
  /** See HookOptions.wanted; absent: always. */
  wanted: ((...args: unknown[]) => boolean) | undefined;
}

export const DEFAULT_PRIORITY = 10;

type AnyFn = (...args: never[]) => unknown;

interface Registration {
  fn: AnyFn;
  priority: number;
  plugin: string;
  durable: boolean;
  wanted: AnyFn | undefined;
}

/** A filter handler threw: the pipeline that applied it stops, naming the plugin (a half-filtered value is worse). */
export class FilterError extends Error {
  readonly filter: string;
  readonly plugin: string;
  /** A job whose filter pipeline broke fails at once with the plugin named, rather than retrying the same code. */
  readonly retryable = false;
  constructor(filter: string, plugin: string, cause: unknown) {
    super(`filter "${filter}" failed in plugin "${plugin}": ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'FilterError';
    this.filter = filter;
    this.plugin = plugin;
  }
}

/**
 * Typed actions and filters in the WordPress style. Handlers may be async; they run one after another in
 * priority order (ties in the order they were added), so a handler can rely on the ones before it.
 */
export class HookRegistry<Actions extends object = ActionMap, Filters extends object = FilterMap> {
  private readonly actions = new Map<PropertyKey, Registration[]>();
  private readonly filters = new Map<PropertyKey, Registration[]>();
  private readonly durableNames = new Set<PropertyKey>();

  constructor(private readonly logger: Logger) {}

  addAction<N extends keyof Actions>(
    name: N,
    fn: (...args: ArgsOf<Actions[N]>) => void | Promise<void>,
    options: HookOptions & { wanted?: (...args: ArgsOf<Actions[N]>) => boolean } = {},
  ): () => void {
    if (options.durable && !this.durableNames.has(name)) {
      throw new Error(`action "${String(name)}" is not recorded durably, so it cannot have a durable handler; durable actions: ${[...this.durableNames].map(String).sort().join(', ')}`);
    }
    return register(this.actions, name, fn as AnyFn, options);
  }

  /** Marks actions as recorded in the outbox by the code that fires them, so handlers may ask for durable delivery. */
  declareDurable(...names: Array<keyof Actions>): void {
    for (const name of names) this.durableNames.add(name);
  }

  durableActionNames(): string[] {
    return [...this.durableNames].map(String).sort();
  }

  /**
   * The durable handlers of an action, each with a key that names it across restarts: its plugin, the action and
   * its place among that plugin's durable handlers of the action (plugins register in the same order each start).
   */
  durableHandlers(name: keyof Actions): DurableHandler[] {
    const seen = new Map<string, number>();
    return (this.actions.get(name) ?? [])
      .filter((r) => r.durable)
      .map((r) => {
        const n = (seen.get(r.plugin) ?? 0) + 1;
        seen.set(r.plugin, n);
        return { key: `${r.plugin}:${String(name)}#${n}`, plugin: r.plugin, fn: r.fn as DurableHandler['fn'], wanted: r.wanted as DurableHandler['wanted'] };
      });
  }

  /** Every registration, for the plugins page: what each plugin hooked into. */
  registrationsOf(plugin: string): Array<{ kind: 'action' | 'filter'; name: string; priority: number; durable: boolean }> {
    const out: Array<{ kind: 'action' | 'filter'; name: string; priority: number; durable: boolean }> = [];
    for (const [kind, table] of [['action', this.actions], ['filter', this.filters]] as const) {
      for (const [name, regs] of table) {
        for (const r of regs) if (r.plugin === plugin) out.push({ kind, name: String(name), priority: r.priority, durable: r.durable });
      }
    }
    return out;
  }

  addFilter<N extends keyof Filters>(
    name: N,
    fn: (...args: ArgsOf<Filters[N]>) => FilterValue<Filters[N]> | Promise<FilterValue<Filters[N]>>,
    options: HookOptions = {},
  ): () => void {
    return register(this.filters, name, fn as AnyFn, options);
  }

  /**
   * Runs every handler of an action. A handler that throws is logged with its plugin's name and the others
   * still run: one broken plugin must not stop members from being created.
   */
  async doAction<N extends keyof Actions>(name: N, ...args: ArgsOf<Actions[N]>): Promise<void> {
    // A snapshot: handlers added or removed while this action runs take effect from the next call. Durable
    // handlers are not called here: the outbox delivers to them (core/outbox.ts).
    for (const reg of [...(this.actions.get(name) ?? [])]) {
      if (reg.durable) continue;
      try {
        await (reg.fn as (...a: unknown[]) => unknown)(...args);
      } catch (err) {
        this.logger.error({ err, action: String(name), plugin: reg.plugin }, 'action handler failed');
      }
    }
  }

  /** Threads `value` through every filter in order and returns the result; a throwing filter → FilterError. */
  async applyFilters<N extends keyof Filters>(name: N, ...args: ArgsOf<Filters[N]>): Promise<FilterValue<Filters[N]>> {
    const [initial, ...context] = args as unknown[];
    let value = initial;
    for (const reg of [...(this.filters.get(name) ?? [])]) {
      try {
        value = await (reg.fn as (...a: unknown[]) => unknown)(value, ...context);
      } catch (err) {
        throw new FilterError(String(name), reg.plugin, err);
      }
    }
    return value as FilterValue<Filters[N]>;
  }

  /** Whether an in-process handler would run (durable ones are delivered by the outbox). */
  hasAction(name: keyof Actions): boolean {
    return (this.actions.get(name) ?? []).some((r) => !r.durable);
  }

  hasFilter(name: keyof Filters): boolean {
    return (this.filters.get(name)?.length ?? 0) > 0;
  }

  /** Removes every handler a plugin registered (used when a plugin is disabled). Returns how many. */
  removePlugin(plugin: string): number {
    let removed = 0;
    for (const table of [this.actions, this.filters]) {
      for (const [name, regs] of table) {
        const kept = regs.filter((r) => r.plugin !== plugin);
        removed += regs.length - kept.length;
        table.set(name, kept);
      }
    }
    return removed;
  }
}

type ArgsOf<T> = T extends unknown[] ? T : never;
type FilterValue<T> = T extends [infer V, ...unknown[]] ? V : never;

function register(table: Map<PropertyKey, Registration[]>, name: PropertyKey, fn: AnyFn, options: HookOptions): () => void {
  const reg: Registration = { fn, priority: options.priority ?? DEFAULT_PRIORITY, plugin: options.plugin ?? 'core', durable: options.durable === true, wanted: options.wanted as AnyFn | undefined };
  const list = table.get(name) ?? [];
  // Insert after every registration of the same or lower priority: keeps ties in insertion order.
  let at = list.length;
  while (at > 0 && list[at - 1]!.priority > reg.priority) at--;
  list.splice(at, 0, reg);
  table.set(name, list);
  let registered = true;
  return () => {
    if (!registered) return;
    registered = false;
    const current = table.get(name);
    const index = current?.indexOf(reg) ?? -1;
    if (current && index >= 0) current.splice(index, 1);
  };
}
