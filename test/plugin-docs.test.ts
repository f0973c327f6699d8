/**
 * What a plugin author reads and compiles against: docs/plugins.md lists every hook the code declares, and the
 * shipped type declarations (`memberhook/plugin`) type-check a TypeScript plugin, built-in services and hooks included.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DOC, documentWithCatalogue, readHooks } from '../scripts/hook-catalogue.js';
import { testSite } from './support/admin-site.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('docs/plugins.md lists every action and filter the code declares (npm run docs:hooks)', () => {
  assert.equal(readFileSync(DOC, 'utf8'), documentWithCatalogue(), 'the catalogue is stale: run npm run docs:hooks');
  const names = readHooks().map((h) => h.name);
  for (const hook of ['member.created', 'member.updated', 'member.tags_changed', 'member.role_changed', 'member.deleted', 'member.logged_in', 'member.username', 'welcome_email.message']) {
    assert.ok(names.includes(hook), `${hook} is in the catalogue`);
  }
});

test('the actions the catalogue calls durable are exactly those the outbox records', async () => {
  const { ctx } = await testSite();
  const documented = readHooks().filter((h) => h.durable).map((h) => h.name).sort();
  assert.deepEqual(ctx.hooks.durableActionNames(), documented);
});

test('a TypeScript plugin type-checks against the shipped memberhook/plugin declarations', () => {
  // Inside the checkout (test-results/ is ignored by git), so the declarations find zod, pino and express as they
  // do in an installed memberhook.
  mkdirSync(join(ROOT, 'test-results'), { recursive: true });
  const dir = mkdtempSync(join(ROOT, 'test-results', 'typed-plugin-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
  // The declarations as `npm run build` ships them, written to a folder of this test's own.
  execFileSync(tsc, ['-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(dir, 'dist'), '--emitDeclarationOnly'], { cwd: ROOT, stdio: 'pipe' });
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')], paths: { 'memberhook/plugin': [join(dir, 'dist', 'sdk.d.ts')] },
      },
      files: ['typed.ts'],
    }),
  );
  writeFileSync(
    join(dir, 'typed.ts'),
    `import { definePlugin, z, type Member } from 'memberhook/plugin';
declare module 'memberhook/plugin' { interface ActionMap { 'typed.thing': [id: number] } }
export default definePlugin({
  name: 'typed', version: '1.0.0', apiVersion: 1,
  setup(api) {
    api.hooks.addAction('member.role_changed', (member: Member, change) => { const to: string = change.to; void to; void member.email; });
    api.hooks.addAction('typed.thing', (id) => { const n: number = id; void n; });
    api.hooks.addFilter('member.username', (username, contact) => username + contact.givenName);
    api.jobs.define({ type: 'x', params: z.object({ n: z.number() }), async run(job) { return { status: 'done', result: String(job.params.n + 1) }; } });
    void api.members.findById(1)?.email;
    void api.keap.getContact;
    api.webhooks.addAction('typed_post', async (job) => { const c: number = job.params.contact_id; void c; });
    // @ts-expect-error: no such action
    api.hooks.addAction('member.no_such_thing', () => {});
  },
});
`,
  );
  const check = () => execFileSync(tsc, ['-p', dir], { encoding: 'utf8', stdio: 'pipe' });
  try {
    check();
  } catch (err) {
    assert.fail(`the plugin does not type-check:\n${(err as { stdout?: string }).stdout ?? String(err)}`);
  }
  // And it can fail: a wrong argument type is caught.
  writeFileSync(join(dir, 'typed.ts'), readFileSync(join(dir, 'typed.ts'), 'utf8').replace('const to: string = change.to', 'const to: number = change.to'));
  assert.throws(check, (err: { stdout?: string }) => /typed\.ts\(\d+,\d+\): error TS2322/.test(err.stdout ?? ''));
});
