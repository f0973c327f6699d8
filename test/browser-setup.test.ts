import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BrowserUnavailableError, findChromium, launchBrowser } from './support/browser.js';

/**
 * How the browser tests find their Chromium (support/browser.ts): a fresh machine needs nothing but `npm install`,
 * and whatever is still missing fails in seconds with the command that fixes it, never a test run that hangs.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Far more than a failing setup needs (about two seconds), far less than a hang. */
const FAIL_FAST_MS = 20_000;

test('the browser tests fail within seconds, naming the fix, when the browser they are told to use is not there', async () => {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', 'test/browser.test.ts'], {
    cwd: ROOT,
    // Without NODE_TEST_CONTEXT: the child is a test run of its own, as `npm test` starts it, not a part of this one.
    env: { ...withoutKey(process.env, 'NODE_TEST_CONTEXT'), CHROMIUM_PATH: '/nonexistent/chromium' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: node --test runs the file in a process of its own, which a hang must not outlive.
    detached: true,
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => void (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => void (output += chunk.toString()));
  // A hang is the failure this test exists for: it is ended here and reported, not waited for.
  const killer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 3 * FAIL_FAST_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
  clearTimeout(killer);
  const elapsed = Date.now() - started;
  assert.equal(signal, null, `the browser tests did not end by themselves within ${3 * FAIL_FAST_MS} ms:\n${output.slice(-2_000)}`);
  assert.ok(elapsed < FAIL_FAST_MS, `they ended after ${elapsed} ms`);
  assert.notEqual(code, 0, 'a missing browser fails the run');
  assert.match(output, /No Chromium at CHROMIUM_PATH=\/nonexistent\/chromium\./);
  assert.match(output, /Fix: unset CHROMIUM_PATH/);
});

test('the Chromium npm install brings runs a page here, without Debian\'s', async () => {
  const build = await findChromium('bundled');
  assert.ok(build.executablePath.includes('node_modules/.cache/memberhook-chromium/'), build.executablePath);
  const browser = await launchBrowser('bundled');
  try {
    const page = await browser.newPage();
    await page.setContent('<main><h1>Members</h1><button onclick="this.textContent = \'Clicked\'">Join</button></main>');
    await page.getByRole('button', { name: 'Join' }).click();
    assert.equal(await page.getByRole('button').innerText(), 'Clicked');
    assert.equal(await page.getByRole('heading').innerText(), 'Members');
  } finally {
    await browser.close();
  }
});

test('a browser path that is not there is refused at once with the fix, before anything starts', async () => {
  await assert.rejects(findChromium('/nonexistent/chromium'), (err: unknown) => err instanceof BrowserUnavailableError && /Fix: unset CHROMIUM_PATH/.test(err.message));
  // A file that is not a browser: launching it fails (not waits) with the fix too.
  const notABrowser = fileURLToPath(new URL('../package.json', import.meta.url));
  const started = Date.now();
  await assert.rejects(launchBrowser(notABrowser), (err: unknown) => err instanceof BrowserUnavailableError && /did not start/.test(err.message) && /Fix: unset CHROMIUM_PATH/.test(err.message));
  assert.ok(Date.now() - started < FAIL_FAST_MS);
});

function withoutKey(env: NodeJS.ProcessEnv, key: string): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy[key];
  return copy;
}
