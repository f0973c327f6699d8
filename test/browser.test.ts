import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { startHarness, type Harness } from './support/harness.js';
import type { ReceivedMessage } from './support/smtp.js';
import { launchBrowser, newProfile, screenshot } from './support/browser.js';

/**
 * The admin and member pages in a real browser (Chromium through playwright-core; support/browser.ts says which
 * one), against the whole thing on loopback: the Keap sandbox, an SMTP server and memberhook with its worker. The
 * steps run in order and share one site, the way one administrator would set it up and use it.
 */

const ADMIN = { email: 'owner@example.com', password: 'a long admin password 42' };
const EXAMPLE_PLUGINS = fileURLToPath(new URL('../examples/plugins', import.meta.url));
const ADA_CONTACT = 101; // sandbox seed: Ada Lovelace, ada@example.com
const LATE_CONTACT = 5000; // not in Keap when first posted

let harness: Harness;
let browser: Browser;
let admin: Page;

/** A Keap HTTP Post with the site's current access key. */
function post(params: Record<string, string>) {
  return harness.post({ ...params, access_key: harness.server.ctx.accessKeys.current() });
}

/** memberhook's links carry PUBLIC_URL; in the test the server listens on a random loopback port instead. */
function local(link: string): string {
  return link.replace(harness.env.PUBLIC_URL!, harness.server.url);
}

before(async () => {
  // The browser first: without one the file fails at once, with the fix in the message, and nothing was started
  // that could keep the process alive (a harness whose data folder is removed before it closes never closes).
  browser = await launchBrowser();
  // No ACCESS_KEY in the environment: the key is generated and stored, so the settings page may rotate it.
  // The example plugins run too, as an operator would try them: their pages are admin pages like the others.
  harness = await startHarness({ env: { ADMIN_EMAIL: '', ADMIN_PASSWORD: '', ACCESS_KEY: '', PLUGINS_DIR: EXAMPLE_PLUGINS } });
  admin = await (await newProfile(browser)).newPage();
  admin.setDefaultTimeout(10_000);
});

after(async () => {
  await browser?.close();
  await harness?.close();
});

test('first run: /admin shows only the setup form, and the administrator it creates lands on the dashboard', async () => {
  // The start printed a one-time setup link; without its code the form creates nobody.
  await admin.goto(`${harness.server.url}/admin`);
  await assert.doesNotReject(admin.getByRole('heading', { name: 'Create the administrator' }).waitFor());
  await admin.getByLabel('Email').fill(ADMIN.email);
  await admin.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await admin.getByLabel('Password again').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Create administrator' }).click();
  assert.match(await admin.locator('#code-error').innerText(), /setup code/i, 'no code, no administrator');

  const link = harness.announced.map((l) => /(\S+\/admin\/setup\?code=\S+)/.exec(l)?.[1]).find(Boolean);
  assert.ok(link, 'the start printed the setup link');
  await admin.goto(local(link));
  await assert.doesNotReject(admin.getByRole('heading', { name: 'Create the administrator' }).waitFor());
  assert.equal(await admin.getByRole('navigation', { name: 'Admin' }).count(), 0, 'no admin navigation before setup');
  assert.equal(await admin.getByLabel('Setup code').inputValue(), new URL(link).searchParams.get('code'), 'the link fills in the code');
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

/** Waits for the email to `to` whose subject matches, sent after `after` messages had arrived. */
async function emailTo(to: string, subject: RegExp, after = 0): Promise<ReceivedMessage> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = harness.smtp.messages.slice(after).find((m) => m.to.includes(to) && subject.test(m.subject));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no email to ${to} matching ${subject}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('a member created by a Keap post is found in the members list and its role changed', async () => {
  const posted = await post({ contactId: String(ADA_CONTACT), wpf_action: 'add', send_notification: 'true' });
  assert.equal(posted.status, 200);
  await harness.settle();

  await admin.goto(`${harness.server.url}/admin/members`);
  await admin.getByLabel('Search').fill('ada@');
  await admin.getByRole('button', { name: 'Show' }).click();
  const rows = admin.locator('#members-table tbody tr');
  assert.equal(await rows.count(), 1, 'one member matches');
  assert.match(await rows.first().innerText(), /ada@example\.com/);
  await screenshot(admin, 'admin-members');

  await rows.first().getByRole('link', { name: 'ada@example.com' }).click();
  await admin.locator('#member-heading').waitFor();
  assert.match(await admin.locator('body').innerText(), /Lovelace/);
  await admin.getByLabel('Role').selectOption('member');
  await admin.getByRole('button', { name: 'Change role' }).click();
  await admin.getByRole('status').waitFor();
  const id = Number(await admin.locator('#member-heading').getAttribute('data-member-id'));
  assert.equal(harness.server.ctx.members.get(id).role, 'member', 'the role was changed in the database');
  assert.equal(await admin.getByLabel('Role').inputValue(), 'member');
  await screenshot(admin, 'admin-member');
});

test('a failed event is shown with its error and replayed from its page', async () => {
  const posted = await post({ contactId: String(LATE_CONTACT), wpf_action: 'add' });
  assert.equal(posted.status, 200);
  await harness.settle();
  const eventId = Number(posted.body.event_id);
  assert.equal(harness.server.ctx.events.get(eventId)!.status, 'failed', 'Keap has no such contact yet');

  await admin.goto(`${harness.server.url}/admin/events`);
  await admin.getByLabel('Status').selectOption('failed');
  await admin.getByRole('button', { name: 'Filter' }).click();
  const row = admin.locator(`#events-table tr[data-event-id="${eventId}"]`);
  assert.match(await row.innerText(), /404|not found|no contact/i, 'the reason is in the list');
  await screenshot(admin, 'admin-events');

  // The contact now exists in Keap; replaying runs the job again from the start.
  harness.sandbox.state.addContact({ id: LATE_CONTACT, given_name: 'Late', family_name: 'Comer', email: 'late@example.com' });
  await row.getByRole('link').first().click();
  await admin.locator('#event-status').waitFor();
  admin.once('dialog', (dialog) => void dialog.accept());
  await admin.getByRole('button', { name: 'Replay' }).click();
  await admin.getByRole('status').waitFor();
  await harness.settle();
  await admin.reload();
  assert.equal(await admin.locator('#event-status').getAttribute('data-status'), 'done');
  assert.ok(harness.server.ctx.members.findByContactId(LATE_CONTACT), 'the member exists after the replay');
  await screenshot(admin, 'admin-event');
});

test('rotating the access key asks first, shows the new key once, and the old key stops at once', async () => {
  const oldKey = harness.server.ctx.accessKeys.current();
  await admin.goto(`${harness.server.url}/admin/settings`);
  await screenshot(admin, 'admin-settings');
  let asked = '';
  admin.once('dialog', (dialog) => {
    asked = dialog.message();
    void dialog.accept();
  });
  await admin.getByLabel('I understand that the old key stops working at once').check();
  await admin.getByRole('button', { name: 'Rotate access key' }).click();
  await admin.locator('#new-key-panel').waitFor();
  assert.match(asked, /Rotate the access key/, 'the browser asked for confirmation');
  const newKey = (await admin.locator('#new-access-key').innerText()).trim();
  assert.notEqual(newKey, oldKey);
  assert.ok(newKey.length >= 32);

  const old = await fetch(`${harness.server.url}/webhooks/keap`, { method: 'POST', body: new URLSearchParams({ access_key: oldKey, contactId: '102', wpf_action: 'add' }) });
  assert.equal(old.status, 403, 'the old key is refused');
  const fresh = await fetch(`${harness.server.url}/webhooks/keap`, { method: 'POST', body: new URLSearchParams({ access_key: newKey, contactId: '102', wpf_action: 'add' }) });
  assert.equal(fresh.status, 200, 'the new key is accepted');
  await admin.reload();
  assert.equal(await admin.locator('#new-key-panel').count(), 0, 'the new key is shown once');
  await harness.settle();
});

test('plugins: the page lists them, disabling one takes its menu entry away at once, its settings form saves, its page shows its journal', async () => {
  await admin.goto(`${harness.server.url}/admin`);
  await admin.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Plugins' }).click();
  await admin.getByRole('heading', { name: 'Plugins', exact: true }).waitFor();
  const journal = admin.locator('li[data-plugin="member-journal"]');
  assert.match(await journal.innerText(), /member\.created \(durable\)/);
  await screenshot(admin, 'admin-plugins');

  const nav = admin.getByRole('navigation', { name: 'Admin' });
  assert.equal(await nav.getByRole('link', { name: 'Journal' }).count(), 1);
  await journal.getByRole('button', { name: 'Disable' }).click();
  await admin.getByText('member-journal is disabled; its jobs wait until it is enabled again.').waitFor();
  assert.equal(await nav.getByRole('link', { name: 'Journal' }).count(), 0, 'its menu entry is gone at once');
  await journal.getByRole('button', { name: 'Enable' }).click();
  await admin.getByText('member-journal is enabled.').waitFor();

  await admin.locator('li[data-plugin="username-from-name"]').getByRole('link', { name: 'Settings' }).click();
  await admin.getByLabel('Separator').selectOption('_');
  await admin.getByRole('button', { name: 'Save settings' }).click();
  await admin.getByText('Settings saved.').waitFor();
  assert.equal(await admin.getByLabel('Separator').inputValue(), '_');
  await admin.getByLabel('Separator').selectOption('.');
  await admin.getByRole('button', { name: 'Save settings' }).click();
  await admin.getByText('Settings saved.').waitFor();

  await admin.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Journal' }).click();
  await admin.getByRole('heading', { name: 'Member journal' }).waitFor();
  assert.match(await admin.locator('main').innerText(), /created\s+ada@example\.com/, 'Ada, created earlier, is in the journal');
  await screenshot(admin, 'admin-plugin-journal');
});

test('a member logs in with the emailed password and changes it', async () => {
  const welcome = await emailTo('ada@example.com', /welcome/i);
  const password = /Password: (\S+)/.exec(welcome.text)?.[1];
  assert.ok(password, 'the welcome email carries the generated password');

  const member = await (await newProfile(browser, 'phone')).newPage();
  member.setDefaultTimeout(10_000);
  await member.goto(local(/(http\S+\/login)/.exec(welcome.text)![1]!));
  await member.getByLabel('Email or username').fill('ada@example.com');
  await member.getByLabel('Password').fill(password);
  await member.getByRole('button', { name: 'Log in' }).click();
  await member.getByRole('heading', { name: 'Your account' }).waitFor();
  await screenshot(member, 'member-account-phone');

  await member.getByRole('link', { name: 'Change password' }).click();
  await member.getByLabel('Current password').fill(password);
  await member.getByLabel('New password', { exact: true }).fill('my own new password 2026');
  await member.getByLabel('New password again').fill('my own new password 2026');
  await member.getByRole('button', { name: 'Change password' }).click();
  await member.getByRole('heading', { name: 'Your account' }).waitFor();
  assert.match(await member.getByRole('status').innerText(), /password/i);

  await member.getByRole('button', { name: 'Log out' }).click();
  await member.goto(`${harness.server.url}/login`);
  await member.getByLabel('Email or username').fill('ada@example.com');
  await member.getByLabel('Password').fill(password);
  await member.getByRole('button', { name: 'Log in' }).click();
  await member.getByRole('alert').waitFor();
  await member.getByLabel('Password').fill('my own new password 2026');
  await member.getByRole('button', { name: 'Log in' }).click();
  await member.getByRole('heading', { name: 'Your account' }).waitFor();
  await member.context().close();
});

test('a member resets a forgotten password through the emailed link, once', async () => {
  const member = await (await newProfile(browser)).newPage();
  member.setDefaultTimeout(10_000);
  await member.goto(`${harness.server.url}/login`);
  await member.getByRole('link', { name: 'Forgot your password?' }).click();
  const before = harness.smtp.messages.length;
  await member.getByLabel('Email or username').fill('ada@example.com');
  await member.getByRole('button', { name: 'Email me a link' }).click();
  await member.getByRole('heading', { name: 'Check your email' }).waitFor();

  const email = await emailTo('ada@example.com', /password/i, before);
  const link = /(http\S+\/password\/reset\?token=[\w-]+)/.exec(email.text)?.[1];
  assert.ok(link, 'the email carries the reset link');
  await member.goto(local(link));
  await member.getByLabel('New password', { exact: true }).fill('reset password for ada 77');
  await member.getByLabel('New password again').fill('reset password for ada 77');
  await member.getByRole('button', { name: 'Set new password' }).click();
  await member.waitForURL((url) => url.pathname === '/login');
  await member.getByLabel('Email or username').fill('ada@example.com');
  await member.getByLabel('Password').fill('reset password for ada 77');
  await member.getByRole('button', { name: 'Log in' }).click();
  await member.getByRole('heading', { name: 'Your account' }).waitFor();

  await member.goto(local(link));
  await member.getByRole('heading', { name: 'This link no longer works' }).waitFor();
  await member.context().close();
});

test('the admin pages fit a phone screen', async () => {
  const phone = await (await newProfile(browser, 'phone')).newPage();
  phone.setDefaultTimeout(10_000);
  await phone.goto(`${harness.server.url}/admin/login`);
  await phone.getByLabel('Email or username').fill(ADMIN.email);
  await phone.getByLabel('Password').fill(ADMIN.password);
  await phone.getByRole('button', { name: 'Log in' }).click();
  await phone.getByRole('heading', { name: 'Dashboard' }).waitFor();
  for (const path of ['/admin', '/admin/members', '/admin/events', '/admin/settings', '/admin/roles', '/admin/plugins', '/admin/plugins/member-journal', '/admin/plugins/username-from-name/settings', '/admin/members/import', '/admin/settings/keap-events', '/admin/settings/outbound-webhooks', '/admin/settings/outbound-webhooks/new']) {
    await phone.goto(`${harness.server.url}${path}`);
    const overflow = (await phone.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number;
    assert.ok(overflow <= 0, `${path} does not scroll sideways on a phone (${overflow}px too wide)`);
  }
  await phone.goto(`${harness.server.url}/admin/members`);
  await screenshot(phone, 'admin-members-phone');
  await phone.context().close();
});
