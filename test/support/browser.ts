import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createBrotliDecompress } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * The Chromium the browser tests drive through playwright-core. Nothing is ever downloaded; in this order:
 * - `CHROMIUM_PATH=/path/to/chromium`: that build and no other;
 * - Debian's Chromium at /usr/bin/chromium, when it is installed (`.ci/run` installs it);
 * - the Chromium shipped inside the `@sparticuz/chromium` npm package (a dev dependency, so `npm install` brings it),
 *   unpacked once into node_modules/.cache with the NSS libraries and fonts packed beside it: a fresh machine runs
 *   the tests with `npm install` and `npm test` alone. `CHROMIUM_PATH=bundled` picks it even where Debian's is
 *   installed.
 * Whatever is missing fails at once with the command that fixes it (a test checks it cannot hang).
 */

const SYSTEM_CHROMIUM = '/usr/bin/chromium';
const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CACHE_DIR = join(PROJECT_ROOT, 'node_modules', '.cache', 'memberhook-chromium');
/** A Chromium that has not started by then will not: better a clear failure than a test run that waits. */
const LAUNCH_TIMEOUT_MS = 30_000;

/** Where the tests save screenshots; `npm run screenshots` points this at docs/screenshots for the README. */
export const SCREENSHOT_DIR = resolve(process.env.SCREENSHOT_DIR ?? 'test-results/screenshots');

/** No browser could be found or started; the message ends with the command that fixes it. */
export class BrowserUnavailableError extends Error {
  override name = 'BrowserUnavailableError';
}

interface ChromiumBuild {
  executablePath: string;
  /** What the message calls it: `CHROMIUM_PATH=...`, `Debian's Chromium`, `the bundled Chromium`. */
  description: string;
  /** Environment the browser process needs on top of ours (the bundled build's libraries and fonts). */
  env: Record<string, string>;
  /** The command that gives a working browser when this one does not start. */
  fix: string;
}

export async function launchBrowser(setting = chromiumSetting()): Promise<Browser> {
  const build = await findChromium(setting);
  try {
    return await chromium.launch({
      executablePath: build.executablePath,
      headless: true,
      env: { ...process.env, ...build.env },
      timeout: LAUNCH_TIMEOUT_MS,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
    });
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split('\n').slice(0, 6).join('\n');
    throw new BrowserUnavailableError(`${build.description} (${build.executablePath}) did not start: ${reason}\nFix: ${build.fix}`);
  }
}

/** CHROMIUM_PATH, or undefined when it is unset or empty. */
export function chromiumSetting(): string | undefined {
  return process.env.CHROMIUM_PATH || undefined;
}

/** The build to launch for a CHROMIUM_PATH setting, per the order above; throws BrowserUnavailableError naming the fix. */
export async function findChromium(setting = chromiumSetting()): Promise<ChromiumBuild> {
  if (setting !== undefined && setting !== 'bundled') {
    if (!existsSync(setting)) {
      throw new BrowserUnavailableError(
        `No Chromium at CHROMIUM_PATH=${setting}.\nFix: unset CHROMIUM_PATH (npm test then uses Debian's Chromium or the one npm install brought)`,
      );
    }
    return { executablePath: setting, description: `CHROMIUM_PATH=${setting}`, env: {}, fix: 'unset CHROMIUM_PATH' };
  }
  if (setting === undefined && existsSync(SYSTEM_CHROMIUM)) {
    return { executablePath: SYSTEM_CHROMIUM, description: "Debian's Chromium", env: {}, fix: 'apt-get install --reinstall chromium' };
  }
  return bundledChromium();
}

/**
 * The Chromium inside @sparticuz/chromium, unpacked (Brotli) once per package version into node_modules/.cache:
 * the binary, the NSS libraries it links against (its al2023 archive; a fresh Debian has no libnss3) and its fonts.
 * Unpacked into a staging folder and renamed into place, so a run killed half-way leaves nothing that looks ready.
 */
async function bundledChromium(): Promise<ChromiumBuild> {
  const fix = 'apt-get install chromium';
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('@sparticuz/chromium');
  } catch {
    throw new BrowserUnavailableError(`No Chromium: ${SYSTEM_CHROMIUM} is not installed and the @sparticuz/chromium package is missing.\nFix: npm install`);
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new BrowserUnavailableError(`No Chromium: the one @sparticuz/chromium ships is for Linux x64, not ${process.platform} ${process.arch}.\nFix: set CHROMIUM_PATH to a Chromium or Chrome`);
  }
  const packageDir = resolve(dirname(entry), '..', '..');
  const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string };
  const target = join(CACHE_DIR, version);
  const build = (): ChromiumBuild => ({
    executablePath: join(target, 'chromium'),
    description: `the Chromium bundled in @sparticuz/chromium ${version}`,
    env: {
      LD_LIBRARY_PATH: [join(target, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
      FONTCONFIG_PATH: target,
    },
    fix,
  });
  if (existsSync(join(target, 'chromium'))) return build();

  const staging = `${target}.${process.pid}.${randomUUID()}.tmp`;
  mkdirSync(staging, { recursive: true });
  try {
    const bin = join(packageDir, 'bin');
    await pipeline(createReadStream(join(bin, 'chromium.br')), createBrotliDecompress(), createWriteStream(join(staging, 'chromium'), { mode: 0o755 }));
    for (const archive of ['al2023.tar.br', 'fonts.tar.br']) {
      const tarball = join(staging, archive.replace(/\.br$/, ''));
      await pipeline(createReadStream(join(bin, archive)), createBrotliDecompress(), createWriteStream(tarball));
      // tar is part of every Debian system; the archives hold lib/ and fonts/.
      execFileSync('tar', ['-xf', tarball, '-C', staging]);
      rmSync(tarball);
    }
    // The package's own fonts.conf names Lambda's folders; this one names ours, then the system's fonts.
    writeFileSync(
      join(staging, 'fonts.conf'),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n  <dir>${join(target, 'fonts')}</dir>\n  <dir>/usr/share/fonts</dir>\n  <cachedir>${join(target, 'fontconfig-cache')}</cachedir>\n</fontconfig>\n`,
    );
    renameSync(staging, target);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    // Another test process unpacked it first: theirs is as good.
    if (existsSync(join(target, 'chromium'))) return build();
    throw new BrowserUnavailableError(`Could not unpack the Chromium bundled in @sparticuz/chromium: ${(err as Error).message}\nFix: ${fix}`);
  }
  return build();
}

export type Viewport = 'laptop' | 'phone';
const VIEWPORTS: Record<Viewport, { width: number; height: number }> = {
  laptop: { width: 1280, height: 860 },
  phone: { width: 390, height: 844 },
};

/** A fresh browser profile (its own cookies) at a laptop or phone size. */
export function newProfile(browser: Browser, viewport: Viewport = 'laptop'): Promise<BrowserContext> {
  return browser.newContext({ viewport: VIEWPORTS[viewport], deviceScaleFactor: 1, isMobile: viewport === 'phone', hasTouch: viewport === 'phone' });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
