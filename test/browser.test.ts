import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { startHarness, TEST_ACCESS_KEY, type Harness } from './support/harness.js';
import { launchBrowser, newProfile, screenshot } from './support/browser.js';

/**
 * The admin and member pages in a real browser (Debian's Chromium through playwright-core), against the whole
 * thing on loopback: the Keap sandbox, an SMTP server and memberhook with its worker. The steps run in order and
 * share one site, the way one administrator would set it up and use it.
 */

const ADMIN = { email: 'owner@example.com', password: 'a long admin password 42' };
const ADA_CONTACT = 101; // sandbox seed: ada@example.com

let harness: Harness;
let browser: Browser;
let admin: Page;

/** memberhook's links carry PUBLIC_URL; in the test the server listens on a random loopback port instead. */
function local(link: string): string {
  return link.replace(harness.env.PUBLIC_URL!, harness.server.url);
}

before(async () => {
  harness = await startHarness({ env: { ADMIN_EMAIL: '', ADMIN_PASSWORD: '' } });
  browser = await launchBrowser();
  admin = await (await newProfile(browser)).newPage();
  admin.setDefaultTimeout(10_000);
});

after(async () => {
  await browser?.close();
  await harness?.close();
});

test('first run: /admin shows only the setup form, and the administrator it creates lands on the dashboard', async () => {
  await admin.goto(`${harness.server.url}/admin`);
  await assert.doesNotReject(admin.getByRole('heading', { name: 'Create the administrator' }).waitFor());
  assert.equal(await admin.getByRole('navigation', { name: 'Admin' }).count(), 0, 'no admin navigation before setup');
  await screenshot(admin, 'admin-setup');

  await admin.getByLabel('Email').fill(ADMIN.email);
  await admin.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await admin.getByLabel('Password again').fill('not the same password');
  await admin.getByRole('button', { name: 'Create administrator' }).click();
  assert.match(await admin.locator('#confirm-error').innerText(), /not the same/i, 'a mismatch is shown beside the field');

  await admin.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await admin.getByLabel('Password again').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Create administrator' }).click();
  await admin.getByRole('heading', { name: 'Dashboard' }).waitFor();
  assert.equal(new URL(admin.url()).pathname, '/admin');

  // The form is gone for good: a fresh visitor gets the login page.
  const stranger = await (await newProfile(browser)).newPage();
  await stranger.goto(`${harness.server.url}/admin/setup`);
  await stranger.getByRole('heading', { name: 'Admin log in' }).waitFor();
  await stranger.context().close();
});

test('admin logs out and back in', async () => {
  await admin.getByRole('button', { name: 'Log out' }).click();
  await admin.getByRole('heading', { name: 'Admin log in' }).waitFor();
  await admin.goto(`${harness.server.url}/admin/members`);
  assert.equal(new URL(admin.url()).pathname, '/admin/login', 'logged out: the members page asks to log in');

  await admin.getByLabel('Email or username').fill(ADMIN.email);
  await admin.getByLabel('Password').fill('wrong password entirely');
  await admin.getByRole('button', { name: 'Log in' }).click();
  assert.match(await admin.getByRole('alert').innerText(), /incorrect|not right|wrong/i);

  await admin.getByLabel('Password').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Log in' }).click();
  await admin.waitForURL((url) => url.pathname === '/admin/members');
  await screenshotDashboard();
});

async function screenshotDashboard(): Promise<void> {
  const page = await admin.context().newPage();
  await page.goto(`${harness.server.url}/admin`);
  await screenshot(page, 'admin-dashboard');
  await page.close();
}

void ADA_CONTACT;
void TEST_ACCESS_KEY;
