import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { OutboundWebhooks } from '../src/features/outbound-webhooks/service.js';
import { launchBrowser, newProfile, screenshot } from './support/browser.js';
import { startHarness, type Harness } from './support/harness.js';
import { startReceiver, waitUntil, type Receiver } from './support/receiver.js';

/**
 * Settings → Outbound webhooks in a real browser, against memberhook with its worker and a receiver on loopback:
 * one administrator sets up a connection and a destination, tries the template, sends a test, and reads the log.
 * The steps run in order on one site. Screenshots go where support/browser.ts says (`npm run screenshots`).
 */

const ADMIN = { email: 'owner@example.com', password: 'a long admin password 42' };

let harness: Harness;
let browser: Browser;
let receiver: Receiver;
let page: Page;
let outbound: OutboundWebhooks;

before(async () => {
  browser = await launchBrowser();
  receiver = await startReceiver((request) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: `{"received":${request.body.length}}` }));
  harness = await startHarness({ env: { OUTBOUND_ALLOW_PRIVATE: '1', ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } });
  outbound = harness.server.ctx.plugins.service('outboundWebhooks');
  page = await (await newProfile(browser)).newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(`${harness.server.url}/admin/login`);
  await page.locator('#login').fill(ADMIN.email);
  await page.locator('#password').fill(ADMIN.password);
  await page.locator('form button[type="submit"]').click();
  await page.waitForURL(/\/admin\/?$/);
});

after(async () => {
  await browser?.close();
  await harness?.close();
  await receiver?.close();
});

test('the connection form shows the fields of the chosen authentication and grant, and the signing secret once', async () => {
  await page.goto(`${harness.server.url}/admin/settings/outbound-webhooks`);
  await page.getByRole('link', { name: 'New connection' }).click();
  const visible = async (selector: string) => page.locator(selector).isVisible();
  assert.equal(await visible('#basic_username'), false, 'no authentication: no fields');
  await page.getByLabel('Basic (user name and password)').check();
  assert.equal(await visible('#basic_username'), true);
  assert.equal(await visible('#bearer_token'), false);
  await page.getByLabel('OAuth 2.0').check();
  assert.equal(await visible('#oauth_token_url'), true);
  assert.equal(await visible('#oauth_username'), false, 'client credentials need no user');
  await page.getByLabel('Grant type').selectOption('jwt_bearer');
  assert.equal(await visible('#oauth_assertion'), true);
  await page.getByLabel('Grant type').selectOption('password');
  assert.equal(await visible('#oauth_username'), true);
  assert.equal(await visible('#oauth_assertion'), false);

  await page.getByLabel('Name', { exact: true }).fill('Data warehouse');
  await page.getByLabel('Description').fill('Member events for the analytics team');
  await page.getByLabel('Base URL').fill(receiver.url);
  await page.getByLabel('Bearer token').check();
  await page.getByLabel('Token', { exact: true }).fill('warehouse-ingest-token');
  await page.getByRole('button', { name: 'Create connection' }).click();
  const secret = await page.locator('#signing-secret').innerText();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
  await screenshot(page, 'admin-outbound-connection');
  const id = await page.locator('h1[data-connection-id]').getAttribute('data-connection-id');
  await page.goto(`${harness.server.url}/admin/settings/outbound-webhooks/${id}`);
  assert.equal(await page.locator('#signing-secret').count(), 0, 'the next visit does not show it again');
});

test('a destination: the template preview on a sample event, then Send test with the request and the answer', async () => {
  await page.getByRole('link', { name: 'New destination' }).click();
  await page.getByLabel('Name', { exact: true }).fill('Member changes');
  await page.getByLabel('Endpoint path').fill('/ingest/members');
  await page.getByLabel('Other events').fill('keap.contact.*');
  await page.locator('#template').fill('{\n  "event": {{json type}},\n  "email": {{json data.member.email}},\n  "tags": [{{#each data.member.tags}}{{json name}}{{#unless @last}}, {{/unless}}{{/each}}],\n  "at": {{date timestamp format="epoch"}}\n}\n');
  await page.locator('#preview_event').selectOption('member.tags_changed');
  await page.getByRole('button', { name: 'Preview' }).click();
  const preview = JSON.parse(await page.locator('#preview-body').innerText()) as Record<string, unknown>;
  assert.deepEqual(preview, { event: 'member.tags_changed', email: 'ada@example.com', tags: ['Member', 'VIP'], at: 1796688900 });
  await page.getByRole('button', { name: 'Create destination' }).click();
  await page.getByRole('button', { name: 'Send test' }).click();
  assert.equal(await page.locator('#test-status').innerText(), '200');
  const request = await page.locator('#test-request').innerText();
  assert.match(request, /authorization: \[redacted\]/);
  assert.doesNotMatch(request, /warehouse-ingest-token/);
  assert.equal(receiver.received.at(-1)?.headers.authorization, 'Bearer warehouse-ingest-token');
  await screenshot(page, 'admin-outbound-destination');
});

test('the delivery log lists what members\' changes sent, and a delivery shows each attempt', async () => {
  for (const name of ['grace', 'alan', 'edsger']) {
    await harness.server.ctx.members.create({ email: `${name}@example.com`, username: name, role: 'subscriber', password: 'member password 0123', firstName: name, lastName: '', fields: {}, tags: [], keapContactId: null });
  }
  await harness.settle();
  await waitUntil(() => outbound.listDeliveries({ status: 'delivered' }).total === 3);
  await page.getByRole('link', { name: 'Delivery log' }).first().click();
  assert.equal(await page.locator('#delivery-total').innerText(), '3');
  await screenshot(page, 'admin-outbound-log');
  await page.locator('#deliveries-table a').first().click();
  assert.equal(await page.locator('#delivery-status').innerText(), 'delivered');
  assert.match(await page.locator('.attempt-request').first().innerText(), /webhook-signature: v1,/);
  await screenshot(page, 'admin-outbound-delivery');
});
