import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A plugin module found on disk or among installed packages, before it is imported. */
export interface FoundPlugin {
  /** Where it came from, as the plugins page shows it: a path, or an npm package name. */
  source: string;
  /** What to import (a file: URL), when it could be found. */
  url?: string;
  /** Why it cannot be loaded, when it cannot even be found. */
  error?: string;
}

const MODULE_EXTENSIONS = new Set(['.js', '.mjs', '.cjs']);

/**
 * The plugins in `dir` (each entry a folder with a package.json or an index.js/index.mjs, or a single .js/.mjs
 * file), sorted by entry name, then those `packages` names (installed npm packages, or paths). A missing `dir` is
 * no plugins; an entry that cannot be resolved is returned with its error so the plugins page can show it.
 */
export function discoverPlugins(dir: string, packages: readonly string[], cwd: string, resolvePackage: (name: string) => string): FoundPlugin[] {
  const found: FoundPlugin[] = [];
  if (existsSync(dir) && statSync(dir).isDirectory()) {
    const names = readdirSync(dir).filter((name) => !name.startsWith('.') && name !== 'node_modules').sort();
    for (const name of names) {
      const path = join(dir, name);
      const stats = statSync(path);
      if (stats.isDirectory()) found.push(fromFolder(path));
      else if (stats.isFile() && (extname(name) === '.js' || extname(name) === '.mjs')) found.push({ source: path, url: pathToFileURL(path).href });
    }
  }
  for (const item of packages) {
    if (item.startsWith('.') || item.startsWith('/')) {
      const path = resolve(cwd, item);
      if (!existsSync(path)) found.push({ source: item, error: `no file or folder at ${path}` });
      else if (statSync(path).isDirectory()) found.push({ ...fromFolder(path), source: item });
      else found.push({ source: item, url: pathToFileURL(path).href });
      continue;
    }
    try {
      found.push({ source: item, url: resolvePackage(item) });
    } catch {
      found.push({ source: item, error: `the package "${item}" is not installed (run: npm install ${item})` });
    }
  }
  return found;
}

/** A plugin folder's entry: its package.json's `exports` or `main`, else index.js or index.mjs. */
function fromFolder(path: string): FoundPlugin {
  const manifest = join(path, 'package.json');
  if (existsSync(manifest)) {
    let pkg: { exports?: unknown; main?: unknown };
    try {
      pkg = JSON.parse(readFileSync(manifest, 'utf8')) as typeof pkg;
    } catch (err) {
      return { source: path, error: `its package.json is not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
    }
    const entry = packageEntry(pkg);
    if (entry) {
      const file = resolve(path, entry);
      if (!existsSync(file)) return { source: path, error: `its package.json names ${entry}, which does not exist` };
      return { source: path, url: pathToFileURL(file).href };
    }
  }
  for (const index of ['index.js', 'index.mjs']) {
    const file = join(path, index);
    if (existsSync(file)) return { source: path, url: pathToFileURL(file).href };
  }
  return { source: path, error: 'the folder has no package.json entry ("exports" or "main"), index.js or index.mjs' };
}

/** `exports` as a string, `exports["."]`, or its `import`/`default` condition; else `main`. */
function packageEntry(pkg: { exports?: unknown; main?: unknown }): string | undefined {
  const pick = (value: unknown): string | undefined => {
    if (typeof value === 'string') return value;
    if (value && typeof value === 'object') {
      const conditions = value as Record<string, unknown>;
      if ('.' in conditions) return pick(conditions['.']);
      return pick(conditions.import) ?? pick(conditions.node) ?? pick(conditions.default);
    }
    return undefined;
  };
  const entry = pick(pkg.exports) ?? (typeof pkg.main === 'string' ? pkg.main : undefined);
  return entry && MODULE_EXTENSIONS.has(extname(entry)) ? entry : entry && extname(entry) === '' ? `${entry}.js` : entry;
}
