import type { Db } from '../core/db.js';
import type { PluginDb } from './types.js';

interface SchemaObject {
  type: string;
  name: string;
  sql: string | null;
}

/** The prefix every table and index of a plugin carries: its name with `_` for `-`, then `_`. */
export function tablePrefix(plugin: string): string {
  return `${plugin.replace(/-/g, '_')}_`;
}

/**
 * A plugin's access to the database. Migrations are versioned per plugin (`plugin_migrations`) and may create,
 * change or drop only objects carrying the plugin's prefix: the schema is compared before and after each one, in
 * its transaction, and anything else rolls it back with the object named. Queries are promises, so the same plugin
 * code will run when the database is one that answers asynchronously.
 */
export function pluginDatabase(db: Db, plugin: string, onTable: (name: string) => void): PluginDb {
  const prefix = tablePrefix(plugin);
  const schema = db.prepare<[], SchemaObject>("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'");
  const applied = db.prepare<[string], number>('SELECT version FROM plugin_migrations WHERE plugin = ?').pluck();
  const record = db.prepare('INSERT INTO plugin_migrations (plugin, version) VALUES (?, ?)');
  const ours = (name: string) => name.toLowerCase().startsWith(prefix);
  const bind = (params: unknown[] | Record<string, unknown> | undefined) => (params === undefined ? [] : [params]);

  return {
    async migrate(migrations) {
      if (!Array.isArray(migrations) || migrations.some((m) => typeof m !== 'string')) throw new Error('db.migrate takes an array of SQL strings, one per migration');
      const done = new Set(applied.all(plugin));
      migrations.forEach((sql, index) => {
        const version = index + 1;
        if (done.has(version)) return;
        db.transaction(() => {
          const before = new Map(schema.all().map((o) => [o.name, o]));
          db.exec(sql);
          const after = new Map(schema.all().map((o) => [o.name, o]));
          for (const [name, object] of after) {
            const old = before.get(name);
            if (!ours(name) && (!old || old.sql !== object.sql)) {
              throw new Error(`migration ${version} of plugin ${plugin} ${old ? 'changes' : 'creates'} the ${object.type} "${name}": a plugin's tables and indexes must be named ${prefix}...`);
            }
          }
          for (const [name, object] of before) {
            if (!after.has(name) && !ours(name)) throw new Error(`migration ${version} of plugin ${plugin} drops the ${object.type} "${name}", which is not the plugin's`);
          }
          record.run(plugin, version);
        }).immediate();
      });
      for (const object of schema.all()) if (object.type === 'table' && ours(object.name)) onTable(object.name);
    },
    table(name) {
      if (!/^[a-z0-9_]{1,60}$/.test(name)) throw new Error(`table name "${name}" must be lowercase letters, digits and _`);
      return `${prefix}${name}`;
    },
    async all<R>(sql: string, params?: unknown[] | Record<string, unknown>) {
      return db.prepare(sql).all(...bind(params)) as R[];
    },
    async get<R>(sql: string, params?: unknown[] | Record<string, unknown>) {
      return db.prepare(sql).get(...bind(params)) as R | undefined;
    },
    async run(sql, params) {
      const result = db.prepare(sql).run(...bind(params));
      return { changes: result.changes, lastInsertRowid: Number(result.lastInsertRowid) };
    },
  };
}
