/**
 * Settings, "Site, members & emails": the site's name, the sender of its emails and both member emails (welcome and
 * password reset) edited in the admin, and what members then see and receive. Real servers on loopback: the Keap
 * sandbox, an SMTP server, and memberhook with its jobs in their own thread, as `npm start` runs it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { ConfigError, loadConfig } from '../src/config.js';
import { defaultPasswordResetTemplate } from '../src/features/members/password-reset.js';
import { SEED } from '../tools/keap-sandbox/index.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, adminAgent, submitForm, testSiteWithAdmin } from './support/admin-site.js';
import { startHarness } from './support/harness.js';
import { alertOf, csrfFrom } from './support/pages.js';
import { startSmtpServer } from './support/smtp.js';
import { until } from './support/waiting.js';

const PAGE = '/admin/settings/members';

function fieldError(html: string, id: string): string | undefined {
  return new RegExp(`<p class="field-error" id="${id}-error">([^<]*)</p>`).exec(html)?.[1];
}

function titleOf(html: string): string | undefined {
  return /<title>([^<]*)<\/title>/.exec(html)?.[1];
}

/** Asks for a reset email on the member's "forgot password" page, as a member does. */
async function forgotPassword(url: string, login: string): Promise<void> {
  const agent = request.agent(url);
  const form = await agent.get('/password/forgot');
  const res = await agent.post('/password/forgot').type('form').send({ _csrf: csrfFrom(form.text), login });
  assert.equal(res.status, 200, 'the reset email is asked for');
}

test('the site name, sender and both emails edited in the admin are what the next welcome and reset emails carry, sent from the job thread', async () => {
  // No logger or worker tuning of the harness's own: those are for jobs run beside the requests.
  const h = await startHarness({ env: { ADMIN_EMAIL, ADMIN_PASSWORD, LOG_LEVEL: 'error' }, start: { jobs: 'thread', logger: undefined, worker: undefined } });
  after(() => h.close());
  assert.equal(h.server.jobs, 'thread');
  const url = h.server.url as unknown as Parameters<typeof adminAgent>[0];
  const admin = await adminAgent(url);

  // Before any edit: the environment's defaults, in a job thread that has been running since the start.
  assert.equal((await h.post({ contactId: String(SEED.contacts.ada), wpf_action: 'add', send_notification: 'true' })).status, 200);
  const first = await until('the first welcome email', () => h.smtp.messages[0]);
  assert.equal(first.subject, 'Welcome to memberhook');
  assert.equal(first.headers.get('from'), 'Site <site@example.test>');

  let res = await submitForm(admin, PAGE, `${PAGE}/site`, { site_name: 'Lovelace Club', sender_name: 'Club Desk', sender_address: 'desk@club.example' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=site_saved#site`);
  res = await submitForm(admin, PAGE, `${PAGE}/welcome`, {
    subject: 'Hello from {{siteName}}, {{firstName}}',
    text: 'Welcome {{firstName}} to {{siteName}}.\n{{#if password}}Password: {{password}}{{/if}}\n',
    html: '<p>Welcome to <b>{{siteName}}</b>, {{username}}</p>',
  });
  assert.equal(res.status, 303);
  res = await submitForm(admin, PAGE, `${PAGE}/password-reset`, {
    subject: 'A new {{siteName}} password for {{username}}',
    text: 'Choose it here: {{resetUrl}} (for {{expiresInMinutes}} minutes)\n',
    html: '<p><a href="{{resetUrl}}">Choose a new {{siteName}} password</a></p>',
  });
  assert.equal(res.status, 303);

  const grace = h.sandbox.state.addContact({ given_name: 'Grace', family_name: 'Hopper', email: 'grace@example.test' }).id;
  assert.equal((await h.post({ contactId: String(grace), wpf_action: 'add', send_notification: 'true' })).status, 200);
  const welcome = await until('the second welcome email', () => h.smtp.messages.find((m) => m.to.includes('grace@example.test')));
  assert.equal(welcome.subject, 'Hello from Lovelace Club, Grace');
  assert.match(welcome.text, /^Welcome Grace to Lovelace Club\.\nPassword: \S+/);
  assert.equal(welcome.html, '<p>Welcome to <b>Lovelace Club</b>, grace@example.test</p>');
  assert.equal(welcome.headers.get('from'), 'Club Desk <desk@club.example>');
  assert.equal(welcome.from, 'desk@club.example', 'the envelope sender is the new address too');

  await forgotPassword(h.server.url, 'ada@example.com');
  const reset = await until('the reset email', () => h.smtp.messages.find((m) => m.to.includes('ada@example.com') && m.subject.includes('password')));
  assert.equal(reset.subject, 'A new Lovelace Club password for ada@example.com');
  assert.match(reset.text, /^Choose it here: http:\/\/members\.example\.test\/password\/reset\?token=\S+ \(for 60 minutes\)\n$/);
  assert.match(reset.html ?? '', /^<p><a href="http:\/\/members\.example\.test\/password\/reset\?token&#x3D;[^"]+">Choose a new Lovelace Club password<\/a><\/p>$/);
  assert.equal(reset.headers.get('from'), 'Club Desk <desk@club.example>');

  // Reset to default: the built-in reset email again, with the new site name in it.
  res = await submitForm(admin, PAGE, `${PAGE}/password-reset/reset`, {});
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=template_reset#password-reset-email`);
  await forgotPassword(h.server.url, 'ada@example.com');
  const builtIn = await until('the built-in reset email', () => h.smtp.messages.find((m) => m.subject === 'Reset your Lovelace Club password'));
  assert.match(builtIn.text, /your Lovelace Club account \(ada@example\.com\)/);
});

test('a bad sender or site name is a 400 naming the field, and nothing of the form is saved', async () => {
  const site = await testSiteWithAdmin({ MAIL_FROM: 'Site <site@example.test>' });
  const admin = await adminAgent(site.app);
  const cases: Array<[fields: Record<string, string>, field: string, message: RegExp]> = [
    [{ site_name: 'New name', sender_address: 'a@example.test, b@example.test' }, 'sender_address', /must be one email address/],
    [{ site_name: 'New name', sender_address: 'Desk <desk@example.test>' }, 'sender_address', /must be one email address/],
    [{ site_name: 'New name', sender_address: 'not an address' }, 'sender_address', /must be one email address/],
    [{ site_name: 'x'.repeat(101) }, 'site_name', /too long: at most 100 characters/],
    [{ site_name: 'Two\nlines' }, 'site_name', /one line/],
    [{ sender_name: 'Desk\r\nBcc: victim@example.test' }, 'sender_name', /one line/],
  ];
  for (const [fields, field, message] of cases) {
    const res = await submitForm(admin, PAGE, `${PAGE}/site`, { site_name: '', sender_name: '', sender_address: '', ...fields });
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.match(fieldError(res.text, field) ?? '', message, `${field} is named`);
    assert.match(alertOf(res.text) ?? '', /not saved/);
    assert.deepEqual(site.ctx.identity.stored(), { siteName: '', senderName: '', senderAddress: '' }, 'nothing was stored');
  }
  assert.equal(site.ctx.identity.siteName(), 'memberhook');
  assert.deepEqual(site.ctx.identity.sender(), { name: 'Site', address: 'site@example.test' });

  const res = await admin.post(`${PAGE}/site`).type('form').send({ site_name: 'No token' });
  assert.equal(res.status, 403, 'the form needs its token');
  assert.equal(site.ctx.identity.siteName(), 'memberhook');
});

test('a reset email template that does not compile, calls a helper or leaves out the link is a 400 naming the part; nothing is saved', async () => {
  const site = await testSiteWithAdmin();
  const admin = await adminAgent(site.app);
  const builtIn = defaultPasswordResetTemplate();
  const cases: Array<[fields: Record<string, string>, id: string, message: RegExp]> = [
    [{ subject: 'x', text: 'Open {{resetUrl}', html: '' }, 'password-reset-text', /does not compile on line 1/],
    [{ subject: 'x', text: '{{resetUrl}}{{log resetUrl}}', html: '' }, 'password-reset-text', /the helper &quot;log&quot; is not available/],
    [{ subject: 'x', text: '', html: '<p>Your password was reset.</p>' }, 'password-reset-html', /must show \{\{resetUrl\}\}/],
    [{ subject: 'Reset\nnow', text: '', html: '' }, 'password-reset-subject', /one line/],
    [{ subject: '{{> header}}', text: '', html: '' }, 'password-reset-subject', /partials/],
  ];
  for (const [fields, id, message] of cases) {
    const res = await submitForm(admin, PAGE, `${PAGE}/password-reset`, fields);
    assert.equal(res.status, 400, JSON.stringify(fields));
    assert.match(fieldError(res.text, id) ?? '', message);
    assert.deepEqual(site.ctx.site.passwordResetTemplate(), { subject: undefined, text: undefined, html: undefined });
  }

  const page = (await admin.get(PAGE)).text;
  assert.match(page, /<input id="password-reset-subject" name="subject" type="text" value="Reset your \{\{siteName\}\} password"/);
  assert.ok(page.includes(builtIn.text.split('\n')[0]!), 'the editor starts from the built-in text');
  for (const name of ['resetUrl', 'forgotUrl', 'expiresInMinutes', 'siteName']) assert.ok(page.includes(`<code>{{${name}}}</code>`), `${name} is listed`);

  const preview = await submitForm(admin, PAGE, `${PAGE}/password-reset/preview`, { subject: 'Reset for {{firstName}}', text: 'Go: {{resetUrl}}', html: '' });
  assert.equal(preview.status, 200);
  assert.match(preview.text, /<div class="spaced" aria-labelledby="password-reset-preview-heading" data-email-preview/);
  assert.match(preview.text, /<span data-preview-subject>Reset for Ada<\/span>/);
  assert.match(preview.text, /<pre data-preview-text[^>]*>Go: http:\/\/localhost:0\/password\/reset\?token&#x3D;sample-link-that-does-not-work\n<\/pre>/);
  assert.deepEqual(site.ctx.site.passwordResetTemplate(), { subject: undefined, text: undefined, html: undefined }, 'a preview saves nothing');
});

test('page titles and headers show the site name, escaped, on admin, member and error pages', async () => {
  const site = await testSiteWithAdmin({ SITE_NAME: 'From the Environment' });
  const admin = await adminAgent(site.app);
  assert.equal(titleOf((await admin.get(PAGE)).text), 'Site, members &amp; emails · From the Environment admin');
  assert.match((await admin.get(PAGE)).text, /placeholder="From the Environment"/);

  const res = await submitForm(admin, PAGE, `${PAGE}/site`, { site_name: 'Tom & Jerry’s <Club>', sender_name: '', sender_address: '' });
  assert.equal(res.status, 303);
  const page = (await admin.get(PAGE)).text;
  assert.equal(titleOf(page), 'Site, members &amp; emails · Tom &amp; Jerry’s &lt;Club&gt; admin');
  assert.match(page, /<a class="site" href="\/admin">Tom &amp; Jerry’s &lt;Club&gt;<small>admin<\/small><\/a>/);
  assert.match(page, /<strong data-current-sender>Tom &amp; Jerry’s &lt;Club&gt; &lt;no-reply@localhost&gt;<\/strong>/, 'the sender is named after the site when MAIL_FROM gives no name');
  assert.equal(titleOf((await request(site.app).get('/login')).text), 'Log in · Tom &amp; Jerry’s &lt;Club&gt;');
  assert.match((await request(site.app).get('/login')).text, /<a class="site" href="\/">Tom &amp; Jerry’s &lt;Club&gt;<\/a>/);
  assert.match(titleOf((await request(site.app).get('/no/such/page')).text) ?? '', / · Tom &amp; Jerry’s &lt;Club&gt;$/);

  // An empty name goes back to the default.
  await submitForm(admin, PAGE, `${PAGE}/site`, { site_name: '', sender_name: '', sender_address: '' });
  assert.equal(titleOf((await request(site.app).get('/login')).text), 'Log in · From the Environment');
});

test('"Send a test email" sends the edited, unsaved template to the admin’s own address, from the current sender', async () => {
  const smtp = await startSmtpServer();
  after(() => smtp.close());
  const site = await testSiteWithAdmin({ SMTP_URL: smtp.url, MAIL_FROM: 'Club <club@example.test>' });
  const admin = await adminAgent(site.app);
  const res = await submitForm(admin, PAGE, `${PAGE}/welcome/test`, { subject: 'Hi {{firstName}}', text: 'User {{username}}, password {{password}}', html: '' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.location, `${PAGE}?done=test_sent#welcome-email`);
  assert.match((await admin.get(res.headers.location!)).text, /A test email was sent to boss@example\.com\./);
  assert.equal(smtp.messages.length, 1);
  const mail = smtp.messages[0]!;
  assert.deepEqual(mail.to, [ADMIN_EMAIL]);
  assert.equal(mail.subject, '[Test] Hi Ada');
  assert.equal(mail.text, 'User ada, password Sample-Passw0rd-7\n');
  assert.equal(mail.headers.get('from'), 'Club <club@example.test>');
  assert.deepEqual(site.ctx.site.welcomeTemplate(), { subject: undefined, text: undefined, html: undefined }, 'a test send saves nothing');

  const broken = await submitForm(admin, PAGE, `${PAGE}/password-reset/test`, { subject: 'x', text: 'no link here', html: '' });
  assert.equal(broken.status, 400);
  assert.match(fieldError(broken.text, 'password-reset-text') ?? '', /must show \{\{resetUrl\}\}/);
  assert.equal(smtp.messages.length, 1, 'a broken template is not sent');

  smtp.failNext(5);
  const refused = await submitForm(admin, PAGE, `${PAGE}/password-reset/test`, { subject: '', text: '', html: '' });
  assert.equal(refused.status, 502);
  assert.match(alertOf(refused.text) ?? '', /^The test email could not be sent: SMTP send via 127\.0\.0\.1:\d+ failed/);
});

test('MAIL_FROM must be one address, with a name or without; SITE_NAME names the site and, without a name in MAIL_FROM, the sender', () => {
  const base = { DATA_DIR: '/tmp/unused' };
  for (const bad of ['a@example.test, b@example.test', 'Site <not an address>', 'nobody']) {
    assert.throws(() => loadConfig({ ...base, MAIL_FROM: bad }), (err: unknown) => err instanceof ConfigError && /^Invalid setting MAIL_FROM: expected one email address/.test(err.message), bad);
  }
  assert.deepEqual(loadConfig({ ...base, MAIL_FROM: '"The Club" <club@example.test>' }).mail.sender, { name: 'The Club', address: 'club@example.test' });
  assert.deepEqual(loadConfig({ ...base, MAIL_FROM: 'club@example.test' }).mail.sender, { address: 'club@example.test' });
  const config = loadConfig({ ...base, SITE_NAME: '  The Club  ' });
  assert.equal(config.siteName, 'The Club');
  assert.deepEqual(config.mail.sender, { address: 'no-reply@localhost' });
  assert.throws(() => loadConfig({ ...base, SITE_NAME: 'a'.repeat(101) }), /Invalid setting SITE_NAME/);
});
