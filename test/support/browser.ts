import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * Debian's Chromium, driven by playwright-core. Nothing is downloaded: `.ci/run` installs the `chromium`
 * package, and a developer machine needs the same (or CHROMIUM_PATH pointing at another build).
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Where the tests save screenshots; `npm run screenshots` points this at docs/screenshots for the README. */
export const SCREENSHOT_DIR = resolve(process.env.SCREENSHOT_DIR ?? 'test-results/screenshots');

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: install the Debian package (apt-get install chromium) or set CHROMIUM_PATH`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
  });
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
