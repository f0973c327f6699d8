import type { z } from 'zod';
import { describeZodIssue } from '../core/errors.js';
import type { SettingsStore } from '../core/settings.js';
import type { PluginSecrets, PluginSettingsHandle } from './types.js';

/** One field of a plugin's generated settings form. */
export interface SettingsField {
  key: string;
  label: string;
  help: string | undefined;
  input: 'text' | 'number' | 'checkbox' | 'select' | 'password';
  options: string[];
  /** The current value as the form shows it (never a secret's). */
  value: string;
  checked: boolean;
  /** A secret that has a value (the form says so without showing it). */
  isSet: boolean;
}

interface ZodInternals {
  _zod: { def: { type: string; innerType?: ZodInternals; entries?: Record<string, string> } };
  description?: string;
  meta?: () => Record<string, unknown> | undefined;
}

/**
 * A plugin's settings, stored as one JSON object in the settings table (`plugin.<name>.settings`) and read through
 * its schema on every `get`, so an edit applies at once. The schema may come from the plugin's own copy of zod, so
 * it is read through zod's public `_zod.def` shape, not `instanceof`. Fields marked secret (`.meta({ secret: true })`)
 * are stored sealed with the site key.
 */
export class PluginSettingsStore<S extends z.ZodObject> implements PluginSettingsHandle<z.output<S>> {
  private readonly key: string;
  private readonly secretKeys: Set<string>;

  constructor(
    private readonly store: SettingsStore,
    plugin: string,
    private readonly schema: S,
    private readonly defaults: z.input<S>,
    private readonly onInvalidStored: (message: string) => void,
    private readonly secrets: PluginSecrets,
  ) {
    this.key = `plugin.${plugin}.settings`;
    const checked = schema.safeParse(defaults);
    if (!checked.success) throw new Error(`the default settings do not fit the schema: ${describeZodIssue(checked.error)}`);
    this.secretKeys = new Set(
      Object.entries(schema.shape as Record<string, ZodInternals>)
        .filter(([, field]) => metaOf(field).secret === true || metaOf(unwrap(field)).secret === true)
        .map(([key]) => key),
    );
  }

  /**
   * Seals the secret fields an older version stored in plaintext (run when the plugin defines its settings, so at
   * every start); a sealed one that does not open with the site key stops here. True when it sealed something.
   */
  sealStoredSecrets(): boolean {
    const raw = this.rawStored();
    const plain = [...this.secretKeys].filter((key) => typeof raw[key] === 'string' && raw[key] !== '' && !this.secrets.isSealed(raw[key] as string));
    const opened = this.stored();
    if (plain.length === 0) return false;
    this.store.set(this.key, JSON.stringify(this.sealed(opened)));
    return true;
  }

  get(): z.output<S> {
    const stored = this.stored();
    const parsed = this.schema.safeParse({ ...this.defaults, ...stored });
    if (parsed.success) return parsed.data;
    // Stored by an older version whose schema was looser: the defaults hold until an admin saves again.
    this.onInvalidStored(describeZodIssue(parsed.error));
    return this.schema.parse(this.defaults);
  }

  set(values: Partial<z.output<S>>): z.output<S> {
    const merged = { ...this.defaults, ...this.stored(), ...values };
    const parsed = this.schema.parse(merged);
    this.store.set(this.key, JSON.stringify(this.sealed(parsed as Record<string, unknown>)));
    return parsed;
  }

  /** The form's fields with their current values. */
  fields(): SettingsField[] {
    const current = this.get() as Record<string, unknown>;
    return Object.entries(this.schema.shape as Record<string, ZodInternals>).map(([key, field]) => {
      const base = unwrap(field);
      const type = base._zod.def.type;
      const secret = metaOf(field).secret === true || metaOf(base).secret === true;
      const value = current[key];
      const input: SettingsField['input'] =
        type === 'boolean' ? 'checkbox' : type === 'number' ? 'number' : type === 'enum' ? 'select' : secret ? 'password' : 'text';
      return {
        key,
        label: labelOf(key),
        help: field.description ?? base.description,
        input,
        options: type === 'enum' ? Object.values(base._zod.def.entries ?? {}) : [],
        value: secret || value === undefined || value === null ? '' : String(value),
        checked: value === true,
        isSet: secret && typeof value === 'string' && value !== '',
      };
    });
  }

  /** What a posted form asks to store: a checkbox left out is false, a secret left empty keeps its value. */
  valuesFromForm(body: Record<string, unknown>): Partial<z.output<S>> {
    const out: Record<string, unknown> = {};
    for (const field of this.fields()) {
      const raw = body[field.key];
      const text = typeof raw === 'string' ? raw : '';
      if (field.input === 'checkbox') out[field.key] = text !== '';
      else if (field.input === 'password') {
        if (text !== '') out[field.key] = text;
      } else if (field.input === 'number') out[field.key] = text.trim() === '' ? undefined : Number(text);
      else out[field.key] = text;
    }
    return out as Partial<z.output<S>>;
  }

  /** The stored values, secrets opened (one stored in plaintext by an older version is taken as it is). */
  private stored(): Record<string, unknown> {
    const values = this.rawStored();
    for (const key of this.secretKeys) {
      const value = values[key];
      if (typeof value === 'string' && this.secrets.isSealed(value)) values[key] = this.secrets.open(value, `settings.${key}`);
    }
    return values;
  }

  private rawStored(): Record<string, unknown> {
    const raw = this.store.get(this.key);
    if (!raw) return {};
    try {
      const value: unknown = JSON.parse(raw);
      return value && typeof value === 'object' ? { ...(value as Record<string, unknown>) } : {};
    } catch {
      return {};
    }
  }

  private sealed(values: Record<string, unknown>): Record<string, unknown> {
    const out = { ...values };
    for (const key of this.secretKeys) {
      const value = out[key];
      if (typeof value === 'string' && value !== '') out[key] = this.secrets.seal(value, `settings.${key}`);
    }
    return out;
  }
}

function unwrap(field: ZodInternals): ZodInternals {
  let current = field;
  while (['optional', 'default', 'nullable', 'prefault'].includes(current._zod.def.type) && current._zod.def.innerType) current = current._zod.def.innerType;
  return current;
}

function metaOf(field: ZodInternals): Record<string, unknown> {
  try {
    return field.meta?.() ?? {};
  } catch {
    return {};
  }
}

/** `sendWelcome` or `send_welcome` → "Send welcome". */
function labelOf(key: string): string {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_-]+/g, ' ').trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
