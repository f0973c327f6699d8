/**
 * `npm run check:imports` (CI runs it): the import rules the code keeps, with type-only imports counted (a cycle of
 * types is still a knot to untie before a file can move):
 * - no cycles among the files of src/;
 * - a feature never imports another feature's store (its SQL): it calls the service, or `api.<service>`;
 * - core/ imports no feature, no plugin host and no web shell; web/ and plugins/ import no feature, and web/ not
 *   the plugin host;
 * - features do not import what assembles them (server, app, builtins, context, main, the job thread, cli/, sdk);
 * - nothing in src/ imports tools/, test/ or scripts/ (they are not in the build).
 *
 * Written here rather than taken from dependency-cruiser or madge: both read TypeScript through the TypeScript
 * compiler's JavaScript API, which TypeScript 7 (this project's compiler) no longer ships. The imports are read as
 * text: `import ... from '...'`, `export ... from '...'` and `import('...')` with a relative path.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?(?:[\w*\s{},]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

export interface ImportProblem {
  rule: string;
  detail: string;
}

/** Every .ts file under `dir` (relative to the repository), with the files it imports (relative too). */
export function importGraph(dir = 'src'): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (folder: string) => {
    for (const entry of readdirSync(join(ROOT, folder), { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) graph.set(path, importsOf(path));
    }
  };
  walk(dir);
  return graph;
}

function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const found = new Set<string>();
  for (const match of text.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2]!;
    found.add(normalize(join(dirname(file), specifier.replace(/\.js$/, '.ts'))));
  }
  return [...found];
}

/** Cycles, as lists of files, found with Tarjan's strongly connected components. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indices.set(node, index);
    low.set(node, index++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (!indices.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, indices.get(next)!));
    }
    if (low.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!indices.has(node)) visit(node);
  return found;
}

const RULES: Array<{ rule: string; from: RegExp; to: RegExp; allowed?: (from: string, to: string) => boolean }> = [
  {
    rule: "a feature imports another feature's store",
    from: /^src\/features\/([^/]+)\//,
    to: /^src\/features\/([^/]+)\/[a-z-]*store\.ts$/,
    allowed: (from, to) => from.split('/')[2] === to.split('/')[2],
  },
  { rule: 'core imports a feature, the plugin host or the web shell', from: /^src\/core\//, to: /^src\/(features|plugins|web)\// },
  { rule: 'the admin shell or the plugin host imports a feature', from: /^src\/(web|plugins)\//, to: /^src\/features\// },
  { rule: 'the admin shell imports the plugin host', from: /^src\/web\//, to: /^src\/plugins\// },
  { rule: 'a feature imports what assembles it', from: /^src\/features\//, to: /^src\/((server|app|builtins|context|main|sdk|job-thread|job-thread-entry)\.ts$|cli\/)/ },
  { rule: 'the product imports test tools', from: /^src\//, to: /^(tools|test|scripts)\// },
];

export function checkImports(graph = importGraph()): ImportProblem[] {
  const problems: ImportProblem[] = cycles(graph).map((files) => ({ rule: 'import cycle', detail: files.join(' -> ') }));
  for (const [from, targets] of graph) {
    for (const to of targets) {
      for (const rule of RULES) {
        if (rule.from.test(from) && rule.to.test(to) && !(rule.allowed?.(from, to) ?? false)) problems.push({ rule: rule.rule, detail: `${from} imports ${to}` });
      }
    }
  }
  return problems;
}

if (process.argv[1] && relative(process.argv[1], import.meta.filename) === '') {
  const graph = importGraph();
  const problems = checkImports(graph);
  const edges = [...graph.values()].reduce((n, list) => n + list.length, 0);
  if (problems.length === 0) {
    console.log(`imports ok: ${graph.size} files, ${edges} imports, no cycle, every rule kept`);
  } else {
    for (const p of problems) console.error(`${p.rule}: ${p.detail}`);
    console.error(`\n${problems.length} import problem(s) in ${graph.size} files`);
    process.exit(1);
  }
}
