import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkImports, cycles, importGraph } from '../scripts/check-imports.js';

test('src/ has no import cycle and keeps every import rule (features, stores, core, shell, host)', () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `read the source tree (${graph.size} files)`);
  assert.ok(graph.get('src/server.ts')?.includes('src/builtins.ts'), 'imports are read');
  assert.deepEqual(checkImports(graph), []);
});

test('the checker finds a cycle and a store read across features when they are there', () => {
  const graph = new Map([
    ['src/app.ts', ['src/features/admin/routes.ts']],
    ['src/features/admin/routes.ts', ['src/features/admin/pages.ts', 'src/features/members/store.ts']],
    ['src/features/admin/pages.ts', ['src/app.ts']],
    ['src/features/members/store.ts', []],
    ['src/core/hooks.ts', ['src/features/members/store.ts']],
  ]);
  assert.deepEqual(cycles(graph), [['src/app.ts', 'src/features/admin/pages.ts', 'src/features/admin/routes.ts']]);
  const rules = checkImports(graph).map((p) => p.rule);
  assert.ok(rules.includes('import cycle'));
  assert.ok(rules.includes("a feature imports another feature's store"));
  assert.ok(rules.includes('core imports a feature, the plugin host or the web shell'));
  assert.ok(rules.includes('a feature imports what assembles it'));
});
